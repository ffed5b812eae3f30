// matmul on the CPU at the projections of Gemma 3 270M, 1B and 4B (512 tokens; q_proj, k/v_proj, o_proj, gate/up,
// down), forward (x·Wᵀ) and the input gradient (dy·W; W is frozen under QLoRA), the weight gradient at the 270M MLP,
// plus a square GEMM for the machine's Eigen peak. Counter FLOP/s = 2·M·N·K per call.
#include <benchmark/benchmark.h>

#include "../shapes.hpp"

#include <qlora/qlora.hpp>

namespace {
using qlora::Dyn;
using qlora::Tensor;
using qlora::Transpose;
using M = Tensor<float, Dyn, Dyn>;

M filled(qlora::index_t r, qlora::index_t c) {
  M t = M::zeros(r, c);
  for (qlora::index_t i = 0; i < t.numel(); ++i) t.data()[i] = static_cast<float>((i * 7919) % 1000) * 1e-3f - 0.5f;
  return t;
}

void flops(benchmark::State& state, qlora::index_t m, qlora::index_t n, qlora::index_t k) {
  state.counters["FLOP/s"] =
      benchmark::Counter(2.0 * static_cast<double>(m * n * k), benchmark::Counter::kIsIterationInvariantRate);
}

// y[T, out] = x[T, in] · W[out, in]ᵀ
void BM_matmul_linear_forward(benchmark::State& state) {
  const auto t = state.range(0), in = state.range(1), out = state.range(2);
  const M x = filled(t, in), w = filled(out, in);
  for (auto _ : state) benchmark::DoNotOptimize(qlora::matmul<Transpose::no, Transpose::yes>(x, w).data());
  flops(state, t, out, in);
}
// dx[T, in] = dy[T, out] · W[out, in]
void BM_matmul_linear_grad_input(benchmark::State& state) {
  const auto t = state.range(0), in = state.range(1), out = state.range(2);
  const M dy = filled(t, out), w = filled(out, in);
  for (auto _ : state) benchmark::DoNotOptimize(qlora::matmul(dy, w).data());
  flops(state, t, in, out);
}
// dW[out, in] = dy[T, out]ᵀ · x[T, in]
void BM_matmul_linear_grad_weight(benchmark::State& state) {
  const auto t = state.range(0), in = state.range(1), out = state.range(2);
  const M dy = filled(t, out), x = filled(t, in);
  for (auto _ : state) benchmark::DoNotOptimize(qlora::matmul<Transpose::yes, Transpose::no>(dy, x).data());
  flops(state, out, in, t);
}
void BM_matmul_square(benchmark::State& state) {
  const auto n = state.range(0);
  const M a = filled(n, n), b = filled(n, n);
  for (auto _ : state) benchmark::DoNotOptimize(qlora::matmul(a, b).data());
  flops(state, n, n, n);
}
}  // namespace

// {tokens, in, out} of the seven projections' four distinct shapes, per config.
static bench::ArgLists projections(const bench::ConfigShape& c) {
  return bench::ArgLists{{bench::kTokens, c.hidden, c.q_dim},
                                                {bench::kTokens, c.hidden, c.kv_dim},
                                                {bench::kTokens, c.q_dim, c.hidden},
                                                {bench::kTokens, c.hidden, c.intermediate},
                                                {bench::kTokens, c.intermediate, c.hidden}};
}
BENCHMARK(BM_matmul_linear_forward)->ArgNames({"tokens", "in", "out"})->Apply(bench::each_config<projections>)->UseRealTime();
BENCHMARK(BM_matmul_linear_grad_input)->ArgNames({"tokens", "in", "out"})->Apply(bench::each_config<projections>)->UseRealTime();
BENCHMARK(BM_matmul_linear_grad_weight)->Args({512, 640, 2048})->UseRealTime();
BENCHMARK(BM_matmul_square)->Arg(1024)->Arg(2048)->UseRealTime();
