// packed_gemv (ops/packed_gemv.hpp) against fp64 references: packing an NF4 round trip gives back bitsandbytes'
// codes and absmax exactly; Q8_0 rounds each weight to within half a step; every kernel's product equals the exact
// integer formula Σ_b s_b d_b Σ_i c_i a_i (to fp32 summation), and differs from the packed weights times the
// unrounded input by no more than the input's rounding allows. The AVX2 kernel is checked where the CPU has it
// (the test says when it has not), and against the portable one.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include <qlora/ops/packed_gemv.hpp>

using namespace qlora;

namespace {
std::vector<float> random_values(index_t n, std::uint64_t seed, float scale = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (auto& x : v) x = d(rng);
  return v;
}

std::vector<PackedKernel> kernels_here() {
  std::vector<PackedKernel> k = {PackedKernel::scalar};
  if (packed_gemv_kernel() == PackedKernel::avx2) k.push_back(PackedKernel::avx2);
  else MESSAGE("this CPU has no AVX2 (or this build targets another architecture): the portable kernel only");
  return k;
}

// An input with blocks of very different size: an all-zero block, an outlier, tiny values.
std::vector<float> awkward_input(index_t cols, std::uint64_t seed) {
  auto x = random_values(cols, seed);
  for (index_t i = 0; i < std::min<index_t>(cols, 32); ++i) x[static_cast<std::size_t>(i)] = 0.0f;
  if (cols > 40) x[40] = 250.0f;
  if (cols > 64)
    for (index_t i = 64; i < 96; ++i) x[static_cast<std::size_t>(i)] *= 1e-4f;
  return x;
}
}  // namespace

