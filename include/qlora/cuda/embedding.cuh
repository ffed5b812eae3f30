// Scaled-embedding kernels for ops/embedding.hpp: one block per token copies (forward) or scatter-adds (backward)
// its row. Forward validates the ids on the device: a bad token records its index with atomicMin into `bad_token`,
// which the caller reads back and reports. Backward adds s·dy into the table gradient with atomicAdd (fp32, fp64,
// and bf16 through cuda_bf16.h's native atomic on sm_80+), so repeated ids are summed in an unspecified order.
#pragma once

#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>

#include "../core/dtype.hpp"
#include "check.cuh"
#include "stream.cuh"

namespace qlora::cuda {

__device__ inline void embedding_atomic_add(float* p, float v) { atomicAdd(p, v); }
__device__ inline void embedding_atomic_add(double* p, double v) { atomicAdd(p, v); }
__device__ inline void embedding_atomic_add(bf16* p, float v) {
  static_assert(sizeof(bf16) == sizeof(__nv_bfloat16), "qlora::bf16 and __nv_bfloat16 share one 16-bit layout");
  atomicAdd(reinterpret_cast<__nv_bfloat16*>(p), __float2bfloat16_rn(v));
}

// ids: [tokens], table: [vocab, cols], y: [tokens, cols].
template <class T>
__global__ void embedding_forward_kernel(const std::int32_t* ids, const T* table, T* y, index_t tokens,
                                         index_t vocab, index_t cols, T normalizer, std::int32_t* bad_token) {
  using C = compute_t<T>;
  const C s = convert<C>(normalizer);
  for (index_t t = blockIdx.x; t < tokens; t += gridDim.x) {
    const std::int32_t id = ids[t];
    if (id < 0 || id >= vocab) {
      if (threadIdx.x == 0) atomicMin(bad_token, static_cast<std::int32_t>(t));
      continue;
    }
    const T* row = table + static_cast<index_t>(id) * cols;
    for (index_t c = threadIdx.x; c < cols; c += blockDim.x) y[t * cols + c] = convert<T>(convert<C>(row[c]) * s);
  }
}

template <class T>
__global__ void embedding_backward_kernel(const std::int32_t* ids, const T* dy, T* d_table, index_t tokens,
                                          index_t cols, T normalizer, index_t padding_idx) {
  using C = compute_t<T>;
  const C s = convert<C>(normalizer);
  for (index_t t = blockIdx.x; t < tokens; t += gridDim.x) {
    const index_t id = ids[t];
    if (id == padding_idx) continue;
    T* row = d_table + id * cols;
    for (index_t c = threadIdx.x; c < cols; c += blockDim.x)
      embedding_atomic_add(row + c, convert<C>(dy[t * cols + c]) * s);
  }
}

inline unsigned embedding_blocks(index_t tokens) { return static_cast<unsigned>(std::min<index_t>(tokens, 65535 * 8)); }
inline int embedding_threads(index_t cols) { return cols >= 1024 ? 256 : 128; }

// bad_token: a device int32 holding INT32_MAX; on return it holds the first bad token's index if there was one.
template <class T>
void embedding_forward(const std::int32_t* ids, const T* table, T* y, index_t tokens, index_t vocab, index_t cols,
                       T normalizer, std::int32_t* bad_token, const Stream& stream) {
  const DeviceGuard guard(stream.device);
  embedding_forward_kernel<<<embedding_blocks(tokens), embedding_threads(cols), 0, stream.handle>>>(
      ids, table, y, tokens, vocab, cols, normalizer, bad_token);
  check(cudaGetLastError(), "embedding", "launching the forward kernel");
}

// d_table must hold zeros (or the gradient to add to).
template <class T>
void embedding_backward(const std::int32_t* ids, const T* dy, T* d_table, index_t tokens, index_t cols, T normalizer,
                        index_t padding_idx, const Stream& stream) {
  const DeviceGuard guard(stream.device);
  embedding_backward_kernel<<<embedding_blocks(tokens), embedding_threads(cols), 0, stream.handle>>>(
      ids, dy, d_table, tokens, cols, normalizer, padding_idx);
  check(cudaGetLastError(), "embedding", "launching the backward kernel");
}

}  // namespace qlora::cuda
