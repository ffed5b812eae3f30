// attention on the CPU at Gemma 3 270M shapes (4 query heads, 1 kv head, head_dim 256, sliding window 512): forward
// alone and forward + backward, T = 512 and 1024. The reference materialises one head's [T, T] scores at a time, so
// its cost is ~4·T²·D FLOPs per head forward (two GEMMs) and ~2.5× that for backward; counter FLOP/s uses 4·T²·D·Hq.
#include <benchmark/benchmark.h>

#include <qlora/ops/attention.hpp>
#include <qlora/qlora.hpp>

namespace {
using qlora::Dyn;
using qlora::index_t;
using X = qlora::Tensor<float, Dyn, Dyn, Dyn>;  // [T, H, D]

X filled(index_t t, index_t h, index_t d, index_t salt) {
  X x = X::zeros(t, h, d);
  for (index_t i = 0; i < x.numel(); ++i) x.data()[i] = static_cast<float>((i * 7919 + salt) % 1000) * 2e-3f - 1.0f;
  return x;
}

void forward_flops(benchmark::State& state, index_t t, double passes) {
  state.counters["FLOP/s"] = benchmark::Counter(passes * 4.0 * static_cast<double>(t * t) * 256 * 4,
                                                benchmark::Counter::kIsIterationInvariantRate);
}

void BM_attention_forward(benchmark::State& state) {
  const index_t t = state.range(0);
  const X q = filled(t, 4, 256, 1), k = filled(t, 1, 256, 2), v = filled(t, 1, 256, 3);
  const qlora::AttentionParams p{1.0 / 16.0, 512};
  for (auto _ : state) benchmark::DoNotOptimize(qlora::attention_forward(q, k, v, p).out.data());
  forward_flops(state, t, 1.0);
}

void BM_attention_forward_backward(benchmark::State& state) {
  const index_t t = state.range(0);
  const X q = filled(t, 4, 256, 1), k = filled(t, 1, 256, 2), v = filled(t, 1, 256, 3), d_out = filled(t, 4, 256, 4);
  const qlora::AttentionParams p{1.0 / 16.0, 512};
  for (auto _ : state) {
    const auto f = qlora::attention_forward(q, k, v, p);
    benchmark::DoNotOptimize(qlora::attention_backward(d_out, q, k, v, f.out, f.lse, p).dq.data());
  }
  forward_flops(state, t, 3.5);  // forward, recomputed scores, four backward GEMMs of the same size
}
}  // namespace

BENCHMARK(BM_attention_forward)->Arg(512)->Arg(1024)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_attention_forward_backward)->Arg(512)->Arg(1024)->Unit(benchmark::kMillisecond)->UseRealTime();
