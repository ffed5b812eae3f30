// packed_gemv: y = W · x for one token (decoding), over weights packed in blocks of 32 as small integers, with x
// quantized to int8 per block of 32 — the integer dot products llama.cpp decodes with (its Q8_0 activations against
// Q4/IQ4_NL/Q8_0 weights). Decoding is memory-bound: the bytes of W read per token set the speed, so a 4-bit weight
// reads 8× fewer bytes than the fp32 copy the training GEMMs use.
//
//   weights, per block b of 32 along a row:   w_i ≈ s_b · c_i,   c_i an int8 in [−127, 127]
//     nf4:  c_i = round(127 · NF4[code_i]),  s_b = absmax / 127   (4 bits a weight; bitsandbytes' codes kept as they
//           are: packing an NF4 round trip gives back its codes and absmax exactly, only the code values are
//           rounded to 1/127 of the block's absmax — at most 0.39 %, well under NF4's own level spacing)
//     q8_0: c_i = round(w_i / s_b),           s_b = max|w| / 127      (8 bits a weight; any dense weight)
//   activations, per block b:                 x_i ≈ d_b · a_i,   a_i = round(x_i / d_b),   d_b = max|x| / 127
//   y = Σ_b s_b · d_b · Σ_i c_i · a_i        (the inner sum exact in int32, the outer in fp32)
//
// So y differs from W_packed · x only by x's rounding: |y − Σ_i w_i x_i| ≤ Σ_b s_b d_b / 2 · Σ_i |c_i| (plus fp32
// rounding), which tests/ops/packed_gemv.cpp checks against an fp64 reference.
//
// Kernels: AVX2 (32 products per instruction: the nibbles become int8 through a 16-entry table lookup, pshufb) where
// the CPU has it, chosen at run time, so a binary built for baseline x86-64 uses it and one built on an AVX2 machine
// still runs elsewhere; plain C++ loops on every other CPU (ARM included). packed_gemv_kernel() says which runs.
// nvcc's translation units cannot compile the AVX2 kernel (its front end gets no x86 intrinsics): where they link
// qlora::kernels (QLORA_COMPILED_KERNELS, e.g. the nvcc-compiled `qlora` program) they call the copy the host
// compiler built there (models/kernels.cpp), so a CUDA build decodes on the CPU as fast as a CPU-only one.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string_view>
#include <vector>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../quant/nf4.hpp"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && !defined(__CUDACC__)
#include <immintrin.h>
#define QLORA_PACKED_GEMV_AVX2 1
#else
#define QLORA_PACKED_GEMV_AVX2 0
#endif
// An nvcc translation unit on x86 that links qlora::kernels: the AVX2 kernel is the host compiler's, compiled there.
#if (defined(__x86_64__) || defined(__i386__)) && defined(__CUDACC__) && QLORA_COMPILED_KERNELS
#define QLORA_PACKED_GEMV_HOST_AVX2 1
#else
#define QLORA_PACKED_GEMV_HOST_AVX2 0
#endif

namespace qlora {

inline constexpr index_t kPackedBlock = 32;
// The smallest block maximum scaled by its own value (smaller ones are taken as this, so 127 / max stays finite and
// a block of subnormals, all rounded to 0, stays consistent with its scale).
inline constexpr float kPackedTiny = 1e-30f;

enum class PackedFormat { nf4, q8_0 };
inline std::string_view packed_format_name(PackedFormat f) { return f == PackedFormat::nf4 ? "NF4" : "Q8_0"; }

namespace detail {
// round(127 · NF4 code value), the int8 stand-in of each code.
inline const std::array<std::int8_t, 16>& nf4_int8_codes() {
  static const std::array<std::int8_t, 16> lut = [] {
    std::array<std::int8_t, 16> t{};
    for (int c = 0; c < 16; ++c)
      t[static_cast<std::size_t>(c)] = static_cast<std::int8_t>(
          std::lround(127.0f * four_bit_code_value(FourBitType::nf4, static_cast<std::uint8_t>(c))));
    return t;
  }();
  return lut;
}
}  // namespace detail

// A weight [rows, cols] packed for packed_gemv (cols a multiple of 32). nf4: 16 bytes a block, byte j holding element
// j in its low nibble and element j + 16 in its high one; q8_0: 32 int8 a block. One fp32 scale a block.
struct PackedMatrix {
  PackedFormat format = PackedFormat::q8_0;
  index_t rows = 0, cols = 0;
  std::vector<std::uint8_t> data;
  std::vector<float> scales;  // [rows · cols / 32]

