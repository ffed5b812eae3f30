// Element-wise optimizer updates with fp32 states (AdamW here, bitsandbytes' 32-bit path in adamw8bit.cuh): one
// grid-stride kernel that applies `update(step, p, g, m, v)` to every element of one parameter tensor.
#pragma once

#include <algorithm>

#include "check.cuh"
#include "stream.cuh"

namespace qlora::cuda {

template <class Update, class Step>
__global__ void elementwise_optimizer_kernel(Update update, Step s, float* p, const float* g, float* m, float* v,
                                             index_t n) {
  for (index_t i = blockIdx.x * index_t{blockDim.x} + threadIdx.x; i < n; i += index_t{gridDim.x} * blockDim.x)
    update(s, p[i], g[i], m[i], v[i]);
}

template <class Update, class Step>
void elementwise_optimizer_step(Update update, const Step& s, float* p, const float* g, float* m, float* v, index_t n,
                                const char* component, const Stream& stream) {
  if (n == 0) return;
  const DeviceGuard guard(stream.device);
  const auto blocks = static_cast<unsigned>(std::min<index_t>((n + 255) / 256, 65535));
  elementwise_optimizer_kernel<<<blocks, 256, 0, stream.handle>>>(update, s, p, g, m, v, n);
  check(cudaGetLastError(), component, "launching the optimizer kernel");
}

struct AdamWUpdate {
  template <class Step>
  __device__ void operator()(const Step& s, float& p, float g, float& m, float& v) const {
    adamw_update(s, p, g, m, v);
  }
};

template <class Step>
void adamw_step(const Step& s, float* p, const float* g, float* m, float* v, index_t n, const Stream& stream) {
  elementwise_optimizer_step(AdamWUpdate{}, s, p, g, m, v, n, "adamw", stream);
}

}  // namespace qlora::cuda
