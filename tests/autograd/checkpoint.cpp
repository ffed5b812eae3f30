// checkpoint(fn, inputs...): same gradients as the plain graph, less memory held between forward and backward.
#include <doctest/doctest.h>

#include "support/check.hpp"

using namespace qlora;

namespace {
using Act = Tensor<float, Dyn, Dim<256>>;     // activations: [tokens, 256]
using Weight = Tensor<float, Dim<256>, Dim<256>>;

struct TwoLayers {
  Variable<float, Dim<256>, Dim<256>> w1, w2;
  Variable<float, Dyn, Dim<256>> operator()(const Variable<float, Dyn, Dim<256>>& x) const {
    return tanh(matmul<Transpose::no, Transpose::yes>(tanh(matmul<Transpose::no, Transpose::yes>(x, w1)), w2));
  }
};
}  // namespace

TEST_SUITE("autograd") {
  TEST_CASE("checkpoint gives the same gradients for inputs and captured parameters") {
    const auto x0 = test::random_tensor<Act>(1, -1, 1, 64);
    const auto w1 = test::random_tensor<Weight>(2, -0.1, 0.1);
    const auto w2 = test::random_tensor<Weight>(3, -0.1, 0.1);

    auto run = [&](bool use_checkpoint) {
      TwoLayers f{Variable<float, Dim<256>, Dim<256>>::leaf(w1.clone()),
                  Variable<float, Dim<256>, Dim<256>>::leaf(w2.clone())};
      auto x = Variable<float, Dyn, Dim<256>>::leaf(x0.clone());
      auto y = use_checkpoint ? checkpoint(f, x) : f(x);
      backward(sum(square(y)));
      return std::make_tuple(x.grad(), f.w1.grad(), f.w2.grad());
    };
    const auto [dx_plain, dw1_plain, dw2_plain] = run(false);
    const auto [dx_ckpt, dw1_ckpt, dw2_ckpt] = run(true);
    QLORA_CHECK_CLOSE(dx_ckpt, dx_plain, 0.0, 0.0);  // the same arithmetic: bit-identical
    QLORA_CHECK_CLOSE(dw1_ckpt, dw1_plain, 0.0, 0.0);
    QLORA_CHECK_CLOSE(dw2_ckpt, dw2_plain, 0.0, 0.0);
  }

  TEST_CASE("checkpoint lowers the memory held between forward and backward") {
    const auto x0 = test::random_tensor<Act>(1, -1, 1, 2048);
    TwoLayers f{Variable<float, Dim<256>, Dim<256>>::leaf(test::random_tensor<Weight>(2, -0.1, 0.1)),
                Variable<float, Dim<256>, Dim<256>>::leaf(test::random_tensor<Weight>(3, -0.1, 0.1))};
    auto held_after_forward = [&](bool use_checkpoint) {
      auto x = Variable<float, Dyn, Dim<256>>::leaf(x0.clone());
      const std::size_t before = cpu_allocator().stats().current_bytes;
      auto y = use_checkpoint ? checkpoint(f, x) : f(x);
      const std::size_t held = cpu_allocator().stats().current_bytes - before;
      backward(sum(y));
      return held;
    };
    const std::size_t plain = held_after_forward(false);
    const std::size_t ckpt = held_after_forward(true);
    MESSAGE("held after forward: plain " << plain << " bytes, checkpointed " << ckpt << " bytes");
    // plain keeps the inner tanh output (saved by tanh and by the second matmul) and the output; checkpoint keeps
    // only the output: one [2048, 256] fp32 activation (2 MiB) less
    const std::size_t activation = 2048 * 256 * sizeof(float);
    CHECK(ckpt == activation);
    CHECK(plain == 2 * activation);
  }

  TEST_CASE("checkpoint passes gradcheck in fp64") {
    auto w = Variable<double, Dim<3>, Dim<3>>::leaf(test::random_tensor<Tensor<double, Dim<3>, Dim<3>>>(5, -1, 1));
    auto x = Variable<double, Dim<2>, Dim<3>>::leaf(test::random_tensor<Tensor<double, Dim<2>, Dim<3>>>(6, -1, 1));
    auto block = [w](const Variable<double, Dim<2>, Dim<3>>& in) { return tanh(matmul(in, w)); };
    QLORA_CHECK_GRADIENTS([&](const auto& in, const auto&) { return checkpoint(block, in); }, x, w);
  }
}
