// attention: the CPU reference against a naive softmax loop, against transformers' eager attention (golden files of
// tests/golden/gemma3_attention.py), packing against separate sequences, fp64 gradients, and its errors.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include <qlora/ops/attention.hpp>

#include "support/golden.hpp"

using namespace qlora;

namespace {
using Seq = Tensor<std::int32_t, Dyn>;

using test::hash_uniform;

// out[i, h] by the formula in ops/attention.hpp, in double, one score at a time.
template <class Q, class K>
std::vector<double> naive_attention(const Q& q, const K& k, const K& v, const AttentionParams& p, const Seq& seg) {
  const index_t n = q.size(0), hq = q.size(1), hk = k.size(1), d = q.size(2);
  std::vector<double> out(static_cast<std::size_t>(q.numel()));
  for (index_t i = 0; i < n; ++i)
    for (index_t h = 0; h < hq; ++h) {
      const index_t g = h / (hq / hk);
      std::vector<double> s(static_cast<std::size_t>(n), -INFINITY);
      double m = -INFINITY;
      for (index_t j = 0; j < n; ++j) {
        if (!cpu::attention_visible(i, j, p.window, seg.defined() ? seg.data() : nullptr)) continue;
        double dot = 0;
        for (index_t e = 0; e < d; ++e) dot += convert<double>(q(i, h, e)) * convert<double>(k(j, g, e));
        s[static_cast<std::size_t>(j)] = dot * p.scale;
        m = std::max(m, dot * p.scale);
      }
      double l = 0;
      for (double x : s) l += std::exp(x - m);
      for (index_t e = 0; e < d; ++e) {
        double acc = 0;
        for (index_t j = 0; j < n; ++j) acc += std::exp(s[static_cast<std::size_t>(j)] - m) * convert<double>(v(j, g, e));
        out[static_cast<std::size_t>((i * hq + h) * d + e)] = acc / l;
      }
    }
  return out;
}

template <class A>
double max_error(const A& got, const std::vector<double>& want) {
  double worst = 0;
  for (index_t i = 0; i < got.numel(); ++i)
    worst = std::max(worst, std::abs(convert<double>(got.data()[i]) - want[static_cast<std::size_t>(i)]));
  return worst;
}

Seq segments(const std::vector<std::int32_t>& ids) { return Seq::from(ids, static_cast<index_t>(ids.size())); }

// One golden case: inputs regenerated from the manifest's seed, outputs and gradients compared with transformers'.
void check_golden_case(const std::string& name) {
  const test::GoldenSet set("gemma3_attention");
  const auto& prm = set.params(name);
  const auto seed = prm.at("seed").get<std::uint64_t>();
  const index_t n = prm.at("tokens"), hq = prm.at("q_heads"), hk = prm.at("kv_heads"), d = prm.at("head_dim");
  using X = Tensor<float, Dyn, Dyn, Dyn>;
  auto q = Variable<float, Dyn, Dyn, Dyn>::leaf(hash_uniform<X>(seed, 2.0, n, hq, d));
  auto k = Variable<float, Dyn, Dyn, Dyn>::leaf(hash_uniform<X>(seed + 1, 2.0, n, hk, d));
  auto v = Variable<float, Dyn, Dyn, Dyn>::leaf(hash_uniform<X>(seed + 2, 1.0, n, hk, d));
  const auto dout = hash_uniform<X>(seed + 3, 1.0, n, hq, d);
  const auto seg = set.ints(name + "_segments");
  const AttentionParams p{prm.at("scale").get<double>(), prm.at("window").get<index_t>()};
  const auto out = attention(q, k, v, p, segments(seg.values));
  backward(out, dout);
  auto golden = [&](const std::string& what) {
    const auto g = set.floats(name + "_" + what);
    return Tensor<float, Dyn>::from(g.values, g.numel());
  };
  QLORA_CHECK_GOLDEN(out.value(), golden("out"), 2e-6, 1e-4, name + " out");
  QLORA_CHECK_GOLDEN(q.grad(), golden("dq"), 2e-6, 1e-4, name + " dq");
  QLORA_CHECK_GOLDEN(k.grad(), golden("dk"), 2e-6, 1e-4, name + " dk");
  QLORA_CHECK_GOLDEN(v.grad(), golden("dv"), 2e-6, 1e-4, name + " dv");
}
}  // namespace

