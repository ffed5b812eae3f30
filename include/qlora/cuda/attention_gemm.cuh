// Attention through cuBLAS GEMMs over chunks of query rows, for ops/attention.hpp (formulas there): the GPU path that
// runs on the tensor cores (bf16 operands, or fp32 operands on a device whose GEMMs run in bf16) while the scalar
// flash kernels of cuda/attention.cuh stay the reference the tests compare with.
//
// A chunk of C query rows [i0, i1) of every head sees the keys [k0, i1) (k0 > 0 under a sliding window), L = i1 - k0:
//   forward   S = scale · Q Kᵀ  [Hq, C, L] (compute type)  → masked row softmax: P, lse  → O = P V
//   backward  P again from S and lse; dV += Pᵀ dO; dP = dO Vᵀ; dS = scale · P ∘ (dP − δ), δ = Σ_d dO ∘ O;
//             dQ = dS K; dK += dSᵀ Q
// so only one chunk's [Hq, C, L] scores exist at a time (C is chosen to keep them within the budget, 256 MiB);
// the [T, T] matrix of a whole sequence is never held. Grouped-query heads: query head h = g · group + r reads kv head
// g; each GEMM is one strided batch over the kv heads for one r. dK and dV accumulate over chunks and a group's heads
// in the compute type (fp32 scratch for bf16 tensors), then are converted.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>

#include "../core/dtype.hpp"
#include "attention.cuh"
#include "check.cuh"
#include "matmul.cuh"
#include "reduce.cuh"
#include "stream.cuh"

namespace qlora::cuda {

// Which CUDA attention ops/attention.hpp runs: the GEMM chunks (default) or the scalar flash kernels (the reference).
enum class AttentionPath { gemm, flash_scalar };
inline AttentionPath& attention_path_setting() {
  static AttentionPath path = AttentionPath::gemm;
  return path;
}
inline AttentionPath attention_path() { return attention_path_setting(); }
// Sets the path for the whole process and returns the previous one (tests compare both with the CPU).
inline AttentionPath set_attention_path(AttentionPath path) { return std::exchange(attention_path_setting(), path); }
// The path for the life of a scope (tests, benchmarks).
class AttentionPathScope {
 public:
  explicit AttentionPathScope(AttentionPath path) : previous_(set_attention_path(path)) {}
  ~AttentionPathScope() { set_attention_path(previous_); }
  AttentionPathScope(const AttentionPathScope&) = delete;
  AttentionPathScope& operator=(const AttentionPathScope&) = delete;

