// Gemma RMSNorm: transformers' Gemma3RMSNorm outputs and gradients (golden, fp32 and bf16), the per-head use on
// [tokens, heads, head_dim], the saved rstd, fp64 gradchecks of dx and dw, and the shape errors.
#include <doctest/doctest.h>

#include <cmath>

#include "support/golden.hpp"

#include <qlora/ops/rmsnorm.hpp>

using namespace qlora;

namespace {
using Rows = Tensor<float, Dyn, Dyn>;
using Vec = Tensor<float, Dyn>;

Rows rmsnorm_rows_of(const test::GoldenArray<float>& a) { return Rows::from(a.values, a.shape[0], a.numel() / a.shape[0]); }
Vec vec_of(const test::GoldenArray<float>& a) { return Vec::from(a.values, a.numel()); }
template <class T>
Tensor<T, Dyn, Dyn> cast(const Rows& x) {
  auto out = Tensor<T, Dyn, Dyn>::zeros(x.size(0), x.size(1));
  for (index_t i = 0; i < x.numel(); ++i) out.data()[i] = convert<T>(x.data()[i]);
  return out;
}
}  // namespace

TEST_SUITE("ops") {
  // fp32: both compute in fp32 with different summation orders, so outputs agree to a few ulp (stated: 1e-6 rel.).
  TEST_CASE("rmsnorm forward and gradients match transformers' Gemma3RMSNorm in fp32") {
    const test::GoldenSet golden("gemma3_ops");
    const double eps = golden.params("rmsnorm").at("eps").get<double>();
    const Rows x = rmsnorm_rows_of(golden.floats("rmsnorm_x"));  // x: [6, 640], row 0 ×30, row 1 ×1e-3
    const Vec w = vec_of(golden.floats("rmsnorm_w"));    // w: [640]
    const auto fwd = rmsnorm_forward(x, w, eps);
    QLORA_CHECK_GOLDEN(fwd.y, rmsnorm_rows_of(golden.floats("rmsnorm_y")), 1e-6, 1e-6, "y");
    const auto g = rmsnorm_backward(rmsnorm_rows_of(golden.floats("rmsnorm_dy")), x, w, fwd.rstd);
    QLORA_CHECK_GOLDEN(g.dx, rmsnorm_rows_of(golden.floats("rmsnorm_dx")), 1e-6, 1e-5, "dx");
    QLORA_CHECK_GOLDEN(g.dw, vec_of(golden.floats("rmsnorm_dw")), 1e-5, 1e-5, "dw");
  }

  TEST_CASE("rmsnorm per head on [tokens, heads, head_dim] shares the weight over heads (golden q-norm)") {
    const test::GoldenSet golden("gemma3_ops");
    using Heads = Tensor<float, Dyn, Dim<4>, Dim<256>>;
    const auto gx = golden.floats("rmsnorm_heads_x");  // [3, 4, 256]
    const Heads x = Heads::from(gx.values, gx.shape[0]);
    const auto w = Tensor<float, Dim<256>>::from(golden.floats("rmsnorm_heads_w").values);
    auto xv = Variable<float, Dyn, Dim<4>, Dim<256>>::leaf(x);
    auto wv = Variable<float, Dim<256>>::leaf(w);
    const auto y = rmsnorm(xv, wv, 1e-6);
    static_assert(std::is_same_v<decltype(y), const Variable<float, Dyn, Dim<4>, Dim<256>>>);
    QLORA_CHECK_CLOSE(y.value(), Heads::from(golden.floats("rmsnorm_heads_y").values, 3), 1e-6, 1e-6);
    backward(y, Heads::from(golden.floats("rmsnorm_heads_dy").values, 3));
    QLORA_CHECK_CLOSE(xv.grad(), Heads::from(golden.floats("rmsnorm_heads_dx").values, 3), 1e-6, 1e-5);
    QLORA_CHECK_CLOSE(wv.grad(), vec_of(golden.floats("rmsnorm_heads_dw")), 1e-5, 1e-5);
  }

  // bf16: one rounding of the fp32 result; a different fp32 summation order may flip a rounding by one bf16 ulp.
  TEST_CASE("rmsnorm on bf16 computes in fp32 and rounds once, like transformers") {
    const test::GoldenSet golden("gemma3_ops");
    const Rows want = rmsnorm_rows_of(golden.floats("rmsnorm_bf16_y"));
    const auto x = cast<bf16>(rmsnorm_rows_of(golden.floats("rmsnorm_x")));
    const auto gw = golden.floats("rmsnorm_bf16_w");
    auto w = Tensor<bf16, Dyn>::zeros(gw.numel());
    for (index_t i = 0; i < w.numel(); ++i) w.data()[i] = bf16(gw.values[static_cast<std::size_t>(i)]);
    const auto y = rmsnorm_forward(x, w, 1e-6).y;
    index_t exact = 0;
    for (index_t i = 0; i < y.numel(); ++i) {
      const float got = static_cast<float>(y.data()[i]), ref = want.data()[i];
      exact += got == ref;
      CHECK(std::abs(got - ref) <= std::ldexp(std::abs(ref), -7));  // ≤ 1 ulp of bf16 (8 significant bits)
    }
    MESSAGE(exact, " of ", y.numel(), " bf16 outputs bit-identical to transformers");
    CHECK(exact >= y.numel() * 99 / 100);
  }

  TEST_CASE("rmsnorm saves rstd = 1/sqrt(mean(x²) + eps) per row") {
    const auto x = Tensor<double, Dyn, Dim<3>>::from({1, 2, 2, 0, 0, 0}, 2);
    const auto w = Tensor<double, Dim<3>>::from({0, 1, -1});
    const auto fwd = rmsnorm_forward(x, w, 1e-6);
    CHECK(fwd.rstd(0) == doctest::Approx(1 / std::sqrt(3.0 + 1e-6)).epsilon(1e-15));
    CHECK(fwd.rstd(1) == doctest::Approx(1 / std::sqrt(1e-6)).epsilon(1e-15));
    CHECK(fwd.y(0, 0) == doctest::Approx(1 / std::sqrt(3.0 + 1e-6)));  // (1 + 0) scale
    CHECK(fwd.y(0, 1) == doctest::Approx(4 / std::sqrt(3.0 + 1e-6)));  // (1 + 1) scale
    CHECK(fwd.y(0, 2) == 0.0);                                        // (1 - 1) scale
    CHECK(fwd.y(1, 1) == 0.0);
  }

  TEST_CASE("rmsnorm gradients for x and w pass gradcheck in fp64") {
    using X = Tensor<double, Dyn, Dyn>;
    auto x = Variable<double, Dyn, Dyn>::leaf(test::random_tensor<X>(1, -2, 2, 5, 37));
    auto w = Variable<double, Dyn>::leaf(test::random_tensor<Tensor<double, Dyn>>(2, -0.5, 0.5, 37));
    QLORA_CHECK_GRADIENTS([](const auto& a, const auto& b) { return rmsnorm(a, b, 1e-6); }, x, w);
    auto frozen = Variable<double, Dyn>(w.value());  // Gemma's frozen norm weight: only dx
    QLORA_CHECK_GRADIENTS([&](const auto& a) { return rmsnorm(a, frozen, 1e-6); }, x);
  }

  TEST_CASE("rmsnorm per-head gradients pass gradcheck in fp64") {
    using X = Tensor<double, Dyn, Dim<3>, Dim<8>>;
    auto x = Variable<double, Dyn, Dim<3>, Dim<8>>::leaf(test::random_tensor<X>(3, -1, 1, 4));
    auto w = Variable<double, Dim<8>>::leaf(test::random_tensor<Tensor<double, Dim<8>>>(4, -0.5, 0.5));
    QLORA_CHECK_GRADIENTS([](const auto& a, const auto& b) { return rmsnorm(a, b, 1e-6); }, x, w);
  }

  TEST_CASE("rmsnorm with a weight that does not match the last extent throws naming both shapes") {
    const auto x = Tensor<float, Dyn, Dyn>::zeros(2, 8);
    const auto w = Tensor<float, Dyn>::zeros(6);
    CHECK_THROWS_WITH_AS(rmsnorm_forward(x, w), "[rmsnorm] weight [6] does not match the last extent of x [2, 8]",
                         Error);
  }
}