TEST_SUITE("ops") {
  TEST_CASE("attention forward equals a naive softmax loop (GQA, causal, sliding window, segments)") {
    using X = Tensor<float, Dyn, Dyn, Dyn>;
    const auto q = test::random_tensor<X>(1, -2, 2, 13, 4, 16);
    const auto k = test::random_tensor<X>(2, -2, 2, 13, 2, 16);
    const auto v = test::random_tensor<X>(3, -1, 1, 13, 2, 16);
    const Seq seg = segments({0, 0, 0, 0, 0, 7, 7, 7, 7, 7, 7, 2, 2});  // unsorted ids are fine
    for (index_t window : {0, 1, 3, 20}) {
      for (bool packed : {false, true}) {
        CAPTURE(window);
        CAPTURE(packed);
        const AttentionParams p{0.25, window};
        const auto f = attention_forward(q, k, v, p, packed ? seg : Seq());
        CHECK(max_error(f.out, naive_attention(q, k, v, p, packed ? seg : Seq())) < 1e-5);
      }
    }
  }

  TEST_CASE("attention on bf16 computes in fp32 and rounds once") {
    using B = Tensor<bf16, Dyn, Dim<4>, Dim<32>>;
    const auto q = test::random_tensor<B>(4, -2, 2, 9);
    const auto k = test::random_tensor<Tensor<bf16, Dyn, Dim<1>, Dim<32>>>(5, -2, 2, 9);
    const auto v = test::random_tensor<Tensor<bf16, Dyn, Dim<1>, Dim<32>>>(6, -1, 1, 9);
    const AttentionParams p{1.0 / std::sqrt(32.0), 4};
    const auto f = attention_forward(q, k, v, p);
    static_assert(std::is_same_v<decltype(f.out), Tensor<bf16, Dyn, Dim<4>, Dim<32>>>);
    CHECK(max_error(f.out, naive_attention(q, k, v, p, Seq())) < 4e-3);  // one bf16 rounding of |out| < 1
  }

  TEST_CASE("attention over packed sequences equals attention over each sequence alone") {
    using X = Tensor<double, Dyn, Dyn, Dyn>;
    const auto q = test::random_tensor<X>(7, -2, 2, 11, 2, 8);
    const auto k = test::random_tensor<X>(8, -2, 2, 11, 1, 8);
    const auto v = test::random_tensor<X>(9, -1, 1, 11, 1, 8);
    const AttentionParams p{0.5, 4};
    const auto packed = attention_forward(q, k, v, p, segments({0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1}));
    const auto first = attention_forward(q.slice(0, 6), k.slice(0, 6), v.slice(0, 6), p);
    const auto second = attention_forward(q.slice(6, 11), k.slice(6, 11), v.slice(6, 11), p);
    QLORA_CHECK_CLOSE(packed.out.slice(0, 6), first.out, 1e-14, 1e-12);
    QLORA_CHECK_CLOSE(packed.out.slice(6, 11), second.out, 1e-14, 1e-12);
  }

  TEST_CASE("attention gradients pass gradcheck (GQA 4:2, sliding window, two segments)") {
    using X = Tensor<double, Dyn, Dyn, Dyn>;
    auto q = Variable<double, Dyn, Dyn, Dyn>::leaf(test::random_tensor<X>(10, -1, 1, 7, 4, 8));
    auto k = Variable<double, Dyn, Dyn, Dyn>::leaf(test::random_tensor<X>(11, -1, 1, 7, 2, 8));
    auto v = Variable<double, Dyn, Dyn, Dyn>::leaf(test::random_tensor<X>(12, -1, 1, 7, 2, 8));
    const Seq seg = segments({0, 0, 0, 0, 1, 1, 1});
    QLORA_CHECK_GRADIENTS([&](const auto& a, const auto& b, const auto& c) { return attention(a, b, c, {0.4, 3}, seg); },
                          q, k, v);
  }

  TEST_CASE("attention gradients pass gradcheck (GQA 4:1, global causal)") {
    using Q = Tensor<double, Dyn, Dim<4>, Dim<6>>;
    using K = Tensor<double, Dyn, Dim<1>, Dim<6>>;
    auto q = Variable<double, Dyn, Dim<4>, Dim<6>>::leaf(test::random_tensor<Q>(13, -1, 1, 6));
    auto k = Variable<double, Dyn, Dim<1>, Dim<6>>::leaf(test::random_tensor<K>(14, -1, 1, 6));
    auto v = Variable<double, Dyn, Dim<1>, Dim<6>>::leaf(test::random_tensor<K>(15, -1, 1, 6));
    QLORA_CHECK_GRADIENTS([](const auto& a, const auto& b, const auto& c) { return attention(a, b, c, {0.7, 0}); },
                          q, k, v);
  }

  TEST_CASE("attention saves lse = log Σ exp(scores) per head and token") {
    using X = Tensor<double, Dyn, Dyn, Dyn>;
    const auto q = test::random_tensor<X>(16, -1, 1, 3, 1, 2);
    const auto k = test::random_tensor<X>(17, -1, 1, 3, 1, 2);
    const auto f = attention_forward(q, k, k, AttentionParams{0.5, 0});
    const double s00 = 0.5 * (q(2, 0, 0) * k(0, 0, 0) + q(2, 0, 1) * k(0, 0, 1));
    const double s01 = 0.5 * (q(2, 0, 0) * k(1, 0, 0) + q(2, 0, 1) * k(1, 0, 1));
    const double s02 = 0.5 * (q(2, 0, 0) * k(2, 0, 0) + q(2, 0, 1) * k(2, 0, 1));
    CHECK(f.lse(0, 2) == doctest::Approx(std::log(std::exp(s00) + std::exp(s01) + std::exp(s02))).epsilon(1e-14));
    CHECK(f.lse(0, 0) == doctest::Approx(0.5 * (q(0, 0, 0) * k(0, 0, 0) + q(0, 0, 1) * k(0, 0, 1))));
  }

  TEST_CASE("attention equals transformers' eager attention: Hq 4, Hkv 1, head_dim 256, sliding window 16") {
    check_golden_case("gqa1_d256_sliding");
  }
  TEST_CASE("attention equals transformers' eager attention: Hq 4, Hkv 2, head_dim 128, window 16, packed") {
    check_golden_case("gqa2_d128_sliding_packed");
  }
  TEST_CASE("attention equals transformers' eager attention: Hq 4, Hkv 1, head_dim 128, global, packed") {
    check_golden_case("gqa1_d128_global_packed");
  }

  TEST_CASE("attention rejects heads that do not group, mismatched shapes and bad segment ids") {
    using X = Tensor<float, Dyn, Dyn, Dyn>;
    const auto q = X::zeros(5, 3, 8), k = X::zeros(5, 2, 8), k4 = X::zeros(4, 1, 8), k1 = X::zeros(5, 1, 8);
    CHECK_THROWS_WITH_AS(attention_forward(q, k, k, AttentionParams{1, 0}),
                         "[attention] query heads must be a multiple of kv heads: q [5, 3, 8], k [5, 2, 8], "
                         "v [5, 2, 8]",
                         Error);
    CHECK_THROWS_AS(attention_forward(q, k4, k4, AttentionParams{1, 0}), Error);
    CHECK_THROWS_AS(attention_forward(q, k1, k1, AttentionParams{1, 0}, segments({0, 0, 1})), Error);
    CHECK_THROWS_AS(attention_forward(q, k1, k1, AttentionParams{0, 0}), Error);
  }
}
