// Fused GeGLU kernels against the CPU reference: forward and both gradients in fp32, fp64 and bf16 at the Gemma 3
// 270M MLP width (intermediate 2048).
#include <doctest/doctest.h>

#include "support/check.hpp"

#include <qlora/cuda.hpp>
#include <qlora/ops/activation.hpp>

using namespace qlora;

namespace {
// CUDA's tanhf and glibc's may differ by an ulp: atol/rtol say how far the results may be apart.
template <class T>
void compare_with_cpu(double atol, double rtol) {
  const Device gpu = cuda::device();
  using M = Tensor<T, Dyn, Dim<2048>>;
  const auto gate = test::random_tensor<M>(1, -8, 8, 67), up = test::random_tensor<M>(2, -2, 2, 67);
  const auto dy = test::random_tensor<M>(3, -1, 1, 67);
  QLORA_CHECK_CLOSE(geglu_forward(gate.to(gpu), up.to(gpu)), geglu_forward(gate, up), atol, rtol);
  const auto cpu = geglu_backward(gate, up, dy);
  const auto got = geglu_backward(gate.to(gpu), up.to(gpu), dy.to(gpu));
  QLORA_CHECK_CLOSE(got.d_gate, cpu.d_gate, atol, rtol);
  QLORA_CHECK_CLOSE(got.d_up, cpu.d_up, atol, rtol);
  const auto only_up = geglu_backward(gate.to(gpu), up.to(gpu), dy.to(gpu), false, true);
  CHECK_FALSE(only_up.d_gate.defined());
  QLORA_CHECK_CLOSE(only_up.d_up, cpu.d_up, atol, rtol);
}
}  // namespace

TEST_SUITE("cuda") {
  TEST_CASE("geglu kernels equal the CPU reference in fp32 and fp64") {
    compare_with_cpu<float>(1e-6, 1e-6);
    compare_with_cpu<double>(1e-14, 1e-13);
  }

  TEST_CASE("geglu kernels on bf16 equal the CPU within one bf16 rounding") { compare_with_cpu<bf16>(1e-6, 8e-3); }

  TEST_CASE("geglu through autograd on the GPU gives the CPU's gradients") {
    using M = Tensor<float, Dyn, Dyn>;
    const auto g0 = test::random_tensor<M>(4, -4, 4, 9, 33), u0 = test::random_tensor<M>(5, -1, 1, 9, 33);
    auto run = [&](Device device) {
      auto g = Variable<float, Dyn, Dyn>::leaf(g0.to(device));
      auto u = Variable<float, Dyn, Dyn>::leaf(u0.to(device));
      backward(geglu(g, u), u0.to(device));
      return std::make_pair(g.grad().to(Device::cpu()), u.grad().to(Device::cpu()));
    };
    const auto [dg_cpu, du_cpu] = run(Device::cpu());
    const auto [dg_gpu, du_gpu] = run(cuda::device());
    QLORA_CHECK_CLOSE(dg_gpu, dg_cpu, 1e-6, 1e-6);
    QLORA_CHECK_CLOSE(du_gpu, du_cpu, 1e-6, 1e-6);
  }
}
