// RoPE on the CPU at Gemma 3 270M shapes: q [512 tokens, 4 heads, 256] and k [512, 1, 256], forward and backward,
// fp32 and bf16, local (theta 1e4) frequencies. bytes/s counts x read and out written once.
#include <benchmark/benchmark.h>

#include <cstdint>

#include <qlora/ops/rope.hpp>

namespace {
using qlora::Dim;
using qlora::Dyn;
using qlora::Tensor;

template <class T>
void BM_rope(benchmark::State& state) {
  const auto tokens = state.range(0), heads = state.range(1);
  const bool backward = state.range(2) != 0;
  auto x = Tensor<T, Dyn, Dyn, Dim<256>>::zeros(tokens, heads);  // x: [T, H, 256]
  for (qlora::index_t i = 0; i < x.numel(); ++i) x.data()[i] = qlora::convert<T>(static_cast<float>(i % 17) * 0.1f);
  auto pos = Tensor<std::int32_t, Dyn>::zeros(tokens);
  for (qlora::index_t t = 0; t < tokens; ++t) pos(t) = static_cast<std::int32_t>(t);
  const qlora::RopeParams p{10000, 1};
  for (auto _ : state) {
    auto out = backward ? qlora::rope_backward(x, pos, p) : qlora::rope_forward(x, pos, p);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(state.iterations() * 2 * x.numel() * static_cast<std::int64_t>(sizeof(T)));
}
}  // namespace

// Gemma 3 270M: 4 query heads, 1 key/value head, head_dim 256; 512 tokens. range(2): 0 forward, 1 backward.
BENCHMARK(BM_rope<float>)->Args({512, 4, 0})->Args({512, 1, 0})->Args({512, 4, 1})->UseRealTime();
BENCHMARK(BM_rope<qlora::bf16>)->Args({512, 4, 0})->UseRealTime();