 private:
  AttentionPath previous_;
};

// Bytes of one chunk's score buffers (256 MiB unless set: tests make it small to run several chunks).
inline std::size_t& attention_gemm_budget_setting() {
  static std::size_t bytes = std::size_t{256} << 20;
  return bytes;
}
inline std::size_t set_attention_gemm_budget(std::size_t bytes) {
  return std::exchange(attention_gemm_budget_setting(), bytes);
}

// Rows per chunk and the scratch each buffer needs (elements).
struct AttentionGemmPlan {
  index_t chunk = 0;          // query rows per chunk
  index_t scores = 0;         // [Hq, chunk, T] in the compute type (S, then P), and again for dP in backward
  index_t probs = 0;          // [Hq, chunk, T] in T (P or dS as GEMM operands); 0 when T is the compute type
};

template <class T>
AttentionGemmPlan attention_gemm_plan(const AttentionShape& s) {
  using C = compute_t<T>;
  constexpr bool same = std::is_same_v<T, C>;
  const std::size_t per_row = static_cast<std::size_t>(s.q_heads * s.tokens) * (2 * sizeof(C) + (same ? 0 : sizeof(T)));
  AttentionGemmPlan plan;
  plan.chunk = std::clamp<index_t>(static_cast<index_t>(attention_gemm_budget_setting() / std::max<std::size_t>(per_row, 1)), 1,
                                   std::max<index_t>(s.tokens, 1));
  plan.scores = s.q_heads * plan.chunk * s.tokens;
  plan.probs = same ? 0 : plan.scores;
  return plan;
}

// Row-major C[m, n] = alpha · op(A)[m, k] · op(B)[k, n] + beta · C, batched with strides (elements), A/B of type In,
// C of type Out; cuBLAS is column-major, so it computes Cᵀ = op(B)ᵀ op(A)ᵀ with the operands swapped.
template <class In, class Out>
void attention_gemm_call(const Stream& stream, bool ta, bool tb, index_t m, index_t n, index_t k, double alpha,
                         const In* a, index_t lda, index_t stride_a, const In* b, index_t ldb, index_t stride_b,
                         double beta, Out* c, index_t ldc, index_t stride_c, index_t batch) {
  using S = typename blas_type<Out>::scale;
  const S al = static_cast<S>(alpha), be = static_cast<S>(beta);
  check(cublasGemmStridedBatchedEx(blas_handle(stream), tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                                   static_cast<int>(n), static_cast<int>(m), static_cast<int>(k), &al, b,
                                   blas_type<In>::data, static_cast<int>(ldb), stride_b, a, blas_type<In>::data,
                                   static_cast<int>(lda), stride_a, &be, c, blas_type<Out>::data, static_cast<int>(ldc),
                                   stride_c, static_cast<int>(batch), blas_compute<In>(stream), CUBLAS_GEMM_DEFAULT),
        "attention", "cublasGemmStridedBatchedEx");
}

// One chunk's geometry.
struct AttentionChunk {
  index_t i0 = 0, rows = 0, k0 = 0, keys = 0;
};

// S[h, r, c] for query i0 + r and key k0 + c, every head: `group` batched GEMMs over the kv heads.
// x_rows(h) of a [T, H, D] tensor: row stride H·D; head h at offset h·D.
template <class In, class Out>
void attention_gemm_scores(const Stream& stream, const AttentionShape& s, const AttentionChunk& ch, const In* q,
                           const In* k, double alpha, Out* scores) {
  const index_t group = s.q_heads / s.kv_heads, D = s.head_dim;
  for (index_t r = 0; r < group; ++r)
    attention_gemm_call<In, Out>(stream, false, true, ch.rows, ch.keys, D, alpha, q + (ch.i0 * s.q_heads + r) * D,
                                 s.q_heads * D, group * D, k + ch.k0 * s.kv_heads * D, s.kv_heads * D, D, 0.0,
                                 scores + r * ch.rows * ch.keys, ch.keys, group * ch.rows * ch.keys, s.kv_heads);
}

// Masked row softmax of one chunk: p = exp(s - lse) for visible keys (0 elsewhere) written over s, its copy in T
// (when T is not the compute type), and lse[h, i] saved (forward) — or, in backward (`lse_in`), p from the saved lse.
// One block per (head, row).
template <class T, class C>
__global__ void attention_gemm_softmax_kernel(C* scores, T* probs, C* lse_out, const C* lse_in, AttentionChunk ch,
                                              index_t tokens, index_t window, const std::int32_t* seg) {
  const index_t h = blockIdx.y, r = blockIdx.x, i = ch.i0 + r;
  C* row = scores + (h * ch.rows + r) * ch.keys;
  T* prow = probs ? probs + (h * ch.rows + r) * ch.keys : nullptr;
  const C inf = std::numeric_limits<C>::infinity();
  C lse;
  if (lse_in) {
    lse = lse_in[h * tokens + i];
  } else {
    C m = -inf;
    for (index_t c = threadIdx.x; c < ch.keys; c += blockDim.x)
      if (attention_visible(i, ch.k0 + c, window, seg)) m = max(m, row[c]);
    m = block_reduce(m, AttentionMaxOp{}, -inf);
    C l = 0;
    for (index_t c = threadIdx.x; c < ch.keys; c += blockDim.x)
      if (attention_visible(i, ch.k0 + c, window, seg)) l += std::exp(row[c] - m);
    l = block_reduce(l, AttentionAddOp{}, C(0));
    lse = m + std::log(l);  // a row always sees its own key: l >= 1
    if (threadIdx.x == 0) lse_out[h * tokens + i] = lse;
  }
  for (index_t c = threadIdx.x; c < ch.keys; c += blockDim.x) {
    const C p = attention_visible(i, ch.k0 + c, window, seg) ? std::exp(row[c] - lse) : C(0);
    row[c] = p;
    if (prow) prow[c] = convert<T>(p);
  }
}

// δ[h, i] = Σ_d dO[i, h, d] · O[i, h, d]: one warp per (row, head).
template <class T, class C>
__global__ void attention_gemm_delta_kernel(const T* d_out, const T* out, C* delta, index_t tokens, index_t heads,
                                            index_t D) {
  const index_t row = blockIdx.x * index_t{blockDim.x / 32} + threadIdx.x / 32;  // i · heads + h
  if (row >= tokens * heads) return;
  const int lane = threadIdx.x % 32;
  C acc = 0;
  for (index_t d = lane; d < D; d += 32) acc += convert<C>(d_out[row * D + d]) * convert<C>(out[row * D + d]);
  acc = warp_reduce(acc, AttentionAddOp{});
  if (lane == 0) delta[(row % heads) * tokens + row / heads] = acc;
}

// dS = scale · P ∘ (dP − δ_i) over one chunk, into `ds` (T; over P's copy) — or over dP itself when T is C.
template <class T, class C>
__global__ void attention_gemm_ds_kernel(const C* p, const C* dp, T* ds, const C* delta, AttentionChunk ch,
                                         index_t heads, index_t tokens, C scale) {
  const index_t n = heads * ch.rows * ch.keys;
  for (index_t e = blockIdx.x * index_t{blockDim.x} + threadIdx.x; e < n; e += index_t{gridDim.x} * blockDim.x) {
    const index_t h = e / (ch.rows * ch.keys), r = e / ch.keys % ch.rows;
    ds[e] = convert<T>(scale * p[e] * (dp[e] - delta[h * tokens + ch.i0 + r]));
  }
}

template <class Src, class Dst>
__global__ void attention_gemm_convert_kernel(const Src* src, Dst* dst, index_t n) {
  for (index_t e = blockIdx.x * index_t{blockDim.x} + threadIdx.x; e < n; e += index_t{gridDim.x} * blockDim.x)
    dst[e] = convert<Dst>(src[e]);
}

inline unsigned attention_gemm_blocks(index_t n) {
  return static_cast<unsigned>(std::clamp<index_t>((n + 255) / 256, 1, 65535));
}

inline AttentionChunk attention_gemm_chunk(const AttentionShape& s, index_t i0, index_t chunk) {
  AttentionChunk ch;
  ch.i0 = i0;
  ch.rows = std::min(chunk, s.tokens - i0);
  const index_t i1 = i0 + ch.rows;
  ch.k0 = s.window ? std::max<index_t>(0, i0 - s.window + 1) : 0;
  ch.keys = i1 - ch.k0;
  return ch;
}

// Forward. scores: plan.scores compute-type values; probs: plan.probs values of T (unused when T is C).
template <class T>
void attention_gemm_forward(const T* q, const T* k, const T* v, const std::int32_t* seg, T* out, compute_t<T>* lse,
                            const AttentionShape& s, const AttentionGemmPlan& plan, compute_t<T>* scores, T* probs,
                            const Stream& stream) {
  using C = compute_t<T>;
  const DeviceGuard guard(stream.device);
  const index_t group = s.q_heads / s.kv_heads, D = s.head_dim;
  for (index_t i0 = 0; i0 < s.tokens; i0 += plan.chunk) {
    const AttentionChunk ch = attention_gemm_chunk(s, i0, plan.chunk);
    attention_gemm_scores<T, C>(stream, s, ch, q, k, s.scale, scores);
    T* p_t = std::is_same_v<T, C> ? nullptr : probs;
    attention_gemm_softmax_kernel<T, C><<<dim3(static_cast<unsigned>(ch.rows), static_cast<unsigned>(s.q_heads)), 256, 0,
                                          stream.handle>>>(scores, p_t, lse, nullptr, ch, s.tokens, s.window, seg);
    check(cudaGetLastError(), "attention", "launching the softmax kernel");
    const T* p = p_t ? p_t : reinterpret_cast<const T*>(scores);
    for (index_t r = 0; r < group; ++r)  // O[i0 + ., h, :] = P_h V_g
      attention_gemm_call<T, T>(stream, false, false, ch.rows, D, ch.keys, 1.0, p + r * ch.rows * ch.keys, ch.keys,
                                group * ch.rows * ch.keys, v + ch.k0 * s.kv_heads * D, s.kv_heads * D, D, 0.0,
                                out + (ch.i0 * s.q_heads + r) * D, s.q_heads * D, group * D, s.kv_heads);
  }
}

// Backward. scores, d_scores: plan.scores compute-type values each; probs: plan.probs values of T; delta: [Hq, T];
// dk_acc, dv_acc: [T, Hkv, D] in the compute type (dk, dv themselves when T is C).
template <class T>
void attention_gemm_backward(const T* d_out, const T* q, const T* k, const T* v, const T* out, const compute_t<T>* lse,
                             const std::int32_t* seg, T* dq, T* dk, T* dv, compute_t<T>* delta, const AttentionShape& s,
                             const AttentionGemmPlan& plan, compute_t<T>* scores, compute_t<T>* d_scores, T* probs,
                             compute_t<T>* dk_acc, compute_t<T>* dv_acc, const Stream& stream) {
  using C = compute_t<T>;
  constexpr bool same = std::is_same_v<T, C>;
  const DeviceGuard guard(stream.device);
  const index_t group = s.q_heads / s.kv_heads, D = s.head_dim;
  const index_t kv_values = s.tokens * s.kv_heads * D;
  check(cudaMemsetAsync(dk_acc, 0, static_cast<std::size_t>(kv_values) * sizeof(C), stream.handle), "attention", "dk");
  check(cudaMemsetAsync(dv_acc, 0, static_cast<std::size_t>(kv_values) * sizeof(C), stream.handle), "attention", "dv");
  const index_t rows = s.tokens * s.q_heads;
  attention_gemm_delta_kernel<T, C><<<static_cast<unsigned>((rows + 7) / 8), 256, 0, stream.handle>>>(
      d_out, out, delta, s.tokens, s.q_heads, D);
  check(cudaGetLastError(), "attention", "launching the delta kernel");
  for (index_t i0 = 0; i0 < s.tokens; i0 += plan.chunk) {
    const AttentionChunk ch = attention_gemm_chunk(s, i0, plan.chunk);
    const index_t block = ch.rows * ch.keys;
    // P from the saved lse (C in `scores`, T in `probs`)
    attention_gemm_scores<T, C>(stream, s, ch, q, k, s.scale, scores);
    T* p_t = same ? nullptr : probs;
    attention_gemm_softmax_kernel<T, C><<<dim3(static_cast<unsigned>(ch.rows), static_cast<unsigned>(s.q_heads)), 256, 0,
                                          stream.handle>>>(scores, p_t, nullptr, lse, ch, s.tokens, s.window, seg);
    check(cudaGetLastError(), "attention", "launching the softmax kernel");
    const T* p = p_t ? p_t : reinterpret_cast<const T*>(scores);
    for (index_t r = 0; r < group; ++r) {  // dV_g += P_hᵀ dO_h, dP_h = dO_h V_gᵀ
      attention_gemm_call<T, C>(stream, true, false, ch.keys, D, ch.rows, 1.0, p + r * block, ch.keys, group * block,
                                d_out + (ch.i0 * s.q_heads + r) * D, s.q_heads * D, group * D, 1.0,
                                dv_acc + ch.k0 * s.kv_heads * D, s.kv_heads * D, D, s.kv_heads);
      attention_gemm_call<T, C>(stream, false, true, ch.rows, ch.keys, D, 1.0, d_out + (ch.i0 * s.q_heads + r) * D,
                                s.q_heads * D, group * D, v + ch.k0 * s.kv_heads * D, s.kv_heads * D, D, 0.0,
                                d_scores + r * block, ch.keys, group * block, s.kv_heads);
    }
    // dS = scale · P ∘ (dP − δ): into P's T copy, or over dP when T is C
    T* ds = same ? reinterpret_cast<T*>(d_scores) : probs;
    const index_t n = s.q_heads * block;
    attention_gemm_ds_kernel<T, C><<<attention_gemm_blocks(n), 256, 0, stream.handle>>>(
        scores, d_scores, ds, delta, ch, s.q_heads, s.tokens, static_cast<C>(s.scale));
    check(cudaGetLastError(), "attention", "launching the dS kernel");
    for (index_t r = 0; r < group; ++r) {  // dQ_h = dS_h K_g, dK_g += dS_hᵀ Q_h
      attention_gemm_call<T, T>(stream, false, false, ch.rows, D, ch.keys, 1.0, ds + r * block, ch.keys, group * block,
                                k + ch.k0 * s.kv_heads * D, s.kv_heads * D, D, 0.0, dq + (ch.i0 * s.q_heads + r) * D,
                                s.q_heads * D, group * D, s.kv_heads);
      attention_gemm_call<T, C>(stream, true, false, ch.keys, D, ch.rows, 1.0, ds + r * block, ch.keys, group * block,
                                q + (ch.i0 * s.q_heads + r) * D, s.q_heads * D, group * D, 1.0,
                                dk_acc + ch.k0 * s.kv_heads * D, s.kv_heads * D, D, s.kv_heads);
    }
  }
  if constexpr (!same) {
    attention_gemm_convert_kernel<<<attention_gemm_blocks(kv_values), 256, 0, stream.handle>>>(dk_acc, dk, kv_values);
    attention_gemm_convert_kernel<<<attention_gemm_blocks(kv_values), 256, 0, stream.handle>>>(dv_acc, dv, kv_values);
    check(cudaGetLastError(), "attention", "launching the dk/dv conversion");
  }
}

}  // namespace qlora::cuda
