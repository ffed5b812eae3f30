// ggml block formats: sizes, element order of each block type on hand-built blocks, bit-exact dequantization of the
// gguf package's golden blocks (tests/golden/gguf_files.py), and the reference Q8_0 quantizer byte for byte.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <qlora/io/gguf.hpp>
#include <qlora/quant/ggml.hpp>

using namespace qlora;

namespace {

const std::filesystem::path kGgufDir = std::filesystem::path(QLORA_TEST_DATA_DIR) / "io" / "gguf";

std::vector<float> load_floats(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot open ", p.string(), " (run tests/golden/gguf_files.py)");
  const std::vector<char> b{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  std::vector<float> v(b.size() / 4);
  if (!v.empty()) std::memcpy(v.data(), b.data(), v.size() * 4);
  return v;
}

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * 4) == 0);
}

}  // namespace

TEST_SUITE("quant") {
  TEST_CASE("ggml block structs have ggml's sizes, and the type table agrees") {
    CHECK(ggml_traits(GgmlType::Q8_0).type_size == sizeof(block_q8_0));
    CHECK(ggml_traits(GgmlType::Q4_0).type_size == sizeof(block_q4_0));
    CHECK(ggml_traits(GgmlType::Q5_0).type_size == sizeof(block_q5_0));
    CHECK(ggml_traits(GgmlType::Q4_K).type_size == sizeof(block_q4_K));
    CHECK(ggml_traits(GgmlType::Q5_K).type_size == sizeof(block_q5_K));
    CHECK(ggml_traits(GgmlType::Q6_K).type_size == sizeof(block_q6_K));
    CHECK(ggml_traits(GgmlType::Q4_K).block_size == 256);
    CHECK(ggml_type_traits(4) == nullptr);  // ids 4 and 5 (Q4_2, Q4_3) were removed from ggml
    CHECK(ggml_type_name(GgmlType::BF16) == "BF16");
    static_assert(ggml_type_traits(30)->type_size == 2);
  }

  TEST_CASE("Q8_0 is qs times d") {
    block_q8_0 b{};
    b.d = f16(0.5f);
    for (int j = 0; j < 32; ++j) b.qs[j] = static_cast<std::int8_t>(j * 8 - 128);
    float y[32];
    dequantize_row_q8_0(&b, y, 32);
    CHECK(y[0] == -64.0f);
    CHECK(y[31] == 60.0f);
  }

  TEST_CASE("Q4_0 and Q5_0 keep element j in the low nibble and element j + 16 in the high nibble") {
    block_q4_0 b{};
    b.d = f16(2.0f);
    b.qs[3] = 0xA1;  // element 3: 1 - 8 = -7; element 19: 10 - 8 = 2
    float y[32];
    dequantize_row_q4_0(&b, y, 32);
    CHECK(y[3] == -14.0f);
    CHECK(y[19] == 4.0f);
    CHECK(y[0] == -16.0f);

    block_q5_0 c{};
    c.d = f16(1.0f);
    c.qs[3] = 0xA1;
    c.qh[0] = 0x08;  // bit 3: element 3 gets +16
    c.qh[2] = 0x08;  // bit 19: element 19 gets +16
    dequantize_row_q5_0(&c, y, 32);
    CHECK(y[3] == 1.0f);    // (1 | 16) - 16
    CHECK(y[19] == 10.0f);  // (10 | 16) - 16
    CHECK(y[0] == -16.0f);
  }

  TEST_CASE("Q4_K and Q5_K unpack 6-bit scales and mins and subtract dmin * m") {
    // scales sc_j = j + 1 and mins m_j = 40 + j packed as ggml's quantizer packs them
    block_q4_K b{};
    for (int j = 0; j < 8; ++j) {
      const int sc = j + 1 + (j >= 4 ? 32 : 0), m = 40 + j;
      if (j < 4) {
        b.scales[j] = static_cast<std::uint8_t>(sc);
        b.scales[j + 4] = static_cast<std::uint8_t>(m);
      } else {
        b.scales[j + 4] = static_cast<std::uint8_t>((sc & 0xF) | ((m & 0xF) << 4));
        b.scales[j - 4] |= static_cast<std::uint8_t>((sc >> 4) << 6);
        b.scales[j] |= static_cast<std::uint8_t>((m >> 4) << 6);
      }
    }
    for (int j = 0; j < 8; ++j) {
      std::uint8_t sc, m;
      get_scale_min_k4(j, b.scales, sc, m);
      CHECK(sc == j + 1 + (j >= 4 ? 32 : 0));
      CHECK(m == 40 + j);
    }
    b.d = f16(0.25f);
    b.dmin = f16(0.125f);
    b.qs[32 * 1 + 5] = 0x93;  // chunk 1: element 64+5 = 3 (sub-block 2), element 96+5 = 9 (sub-block 3)
    float y[256];
    dequantize_row_q4_K(&b, y, 256);
    CHECK(y[69] == 0.25f * 3 * 3 - 0.125f * 42);
    CHECK(y[101] == 0.25f * 4 * 9 - 0.125f * 43);
    CHECK(y[0] == -0.125f * 40);

    block_q5_K c{};
    std::memcpy(c.scales, b.scales, sizeof c.scales);
    c.d = b.d;
    c.dmin = b.dmin;
    c.qs[32 * 1 + 5] = 0x93;
    c.qh[5] = 0x08;  // bit 2c+1 = 3: the high-nibble half of chunk 1 gets +16
    dequantize_row_q5_K(&c, y, 256);
    CHECK(y[69] == 0.25f * 3 * 3 - 0.125f * 42);
    CHECK(y[101] == 0.25f * 4 * 25 - 0.125f * 43);
  }

  TEST_CASE("Q6_K combines 4 low and 2 high bits, subtracts 32, and scales by d * scale per 16 elements") {
    block_q6_K b{};
    b.d = f16(0.5f);
    for (int i = 0; i < 16; ++i) b.scales[i] = static_cast<std::int8_t>(i - 8);
    b.ql[64 + 40] = 0x5C;          // second half, l = 8: y[128 + 40] low nibble 0xC, y[128 + 104] high nibble 0x5
    b.qh[32 + 8] = 0b10'00'11'00;  // y[128 + 40]: bits 2-3 = 3; y[128 + 104]: bits 6-7 = 2
    float y[256];
    dequantize_row_q6_K(&b, y, 256);
    CHECK(y[168] == 0.5f * static_cast<float>(b.scales[8 + 2]) * static_cast<float>((0xC | 3 << 4) - 32));
    CHECK(y[232] == 0.5f * static_cast<float>(b.scales[8 + 6]) * static_cast<float>((0x5 | 2 << 4) - 32));
    CHECK(y[0] == 0.5f * -8 * -32);
  }

  TEST_CASE("dequantize_row matches gguf.quants.dequantize bit for bit, from any alignment") {
    GgufFile f(kGgufDir / "metadata.gguf");
    int checked = 0;
    for (const auto& t : f.tensors()) {
      if (!ggml_can_dequantize(t.type)) continue;
      INFO("tensor ", t.name, " (", ggml_type_name(t.type), ")");
      const auto want = load_floats(kGgufDir / (t.name + ".expected.bin"));
      std::vector<float> got(static_cast<std::size_t>(t.numel()));
      const auto raw = f.raw(t.name);
      dequantize_row(t.type, raw.data(), got.data(), t.numel());
      CHECK(bitwise_equal(got, want));
      std::vector<std::uint8_t> shifted(raw.size() + 1);  // an odd address: fp16 fields unaligned
      std::memcpy(shifted.data() + 1, raw.data(), raw.size());
      std::fill(got.begin(), got.end(), 0.0f);
      dequantize_row(t.type, shifted.data() + 1, got.data(), t.numel());
      CHECK(bitwise_equal(got, want));
      ++checked;
    }
    CHECK(checked == static_cast<int>(f.tensors().size()));
  }

  TEST_CASE("quantize_row_q8_0 writes gguf.quants.quantize's bytes (ties away from zero, zero blocks)") {
    GgufFile f(kGgufDir / "metadata.gguf");
    const auto x = load_floats(kGgufDir / "blk.0.attn_q.weight.input.bin");
    REQUIRE(x.size() == 256);
    std::vector<block_q8_0> q(x.size() / 32);
    quantize_row_q8_0(x.data(), q.data(), static_cast<std::int64_t>(x.size()));
    const auto raw = f.raw("blk.0.attn_q.weight");
    REQUIRE(raw.size() == q.size() * sizeof(block_q8_0));
    CHECK(std::memcmp(raw.data(), q.data(), raw.size()) == 0);
    CHECK(q[2].d == f16(0.0f));  // the all-zero block
    CHECK(q[4].qs[5] == 64);     // 63.5 with d = 1 rounds away from zero
    CHECK(q[4].qs[6] == -64);
  }

  TEST_CASE("types without a dequantizer fail with their name") {
    float y[32];
    const std::uint8_t zeros[20] = {};
    CHECK_FALSE(ggml_can_dequantize(GgmlType::Q4_1));
    CHECK_THROWS_WITH_AS(
        dequantize_row(GgmlType::Q4_1, zeros, y, 32),
        "[ggml] cannot dequantize Q4_1 (supported: F32, F16, BF16, Q8_0, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K)", Error);
    CHECK_THROWS_WITH_AS(dequantize_row(GgmlType::Q8_0, zeros, y, 31),
                         "[ggml] dequantize_row: 31 elements is not a multiple of the Q8_0 block size 32", Error);
  }
}
