// attention on the CPU at Gemma 3 shapes — 270M and 1B: 4 query heads, 1 kv head; 4B: 8 and 4; head_dim 256; the
// sliding window of local layers (512 for 270M/1B, 1024 for 4B) — forward alone and forward + backward, T = 512 and
// 1024. The reference materialises one head's [T, T] scores at a time, so its cost is ~4·T²·D FLOPs per head
// forward (two GEMMs) and ~2.5× that for backward; counter FLOP/s uses 4·T²·D·Hq.
#include <benchmark/benchmark.h>

#include <qlora/ops/attention.hpp>
#include <qlora/qlora.hpp>

#include "../shapes.hpp"

namespace {
using qlora::Dyn;
using qlora::index_t;
using X = qlora::Tensor<float, Dyn, Dyn, Dyn>;  // [T, H, D]

X filled(index_t t, index_t h, index_t d, index_t salt) {
  X x = X::zeros(t, h, d);
  for (index_t i = 0; i < x.numel(); ++i) x.data()[i] = static_cast<float>((i * 7919 + salt) % 1000) * 2e-3f - 1.0f;
  return x;
}

void forward_flops(benchmark::State& state, index_t t, index_t heads, double passes) {
  state.counters["FLOP/s"] = benchmark::Counter(passes * 4.0 * static_cast<double>(t * t) * 256 * static_cast<double>(heads),
                                                benchmark::Counter::kIsIterationInvariantRate);
}

void BM_attention_forward(benchmark::State& state) {
  const index_t t = state.range(0), hq = state.range(1), hkv = state.range(2);
  const X q = filled(t, hq, 256, 1), k = filled(t, hkv, 256, 2), v = filled(t, hkv, 256, 3);
  const qlora::AttentionParams p{1.0 / 16.0, state.range(3)};
  for (auto _ : state) benchmark::DoNotOptimize(qlora::attention_forward(q, k, v, p).out.data());
  forward_flops(state, t, hq, 1.0);
}

void BM_attention_forward_backward(benchmark::State& state) {
  const index_t t = state.range(0), hq = state.range(1), hkv = state.range(2);
  const X q = filled(t, hq, 256, 1), k = filled(t, hkv, 256, 2), v = filled(t, hkv, 256, 3), d_out = filled(t, hq, 256, 4);
  const qlora::AttentionParams p{1.0 / 16.0, state.range(3)};
  for (auto _ : state) {
    const auto f = qlora::attention_forward(q, k, v, p);
    benchmark::DoNotOptimize(qlora::attention_backward(d_out, q, k, v, f.out, f.lse, p).dq.data());
  }
  forward_flops(state, t, hq, 3.5);  // forward, recomputed scores, four backward GEMMs of the same size
}
}  // namespace

// {T, query heads, kv heads, window} per config, T = 512 and 1024.
static bench::ArgLists shapes(const bench::ConfigShape& c) {
  return bench::ArgLists{{512, c.heads, c.kv_heads, c.window}, {1024, c.heads, c.kv_heads, c.window}};
}
BENCHMARK(BM_attention_forward)
    ->ArgNames({"T", "heads", "kv_heads", "window"})
    ->Apply(bench::each_config<shapes>)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_attention_forward_backward)
    ->ArgNames({"T", "heads", "kv_heads", "window"})
    ->Apply(bench::each_config<shapes>)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
