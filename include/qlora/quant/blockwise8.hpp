// blockwise8: bitsandbytes' blockwise 8-bit quantization (`quantize_blockwise` / `dequantize_blockwise`): the flat
// tensor is cut into blocks of `blocksize` values; each block stores absmax = max|x| (float32) and one uint8 index
// per value into a sorted 256-entry code (quant/dynamic_map.hpp); dequantization is code[q] * absmax[block].
//
// Two ways of picking the index, both from bitsandbytes 0.50:
//  - lookup_dynamic_code: what its CPU backend does (csrc/cpu_ops.cpp quantize_cpu_impl), and what the golden files
//    hold: the scaled value s = x * (1/absmax) is binned into one of 65536 uniform bins over [-1, 1], and each bin maps
//    to the code whose midpoint interval contains the bin's left edge. Near 0, where codes are closer than a bin,
//    this is NOT the nearest code: 0.0 itself gets the code 2.1e-5 (index 131 of the signed map), since the middle
//    bin starts at 1.5e-5. NaN values get index 0; a block whose absmax is 0 gets index 0 everywhere.
//  - nearest_dynamic_code: the CUDA kernel's binary search (kernels.cu dQuantize<0>): the nearest code, exact ties
//    toward the search's pivot. For the CUDA port; golden data for it needs a GPU run of bitsandbytes.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include <qlora/core/config.hpp>
#include <qlora/core/error.hpp>
#include <qlora/quant/dynamic_map.hpp>

namespace qlora {

// Number of uniform bins the CPU backend's lookup table splits [-1, 1] into.
inline constexpr int kDynamicLookupBins = 65536;

// The CPU backend's lookup bin of a scaled value s (= x / absmax, not yet clamped); NaN is the caller's case.
QLORA_HD inline int dynamic_lookup_bin(float s) {
  s = s < -1.0f ? -1.0f : (s > 1.0f ? 1.0f : s);
  // norm_to_lut_index: (uint16)((s + 1) * 0.5f * 65535 + 0.5f); the library is built with fp-contract=fast and the
  // last multiply-add is one fma (checked in the disassembly of libbitsandbytes_cpu.so), so it is spelled out here.
  return static_cast<int>(::fmaf((s + 1.0f) * 0.5f, static_cast<float>(kDynamicLookupBins - 1), 0.5f));
}

// The code index bin `bin` holds. build_quantize_lut: bin i stands for v = -1 + 2i/65535 and holds the number of
// code midpoints strictly below v (binary search over the 255 midpoints 0.5f * (code[k] + code[k+1])).
QLORA_HD inline std::uint8_t dynamic_code_of_bin(const float* code, int bin) {
  const float v = -1.0f + (2.0f * static_cast<float>(bin)) / static_cast<float>(kDynamicLookupBins - 1);
  int lo = 0, hi = kDynamicMapSize - 1;
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (0.5f * (code[mid] + code[mid + 1]) < v) lo = mid + 1;
    else hi = mid;
  }
  return static_cast<std::uint8_t>(lo);
}

// CPU-backend index of the code for a scaled value s (= x / absmax, not yet clamped). `code`: 256 sorted values.
QLORA_HD inline std::uint8_t lookup_dynamic_code(const float* code, float s) {
  if (s != s) return 0;  // NaN: cpu_ops.cpp's float->int conversion of NaN gives 0x80000000, whose low 16 bits are 0
  return dynamic_code_of_bin(code, dynamic_lookup_bin(s));
}

// The CPU backend's table itself: the code index of each of the 65536 bins, built once per map (64 KiB), so
// quantizing is one multiply-add and one load per value instead of a binary search — what the 8-bit optimizers use.
struct DynamicCodeTable {
  std::vector<std::uint8_t> index;  // [kDynamicLookupBins]

  explicit DynamicCodeTable(const DynamicMap& code) : index(kDynamicLookupBins) {
    for (int bin = 0; bin < kDynamicLookupBins; ++bin) index[static_cast<std::size_t>(bin)] = dynamic_code_of_bin(code.data(), bin);
  }
  std::uint8_t operator()(float s) const {  // = lookup_dynamic_code(code, s)
    return s != s ? std::uint8_t{0} : index[static_cast<std::size_t>(dynamic_lookup_bin(s))];
  }
};

