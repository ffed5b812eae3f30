// Attention on the GPU, bf16, Gemma 3 270M heads (4 query heads, 1 kv head, head_dim 256), causal, T = 512 … 8192:
// the op's two CUDA paths (forward; forward + backward) — the GEMM chunks of cuda/attention_gemm.cuh (the default) and
// the scalar flash kernels of cuda/attention.cuh (the reference, to T = 2048) — against naive materialised attention as
// transformers' eager path computes it: cuBLAS scores [Hq, T, T] in fp32, a masked softmax kernel writing bf16
// probabilities, cuBLAS P·V. Counter peak_MiB: the caching allocator's peak above the inputs. Skips without a GPU.
#include <benchmark/benchmark.h>

#include <qlora/cuda.hpp>

#include "skip.cuh"
#include <qlora/ops/attention.hpp>

namespace {
using namespace qlora;
using X = Tensor<bf16, Dyn, Dyn, Dyn>;  // [T, H, D]
constexpr index_t kHq = 4, kHkv = 1, kD = 256;

using bench::no_gpu;

// One block per (row, head): p = softmax over j ≤ i of s (fp32), rounded to bf16 as eager attention does.
__global__ void naive_softmax_kernel(const float* s, bf16* prob, index_t tokens) {
  const index_t i = blockIdx.x, row = (blockIdx.y * tokens + i) * tokens;
  float m = -INFINITY;
  for (index_t j = threadIdx.x; j <= i; j += blockDim.x) m = fmaxf(m, s[row + j]);
  m = cuda::block_reduce(m, cuda::AttentionMaxOp{}, -INFINITY);
  float l = 0;
  for (index_t j = threadIdx.x; j <= i; j += blockDim.x) l += __expf(s[row + j] - m);
  l = cuda::block_reduce(l, cuda::AttentionAddOp{}, 0.0f);
  for (index_t j = threadIdx.x; j < tokens; j += blockDim.x) prob[row + j] = bf16(j <= i ? __expf(s[row + j] - m) / l : 0.0f);
}

// out[T, Hq, D] = softmax(scale · q kᵀ + causal mask) v with the [Hq, T, T] scores and probabilities in memory.
void naive_attention(const X& q, const X& k, const X& v, X& out, float* scores, bf16* prob) {
  const cuda::Stream stream(q.device());  // q's GPU and stream, as the fused kernels use
  const cuda::DeviceGuard guard(stream.device);
  const int t = static_cast<int>(q.size(0));
  const float scale = 1.0f / 16.0f, zero = 0.0f, one = 1.0f;
  // column-major: Sᵀ[h] = K · Q[h]ᵀ  (K: [T, D] rows of stride Hkv·D, Q[h]: stride Hq·D, offset h·D)
  cuda::check(cublasGemmStridedBatchedEx(cuda::blas_handle(stream), CUBLAS_OP_T, CUBLAS_OP_N, t, t, kD, &scale,
                                         k.data(), CUDA_R_16BF, kHkv * kD, 0, q.data(), CUDA_R_16BF, kHq * kD, kD,
                                         &zero, scores, CUDA_R_32F, t, index_t{t} * t, kHq, CUBLAS_COMPUTE_32F,
                                         CUBLAS_GEMM_DEFAULT),
              "bench", "scores");
  naive_softmax_kernel<<<dim3(static_cast<unsigned>(t), kHq), 256, 0, stream.handle>>>(scores, prob, t);
  // column-major: O[h]ᵀ = Vᵀ · P[h]ᵀ
  cuda::check(cublasGemmStridedBatchedEx(cuda::blas_handle(stream), CUBLAS_OP_N, CUBLAS_OP_N, kD, t, t, &one, v.data(),
                                         CUDA_R_16BF, kHkv * kD, 0, prob, CUDA_R_16BF, t, index_t{t} * t, &zero,
                                         out.data(), CUDA_R_16BF, kHq * kD, kD, kHq, CUBLAS_COMPUTE_32F,
                                         CUBLAS_GEMM_DEFAULT),
              "bench", "P·V");
}

void attention_counters(benchmark::State& state, index_t t, double passes, std::size_t peak) {
  state.counters["FLOP/s"] = benchmark::Counter(passes * 2.0 * static_cast<double>(t * t) * kD * kHq,  // causal half
                                                benchmark::Counter::kIsIterationInvariantRate);
  state.counters["peak_MiB"] = static_cast<double>(peak) / (1024.0 * 1024.0);
}

void BM_attention_fused_cuda(benchmark::State& state, cuda::AttentionPath path) {
  if (no_gpu(state)) return;
  const cuda::AttentionPathScope scope(path);
  const index_t t = state.range(0);
  const Device gpu = cuda::device();
  const X q = X::zeros_on(gpu, t, kHq, kD), k = X::zeros_on(gpu, t, kHkv, kD), v = X::zeros_on(gpu, t, kHkv, kD);
  const std::size_t base = gpu.memory().current_bytes;
  gpu.allocator().reset_peak();
  for (auto _ : state) {
    auto f = attention_forward(q, k, v, AttentionParams{1.0 / 16.0, 0});
    gpu.allocator().synchronize();
    benchmark::DoNotOptimize(f.out.data());
  }
  attention_counters(state, t, 1.0, gpu.memory().peak_bytes - base);
}

void BM_attention_fused_backward_cuda(benchmark::State& state, cuda::AttentionPath path) {
  if (no_gpu(state)) return;
  const cuda::AttentionPathScope scope(path);
  const index_t t = state.range(0);
  const Device gpu = cuda::device();
  const X q = X::zeros_on(gpu, t, kHq, kD), k = X::zeros_on(gpu, t, kHkv, kD), v = X::zeros_on(gpu, t, kHkv, kD);
  const AttentionParams p{1.0 / 16.0, 0};
  const auto f = attention_forward(q, k, v, p);
  const std::size_t base = gpu.memory().current_bytes;
  gpu.allocator().reset_peak();
  for (auto _ : state) {
    auto g = attention_backward(f.out, q, k, v, f.out, f.lse, p);
    gpu.allocator().synchronize();
    benchmark::DoNotOptimize(g.dq.data());
  }
  attention_counters(state, t, 2.5, gpu.memory().peak_bytes - base);
}

void BM_attention_naive_cuda(benchmark::State& state) {
  if (no_gpu(state)) return;
  const index_t t = state.range(0);
  const Device gpu = cuda::device();
  const X q = X::zeros_on(gpu, t, kHq, kD), k = X::zeros_on(gpu, t, kHkv, kD), v = X::zeros_on(gpu, t, kHkv, kD);
  const std::size_t base = gpu.memory().current_bytes;
  gpu.allocator().reset_peak();
  for (auto _ : state) {
    Tensor<float, Dyn> scores(Shape<Dyn>(kHq * t * t), gpu);  // [Hq, T, T]
    Tensor<bf16, Dyn> prob(Shape<Dyn>(kHq * t * t), gpu);     // [Hq, T, T]
    X out = X::zeros_on(gpu, t, kHq, kD);
    naive_attention(q, k, v, out, scores.data(), prob.data());
    gpu.allocator().synchronize();
    benchmark::DoNotOptimize(out.data());
  }
  attention_counters(state, t, 1.0, gpu.memory().peak_bytes - base);
}
}  // namespace

BENCHMARK_CAPTURE(BM_attention_fused_cuda, gemm, cuda::AttentionPath::gemm)
    ->RangeMultiplier(2)->Range(512, 8192)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_attention_fused_backward_cuda, gemm, cuda::AttentionPath::gemm)
    ->RangeMultiplier(2)->Range(512, 8192)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_attention_fused_cuda, flash_scalar, cuda::AttentionPath::flash_scalar)
    ->RangeMultiplier(2)->Range(512, 2048)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_attention_fused_backward_cuda, flash_scalar, cuda::AttentionPath::flash_scalar)
    ->RangeMultiplier(2)->Range(512, 2048)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_attention_naive_cuda)->RangeMultiplier(2)->Range(512, 8192)->Unit(benchmark::kMillisecond)->UseRealTime();
