// Blockwise 8-bit quantization on the GPU (quant/blockwise8.hpp is the CPU reference): one thread block per
// quantization block for the absmax (NaN skipped, as the CPU backend does), then one code per element with the
// same per-value search as the CPU (lookup_dynamic_code or nearest_dynamic_code); the 256-entry code sits in
// shared memory. Dequantization is one float32 multiply per element.
#pragma once

#include <algorithm>
#include <cstdint>

#include "check.cuh"
#include "stream.cuh"
#include "reduce.cuh"

namespace qlora::cuda {

struct SkipNanMax {
  __device__ float operator()(float a, float b) const { return b > a ? b : a; }  // std::max(m, |x|): NaN skipped
};

// A template only so that a header can define it in many translation units.
template <int = 0>
__global__ void quantize_blockwise_kernel(const float* x, index_t n, const float* code, index_t blocksize,
                                          bool nearest, std::uint8_t* codes, float* absmax) {
  __shared__ float table[256];
  for (int k = threadIdx.x; k < 256; k += blockDim.x) table[k] = code[k];
  const index_t b = blockIdx.x;
  const index_t begin = b * blocksize, end = begin + blocksize < n ? begin + blocksize : n;
  float m = 0.0f;
  for (index_t i = begin + threadIdx.x; i < end; i += blockDim.x) m = SkipNanMax{}(m, fabsf(x[i]));
  m = block_reduce(m, SkipNanMax{}, 0.0f);  // also orders the table writes before the reads below
  if (threadIdx.x == 0) absmax[b] = m;
  const float inv = 1.0f / m;
  for (index_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    if (m == 0.0f) {
      codes[i] = 0;
      continue;
    }
    const float s = __fmul_rn(x[i], inv);
    codes[i] = nearest ? nearest_dynamic_code(table, s) : lookup_dynamic_code(table, s);
  }
}

inline void quantize_blockwise(const float* x, index_t n, const float* code, index_t blocksize, bool nearest,
                               std::uint8_t* codes, float* absmax, const Stream& stream) {
  const index_t blocks = (n + blocksize - 1) / blocksize;
  if (blocks == 0) return;
  const DeviceGuard guard(stream.device);
  const int threads = static_cast<int>(std::min<index_t>(256, std::max<index_t>(32, blocksize)));
  quantize_blockwise_kernel<><<<static_cast<unsigned>(blocks), threads, 0, stream.handle>>>(x, n, code, blocksize,
                                                                                            nearest, codes, absmax);
  check(cudaGetLastError(), "blockwise8", "launching the 8-bit quantization kernel");
}

// A template only so that a header can define it in many translation units.
template <int = 0>
__global__ void dequantize_blockwise_kernel(const std::uint8_t* codes, index_t n, const float* absmax,
                                            const float* code, index_t blocksize, float* out) {
  for (index_t i = blockIdx.x * index_t{blockDim.x} + threadIdx.x; i < n; i += index_t{gridDim.x} * blockDim.x)
    out[i] = __fmul_rn(code[codes[i]], absmax[i / blocksize]);
}

inline void dequantize_blockwise(const std::uint8_t* codes, index_t n, const float* absmax, const float* code,
                                 index_t blocksize, float* out, const Stream& stream) {
  if (n == 0) return;
  const DeviceGuard guard(stream.device);
  const auto blocks = static_cast<unsigned>(std::min<index_t>((n + 255) / 256, 65535));
  dequantize_blockwise_kernel<><<<blocks, 256, 0, stream.handle>>>(codes, n, absmax, code, blocksize, out);
  check(cudaGetLastError(), "blockwise8", "launching the 8-bit dequantization kernel");
}

}  // namespace qlora::cuda
