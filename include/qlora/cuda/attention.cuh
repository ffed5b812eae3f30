// Flash-style attention kernels for ops/attention.hpp (formulas there); the [T, T] scores never exist.
// Forward: a block takes kRows query rows of one head (one warp per row, q in shared memory) and walks 32-key tiles
// of K and V staged in shared memory (compute type; rows padded by one so lane j reading key j is conflict-free):
// lane j scores key j, the warp keeps the online-softmax max m and sum l, and each lane accumulates D/32 output
// columns. lse = m + log l is saved. Backward, two passes, deterministic (no atomics): (1) per query row, δ = dO·O,
// then dq = scale · Σ_j p (dO·v_j − δ) k_j with p = exp(s − lse) over key tiles; (2) per key row of a kv head,
// dk = scale · Σ_{h, i} ds q_i and dv = Σ_{h, i} p dO_i over query tiles of every head of its group.
// Correctness first (CUDA cores, fp32 accumulate); tensor-core tiles come with tuning. Any head_dim up to 512 (the
// kernels are instantiated per L = ceil(head_dim / 32), the output columns a lane holds; head_dim itself is a run-time
// value, so the tiny test models' head_dim 8 and Gemma 4's 512 take the same code), within the GPU's shared memory.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <limits>

#include "../core/dtype.hpp"
#include "check.cuh"
#include "stream.cuh"
#include "reduce.cuh"

