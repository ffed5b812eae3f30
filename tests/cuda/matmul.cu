// cuBLAS matmul against the CPU reference: every transpose combination, batching, fp32, fp64 and bf16, and fp32
// operands on a device whose GEMMs run in bf16 on the tensor cores (GpuGemm::bf16).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "support/check.hpp"

#include <qlora/cuda.hpp>

using namespace qlora;

namespace {
template <class T, Transpose TA, Transpose TB>
void compare_layout(index_t m, index_t n, index_t k, double atol, double rtol) {
  using M = Tensor<T, Dyn, Dyn>;
  const auto a = test::random_tensor<M>(11, -1, 1, TA == Transpose::no ? m : k, TA == Transpose::no ? k : m);
  const auto b = test::random_tensor<M>(12, -1, 1, TB == Transpose::no ? k : n, TB == Transpose::no ? n : k);
  const auto cpu = matmul<TA, TB>(a, b);
  const auto gpu = matmul<TA, TB>(a.to(cuda::device()), b.to(cuda::device()));
  QLORA_CHECK_CLOSE(gpu, cpu, atol, rtol);
}
}  // namespace

TEST_SUITE("cuda") {
  TEST_CASE("cuBLAS fp32 matmul equals the CPU for every transpose combination") {
    compare_layout<float, Transpose::no, Transpose::no>(67, 129, 300, 1e-4, 1e-4);
    compare_layout<float, Transpose::no, Transpose::yes>(67, 129, 300, 1e-4, 1e-4);
    compare_layout<float, Transpose::yes, Transpose::no>(67, 129, 300, 1e-4, 1e-4);
    compare_layout<float, Transpose::yes, Transpose::yes>(67, 129, 300, 1e-4, 1e-4);
  }

  TEST_CASE("cuBLAS fp64 matmul equals the CPU") {
    compare_layout<double, Transpose::no, Transpose::yes>(31, 17, 64, 1e-12, 1e-12);
  }

  TEST_CASE("cuBLAS bf16 matmul (fp32 accumulate) equals the CPU within bf16 rounding") {
    compare_layout<bf16, Transpose::no, Transpose::yes>(64, 640, 256, 1e-2, 1e-2);
    compare_layout<bf16, Transpose::no, Transpose::no>(64, 256, 640, 1e-2, 1e-2);
  }

  TEST_CASE("fp32 matmul on a device whose GEMMs run in bf16: within bf16 operand precision, and not fp32") {
    // cuBLAS's CUBLAS_COMPUTE_32F_FAST_16BF converts the operands to bf16 itself (on the first H200 run its result was
    // not the product of round-to-nearest bf16 operands: 0.053 away on values of about 6), so the check is the bound
    // of any conversion with 8 significant bits: |got - exact| <= 2^-6 · Σ_k |a_ik| |b_jk| (+ fp32 accumulation)
    using M = Tensor<float, Dyn, Dyn>;
    const index_t m = 45, n = 131, k = 300;
    const auto a = test::random_tensor<M>(21, -1, 1, m, k), b = test::random_tensor<M>(22, -1, 1, n, k);
    const Device tc = cuda::device().with_gpu_gemm(GpuGemm::bf16);
    CHECK(tc.gpu_gemm() == GpuGemm::bf16);
    CHECK(tc == cuda::device());  // the same memory and stream: tensors move between them without a copy
    const auto exact = matmul<Transpose::no, Transpose::yes>(a, b).to_vector();
    const auto got_t = matmul<Transpose::no, Transpose::yes>(a.to(tc), b.to(tc));
    CHECK(got_t.device().gpu_gemm() == GpuGemm::bf16);  // the product carries the setting on
    const auto got = got_t.to(Device::cpu()).to_vector();
    const auto av = a.to_vector(), bv = b.to_vector();
    double worst_over_bound = 0, worst = 0;
    for (index_t i = 0; i < m; ++i)
      for (index_t j = 0; j < n; ++j) {
        double magnitude = 0;
        for (index_t q = 0; q < k; ++q) magnitude += std::abs(av[i * k + q]) * std::abs(bv[j * k + q]);
        const double error = std::abs(static_cast<double>(got[i * n + j]) - exact[i * n + j]);
        worst = std::max(worst, error);
        worst_over_bound = std::max(worst_over_bound, error / (std::ldexp(magnitude, -6) + 1e-5));
      }
    CAPTURE(worst);
    CHECK(worst_over_bound <= 1.0);
    CHECK(worst > 1e-3);  // not the fp32 product: the operands did lose their low bits
    // the same tensors on the fp32 device: the fp32 product again
    const auto fp32 = matmul<Transpose::no, Transpose::yes>(a.to(cuda::device()), b.to(cuda::device()));
    const auto fp32_cpu = matmul<Transpose::no, Transpose::yes>(a, b);
    QLORA_CHECK_CLOSE(fp32, fp32_cpu, 1e-4, 1e-4);
  }

  TEST_CASE("batched cuBLAS matmul equals the CPU") {
    using T3 = Tensor<float, Dyn, Dyn, Dyn>;
    const auto a = test::random_tensor<T3>(13, -1, 1, 4, 33, 65);
    const auto b = test::random_tensor<T3>(14, -1, 1, 4, 17, 65);
    const auto cpu = matmul<Transpose::no, Transpose::yes>(a, b);
    const auto gpu = matmul<Transpose::no, Transpose::yes>(a.to(cuda::device()), b.to(cuda::device()));
    QLORA_CHECK_CLOSE(gpu, cpu, 1e-4, 1e-4);
  }

  TEST_CASE("matmul gradients on the GPU equal the CPU's") {
    using M = Tensor<double, Dyn, Dyn>;
    const auto a0 = test::random_tensor<M>(15, -1, 1, 9, 20);
    const auto b0 = test::random_tensor<M>(16, -1, 1, 20, 7);
    auto grads = [&](Device device) {
      auto a = Variable<double, Dyn, Dyn>::leaf(a0.to(device));
      auto b = Variable<double, Dyn, Dyn>::leaf(b0.to(device));
      backward(sum(square(matmul(a, b))));
      return std::make_pair(a.grad().to(Device::cpu()), b.grad().to(Device::cpu()));
    };
    const auto [da_cpu, db_cpu] = grads(Device::cpu());
    const auto [da_gpu, db_gpu] = grads(cuda::device());
    QLORA_CHECK_CLOSE(da_gpu, da_cpu, 1e-12, 1e-12);
    QLORA_CHECK_CLOSE(db_gpu, db_cpu, 1e-12, 1e-12);
  }
}
