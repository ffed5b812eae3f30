// Next-token choice: greedy argmax, top-k and top-p truncation, temperature, and reproducibility from a seed.
#include <doctest/doctest.h>

#include <map>

#include <qlora/train/sampling.hpp>

using namespace qlora;

TEST_SUITE("train") {
  TEST_CASE("greedy decoding takes the argmax, the first one on ties") {
    const std::vector<float> l{0.1f, 3.0f, -1.0f, 3.0f};
    CHECK(sample_next(l, SamplingConfig{}, 0) == 1);
  }

  TEST_CASE("top-k 1 is greedy and top-k 2 only ever picks the two largest") {
    const std::vector<float> l{1.0f, 2.0f, 0.5f, 1.9f};
    SamplingConfig c{true, 1.0, 1, 1.0, 7};
    for (std::uint64_t d = 0; d < 50; ++d) CHECK(sample_next(l, c, d) == 1);
    c.top_k = 2;
    std::map<int, int> seen;
    for (std::uint64_t d = 0; d < 2000; ++d) ++seen[sample_next(l, c, d)];
    CHECK(seen.size() == 2);
    CHECK(seen[1] > 0);
    CHECK(seen[3] > 0);
    // p(1) / p(3) = e^(2.0 - 1.9)
    CHECK(static_cast<double>(seen[1]) / seen[3] == doctest::Approx(std::exp(0.1)).epsilon(0.1));
  }

  TEST_CASE("top-p keeps the smallest set reaching p") {
    // probabilities ~ 0.7, 0.2, 0.1: top_p 0.75 keeps the first two, top_p 0.5 only the first
    const std::vector<float> l{std::log(0.7f), std::log(0.2f), std::log(0.1f)};
    SamplingConfig c{true, 1.0, 0, 0.75, 3};
    std::map<int, int> seen;
    for (std::uint64_t d = 0; d < 3000; ++d) ++seen[sample_next(l, c, d)];
    CHECK(seen.count(2) == 0);
    CHECK(static_cast<double>(seen[0]) / 3000 == doctest::Approx(0.7 / 0.9).epsilon(0.05));
    c.top_p = 0.5;
    for (std::uint64_t d = 0; d < 100; ++d) CHECK(sample_next(l, c, d) == 0);
  }

  TEST_CASE("a low temperature concentrates on the argmax, and a seed reproduces the draws") {
    const std::vector<float> l{1.0f, 1.5f, 0.0f};
    SamplingConfig c{true, 0.01, 0, 1.0, 11};
    for (std::uint64_t d = 0; d < 100; ++d) CHECK(sample_next(l, c, d) == 1);
    c.temperature = 1.0;
    std::vector<int> a, b;
    for (std::uint64_t d = 0; d < 100; ++d) {
      a.push_back(sample_next(l, c, d));
      b.push_back(sample_next(l, c, d));
    }
    CHECK(a == b);
  }

  TEST_CASE("bad sampling settings are errors") {
    CHECK_THROWS_AS(validate(SamplingConfig{true, 0.0, 50, 1.0, 0}), Error);
    CHECK_THROWS_AS(validate(SamplingConfig{true, 1.0, 50, 0.0, 0}), Error);
    const std::vector<float> nan_logits{1.0f, std::nanf("")};
    CHECK_THROWS_WITH_AS(sample_next(nan_logits, SamplingConfig{true, 1.0, 0, 1.0, 0}, 0),
                         "[generate] the logits contain NaN", Error);
  }
}