namespace qlora::cuda {

struct AttentionShape {
  index_t tokens = 0, q_heads = 0, kv_heads = 0, head_dim = 0, window = 0;
  double scale = 1;
};

// q, out, d_out, dq: [T, Hq, D]; k, v, dk, dv: [T, Hkv, D]; lse, delta: [Hq, T]; segments: [T] or null.
template <class T>
struct AttentionArgs {
  using C = compute_t<T>;
  const T *q = nullptr, *k = nullptr, *v = nullptr, *out = nullptr, *d_out = nullptr;
  T *o = nullptr, *dq = nullptr, *dk = nullptr, *dv = nullptr;
  C* lse_out = nullptr;
  const C* lse = nullptr;
  C* delta = nullptr;
  const std::int32_t* segments = nullptr;
  index_t tokens = 0, q_heads = 0, kv_heads = 0, window = 0;
  int head_dim = 0;
  C scale = 1;
};

inline constexpr int kAttentionRows = 8;   // query (forward, dq) or key (dk/dv) rows per block: one warp each
inline constexpr int kAttentionTile = 32;  // keys (forward, dq) or queries (dk/dv) per shared-memory tile: one per lane

struct AttentionMaxOp {
  template <class V>
  __device__ V operator()(V a, V b) const { return a > b ? a : b; }
};
struct AttentionAddOp {
  template <class V>
  __device__ V operator()(V a, V b) const { return a + b; }
};

__device__ inline bool attention_visible(index_t i, index_t j, index_t window, const std::int32_t* seg) {
  return j <= i && (window == 0 || j > i - window) && (seg == nullptr || seg[i] == seg[j]);
}

// rows [t0, t0 + 32) of x[:, head, :] (x: [T, H, D]) into tile[32][D + pad] in the compute type; zeros past T.
template <int Pad, class T, class C>
__device__ void attention_load_tile(C* tile, const T* x, int D, index_t t0, index_t tokens, index_t heads,
                                    index_t head) {
  for (int e = threadIdx.x; e < kAttentionTile * D; e += blockDim.x) {
    const int r = e / D, d = e % D;
    const index_t t = t0 + r;
    tile[r * (D + Pad) + d] = t < tokens ? convert<C>(x[(t * heads + head) * D + d]) : C(0);
  }
}

// Σ_d a[d] · b[d] over D values in shared memory.
template <class C>
__device__ C attention_dot(const C* a, const C* b, int D) {
  C s = 0;
#pragma unroll 8
  for (int d = 0; d < D; ++d) s += a[d] * b[d];
  return s;
}

// grid (ceil(T / kRows), Hq); shared: k tile [32][D+1], v tile [32][D], q rows [kRows][D].
template <class T, int L>
__global__ void attention_forward_kernel(AttentionArgs<T> p) {
  using C = compute_t<T>;
  const int D = p.head_dim;  // lane + 32 r < D: the output columns a lane holds (r < L)
  extern __shared__ __align__(16) unsigned char attention_smem[];
  C* k_tile = reinterpret_cast<C*>(attention_smem);
  C* v_tile = k_tile + kAttentionTile * (D + 1);
  C* q_row = v_tile + kAttentionTile * D + (threadIdx.x / 32) * D;
  const int lane = threadIdx.x % 32;
  const index_t h = blockIdx.y, g = h / (p.q_heads / p.kv_heads);
  const index_t q0 = blockIdx.x * index_t{kAttentionRows}, i = q0 + threadIdx.x / 32;
  const bool active = i < p.tokens;
  if (active)
    for (int d = lane; d < D; d += 32) q_row[d] = convert<C>(p.q[(i * p.q_heads + h) * D + d]) * p.scale;
  const C inf = std::numeric_limits<C>::infinity();
  C acc[L] = {};
  C m = -inf, l = 0;
  const index_t q_last = min(q0 + kAttentionRows, p.tokens) - 1;
  const index_t k_first = p.window ? max(index_t{0}, q0 - p.window + 1) : 0;
  for (index_t t0 = k_first / kAttentionTile * kAttentionTile; t0 <= q_last; t0 += kAttentionTile) {
    __syncthreads();  // the previous tile has been read by every warp
    attention_load_tile<1>(k_tile, p.k, D, t0, p.tokens, p.kv_heads, g);
    attention_load_tile<0>(v_tile, p.v, D, t0, p.tokens, p.kv_heads, g);
    __syncthreads();
    if (!active) continue;
    const index_t j = t0 + lane;
    const bool seen = j < p.tokens && attention_visible(i, j, p.window, p.segments);
    const C s = seen ? attention_dot(q_row, k_tile + lane * (D + 1), D) : -inf;
    const C m_new = max(m, warp_reduce(s, AttentionMaxOp{}));
    if (m_new == -inf) continue;  // nothing visible yet (warp-uniform)
    const C pj = seen ? std::exp(s - m_new) : C(0);
    const C alpha = std::exp(m - m_new);
    l = l * alpha + warp_reduce(pj, AttentionAddOp{});
#pragma unroll
    for (int r = 0; r < L; ++r) acc[r] *= alpha;
    for (int jj = 0; jj < kAttentionTile; ++jj) {
      const C w = __shfl_sync(0xffffffffu, pj, jj);
#pragma unroll
      for (int r = 0; r < L; ++r)
        if (lane + 32 * r < D) acc[r] += w * v_tile[jj * D + lane + 32 * r];
    }
    m = m_new;
  }
  if (!active) return;
#pragma unroll
  for (int r = 0; r < L; ++r)
    if (lane + 32 * r < D) p.o[(i * p.q_heads + h) * D + lane + 32 * r] = convert<T>(acc[r] / l);
  if (lane == 0) p.lse_out[h * p.tokens + i] = m + std::log(l);
}

// Pass 1 of backward. grid (ceil(T / kRows), Hq); shared: k, v tiles [32][D+1], q and dO rows [kRows][D].
template <class T, int L>
__global__ void attention_backward_dq_kernel(AttentionArgs<T> p) {
  using C = compute_t<T>;
  const int D = p.head_dim;
  extern __shared__ __align__(16) unsigned char attention_smem[];
  C* k_tile = reinterpret_cast<C*>(attention_smem);
  C* v_tile = k_tile + kAttentionTile * (D + 1);
  C* q_row = v_tile + kAttentionTile * (D + 1) + (threadIdx.x / 32) * D;
  C* do_row = q_row + kAttentionRows * D;
  const int lane = threadIdx.x % 32;
  const index_t h = blockIdx.y, g = h / (p.q_heads / p.kv_heads);
  const index_t q0 = blockIdx.x * index_t{kAttentionRows}, i = q0 + threadIdx.x / 32;
  const bool active = i < p.tokens;
  C delta = 0, lse = 0;
  if (active) {
    for (int d = lane; d < D; d += 32) {
      const index_t at = (i * p.q_heads + h) * D + d;
      q_row[d] = convert<C>(p.q[at]) * p.scale;
      do_row[d] = convert<C>(p.d_out[at]);
      delta += do_row[d] * convert<C>(p.out[at]);
    }
    delta = warp_reduce(delta, AttentionAddOp{});
    lse = p.lse[h * p.tokens + i];
    if (lane == 0) p.delta[h * p.tokens + i] = delta;
  }
  __syncwarp();
  C acc[L] = {};
  const index_t q_last = min(q0 + kAttentionRows, p.tokens) - 1;
  const index_t k_first = p.window ? max(index_t{0}, q0 - p.window + 1) : 0;
  for (index_t t0 = k_first / kAttentionTile * kAttentionTile; t0 <= q_last; t0 += kAttentionTile) {
    __syncthreads();
    attention_load_tile<1>(k_tile, p.k, D, t0, p.tokens, p.kv_heads, g);
    attention_load_tile<1>(v_tile, p.v, D, t0, p.tokens, p.kv_heads, g);
    __syncthreads();
    if (!active) continue;
    const index_t j = t0 + lane;
    C ds = 0;
    if (j < p.tokens && attention_visible(i, j, p.window, p.segments)) {
      const C pj = std::exp(attention_dot(q_row, k_tile + lane * (D + 1), D) - lse);
      ds = pj * (attention_dot(do_row, v_tile + lane * (D + 1), D) - delta);
    }
    for (int jj = 0; jj < kAttentionTile; ++jj) {
      const C w = __shfl_sync(0xffffffffu, ds, jj);
#pragma unroll
      for (int r = 0; r < L; ++r)
        if (lane + 32 * r < D) acc[r] += w * k_tile[jj * (D + 1) + lane + 32 * r];
    }
  }
  if (!active) return;
#pragma unroll
  for (int r = 0; r < L; ++r)
    if (lane + 32 * r < D) p.dq[(i * p.q_heads + h) * D + lane + 32 * r] = convert<T>(acc[r] * p.scale);
}

// Pass 2 of backward. grid (ceil(T / kRows), Hkv); shared: q, dO tiles [32][D+1], k and v rows [kRows][D].
template <class T, int L>
__global__ void attention_backward_dkv_kernel(AttentionArgs<T> p) {
  using C = compute_t<T>;
  const int D = p.head_dim;
  extern __shared__ __align__(16) unsigned char attention_smem[];
  C* q_tile = reinterpret_cast<C*>(attention_smem);
  C* do_tile = q_tile + kAttentionTile * (D + 1);
  C* k_row = do_tile + kAttentionTile * (D + 1) + (threadIdx.x / 32) * D;
  C* v_row = k_row + kAttentionRows * D;
  const int lane = threadIdx.x % 32;
  const index_t g = blockIdx.y, group = p.q_heads / p.kv_heads;
  const index_t k0 = blockIdx.x * index_t{kAttentionRows}, j = k0 + threadIdx.x / 32;
  const bool active = j < p.tokens;
  if (active)
    for (int d = lane; d < D; d += 32) {
      k_row[d] = convert<C>(p.k[(j * p.kv_heads + g) * D + d]) * p.scale;
      v_row[d] = convert<C>(p.v[(j * p.kv_heads + g) * D + d]);
    }
  C dk[L] = {}, dv[L] = {};
  const index_t k_last = min(k0 + kAttentionRows, p.tokens) - 1;
  const index_t q_end = p.window ? min(p.tokens, k_last + p.window) : p.tokens;  // queries i < k_last + W see the block
  for (index_t h = g * group; h < (g + 1) * group; ++h)
    for (index_t t0 = k0 / kAttentionTile * kAttentionTile; t0 < q_end; t0 += kAttentionTile) {
      __syncthreads();
      attention_load_tile<1>(q_tile, p.q, D, t0, p.tokens, p.q_heads, h);
      attention_load_tile<1>(do_tile, p.d_out, D, t0, p.tokens, p.q_heads, h);
      __syncthreads();
      if (!active) continue;
      const index_t i = t0 + lane;
      C pi = 0, ds = 0;
      if (i < p.tokens && attention_visible(i, j, p.window, p.segments)) {
        pi = std::exp(attention_dot(q_tile + lane * (D + 1), k_row, D) - p.lse[h * p.tokens + i]);
        ds = pi * (attention_dot(do_tile + lane * (D + 1), v_row, D) - p.delta[h * p.tokens + i]);
      }
      for (int ii = 0; ii < kAttentionTile; ++ii) {
        const C wp = __shfl_sync(0xffffffffu, pi, ii), ws = __shfl_sync(0xffffffffu, ds, ii);
#pragma unroll
        for (int r = 0; r < L; ++r) {
          if (lane + 32 * r >= D) continue;
          dv[r] += wp * do_tile[ii * (D + 1) + lane + 32 * r];
          dk[r] += ws * q_tile[ii * (D + 1) + lane + 32 * r];
        }
      }
    }
  if (!active) return;
#pragma unroll
  for (int r = 0; r < L; ++r) {
    if (lane + 32 * r >= D) continue;
    p.dk[(j * p.kv_heads + g) * D + lane + 32 * r] = convert<T>(dk[r] * p.scale);
    p.dv[(j * p.kv_heads + g) * D + lane + 32 * r] = convert<T>(dv[r]);
  }
}

// Launches `kernel` with `floats` compute-type values of dynamic shared memory on a (ceil(T / kRows), heads) grid;
// a head_dim whose tiles do not fit the GPU's shared memory (fp64 at 512) is refused by name.
template <class T, class Kernel>
void attention_launch(Kernel kernel, const AttentionArgs<T>& a, index_t heads, int floats, const char* what,
                      const Stream& stream) {
  const DeviceGuard guard(stream.device);
  const auto bytes = static_cast<int>(floats * sizeof(compute_t<T>));
  int limit = 0;
  check(cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, stream.device), "attention", what);
  if (bytes > limit)
    fail("attention", "head_dim ", a.head_dim, " in ", dtype_traits<T>::name, " needs ", bytes / 1024,
         " KiB of shared memory a block; this GPU gives ", limit / 1024, " KiB");
  check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes), "attention", what);
  const dim3 grid(static_cast<unsigned>((a.tokens + kAttentionRows - 1) / kAttentionRows), static_cast<unsigned>(heads));
  kernel<<<grid, kAttentionRows * 32, bytes, stream.handle>>>(a);
  check(cudaGetLastError(), "attention", what);
}

