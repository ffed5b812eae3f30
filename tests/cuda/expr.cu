// Expressions, memory and autograd on a GPU, each against the same computation on the CPU.
#include <doctest/doctest.h>

#include "support/check.hpp"

#include <qlora/cuda.hpp>

using namespace qlora;

TEST_SUITE("cuda") {
  TEST_CASE("tensors round-trip between host and GPU") {
    auto h = test::random_tensor<Tensor<float, Dyn, Dim<33>>>(1, -1, 1, 7);
    auto d = h.to(cuda::device());
    CHECK(d.device().is_cuda());
    QLORA_CHECK_CLOSE(d.to(Device::cpu()), h, 0.0, 0.0);
  }

  TEST_CASE("the caching allocator reuses freed blocks and reports peak bytes") {
    Device gpu = cuda::device();
    auto& alloc = gpu.allocator();
    alloc.reset_peak();
    const auto before = alloc.stats();
    { auto t = Tensor<float, Dyn>::zeros_on(gpu, 1 << 20); }
    const auto after_first = alloc.stats();
    { auto t = Tensor<float, Dyn>::zeros_on(gpu, 1 << 20); }
    const auto after_second = alloc.stats();
    CHECK(after_first.current_bytes == before.current_bytes);
    CHECK(after_first.peak_bytes >= before.current_bytes + (4u << 20));
    CHECK(after_second.reserved_bytes == after_first.reserved_bytes);  // the second tensor reused the block
  }

  TEST_CASE("fused expressions on the GPU equal the CPU") {
    using M = Tensor<float, Dyn, Dim<1000>>;
    const auto a = test::random_tensor<M>(2, -2, 2, 37), b = test::random_tensor<M>(3, -2, 2, 37);
    const auto bias = test::random_tensor<Tensor<float, Dim<1000>>>(4, -1, 1);
    const auto cpu = evaluate<float, Dyn, Dim<1000>>(tanh(a) * b + bias - 0.5f);
    const Device gpu = cuda::device();
    const auto da = a.to(gpu), db = b.to(gpu);
    const auto dbias = bias.to(gpu);
    const auto got = evaluate<float, Dyn, Dim<1000>>(tanh(da) * db + dbias - 0.5f, gpu);
    QLORA_CHECK_CLOSE(got, cpu, 1e-6, 1e-6);
  }

  TEST_CASE("row reductions on the GPU equal the CPU (softmax)") {
    using M = Tensor<double, Dyn, Dyn>;
    const auto x = test::random_tensor<M>(5, -30, 30, 19, 3001);
    const auto cpu_e = evaluate<double, Dyn, Dyn>(exp(x - max_rows(x)));
    const auto cpu = evaluate<double, Dyn, Dyn>(cpu_e / sum_rows(cpu_e));
    const Device gpu = cuda::device();
    const auto dx = x.to(gpu);
    const auto e = evaluate<double, Dyn, Dyn>(exp(dx - max_rows(dx)), gpu);
    const auto got = evaluate<double, Dyn, Dyn>(e / sum_rows(e), gpu);
    QLORA_CHECK_CLOSE(got, cpu, 1e-15, 1e-12);
  }

  TEST_CASE("bf16 expressions round once, as on the CPU") {
    using M = Tensor<bf16, Dyn, Dim<256>>;
    const auto a = test::random_tensor<M>(6, -4, 4, 9);
    const auto cpu = evaluate<bf16, Dyn, Dim<256>>(a * a + 1.0f);
    const auto got = evaluate<bf16, Dyn, Dim<256>>(a.to(cuda::device()) * a.to(cuda::device()) + 1.0f, cuda::device());
    QLORA_CHECK_CLOSE(got, cpu, 0.0, 0.0);
  }

  TEST_CASE("an expression mixing CPU and GPU operands is an error") {
    auto a = Tensor<float, Dim<4>>::zeros();
    auto d = Tensor<float, Dim<4>>::zeros_on(cuda::device());
    CHECK_THROWS_AS(d = a + d, Error);
  }

  TEST_CASE("autograd on the GPU gives the CPU's gradients") {
    using M = Tensor<float, Dyn, Dyn>;
    const auto x0 = test::random_tensor<M>(7, -1, 1, 32, 48);
    const auto w0 = test::random_tensor<M>(8, -1, 1, 24, 48);
    auto run = [&](Device device) {
      auto x = Variable<float, Dyn, Dyn>::leaf(x0.to(device));
      auto w = Variable<float, Dyn, Dyn>::leaf(w0.to(device));
      auto loss = mean(square(tanh(matmul<Transpose::no, Transpose::yes>(x, w))));
      backward(loss);
      return std::make_tuple(loss.value().to(Device::cpu()), x.grad().to(Device::cpu()), w.grad().to(Device::cpu()));
    };
    const auto [l_cpu, dx_cpu, dw_cpu] = run(Device::cpu());
    const auto [l_gpu, dx_gpu, dw_gpu] = run(cuda::device());
    QLORA_CHECK_CLOSE(l_gpu, l_cpu, 1e-6, 1e-5);
    QLORA_CHECK_CLOSE(dx_gpu, dx_cpu, 1e-6, 1e-4);
    QLORA_CHECK_CLOSE(dw_gpu, dw_cpu, 1e-6, 1e-4);
  }
}
