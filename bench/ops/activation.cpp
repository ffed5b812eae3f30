// GeGLU on the CPU at the MLP shapes of Gemma 3 270M, 1B and 4B ([512 tokens, intermediate]), forward (reads gate, up; writes
// out) and backward (reads gate, up, dy; writes d_gate, d_up), fp32 and bf16. bytes/s counts those tensors once.
#include <benchmark/benchmark.h>

#include <qlora/ops/activation.hpp>

#include "../shapes.hpp"

namespace {
using qlora::Dyn;
using qlora::Tensor;

template <class T>
Tensor<T, Dyn, Dyn> filled(qlora::index_t r, qlora::index_t c, int salt) {
  auto t = Tensor<T, Dyn, Dyn>::zeros(r, c);
  for (qlora::index_t i = 0; i < t.numel(); ++i)
    t.data()[i] = qlora::convert<T>(static_cast<float>((i * 7919 + salt) % 1000) * 8e-3f - 4.0f);
  return t;
}

template <class T>
void BM_geglu_forward(benchmark::State& state) {
  const auto gate = filled<T>(state.range(0), state.range(1), 1), up = filled<T>(state.range(0), state.range(1), 2);
  for (auto _ : state) benchmark::DoNotOptimize(qlora::geglu_forward(gate, up).data());
  state.SetBytesProcessed(state.iterations() * 3 * gate.numel() * static_cast<std::int64_t>(sizeof(T)));
}

template <class T>
void BM_geglu_backward(benchmark::State& state) {
  const auto gate = filled<T>(state.range(0), state.range(1), 1), up = filled<T>(state.range(0), state.range(1), 2);
  const auto dy = filled<T>(state.range(0), state.range(1), 3);
  for (auto _ : state) benchmark::DoNotOptimize(qlora::geglu_backward(gate, up, dy).d_gate.data());
  state.SetBytesProcessed(state.iterations() * 5 * gate.numel() * static_cast<std::int64_t>(sizeof(T)));
}
}  // namespace

static bench::ArgLists mlp(const bench::ConfigShape& c) {
  return bench::ArgLists{{bench::kTokens, c.intermediate}};
}
BENCHMARK(BM_geglu_forward<float>)->ArgNames({"tokens", "intermediate"})->Apply(bench::each_config<mlp>)->UseRealTime();
BENCHMARK(BM_geglu_forward<qlora::bf16>)->ArgNames({"tokens", "intermediate"})->Args({512, 2048})->UseRealTime();
BENCHMARK(BM_geglu_backward<float>)->ArgNames({"tokens", "intermediate"})->Apply(bench::each_config<mlp>)->UseRealTime();
BENCHMARK(BM_geglu_backward<qlora::bf16>)->ArgNames({"tokens", "intermediate"})->Args({512, 2048})->UseRealTime();
