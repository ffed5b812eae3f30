// Dropout kernel: the same counter-based mask as the CPU reference in ops/dropout.hpp (one thread per element).
#pragma once

#include <algorithm>

#include "../core/dtype.hpp"
#include "check.cuh"
#include "stream.cuh"

namespace qlora {
struct DropoutParams;
}

namespace qlora::cuda {

template <class T, class Params>
__global__ void dropout_kernel(Params d, const T* in, T* out, index_t n) {
  const compute_t<T> scale = compute_t<T>(1) / (compute_t<T>(1) - static_cast<compute_t<T>>(d.p));
  for (index_t i = blockIdx.x * index_t{blockDim.x} + threadIdx.x; i < n; i += index_t{gridDim.x} * blockDim.x)
    out[i] = dropout_keep(d, dropout_index(d, static_cast<std::uint64_t>(i)))
                 ? convert<T>(convert<compute_t<T>>(in[i]) * scale)
                 : convert<T>(0.0f);
}

template <class Params, class T>
void dropout_apply(const Params& d, const T* in, T* out, index_t n, const Stream& stream) {
  if (n == 0) return;
  const DeviceGuard guard(stream.device);
  const auto blocks = static_cast<unsigned>(std::min<index_t>((n + 255) / 256, 65535));
  dropout_kernel<<<blocks, 256, 0, stream.handle>>>(d, in, out, n);
  check(cudaGetLastError(), "dropout", "launching the dropout kernel");
}

}  // namespace qlora::cuda
