// AdamW8bit on the GPU (optim/adamw8bit.hpp is the reference): one thread block per 256-element quantization block.
// Each thread dequantizes its m and v, runs the element update, the block reduces the new absmax of m and v (NaN
// skipped, as the CPU backend), and each thread writes its codes with the CPU backend's rounding rule.
#pragma once

#include <algorithm>
#include <cstdint>

#include "adamw.cuh"
#include "blockwise8.cuh"
#include "check.cuh"
#include "stream.cuh"
#include "reduce.cuh"

namespace qlora::cuda {

template <class Step>
__global__ void adamw8bit_kernel(Step s, float* p, const float* g, std::uint8_t* q1, float* absmax1,
                                 std::uint8_t* q2, float* absmax2, index_t n, const float* code1, const float* code2) {
  __shared__ float map1[256], map2[256];
  map1[threadIdx.x] = code1[threadIdx.x];
  map2[threadIdx.x] = code2[threadIdx.x];
  __syncthreads();
  const index_t block = blockIdx.x;
  const index_t i = block * 256 + threadIdx.x;
  const bool live = i < n;
  float m = 0, v = 0;
  if (live) {
    m = __fmul_rn(map1[q1[i]], absmax1[block]);
    v = __fmul_rn(map2[q2[i]], absmax2[block]);
    float param = p[i];
    adamw8bit_update(s, param, g[i], m, v);
    p[i] = param;
  }
  const float new_absmax1 = block_reduce(live ? fabsf(m) : 0.0f, SkipNanMax{}, 0.0f);
  const float new_absmax2 = block_reduce(live ? fabsf(v) : 0.0f, SkipNanMax{}, 0.0f);
  if (threadIdx.x == 0) {
    absmax1[block] = new_absmax1;
    absmax2[block] = new_absmax2;
  }
  if (!live) return;
  q1[i] = new_absmax1 == 0.0f ? 0 : lookup_dynamic_code(map1, __fmul_rn(m, 1.0f / new_absmax1));
  q2[i] = new_absmax2 == 0.0f ? 0 : lookup_dynamic_code(map2, __fmul_rn(v, 1.0f / new_absmax2));
}

template <class Step>
void adamw8bit_step(const Step& s, float* p, const float* g, std::uint8_t* q1, float* absmax1, std::uint8_t* q2,
                    float* absmax2, index_t n, const float* code1, const float* code2, const Stream& stream) {
  const index_t blocks = (n + 255) / 256;
  if (blocks == 0) return;
  const DeviceGuard guard(stream.device);
  adamw8bit_kernel<<<static_cast<unsigned>(blocks), 256, 0, stream.handle>>>(s, p, g, q1, absmax1, q2, absmax2, n,
                                                                              code1, code2);
  check(cudaGetLastError(), "adamw8bit", "launching the 8-bit AdamW kernel");
}

struct AdamW32bitUpdate {
  template <class Step>
  __device__ void operator()(const Step& s, float& p, float g, float& m, float& v) const {
    adamw32bit_update(s, p, g, m, v);
  }
};

template <class Step>
void adamw32bit_step(const Step& s, float* p, const float* g, float* m, float* v, index_t n, const Stream& stream) {
  elementwise_optimizer_step(AdamW32bitUpdate{}, s, p, g, m, v, n, "adamw8bit", stream);
}

}  // namespace qlora::cuda
