// Philox4x32-10 against the known-answer vectors of its authors (Random123's kat_vectors), and the uniform draw.
#include <doctest/doctest.h>

#include <qlora/core/random.hpp>

using namespace qlora;

TEST_SUITE("core") {
  TEST_CASE("philox4x32-10 reproduces the Random123 known-answer vectors") {
    const auto zero = philox4x32_10({{0, 0, 0, 0}}, 0, 0);
    CHECK(zero.v[0] == 0x6627e8d5u);
    CHECK(zero.v[1] == 0xe169c58du);
    CHECK(zero.v[2] == 0xbc57ac4cu);
    CHECK(zero.v[3] == 0x9b00dbd8u);
    const auto ones = philox4x32_10({{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}}, 0xffffffffu, 0xffffffffu);
    CHECK(ones.v[0] == 0x408f276du);
    CHECK(ones.v[3] == 0x6d5451fdu);
    const auto pi = philox4x32_10({{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}}, 0xa4093822u, 0x299f31d0u);
    CHECK(pi.v[0] == 0xd16cfe09u);
    CHECK(pi.v[1] == 0x94fdccebu);
    CHECK(pi.v[2] == 0x5001e420u);
    CHECK(pi.v[3] == 0x24126ea1u);
  }

  TEST_CASE("philox4x32-10 on lanes equals the one-counter function lane by lane") {
    constexpr int N = 16;
    std::uint32_t c[4][N];
    Philox4x32 want[N];
    for (int j = 0; j < N; ++j) {
      const Philox4x32 counter{{0x243f6a88u * static_cast<std::uint32_t>(j + 1), static_cast<std::uint32_t>(j),
                                0xffffffffu - static_cast<std::uint32_t>(j), 0x03707344u ^ static_cast<std::uint32_t>(j)}};
      for (int w = 0; w < 4; ++w) c[w][j] = counter.v[w];
      want[j] = philox4x32_10(counter, 0xa4093822u, 0x299f31d0u);
    }
    philox4x32_10_lanes(c, 0xa4093822u, 0x299f31d0u);
    for (int j = 0; j < N; ++j)
      for (int w = 0; w < 4; ++w) CHECK(c[w][j] == want[j].v[w]);
  }

  TEST_CASE("uniform01 lies in the unit interval, has mean one half, and depends on seed and offset") {
    double sum = 0;
    const int n = 100000;
    for (int i = 0; i < n; ++i) {
      const float u = uniform01({42, 7}, static_cast<std::uint64_t>(i));
      REQUIRE(u >= 0.0f);
      REQUIRE(u < 1.0f);
      sum += u;
    }
    CHECK(sum / n == doctest::Approx(0.5).epsilon(0.01));
    CHECK(uniform01({42, 7}, 5) == uniform01({42, 7}, 5));
    CHECK(uniform01({42, 7}, 5) != uniform01({43, 7}, 5));
    CHECK(uniform01({42, 7}, 5) != uniform01({42, 8}, 5));
  }
}
