// RoPE kernel against the CPU reference, forward and backward, at Gemma 3 shapes (head_dim 256, local and scaled
// global frequencies) with packed positions, in fp32, fp64 and bf16, and Gemma 4's proportional RoPE at head_dim 512.
#include <doctest/doctest.h>

#include <cstdint>

#include "support/check.hpp"

#include <qlora/cuda.hpp>
#include <qlora/ops/rope.hpp>

using namespace qlora;

namespace {
using Pos = Tensor<std::int32_t, Dyn>;
Pos packed_positions(index_t tokens) {  // sequences of 100 tokens each restart at 0
  auto p = Pos::zeros(tokens);
  for (index_t t = 0; t < tokens; ++t) p(t) = static_cast<std::int32_t>(t % 100 + (t >= 300 ? 3000 : 0));
  return p;
}

// CUDA's sincosf and glibc's differ by an ulp or so: atol/rtol say how far the two may be apart.
template <class T, index_t D = 256>
void compare_with_cpu(const RopeParams& p, double atol, double rtol) {
  const index_t tokens = 333;
  const Device gpu = cuda::device();
  using X = Tensor<T, Dyn, Dim<4>, Dim<D>>;
  const auto x = test::random_tensor<X>(1, -2, 2, tokens);
  const Pos pos = packed_positions(tokens);
  QLORA_CHECK_CLOSE(rope_forward(x.to(gpu), pos.to(gpu), p), rope_forward(x, pos, p), atol, rtol);
  QLORA_CHECK_CLOSE(rope_backward(x.to(gpu), pos.to(gpu), p), rope_backward(x, pos, p), atol, rtol);
}
}  // namespace

TEST_SUITE("cuda") {
  TEST_CASE("rope kernel equals the CPU reference in fp32 (local and linearly scaled global)") {
    compare_with_cpu<float>(RopeParams{10000, 1}, 2e-6, 1e-6);
    compare_with_cpu<float>(RopeParams{1e6, 8}, 2e-6, 1e-6);
  }

  TEST_CASE("rope kernel equals the CPU reference in fp64") {
    compare_with_cpu<double>(RopeParams{10000, 1}, 1e-13, 1e-13);
  }

  TEST_CASE("rope kernel on bf16 equals the CPU within one bf16 rounding") {
    compare_with_cpu<bf16>(RopeParams{1e6, 8}, 1e-2, 8e-3);
  }

  TEST_CASE("rope gradient through autograd on the GPU equals the CPU's") {
    using X = Tensor<float, Dyn, Dim<2>, Dim<64>>;
    const auto x0 = test::random_tensor<X>(2, -1, 1, 40);
    const Pos pos = packed_positions(40);
    auto run = [&](Device device) {
      auto x = Variable<float, Dyn, Dim<2>, Dim<64>>::leaf(x0.to(device));
      backward(rope(x, pos.to(device), RopeParams{10000, 1}), x0.to(device));
      return x.grad().to(Device::cpu());
    };
    QLORA_CHECK_CLOSE(run(cuda::device()), run(Device::cpu()), 2e-6, 1e-6);
  }

  TEST_CASE("proportional rope kernel (Gemma 4 full layers: head_dim 512, a quarter of the pairs) equals the CPU") {
    compare_with_cpu<float, 512>(RopeParams{1e6, 1, 0.25}, 2e-6, 1e-6);
    compare_with_cpu<double, 512>(RopeParams{1e6, 1, 0.25}, 1e-13, 1e-13);
  }
}
