// cross_entropy: the chunked fused LM head + loss against materialised logits, against torch's F.cross_entropy
// (golden files of tests/golden/gemma3_attention.py), fp64 gradients through chunk boundaries, and its errors.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include <qlora/ops/cross_entropy.hpp>

#include "support/golden.hpp"

using namespace qlora;

namespace {
using Labels = Tensor<std::int32_t, Dyn>;
using MD = Tensor<double, Dyn, Dyn>;

Labels labels_of(const std::vector<std::int32_t>& ids) { return Labels::from(ids, static_cast<index_t>(ids.size())); }

// {Σ loss, count} by materialising every logit, in double.
template <class H>
std::pair<double, index_t> materialised(const H& hidden, const H& table, const Labels& labels, double cap) {
  double sum = 0;
  index_t count = 0;
  for (index_t t = 0; t < hidden.size(0); ++t) {
    if (labels(t) == kIgnoreIndex) continue;
    std::vector<double> z(static_cast<std::size_t>(table.size(0)));
    for (index_t v = 0; v < table.size(0); ++v) {
      double dot = 0;
      for (index_t c = 0; c < hidden.size(1); ++c) dot += convert<double>(hidden(t, c)) * convert<double>(table(v, c));
      z[static_cast<std::size_t>(v)] = cap > 0 ? cap * std::tanh(dot / cap) : dot;
    }
    double m = -INFINITY, s = 0;
    for (double x : z) m = std::max(m, x);
    for (double x : z) s += std::exp(x - m);
    sum += m + std::log(s) - z[static_cast<std::size_t>(labels(t))];
    ++count;
  }
  return {sum, count};
}

void check_ce_golden_case(const std::string& name) {
  const test::GoldenSet set("gemma3_attention");
  const auto& prm = set.params(name);
  const auto seed = prm.at("seed").get<std::uint64_t>();
  const index_t n = prm.at("tokens"), c = prm.at("hidden"), vocab = prm.at("vocab");
  auto hidden = Variable<float, Dyn, Dyn>::leaf(
      test::hash_uniform<Tensor<float, Dyn, Dyn>>(seed, prm.at("amplitudes").at("hidden"), n, c));
  const auto table = Variable<float, Dyn, Dyn>(test::hash_uniform<Tensor<float, Dyn, Dyn>>(seed + 1, 1.0, vocab, c));  // frozen
  const auto labels = set.ints(name + "_labels");
  CrossEntropyParams p;
  p.softcap = prm.at("softcap");
  p.chunk_tokens = 7;  // several chunks of both kinds, ragged at the ends
  p.chunk_vocab = 300;
  const auto loss = cross_entropy(hidden, table, labels_of(labels.values), p);
  backward(loss);
  CHECK(loss.value().item() == doctest::Approx(set.floats(name + "_loss").values[0]).epsilon(1e-6));
  const auto dh = set.floats(name + "_dhidden");
  const auto want = Tensor<float, Dyn>::from(dh.values, dh.numel());
  QLORA_CHECK_GOLDEN(hidden.grad(), want, 1e-8, 1e-4, name + " d_hidden");
  CHECK(cross_entropy_sum(hidden, table, labels_of(labels.values), p).count == prm.at("count").get<index_t>());
}
}  // namespace

