// The gradient checker itself: it passes correct gradients and catches wrong ones, naming the element.
#include <doctest/doctest.h>

#include "support/check.hpp"

using namespace qlora;

namespace {
// A deliberately wrong op: forward x², backward claims 3x.
template <class T, class... Ds>
Variable<T, Ds...> wrong_square(const Variable<T, Ds...>& x) {
  Tensor<T, Ds...> y(x.shape());
  y = square(x.value());
  return make_result("wrong_square", y, [xv = x.value(), xn = x.node()](const Tensor<T, Ds...>& dy) {
    Tensor<T, Ds...> dx(xv.shape());
    dx = 3.0 * xv * dy;
    accumulate_grad(xn, dx);
  }, x);
}
}  // namespace

TEST_SUITE("autograd") {
  TEST_CASE("gradcheck passes the elementwise ops in fp64") {
    auto x = Variable<double, Dim<3>, Dim<4>>::leaf(test::random_tensor<Tensor<double, Dim<3>, Dim<4>>>(1, -2, 2));
    auto y = Variable<double, Dim<3>, Dim<4>>::leaf(test::random_tensor<Tensor<double, Dim<3>, Dim<4>>>(2, -2, 2));
    QLORA_CHECK_GRADIENTS([](const auto& a, const auto& b) { return tanh(a) * exp(scale(b, 0.3)) - square(a + b); },
                          x, y);
  }

  TEST_CASE("gradcheck catches a wrong backward and names the worst element") {
    auto x = Variable<double, Dim<4>>::leaf(Tensor<double, Dim<4>>::from({1, -2, 3, 0.5}));
    const auto report = gradcheck([](const auto& a) { return wrong_square(a); }, x);
    CHECK_FALSE(report.passed);
    CHECK(report.worst_input == 0);
    CHECK(report.worst_index == 2);  // |3x - 2x| is largest where |x| is
    CHECK(report.worst_numeric == doctest::Approx(report.worst_analytic * 2.0 / 3.0));
    CHECK(report.str().find("FAILED") != std::string::npos);
  }

  TEST_CASE("gradcheck skips inputs that need no gradient") {
    auto x = Variable<double, Dim<2>>::leaf(Tensor<double, Dim<2>>::from({1, 2}));
    auto c = Variable<double, Dim<2>>(Tensor<double, Dim<2>>::from({3, 4}));
    const auto report = gradcheck([](const auto& a, const auto& b) { return a * b; }, x, c);
    CHECK(report.passed);
    CHECK(report.elements_checked == 2);
  }

  TEST_CASE("sum and mean have exact gradients") {
    auto x = Variable<double, Dim<5>, Dim<3>>::leaf(test::random_tensor<Tensor<double, Dim<5>, Dim<3>>>(3, -1, 1));
    QLORA_CHECK_GRADIENTS([](const auto& a) { return mean(square(a)); }, x);
    QLORA_CHECK_GRADIENTS([](const auto& a) { return sum(tanh(a)); }, x);
  }
}
