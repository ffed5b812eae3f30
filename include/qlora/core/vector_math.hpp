// Vectorised elementwise math for the CPU loops that libm's scalar calls would bound (GeGLU's tanh, the softmax's
// exp). Plain loops the compiler vectorises for whatever target it compiles for — SSE2, AVX2, AVX-512, NEON — with
// no intrinsics (GCC 12 warns falsely inside its own AVX-512 intrinsics once inlined, bug 105593, which Eigen's
// double exp runs into under -Werror). Clamps and special cases are chosen through the bits (`blend`), not with
// `?:` on floats: GCC (under its default -ftrapping-math) turns such a select into branches that carry the
// arithmetic after it, and only AVX-512's masked instructions can if-convert those back — with `?:` these loops ran
// scalar on every other target (exp 8.5× and tanh 3.4× slower under x86-64-v3 than under AVX-512).
//
//   tanh(u) = (e − 1) / (e + 1),   e = exp(2u) = 2^k · P(r),   2u = k·ln2 + r, |r| ≤ ln2 / 2,   in double
//
// P is exp's Taylor polynomial to degree 12 (relative error < 1e-14 on |r| ≤ ln2/2); 2^k is built in the exponent
// bits (k rounded to nearest by the 1.5·2^52 shift). u is clamped to ±20 first (tanh is ±1 in float well before);
// |u| < 1e-5 returns u itself (the cubic term is below half an ulp; −0 stays −0) and NaN stays NaN. In double the
// quotient's error is far below float's rounding step, so the float result is the correctly rounded tanh(u) — on a
// sweep of 700 000 inputs every one was, where glibc's tanhf missed 5.7 % by an ulp. ~1.5 ns per element on AVX-512
// against ~8 ns for tanhf.
//
// exp(x) in float: 2^k · P(r), x = k·ln2 + r (Cody–Waite, two-part ln 2), P exp's Taylor polynomial to degree 7
// (|r| ≤ ln2/2: truncation < 1e-8 relative), 2^k built in the exponent bits as two factors (so k = 128 near FLT_MAX
// works); within 1.5 ulp of the exact value (1.17 on the test's sweep). x above 88.72 gives +inf, below −87.33 gives
// 0 (no subnormal results), NaN stays NaN. ~0.3 ns per element.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "config.hpp"

namespace qlora::cpu {

// c ? a : b, chosen through the bits (no branch, no floating-point select for the compiler to turn into one).
template <class F>
inline F blend(bool c, F a, F b) {
  using U = std::conditional_t<sizeof(F) == 4, std::uint32_t, std::uint64_t>;
  const U m = U{0} - static_cast<U>(c);
  return std::bit_cast<F>(static_cast<U>((std::bit_cast<U>(a) & m) | (std::bit_cast<U>(b) & ~m)));
}

// out[0, n) = tanh(in[0, n)); in and out may be the same array. Float: as above; other types: std::tanh.
template <class C>
void tanh_n(const C* in, C* out, index_t n) {
  if constexpr (std::is_same_v<C, float>) {
    constexpr index_t B = 256;
    constexpr double kShift = 0x1.8p52, kLog2e = 1.4426950408889634;
    constexpr double kLn2Hi = 0.6931471803691238, kLn2Lo = 1.9082149292705877e-10;  // ln 2 = hi + lo
    for (index_t i0 = 0; i0 < n; i0 += B) {
      const index_t nb = std::min(B, n - i0);
      double e[B];
      for (index_t j = 0; j < nb; ++j) {  // e = exp(2 · clamp(u, ±20))
        const double u0 = in[i0 + j];
        const double u = blend(std::isless(u0, -20.0), -20.0, blend(std::isgreater(u0, 20.0), 20.0, u0));
        const double x = 2.0 * u;
        const double shifted = x * kLog2e + kShift;  // k = round(x / ln 2) sits in the low bits
        const double k = shifted - kShift;
        const double r = (x - k * kLn2Hi) - k * kLn2Lo;
        double p = 1.0 / 479001600;  // 1/12!
        for (const double c : {1.0 / 39916800, 1.0 / 3628800, 1.0 / 362880, 1.0 / 40320, 1.0 / 5040, 1.0 / 720,
                               1.0 / 120, 1.0 / 24, 1.0 / 6, 0.5, 1.0, 1.0})
          p = p * r + c;
        const std::int64_t bits = (std::bit_cast<std::int64_t>(shifted) - std::bit_cast<std::int64_t>(kShift) + 1023) << 52;
        e[j] = p * std::bit_cast<double>(bits);
      }
      for (index_t j = 0; j < nb; ++j) {
        const float x = in[i0 + j];
        const bool itself = !std::isgreaterequal(std::fabs(x), 1e-5f);  // tiny, ±0 or NaN
        out[i0 + j] = blend(itself, x, static_cast<float>((e[j] - 1.0) / (e[j] + 1.0)));
      }
    }
  } else {
    for (index_t i = 0; i < n; ++i) out[i] = std::tanh(in[i]);
  }
}

// out[0, n) = exp(in[0, n)); in and out may be the same array. Float: as above; other types: std::exp.
template <class C>
void exp_n(const C* in, C* out, index_t n) {
  if constexpr (std::is_same_v<C, float>) {
    constexpr float kShift = 0x1.8p23f, kLog2e = 1.44269504f;
    constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;  // ln 2 = hi + lo, hi exact in 9 bits
    constexpr float kMax = 88.7228317f, kMin = -87.3365479f;          // exp(kMax) ≈ FLT_MAX, exp(kMin) = FLT_MIN
    for (index_t i = 0; i < n; ++i) {
      const float x0 = in[i];
      const bool below = std::isless(x0, kMin), above = std::isgreater(x0, kMax);  // NaN: neither, and stays NaN
      const float x = blend(below, kMin, blend(above, kMax, x0));
      const float shifted = x * kLog2e + kShift;  // k = round(x / ln 2) sits in the low bits
      const float k = shifted - kShift;
      const float r = (x - k * kLn2Hi) - k * kLn2Lo;
      float p = 1.0f / 5040;
      for (const float c : {1.0f / 720, 1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f}) p = p * r + c;
      const std::int32_t ki = std::bit_cast<std::int32_t>(shifted) - std::bit_cast<std::int32_t>(kShift);
      const std::int32_t k1 = ki >> 1, k2 = ki - k1;  // 2^k = 2^k1 · 2^k2, each a normal float for k in [−126, 128]
      const float e = p * std::bit_cast<float>((k1 + 127) << 23) * std::bit_cast<float>((k2 + 127) << 23);
      out[i] = blend(below, 0.0f, blend(above, INFINITY, e));  // a NaN x0 has made e NaN
    }
  } else {
    for (index_t i = 0; i < n; ++i) out[i] = std::exp(in[i]);
  }
}

}  // namespace qlora::cpu
