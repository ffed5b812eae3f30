// Gemma RMSNorm on the CPU at Gemma 3 270M shapes: the hidden norms ([512 tokens, 640]) and the per-head q-norm
// ([512 · 4 heads, 256]), forward and backward, fp32 and bf16. bytes/s counts the tensors read and written once.
#include <benchmark/benchmark.h>

#include <qlora/ops/rmsnorm.hpp>

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
}  // namespace

// Gemma 3 270M: hidden norms [512, 640]; q-norm [512 tokens × 4 heads, 256].
BENCHMARK(BM_rmsnorm_forward<float>)->Args({512, 640})->Args({2048, 256})->UseRealTime();
BENCHMARK(BM_rmsnorm_forward<qlora::bf16>)->Args({512, 640})->UseRealTime();
BENCHMARK(BM_rmsnorm_backward<float>)->Args({512, 640, 0})->Args({512, 640, 1})->Args({2048, 256, 0})->UseRealTime();
