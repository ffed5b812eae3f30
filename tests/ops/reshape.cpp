// reshape of a Variable: a view in forward, the gradient reshaped back in backward.
#include <doctest/doctest.h>

#include "support/check.hpp"

#include <qlora/ops/reshape.hpp>

using namespace qlora;

TEST_SUITE("ops") {
  TEST_CASE("reshape is a view and passes gradcheck") {
    auto x = Variable<double, Dyn, Dim<6>>::leaf(test::random_tensor<Tensor<double, Dyn, Dim<6>>>(1, -1, 1, 3));
    auto y = reshape<Dyn, Dim<2>, Dim<3>>(x, 3);
    CHECK(y.value().data() == x.value().data());
    CHECK(y.size(1) == 2);
    QLORA_CHECK_GRADIENTS([](const auto& a) { return tanh(reshape<Dim<9>, Dim<2>>(a)); }, x);
    CHECK_THROWS_AS((reshape<Dyn, Dim<4>>(x, 5)), Error);
  }
}
