// AdamW8bit on the GPU equals the CPU: the same state bytes, absmax and weights after several steps (8-bit and
// 32-bit parameters), plain and paged (states in managed memory).
#include <doctest/doctest.h>

#include "support/check.hpp"

#include <qlora/cuda.hpp>
#include <qlora/optim/adamw8bit.hpp>

using namespace qlora;

TEST_SUITE("cuda") {
  TEST_CASE("AdamW8bit on the GPU gives the CPU's states and weights, plain and paged") {
    const auto w_big = test::random_tensor<Tensor<float, Dyn>>(1, -1, 1, 200000);
    const auto w_small = test::random_tensor<Tensor<float, Dyn>>(2, -1, 1, 1000);
    for (bool paged : {false, true}) {
      auto run = [&](Device device) {
        auto big = Variable<float, Dyn>::leaf(w_big.to(device));
        auto small = Variable<float, Dyn>::leaf(w_small.to(device));
        AdamW8bitConfig config;
        config.paged = paged;
        AdamW8bit opt({Parameter("big", big), Parameter("small", small)}, config);
        for (int step = 0; step < 3; ++step) {
          opt.zero_grad();
          backward(sum(square(big)));
          backward(sum(tanh(small)));
          opt.step(1e-3 * (step + 1));
        }
        return std::make_tuple(big.value().to(Device::cpu()), small.value().to(Device::cpu()),
                               opt.states()[0].state1.to(Device::cpu()), opt.states()[0].state2.to(Device::cpu()),
                               opt.states()[0].absmax2.to(Device::cpu()));
      };
      const auto [b_cpu, s_cpu, q1_cpu, q2_cpu, a2_cpu] = run(Device::cpu());
      const auto [b_gpu, s_gpu, q1_gpu, q2_gpu, a2_gpu] = run(cuda::device());
      QLORA_CHECK_CLOSE(q1_gpu, q1_cpu, 0.0, 0.0);
      QLORA_CHECK_CLOSE(q2_gpu, q2_cpu, 0.0, 0.0);
      QLORA_CHECK_CLOSE(a2_gpu, a2_cpu, 0.0, 0.0);
      QLORA_CHECK_CLOSE(b_gpu, b_cpu, 0.0, 0.0);
      QLORA_CHECK_CLOSE(s_gpu, s_cpu, 1e-7, 1e-6);  // tanh's gradient: CUDA tanhf vs glibc
    }
  }
}
