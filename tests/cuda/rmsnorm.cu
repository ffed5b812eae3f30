// Gemma RMSNorm kernels against the CPU reference: forward (y and the saved rstd) and backward (dx, dw) in fp32,
// fp64 and bf16, on [tokens, hidden] rows and per head on [tokens, heads, head_dim]; Gemma 4's scale by w and its
// weight-free norm.
#include <doctest/doctest.h>

#include "support/check.hpp"

#include <qlora/cuda.hpp>
#include <qlora/ops/rmsnorm.hpp>

using namespace qlora;

namespace {
// Runs forward and backward (dy given) on the CPU and the GPU and compares y, rstd, dx and dw.
template <class T, class... Ds, class Dc>
void compare_with_cpu(const Tensor<T, Ds...>& x, const Tensor<T, Dc>& w, const Tensor<T, Ds...>& dy, double atol,
                      double rtol, NormWeight kind = NormWeight::one_plus_w) {
  const Device gpu = cuda::device();
  const auto cpu_fwd = rmsnorm_forward(x, w, 1e-6, kind);
  const auto gpu_fwd = rmsnorm_forward(x.to(gpu), w.to(gpu), 1e-6, kind);
  QLORA_CHECK_CLOSE(gpu_fwd.y, cpu_fwd.y, atol, rtol);
  QLORA_CHECK_CLOSE(gpu_fwd.rstd, cpu_fwd.rstd, 0.0, 1e-6);
  const auto cpu_bwd = rmsnorm_backward(dy, x, w, cpu_fwd.rstd, true, true, kind);
  const auto gpu_bwd = rmsnorm_backward(dy.to(gpu), x.to(gpu), w.to(gpu), gpu_fwd.rstd, true, true, kind);
  QLORA_CHECK_CLOSE(gpu_bwd.dx, cpu_bwd.dx, atol, rtol);
  QLORA_CHECK_CLOSE(gpu_bwd.dw, cpu_bwd.dw, 10 * atol, rtol);  // a sum over rows: other order, more rounding
}
}  // namespace

TEST_SUITE("cuda") {
  TEST_CASE("rmsnorm kernels equal the CPU reference in fp32 (hidden 640 and 2560)") {
    using X = Tensor<float, Dyn, Dyn>;
    for (index_t cols : {640, 2560, 37}) {
      CAPTURE(cols);
      const auto x = test::random_tensor<X>(1, -3, 3, 77, cols);
      const auto w = test::random_tensor<Tensor<float, Dyn>>(2, -0.5, 0.5, cols);
      const auto dy = test::random_tensor<X>(3, -1, 1, 77, cols);
      compare_with_cpu(x, w, dy, 1e-5, 1e-5);
    }
  }

  TEST_CASE("rmsnorm kernels equal the CPU reference in fp64") {
    using X = Tensor<double, Dyn, Dyn>;
    const auto x = test::random_tensor<X>(4, -3, 3, 19, 640);
    const auto w = test::random_tensor<Tensor<double, Dyn>>(5, -0.5, 0.5, 640);
    compare_with_cpu(x, w, test::random_tensor<X>(6, -1, 1, 19, 640), 1e-12, 1e-12);
  }

  TEST_CASE("rmsnorm kernels on bf16 equal the CPU within one bf16 rounding") {
    using X = Tensor<bf16, Dyn, Dyn>;
    const auto x = test::random_tensor<X>(7, -3, 3, 64, 640);
    const auto w = test::random_tensor<Tensor<bf16, Dyn>>(8, -0.5, 0.5, 640);
    compare_with_cpu(x, w, test::random_tensor<X>(9, -1, 1, 64, 640), 1e-2, 8e-3);
  }

  TEST_CASE("per-head rmsnorm on the GPU gives the CPU's values and gradients") {
    using Q = Tensor<float, Dyn, Dim<4>, Dim<256>>;
    const auto x0 = test::random_tensor<Q>(10, -2, 2, 50);
    const auto w0 = test::random_tensor<Tensor<float, Dim<256>>>(11, -0.5, 0.5);
    auto run = [&](Device device) {
      auto x = Variable<float, Dyn, Dim<4>, Dim<256>>::leaf(x0.to(device));
      auto w = Variable<float, Dim<256>>::leaf(w0.to(device));
      const auto y = rmsnorm(x, w, 1e-6);
      backward(y, x0.to(device));  // dy = x0: any fixed cotangent
      return std::make_tuple(y.value().to(Device::cpu()), x.grad().to(Device::cpu()), w.grad().to(Device::cpu()));
    };
    const auto [y_cpu, dx_cpu, dw_cpu] = run(Device::cpu());
    const auto [y_gpu, dx_gpu, dw_gpu] = run(cuda::device());
    QLORA_CHECK_CLOSE(y_gpu, y_cpu, 1e-5, 1e-5);
    QLORA_CHECK_CLOSE(dx_gpu, dx_cpu, 1e-5, 1e-5);
    QLORA_CHECK_CLOSE(dw_gpu, dw_cpu, 1e-4, 1e-5);
  }

  TEST_CASE("rmsnorm kernels with Gemma 4's stored scale and without a weight equal the CPU reference") {
    using X = Tensor<float, Dyn, Dyn>;
    const auto x = test::random_tensor<X>(7, -3, 3, 65, 512);
    const auto w = test::random_tensor<Tensor<float, Dyn>>(8, 0.5, 1.5, 512);
    const auto dy = test::random_tensor<X>(9, -1, 1, 65, 512);
    compare_with_cpu(x, w, dy, 1e-5, 1e-5, NormWeight::w);
    const Device gpu = cuda::device();
    const auto cpu_fwd = rmsnorm_unscaled_forward(x, 1e-6);
    const auto gpu_fwd = rmsnorm_unscaled_forward(x.to(gpu), 1e-6);
    QLORA_CHECK_CLOSE(gpu_fwd.y, cpu_fwd.y, 1e-5, 1e-5);
    QLORA_CHECK_CLOSE(rmsnorm_unscaled_backward(dy.to(gpu), x.to(gpu), gpu_fwd.rstd),
                      rmsnorm_unscaled_backward(dy, x, cpu_fwd.rstd), 1e-5, 1e-5);
  }
}
