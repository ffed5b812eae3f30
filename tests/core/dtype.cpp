// bf16 and f16 conversions are bit-exact round-to-nearest-even. The independent reference is Eigen's
// Eigen::bfloat16 / Eigen::half (same IEEE rules, separate implementation); edge cases are also spelled out by hand.
#include <doctest/doctest.h>

#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <limits>

#include <qlora/core/dtype.hpp>

using qlora::bf16;
using qlora::f16;

namespace {
float from_bits(std::uint32_t u) { return qlora::detail::bits_float(u); }
std::uint16_t eigen_bf16(float f) { return Eigen::numext::bit_cast<std::uint16_t>(Eigen::bfloat16(f)); }
std::uint16_t eigen_f16(float f) { return Eigen::numext::bit_cast<std::uint16_t>(Eigen::half(f)); }
}  // namespace

TEST_SUITE("core") {
  TEST_CASE("bf16 rounds to nearest even on ties") {
    // 1 + 2^-8 is exactly between bf16 1.0 (0x3f80) and 1.0078125 (0x3f81): ties go to the even 0x3f80.
    CHECK(bf16(from_bits(0x3f808000)).bits == 0x3f80);
    // 1.0078125 + 2^-8 lies between 0x3f81 and 0x3f82: ties go to the even 0x3f82.
    CHECK(bf16(from_bits(0x3f818000)).bits == 0x3f82);
    CHECK(bf16(from_bits(0x3f808001)).bits == 0x3f81);  // just above the tie rounds up
    CHECK(bf16(from_bits(0x3f807fff)).bits == 0x3f80);  // just below rounds down
  }

  TEST_CASE("bf16 keeps infinities, NaN and subnormals") {
    CHECK(bf16(std::numeric_limits<float>::infinity()).bits == 0x7f80);
    CHECK(bf16(-std::numeric_limits<float>::infinity()).bits == 0xff80);
    CHECK(std::isnan(static_cast<float>(bf16(std::numeric_limits<float>::quiet_NaN()))));
    CHECK(std::signbit(static_cast<float>(bf16(-std::numeric_limits<float>::quiet_NaN()))));
    // A signalling NaN whose payload lies only in the low 16 bits must not turn into Inf.
    CHECK(std::isnan(static_cast<float>(bf16(from_bits(0x7f800001)))));
    CHECK(bf16(from_bits(0x00010000)).bits == 0x0001);  // the smallest bf16 subnormal
    CHECK(bf16(from_bits(0x00008000)).bits == 0x0000);  // half of it ties to even zero
    CHECK(bf16(from_bits(0x7f7fffff)).bits == 0x7f80);  // FLT_MAX rounds up to Inf
    CHECK(bf16(-0.0f).bits == 0x8000);
  }

  TEST_CASE("bf16 equals Eigen::bfloat16 on a sweep of float bit patterns") {
    int mismatches = 0;
    for (std::uint64_t u = 0; u <= 0xffffffffull; u += 65521) {  // a prime step visits every exponent and sign
      const float f = from_bits(static_cast<std::uint32_t>(u));
      if (std::isnan(f)) continue;
      if (bf16(f).bits != eigen_bf16(f)) ++mismatches;
    }
    CHECK(mismatches == 0);
  }

  TEST_CASE("bf16 to float is exact for every bit pattern") {
    for (std::uint32_t b = 0; b <= 0xffff; ++b) {
      const float f = static_cast<float>(bf16::from_bits(static_cast<std::uint16_t>(b)));
      if (std::isnan(f)) continue;
      REQUIRE(bf16(f).bits == b);  // round trip
    }
  }

  TEST_CASE("f16 rounds to nearest even, overflows to Inf and keeps subnormals") {
    CHECK(f16(1.0f).bits == 0x3c00);
    CHECK(f16(65504.0f).bits == 0x7bff);
    CHECK(f16(65519.0f).bits == 0x7bff);  // below the midpoint to 65536
    CHECK(f16(65520.0f).bits == 0x7c00);  // the midpoint ties to even: Inf
    CHECK(f16(-1e10f).bits == 0xfc00);
    CHECK(f16(std::ldexp(1.0f, -24)).bits == 0x0001);          // smallest subnormal
    CHECK(f16(std::ldexp(1.0f, -25)).bits == 0x0000);          // half of it ties to even zero
    CHECK(f16(std::ldexp(1.5f, -25)).bits == 0x0001);          // above the tie rounds up
    CHECK(f16(std::ldexp(3.0f, -25)).bits == 0x0002);          // 1.5 ulp ties to even 2
    CHECK(f16(std::ldexp(1.0f, -14)).bits == 0x0400);          // smallest normal
    CHECK(f16(from_bits(0x3f801000)).bits == 0x3c00);          // 1 + 2^-11 ties to even 1.0
    CHECK(f16(from_bits(0x3f803000)).bits == 0x3c02);          // 1 + 3*2^-11 ties to even 0x3c02
    CHECK(std::isnan(static_cast<float>(f16(std::numeric_limits<float>::quiet_NaN()))));
    CHECK(f16(-0.0f).bits == 0x8000);
  }

  TEST_CASE("f16 equals Eigen::half on a sweep of float bit patterns") {
    int mismatches = 0;
    for (std::uint64_t u = 0; u <= 0xffffffffull; u += 65521) {
      const float f = from_bits(static_cast<std::uint32_t>(u));
      if (std::isnan(f)) continue;
      if (f16(f).bits != eigen_f16(f)) ++mismatches;
    }
    CHECK(mismatches == 0);
  }

  TEST_CASE("f16 to float equals Eigen::half for every bit pattern") {
    for (std::uint32_t b = 0; b <= 0xffff; ++b) {
      const float ours = static_cast<float>(f16::from_bits(static_cast<std::uint16_t>(b)));
      const float eigen = static_cast<float>(Eigen::numext::bit_cast<Eigen::half>(static_cast<std::uint16_t>(b)));
      if (std::isnan(eigen)) {
        REQUIRE(std::isnan(ours));
      } else {
        REQUIRE(qlora::detail::float_bits(ours) == qlora::detail::float_bits(eigen));
      }
    }
  }

  TEST_CASE("dtype traits name each element type and its compute type") {
    CHECK(qlora::dtype_traits<bf16>::name == "bf16");
    CHECK(qlora::dtype_traits<double>::name == "f64");
    static_assert(std::is_same_v<qlora::compute_t<bf16>, float>);
    static_assert(std::is_same_v<qlora::compute_t<double>, double>);
    CHECK(qlora::convert<float>(qlora::convert<bf16>(3.0)) == 3.0f);
  }
}
