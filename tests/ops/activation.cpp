// GeGLU: transformers' gelu_pytorch_tanh(gate) · up forward and gradients (golden, fp32 and bf16, including 0, ±1e-4,
// ±8, ±20), the formula at known points, fp64 gradchecks of both inputs and the shape error.
#include <doctest/doctest.h>

#include <cmath>

#include "support/golden.hpp"

#include <qlora/ops/activation.hpp>

using namespace qlora;

namespace {
using M = Tensor<float, Dyn, Dim<256>>;  // [rows, intermediate]
M m_of(const test::GoldenArray<float>& a) { return M::from(a.values, a.shape[0]); }
}  // namespace

TEST_SUITE("ops") {
  TEST_CASE("gelu_tanh is 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))") {
    for (double x : {-6.0, -1.0, -0.1, 0.0, 0.3, 1.0, 2.5, 10.0}) {
      const double want = 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
      CHECK(gelu_tanh(x) == doctest::Approx(want).epsilon(1e-15));
      const double h = 1e-6;  // the derivative against a central difference
      CHECK(gelu_tanh_derivative(x) == doctest::Approx((gelu_tanh(x + h) - gelu_tanh(x - h)) / (2 * h)).epsilon(1e-8));
    }
  }

  TEST_CASE("geglu forward and gradients match transformers' gelu_pytorch_tanh(gate) * up in fp32") {
    const test::GoldenSet golden("gemma3_ops");
    auto gate = Variable<float, Dyn, Dim<256>>::leaf(m_of(golden.floats("geglu_gate")));  // [8, 256], ×3 spread
    auto up = Variable<float, Dyn, Dim<256>>::leaf(m_of(golden.floats("geglu_up")));
    const auto out = geglu(gate, up);
    QLORA_CHECK_GOLDEN(out.value(), m_of(golden.floats("geglu_out")), 1e-6, 1e-6, "out");
    backward(out, m_of(golden.floats("geglu_dy")));
    QLORA_CHECK_GOLDEN(gate.grad(), m_of(golden.floats("geglu_dgate")), 1e-6, 1e-6, "d_gate");
    QLORA_CHECK_GOLDEN(up.grad(), m_of(golden.floats("geglu_dup")), 1e-6, 1e-6, "d_up");
  }

  // Within 1 bf16 ulp + 1e-6: near gate ≈ −5, 1 + tanh(u) cancels, and one fp32 ulp of tanh (glibc vs torch's SLEEF)
  // decides between a gelu of 0 and of ~1e-7, which bf16 then keeps.
  TEST_CASE("geglu on bf16 rounds the activation and the product like transformers") {
    const test::GoldenSet golden("gemma3_ops");
    const M gate = m_of(golden.floats("geglu_gate")), up = m_of(golden.floats("geglu_up"));
    auto gb = Tensor<bf16, Dyn, Dim<256>>::zeros(gate.size(0)), ub = gb.clone();
    for (index_t i = 0; i < gate.numel(); ++i) {
      gb.data()[i] = bf16(gate.data()[i]);
      ub.data()[i] = bf16(up.data()[i]);
    }
    const auto out = geglu_forward(gb, ub);
    const M want = m_of(golden.floats("geglu_bf16_out"));
    index_t exact = 0;
    for (index_t i = 0; i < out.numel(); ++i) {
      const float got = static_cast<float>(out.data()[i]), ref = want.data()[i];
      exact += got == ref;
      CHECK_MESSAGE(std::abs(got - ref) <= std::ldexp(std::abs(ref), -7) + 1e-6f, "gate ", gate.data()[i], ": ", got,
                    " vs ", ref);
    }
    MESSAGE(exact, " of ", out.numel(), " bf16 outputs bit-identical to transformers");
    CHECK(exact >= out.numel() * 99 / 100);
  }

  TEST_CASE("geglu gradients for gate and up pass gradcheck in fp64") {
    using X = Tensor<double, Dyn, Dyn>;
    auto gate = Variable<double, Dyn, Dyn>::leaf(test::random_tensor<X>(1, -5, 5, 4, 9));
    auto up = Variable<double, Dyn, Dyn>::leaf(test::random_tensor<X>(2, -2, 2, 4, 9));
    QLORA_CHECK_GRADIENTS([](const auto& g, const auto& u) { return geglu(g, u); }, gate, up);
    const auto frozen_up = Variable<double, Dyn, Dyn>(up.value());
    QLORA_CHECK_GRADIENTS([&](const auto& g) { return geglu(g, frozen_up); }, gate);
  }

  TEST_CASE("geglu with gate and up of different shapes throws") {
    CHECK_THROWS_WITH_AS(geglu_forward(Tensor<float, Dyn, Dyn>::zeros(2, 3), Tensor<float, Dyn, Dyn>::zeros(2, 4)),
                         "[geglu] gate and up: shapes differ: [2, 3] vs [2, 4]", Error);
  }
}