  index_t blocks_per_row() const { return cols / kPackedBlock; }
  index_t block_bytes() const { return format == PackedFormat::nf4 ? kPackedBlock / 2 : kPackedBlock; }
  // Bytes one product reads (the measure of a memory-bound decode).
  std::size_t bytes() const { return data.size() + scales.size() * sizeof(float); }
  // The int8 c_i of element `col` of `row` (see the header comment); the weight is scale · c_i.
  std::int8_t code(index_t row, index_t col) const {
    const index_t b = row * blocks_per_row() + col / kPackedBlock, i = col % kPackedBlock;
    const std::uint8_t* p = data.data() + b * block_bytes();
    if (format == PackedFormat::q8_0) return static_cast<std::int8_t>(p[i]);
    const std::uint8_t nib = i < 16 ? (p[i] & 15) : (p[i - 16] >> 4);
    return detail::nf4_int8_codes()[nib];
  }
  float scale(index_t row, index_t col) const {
    return scales[static_cast<std::size_t>(row * blocks_per_row() + col / kPackedBlock)];
  }
  // The NF4 code index (0..15) of an element (nf4 only).
  std::uint8_t nf4_index(index_t row, index_t col) const {
    const index_t b = row * blocks_per_row() + col / kPackedBlock, i = col % kPackedBlock;
    const std::uint8_t* p = data.data() + b * block_bytes();
    return i < 16 ? (p[i] & 15) : (p[i - 16] >> 4);
  }
};

// Whether a [rows, cols] weight can be packed (whole blocks of 32 in every row).
inline bool packable(index_t cols) { return cols > 0 && cols % kPackedBlock == 0; }

namespace detail {
// Checked before the parallel loops (an exception must not leave an OpenMP region).
inline void require_finite_weight(const float* w, index_t n) {
  for (index_t i = 0; i < n; ++i)
    if (!std::isfinite(w[i])) fail("packed_gemv", "the weight holds a NaN or infinite value at element ", i);
}
}  // namespace detail

// w: [rows, cols] row-major fp32, with any values -> Q8_0.
inline PackedMatrix pack_q8_0(const float* w, index_t rows, index_t cols) {
  require(packable(cols), "packed_gemv", "a row of ", cols, " values is not a whole number of blocks of 32");
  detail::require_finite_weight(w, rows * cols);
  PackedMatrix m{PackedFormat::q8_0, rows, cols, std::vector<std::uint8_t>(static_cast<std::size_t>(rows * cols)),
                 std::vector<float>(static_cast<std::size_t>(rows * cols / kPackedBlock))};
  const index_t blocks = rows * cols / kPackedBlock;
#pragma omp parallel for schedule(static) if (blocks > 4096)
  for (index_t b = 0; b < blocks; ++b) {
    const float* x = w + b * kPackedBlock;
    float amax = 0;
    for (index_t i = 0; i < kPackedBlock; ++i) amax = std::max(amax, std::abs(x[i]));
    const float top = std::max(amax, kPackedTiny), s = top / 127.0f, inv = 127.0f / top;
    m.scales[static_cast<std::size_t>(b)] = s;
    for (index_t i = 0; i < kPackedBlock; ++i)
      m.data[static_cast<std::size_t>(b * kPackedBlock + i)] =
          static_cast<std::uint8_t>(static_cast<std::int8_t>(std::nearbyint(x[i] * inv)));
  }
  return m;
}

// w: [rows, cols] holding NF4 values (absmax · NF4[code] for blocks of `blocksize` over the flattened tensor, as
// bitsandbytes quantizes; a dequantized NF4 tensor or a model loaded with its NF4 round trip) -> nf4, with the same
// codes and absmax. Each block's absmax is its largest |value| (its largest value was coded ±1).
inline PackedMatrix pack_nf4(const float* w, index_t rows, index_t cols, index_t blocksize) {
  require(packable(cols), "packed_gemv", "a row of ", cols, " values is not a whole number of blocks of 32");
  require(blocksize % kPackedBlock == 0 && cols % blocksize == 0, "packed_gemv", "NF4 blocks of ", blocksize,
          " do not tile rows of ", cols, " in blocks of 32");
  detail::require_finite_weight(w, rows * cols);
  PackedMatrix m{PackedFormat::nf4, rows, cols, std::vector<std::uint8_t>(static_cast<std::size_t>(rows * cols / 2)),
                 std::vector<float>(static_cast<std::size_t>(rows * cols / kPackedBlock))};
  const index_t blocks = rows * cols / blocksize, sub = blocksize / kPackedBlock;
  constexpr detail::FourBitBounds bounds = detail::kNf4Bounds;  // ties go to the lower code, as bitsandbytes
#pragma omp parallel for schedule(static) if (blocks > 2048)
  for (index_t b = 0; b < blocks; ++b) {
    const float* x = w + b * blocksize;
    float amax = 0;
    for (index_t i = 0; i < blocksize; ++i) amax = std::max(amax, std::abs(x[i]));
    const float inv = 1.0f / std::max(amax, 1e-38f);  // bitsandbytes' clamp: an all-zero block gets code 7 (0.0)
    for (index_t k = 0; k < sub; ++k) {
      const index_t pb = b * sub + k;
      m.scales[static_cast<std::size_t>(pb)] = amax / 127.0f;
      std::uint8_t* out = m.data.data() + pb * (kPackedBlock / 2);
      const float* xs = x + k * kPackedBlock;
      std::uint8_t code[kPackedBlock];
      for (index_t j = 0; j < kPackedBlock; ++j) {  // quantize_4bit_value's bucketize, as a count (vectorises)
        const float v = xs[j] * inv;
        int c = 0;
        for (int e = 0; e < 15; ++e) c += bounds.bound[e] < v;
        code[j] = static_cast<std::uint8_t>(c);
      }
      for (index_t j = 0; j < 16; ++j) out[j] = static_cast<std::uint8_t>(code[j] | (code[j + 16] << 4));
    }
  }
  return m;
}

// x: [cols] -> int8 per block of 32 with one scale a block.
struct QuantizedActivation {
  std::vector<std::int8_t> q;
  std::vector<float> scales;
};
inline void quantize_activation(const float* x, index_t cols, QuantizedActivation& out) {
  require(packable(cols), "packed_gemv", "an input of ", cols, " values is not a whole number of blocks of 32");
  out.q.resize(static_cast<std::size_t>(cols));
  out.scales.resize(static_cast<std::size_t>(cols / kPackedBlock));
  for (index_t b = 0; b < cols / kPackedBlock; ++b) {
    const float* xb = x + b * kPackedBlock;
    float amax = 0;
    for (index_t i = 0; i < kPackedBlock; ++i) {
      require(std::isfinite(xb[i]), "packed_gemv", "the input holds a NaN or infinite value at element ",
              b * kPackedBlock + i);
      amax = std::max(amax, std::abs(xb[i]));
    }
    const float top = std::max(amax, kPackedTiny), inv = 127.0f / top;
    out.scales[static_cast<std::size_t>(b)] = top / 127.0f;
    for (index_t i = 0; i < kPackedBlock; ++i)
      out.q[static_cast<std::size_t>(b * kPackedBlock + i)] = static_cast<std::int8_t>(std::nearbyint(xb[i] * inv));
  }
}

enum class PackedKernel { scalar, avx2 };
inline std::string_view packed_kernel_name(PackedKernel k) { return k == PackedKernel::avx2 ? "avx2" : "scalar"; }

// The AVX2 kernel as the host compiler built it in models/kernels.cpp (qlora::kernels), for nvcc translation units:
// y[r] for every row of m, and whether this CPU has AVX2 and FMA.
void packed_gemv_host_avx2(const PackedMatrix& m, const QuantizedActivation& x, float* y);
bool packed_gemv_host_has_avx2();

// The kernels differ between host-compiler and nvcc translation units (nvcc's get no AVX2), hence the dispatch
// namespace (core/config.hpp).
QLORA_DISPATCH_BEGIN
namespace packed_kernels {
// GCC 12 (Debian 12's g++) miscompiles the int8 dot product below when it vectorises it with AVX512-VNNI
// (-march=native on an AMD Zen 4, whose -march implies avx512vnni: every Q8_0 row came out wrong, caught by
// tests/ops/packed_gemv.cpp); the scalar kernel is the reference the AVX2 one is checked against, so GCC on x86 keeps
// it scalar. Elsewhere (aarch64) it vectorises as before.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define QLORA_PACKED_SCALAR_ATTRIBUTES __attribute__((optimize("no-tree-vectorize")))
#else
#define QLORA_PACKED_SCALAR_ATTRIBUTES
#endif

// One row's Σ_b s_b d_b Σ_i c_i a_i, in plain C++.
QLORA_PACKED_SCALAR_ATTRIBUTES inline float packed_row_scalar(const PackedMatrix& m, index_t row, const QuantizedActivation& a) {
  const index_t nb = m.blocks_per_row(), bb = m.block_bytes();
  const std::uint8_t* p = m.data.data() + row * nb * bb;
  const float* s = m.scales.data() + row * nb;
  const auto& lut = detail::nf4_int8_codes();
  float y = 0;
  for (index_t b = 0; b < nb; ++b, p += bb) {
    const std::int8_t* q = a.q.data() + b * kPackedBlock;
    std::int32_t dot = 0;
    if (m.format == PackedFormat::q8_0) {
      for (index_t i = 0; i < kPackedBlock; ++i) dot += static_cast<std::int8_t>(p[i]) * q[i];
    } else {
      for (index_t j = 0; j < 16; ++j) dot += lut[p[j] & 15] * q[j] + lut[p[j] >> 4] * q[j + 16];
    }
    y += s[b] * a.scales[static_cast<std::size_t>(b)] * static_cast<float>(dot);
  }
  return y;
}

#if QLORA_PACKED_GEMV_AVX2
// 32 products c_i · a_i summed into 8 int32: maddubs wants an unsigned left operand, so |c| times a with c's sign.
__attribute__((target("avx2,fma"))) inline __m256i dot32_avx2(__m256i c, __m256i a) {
  const __m256i prod16 = _mm256_maddubs_epi16(_mm256_sign_epi8(c, c), _mm256_sign_epi8(a, c));  // |c|·a ≤ 2·127²
  return _mm256_madd_epi16(prod16, _mm256_set1_epi16(1));
}
__attribute__((target("avx2,fma"))) inline float packed_row_avx2(const PackedMatrix& m, index_t row,
                                                                  const QuantizedActivation& a) {
  const index_t nb = m.blocks_per_row(), bb = m.block_bytes();
  const std::uint8_t* p = m.data.data() + row * nb * bb;
  const float* s = m.scales.data() + row * nb;
  const std::int8_t* q = a.q.data();
  const float* d = a.scales.data();
  __m256 acc = _mm256_setzero_ps();
  if (m.format == PackedFormat::q8_0) {
    for (index_t b = 0; b < nb; ++b, p += bb, q += kPackedBlock) {
      const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
      const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q));
      acc = _mm256_fmadd_ps(_mm256_set1_ps(s[b] * d[b]), _mm256_cvtepi32_ps(dot32_avx2(c, x)), acc);
    }
  } else {
    const __m128i lut128 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(detail::nf4_int8_codes().data()));
    const __m256i lut = _mm256_set_m128i(lut128, lut128);
    const __m256i low4 = _mm256_set1_epi8(15);
    for (index_t b = 0; b < nb; ++b, p += bb, q += kPackedBlock) {
      const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
      const __m256i nibbles = _mm256_and_si256(
          _mm256_set_m128i(_mm_srli_epi16(bytes, 4), bytes), low4);  // elements 0..15 low lane, 16..31 high lane
      const __m256i c = _mm256_shuffle_epi8(lut, nibbles);
      const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q));
      acc = _mm256_fmadd_ps(_mm256_set1_ps(s[b] * d[b]), _mm256_cvtepi32_ps(dot32_avx2(c, x)), acc);
    }
  }
  const __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
  const __m128 h2 = _mm_add_ps(h, _mm_movehl_ps(h, h));
  return _mm_cvtss_f32(_mm_add_ss(h2, _mm_shuffle_ps(h2, h2, 1)));
}
#endif

