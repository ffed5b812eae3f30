// dynamic_map: bitsandbytes' 256-entry "dynamic" 8-bit code (`create_dynamic_map`, bitsandbytes/functional.py), used by
// blockwise 8-bit quantization, the nested absmax of NF4 double quantization (signed) and AdamW8bit's states
// (signed for m, unsigned for v). Computed here the way bitsandbytes does it, bit for bit with torch's float32 math:
//   for i in 0..6: n = 2^i + 1 (signed) or 2^(i+1) + 1 (unsigned); b = torch.linspace(0.1, 1, n, float32);
//   means = (b[:-1] + b[1:]) / 2; append fl32(10^(i-6)) * means (and its negation if signed); append 0 and 1; sort.
// Signed: code[0] = -0.99297 (not -1), code[127] = 0, code[255] = 1. Unsigned: code[0] = 0, code[255] = 1.
// The table is host data: compute it once and copy it to the device next to the codes it decodes.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>

namespace qlora {

inline constexpr int kDynamicMapSize = 256;

// The 256 code values, sorted ascending (quantization searches them; dequantization indexes them).
using DynamicMap = std::array<float, kDynamicMapSize>;

namespace detail {

// Element k of torch.linspace(start, end, steps, dtype=torch.float32) on CPU (torch 2.x, RangeFactoriesKernel.cpp):
// step = (end - start) / (steps - 1) in float; the first half counts up from start, the second half down from end,
// and the compiler fuses `start + step * k` into one fma. Checked bit for bit against torch 2.15 (golden tables);
// FORMATS.md's vectorised variant (torch 1.13.1) differs from it in some last bits.
inline float torch_linspace_f32(float start, float end, int steps, int k) {
  const float step = (end - start) / static_cast<float>(steps - 1);
  if (k < steps / 2) return std::fma(step, static_cast<float>(k), start);
  return std::fma(-step, static_cast<float>(steps - k - 1), end);
}

}  // namespace detail

// bitsandbytes.functional.create_dynamic_map(signed=is_signed) with its defaults max_exponent_bits=7, total_bits=8.
inline DynamicMap create_dynamic_map(bool is_signed) {
  constexpr int kMaxExponentBits = 7;
  // 10 ** (i - 6) as Python evaluates it (a double), rounded to float when torch multiplies a float32 tensor by it.
  constexpr double kPowersOfTen[kMaxExponentBits] = {1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0};
  DynamicMap code{};
  int filled = 0;
  for (int i = 0; i < kMaxExponentBits; ++i) {
    const int steps = is_signed ? (1 << i) + 1 : (1 << (i + 1)) + 1;
    const float scale = static_cast<float>(kPowersOfTen[i]);
    for (int k = 0; k + 1 < steps; ++k) {
      const float lo = detail::torch_linspace_f32(0.1f, 1.0f, steps, k);
      const float hi = detail::torch_linspace_f32(0.1f, 1.0f, steps, k + 1);
      const float value = scale * ((lo + hi) / 2.0f);
      code[filled++] = value;
      if (is_signed) code[filled++] = -value;
    }
  }
  // signed: 2 * (1 + 2 + ... + 64) = 254 entries; unsigned: 2 + 4 + ... + 128 = 254 entries; then 0 and 1.
  code[filled++] = 0.0f;
  code[filled++] = 1.0f;
  std::sort(code.begin(), code.end());
  return code;
}

}  // namespace qlora
