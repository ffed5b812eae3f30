// Gemma RMSNorm on the CPU at Gemma 3 270M, 1B and 4B shapes: the hidden norms ([512 tokens, hidden]) and the
// per-head q-norm ([512 · heads, head_dim]), forward and backward, fp32 (bf16 at the 270M); Gemma 4's norm scaled by
// the stored weight (hidden 1536, E2B) and its weight-free v-norm ([512 · 1 KV head, 512] on full layers). bytes/s
// counts the tensors read and written once.
#include <benchmark/benchmark.h>

#include <qlora/ops/rmsnorm.hpp>

#include "../shapes.hpp"

namespace {
using qlora::Dyn;
using qlora::Tensor;

template <class T>
Tensor<T, Dyn, Dyn> filled(qlora::index_t r, qlora::index_t c) {
  auto t = Tensor<T, Dyn, Dyn>::zeros(r, c);
  for (qlora::index_t i = 0; i < t.numel(); ++i)
    t.data()[i] = qlora::convert<T>(static_cast<float>((i * 7919) % 1000) * 2e-3f - 1.0f);
  return t;
}

// y[rows, C] = rmsnorm(x[rows, C], w[C]): reads x, writes y.
template <class T>
void BM_rmsnorm_forward(benchmark::State& state) {
  const auto rows = state.range(0), cols = state.range(1);
  const auto x = filled<T>(rows, cols);
  const auto w = Tensor<T, Dyn>::zeros(cols);
  for (auto _ : state) benchmark::DoNotOptimize(qlora::rmsnorm_forward(x, w, 1e-6).y.data());
  state.SetBytesProcessed(state.iterations() * 2 * rows * cols * static_cast<std::int64_t>(sizeof(T)));
}

// dx (and dw when range(2) is 1) from dy, x: reads dy and x, writes dx.
template <class T>
void BM_rmsnorm_backward(benchmark::State& state) {
  const auto rows = state.range(0), cols = state.range(1);
  const bool need_dw = state.range(2) != 0;
  const auto x = filled<T>(rows, cols), dy = filled<T>(rows, cols);
  const auto w = Tensor<T, Dyn>::zeros(cols);
  const auto fwd = qlora::rmsnorm_forward(x, w, 1e-6);
  for (auto _ : state) benchmark::DoNotOptimize(qlora::rmsnorm_backward(dy, x, w, fwd.rstd, true, need_dw).dx.data());
  state.SetBytesProcessed(state.iterations() * (need_dw ? 5 : 3) * rows * cols * static_cast<std::int64_t>(sizeof(T)));
}

// Gemma 4: y = x̂ · w (range(2) 0) or the weight-free y = x̂ (range(2) 1), forward and backward.
void BM_rmsnorm_gemma4(benchmark::State& state) {
  const auto rows = state.range(0), cols = state.range(1);
  const bool unscaled = state.range(2) != 0;
  const auto x = filled<float>(rows, cols), dy = filled<float>(rows, cols);
  const auto w = filled<float>(1, cols).reshape<Dyn>(cols);
  for (auto _ : state) {
    if (unscaled) {
      const auto f = qlora::rmsnorm_unscaled_forward(x, 1e-6);
      benchmark::DoNotOptimize(qlora::rmsnorm_unscaled_backward(dy, x, f.rstd).data());
    } else {
      const auto f = qlora::rmsnorm_forward(x, w, 1e-6, qlora::NormWeight::w);
      benchmark::DoNotOptimize(qlora::rmsnorm_backward(dy, x, w, f.rstd, true, false, qlora::NormWeight::w).dx.data());
    }
  }
  state.SetBytesProcessed(state.iterations() * 5 * rows * cols * static_cast<std::int64_t>(sizeof(float)));
}
}  // namespace

// {rows, cols} of the hidden norms and the q-norm; backward with and without dw (the norm weights are frozen).
static bench::ArgLists norms(const bench::ConfigShape& c) {
  return bench::ArgLists{{bench::kTokens, c.hidden}, {bench::kTokens * c.heads, c.head_dim}};
}
static bench::ArgLists norms_backward(const bench::ConfigShape& c) {
  return bench::ArgLists{
      {bench::kTokens, c.hidden, 0}, {bench::kTokens, c.hidden, 1}, {bench::kTokens * c.heads, c.head_dim, 0}};
}
BENCHMARK(BM_rmsnorm_forward<float>)->ArgNames({"rows", "cols"})->Apply(bench::each_config<norms>)->UseRealTime();
BENCHMARK(BM_rmsnorm_forward<qlora::bf16>)->ArgNames({"rows", "cols"})->Args({512, 640})->UseRealTime();
BENCHMARK(BM_rmsnorm_backward<float>)
    ->ArgNames({"rows", "cols", "dw"})
    ->Apply(bench::each_config<norms_backward>)
    ->UseRealTime();
BENCHMARK(BM_rmsnorm_gemma4)->ArgNames({"rows", "cols", "unscaled"})->Args({512, 1536, 0})->Args({512, 512, 1})->UseRealTime();
