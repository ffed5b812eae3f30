// RoPE on the CPU at Gemma 3 270M, 1B and 4B shapes: q [512 tokens, heads, 256] and k [512, kv_heads, 256], forward
// and backward, fp32 (bf16 at the 270M), local (theta 1e4) frequencies; Gemma 4's proportional RoPE on full layers
// (q [512, 8, 512], a quarter of the pairs rotate: E2B/E4B). bytes/s counts x read and out written once.
#include <benchmark/benchmark.h>

#include <cstdint>

#include <qlora/ops/rope.hpp>

#include "../shapes.hpp"

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

// Gemma 4 full-attention layers: head_dim 512, θ 1e6, partial_rotary_factor 0.25 (3/4 of the pairs pass through).
void BM_rope_proportional(benchmark::State& state) {
  const auto tokens = state.range(0), heads = state.range(1);
  auto x = Tensor<float, Dyn, Dyn, Dim<512>>::zeros(tokens, heads);
  for (qlora::index_t i = 0; i < x.numel(); ++i) x.data()[i] = static_cast<float>(i % 17) * 0.1f;
  auto pos = Tensor<std::int32_t, Dyn>::zeros(tokens);
  for (qlora::index_t t = 0; t < tokens; ++t) pos(t) = static_cast<std::int32_t>(t);
  const qlora::RopeParams p{1e6, 1, 0.25};
  for (auto _ : state) benchmark::DoNotOptimize(qlora::rope_forward(x, pos, p).data());
  state.SetBytesProcessed(state.iterations() * 2 * x.numel() * static_cast<std::int64_t>(sizeof(float)));
}
}  // namespace

// {tokens, heads, backward}: q and k forward, q backward; head_dim is 256 in all three configs.
static bench::ArgLists heads(const bench::ConfigShape& c) {
  return bench::ArgLists{{bench::kTokens, c.heads, 0}, {bench::kTokens, c.kv_heads, 0},
                                                {bench::kTokens, c.heads, 1}};
}
BENCHMARK(BM_rope<float>)->ArgNames({"tokens", "heads", "backward"})->Apply(bench::each_config<heads>)->UseRealTime();
BENCHMARK(BM_rope<qlora::bf16>)->ArgNames({"tokens", "heads", "backward"})->Args({512, 4, 0})->UseRealTime();
BENCHMARK(BM_rope_proportional)->ArgNames({"tokens", "heads"})->Args({512, 8})->UseRealTime();