template <class T, int L>
void attention_forward_l(const AttentionArgs<T>& a, const Stream& stream) {
  const int D = a.head_dim;
  attention_launch(attention_forward_kernel<T, L>, a, a.q_heads,
                   kAttentionTile * (D + 1) + kAttentionTile * D + kAttentionRows * D, "launching the forward kernel",
                   stream);
}
template <class T, int L>
void attention_backward_l(const AttentionArgs<T>& a, const Stream& stream) {
  const int D = a.head_dim;
  const int floats = 2 * kAttentionTile * (D + 1) + 2 * kAttentionRows * D;
  attention_launch(attention_backward_dq_kernel<T, L>, a, a.q_heads, floats, "launching the dq kernel", stream);
  attention_launch(attention_backward_dkv_kernel<T, L>, a, a.kv_heads, floats, "launching the dk/dv kernel", stream);
}

inline constexpr index_t kAttentionMaxHeadDim = 512;

// Calls f.template operator()<L>() with the smallest L in {1, 2, 4, 8, 16} such that 32 L ≥ head_dim.
template <class F>
void attention_with_head_dim(index_t head_dim, F&& f) {
  if (head_dim < 1 || head_dim > kAttentionMaxHeadDim)
    fail("attention", "CUDA kernels support head_dim 1 to ", kAttentionMaxHeadDim, "; got ", head_dim);
  if (head_dim <= 32) return f.template operator()<1>();
  if (head_dim <= 64) return f.template operator()<2>();
  if (head_dim <= 128) return f.template operator()<4>();
  if (head_dim <= 256) return f.template operator()<8>();
  return f.template operator()<16>();
}

