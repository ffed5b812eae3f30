// Chunked LM head + cross-entropy on the GPU for ops/cross_entropy.hpp (formulas there). Per chunk of tokens × vocab:
// cuBLAS writes the logits chunk in the compute type (bf16 operands, fp32 output and accumulation), then
//   forward:  one block per row folds the chunk's max and Σ exp into the row's running (max, sum) (online logsumexp)
//             and picks the label's logit; after the last vocabulary chunk lse and the per-token loss are written;
//   backward: one elementwise kernel turns the chunk into d_z = (softmax − onehot) · scale (· tanh′ when capped),
//             rounded to the operand type, and two cuBLAS GEMMs add d_z · table_chunk and d_zᵀ · hidden_chunk into
//             compute-type accumulators.
// Scratch (logits chunk, row statistics, accumulators) is allocated by the caller and passed in CrossEntropyArgs.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <limits>

#include "../core/dtype.hpp"
#include "check.cuh"
#include "stream.cuh"
#include "matmul.cuh"
#include "reduce.cuh"

namespace qlora {
template <class T>
struct CrossEntropyArgs;  // ops/cross_entropy.hpp
}

namespace qlora::cuda {

struct CrossEntropyMaxOp {
  template <class V>
  __device__ V operator()(V a, V b) const { return a > b ? a : b; }
};
struct CrossEntropyAddOp {
  template <class V>
  __device__ V operator()(V a, V b) const { return a + b; }
};

// Row-major out[m, n] = op(A)[m, k] · op(B)[k, n] (+ out when accumulate): A, B of type In, out of type Out.
template <class In, class Out>
void cross_entropy_gemm(index_t m, index_t n, index_t k, bool ta, bool tb, const In* a, const In* b, Out* out,
                        bool accumulate, const Stream& stream) {
  using S = typename blas_type<Out>::scale;
  const S alpha = 1, beta = accumulate ? 1 : 0;
  const int lda = static_cast<int>(ta ? m : k), ldb = static_cast<int>(tb ? k : n);
  check(cublasGemmEx(blas_handle(stream), tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                     static_cast<int>(n), static_cast<int>(m), static_cast<int>(k), &alpha, b, blas_type<In>::data,
                     ldb, a, blas_type<In>::data, lda, &beta, out, blas_type<Out>::data, static_cast<int>(n),
                     blas_compute<In>(stream), CUBLAS_GEMM_DEFAULT),
        "cross_entropy", "cublasGemmEx");
}

template <class C>
__device__ C cross_entropy_cap(C z, C cap) {
  return cap > 0 ? cap * std::tanh(z / cap) : z;
}

// grid: nt blocks (one per row of the chunk). rows = [running max | running sum | label logit], each [chunk_tokens].
template <class T>
__global__ void cross_entropy_stats_kernel(CrossEntropyArgs<T> a, index_t t0, index_t v0, index_t nv) {
  using C = compute_t<T>;
  const index_t r = blockIdx.x;
  const C* row = a.scratch_logits + r * nv;
  C m = -std::numeric_limits<C>::infinity();
  for (index_t v = threadIdx.x; v < nv; v += blockDim.x) m = max(m, cross_entropy_cap(row[v], a.softcap));
  m = block_reduce(m, CrossEntropyMaxOp{}, -std::numeric_limits<C>::infinity());
  C s = 0;
  for (index_t v = threadIdx.x; v < nv; v += blockDim.x) s += std::exp(cross_entropy_cap(row[v], a.softcap) - m);
  s = block_reduce(s, CrossEntropyAddOp{}, C(0));
  if (threadIdx.x != 0) return;
  C* run_max = a.scratch_rows;
  C* run_sum = run_max + a.chunk_tokens;
  C* label_logit = run_sum + a.chunk_tokens;
  if (v0 == 0) {
    run_max[r] = m;
    run_sum[r] = s;
  } else {
    const C merged = max(run_max[r], m);
    run_sum[r] = run_sum[r] * std::exp(run_max[r] - merged) + s * std::exp(m - merged);
    run_max[r] = merged;
  }
  const std::int32_t label = a.labels[t0 + r];
  if (label >= v0 && label < v0 + nv) label_logit[r] = cross_entropy_cap(row[label - v0], a.softcap);
}

// One thread per row of the chunk: lse and loss of tokens [t0, t0 + nt).
template <class T>
__global__ void cross_entropy_finish_kernel(CrossEntropyArgs<T> a, index_t t0, index_t nt) {
  using C = compute_t<T>;
  const index_t r = blockIdx.x * index_t{blockDim.x} + threadIdx.x;
  if (r >= nt) return;
  const C* run_max = a.scratch_rows;
  const C lse = run_max[r] + std::log(run_max[a.chunk_tokens + r]);
  a.lse_out[t0 + r] = lse;
  a.loss_out[t0 + r] = a.labels[t0 + r] < 0 ? C(0) : lse - run_max[2 * a.chunk_tokens + r];
}

// d_z for every element of the chunk (grid-stride), written as T into scratch_d_logits (in place when T is C).
template <class T>
__global__ void cross_entropy_grad_kernel(CrossEntropyArgs<T> a, index_t t0, index_t nt, index_t v0, index_t nv) {
  using C = compute_t<T>;
  for (index_t e = blockIdx.x * index_t{blockDim.x} + threadIdx.x; e < nt * nv; e += index_t{gridDim.x} * blockDim.x) {
    const index_t r = e / nv, v = e % nv;
    const std::int32_t label = a.labels[t0 + r];
    C g = 0;
    if (label >= 0) {
      const C z = a.scratch_logits[e];
      const C t = a.softcap > 0 ? std::tanh(z / a.softcap) : C(0);
      const C l = a.softcap > 0 ? a.softcap * t : z;
      g = std::exp(l - a.lse[t0 + r]) - (v0 + v == label ? C(1) : C(0));
      if (a.softcap > 0) g *= C(1) - t * t;
      g *= a.scale;
    }
    a.scratch_d_logits[e] = convert<T>(g);
  }
}

template <class T>
__global__ void cross_entropy_store_kernel(const compute_t<T>* src, T* dst, index_t n) {
  for (index_t i = blockIdx.x * index_t{blockDim.x} + threadIdx.x; i < n; i += index_t{gridDim.x} * blockDim.x)
    dst[i] = convert<T>(src[i]);
}

inline unsigned cross_entropy_blocks(index_t n) {
  return static_cast<unsigned>(std::clamp<index_t>((n + 255) / 256, 1, 65535));
}

template <class T>
void cross_entropy_forward(const CrossEntropyArgs<T>& a, const Stream& stream) {
  const DeviceGuard guard(stream.device);
  for (index_t t0 = 0; t0 < a.tokens; t0 += a.chunk_tokens) {
    const index_t nt = std::min(a.chunk_tokens, a.tokens - t0);
    for (index_t v0 = 0; v0 < a.vocab; v0 += a.chunk_vocab) {
      const index_t nv = std::min(a.chunk_vocab, a.vocab - v0);
      cross_entropy_gemm(nt, nv, a.channels, false, true, a.hidden + t0 * a.channels, a.table + v0 * a.channels,
                         a.scratch_logits, false, stream);
      cross_entropy_stats_kernel<<<static_cast<unsigned>(nt), 256, 0, stream.handle>>>(a, t0, v0, nv);
      check(cudaGetLastError(), "cross_entropy", "launching the row statistics kernel");
    }
    cross_entropy_finish_kernel<<<cross_entropy_blocks(nt), 256, 0, stream.handle>>>(a, t0, nt);
    check(cudaGetLastError(), "cross_entropy", "launching the loss kernel");
  }
}

template <class T>
void cross_entropy_backward(const CrossEntropyArgs<T>& a, const Stream& stream) {
  const DeviceGuard guard(stream.device);
  using C = compute_t<T>;
  const index_t ch = a.channels;
  C* d_table = a.scratch_d_table;
  if constexpr (std::is_same_v<T, C>) d_table = a.d_table;  // accumulate straight into the (zeroed) gradient
  for (index_t t0 = 0; t0 < a.tokens; t0 += a.chunk_tokens) {
    const index_t nt = std::min(a.chunk_tokens, a.tokens - t0);
    const T* h = a.hidden + t0 * ch;
    for (index_t v0 = 0; v0 < a.vocab; v0 += a.chunk_vocab) {
      const index_t nv = std::min(a.chunk_vocab, a.vocab - v0);
      const T* w = a.table + v0 * ch;
      cross_entropy_gemm(nt, nv, ch, false, true, h, w, a.scratch_logits, false, stream);
      cross_entropy_grad_kernel<<<cross_entropy_blocks(nt * nv), 256, 0, stream.handle>>>(a, t0, nt, v0, nv);
      check(cudaGetLastError(), "cross_entropy", "launching the logits gradient kernel");
      cross_entropy_gemm(nt, ch, nv, false, false, a.scratch_d_logits, w, a.scratch_d_hidden, v0 != 0, stream);
      if (a.d_table)
        cross_entropy_gemm(nv, ch, nt, true, false, a.scratch_d_logits, h, d_table + v0 * ch, true, stream);
    }
    cross_entropy_store_kernel<T><<<cross_entropy_blocks(nt * ch), 256, 0, stream.handle>>>(
        a.scratch_d_hidden, a.d_hidden + t0 * ch, nt * ch);
    check(cudaGetLastError(), "cross_entropy", "launching the d_hidden store kernel");
  }
  if (a.d_table && !std::is_same_v<T, C>) {
    cross_entropy_store_kernel<T><<<cross_entropy_blocks(a.vocab * ch), 256, 0, stream.handle>>>(
        a.scratch_d_table, a.d_table, a.vocab * ch);
    check(cudaGetLastError(), "cross_entropy", "launching the d_table store kernel");
  }
}

}  // namespace qlora::cuda
