// Blockwise 8-bit quantization equals bitsandbytes' quantize_blockwise / dequantize_blockwise (CPU backend) byte for
// byte on the golden cases (signed and unsigned dynamic maps, blocksizes 256 and 4096, zeros, 1e30, denormals, NaN,
// short last blocks); the CUDA-style nearest-code search is checked against a brute-force nearest code.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <qlora/quant/blockwise8.hpp>

#include "golden.hpp"

namespace {
qlora::DynamicMap map_of(const nlohmann::json& c) { return qlora::create_dynamic_map(c.at("map") == "signed"); }

// |s - code[k]| for the code k, clamping s to [-1, 1] as both searches effectively do.
float distance(const qlora::DynamicMap& code, int k, float s) {
  return std::fabs(std::fmin(1.0f, std::fmax(-1.0f, s)) - code[static_cast<std::size_t>(k)]);
}
}  // namespace

TEST_SUITE("quant") {
  TEST_CASE("blockwise 8-bit codes and absmax equal bitsandbytes byte for byte") {
    const auto cases = golden::cases("blockwise8");
    REQUIRE(cases.size() >= 16);
    for (const auto& c : cases) {
      const std::string name = c.at("name");
      const qlora::Blockwise8 q = qlora::quantize_blockwise(golden::case_input(c), map_of(c), c.at("blocksize"));
      CHECK_BITWISE_EQUAL(q.codes, golden::load<std::uint8_t>(c.at("outputs").at("codes")), name + " codes");
      CHECK_BITWISE_EQUAL(q.absmax, golden::load<float>(c.at("outputs").at("absmax")), name + " absmax");
    }
  }

  TEST_CASE("blockwise 8-bit through the prebuilt code table equals bitsandbytes byte for byte") {
    for (const auto& c : golden::cases("blockwise8")) {
      const std::string name = c.at("name");
      const std::vector<float> x = golden::case_input(c);
      const qlora::DynamicCodeTable table(map_of(c));
      const auto n = static_cast<qlora::index_t>(x.size());
      const qlora::index_t bs = c.at("blocksize");
      std::vector<std::uint8_t> codes(x.size());
      std::vector<float> absmax(static_cast<std::size_t>(qlora::blockwise_block_count(n, bs)));
      qlora::quantize_blockwise(x.data(), n, table, bs, codes.data(), absmax.data());
      CHECK_BITWISE_EQUAL(codes, golden::load<std::uint8_t>(c.at("outputs").at("codes")), name + " codes");
      CHECK_BITWISE_EQUAL(absmax, golden::load<float>(c.at("outputs").at("absmax")), name + " absmax");
    }
  }

  TEST_CASE("the prebuilt code table equals the searched lookup on every bin, out of range and on NaN") {
    for (bool is_signed : {true, false}) {
      const qlora::DynamicMap code = qlora::create_dynamic_map(is_signed);
      const qlora::DynamicCodeTable table(code);
      std::vector<float> s = {-2.0f, -1.0f, -0.0f, 0.0f, 1.0f, 1.5f, std::numeric_limits<float>::quiet_NaN(),
                              std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity()};
      for (int i = 0; i <= 200000; ++i) s.push_back(-1.0f + 2.0f * static_cast<float>(i) / 200000.0f);
      qlora::index_t differ = 0;
      for (float v : s) differ += table(v) != qlora::lookup_dynamic_code(code.data(), v);
      CHECK(differ == 0);
    }
  }

  TEST_CASE("blockwise 8-bit dequantization equals bitsandbytes bit for bit") {
    for (const auto& c : golden::cases("blockwise8")) {
      const std::string name = c.at("name");
      const qlora::Blockwise8 q{c.at("blocksize"), golden::load<std::uint8_t>(c.at("outputs").at("codes")),
                                golden::load<float>(c.at("outputs").at("absmax"))};
      CHECK_BITWISE_EQUAL(qlora::dequantize_blockwise(q, map_of(c)),
                          golden::load<float>(c.at("outputs").at("dequantized")), name + " dequantized");
    }
  }

  TEST_CASE("nearest_dynamic_code (the CUDA search) returns a nearest code") {
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
    for (bool is_signed : {true, false}) {
      const qlora::DynamicMap code = qlora::create_dynamic_map(is_signed);
      for (int trial = 0; trial < 20000; ++trial) {
        // Mix uniform values with tiny ones, where the dynamic map is densest.
        const float s = trial % 2 ? uniform(rng) : uniform(rng) * 1e-4f;
        float best = std::numeric_limits<float>::infinity();
        for (int k = 0; k < 256; ++k) best = std::fmin(best, distance(code, k, s));
        const int got = qlora::nearest_dynamic_code(code.data(), s);
        if (is_signed || s >= 0.0f) REQUIRE_MESSAGE(distance(code, got, s) == best, "s = ", golden::show(s));
      }
    }
  }

  TEST_CASE("the CPU lookup table picks the nearest code up to one of its 65536 bins") {
    const float bin = 2.0f / 65535.0f;
    for (const auto& c : golden::cases("blockwise8")) {
      const qlora::DynamicMap code = map_of(c);
      const std::vector<float> x = golden::case_input(c);
      const qlora::Blockwise8 q = qlora::quantize_blockwise(x, code, c.at("blocksize"));
      const qlora::Blockwise8 exact =
          qlora::quantize_blockwise(x, code, c.at("blocksize"), qlora::DynamicRounding::cuda_nearest);
      CHECK(q.absmax.size() == exact.absmax.size());
      for (std::size_t i = 0; i < x.size(); ++i) {
        const float a = q.absmax[i / static_cast<std::size_t>(q.blocksize)];
        if (std::isnan(x[i]) || a == 0.0f) continue;
        const float s = x[i] * (1.0f / a);
        CHECK_MESSAGE(distance(code, q.codes[i], s) <= distance(code, exact.codes[i], s) + bin,
                      c.at("name").get<std::string>(), " index ", i);
      }
    }
  }

  TEST_CASE("blockwise 8-bit: NaN gets code 0, an all-zero block code 0 and absmax 0, 0.0 a tiny positive code") {
    const qlora::DynamicMap code = qlora::create_dynamic_map(true);
    std::vector<float> x(8, 0.0f);
    x[4] = std::nanf("");
    x[5] = 2.0f;
    const qlora::Blockwise8 q = qlora::quantize_blockwise(x, code, 4);
    CHECK(q.absmax == std::vector<float>{0.0f, 2.0f});  // NaN is skipped by the absmax
    CHECK(q.codes[0] == 0);                             // all-zero block: index 0 (-0.99297), not 127 (0.0)
    CHECK(q.codes[4] == 0);
    CHECK(q.codes[5] == 255);
    // 0.0 lands in the middle bin, which starts at -1 + 32768 * 2/65535 = 1.5e-5 > 0: the CPU backend gives it
    // the code nearest that bin edge, not code[127] = 0 (the CUDA search returns 127).
    CHECK(q.codes[6] == 131);
    CHECK(code[q.codes[6]] == doctest::Approx(2.125e-5f).epsilon(1e-3));  // 0x37b24206, code index 131
    CHECK(qlora::nearest_dynamic_code(code.data(), 0.0f) == 127);
    const std::vector<float> back = qlora::dequantize_blockwise(q, code);
    CHECK(back[0] == 0.0f);
    CHECK(std::signbit(back[0]));  // -0.99297 * 0
  }

  TEST_CASE("blockwise 8-bit rejects a non-positive blocksize, negative sizes and null buffers") {
    const qlora::DynamicMap code = qlora::create_dynamic_map(true);
    const std::vector<float> x(10, 1.0f);
    CHECK_THROWS_AS(qlora::quantize_blockwise(x, code, 0), qlora::Error);
    CHECK_THROWS_WITH(qlora::quantize_blockwise(x, code, -64), doctest::Contains("[blockwise8] blocksize"));
    std::uint8_t codes[1];
    float absmax[1];
    CHECK_THROWS_AS(qlora::quantize_blockwise(nullptr, 1, code, 64, codes, absmax), qlora::Error);
    CHECK_THROWS_AS(qlora::quantize_blockwise(x.data(), -1, code, 64, codes, absmax), qlora::Error);
    CHECK_NOTHROW(qlora::quantize_blockwise(nullptr, 0, code, 64, nullptr, nullptr));
    const qlora::Blockwise8 wrong{64, std::vector<std::uint8_t>(100), std::vector<float>(1)};
    CHECK_THROWS_AS(qlora::dequantize_blockwise(wrong, code), qlora::Error);
  }
}

TEST_SUITE("quant") {
  TEST_CASE("blockwise 8-bit through tensors equals the pointer functions") {
    auto x = qlora::Tensor<float, qlora::Dyn>::zeros(1000);
    for (qlora::index_t i = 0; i < 1000; ++i) x(i) = static_cast<float>(i % 37) - 18.0f;
    const auto code = qlora::create_dynamic_map(true);
    const auto q = qlora::quantize_blockwise(x, code, 256);
    const auto ref = qlora::quantize_blockwise(x.to_vector(), code, 256);
    for (qlora::index_t i = 0; i < 1000; ++i) REQUIRE(q.codes(i) == ref.codes[static_cast<std::size_t>(i)]);
    auto out = qlora::Tensor<float, qlora::Dyn>::zeros(1000);
    qlora::dequantize_blockwise(q, code, out);
    const auto want = qlora::dequantize_blockwise(ref, code);
    for (qlora::index_t i = 0; i < 1000; ++i) REQUIRE(out(i) == want[static_cast<std::size_t>(i)]);
  }
}
