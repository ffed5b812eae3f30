// The ggml tensor types that GGUF files store, and the block formats qlora dequantizes: Q8_0, Q4_0, Q5_0, Q4_K,
// Q5_K, Q6_K (the set the Q4_K_M files of llama.cpp use, e.g. Gemma 3 270M: Q8_0 embeddings, Q5_0/Q4_K/Q6_K layers).
// Each block is a plain struct with its size asserted, laid out exactly as ggml's `ggml-common.h`, and each
// dequantization is written as the formula of ggml's `ggml-quants.c` (`dequantize_row_*`), in float, in the same
// order of operations, so results are bit-identical with ggml and with the gguf Python package (gguf.quants).
// Rows are consecutive blocks along ggml's ne[0] (the contiguous dimension). Works on host and device (QLORA_HD).
// The type table (block size, bytes per block) follows gguf-py's GGML_QUANT_SIZES.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

#include "../core/dtype.hpp"
#include "../core/error.hpp"

namespace qlora {

// ggml_type ids as stored in GGUF tensor infos (ggml.h).
// clang-format off
enum class GgmlType : std::uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9, Q2_K = 10,
  Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15, IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19,
  IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22, IQ4_XS = 23, I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28,
  IQ1_M = 29, BF16 = 30, TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39, NVFP4 = 40, Q1_0 = 41
};
// clang-format on

struct GgmlTypeTraits {
  GgmlType type;
  std::string_view name;
  std::int64_t block_size;  // elements per block
  std::int64_t type_size;   // bytes per block
};

// Source: gguf-py GGML_QUANT_SIZES (gguf 0.19), which mirrors ggml's type_traits table.
// clang-format off
inline constexpr std::array<GgmlTypeTraits, 34> ggml_type_table = {{
    {GgmlType::F32, "F32", 1, 4}, {GgmlType::F16, "F16", 1, 2}, {GgmlType::Q4_0, "Q4_0", 32, 18},
    {GgmlType::Q4_1, "Q4_1", 32, 20}, {GgmlType::Q5_0, "Q5_0", 32, 22}, {GgmlType::Q5_1, "Q5_1", 32, 24},
    {GgmlType::Q8_0, "Q8_0", 32, 34}, {GgmlType::Q8_1, "Q8_1", 32, 40}, {GgmlType::Q2_K, "Q2_K", 256, 84},
    {GgmlType::Q3_K, "Q3_K", 256, 110}, {GgmlType::Q4_K, "Q4_K", 256, 144}, {GgmlType::Q5_K, "Q5_K", 256, 176},
    {GgmlType::Q6_K, "Q6_K", 256, 210}, {GgmlType::Q8_K, "Q8_K", 256, 292}, {GgmlType::IQ2_XXS, "IQ2_XXS", 256, 66},
    {GgmlType::IQ2_XS, "IQ2_XS", 256, 74}, {GgmlType::IQ3_XXS, "IQ3_XXS", 256, 98}, {GgmlType::IQ1_S, "IQ1_S", 256, 50},
    {GgmlType::IQ4_NL, "IQ4_NL", 32, 18}, {GgmlType::IQ3_S, "IQ3_S", 256, 110}, {GgmlType::IQ2_S, "IQ2_S", 256, 82},
    {GgmlType::IQ4_XS, "IQ4_XS", 256, 136}, {GgmlType::I8, "I8", 1, 1}, {GgmlType::I16, "I16", 1, 2},
    {GgmlType::I32, "I32", 1, 4}, {GgmlType::I64, "I64", 1, 8}, {GgmlType::F64, "F64", 1, 8},
    {GgmlType::IQ1_M, "IQ1_M", 256, 56}, {GgmlType::BF16, "BF16", 1, 2}, {GgmlType::TQ1_0, "TQ1_0", 256, 54},
    {GgmlType::TQ2_0, "TQ2_0", 256, 66}, {GgmlType::MXFP4, "MXFP4", 32, 17}, {GgmlType::NVFP4, "NVFP4", 64, 36},
    {GgmlType::Q1_0, "Q1_0", 128, 18}}};
// clang-format on