// CUDA-kernel index of the code nearest to s (kernels.cu dQuantize<0> with the general 8-bit map).
QLORA_HD inline std::uint8_t nearest_dynamic_code(const float* code, float s) {
  int pivot = 127, lower_pivot = 0, upper_pivot = 255;
  float lower = -1.0f, upper = 1.0f;
  for (int step = 64; step > 0; step /= 2) {
    if (s > code[pivot]) {
      lower_pivot = pivot;
      lower = code[pivot];
      pivot += step;
    } else {
      upper_pivot = pivot;
      upper = code[pivot];
      pivot -= step;
    }
  }
  if (upper_pivot == 255) upper = code[255];
  if (lower_pivot == 0) lower = code[0];
  const float value = code[pivot];
  if (s > value) return static_cast<std::uint8_t>(s > (upper + value) * 0.5f ? upper_pivot : pivot);
  return static_cast<std::uint8_t>(s < (lower + value) * 0.5f ? lower_pivot : pivot);
}

enum class DynamicRounding { cpu_lookup_table, cuda_nearest };

namespace detail {
inline void check_blockwise8_args(const void* in, const void* out, const float* absmax, index_t n, index_t blocksize) {
  require(n >= 0, "blockwise8", "negative element count ", n);
  // bitsandbytes' Python API only rejects blocksize <= 0 (its CPU kernel takes any positive size); its CUDA kernels
  // support the powers of two 64..4096 only.
  require(blocksize > 0, "blockwise8", "blocksize must be positive, got ", blocksize);
  require(n == 0 || (in != nullptr && out != nullptr && absmax != nullptr), "blockwise8",
          "null buffer for ", n, " elements");
}
}  // namespace detail

inline index_t blockwise_block_count(index_t n, index_t blocksize) { return (n + blocksize - 1) / blocksize; }

namespace detail {
// absmax[b] = max |x| of each block and codes[i] = pick(x[i] / absmax) (all 0 in a block whose absmax is 0).
template <class Pick>
void quantize_blocks(const float* x, index_t n, index_t blocksize, std::uint8_t* codes, float* absmax, Pick pick) {
  detail::check_blockwise8_args(x, codes, absmax, n, blocksize);
  for (index_t b = 0; b * blocksize < n; ++b) {
    const index_t begin = b * blocksize, end = std::min(n, begin + blocksize);
    float block_max = 0.0f;  // std::max(m, |x|) as cpu_ops.cpp writes it: NaN values are skipped
    for (index_t i = begin; i < end; ++i) block_max = std::max(block_max, std::fabs(x[i]));
    absmax[b] = block_max;
    if (block_max == 0.0f) {
      std::fill(codes + begin, codes + end, std::uint8_t{0});
      continue;
    }
    const float inv = 1.0f / block_max;
    for (index_t i = begin; i < end; ++i) codes[i] = pick(x[i] * inv);
  }
}
}  // namespace detail

// x: [n] -> codes: [n] uint8, absmax: [ceil(n / blocksize)] float32. `code`: 256 sorted values.
inline void quantize_blockwise(const float* x, index_t n, const DynamicMap& code, index_t blocksize,
                               std::uint8_t* codes, float* absmax,
                               DynamicRounding rounding = DynamicRounding::cpu_lookup_table) {
  if (rounding == DynamicRounding::cpu_lookup_table)
    detail::quantize_blocks(x, n, blocksize, codes, absmax, [&](float s) { return lookup_dynamic_code(code.data(), s); });
  else
    detail::quantize_blocks(x, n, blocksize, codes, absmax, [&](float s) { return nearest_dynamic_code(code.data(), s); });
}
// The same as the CPU lookup rounding above, through a prebuilt table.
inline void quantize_blockwise(const float* x, index_t n, const DynamicCodeTable& table, index_t blocksize,
                               std::uint8_t* codes, float* absmax) {
  detail::quantize_blocks(x, n, blocksize, codes, absmax, [&](float s) { return table(s); });
}

// codes: [n], absmax: [ceil(n / blocksize)] -> out: [n] = code[q] * absmax[block] (float32 multiply).
inline void dequantize_blockwise(const std::uint8_t* codes, index_t n, const float* absmax, const DynamicMap& code,
                                 index_t blocksize, float* out) {
  detail::check_blockwise8_args(codes, out, absmax, n, blocksize);
  for (index_t i = 0; i < n; ++i) out[i] = code[codes[i]] * absmax[i / blocksize];
}

