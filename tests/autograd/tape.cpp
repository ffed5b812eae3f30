// The tape: recording, backward order, accumulation across calls, no_grad, and errors.
#include <doctest/doctest.h>

#include "support/check.hpp"

using namespace qlora;

TEST_SUITE("autograd") {
  TEST_CASE("backward of a sum of products gives the textbook gradients") {
    auto a = Variable<double, Dim<3>>::leaf(Tensor<double, Dim<3>>::from({1, 2, 3}));
    auto b = Variable<double, Dim<3>>::leaf(Tensor<double, Dim<3>>::from({4, 5, 6}));
    auto loss = sum(a * b + a);
    CHECK(loss.value().item() == 38.0);
    backward(loss);
    CHECK(a.grad()(0) == 5.0);  // b + 1
    CHECK(b.grad()(2) == 3.0);  // a
  }

  TEST_CASE("a variable used twice receives the sum of both gradients") {
    auto x = Variable<double, Dim<2>>::leaf(Tensor<double, Dim<2>>::from({3, -1}));
    auto loss = sum(x * x);  // d/dx = 2x, through both operands of mul
    backward(loss);
    CHECK(x.grad()(0) == 6.0);
    CHECK(x.grad()(1) == -2.0);
  }

  TEST_CASE("gradients accumulate across backward calls until zero_grad") {
    auto x = Variable<double, Dim<2>>::leaf(Tensor<double, Dim<2>>::from({1, 2}));
    backward(sum(scale(x, 3.0)));
    backward(sum(scale(x, 3.0)));
    CHECK(x.grad()(0) == 6.0);
    x.zero_grad();
    CHECK_FALSE(x.has_grad());
    backward(sum(x));
    CHECK(x.grad()(1) == 1.0);
  }

  TEST_CASE("no_grad records nothing and restores the previous mode") {
    auto x = Variable<double, Dim<2>>::leaf(Tensor<double, Dim<2>>::from({1, 2}));
    {
      NoGrad guard;
      auto y = x * x;
      CHECK_FALSE(y.requires_grad());
      CHECK_FALSE(grad_enabled());
    }
    CHECK(grad_enabled());
    CHECK((x * x).requires_grad());
  }

  TEST_CASE("constants and detached values receive no gradient") {
    auto x = Variable<double, Dim<2>>::leaf(Tensor<double, Dim<2>>::from({1, 2}));
    auto c = Variable<double, Dim<2>>(Tensor<double, Dim<2>>::from({5, 7}));
    backward(sum(x * c + x.detach() * x.detach()));
    CHECK(x.grad()(1) == 7.0);
    CHECK_FALSE(c.requires_grad());
    CHECK_THROWS_AS(c.grad(), Error);
  }

  TEST_CASE("backward through the same graph twice is an error that names the op") {
    auto x = Variable<double, Dim<2>>::leaf(Tensor<double, Dim<2>>::from({1, 2}));
    auto y = sum(tanh(x));
    backward(y);
    CHECK_THROWS_WITH_AS(backward(y), "[autograd] backward through 'sum' a second time: its saved tensors were freed",
                         Error);
  }

  TEST_CASE("backward of a value that needs no gradient is an error") {
    auto c = Variable<double, Dim<2>>(Tensor<double, Dim<2>>::from({1, 2}));
    CHECK_THROWS_AS(backward(sum(c)), Error);
  }

  TEST_CASE("a long chain runs without recursion limits") {
    auto x = Variable<double, Dim<1>>::leaf(Tensor<double, Dim<1>>::from({1.0}));
    auto y = x;
    for (int i = 0; i < 20000; ++i) y = scale(y, 1.0);
    backward(sum(y));
    CHECK(x.grad()(0) == 1.0);
  }

  TEST_CASE("interior nodes free their saved tensors after backward") {
    auto x = Variable<float, Dyn>::leaf(Tensor<float, Dyn>::full(1.0f, 1 << 16));
    const std::size_t before = cpu_allocator().stats().current_bytes;
    std::size_t during = 0;
    {
      auto loss = sum(tanh(tanh(x)));
      during = cpu_allocator().stats().current_bytes;
      backward(loss);
    }
    CHECK(during > before);
    // only x's gradient (256 KiB) stays alive
    CHECK(cpu_allocator().stats().current_bytes == before + (std::size_t{1} << 18));
  }
}
