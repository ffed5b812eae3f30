// Scalar types and their traits: bf16 and f16 with round-to-nearest-even conversion from float (bit-exact with IEEE
// 754 and with PyTorch/Eigen: ties go to the even mantissa, subnormals are kept, overflow becomes ±Inf, NaN stays a
// quiet NaN with its sign). Both are plain 16-bit structs usable on host and device. `dtype_traits<T>` gives each
// element type a name, a size and the type it is computed in (bf16/f16/float -> float, double -> double).
#pragma once

#include <cstdint>
#include <cstring>
#include <ostream>
#include <string_view>
#include <type_traits>

#include "config.hpp"

namespace qlora {

namespace detail {
QLORA_HD inline std::uint32_t float_bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
QLORA_HD inline float bits_float(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// bf16 is the top half of a float. Rounding adds 0x7fff plus the lowest kept bit, so exact halves round to even.
QLORA_HD inline std::uint16_t float_to_bf16_bits(float f) {
  const std::uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x0040u);  // quiet NaN
  return static_cast<std::uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
QLORA_HD inline float bf16_bits_to_float(std::uint16_t b) { return bits_float(std::uint32_t{b} << 16); }

// IEEE binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits. Largest finite 65504; 65520 is the midpoint to
// 65536 and ties to even, i.e. to infinity. Below 2^-14 the result is subnormal with a step of 2^-24.
QLORA_HD inline std::uint16_t float_to_f16_bits(float f) {
  const std::uint32_t u = float_bits(f);
  const auto sign = static_cast<std::uint16_t>((u >> 16) & 0x8000u);
  const std::uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return static_cast<std::uint16_t>(sign | 0x7e00u | ((a >> 13) & 0x3ffu));  // quiet NaN
  if (a >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);                        // rounds to Inf
  if (a >= 0x38800000u) {  // normal: round the 13 dropped bits to nearest even, rebias the exponent 127 -> 15
    const std::uint32_t rounded = a + 0xfffu + ((a >> 13) & 1u);
    return static_cast<std::uint16_t>(sign | ((rounded - (112u << 23)) >> 13));
  }
  if (a < 0x33000000u) return sign;  // below 2^-25: rounds to zero (2^-25 itself ties to even = 0 below)
  // subnormal: value / 2^-24 = significand * 2^(exp + 1), a right shift by 14..24
  const std::int32_t exp = static_cast<std::int32_t>(a >> 23) - 127;
  const std::uint32_t significand = (a & 0x7fffffu) | 0x800000u;
  const auto shift = static_cast<std::uint32_t>(-(exp + 1));
  std::uint32_t h = significand >> shift;
  const std::uint32_t rest = significand & ((1u << shift) - 1u);
  const std::uint32_t half = 1u << (shift - 1u);
  if (rest > half || (rest == half && (h & 1u))) ++h;
  return static_cast<std::uint16_t>(sign | h);
}
QLORA_HD inline float f16_bits_to_float(std::uint16_t h) {
  const std::uint32_t sign = std::uint32_t{h & 0x8000u} << 16;
  std::uint32_t exp = (h >> 10) & 0x1fu;
  std::uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return bits_float(sign | 0x7f800000u | (mant << 13));  // Inf / NaN
  if (exp == 0) {
    if (mant == 0) return bits_float(sign);
    exp = 1;  // subnormal: normalise so the implicit bit (0x400) is set
    while ((mant & 0x400u) == 0) {
      mant <<= 1;
      --exp;
    }
    mant &= 0x3ffu;
  }
  return bits_float(sign | ((exp + 112u) << 23) | (mant << 13));
}
}  // namespace detail

// A 16-bit float as storage only (arithmetic happens in float); Codec says how the bits encode a float.
template <class Codec>
struct Float16 {
  std::uint16_t bits = 0;
  Float16() = default;
  QLORA_HD explicit Float16(float f) : bits(Codec::encode(f)) {}
  QLORA_HD static Float16 from_bits(std::uint16_t b) {
    Float16 x;
    x.bits = b;
    return x;
  }
  QLORA_HD explicit operator float() const { return Codec::decode(bits); }
  QLORA_HD friend bool operator==(Float16 a, Float16 b) { return a.bits == b.bits; }
};

// Brain float 16: 8 exponent bits, 7 mantissa bits (the top half of a float).
struct BrainFloatCodec {
  QLORA_HD static std::uint16_t encode(float f) { return detail::float_to_bf16_bits(f); }
  QLORA_HD static float decode(std::uint16_t b) { return detail::bf16_bits_to_float(b); }
};
// IEEE binary16: 5 exponent bits, 10 mantissa bits.
struct HalfFloatCodec {
  QLORA_HD static std::uint16_t encode(float f) { return detail::float_to_f16_bits(f); }
  QLORA_HD static float decode(std::uint16_t b) { return detail::f16_bits_to_float(b); }
};

using bf16 = Float16<BrainFloatCodec>;
using f16 = Float16<HalfFloatCodec>;
static_assert(sizeof(bf16) == 2 && std::is_trivially_copyable_v<bf16>);
static_assert(sizeof(f16) == 2 && std::is_trivially_copyable_v<f16>);

inline std::ostream& operator<<(std::ostream& os, bf16 x) { return os << static_cast<float>(x); }
inline std::ostream& operator<<(std::ostream& os, f16 x) { return os << static_cast<float>(x); }

// Run-time names of the element types, for the few device primitives that are dispatched at run time.
enum class ScalarType { f32, f64, bf16, f16, u8, i32, i64 };

// The element types a dense Tensor may hold, and what each computes in.
template <class T>
struct dtype_traits;
template <>
struct dtype_traits<float> {
  static constexpr ScalarType id = ScalarType::f32;
  static constexpr std::string_view name = "f32";
  using compute_type = float;
};
template <>
struct dtype_traits<double> {
  static constexpr ScalarType id = ScalarType::f64;
  static constexpr std::string_view name = "f64";
  using compute_type = double;
};
template <>
struct dtype_traits<bf16> {
  static constexpr ScalarType id = ScalarType::bf16;
  static constexpr std::string_view name = "bf16";
  using compute_type = float;
};
template <>
struct dtype_traits<f16> {
  static constexpr ScalarType id = ScalarType::f16;
  static constexpr std::string_view name = "f16";
  using compute_type = float;
};
template <>
struct dtype_traits<std::uint8_t> {
  static constexpr ScalarType id = ScalarType::u8;
  static constexpr std::string_view name = "u8";
  using compute_type = float;
};
template <>
struct dtype_traits<std::int32_t> {
  static constexpr ScalarType id = ScalarType::i32;
  static constexpr std::string_view name = "i32";
  using compute_type = float;
};
template <>
struct dtype_traits<std::int64_t> {
  static constexpr ScalarType id = ScalarType::i64;
  static constexpr std::string_view name = "i64";
  using compute_type = double;
};

template <class T>
concept DenseElement = requires { dtype_traits<T>::name; };
template <class T>
using compute_t = typename dtype_traits<T>::compute_type;

// Converts between element types through the compute type (float for the 16-bit ones).
template <class To, class From>
QLORA_HD inline To convert(From x) {
  if constexpr (std::is_same_v<To, From>) {
    return x;
  } else if constexpr (std::is_same_v<From, bf16> || std::is_same_v<From, f16>) {
    return convert<To>(static_cast<float>(x));
  } else if constexpr (std::is_same_v<To, bf16> || std::is_same_v<To, f16>) {
    return To(static_cast<float>(x));
  } else {
    return static_cast<To>(x);
  }
}

}  // namespace qlora
