// The vectorised elementwise math (core/vector_math.hpp) against libm's scalar calls, on 1 Mi floats in [-8, 8]:
// GeGLU's tanh and the softmax's exp. Their speed depends on the vector width the build targets (SSE2, AVX2,
// AVX-512, NEON), which scripts/bench-isa compares. items/s = elements.
#include <benchmark/benchmark.h>

#include <cmath>
#include <vector>

#include <qlora/core/random.hpp>
#include <qlora/core/vector_math.hpp>

namespace {
constexpr qlora::index_t kN = 1 << 20;

// Times fn(in, out, n) over kN inputs.
template <class Fn>
void elementwise(benchmark::State& state, Fn fn) {
  std::vector<float> x(kN), y(kN);
  for (qlora::index_t i = 0; i < kN; ++i)
    x[static_cast<std::size_t>(i)] = qlora::uniform01({5, 0}, static_cast<std::uint64_t>(i)) * 16.0f - 8.0f;
  for (auto _ : state) {
    fn(x.data(), y.data(), kN);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetItemsProcessed(state.iterations() * kN);
}
void libm_tanh(const float* in, float* out, qlora::index_t n) {
  for (qlora::index_t i = 0; i < n; ++i) out[i] = std::tanh(in[i]);
}
void libm_exp(const float* in, float* out, qlora::index_t n) {
  for (qlora::index_t i = 0; i < n; ++i) out[i] = std::exp(in[i]);
}

void BM_tanh_n(benchmark::State& state) { elementwise(state, qlora::cpu::tanh_n<float>); }
void BM_tanh_libm(benchmark::State& state) { elementwise(state, libm_tanh); }
void BM_exp_n(benchmark::State& state) { elementwise(state, qlora::cpu::exp_n<float>); }
void BM_exp_libm(benchmark::State& state) { elementwise(state, libm_exp); }
}  // namespace

BENCHMARK(BM_tanh_n);
BENCHMARK(BM_tanh_libm);
BENCHMARK(BM_exp_n);
BENCHMARK(BM_exp_libm);
