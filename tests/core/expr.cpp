// Expression templates: lazy, fused, broadcasting, row reductions, and clear errors for shapes that do not fit.
#include <doctest/doctest.h>

#include <cmath>

#include <qlora/core/expr.hpp>

using namespace qlora;

TEST_SUITE("core") {
  TEST_CASE("y = a * b + c is evaluated into y in one pass") {
    auto a = Tensor<float, Dim<2>, Dim<3>>::from({1, 2, 3, 4, 5, 6});
    auto b = Tensor<float, Dim<2>, Dim<3>>::full(2.0f);
    auto c = Tensor<float, Dim<2>, Dim<3>>::full(0.5f);
    auto y = Tensor<float, Dim<2>, Dim<3>>::zeros();
    y = a * b + c;
    CHECK(y(0, 0) == 2.5f);
    CHECK(y(1, 2) == 12.5f);
  }

  TEST_CASE("building an expression allocates nothing, evaluating allocates only the destination") {
    auto a = Tensor<float, Dyn, Dim<64>>::full(1.0f, 256);
    auto y = Tensor<float, Dyn, Dim<64>>::zeros(256);
    const auto before = cpu_allocator().stats().allocations;
    auto e = a * a + a * 2.0f - 1.0f;
    y = e;
    CHECK(cpu_allocator().stats().allocations == before);
    CHECK(y(255, 63) == 2.0f);
  }

  TEST_CASE("a vector broadcasts across rows and a column across columns") {
    auto x = Tensor<float, Dim<2>, Dim<3>>::from({1, 2, 3, 4, 5, 6});
    auto bias = Tensor<float, Dim<3>>::from({10, 20, 30});
    auto col = Tensor<float, Dim<2>, Dim<1>>::from({100, 200});
    auto y = evaluate<float, Dim<2>, Dim<3>>(x + bias + col);
    CHECK(y(0, 0) == 111.0f);
    CHECK(y(1, 2) == 236.0f);
  }

  TEST_CASE("leading axes broadcast as in NumPy") {
    auto x = Tensor<float, Dim<2>, Dim<2>, Dim<2>>::from({1, 2, 3, 4, 5, 6, 7, 8});
    auto per_batch = Tensor<float, Dim<2>, Dim<1>, Dim<2>>::from({100, 200, 300, 400});
    auto y = evaluate<float, Dim<2>, Dim<2>, Dim<2>>(x + per_batch);
    CHECK(y(0, 1, 0) == 103.0f);
    CHECK(y(1, 1, 1) == 408.0f);
  }

  TEST_CASE("scalars take the operand's compute type") {
    auto x = Tensor<bf16, Dim<2>>::from({bf16(1.0f), bf16(3.0f)});
    auto y = evaluate<bf16, Dim<2>>(x * 0.5 + 1);
    CHECK(static_cast<float>(y(1)) == 2.5f);
  }

  TEST_CASE("row reductions give sum, mean and max of the last axis") {
    auto x = Tensor<float, Dim<2>, Dim<4>>::from({1, 2, 3, 4, -1, -5, 2, 0});
    auto s = evaluate<float, Dim<2>>(sum_rows(x));
    auto m = evaluate<float, Dim<2>, Dim<1>>(mean_rows(x));
    auto mx = evaluate<float, Dim<2>>(max_rows(x));
    CHECK(s(0) == 10.0f);
    CHECK(s(1) == -4.0f);
    CHECK(m(0, 0) == 2.5f);
    CHECK(mx(1) == 2.0f);
  }

  TEST_CASE("a softmax is one expression: reductions are reused along the row") {
    auto x = Tensor<double, Dim<2>, Dim<3>>::from({1, 2, 3, 1000, 1000, 1000});
    auto e = evaluate<double, Dim<2>, Dim<3>>(exp(x - max_rows(x)));
    auto p = evaluate<double, Dim<2>, Dim<3>>(e / sum_rows(e));
    const double z = std::exp(-2.0) + std::exp(-1.0) + 1.0;
    CHECK(p(0, 2) == doctest::Approx(1.0 / z).epsilon(1e-15));
    CHECK(p(1, 0) == doctest::Approx(1.0 / 3.0).epsilon(1e-15));
  }

  TEST_CASE("an expression may read its own destination elementwise") {
    auto x = Tensor<float, Dim<3>>::from({1, 2, 3});
    x = x * x + 1.0f;
    CHECK(x(2) == 10.0f);
  }

  TEST_CASE("unary functions match the standard library") {
    auto x = Tensor<double, Dim<5>>::from({-2, -0.5, 0.25, 1, 3});
    auto t = evaluate<double, Dim<5>>(tanh(x) + sigmoid(x) + relu(x) + abs(x) + square(x));
    for (index_t i = 0; i < 5; ++i) {
      const double v = x(i);
      const double want = std::tanh(v) + 1 / (1 + std::exp(-v)) + std::max(v, 0.0) + std::abs(v) + v * v;
      CHECK(t(i) == doctest::Approx(want).epsilon(1e-15));
    }
    auto r = evaluate<double, Dim<5>>(rsqrt(x * x) * sqrt(x * x) + log(exp(x)) + maximum(x, 0.0) - minimum(x, 0.0));
    for (index_t i = 0; i < 5; ++i) CHECK(r(i) == doctest::Approx(1 + x(i) + std::abs(x(i))).epsilon(1e-12));
  }

  TEST_CASE("shapes that do not broadcast throw naming both shapes") {
    auto a = Tensor<float, Dim<2>, Dim<3>>::zeros();
    auto b = Tensor<float, Dim<2>, Dim<4>>::zeros();
    auto y = Tensor<float, Dim<2>, Dim<3>>::zeros();
    CHECK_THROWS_WITH_AS(y = a + b, "[expr] shapes do not broadcast: [2, 3] and [2, 4]", Error);
    auto small = Tensor<float, Dim<3>>::zeros();
    CHECK_THROWS_WITH_AS(small = a * 2.0f, "[expr] expression of shape [2, 3] assigned to a tensor of shape [3]", Error);
  }

  TEST_CASE("a row reduction must keep the destination's rows") {
    auto one_row = Tensor<float, Dim<1>, Dim<3>>::zeros();  // NumPy would broadcast its sum over 4 rows
    auto y = Tensor<float, Dim<4>, Dim<3>>::zeros();
    CHECK_THROWS_WITH_AS(y = y + sum_rows(one_row),
                         "[expr] a row reduction of [1, 3] must keep the leading extents of the destination [4, 3]",
                         Error);
  }
}
