// Mixture-of-experts ops (ops/moe.hpp): routing weights and experts against a per-token loop written here from
// transformers' Gemma4TextRouter / Gemma4TextExperts; fp64 gradchecks of the routing weights (into the logits), of the
// experts' output (into the tokens and the routing weights) and of both composed; bad inputs refused by name. The
// whole MoE block against transformers is in tests/nn/gemma4_model.cpp.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "support/check.hpp"

#include <qlora/ops/matmul.hpp>
#include <qlora/ops/moe.hpp>

using namespace qlora;

namespace {  // names unique across the unity batch
using MoeX = Tensor<double, Dyn, Dyn>;
using MoeX3 = Tensor<double, Dyn, Dyn, Dyn>;
constexpr index_t kMoeTokens = 7, kMoeHidden = 5, kMoeExperts = 4, kMoeInter = 3, kMoeTopK = 2;

double moe_gelu_ref(double x) { return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))); }
}  // namespace

TEST_SUITE("ops") {
  TEST_CASE("moe_route: softmax, the top k most probable first, renormalised over them, times the expert's scale") {
    const MoeX z = test::random_tensor<MoeX>(1, -2, 2, kMoeTokens, kMoeExperts);
    const auto c = test::random_tensor<Tensor<double, Dyn>>(2, 0.5, 1.5, kMoeExperts);
    const auto r = moe_route(Variable<double, Dyn, Dyn>(z), kMoeTopK, c);
    for (index_t t = 0; t < kMoeTokens; ++t) {
      std::vector<double> p(kMoeExperts);  // unnormalised: the renormalisation over the chosen two cancels the sum
      for (index_t e = 0; e < kMoeExperts; ++e) p[e] = std::exp(z(t, e));
      // the two largest by hand
      index_t first = 0;
      for (index_t e = 1; e < kMoeExperts; ++e) first = p[e] > p[first] ? e : first;
      index_t second = first == 0 ? 1 : 0;
      for (index_t e = 0; e < kMoeExperts; ++e) second = e != first && p[e] > p[second] ? e : second;
      CHECK(r.experts(t, 0) == first);
      CHECK(r.experts(t, 1) == second);
      const double s = p[first] + p[second];
      CHECK(r.weights.value()(t, 0) == doctest::Approx(p[first] / s * c(first)).epsilon(1e-14));
      CHECK(r.weights.value()(t, 1) == doctest::Approx(p[second] / s * c(second)).epsilon(1e-14));
    }
    CHECK_THROWS_WITH_AS(moe_route(Variable<double, Dyn, Dyn>(z), 5, c), doctest::Contains("top_k 5 must be in [1, 4]"),
                         Error);
  }

  TEST_CASE("moe_route's weights pass gradcheck into the router logits in fp64") {
    auto z = Variable<double, Dyn, Dyn>::leaf(test::random_tensor<MoeX>(3, -2, 2, kMoeTokens, kMoeExperts));
    const auto c = test::random_tensor<Tensor<double, Dyn>>(4, 0.5, 1.5, kMoeExperts);
    QLORA_CHECK_GRADIENTS([&](const auto& logits) { return moe_route(logits, kMoeTopK, c).weights; }, z);
    QLORA_CHECK_GRADIENTS([&](const auto& logits) { return moe_route(logits, 1, c).weights; }, z);  // top-1: dz = 0
  }

  TEST_CASE("moe_experts equals the per-token sum of each chosen expert's GeGLU MLP times its weight") {
    const MoeX h = test::random_tensor<MoeX>(5, -1, 1, kMoeTokens, kMoeHidden);
    const MoeX w = test::random_tensor<MoeX>(6, 0, 1, kMoeTokens, kMoeTopK);
    const MoeX3 gate_up = test::random_tensor<MoeX3>(7, -0.5, 0.5, kMoeExperts, 2 * kMoeInter, kMoeHidden);
    const MoeX3 down = test::random_tensor<MoeX3>(8, -0.5, 0.5, kMoeExperts, kMoeHidden, kMoeInter);
    auto experts = Tensor<std::int32_t, Dyn, Dyn>::zeros(kMoeTokens, kMoeTopK);
    for (index_t t = 0; t < kMoeTokens; ++t) {  // every expert used, one (expert 3) by no token on the first slot
      experts(t, 0) = static_cast<std::int32_t>(t % 3);
      experts(t, 1) = static_cast<std::int32_t>((t + 1) % kMoeExperts);
    }
    const auto out = moe_experts(Variable<double, Dyn, Dyn>(h), Variable<double, Dyn, Dyn>(w), experts, gate_up, down);
    for (index_t t = 0; t < kMoeTokens; ++t)
      for (index_t i = 0; i < kMoeHidden; ++i) {
        double ref = 0;
        for (index_t j = 0; j < kMoeTopK; ++j) {
          const index_t e = experts(t, j);
          double y = 0;
          for (index_t m = 0; m < kMoeInter; ++m) {
            double g = 0, u = 0;
            for (index_t c = 0; c < kMoeHidden; ++c) {
              g += gate_up(e, m, c) * h(t, c);
              u += gate_up(e, kMoeInter + m, c) * h(t, c);
            }
            y += down(e, i, m) * moe_gelu_ref(g) * u;
          }
          ref += w(t, j) * y;
        }
        CHECK(out.value()(t, i) == doctest::Approx(ref).epsilon(1e-12));
      }
    auto bad = experts;
    bad(2, 1) = 9;
    CHECK_THROWS_WITH_AS(moe_experts(Variable<double, Dyn, Dyn>(h), Variable<double, Dyn, Dyn>(w), bad, gate_up, down),
                         doctest::Contains("token 2 is routed to expert 9, outside the 4 experts"), Error);
    const MoeX3 wrong = test::random_tensor<MoeX3>(9, -0.5, 0.5, kMoeExperts, kMoeHidden, kMoeInter + 1);
    CHECK_THROWS_WITH_AS(moe_experts(Variable<double, Dyn, Dyn>(h), Variable<double, Dyn, Dyn>(w), experts, gate_up, wrong),
                         doctest::Contains("do not fit hidden 5"), Error);
  }

  TEST_CASE("moe_experts passes gradcheck into the tokens and the routing weights, and composed with moe_route") {
    const MoeX3 gate_up = test::random_tensor<MoeX3>(10, -0.5, 0.5, kMoeExperts, 2 * kMoeInter, kMoeHidden);
    const MoeX3 down = test::random_tensor<MoeX3>(11, -0.5, 0.5, kMoeExperts, kMoeHidden, kMoeInter);
    auto h = Variable<double, Dyn, Dyn>::leaf(test::random_tensor<MoeX>(12, -1, 1, kMoeTokens, kMoeHidden));
    auto w = Variable<double, Dyn, Dyn>::leaf(test::random_tensor<MoeX>(13, 0, 1, kMoeTokens, kMoeTopK));
    auto experts = Tensor<std::int32_t, Dyn, Dyn>::zeros(kMoeTokens, kMoeTopK);
    for (index_t t = 0; t < kMoeTokens; ++t) {
      experts(t, 0) = static_cast<std::int32_t>((2 * t) % kMoeExperts);
      experts(t, 1) = static_cast<std::int32_t>((2 * t + 1) % kMoeExperts);
    }
    QLORA_CHECK_GRADIENTS([&](const auto& x, const auto& weights) { return moe_experts(x, weights, experts, gate_up, down); },
                          h, w);
    // the router on the tokens themselves: logits = h · Rᵀ, routed, then the experts (the choice is locally constant)
    const MoeX router = test::random_tensor<MoeX>(14, -2, 2, kMoeExperts, kMoeHidden);
    const auto c = test::random_tensor<Tensor<double, Dyn>>(15, 0.5, 1.5, kMoeExperts);
    QLORA_CHECK_GRADIENTS([&](const auto& x) {
      const auto r = moe_route(matmul<Transpose::no, Transpose::yes>(x, Variable<double, Dyn, Dyn>(router)), kMoeTopK, c);
      return moe_experts(x, r.weights, r.experts, gate_up, down);
    }, h);
  }
}
