// The Gemma 3 operator kernels on the GPU (RMSNorm, RoPE, GeGLU, scaled embedding) at Gemma 3 4B training shapes
// (2048 tokens, hidden 2560, 8 query heads × 256, intermediate 10240, bf16) and the 270M ones (512 tokens, 640,
// 4 × 256, 2048). bytes/s counts each tensor read or written once: these kernels are memory bound, so compare it
// with the GPU's bandwidth. Skips without a GPU.
#include <benchmark/benchmark.h>

#include <cstdint>

#include <qlora/cuda.hpp>

#include "skip.cuh"
#include <qlora/ops/activation.hpp>
#include <qlora/ops/embedding.hpp>
#include <qlora/ops/rmsnorm.hpp>
#include <qlora/ops/rope.hpp>

namespace {
using namespace qlora;

using bench::no_gpu;
void bytes(benchmark::State& state, index_t n) {
  state.counters["bytes/s"] = benchmark::Counter(static_cast<double>(n), benchmark::Counter::kIsIterationInvariantRate);
}

// range: rows, cols, backward (0/1); x: [rows, cols], w: [cols].
template <class T>
void BM_rmsnorm_cuda(benchmark::State& state) {
  if (no_gpu(state)) return;
  const index_t rows = state.range(0), cols = state.range(1);
  const bool back = state.range(2) != 0;
  const Device gpu = cuda::device();
  const auto x = Tensor<T, Dyn, Dyn>::zeros_on(gpu, rows, cols);
  const auto w = Tensor<T, Dyn>::zeros_on(gpu, cols);
  const auto fwd = rmsnorm_forward(x, w, 1e-6);
  for (auto _ : state) {
    if (back) benchmark::DoNotOptimize(rmsnorm_backward(x, x, w, fwd.rstd, true, false).dx.data());
    else benchmark::DoNotOptimize(rmsnorm_forward(x, w, 1e-6).y.data());
    gpu.allocator().synchronize();
  }
  bytes(state, (back ? 3 : 2) * rows * cols * static_cast<index_t>(sizeof(T)));
}

// range: tokens, heads, backward (0/1); x: [tokens, heads, 256].
template <class T>
void BM_rope_cuda(benchmark::State& state) {
  if (no_gpu(state)) return;
  const index_t tokens = state.range(0), heads = state.range(1);
  const Device gpu = cuda::device();
  const auto x = Tensor<T, Dyn, Dyn, Dim<256>>::zeros_on(gpu, tokens, heads);
  const auto pos = Tensor<std::int32_t, Dyn>::zeros_on(gpu, tokens);
  const RopeParams p{1e6, 8};
  for (auto _ : state) {
    auto out = state.range(2) ? rope_backward(x, pos, p) : rope_forward(x, pos, p);
    gpu.allocator().synchronize();
    benchmark::DoNotOptimize(out.data());
  }
  bytes(state, 2 * x.numel() * static_cast<index_t>(sizeof(T)));
}

// range: tokens, intermediate, backward (0/1); gate, up: [tokens, intermediate].
template <class T>
void BM_geglu_cuda(benchmark::State& state) {
  if (no_gpu(state)) return;
  const Device gpu = cuda::device();
  const auto gate = Tensor<T, Dyn, Dyn>::zeros_on(gpu, state.range(0), state.range(1));
  const bool back = state.range(2) != 0;
  for (auto _ : state) {
    if (back) benchmark::DoNotOptimize(geglu_backward(gate, gate, gate).d_gate.data());
    else benchmark::DoNotOptimize(geglu_forward(gate, gate).data());
    gpu.allocator().synchronize();
  }
  bytes(state, (back ? 5 : 3) * gate.numel() * static_cast<index_t>(sizeof(T)));
}

// range: tokens, hidden; table: [262144, hidden] (Gemma 3 vocabulary), forward gather (includes the id check).
template <class T>
void BM_embedding_cuda(benchmark::State& state) {
  if (no_gpu(state)) return;
  const index_t tokens = state.range(0), hidden = state.range(1);
  const Device gpu = cuda::device();
  const auto table = Tensor<T, Dyn, Dyn>::zeros_on(gpu, 262144, hidden);
  const auto ids = Tensor<std::int32_t, Dyn>::zeros_on(gpu, tokens);
  for (auto _ : state) benchmark::DoNotOptimize(embedding_forward(ids, table).data());  // synchronises (id check)
  bytes(state, 2 * tokens * hidden * static_cast<index_t>(sizeof(T)));
}
}  // namespace

BENCHMARK(BM_rmsnorm_cuda<bf16>)->Args({2048, 2560, 0})->Args({2048, 2560, 1})->Args({16384, 256, 0})->UseRealTime();
BENCHMARK(BM_rmsnorm_cuda<float>)->Args({512, 640, 0})->Args({512, 640, 1})->UseRealTime();
BENCHMARK(BM_rope_cuda<bf16>)->Args({2048, 8, 0})->Args({2048, 8, 1})->UseRealTime();
BENCHMARK(BM_rope_cuda<float>)->Args({512, 4, 0})->UseRealTime();
BENCHMARK(BM_geglu_cuda<bf16>)->Args({2048, 10240, 0})->Args({2048, 10240, 1})->UseRealTime();
BENCHMARK(BM_geglu_cuda<float>)->Args({512, 2048, 0})->UseRealTime();
BENCHMARK(BM_embedding_cuda<bf16>)->Args({2048, 2560})->UseRealTime();
