// AdamW and gradient clipping on the GPU give the CPU's parameters after a few steps.
#include <doctest/doctest.h>

#include "support/check.hpp"

#include <qlora/cuda.hpp>
#include <qlora/optim/adamw.hpp>
#include <qlora/optim/clip.hpp>

using namespace qlora;

TEST_SUITE("cuda") {
  TEST_CASE("AdamW with clipping on the GPU equals the CPU") {
    using M = Tensor<float, Dim<64>, Dim<48>>;
    const auto w0 = test::random_tensor<M>(1, -1, 1);
    const auto x0 = test::random_tensor<Tensor<float, Dyn, Dim<48>>>(2, -1, 1, 16);
    auto train = [&](Device device) {
      auto w = Variable<float, Dim<64>, Dim<48>>::leaf(w0.to(device));
      const auto x = Variable<float, Dyn, Dim<48>>(x0.to(device));
      AdamW opt({Parameter("w", w)}, AdamWConfig{0.9, 0.999, 1e-8, 0.01});
      for (int step = 0; step < 4; ++step) {
        opt.zero_grad();
        backward(mean(square(tanh(matmul<Transpose::no, Transpose::yes>(x, w)))));
        clip_grad_norm(opt.parameters(), 0.01);
        opt.step(1e-2);
      }
      return w.value().to(Device::cpu());
    };
    QLORA_CHECK_CLOSE(train(cuda::device()), train(Device::cpu()), 1e-5, 1e-4);
  }
}
