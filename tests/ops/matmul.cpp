// matmul: every transpose combination and batching against a naive triple loop, gradients in fp64, errors.
#include <doctest/doctest.h>

#include "support/check.hpp"

using namespace qlora;

namespace {
// Naive reference: C[i][j] = Σ_k op(A)[i][k] op(B)[k][j], in double.
template <Transpose TA, Transpose TB, class A, class B>
std::vector<double> naive(const A& a, const B& b, index_t m, index_t n, index_t k) {
  std::vector<double> c(static_cast<std::size_t>(m * n));
  for (index_t i = 0; i < m; ++i)
    for (index_t j = 0; j < n; ++j) {
      double s = 0;
      for (index_t p = 0; p < k; ++p) {
        const double x = convert<double>(TA == Transpose::no ? a(i, p) : a(p, i));
        const double y = convert<double>(TB == Transpose::no ? b(p, j) : b(j, p));
        s += x * y;
      }
      c[static_cast<std::size_t>(i * n + j)] = s;
    }
  return c;
}

template <Transpose TA, Transpose TB>
void check_layout() {
  constexpr index_t m = 5, n = 7, k = 3;
  using A = Tensor<float, Dyn, Dyn>;
  const auto a = test::random_tensor<A>(1, -1, 1, TA == Transpose::no ? m : k, TA == Transpose::no ? k : m);
  const auto b = test::random_tensor<A>(2, -1, 1, TB == Transpose::no ? k : n, TB == Transpose::no ? n : k);
  const auto c = matmul<TA, TB>(a, b);
  REQUIRE(c.size(0) == m);
  REQUIRE(c.size(1) == n);
  const auto want = naive<TA, TB>(a, b, m, n, k);
  for (index_t i = 0; i < m * n; ++i) CHECK(c.data()[i] == doctest::Approx(want[static_cast<std::size_t>(i)]).epsilon(1e-6));
}
}  // namespace

TEST_SUITE("ops") {
  TEST_CASE("matmul A·B matches a naive loop") { check_layout<Transpose::no, Transpose::no>(); }
  TEST_CASE("matmul A·Bᵀ matches a naive loop") { check_layout<Transpose::no, Transpose::yes>(); }
  TEST_CASE("matmul Aᵀ·B matches a naive loop") { check_layout<Transpose::yes, Transpose::no>(); }
  TEST_CASE("matmul Aᵀ·Bᵀ matches a naive loop") { check_layout<Transpose::yes, Transpose::yes>(); }

  TEST_CASE("matmul result types carry the static extents") {
    auto x = Tensor<float, Dyn, Dim<8>>::zeros(3);
    auto w = Tensor<float, Dim<4>, Dim<8>>::zeros();
    auto y = matmul<Transpose::no, Transpose::yes>(x, w);
    static_assert(std::is_same_v<decltype(y), Tensor<float, Dyn, Dim<4>>>);
    CHECK(y.size(0) == 3);
  }

  TEST_CASE("batched matmul multiplies each batch entry") {
    using T3 = Tensor<double, Dim<3>, Dyn, Dyn>;
    const auto a = test::random_tensor<T3>(3, -1, 1, 3, 4, 2);
    const auto b = test::random_tensor<T3>(4, -1, 1, 3, 5, 2);
    const auto c = matmul<Transpose::no, Transpose::yes>(a, b);  // [3, 4, 5]
    for (index_t i = 0; i < 3; ++i) {
      const auto want = naive<Transpose::no, Transpose::yes>(a[i], b[i], 4, 5, 2);
      for (index_t j = 0; j < 20; ++j) CHECK(c[i].data()[j] == doctest::Approx(want[static_cast<std::size_t>(j)]));
    }
  }

  TEST_CASE("bf16 matmul on the CPU accumulates in fp32 and rounds once") {
    using B = Tensor<bf16, Dyn, Dyn>;
    const auto a = test::random_tensor<B>(5, -1, 1, 16, 64);
    const auto b = test::random_tensor<B>(6, -1, 1, 64, 8);
    const auto c = matmul(a, b);
    const auto want = naive<Transpose::no, Transpose::no>(a, b, 16, 8, 64);
    for (index_t i = 0; i < 16 * 8; ++i)
      CHECK(static_cast<float>(c.data()[i]) == bf16(static_cast<float>(want[static_cast<std::size_t>(i)])).operator float());
  }

  TEST_CASE("matmul gradients pass gradcheck for every transpose combination") {
    using M = Tensor<double, Dyn, Dyn>;
    auto a = Variable<double, Dyn, Dyn>::leaf(test::random_tensor<M>(7, -1, 1, 3, 4));
    auto b = Variable<double, Dyn, Dyn>::leaf(test::random_tensor<M>(8, -1, 1, 4, 5));
    auto at = Variable<double, Dyn, Dyn>::leaf(test::random_tensor<M>(9, -1, 1, 4, 3));
    auto bt = Variable<double, Dyn, Dyn>::leaf(test::random_tensor<M>(10, -1, 1, 5, 4));
    QLORA_CHECK_GRADIENTS([](const auto& x, const auto& y) { return matmul(x, y); }, a, b);
    QLORA_CHECK_GRADIENTS([](const auto& x, const auto& y) { return matmul<Transpose::no, Transpose::yes>(x, y); }, a, bt);
    QLORA_CHECK_GRADIENTS([](const auto& x, const auto& y) { return matmul<Transpose::yes, Transpose::no>(x, y); }, at, b);
    QLORA_CHECK_GRADIENTS([](const auto& x, const auto& y) { return matmul<Transpose::yes, Transpose::yes>(x, y); }, at, bt);
  }

  TEST_CASE("batched matmul gradients pass gradcheck") {
    using T3 = Tensor<double, Dim<2>, Dyn, Dyn>;
    auto a = Variable<double, Dim<2>, Dyn, Dyn>::leaf(test::random_tensor<T3>(11, -1, 1, 2, 3, 4));
    auto b = Variable<double, Dim<2>, Dyn, Dyn>::leaf(test::random_tensor<T3>(12, -1, 1, 2, 3, 4));
    QLORA_CHECK_GRADIENTS([](const auto& x, const auto& y) { return matmul<Transpose::yes, Transpose::no>(x, y); }, a, b);
    QLORA_CHECK_GRADIENTS([](const auto& x, const auto& y) { return matmul<Transpose::no, Transpose::yes>(x, y); }, a, b);
  }

  TEST_CASE("matmul with mismatched dynamic inner extents throws naming both shapes") {
    auto a = Tensor<float, Dyn, Dyn>::zeros(2, 3);
    auto b = Tensor<float, Dyn, Dyn>::zeros(4, 5);
    CHECK_THROWS_WITH_AS(matmul(a, b), "[matmul] inner extents differ: op(A) of [2, 3] has 3, op(B) of [4, 5] has 4",
                         Error);
  }
}
