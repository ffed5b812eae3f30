// AdamW's element update (optim/adamw.hpp) as one kernel per parameter tensor.
#pragma once

#include <algorithm>

#include "check.cuh"

namespace qlora::cuda {

template <class Step>
__global__ void adamw_kernel(Step s, float* p, const float* g, float* m, float* v, index_t n) {
  for (index_t i = blockIdx.x * index_t{blockDim.x} + threadIdx.x; i < n; i += index_t{gridDim.x} * blockDim.x)
    adamw_update(s, p[i], g[i], m[i], v[i]);
}

template <class Step>
void adamw_step(const Step& s, float* p, const float* g, float* m, float* v, index_t n) {
  if (n == 0) return;
  const auto blocks = static_cast<unsigned>(std::min<index_t>((n + 255) / 256, 65535));
  adamw_kernel<<<blocks, 256>>>(s, p, g, m, v, n);
  check(cudaGetLastError(), "adamw", "launching the AdamW kernel");
}

}  // namespace qlora::cuda
