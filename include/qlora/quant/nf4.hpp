// nf4: bitsandbytes' blockwise 4-bit quantization (`quantize_4bit` / `dequantize_4bit`, quant_type "nf4" or "fp4"),
// with optional double quantization of the per-block absmax (compress_statistics=True), bit-exact with bitsandbytes
// 0.50's CPU backend (backends/default/ops.py; golden files from tests/golden/bnb_quant.py).
//   x: [n] float32, flattened row-major -> blocks of `blocksize` (default 64); absmax[b] = max|x| over block b;
//   code q = bucket of s = x / absmax among the 16 code values; element 2j -> HIGH nibble of byte j, 2j+1 -> LOW;
//   dequantize: code[q] * absmax[b].  Double quantization: offset = mean(absmax) (torch float32 mean);
//   absmax - offset is blockwise-8-bit quantized with the signed dynamic map, blocks of 256 (quant/blockwise8.hpp).
// Where the CPU backend and the CUDA kernels (FORMATS.md section 1) disagree, this file follows the CPU backend,
// because that is what the golden data comes from; each difference is noted where it happens.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <optional>
#include <vector>

#include <qlora/core/config.hpp>
#include <qlora/core/dtype.hpp>
#include <qlora/core/error.hpp>
#include <qlora/quant/blockwise8.hpp>
#include <qlora/quant/dynamic_map.hpp>

