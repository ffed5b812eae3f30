// Dropout: the kept fraction, the 1/(1-p) scaling, a mask that is a function of (seed, offset, index), and gradients.
#include <doctest/doctest.h>

#include "support/check.hpp"

#include <qlora/ops/dropout.hpp>

using namespace qlora;

TEST_SUITE("ops") {
  TEST_CASE("dropout keeps about 1-p of the elements and scales them by 1/(1-p)") {
    const DropoutParams d{0.25f, {1234, 0}};
    auto x = Tensor<float, Dyn>::full(1.0f, 200000);
    auto y = dropout_apply(d, x);
    index_t kept = 0;
    for (index_t i = 0; i < y.numel(); ++i) {
      if (y(i) != 0.0f) {
        ++kept;
        REQUIRE(y(i) == doctest::Approx(1.0f / 0.75f));
      }
    }
    CHECK(static_cast<double>(kept) / 200000.0 == doctest::Approx(0.75).epsilon(0.01));
  }

  TEST_CASE("the grouped CPU mask equals the per-element definition the GPU kernel uses") {
    const DropoutParams d{0.3f, {77, 5}};
    auto x = Tensor<float, Dyn>::full(1.0f, 1003);  // not a multiple of 4
    const auto y = dropout_apply(d, x);
    for (index_t i = 0; i < 1003; ++i) REQUIRE((y(i) != 0.0f) == dropout_keep(d, static_cast<std::uint64_t>(i)));
  }

  TEST_CASE("batch rows: a row's mask is the same whatever the padding and whichever rows come before it") {
    constexpr index_t F = 5;  // features; rows of T tokens
    const RandomStream stream{31, 9};
    auto mask = [&](index_t rows, index_t T, std::uint64_t first_row) {
      const auto y = dropout_apply(DropoutParams{0.4f, stream, static_cast<std::uint64_t>(T * F), first_row},
                                   Tensor<float, Dyn>::full(1.0f, rows * T * F));
      return y.to_vector();
    };
    const auto whole = mask(4, 7, 0);  // rows 0..3 of a micro-batch, padded to 7 tokens
    const auto tail = mask(2, 3, 2);   // rows 2..3 alone (another rank's share), padded to 3 tokens only
    for (index_t r = 0; r < 2; ++r)
      for (index_t k = 0; k < 3 * F; ++k)
        REQUIRE(tail[static_cast<std::size_t>(r * 3 * F + k)] == whole[static_cast<std::size_t>((r + 2) * 7 * F + k)]);
    // the per-element definition (the GPU kernel's), at a row length that is not a multiple of 4
    const DropoutParams d{0.3f, stream, 3 * F, 5};
    const auto y = dropout_apply(d, Tensor<float, Dyn>::full(1.0f, 4 * 3 * F));
    for (index_t i = 0; i < y.numel(); ++i)
      REQUIRE((y(i) != 0.0f) == dropout_keep(d, dropout_index(d, static_cast<std::uint64_t>(i))));
    // row 0 of the row layout is the plain layout: a batch of one row draws as before
    CHECK(mask(1, 7, 0) == dropout_apply(DropoutParams{0.4f, stream}, Tensor<float, Dyn>::full(1.0f, 7 * F)).to_vector());
    CHECK_FALSE(mask(1, 7, 1) == mask(1, 7, 0));
  }

  TEST_CASE("the dropout mask depends only on seed, offset and index") {
    auto x = Tensor<float, Dyn>::full(1.0f, 1000);
    const auto a = dropout_apply(DropoutParams{0.5f, {7, 3}}, x);
    const auto b = dropout_apply(DropoutParams{0.5f, {7, 3}}, x);
    const auto c = dropout_apply(DropoutParams{0.5f, {7, 4}}, x);
    QLORA_CHECK_CLOSE(a, b, 0.0, 0.0);
    CHECK_FALSE(test::compare(a, c, 0.0, 0.0).ok);
  }

  TEST_CASE("dropout backward applies the same mask (gradcheck with a fixed seed)") {
    auto x = Variable<double, Dim<6>, Dim<7>>::leaf(test::random_tensor<Tensor<double, Dim<6>, Dim<7>>>(1, -1, 1));
    const DropoutParams d{0.3f, {99, 1}};
    QLORA_CHECK_GRADIENTS([&](const auto& v) { return tanh(dropout(v, d)); }, x);
  }

  TEST_CASE("dropout with p = 0 is the identity and p outside the unit interval is an error") {
    auto x = Variable<float, Dim<3>>::leaf(Tensor<float, Dim<3>>::from({1, 2, 3}));
    CHECK(dropout(x, DropoutParams{0.0f, {}}).value().data() == x.value().data());
    CHECK_THROWS_WITH_AS(dropout(x, DropoutParams{1.0f, {}}), "[dropout] p must be in [0, 1), got 1", Error);
  }
}
