// Dequantizing bitsandbytes 4-bit blocks on the GPU (quant/nf4.hpp is the CPU reference): one thread per packed
// byte (two values). With double quantization the block's absmax is decoded on the fly,
// absmax = dynamic_code[codes[b]] * nested_absmax[b / 256] + offset, with unfused float32 operations (__fmul_rn,
// __fadd_rn) so the result equals the CPU's and bitsandbytes' bit for bit.
#pragma once

#include <algorithm>
#include <cstdint>

#include "../core/dtype.hpp"
#include "check.cuh"
#include "stream.cuh"
#include "reduce.cuh"

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

// Quantizing: one thread block per 4-bit block. The block's absmax propagates NaN like torch.max; full blocks scale
// by the reciprocal of max(absmax, 1e-38), the short last block divides and stores the clamped value (the CPU
// backend's rules, quant/nf4.hpp). Pairs of values never straddle a block (block sizes are even), so each thread
// writes whole bytes.
struct NanMax {
  __device__ float operator()(float a, float b) const { return (a != a || b != b) ? NAN : (a > b ? a : b); }
};

// A template only so that a header can define it in many translation units.
template <int = 0>
__global__ void quantize_4bit_kernel(const float* x, index_t n, FourBitType type, index_t blocksize,
                                     std::uint8_t* packed, float* absmax) {
  const index_t b = blockIdx.x;
  const index_t begin = b * blocksize, end = begin + blocksize < n ? begin + blocksize : n;
  float m = 0.0f;
  for (index_t i = begin + threadIdx.x; i < end; i += blockDim.x) m = NanMax{}(m, fabsf(x[i]));
  m = block_reduce(m, NanMax{}, 0.0f);
  const float clamped = m < 1e-38f ? 1e-38f : m;
  const bool partial = end - begin < blocksize;
  if (threadIdx.x == 0) absmax[b] = partial ? clamped : m;
  const float inv = 1.0f / clamped;
  for (index_t i = begin + 2 * threadIdx.x; i < end; i += 2 * blockDim.x) {
    const float s0 = partial ? x[i] / clamped : __fmul_rn(x[i], inv);
    const std::uint8_t hi = quantize_4bit_value(type, s0);
    std::uint8_t lo;
    if (i + 1 < end) lo = quantize_4bit_value(type, partial ? x[i + 1] / clamped : __fmul_rn(x[i + 1], inv));
    else lo = quantize_4bit_value(type, 0.0f);  // odd n: the pad nibble holds the code of 0
    packed[i / 2] = static_cast<std::uint8_t>(hi << 4 | lo);
  }
}

// x: [n] on the GPU -> packed [(n + 1) / 2], absmax [blocks] on the GPU.
inline void quantize_4bit(const float* x, index_t n, FourBitType type, index_t blocksize, std::uint8_t* packed,
                          float* absmax, const Stream& stream) {
  const index_t blocks = (n + blocksize - 1) / blocksize;
  if (blocks == 0) return;
  const DeviceGuard guard(stream.device);
  const int threads = blocksize >= 512 ? 256 : static_cast<int>(blocksize / 2);
  quantize_4bit_kernel<><<<static_cast<unsigned>(blocks), threads, 0, stream.handle>>>(x, n, type, blocksize, packed,
                                                                                       absmax);
  check(cudaGetLastError(), "nf4", "launching the 4-bit quantization kernel");
}

// Dequantizing: one thread per 4 packed bytes (8 values, always in one quantization block: block sizes are powers of
// two from 32), the 16 code values in shared memory, the block index by a shift (no 64-bit division), one 32-bit
// load and 16-byte stores where the pointers allow (`vector`), a value at a time for the tail and unaligned views.
template <class T>
__global__ void dequantize_4bit_kernel(FourBitDequantParams p, int block_shift, bool vector, T* out) {
  __shared__ float code[16];
  if (threadIdx.x < 16) code[threadIdx.x] = four_bit_code_value(p.type, static_cast<std::uint8_t>(threadIdx.x));
  __syncthreads();
  const index_t words = ((p.numel + 1) / 2 + 3) / 4;
  for (index_t w = blockIdx.x * index_t{blockDim.x} + threadIdx.x; w < words; w += index_t{gridDim.x} * blockDim.x) {
    const index_t i0 = 8 * w;
    const float scale = four_bit_block_absmax(p, i0 >> block_shift);
    if (vector && i0 + 8 <= p.numel) {
      const std::uint32_t word = reinterpret_cast<const std::uint32_t*>(p.packed)[w];  // little-endian: byte k at 8k
      alignas(16) T v[8];
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const unsigned byte = (word >> (8 * k)) & 255u;
        v[2 * k] = convert<T>(__fmul_rn(code[byte >> 4], scale));
        v[2 * k + 1] = convert<T>(__fmul_rn(code[byte & 15u], scale));
      }
      uint4* dst = reinterpret_cast<uint4*>(out + i0);
      const uint4* src = reinterpret_cast<const uint4*>(v);
#pragma unroll
      for (int c = 0; c < static_cast<int>(sizeof v / sizeof(uint4)); ++c) dst[c] = src[c];
    } else {
      const index_t end = i0 + 8 < p.numel ? i0 + 8 : p.numel;
      for (index_t i = i0; i < end; ++i) {
        const std::uint8_t byte = p.packed[i / 2];
        out[i] = convert<T>(__fmul_rn(code[i % 2 == 0 ? byte >> 4 : byte & 15], scale));
      }
    }
  }
}

template <class T>
void dequantize_4bit(const FourBitDequantParams& p, T* out, const Stream& stream) {
  static_assert(8 * sizeof(T) % sizeof(uint4) == 0, "8 values of T fill whole 16-byte stores");
  const index_t words = ((p.numel + 1) / 2 + 3) / 4;
  if (words == 0) return;
  require(p.blocksize >= 8 && (p.blocksize & (p.blocksize - 1)) == 0, "nf4", "blocksize ", p.blocksize,
          ": the GPU kernel takes powers of two from 8");
  int shift = 0;
  while ((index_t{1} << shift) < p.blocksize) ++shift;
  const bool vector = reinterpret_cast<std::uintptr_t>(p.packed) % 4 == 0 && reinterpret_cast<std::uintptr_t>(out) % 16 == 0;
  const DeviceGuard guard(stream.device);
  const auto blocks = static_cast<unsigned>(std::min<index_t>((words + 255) / 256, 65535));
  dequantize_4bit_kernel<<<blocks, 256, 0, stream.handle>>>(p, shift, vector, out);
  check(cudaGetLastError(), "nf4", "launching the 4-bit dequantization kernel");
}

}  // namespace qlora::cuda
