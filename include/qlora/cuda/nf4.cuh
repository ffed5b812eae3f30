// Dequantizing bitsandbytes 4-bit blocks on the GPU (quant/nf4.hpp is the CPU reference): one thread per packed
// byte (two values). With double quantization the block's absmax is decoded on the fly,
// absmax = dynamic_code[codes[b]] * nested_absmax[b / 256] + offset, with unfused float32 operations (__fmul_rn,
// __fadd_rn) so the result equals the CPU's and bitsandbytes' bit for bit.
#pragma once

#include <algorithm>
#include <cstdint>

#include "../core/dtype.hpp"
#include "check.cuh"

namespace qlora::cuda {

struct FourBitDequantParams {
  const std::uint8_t* packed = nullptr;   // [(numel + 1) / 2]
  index_t numel = 0;
  FourBitType type = FourBitType::nf4;
  index_t blocksize = 64;
  const float* absmax = nullptr;          // [blocks] (no double quantization)
  const std::uint8_t* codes = nullptr;    // [blocks] (double quantization)
  const float* nested_absmax = nullptr;   // [ceil(blocks / 256)]
  const float* dynamic_code = nullptr;    // [256] signed dynamic map
  float offset = 0;
};

__device__ inline float four_bit_block_absmax(const FourBitDequantParams& p, index_t block) {
  if (p.absmax) return p.absmax[block];
  return __fadd_rn(__fmul_rn(p.dynamic_code[p.codes[block]], p.nested_absmax[block / 256]), p.offset);
}

template <class T>
__global__ void dequantize_4bit_kernel(FourBitDequantParams p, T* out) {
  const index_t bytes = (p.numel + 1) / 2;
  for (index_t j = blockIdx.x * index_t{blockDim.x} + threadIdx.x; j < bytes; j += index_t{gridDim.x} * blockDim.x) {
    const std::uint8_t byte = p.packed[j];
    const index_t i = 2 * j;
    out[i] = convert<T>(__fmul_rn(four_bit_code_value(p.type, byte >> 4), four_bit_block_absmax(p, i / p.blocksize)));
    if (i + 1 < p.numel)
      out[i + 1] = convert<T>(
          __fmul_rn(four_bit_code_value(p.type, byte & 15), four_bit_block_absmax(p, (i + 1) / p.blocksize)));
  }
}

template <class T>
void dequantize_4bit(const FourBitDequantParams& p, T* out) {
  const index_t bytes = (p.numel + 1) / 2;
  if (bytes == 0) return;
  const auto blocks = static_cast<unsigned>(std::min<index_t>((bytes + 255) / 256, 65535));
  dequantize_4bit_kernel<<<blocks, 256>>>(p, out);
  check(cudaGetLastError(), "nf4", "launching the 4-bit dequantization kernel");
}

}  // namespace qlora::cuda