TEST_SUITE("ops") {
  TEST_CASE("chunked cross-entropy equals the loss of materialised logits for any chunking") {
    using F = Tensor<float, Dyn, Dyn>;
    const auto hidden = test::random_tensor<F>(1, -1, 1, 37, 24);
    const auto table = test::random_tensor<F>(2, -1, 1, 301, 24);
    std::vector<std::int32_t> ids(37);
    for (std::size_t t = 0; t < ids.size(); ++t) ids[t] = t % 6 == 1 ? kIgnoreIndex : static_cast<std::int32_t>(t * 97 % 301);
    const Labels labels = labels_of(ids);
    for (double cap : {0.0, 2.5}) {
      const auto [want, want_count] = materialised(hidden, table, labels, cap);
      for (const auto& chunk : {std::pair<index_t, index_t>{0, 0}, {1, 1}, {5, 64}, {37, 301}, {100, 1000}, {8, 300}}) {
        const index_t nt = chunk.first, nv = chunk.second;
        CAPTURE(cap);
        CAPTURE(nt);
        CAPTURE(nv);
        const auto f = cross_entropy_forward(hidden, table, labels, CrossEntropyParams{cap, nt, nv});
        CHECK(f.count == want_count);
        CHECK(f.sum == doctest::Approx(want).epsilon(1e-5));
      }
    }
  }

  TEST_CASE("cross-entropy gradients pass gradcheck through chunk boundaries (hidden and table)") {
    auto hidden = Variable<double, Dyn, Dyn>::leaf(test::random_tensor<MD>(3, -1, 1, 7, 5));
    auto table = Variable<double, Dyn, Dyn>::leaf(test::random_tensor<MD>(4, -1, 1, 11, 5));
    const Labels labels = labels_of({3, kIgnoreIndex, 0, 10, 7, kIgnoreIndex, 3});
    for (double cap : {0.0, 1.5}) {
      CAPTURE(cap);
      const CrossEntropyParams p{cap, 3, 4};
      QLORA_CHECK_GRADIENTS([&](const auto& h, const auto& w) { return cross_entropy(h, w, labels, p); }, hidden, table);
      QLORA_CHECK_GRADIENTS([&](const auto& h, const auto& w) { return cross_entropy_sum(h, w, labels, p).sum; }, hidden,
                            table);
    }
  }

  TEST_CASE("cross-entropy's gradient made in the forward pass equals the backward pass's, for any chunking") {
    using F = Tensor<float, Dyn, Dyn>;
    const auto hidden = test::random_tensor<F>(11, -2, 2, 37, 24);
    const auto table = test::random_tensor<F>(12, -2, 2, 301, 24);
    std::vector<std::int32_t> ids(37);
    for (std::size_t t = 0; t < ids.size(); ++t) ids[t] = t % 5 == 2 ? kIgnoreIndex : static_cast<std::int32_t>(t * 89 % 301);
    const Labels labels = labels_of(ids);
    for (double cap : {0.0, 2.5}) {
      for (const auto& chunk : {std::pair<index_t, index_t>{0, 0}, {1, 1}, {5, 64}, {37, 301}, {8, 300}, {512, 7}}) {
        const index_t nt = chunk.first, nv = chunk.second;
        CAPTURE(cap);
        CAPTURE(nt);
        CAPTURE(nv);
        const CrossEntropyParams p{cap, nt, nv};
        const auto f = cross_entropy_forward(hidden, table, labels, p);
        const auto g = cross_entropy_backward(hidden, table, labels, f.lse, 1.0, false, p);
        const auto fg = cross_entropy_forward_with_grad(hidden, table, labels, p);
        CHECK(fg.count == f.count);
        CHECK(fg.sum == doctest::Approx(f.sum).epsilon(1e-6));
        for (index_t t = 0; t < hidden.size(0); ++t)
          if (ids[static_cast<std::size_t>(t)] != kIgnoreIndex) CHECK(fg.lse(t) == doctest::Approx(f.lse(t)).epsilon(1e-6));
        QLORA_CHECK_CLOSE(fg.d_hidden_sum, g.d_hidden, 1e-5, 1e-6);
      }
    }
  }

  TEST_CASE("cross-entropy with a frozen table passes gradcheck through chunk boundaries (gradient in the forward)") {
    auto hidden = Variable<double, Dyn, Dyn>::leaf(test::random_tensor<MD>(13, -1, 1, 9, 5));
    const auto table = Variable<double, Dyn, Dyn>(test::random_tensor<MD>(14, -3, 3, 13, 5));
    const Labels labels = labels_of({3, kIgnoreIndex, 0, 12, 7, kIgnoreIndex, 3, 11, 1});
    for (double cap : {0.0, 1.5}) {
      for (const auto& chunk : {std::pair<index_t, index_t>{2, 3}, {9, 13}, {4, 1}}) {
        const index_t nt = chunk.first, nv = chunk.second;
        CAPTURE(cap);
        CAPTURE(nt);
        CAPTURE(nv);
        const CrossEntropyParams p{cap, nt, nv};
        QLORA_CHECK_GRADIENTS([&](const auto& h) { return cross_entropy(h, table, labels, p); }, hidden);
        QLORA_CHECK_GRADIENTS([&](const auto& h) { return cross_entropy_sum(h, table, labels, p).sum; }, hidden);
      }
    }
  }

  TEST_CASE("cross-entropy sum is count times the mean, in value and gradient") {
    auto hidden = Variable<double, Dyn, Dyn>::leaf(test::random_tensor<MD>(5, -1, 1, 6, 4));
    const auto table = Variable<double, Dyn, Dyn>(test::random_tensor<MD>(6, -1, 1, 9, 4));
    const Labels labels = labels_of({1, 2, kIgnoreIndex, 8, 0, kIgnoreIndex});
    const auto summed = cross_entropy_sum(hidden, table, labels);
    CHECK(summed.count == 4);
    backward(summed.sum);
    const auto d_sum = hidden.grad().clone();
    hidden.zero_grad();
    const auto mean = cross_entropy(hidden, table, labels);
    backward(mean);
    CHECK(summed.sum.value().item() == doctest::Approx(4 * mean.value().item()).epsilon(1e-14));
    for (index_t i = 0; i < d_sum.numel(); ++i) CHECK(d_sum.data()[i] == doctest::Approx(4 * hidden.grad().data()[i]));
  }

  TEST_CASE("cross-entropy with every label ignored is 0 with a zero gradient") {
    auto hidden = Variable<double, Dyn, Dyn>::leaf(test::random_tensor<MD>(7, -1, 1, 3, 4));
    const auto table = Variable<double, Dyn, Dyn>(test::random_tensor<MD>(8, -1, 1, 5, 4));
    const auto loss = cross_entropy(hidden, table, labels_of({kIgnoreIndex, kIgnoreIndex, kIgnoreIndex}));
    CHECK(loss.value().item() == 0.0);
    backward(loss);
    for (index_t i = 0; i < hidden.numel(); ++i) CHECK(hidden.grad().data()[i] == 0.0);
  }

  TEST_CASE("cross-entropy on bf16 inputs computes in fp32") {
    using B = Tensor<bf16, Dyn, Dyn>;
    const auto hidden = test::random_tensor<B>(9, -1, 1, 10, 32);
    const auto table = test::random_tensor<B>(10, -1, 1, 200, 32);
    const Labels labels = labels_of({0, 199, 5, kIgnoreIndex, 77, 3, 3, 150, 20, 1});
    const auto f = cross_entropy_forward(hidden, table, labels, CrossEntropyParams{0, 4, 64});
    CHECK(f.sum == doctest::Approx(materialised(hidden, table, labels, 0).first).epsilon(1e-5));
    const auto g = cross_entropy_backward(hidden, table, labels, f.lse, 1.0 / 9, true, CrossEntropyParams{0, 4, 64});
    CHECK(g.d_hidden.size(0) == 10);
    CHECK(g.d_table.size(0) == 200);
  }

  TEST_CASE("cross-entropy equals torch's F.cross_entropy(ignore_index=-100) on hidden · tableᵀ") {
    check_ce_golden_case("ce");
  }
  TEST_CASE("soft-capped cross-entropy equals torch on cap · tanh(logits / cap)") { check_ce_golden_case("ce_softcap"); }

  TEST_CASE("cross-entropy rejects a label outside the vocabulary naming the token and the label") {
    const auto hidden = Tensor<float, Dyn, Dyn>::zeros(4, 8);
    const auto table = Tensor<float, Dyn, Dyn>::zeros(1000, 8);
    CHECK_THROWS_WITH_AS(cross_entropy_forward(hidden, table, labels_of({1, kIgnoreIndex, 1000, 2})),
                         "[cross_entropy] token 2 has label 1000, outside [0, 1000) and not the ignore index -100",
                         Error);
    CHECK_THROWS_AS(cross_entropy_forward(hidden, table, labels_of({1, -1, 0, 2})), Error);
    CHECK_THROWS_AS(cross_entropy_forward(hidden, table, labels_of({1, 2, 3})), Error);
    CHECK_THROWS_AS(cross_entropy_forward(hidden, Tensor<float, Dyn, Dyn>::zeros(1000, 7), labels_of({1, 2, 3, 4})),
                    Error);
  }
}
