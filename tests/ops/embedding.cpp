// Scaled embedding: transformers' Gemma3TextScaledWordEmbedding outputs (fp32 and bf16 tables) and table gradient,
// the normaliser rounded to the weight dtype, the out-of-range id error, an fp64 gradcheck of the table, and
// padding_idx (no gradient for the pad row, as nn.Embedding).
#include <doctest/doctest.h>

#include <cstdint>

#include "support/golden.hpp"

#include <qlora/ops/embedding.hpp>

using namespace qlora;

namespace {
using Ids = Tensor<std::int32_t, Dyn>;
using Rows = Tensor<float, Dyn, Dyn>;

Rows rows_of(const test::GoldenArray<float>& a) { return Rows::from(a.values, a.shape[0], a.shape[1]); }
Ids golden_ids(const test::GoldenSet& golden) {
  const auto ids = golden.ints("embedding_ids");
  return Ids::from(ids.values, ids.numel());
}
}  // namespace

TEST_SUITE("ops") {
  TEST_CASE("the embedding normaliser is sqrt(hidden) rounded to the weight dtype") {
    CHECK(static_cast<float>(embedding_normalizer<bf16>(640)) == 25.25f);
    CHECK(static_cast<float>(embedding_normalizer<bf16>(2560)) == 50.5f);
    CHECK(static_cast<float>(embedding_normalizer<bf16>(1152)) == 34.0f);  // Gemma 3 1B: sqrt = 33.94
    CHECK(embedding_normalizer<float>(640) == static_cast<float>(std::sqrt(640.0)));
    CHECK(embedding_normalizer<double>(640) == static_cast<double>(static_cast<float>(std::sqrt(640.0))));
  }

  TEST_CASE("embedding forward and table gradient match transformers with an fp32 table") {
    const test::GoldenSet golden("gemma3_ops");
    CHECK(golden.params("embedding_f32").at("scale").get<float>() == embedding_normalizer<float>(640));
    const Ids ids = golden_ids(golden);                                       // ids: [10], repeats and 0, V-1
    auto table = Variable<float, Dyn, Dyn>::leaf(rows_of(golden.floats("embedding_f32_table")));  // [12, 640]
    const index_t padding_idx = golden.params("embedding_f32").at("padding_idx").get<index_t>();  // 0
    const auto y = embedding(ids, table, padding_idx);                        // y: [10, 640]
    QLORA_CHECK_GOLDEN(y.value(), rows_of(golden.floats("embedding_f32_y")), 0.0, 0.0, "y");  // one rounded product
    backward(y, rows_of(golden.floats("embedding_f32_dy")));
    QLORA_CHECK_GOLDEN(table.grad(), rows_of(golden.floats("embedding_f32_dtable")), 1e-6, 1e-6, "d_table");
  }

  TEST_CASE("embedding with a bf16 table multiplies by the bf16 normaliser and rounds once, like transformers") {
    const test::GoldenSet golden("gemma3_ops");
    CHECK(golden.params("embedding_bf16").at("scale").get<float>() == 25.25f);
    const auto g = golden.floats("embedding_bf16_table");
    auto table = Tensor<bf16, Dyn, Dyn>::zeros(g.shape[0], g.shape[1]);
    for (index_t i = 0; i < table.numel(); ++i) table.data()[i] = bf16(g.values[static_cast<std::size_t>(i)]);
    const auto y = embedding_forward(golden_ids(golden), table);
    QLORA_CHECK_GOLDEN(y, rows_of(golden.floats("embedding_bf16_y")), 0.0, 0.0, "bf16 y");
  }

  TEST_CASE("an id outside the vocabulary throws naming the id and the vocabulary size") {
    const auto table = Tensor<float, Dyn, Dyn>::zeros(12, 4);
    CHECK_THROWS_WITH_AS(embedding_forward(Ids::from({1, 12, 3}, 3), table),
                         "[embedding] token 1 has id 12, outside the vocabulary of size 12", Error);
    CHECK_THROWS_WITH_AS(embedding_forward(Ids::from({-1}, 1), table),
                         "[embedding] token 0 has id -1, outside the vocabulary of size 12", Error);
  }

  TEST_CASE("embedding records no backward unless the table requires a gradient") {
    const auto table = Variable<float, Dyn, Dim<4>>(Tensor<float, Dyn, Dim<4>>::zeros(5));
    const auto y = embedding(Ids::from({0, 4}, 2), table);
    static_assert(std::is_same_v<decltype(y), const Variable<float, Dyn, Dim<4>>>);
    CHECK_FALSE(y.requires_grad());
  }

  TEST_CASE("embedding table gradient passes gradcheck in fp64, repeated ids included") {
    auto table = Variable<double, Dyn, Dyn>::leaf(test::random_tensor<Tensor<double, Dyn, Dyn>>(1, -1, 1, 6, 5));
    const Ids ids = Ids::from({3, 0, 3, 5, 3, 1}, 6);
    QLORA_CHECK_GRADIENTS([&](const auto& t) { return embedding(ids, t); }, table);
    table.zero_grad();  // with padding_idx 3 the row of id 3 gets no gradient (not a finite difference: by definition)
    backward(embedding(ids, table, 3), Tensor<double, Dyn, Dyn>::full(1.0, 6, 5));
    for (index_t c = 0; c < 5; ++c) CHECK(table.grad()(3, c) == 0.0);
  }
}
