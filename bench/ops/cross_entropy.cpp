// Fused chunked LM head + cross-entropy vs materialised logits on the CPU at Gemma 3 270M's head (512 tokens, hidden
// 640, vocabulary 262 144), forward + backward (d_hidden; the tied table is frozen). Counter peak_MiB is the CPU
// allocator's peak of tensor bytes above what was live before the step (qlora::cpu_allocator().stats()): the
// materialised [512, 262144] fp32 logits alone are 512 MiB, the fused op's chunks are 512 × 2048 fp32 = 4 MiB
// (one per thread in the forward with the gradient).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include <qlora/ops/cross_entropy.hpp>
#include <qlora/qlora.hpp>

namespace {
using qlora::Dyn;
using qlora::index_t;
using M = qlora::Tensor<float, Dyn, Dyn>;
using Labels = qlora::Tensor<std::int32_t, Dyn>;
constexpr index_t kTokens = 512, kHidden = 640, kVocab = 262144;

M filled(index_t r, index_t c, float amplitude) {
  M t = M::zeros(r, c);
  for (index_t i = 0; i < t.numel(); ++i)
    t.data()[i] = (static_cast<float>((i * 7919) % 1000) * 2e-3f - 1.0f) * amplitude;
  return t;
}
Labels labels() {
  Labels l = Labels::zeros(kTokens);
  for (index_t t = 0; t < kTokens; ++t) l.data()[t] = t % 8 == 0 ? qlora::kIgnoreIndex : static_cast<std::int32_t>(t * 509 % kVocab);
  return l;
}

// Runs `step` once per iteration and reports the allocator peak above the pre-step usage.
template <class Step>
void measure(benchmark::State& state, Step step) {
  auto& allocator = qlora::cpu_allocator();
  std::size_t peak = 0;
  for (auto _ : state) {
    const std::size_t before = allocator.stats().current_bytes;
    allocator.reset_peak();
    step();
    peak = std::max(peak, allocator.stats().peak_bytes - before);
  }
  state.counters["peak_MiB"] = static_cast<double>(peak) / (1024.0 * 1024.0);
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(kTokens), benchmark::Counter::kIsIterationInvariantRate);
}

// The fused op, forward then backward recomputing the logits, with chunk shapes chunk_tokens × chunk_vocab (0 × 0:
// the defaults, 512 × 2048 on the CPU).
void BM_cross_entropy_fused_chunks(benchmark::State& state) {
  const M hidden = filled(kTokens, kHidden, 0.1f), table = filled(kVocab, kHidden, 0.05f);
  const Labels l = labels();
  const qlora::CrossEntropyParams p{0, state.range(0), state.range(1)};
  measure(state, [&] {
    const auto f = qlora::cross_entropy_forward(hidden, table, l, p);
    const auto g = qlora::cross_entropy_backward(hidden, table, l, f.lse, 1.0 / static_cast<double>(f.count), false, p);
    benchmark::DoNotOptimize(g.d_hidden.data());
  });
}

// Loss and d_hidden in one pass (the gradient made in the forward, as training with a frozen table runs it), with
// chunk shapes chunk_tokens × chunk_vocab (0 × 0: the defaults).
void BM_cross_entropy_forward_with_grad(benchmark::State& state) {
  const M hidden = filled(kTokens, kHidden, 0.1f), table = filled(kVocab, kHidden, 0.05f);
  const Labels l = labels();
  const qlora::CrossEntropyParams p{0, state.range(0), state.range(1)};
  measure(state, [&] {
    const auto f = qlora::cross_entropy_forward_with_grad(hidden, table, l, p);
    benchmark::DoNotOptimize(f.d_hidden_sum.data());
  });
}

// The same loss and d_hidden with the whole [N, V] logits: z = h·Wᵀ, softmax rows in place, d_hidden = d_z · W.
void BM_cross_entropy_materialised(benchmark::State& state) {
  const M hidden = filled(kTokens, kHidden, 0.1f), table = filled(kVocab, kHidden, 0.05f);
  const Labels l = labels();
  measure(state, [&] {
    M z = qlora::matmul<qlora::Transpose::no, qlora::Transpose::yes>(hidden, table);  // [N, V]: 512 MiB
    double loss = 0;
#pragma omp parallel for reduction(+ : loss)
    for (index_t t = 0; t < kTokens; ++t) {
      float* row = z.data() + t * kVocab;
      const std::int32_t label = l.data()[t];
      const float m = *std::max_element(row, row + kVocab);
      float s = 0;
      for (index_t v = 0; v < kVocab; ++v) s += std::exp(row[v] - m);
      if (label >= 0) loss += m + std::log(s) - row[label];
      for (index_t v = 0; v < kVocab; ++v) row[v] = label < 0 ? 0.0f : std::exp(row[v] - m) / s - (v == label);
    }
    benchmark::DoNotOptimize(loss);
    benchmark::DoNotOptimize(qlora::matmul(z, table).data());
  });
}
}  // namespace

BENCHMARK(BM_cross_entropy_fused_chunks)
    ->ArgNames({"chunk_tokens", "chunk_vocab"})
    ->Args({0, 0})
    ->Args({512, 8192})
    ->Args({256, 4096})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_cross_entropy_forward_with_grad)
    ->ArgNames({"chunk_tokens", "chunk_vocab"})
    ->Args({0, 0})
    ->Args({512, 1024})
    ->Args({512, 4096})
    ->Args({256, 2048})
    ->Args({128, 8192})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_cross_entropy_materialised)->Unit(benchmark::kMillisecond)->UseRealTime();