// The traits of a raw type id, or nullptr for an id ggml does not define.
constexpr const GgmlTypeTraits* ggml_type_traits(std::uint32_t id) {
  for (const auto& t : ggml_type_table)
    if (static_cast<std::uint32_t>(t.type) == id) return &t;
  return nullptr;
}
inline const GgmlTypeTraits& ggml_traits(GgmlType type) {
  const GgmlTypeTraits* t = ggml_type_traits(static_cast<std::uint32_t>(type));
  if (!t) fail("ggml", "unknown type id ", static_cast<std::uint32_t>(type));
  return *t;
}
inline std::string_view ggml_type_name(GgmlType type) {
  const GgmlTypeTraits* t = ggml_type_traits(static_cast<std::uint32_t>(type));
  return t ? t->name : std::string_view("unknown");
}

// ---- block layouts (ggml-common.h) ------------------------------------------------------------------------------
inline constexpr int QK4_0 = 32;
inline constexpr int QK5_0 = 32;
inline constexpr int QK8_0 = 32;
inline constexpr int QK_K = 256;  // super-block of the k-quants
inline constexpr int K_SCALE_SIZE = 12;

// x_j = (nibble_j - 8) * d; element j < 16 in the low nibble of qs[j], element j + 16 in its high nibble.
struct block_q4_0 {
  f16 d;
  std::uint8_t qs[QK4_0 / 2];
};
static_assert(sizeof(block_q4_0) == 18, "block_q4_0 must be 18 bytes as in ggml");

// As Q4_0 with a fifth bit: bit j of qh (little-endian u32) belongs to element j; x = (q5 - 16) * d.
struct block_q5_0 {
  f16 d;
  std::uint8_t qh[4];
  std::uint8_t qs[QK5_0 / 2];
};
static_assert(sizeof(block_q5_0) == 22, "block_q5_0 must be 22 bytes as in ggml");

// x_j = qs[j] * d.
struct block_q8_0 {
  f16 d;
  std::int8_t qs[QK8_0];
};
static_assert(sizeof(block_q8_0) == 34, "block_q8_0 must be 34 bytes as in ggml");

// 8 sub-blocks of 32 with 6-bit scales and mins packed in `scales`: x = d*sc*q - dmin*m, q in 0..15.
struct block_q4_K {
  f16 d;
  f16 dmin;
  std::uint8_t scales[K_SCALE_SIZE];
  std::uint8_t qs[QK_K / 2];
};
static_assert(sizeof(block_q4_K) == 144, "block_q4_K must be 144 bytes as in ggml");

// As Q4_K with a fifth bit per element in qh: q in 0..31.
struct block_q5_K {
  f16 d;
  f16 dmin;
  std::uint8_t scales[K_SCALE_SIZE];
  std::uint8_t qh[QK_K / 8];
  std::uint8_t qs[QK_K / 2];
};
static_assert(sizeof(block_q5_K) == 176, "block_q5_K must be 176 bytes as in ggml");

// 16 sub-blocks of 16 with signed 8-bit scales: x = d*scale*(q - 32), q = 4 low bits (ql) | 2 high bits (qh). d last.
struct block_q6_K {
  std::uint8_t ql[QK_K / 2];
  std::uint8_t qh[QK_K / 4];
  std::int8_t scales[QK_K / 16];
  f16 d;
};
static_assert(sizeof(block_q6_K) == 210, "block_q6_K must be 210 bytes as in ggml");

// ---- dequantization (ggml-quants.c); k = number of elements, a multiple of the block size ------------------------
QLORA_HD inline void dequantize_row_q8_0(const block_q8_0* x, float* y, std::int64_t k) {
  for (std::int64_t i = 0; i < k / QK8_0; ++i) {
    const float d = static_cast<float>(x[i].d);
    for (int j = 0; j < QK8_0; ++j) y[i * QK8_0 + j] = static_cast<float>(x[i].qs[j]) * d;
  }
}

QLORA_HD inline void dequantize_row_q4_0(const block_q4_0* x, float* y, std::int64_t k) {
  for (std::int64_t i = 0; i < k / QK4_0; ++i) {
    const float d = static_cast<float>(x[i].d);
    for (int j = 0; j < QK4_0 / 2; ++j) {
      const int x0 = (x[i].qs[j] & 0x0F) - 8;
      const int x1 = (x[i].qs[j] >> 4) - 8;
      y[i * QK4_0 + j] = static_cast<float>(x0) * d;
      y[i * QK4_0 + j + QK4_0 / 2] = static_cast<float>(x1) * d;
    }
  }
}