inline bool cpu_has_avx2() {
#if QLORA_PACKED_GEMV_AVX2
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
#elif QLORA_PACKED_GEMV_HOST_AVX2
  return packed_gemv_host_has_avx2();
#else
  return false;
#endif
}
}  // namespace packed_kernels

// The kernel packed_gemv runs on this CPU.
inline PackedKernel packed_gemv_kernel() { return packed_kernels::cpu_has_avx2() ? PackedKernel::avx2 : PackedKernel::scalar; }

// y[r] = Σ_c W[r, c] · x[c] for the rows of m (x already quantized), with a chosen kernel (tests compare them).
inline void packed_gemv(const PackedMatrix& m, const QuantizedActivation& x, float* y, PackedKernel kernel) {
  require(static_cast<index_t>(x.q.size()) == m.cols, "packed_gemv", "the input has ", x.q.size(), " values; the weight ",
          m.cols, " columns");
  require(kernel == PackedKernel::scalar || packed_kernels::cpu_has_avx2(), "packed_gemv", "this CPU has no AVX2");
#if QLORA_PACKED_GEMV_HOST_AVX2
  if (kernel == PackedKernel::avx2) return packed_gemv_host_avx2(m, x, y);
#endif
#pragma omp parallel for schedule(static) if (m.rows * m.cols > (1 << 16))
  for (index_t r = 0; r < m.rows; ++r) {
#if QLORA_PACKED_GEMV_AVX2
    if (kernel == PackedKernel::avx2) {
      y[r] = packed_kernels::packed_row_avx2(m, r, x);
      continue;
    }
#endif
    y[r] = packed_kernels::packed_row_scalar(m, r, x);
  }
}

// y: [n, rows] = x: [n, cols] · Wᵀ, each row of x quantized on its own, on the CPU's best kernel.
inline void packed_gemv(const PackedMatrix& m, const float* x, index_t n, float* y) {
  QuantizedActivation a;
  for (index_t i = 0; i < n; ++i) {
    quantize_activation(x + i * m.cols, m.cols, a);
    packed_gemv(m, a, y + i * m.rows, packed_gemv_kernel());
  }
}

QLORA_DISPATCH_END

}  // namespace qlora
