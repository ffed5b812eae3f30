// Gemma RMSNorm: transformers' Gemma3RMSNorm outputs and gradients (golden, fp32 and bf16), the per-head use on
// [tokens, heads, head_dim], the saved rstd, fp64 gradchecks of dx and dw, and the shape errors; Gemma 4's scale by
// the stored weight and its weight-free norm against Gemma4RMSNorm (golden, fp32 and bf16) and gradchecks.
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

  // Gemma 4 stores the scale itself (y = x̂ · w) and has weight-free norms (y = x̂). Gemma4RMSNorm computes
  // x · pow(mean + eps, -0.5) where qlora computes x · (1 / sqrt(mean + eps)): a few ulp apart (stated 1e-6 rel.).
  TEST_CASE("rmsnorm with Gemma 4's stored scale matches Gemma4RMSNorm in fp32 and bf16") {
    const test::GoldenSet golden("gemma4_ops");
    const double eps = golden.params("norm_w").at("eps").get<double>();
    const Rows x = rmsnorm_rows_of(golden.floats("norm_w_x"));  // [6, 640], w around 1
    const Vec w = vec_of(golden.floats("norm_w_w"));
    auto xv = Variable<float, Dyn, Dyn>::leaf(x);
    auto wv = Variable<float, Dyn>::leaf(w);
    const auto y = rmsnorm(xv, wv, eps, NormWeight::w);
    QLORA_CHECK_GOLDEN(y.value(), rmsnorm_rows_of(golden.floats("norm_w_y")), 1e-6, 1e-6, "y");
    backward(y, rmsnorm_rows_of(golden.floats("norm_w_dy")));
    QLORA_CHECK_GOLDEN(xv.grad(), rmsnorm_rows_of(golden.floats("norm_w_dx")), 1e-6, 1e-5, "dx");
    QLORA_CHECK_GOLDEN(wv.grad(), vec_of(golden.floats("norm_w_dw")), 1e-5, 1e-5, "dw");
    // Gemma 3's convention on the same weight scales by 1 + w: a different result, so the choice is not ignored
    const auto y3 = rmsnorm_forward(x, w, eps).y;
    CHECK(std::abs(y3(2, 0) - y.value()(2, 0)) > 0.1f * std::abs(y.value()(2, 0)));

    const auto xb = cast<bf16>(x);
    const auto gw = golden.floats("norm_w_bf16_w");
    auto wb = Tensor<bf16, Dyn>::zeros(gw.numel());
    for (index_t i = 0; i < wb.numel(); ++i) wb.data()[i] = bf16(gw.values[static_cast<std::size_t>(i)]);
    const auto yb = rmsnorm_forward(xb, wb, eps, NormWeight::w).y;
    const Rows want = rmsnorm_rows_of(golden.floats("norm_w_bf16_y"));
    index_t exact = 0;
    for (index_t i = 0; i < yb.numel(); ++i) {
      const float got = static_cast<float>(yb.data()[i]), ref = want.data()[i];
      exact += got == ref;
      CHECK(std::abs(got - ref) <= std::ldexp(std::abs(ref), -7));
    }
    MESSAGE(exact, " of ", yb.numel(), " bf16 outputs bit-identical to Gemma4RMSNorm");
    CHECK(exact >= yb.numel() * 99 / 100);
  }

  TEST_CASE("the weight-free rmsnorm matches Gemma4RMSNorm(with_scale=False) on [tokens, heads, head_dim]") {
    const test::GoldenSet golden("gemma4_ops");
    using Heads = Tensor<float, Dyn, Dim<2>, Dim<256>>;
    const auto gx = golden.floats("norm_plain_x");  // [3, 2, 256]
    auto xv = Variable<float, Dyn, Dim<2>, Dim<256>>::leaf(Heads::from(gx.values, gx.shape[0]));
    const auto y = rmsnorm_unscaled(xv, 1e-6);
    QLORA_CHECK_GOLDEN(y.value(), Heads::from(golden.floats("norm_plain_y").values, 3), 1e-6, 1e-6, "y");
    backward(y, Heads::from(golden.floats("norm_plain_dy").values, 3));
    QLORA_CHECK_GOLDEN(xv.grad(), Heads::from(golden.floats("norm_plain_dx").values, 3), 1e-6, 1e-5, "dx");
    Tensor<bf16, Dyn, Dim<2>, Dim<256>> xb(xv.value().shape());
    for (index_t i = 0; i < xb.numel(); ++i) xb.data()[i] = bf16(xv.value().data()[i]);
    const auto yb = rmsnorm_unscaled_forward(xb, 1e-6).y;
    const auto want = golden.floats("norm_plain_bf16_y");
    index_t exact = 0;
    for (index_t i = 0; i < yb.numel(); ++i) {
      const float got = static_cast<float>(yb.data()[i]), ref = want.values[static_cast<std::size_t>(i)];
      exact += got == ref;
      CHECK(std::abs(got - ref) <= std::ldexp(std::abs(ref), -7));
    }
    CHECK(exact >= yb.numel() * 99 / 100);
  }

  TEST_CASE("Gemma 4's scaled and weight-free rmsnorm gradients pass gradcheck in fp64") {
    using X = Tensor<double, Dyn, Dyn>;
    auto x = Variable<double, Dyn, Dyn>::leaf(test::random_tensor<X>(11, -2, 2, 5, 37));
    auto w = Variable<double, Dyn>::leaf(test::random_tensor<Tensor<double, Dyn>>(12, 0.5, 1.5, 37));
    QLORA_CHECK_GRADIENTS([](const auto& a, const auto& b) { return rmsnorm(a, b, 1e-6, NormWeight::w); }, x, w);
    QLORA_CHECK_GRADIENTS([](const auto& a) { return rmsnorm_unscaled(a, 1e-6); }, x);
    // y = x̂ exactly: unit RMS per row, and Gemma 3's rmsnorm with w = 0 gives the same numbers
    const auto y = rmsnorm_unscaled_forward(x.value(), 0.0).y;
    const auto y3 = rmsnorm_forward(x.value(), Tensor<double, Dyn>::zeros(37), 0.0).y;
    for (index_t r = 0; r < 5; ++r) {
      double ss = 0;
      for (index_t c = 0; c < 37; ++c) {
        ss += y(r, c) * y(r, c);
        CHECK(y(r, c) == y3(r, c));
      }
      CHECK(ss / 37 == doctest::Approx(1.0).epsilon(1e-12));
    }
  }
}