namespace qlora {

enum class FourBitType : std::uint8_t { nf4, fp4 };

// A 4-bit code: value[q] for q = 0..15. A plain struct so device code can copy it into a local constexpr.
struct FourBitCode {
  float value[16];
};

// NF4 (NormalFloat4): quantiles of N(0,1) normalised to [-1, 1] (create_normal_map(0.9677083)), as hard-coded in
// bitsandbytes functional.get_4bit_type("nf4") and csrc/kernels.cu nf4_dequantization_lut. Sorted ascending.
inline constexpr FourBitCode kNf4Code = {{-1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
                                          -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
                                          0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f,
                                          0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f,
                                          0.7229568362236023f, 1.0f}};

// FP4 (1 sign bit 0b1000, 2 exponent bits, 1 mantissa bit, bias 2): get_4bit_type("fp4") lists the magnitudes
// {0, 0.0625, 8, 12, 4, 6, 2, 3} in bit-pattern order and divides by the max (12) in float32. Code 8 is +0.0: the
// Python list spells it `-0`, an integer. (csrc/cpu_ops.cpp's scalar fp4_lut has -0.0f there, its AVX512 table +0.0f;
// the golden dequantized values come from the +0.0 paths.)
inline constexpr FourBitCode kFp4Code = {{0.0f, 0.0625f / 12.0f, 8.0f / 12.0f, 1.0f, 4.0f / 12.0f, 6.0f / 12.0f,
                                          2.0f / 12.0f, 3.0f / 12.0f, 0.0f, -0.0625f / 12.0f, -8.0f / 12.0f, -1.0f,
                                          -4.0f / 12.0f, -6.0f / 12.0f, -2.0f / 12.0f, -3.0f / 12.0f}};

namespace detail {

// Code indices in ascending value order, as torch.argsort orders them in _get_4bit_quantize_bounds. For FP4 it puts
// code 0 before code 8 (both zero), so scaled values in (0, 0.0026] get code 8 and those in (-0.0026, 0] code 0 —
// the opposite of the CUDA decision tree, which gives 0b1000 to negatives and 0b0000 to positives.
struct FourBitOrder {
  std::uint8_t index[16];
};
inline constexpr FourBitOrder kNf4Order = {{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}};
inline constexpr FourBitOrder kFp4Order = {{11, 10, 13, 12, 15, 14, 9, 0, 8, 1, 6, 7, 4, 5, 2, 3}};

// The 15 bucket bounds: float32 midpoints (a + b) / 2 of neighbouring sorted codes (bitsandbytes computes them in
// torch; the CUDA kernels hard-code the same midpoints as decimal literals).
struct FourBitBounds {
  float bound[15];
};
constexpr FourBitBounds make_four_bit_bounds(const FourBitCode& code, const FourBitOrder& order) {
  FourBitBounds b{};
  for (int k = 0; k < 15; ++k) b.bound[k] = (code.value[order.index[k]] + code.value[order.index[k + 1]]) / 2.0f;
  return b;
}
inline constexpr FourBitBounds kNf4Bounds = make_four_bit_bounds(kNf4Code, kNf4Order);
inline constexpr FourBitBounds kFp4Bounds = make_four_bit_bounds(kFp4Code, kFp4Order);

// a * b rounded to float before a later add sees it: GCC under -std=gnu++20 -march=native (and nvcc by default)
// would otherwise fuse `a * b + c` into one fma, while bitsandbytes runs the multiply and the add as two torch ops.
QLORA_HD inline float mul_unfused(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  float p = a * b;
#if defined(__GNUC__)
  asm volatile("" : "+m"(p));  // opaque to the optimiser, so p cannot be contracted into an fma
#endif
  return p;
#endif
}

inline void check_four_bit_blocksize(index_t blocksize) {
  // bitsandbytes quantize_4bit / dequantize_4bit: "Valid values are 32, 64, 128, 256, 512, 1024, 2048, and 4096".
  require(blocksize >= 32 && blocksize <= 4096 && (blocksize & (blocksize - 1)) == 0, "nf4", "blocksize ", blocksize,
          " is not supported: bitsandbytes accepts the powers of two 32..4096");
}

}  // namespace detail

// 4-bit code of a scaled value s = x / absmax: torch.bucketize(s, bounds) (the number of bounds strictly below s, so
// ties go to the lower code), then mapped back to the code's index. NaN goes to the last bucket (NF4 15 = +1.0,
// FP4 3 = +1.0); the CUDA kernels send NaN to code 0 instead.
QLORA_HD inline std::uint8_t quantize_4bit_value(FourBitType type, float s) {
  constexpr detail::FourBitBounds nf4_bounds = detail::kNf4Bounds;
  constexpr detail::FourBitBounds fp4_bounds = detail::kFp4Bounds;
  constexpr detail::FourBitOrder fp4_order = detail::kFp4Order;
  const float* bound = type == FourBitType::nf4 ? nf4_bounds.bound : fp4_bounds.bound;
  int lo = 0, hi = 15;  // torch's cus_lower_bound, comparison written as it is there so NaN lands the same way
  while (lo < hi) {
    const int mid = lo + (hi - lo) / 2;
    if (!(bound[mid] >= s)) lo = mid + 1;
    else hi = mid;
  }
  return type == FourBitType::nf4 ? static_cast<std::uint8_t>(lo) : fp4_order.index[lo];
}

// The code value of a 4-bit index (multiply by the block's absmax to dequantize).
QLORA_HD inline float four_bit_code_value(FourBitType type, std::uint8_t q) {
  constexpr FourBitCode nf4 = kNf4Code;
  constexpr FourBitCode fp4 = kFp4Code;
  return type == FourBitType::nf4 ? nf4.value[q & 15] : fp4.value[q & 15];
}

inline index_t four_bit_block_count(index_t n, index_t blocksize) { return (n + blocksize - 1) / blocksize; }
inline index_t four_bit_packed_bytes(index_t n) { return (n + 1) / 2; }

// x: [n] -> packed: [(n + 1) / 2] bytes, absmax: [ceil(n / blocksize)] float32.
// Full blocks: s = x * (1 / max(absmax, 1e-38)), absmax stored as is (0 for an all-zero block). The final partial
// block divides instead, s = x / max(absmax, 1e-38), and stores the clamped value (1e-38 for an all-zero tail).
// absmax propagates NaN (torch max), so a block holding a NaN gets absmax NaN and NaN scaled values.
// An odd n pads the last low nibble with the code of 0.0 (NF4 7, FP4 0).
inline void quantize_4bit(const float* x, index_t n, FourBitType type, index_t blocksize, std::uint8_t* packed,
                          float* absmax) {
  detail::check_four_bit_blocksize(blocksize);
  require(n >= 0, "nf4", "negative element count ", n);
  require(n == 0 || (x != nullptr && packed != nullptr && absmax != nullptr), "nf4", "null buffer for ", n,
          " elements");
  for (index_t b = 0; b * blocksize < n; ++b) {
    const index_t begin = b * blocksize, end = std::min(n, begin + blocksize);
    float block_max = 0.0f;
    for (index_t i = begin; i < end; ++i) {
      const float a = std::fabs(x[i]);
      if (a != a || a > block_max) block_max = a;
      if (a != a) break;
    }
    const float clamped = block_max < 1e-38f ? 1e-38f : block_max;  // torch.clamp(min=1e-38) keeps NaN
    const bool partial = end - begin < blocksize;
    absmax[b] = partial ? clamped : block_max;
    const float inv = 1.0f / clamped;
    for (index_t i = begin; i < end; ++i) {
      const std::uint8_t q = quantize_4bit_value(type, partial ? x[i] / clamped : x[i] * inv);
      std::uint8_t& byte = packed[i / 2];
      byte = (i % 2 == 0) ? static_cast<std::uint8_t>(q << 4) : static_cast<std::uint8_t>(byte | q);
    }
  }
  if (n % 2 == 1) packed[n / 2] = static_cast<std::uint8_t>(packed[n / 2] | quantize_4bit_value(type, 0.0f));
}

// packed: [(n + 1) / 2], absmax: [ceil(n / blocksize)] -> out: [n] = code[q] * absmax[block] (float32 multiply),
// converted to T once. Per block the 16 products code × absmax are formed once (the same float products), then each
// nibble is a table lookup; blocks run in parallel.
template <class T = float>
inline void dequantize_4bit(const std::uint8_t* packed, index_t n, FourBitType type, index_t blocksize,
                            const float* absmax, T* out) {
  detail::check_four_bit_blocksize(blocksize);
  require(n >= 0, "nf4", "negative element count ", n);
  require(n == 0 || (packed != nullptr && out != nullptr && absmax != nullptr), "nf4", "null buffer for ", n,
          " elements");
  const index_t blocks = four_bit_block_count(n, blocksize);
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (index_t b = 0; b < blocks; ++b) {
    T table[16];
    for (int q = 0; q < 16; ++q)
      table[q] = convert<T>(four_bit_code_value(type, static_cast<std::uint8_t>(q)) * absmax[b]);
    const index_t begin = b * blocksize, end = std::min(n, begin + blocksize);
    for (index_t i = begin; i + 1 < end; i += 2) {
      const std::uint8_t byte = packed[i / 2];
      out[i] = table[byte >> 4];
      out[i + 1] = table[byte & 15];
    }
    if ((end - begin) % 2) out[end - 1] = table[packed[(end - 1) / 2] >> 4];
  }
}

// Vector width (floats) of torch's CPU sum for the double-quantization offset. 8 reproduces torch 2.15 on the
// AVX512 machine that wrote the golden data (the 320-block case tells 8 from 16: 16 is one ulp off), i.e. the
// 256-bit Vectorized<float> width; a torch build whose sum kernel uses 512-bit vectors would need 16.
inline constexpr int kTorchFloatLanes = 8;

namespace detail {

// torch's float32 sum of a contiguous 1-D tensor on CPU (aten/src/ATen/native/cpu/SumKernel.cpp cascade_sum ->
// vectorized_inner_sum -> row_sum -> multi_row_sum): `lanes`-wide vectors, 4 interleaved rows, 4 cascade levels.
// Exact for n < 32768 (torch's GRAIN_SIZE); above it torch splits the sum across threads.
inline float torch_sum_f32(const float* x, index_t n, int lanes) {
  using Vec = std::vector<float>;
  if (n < lanes) lanes = 1;  // torch's scalar_inner_sum: the same row_sum over single elements
  const index_t vectors = n / lanes;
  auto add = [&](Vec& acc, index_t vector) {
    for (int l = 0; l < lanes; ++l) acc[static_cast<std::size_t>(l)] += x[vector * lanes + l];
  };
  constexpr int kRows = 4, kLevels = 4;
  const index_t size = vectors / kRows;  // multi_row_sum over a (size, 4) view of the vectors
  index_t ceil_log2 = 1;
  if (size > 2) ceil_log2 = static_cast<index_t>(std::bit_width(static_cast<std::uint64_t>(size - 1)));
  const index_t level_power = std::max<index_t>(4, ceil_log2 / kLevels);
  const index_t level_step = index_t{1} << level_power, level_mask = level_step - 1;
  std::vector<std::vector<Vec>> acc(kLevels, std::vector<Vec>(kRows, Vec(static_cast<std::size_t>(lanes), 0.0f)));
  index_t i = 0;
  while (i + level_step <= size) {
    for (index_t j = 0; j < level_step; ++j, ++i)
      for (int k = 0; k < kRows; ++k) add(acc[0][k], i * kRows + k);
    for (int j = 1; j < kLevels; ++j) {
      for (int k = 0; k < kRows; ++k)
        for (int l = 0; l < lanes; ++l) {
          acc[j][k][l] += acc[j - 1][k][l];
          acc[j - 1][k][l] = 0.0f;
        }
      if ((i & (level_mask << (j * level_power))) != 0) break;
    }
  }
  for (; i < size; ++i)
    for (int k = 0; k < kRows; ++k) add(acc[0][k], i * kRows + k);
  for (int j = 1; j < kLevels; ++j)
    for (int k = 0; k < kRows; ++k)
      for (int l = 0; l < lanes; ++l) acc[0][k][l] += acc[j][k][l];
  Vec& partial = acc[0][0];  // row_sum: leftover vectors, then rows 1..3, into row 0
  for (index_t v = size * kRows; v < vectors; ++v) add(partial, v);
  for (int k = 1; k < kRows; ++k)
    for (int l = 0; l < lanes; ++l) partial[l] += acc[0][k][l];
  float total = 0.0f;  // vectorized_inner_sum: scalar tail first, then the lanes in order
  for (index_t k = vectors * lanes; k < n; ++k) total += x[k];
  for (int l = 0; l < lanes; ++l) total += partial[l];
  return 0.0f + total;  // the output starts at 0 and is accumulated into
}

}  // namespace detail

// torch.mean of a float32 vector on CPU: the cascade sum above divided by n in float32.
inline float torch_mean_f32(const float* x, index_t n, int lanes = kTorchFloatLanes) {
  return detail::torch_sum_f32(x, n, lanes) / static_cast<float>(n);
}

// Double quantization of the per-block absmax (bitsandbytes compress_statistics=True; QuantState.state2).
struct NestedAbsmax {
  static constexpr index_t kBlocksize = 256;  // quantize_4bit hard-codes blocksize=256 for the nested quantization
  std::vector<std::uint8_t> codes;  // [blocks]: signed dynamic-map index of absmax[b] - offset  (state.absmax)
  std::vector<float> absmax;        // [ceil(blocks / 256)]: max |absmax - offset| per 256 block (state2.absmax)
  float offset = 0.0f;              // mean of the absmax (state.offset)
};

struct QuantState4bit {
  FourBitType type = FourBitType::nf4;
  index_t blocksize = 64;
  index_t numel = 0;
  std::vector<float> absmax;           // [blocks] float32 when not double-quantized; empty otherwise
  std::optional<NestedAbsmax> nested;  // set when double-quantized
  index_t blocks() const { return four_bit_block_count(numel, blocksize); }
};

struct Quantized4bit {
  std::vector<std::uint8_t> packed;  // [(numel + 1) / 2]
  QuantState4bit state;
};

// absmax: [blocks] -> offset = mean, codes/nested absmax = quantize_blockwise(absmax - offset, signed map, 256).
inline NestedAbsmax double_quantize_absmax(const std::vector<float>& absmax, int lanes = kTorchFloatLanes) {
  const auto blocks = static_cast<index_t>(absmax.size());
  NestedAbsmax nested;
  nested.offset = torch_mean_f32(absmax.data(), blocks, lanes);
  std::vector<float> centered(absmax.size());
  for (std::size_t b = 0; b < absmax.size(); ++b) centered[b] = absmax[b] - nested.offset;
  Blockwise8 q = quantize_blockwise(centered, create_dynamic_map(true), NestedAbsmax::kBlocksize);
  nested.codes = std::move(q.codes);
  nested.absmax = std::move(q.absmax);
  return nested;
}

// The per-block absmax a state decodes with: stored, or dynamic_signed[code] * nested absmax + offset (two
// float32 ops, as bitsandbytes runs dequantize_blockwise and then `absmax += offset`).
inline std::vector<float> four_bit_absmax(const QuantState4bit& state) {
  if (!state.nested) return state.absmax;
  const NestedAbsmax& nested = *state.nested;
  const auto blocks = static_cast<index_t>(nested.codes.size());
  require(blocks == state.blocks() &&
              static_cast<index_t>(nested.absmax.size()) == blockwise_block_count(blocks, NestedAbsmax::kBlocksize),
          "nf4", "double-quantized state has ", nested.codes.size(), " codes and ", nested.absmax.size(),
          " nested absmax for ", state.numel, " values in blocks of ", state.blocksize);
  const DynamicMap code = create_dynamic_map(true);
  std::vector<float> absmax(nested.codes.size());
  for (index_t b = 0; b < blocks; ++b)
    absmax[b] = detail::mul_unfused(code[nested.codes[b]], nested.absmax[b / NestedAbsmax::kBlocksize]) + nested.offset;
  return absmax;
}

// bitsandbytes.functional.quantize_4bit(x, blocksize, compress_statistics=double_quant, quant_type) on CPU.
inline Quantized4bit quantize_4bit(const std::vector<float>& x, FourBitType type, index_t blocksize = 64,
                                   bool double_quant = false, int lanes = kTorchFloatLanes) {
  detail::check_four_bit_blocksize(blocksize);
  Quantized4bit q;
  q.state.type = type;
  q.state.blocksize = blocksize;
  q.state.numel = static_cast<index_t>(x.size());
  q.packed.assign(static_cast<std::size_t>(four_bit_packed_bytes(q.state.numel)), 0);
  std::vector<float> absmax(static_cast<std::size_t>(q.state.blocks()));
  quantize_4bit(x.data(), q.state.numel, type, blocksize, q.packed.data(), absmax.data());
  if (double_quant) q.state.nested = double_quantize_absmax(absmax, lanes);
  else q.state.absmax = std::move(absmax);
  return q;
}

inline std::vector<float> dequantize_4bit(const std::vector<std::uint8_t>& packed, const QuantState4bit& state) {
  require(static_cast<index_t>(packed.size()) == four_bit_packed_bytes(state.numel), "nf4", "packed has ",
          packed.size(), " bytes, ", state.numel, " values need ", four_bit_packed_bytes(state.numel));
  const std::vector<float> absmax = four_bit_absmax(state);
  require(static_cast<index_t>(absmax.size()) == state.blocks(), "nf4", "absmax has ", absmax.size(),
          " entries, ", state.numel, " values in blocks of ", state.blocksize, " need ", state.blocks());
  std::vector<float> out(static_cast<std::size_t>(state.numel));
  dequantize_4bit(packed.data(), state.numel, state.type, state.blocksize, absmax.data(), out.data());
  return out;
}

inline std::vector<float> dequantize_4bit(const Quantized4bit& q) { return dequantize_4bit(q.packed, q.state); }

// Honest storage of n parameters in 4-bit blockwise form, blocks = ceil(n / blocksize):
//   packed codes ceil(n / 2)  +  absmax 4 * blocks                                    (float32 absmax), or
//   packed codes ceil(n / 2)  +  1 * blocks + 4 * ceil(blocks / 256) + 4             (double quantization:
//                                uint8 codes, float32 nested absmax, float32 offset).
// The code tables (16 and 256 floats) are shared by every tensor and not counted. For large n at blocksize 64:
// 0.5 + 4/64 = 0.5625 bytes (4.5 bits) per parameter, and 0.5 + 1/64 + 4/16384 = 0.515869 bytes (4.127 bits).
inline index_t four_bit_storage_bytes(index_t n, index_t blocksize = 64, bool double_quant = true) {
  detail::check_four_bit_blocksize(blocksize);
  require(n >= 0, "nf4", "negative element count ", n);
  const index_t blocks = four_bit_block_count(n, blocksize);
  const index_t statistics =
      double_quant ? blocks + 4 * blockwise_block_count(blocks, NestedAbsmax::kBlocksize) + 4 : 4 * blocks;
  return four_bit_packed_bytes(n) + statistics;
}

inline double four_bit_bytes_per_parameter(index_t n, index_t blocksize = 64, bool double_quant = true) {
  require(n > 0, "nf4", "bytes per parameter of ", n, " parameters");
  return static_cast<double>(four_bit_storage_bytes(n, blocksize, double_quant)) / static_cast<double>(n);
}

}  // namespace qlora
