// Global-norm clipping: the pre-clip norm over all parameters, scaling only when above max_norm.
#include <doctest/doctest.h>

#include <cmath>

#include "support/check.hpp"

#include <qlora/optim/clip.hpp>

using namespace qlora;

TEST_SUITE("optim") {
  TEST_CASE("clip_grad_norm returns the global norm and scales every gradient to max_norm") {
    auto a = Variable<float, Dim<2>>::leaf(Tensor<float, Dim<2>>::from({3, 0}));
    auto b = Variable<float, Dim<1>>::leaf(Tensor<float, Dim<1>>::from({2}));
    backward(sum(scale(a * a.detach(), 0.5)));  // d/da (0.5 a·a_const) = 0.5 a -> (1.5, 0)
    backward(sum(scale(b, 2.0)));                        // (2)
    const ParameterList params{Parameter("a", a), Parameter("b", b)};
    const double norm = clip_grad_norm(params, 1.0);
    CHECK(norm == doctest::Approx(2.5));  // sqrt(1.5² + 2²)
    const double scale_factor = 1.0 / (2.5 + 1e-6);
    CHECK(a.grad()(0) == doctest::Approx(1.5 * scale_factor));
    CHECK(b.grad()(0) == doctest::Approx(2.0 * scale_factor));
  }

  TEST_CASE("gradients below max_norm are left alone and a NaN norm is reported, not applied") {
    auto a = Variable<float, Dim<2>>::leaf(Tensor<float, Dim<2>>::from({0.1f, 0.1f}));
    backward(sum(a));
    const ParameterList params{Parameter("a", a)};
    CHECK(clip_grad_norm(params, 10.0) == doctest::Approx(std::sqrt(2.0)));
    CHECK(a.grad()(0) == 1.0f);
    a.grad()(1) = std::nanf("");
    CHECK(std::isnan(clip_grad_norm(params, 1.0)));
    CHECK(a.grad()(0) == 1.0f);
  }
}
