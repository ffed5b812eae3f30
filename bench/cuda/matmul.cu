// matmul on the GPU through cuBLAS (bf16 and fp32 with fp32 accumulation) at Gemma 3 shapes, and a fused expression
// kernel vs the same work with a temporary. FLOP/s = 2·M·N·K. Skips without a GPU.
#include <benchmark/benchmark.h>

#include <qlora/cuda.hpp>

#include "skip.cuh"

namespace {
using namespace qlora;

using bench::no_gpu;

template <class T>
void BM_matmul_cuda(benchmark::State& state) {
  if (no_gpu(state)) return;
  const index_t m = state.range(0), k = state.range(1), n = state.range(2);
  const Device gpu = cuda::device();
  const auto a = Tensor<T, Dyn, Dyn>::zeros_on(gpu, m, k);
  const auto w = Tensor<T, Dyn, Dyn>::zeros_on(gpu, n, k);
  for (auto _ : state) {
    auto y = matmul<Transpose::no, Transpose::yes>(a, w);
    gpu.allocator().synchronize();
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["FLOP/s"] = benchmark::Counter(2.0 * static_cast<double>(m * n * k),
                                                benchmark::Counter::kIsIterationInvariantRate);
}

void BM_expr_fused_cuda(benchmark::State& state) {
  if (no_gpu(state)) return;
  const Device gpu = cuda::device();
  using M = Tensor<float, Dyn, Dim<2048>>;
  auto a = M::zeros_on(gpu, state.range(0)), b = M::zeros_on(gpu, state.range(0)), c = M::zeros_on(gpu, state.range(0));
  auto y = M::zeros_on(gpu, state.range(0));
  for (auto _ : state) {
    y = a * b + c;
    gpu.allocator().synchronize();
  }
  state.SetBytesProcessed(state.iterations() * y.numel() * 16);
}

void BM_expr_temporaries_cuda(benchmark::State& state) {
  if (no_gpu(state)) return;
  const Device gpu = cuda::device();
  using M = Tensor<float, Dyn, Dim<2048>>;
  auto a = M::zeros_on(gpu, state.range(0)), b = M::zeros_on(gpu, state.range(0)), c = M::zeros_on(gpu, state.range(0));
  auto y = M::zeros_on(gpu, state.range(0));
  for (auto _ : state) {
    M t = evaluate<float, Dyn, Dim<2048>>(a * b, gpu);
    y = t + c;
    gpu.allocator().synchronize();
  }
  state.SetBytesProcessed(state.iterations() * y.numel() * 16);
}
}  // namespace

// Gemma 3 4B: q_proj 2560 -> 2048, gate/up 2560 -> 10240, down 10240 -> 2560, 2048 tokens; and a square GEMM.
BENCHMARK(BM_matmul_cuda<bf16>)->Args({2048, 2560, 10240})->Args({2048, 10240, 2560})->Args({8192, 8192, 8192})->UseRealTime();
BENCHMARK(BM_matmul_cuda<float>)->Args({2048, 2560, 10240})->UseRealTime();
BENCHMARK(BM_expr_fused_cuda)->Arg(8192)->UseRealTime();
BENCHMARK(BM_expr_temporaries_cuda)->Arg(8192)->UseRealTime();