template <class T>
AttentionArgs<T> attention_args(const AttentionShape& s, const std::int32_t* seg) {
  AttentionArgs<T> a;
  a.segments = seg;
  a.tokens = s.tokens;
  a.q_heads = s.q_heads;
  a.kv_heads = s.kv_heads;
  a.window = s.window;
  a.head_dim = static_cast<int>(s.head_dim);
  a.scale = static_cast<compute_t<T>>(s.scale);
  return a;
}

template <class T>
void attention_forward(const T* q, const T* k, const T* v, const std::int32_t* seg, T* out, compute_t<T>* lse,
                       const AttentionShape& s, const Stream& stream) {
  AttentionArgs<T> a = attention_args<T>(s, seg);
  a.q = q;
  a.k = k;
  a.v = v;
  a.o = out;
  a.lse_out = lse;
  attention_with_head_dim(s.head_dim, [&]<int L>() { attention_forward_l<T, L>(a, stream); });
}

// delta ([Hq, T], compute type) is scratch written by the dq pass and read by the dk/dv pass.
template <class T>
void attention_backward(const T* d_out, const T* q, const T* k, const T* v, const T* out, const compute_t<T>* lse,
                        const std::int32_t* seg, T* dq, T* dk, T* dv, compute_t<T>* delta, const AttentionShape& s,
                        const Stream& stream) {
  AttentionArgs<T> a = attention_args<T>(s, seg);
  a.q = q;
  a.k = k;
  a.v = v;
  a.out = out;
  a.d_out = d_out;
  a.lse = lse;
  a.delta = delta;
  a.dq = dq;
  a.dk = dk;
  a.dv = dv;
  attention_with_head_dim(s.head_dim, [&]<int L>() { attention_backward_l<T, L>(a, stream); });
}

}  // namespace qlora::cuda