// Owning form: the codes and per-block absmax of one flat tensor.
struct Blockwise8 {
  index_t blocksize = 4096;    // bitsandbytes' default for quantize_blockwise
  std::vector<std::uint8_t> codes;  // [numel]
  std::vector<float> absmax;   // [ceil(numel / blocksize)]
};

inline Blockwise8 quantize_blockwise(const std::vector<float>& x, const DynamicMap& code, index_t blocksize = 4096,
                                     DynamicRounding rounding = DynamicRounding::cpu_lookup_table) {
  const auto n = static_cast<index_t>(x.size());
  require(blocksize > 0, "blockwise8", "blocksize must be positive, got ", blocksize);
  Blockwise8 q{blocksize, std::vector<std::uint8_t>(x.size()),
               std::vector<float>(static_cast<std::size_t>(blockwise_block_count(n, blocksize)))};
  quantize_blockwise(x.data(), n, code, blocksize, q.codes.data(), q.absmax.data(), rounding);
  return q;
}

inline std::vector<float> dequantize_blockwise(const Blockwise8& q, const DynamicMap& code) {
  const auto n = static_cast<index_t>(q.codes.size());
  require(q.blocksize > 0 && static_cast<index_t>(q.absmax.size()) == blockwise_block_count(n, q.blocksize),
          "blockwise8", "absmax has ", q.absmax.size(), " entries, ", n, " values in blocks of ", q.blocksize);
  std::vector<float> out(q.codes.size());
  dequantize_blockwise(q.codes.data(), n, q.absmax.data(), code, q.blocksize, out.data());
  return out;
}

}  // namespace qlora

#include "../core/tensor.hpp"
#if defined(__CUDACC__)
#include "../cuda/blockwise8.cuh"
#endif

namespace qlora {

// Blockwise 8-bit codes of a tensor, on its device: codes [n], absmax [ceil(n / blocksize)].
struct Blockwise8Tensor {
  Tensor<std::uint8_t, Dyn> codes;
  Tensor<float, Dyn> absmax;
  index_t blocksize = 4096;
};

namespace detail {
// The 256 code values as a float tensor on `device` (the kernels read the code from device memory).
inline Tensor<float, Dim<256>> code_table(const DynamicMap& code, const Device& device) {
  return Tensor<float, Dim<256>>::from(std::vector<float>(code.begin(), code.end())).to(device);
}
}  // namespace detail

QLORA_DISPATCH_BEGIN

// quantize_blockwise of x (any shape, CPU or GPU) with the 256-entry `code`, on x's device.
template <class... Ds>
Blockwise8Tensor quantize_blockwise(const Tensor<float, Ds...>& x, const DynamicMap& code, index_t blocksize = 4096,
                                    DynamicRounding rounding = DynamicRounding::cpu_lookup_table) {
  require(blocksize > 0, "blockwise8", "blocksize must be positive, got ", blocksize);
  const index_t n = x.numel();
  Blockwise8Tensor q{Tensor<std::uint8_t, Dyn>::zeros_on(x.device(), n),
                     Tensor<float, Dyn>::zeros_on(x.device(), blockwise_block_count(n, blocksize)), blocksize};
  if (x.device().is_cpu()) {
    qlora::quantize_blockwise(x.data(), n, code, blocksize, q.codes.data(), q.absmax.data(), rounding);
  } else {
    QLORA_ON_CUDA("blockwise8", x.device(), const auto table = detail::code_table(code, x.device());
                  cuda::quantize_blockwise(x.data(), n, table.data(), blocksize,
                                           rounding == DynamicRounding::cuda_nearest, q.codes.data(),
                                           q.absmax.data(), x.device()));
  }
  return q;
}

// The float32 values of q (code[q] * absmax[block]) into `out` (same device, same element count).
template <class... Ds>
void dequantize_blockwise(const Blockwise8Tensor& q, const DynamicMap& code, const Tensor<float, Ds...>& out) {
  const index_t n = out.numel();
  if (q.codes.numel() != n) fail("blockwise8", "dequantize: ", q.codes.numel(), " codes into ", n, " values");
  if (out.device().is_cpu())
    return qlora::dequantize_blockwise(q.codes.data(), n, q.absmax.data(), code, q.blocksize, out.data());
  QLORA_ON_CUDA("blockwise8", out.device(), const auto table = detail::code_table(code, out.device());
                cuda::dequantize_blockwise(q.codes.data(), n, q.absmax.data(), table.data(), q.blocksize, out.data(),
                                           out.device()));
}

QLORA_DISPATCH_END
}  // namespace qlora