TEST_SUITE("ops") {
  TEST_CASE("packing an NF4 round trip keeps bitsandbytes' codes and absmax exactly") {
    for (const index_t blocksize : {64, 128}) {
      for (const bool double_quant : {false, true}) {
        const index_t rows = 6, cols = 256;
        const auto w = random_values(rows * cols, 11 + static_cast<std::uint64_t>(blocksize));
        const auto values = dequantize_4bit(quantize_4bit(w, FourBitType::nf4, blocksize, double_quant));
        const PackedMatrix m = pack_nf4(values.data(), rows, cols, blocksize);
        REQUIRE(m.format == PackedFormat::nf4);
        CHECK(m.bytes() == static_cast<std::size_t>(rows * cols / 2 + rows * cols / 32 * 4));
        index_t mismatches = 0;
        for (index_t r = 0; r < rows; ++r)
          for (index_t c = 0; c < cols; ++c) {
            const index_t flat = r * cols + c, first = flat / blocksize * blocksize;
            float amax = 0;
            for (index_t i = first; i < first + blocksize; ++i) amax = std::max(amax, std::abs(values[static_cast<std::size_t>(i)]));
            const float back = four_bit_code_value(FourBitType::nf4, m.nf4_index(r, c)) * amax;
            mismatches += back != values[static_cast<std::size_t>(flat)];
            // the int8 stand-in of the code: within 0.5/127 of the block's absmax
            CHECK(std::abs(m.scale(r, c) * m.code(r, c) - values[static_cast<std::size_t>(flat)]) <= amax * 0.5f / 127 * 1.0001f);
          }
        CAPTURE(blocksize);
        CAPTURE(double_quant);
        CHECK(mismatches == 0);
      }
    }
  }

  TEST_CASE("Q8_0 rounds each weight to within half its block's step") {
    const index_t rows = 5, cols = 96;
    auto w = random_values(rows * cols, 3, 0.05f);
    w[7] = 3.0f;  // an outlier widens its block's step only
    const PackedMatrix m = pack_q8_0(w.data(), rows, cols);
    for (index_t r = 0; r < rows; ++r)
      for (index_t c = 0; c < cols; ++c) {
        const float v = w[static_cast<std::size_t>(r * cols + c)];
        CHECK(std::abs(m.code(r, c)) <= 127);
        CHECK(std::abs(m.scale(r, c) * m.code(r, c) - v) <= m.scale(r, c) * 0.5f * 1.0001f);
      }
    CHECK(m.scale(0, 7) == doctest::Approx(3.0 / 127));
    CHECK(m.scale(0, 40) < 0.3 / 127);
  }

  TEST_CASE("each kernel's product is the integer formula, within the input's rounding of the exact product") {
    for (const PackedFormat format : {PackedFormat::nf4, PackedFormat::q8_0}) {
      for (const index_t cols : {32, 96, 640}) {
        const index_t rows = 37;
        const auto w = random_values(rows * cols, 100 + static_cast<std::uint64_t>(cols), 0.02f);
        std::vector<float> nf4_values;
        if (format == PackedFormat::nf4) nf4_values = dequantize_4bit(quantize_4bit(w, FourBitType::nf4, 32, true));
        const PackedMatrix m = format == PackedFormat::nf4 ? pack_nf4(nf4_values.data(), rows, cols, 32)
                                                           : pack_q8_0(w.data(), rows, cols);
        const auto x = awkward_input(cols, 7 + static_cast<std::uint64_t>(cols));
        QuantizedActivation a;
        quantize_activation(x.data(), cols, a);
        for (const PackedKernel kernel : kernels_here()) {
          std::vector<float> y(static_cast<std::size_t>(rows));
          packed_gemv(m, a, y.data(), kernel);
          for (index_t r = 0; r < rows; ++r) {
            double formula = 0, magnitude = 0, exact = 0, rounding = 0;
            for (index_t b = 0; b < cols / 32; ++b) {
              const double s = m.scale(r, b * 32), d = a.scales[static_cast<std::size_t>(b)];
              long dot = 0, abs_codes = 0;
              for (index_t i = b * 32; i < b * 32 + 32; ++i) {
                const int c = m.code(r, i);
                dot += c * a.q[static_cast<std::size_t>(i)];
                abs_codes += std::abs(c);
                exact += s * c * static_cast<double>(x[static_cast<std::size_t>(i)]);
              }
              formula += s * d * static_cast<double>(dot);
              magnitude += s * d * 127.0 * static_cast<double>(abs_codes);
              rounding += s * d / 2 * static_cast<double>(abs_codes);
            }
            const double got = y[static_cast<std::size_t>(r)];
            CAPTURE(packed_format_name(format));
            CAPTURE(packed_kernel_name(kernel));
            CAPTURE(cols);
            CAPTURE(r);
            CHECK(std::abs(got - formula) <= 1e-6 * magnitude + 1e-30);          // fp32 summation of exact blocks
            CHECK(std::abs(got - exact) <= rounding * 1.0001 + 1e-6 * magnitude);  // only x's rounding beyond that
          }
        }
      }
    }
  }

  TEST_CASE("the AVX2 kernel agrees with the portable one on every row") {
    if (packed_gemv_kernel() != PackedKernel::avx2) {
      MESSAGE("skipped: this CPU has no AVX2");
      return;
    }
    const index_t rows = 300, cols = 640;
    const auto w = random_values(rows * cols, 5);
    const auto x = awkward_input(cols, 6);
    QuantizedActivation a;
    quantize_activation(x.data(), cols, a);
    for (const PackedMatrix& m : {pack_q8_0(w.data(), rows, cols), pack_nf4(w.data(), rows, cols, 64)}) {
      std::vector<float> ys(static_cast<std::size_t>(rows)), yv(static_cast<std::size_t>(rows));
      packed_gemv(m, a, ys.data(), PackedKernel::scalar);
      packed_gemv(m, a, yv.data(), PackedKernel::avx2);
      for (index_t r = 0; r < rows; ++r)
        CHECK(yv[static_cast<std::size_t>(r)] == doctest::Approx(ys[static_cast<std::size_t>(r)]).epsilon(1e-5));
    }
  }

  TEST_CASE("blocks of zeros and of subnormals give finite scales and products") {
    std::vector<float> w(2 * 64, 0.0f);
    for (index_t i = 64; i < 128; ++i) w[static_cast<std::size_t>(i)] = 1e-40f * static_cast<float>(i % 5);
    for (const PackedMatrix& m : {pack_q8_0(w.data(), 2, 64), pack_nf4(w.data(), 2, 64, 64)}) {
      for (const float s : m.scales) CHECK(std::isfinite(s));
      for (index_t c = 0; c < 64; ++c) CHECK(m.code(0, c) == 0);
      std::vector<float> x(64, 1e-41f), y(2, -1.0f);
      packed_gemv(m, x.data(), 1, y.data());
      CHECK(y[0] == 0.0f);
      CHECK(std::isfinite(y[1]));
      CHECK(std::abs(y[1]) < 1e-30f);
    }
  }

  TEST_CASE("bad weights and inputs are refused with what is wrong") {
    std::vector<float> w(64 * 2, 0.5f);
    CHECK_THROWS_WITH_AS(pack_q8_0(w.data(), 2, 48), doctest::Contains("48 values is not a whole number of blocks of 32"),
                         qlora::Error);
    CHECK_THROWS_WITH_AS(pack_nf4(w.data(), 2, 64, 128), doctest::Contains("NF4 blocks of 128 do not tile rows of 64"),
                         qlora::Error);
    w[70] = std::nanf("");
    CHECK_THROWS_WITH_AS(pack_q8_0(w.data(), 2, 64), doctest::Contains("NaN or infinite value at element 70"),
                         qlora::Error);
    w[70] = 0.5f;
    const PackedMatrix m = pack_q8_0(w.data(), 2, 64);
    std::vector<float> x(64, 1.0f), y(2);
    x[33] = INFINITY;
    CHECK_THROWS_WITH_AS(packed_gemv(m, x.data(), 1, y.data()), doctest::Contains("NaN or infinite value at element 33"),
                         qlora::Error);
    QuantizedActivation a;
    std::vector<float> short_x(32, 1.0f);
    quantize_activation(short_x.data(), 32, a);
    CHECK_THROWS_WITH_AS(packed_gemv(m, a, y.data(), PackedKernel::scalar),
                         doctest::Contains("the input has 32 values; the weight 64 columns"), qlora::Error);
  }
}
