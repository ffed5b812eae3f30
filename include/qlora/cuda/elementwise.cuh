// The CUDA evaluator of core/expr.hpp: one generated kernel per expression type. A block takes one row at a time:
// it prepares the row (leaves find their offset, reductions reduce cooperatively with block_reduce) and its threads
// stride over the columns. The expression tree is passed by value as the kernel argument.
#pragma once

#include <algorithm>

#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "check.cuh"
#include "stream.cuh"

namespace qlora::cuda {

template <class E, class T>
__global__ void evaluate_rows_kernel(E e, T* out, index_t rows, index_t cols) {
  for (index_t r = blockIdx.x; r < rows; r += gridDim.x) {
    e.prepare_row(r);
    T* o = out + r * cols;
    for (index_t c = threadIdx.x; c < cols; c += blockDim.x) o[c] = convert<T>(e.eval(c));
  }
}

template <class E, class T>
void evaluate_expression(const E& bound, T* out, index_t rows, index_t cols, const Stream& stream) {
  const DeviceGuard guard(stream.device);
  const int threads = cols >= 256 ? 256 : (cols >= 64 ? 128 : 32);
  const auto blocks = static_cast<unsigned>(std::min<index_t>(rows, 65535 * 8));
  evaluate_rows_kernel<<<blocks, threads, 0, stream.handle>>>(bound, out, rows, cols);
  check(cudaGetLastError(), "expr", "launching the expression kernel");
}

}  // namespace qlora::cuda