QLORA_HD inline void dequantize_row_q5_0(const block_q5_0* x, float* y, std::int64_t k) {
  for (std::int64_t i = 0; i < k / QK5_0; ++i) {
    const float d = static_cast<float>(x[i].d);
    const std::uint32_t qh = std::uint32_t{x[i].qh[0]} | std::uint32_t{x[i].qh[1]} << 8 |
                             std::uint32_t{x[i].qh[2]} << 16 | std::uint32_t{x[i].qh[3]} << 24;
    for (int j = 0; j < QK5_0 / 2; ++j) {
      const int xh0 = static_cast<int>(((qh >> j) << 4) & 0x10);
      const int xh1 = static_cast<int>((qh >> (j + 12)) & 0x10);
      const int x0 = ((x[i].qs[j] & 0x0F) | xh0) - 16;
      const int x1 = ((x[i].qs[j] >> 4) | xh1) - 16;
      y[i * QK5_0 + j] = static_cast<float>(x0) * d;
      y[i * QK5_0 + j + QK5_0 / 2] = static_cast<float>(x1) * d;
    }
  }
}

// The 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K super-block (ggml's get_scale_min_k4).
QLORA_HD inline void get_scale_min_k4(int j, const std::uint8_t* q, std::uint8_t& sc, std::uint8_t& m) {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = static_cast<std::uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    m = static_cast<std::uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// Each 64-element chunk c uses qs[32c .. 32c+31]: low nibbles with sub-block 2c, high nibbles with sub-block 2c+1.
QLORA_HD inline void dequantize_row_q4_K(const block_q4_K* x, float* y, std::int64_t k) {
  for (std::int64_t i = 0; i < k / QK_K; ++i) {
    const float d = static_cast<float>(x[i].d);
    const float dmin = static_cast<float>(x[i].dmin);
    const std::uint8_t* q = x[i].qs;
    float* out = y + i * QK_K;
    for (int c = 0; c < 4; ++c) {
      std::uint8_t sc, m;
      get_scale_min_k4(2 * c, x[i].scales, sc, m);
      const float d1 = d * sc, m1 = dmin * m;
      get_scale_min_k4(2 * c + 1, x[i].scales, sc, m);
      const float d2 = d * sc, m2 = dmin * m;
      for (int l = 0; l < 32; ++l) out[64 * c + l] = d1 * static_cast<float>(q[32 * c + l] & 0xF) - m1;
      for (int l = 0; l < 32; ++l) out[64 * c + 32 + l] = d2 * static_cast<float>(q[32 * c + l] >> 4) - m2;
    }
  }
}

// As Q4_K; chunk c adds 16 to its low-nibble half where qh[l] has bit 2c, to its high-nibble half where bit 2c+1.
QLORA_HD inline void dequantize_row_q5_K(const block_q5_K* x, float* y, std::int64_t k) {
  for (std::int64_t i = 0; i < k / QK_K; ++i) {
    const float d = static_cast<float>(x[i].d);
    const float dmin = static_cast<float>(x[i].dmin);
    const std::uint8_t* ql = x[i].qs;
    const std::uint8_t* qh = x[i].qh;
    float* out = y + i * QK_K;
    for (int c = 0; c < 4; ++c) {
      std::uint8_t sc, m;
      get_scale_min_k4(2 * c, x[i].scales, sc, m);
      const float d1 = d * sc, m1 = dmin * m;
      get_scale_min_k4(2 * c + 1, x[i].scales, sc, m);
      const float d2 = d * sc, m2 = dmin * m;
      const std::uint8_t u1 = static_cast<std::uint8_t>(1u << (2 * c)), u2 = static_cast<std::uint8_t>(2u << (2 * c));
      for (int l = 0; l < 32; ++l)
        out[64 * c + l] = d1 * static_cast<float>((ql[32 * c + l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
      for (int l = 0; l < 32; ++l)
        out[64 * c + 32 + l] = d2 * static_cast<float>((ql[32 * c + l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
    }
  }
}

// Two halves of 128; in half n: ql advances 64, qh 32, scales 8. y = (d * scale) * (q - 32).
QLORA_HD inline void dequantize_row_q6_K(const block_q6_K* x, float* y, std::int64_t k) {
  for (std::int64_t i = 0; i < k / QK_K; ++i) {
    const float d = static_cast<float>(x[i].d);
    for (int n = 0; n < 2; ++n) {
      const std::uint8_t* ql = x[i].ql + 64 * n;
      const std::uint8_t* qh = x[i].qh + 32 * n;
      const std::int8_t* sc = x[i].scales + 8 * n;
      float* out = y + i * QK_K + 128 * n;
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        out[l] = d * static_cast<float>(sc[is + 0]) * static_cast<float>(q1);
        out[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
        out[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
        out[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
      }
    }
  }
}

// ---- reference quantization ---------------------------------------------------------------------------------------
// ggml's quantize_row_q8_0_ref: d = amax/127, q = roundf(x/d) (half away from zero), d stored as fp16.
inline void quantize_row_q8_0(const float* x, block_q8_0* y, std::int64_t k) {
  for (std::int64_t i = 0; i < k / QK8_0; ++i) {
    float amax = 0.0f;
    for (int j = 0; j < QK8_0; ++j) amax = std::fmax(amax, std::fabs(x[i * QK8_0 + j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = f16(d);
    for (int j = 0; j < QK8_0; ++j) y[i].qs[j] = static_cast<std::int8_t>(std::roundf(x[i * QK8_0 + j] * id));
  }
}

// ---- dispatch by type ---------------------------------------------------------------------------------------------
inline constexpr std::string_view ggml_dequantized_types = "F32, F16, BF16, Q8_0, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K";
inline bool ggml_can_dequantize(GgmlType t) {
  switch (t) {
    case GgmlType::F32:
    case GgmlType::F16:
    case GgmlType::BF16:
    case GgmlType::Q8_0:
    case GgmlType::Q4_0:
    case GgmlType::Q5_0:
    case GgmlType::Q4_K:
    case GgmlType::Q5_K:
    case GgmlType::Q6_K:
      return true;
    default:
      return false;
  }
}

// Dequantizes n elements (a multiple of the type's block size) of `type` stored at `src` (any alignment) into `dst`.
inline void dequantize_row(GgmlType type, const void* src, float* dst, std::int64_t n) {
  const GgmlTypeTraits& tr = ggml_traits(type);
  require(n % tr.block_size == 0, "ggml", "dequantize_row: ", n, " elements is not a multiple of the ", tr.name,
          " block size ", tr.block_size);
  const std::size_t bytes = static_cast<std::size_t>(n / tr.block_size * tr.type_size);
  std::vector<std::uint8_t> aligned;  // the structs hold fp16 fields: copy rows that are not 2-byte aligned
  if (reinterpret_cast<std::uintptr_t>(src) % 2 != 0) {
    aligned.assign(static_cast<const std::uint8_t*>(src), static_cast<const std::uint8_t*>(src) + bytes);
    src = aligned.data();
  }
  switch (type) {
    case GgmlType::F32:
      std::memcpy(dst, src, bytes);
      return;
    case GgmlType::F16:
    case GgmlType::BF16:
      for (std::int64_t i = 0; i < n; ++i) {
        std::uint16_t b;
        std::memcpy(&b, static_cast<const std::uint8_t*>(src) + 2 * i, 2);
        dst[i] = type == GgmlType::F16 ? detail::f16_bits_to_float(b) : detail::bf16_bits_to_float(b);
      }
      return;
    case GgmlType::Q8_0:
      return dequantize_row_q8_0(static_cast<const block_q8_0*>(src), dst, n);
    case GgmlType::Q4_0:
      return dequantize_row_q4_0(static_cast<const block_q4_0*>(src), dst, n);
    case GgmlType::Q5_0:
      return dequantize_row_q5_0(static_cast<const block_q5_0*>(src), dst, n);
    case GgmlType::Q4_K:
      return dequantize_row_q4_K(static_cast<const block_q4_K*>(src), dst, n);
    case GgmlType::Q5_K:
      return dequantize_row_q5_K(static_cast<const block_q5_K*>(src), dst, n);
    case GgmlType::Q6_K:
      return dequantize_row_q6_K(static_cast<const block_q6_K*>(src), dst, n);
    default:
      fail("ggml", "cannot dequantize ", tr.name, " (supported: ", ggml_dequantized_types, ")");
  }
}

}  // namespace qlora
