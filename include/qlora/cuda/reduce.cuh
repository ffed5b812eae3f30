// Block-wide reductions for kernels that give one thread block to one row (expression row reductions, norms,
// softmax). Warp shuffles first, then one value per warp through shared memory. Every thread of the block must call
// it; every thread gets the result.
#pragma once

#include <cuda_runtime.h>

namespace qlora::cuda {

template <class V, class Op>
__device__ V warp_reduce(V value, Op op) {
  for (int offset = 16; offset > 0; offset /= 2) value = op(value, __shfl_xor_sync(0xffffffffu, value, offset));
  return value;
}

// Reduces `value` over the block with `op` (identity fills the unused warp slots). Blocks of up to 1024 threads.
template <class V, class Op>
__device__ V block_reduce(V value, Op op, V identity) {
  __shared__ double slots[32];  // double: large enough for float and double values
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  value = warp_reduce(value, op);
  __syncthreads();  // slots may still be read by a previous call
  if (lane == 0) slots[warp] = static_cast<double>(value);
  __syncthreads();
  const int warps = (blockDim.x + 31) / 32;
  V v = lane < warps ? static_cast<V>(slots[lane]) : identity;
  return warp_reduce(v, op);
}

}  // namespace qlora::cuda
