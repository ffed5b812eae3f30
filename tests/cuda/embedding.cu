// Scaled-embedding kernels against the CPU reference: forward (exact: one rounded product per element), the
// scatter-add table gradient with repeated ids and padding_idx (atomics: equal up to summation order), and the
// out-of-range id error raised from the device.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>

#include "support/check.hpp"

#include <qlora/cuda.hpp>
#include <qlora/ops/embedding.hpp>

using namespace qlora;

namespace {
using Ids = Tensor<std::int32_t, Dyn>;
Ids ids_with_repeats(index_t tokens, index_t vocab) {
  auto ids = Ids::zeros(tokens);
  for (index_t t = 0; t < tokens; ++t) ids(t) = static_cast<std::int32_t>((t * 7919 + t / 3) % vocab);
  ids(0) = 0;
  ids(1) = static_cast<std::int32_t>(vocab - 1);
  ids(2) = ids(5) = ids(9) = 3;  // one id three times
  return ids;
}

template <class T>
void compare_with_cpu(double atol, double rtol) {
  const index_t vocab = 300, cols = 640, tokens = 517;
  const Device gpu = cuda::device();
  const auto table = test::random_tensor<Tensor<T, Dyn, Dyn>>(1, -1, 1, vocab, cols);
  const auto dy = test::random_tensor<Tensor<T, Dyn, Dyn>>(2, -1, 1, tokens, cols);
  const Ids ids = ids_with_repeats(tokens, vocab);
  QLORA_CHECK_CLOSE(embedding_forward(ids.to(gpu), table.to(gpu)), embedding_forward(ids, table), 0.0, 0.0);
  for (index_t padding_idx : {-1, 3}) {
    const auto cpu = embedding_backward(ids, dy, table.shape(), padding_idx);
    const auto got = embedding_backward(ids.to(gpu), dy.to(gpu), table.shape(), padding_idx);
    QLORA_CHECK_CLOSE(got, cpu, atol, rtol);
  }
}
}  // namespace

TEST_SUITE("cuda") {
  TEST_CASE("embedding kernels equal the CPU reference (fp32, fp64)") {
    compare_with_cpu<float>(1e-5, 1e-6);
    compare_with_cpu<double>(1e-12, 1e-12);
  }

  // bf16 atomics round after every add: for an id used m times each of its elements may be off the CPU's
  // (fp32 sum, one rounding) by at most m half-ulps of the largest partial sum, itself ≤ Σ |s · dy|.
  TEST_CASE("embedding kernels on bf16: forward exact, gradient within the rounding of m bf16 atomic adds") {
    const index_t vocab = 300, cols = 640, tokens = 517;
    const Device gpu = cuda::device();
    const auto table = test::random_tensor<Tensor<bf16, Dyn, Dyn>>(3, -1, 1, vocab, cols);
    const auto dy = test::random_tensor<Tensor<bf16, Dyn, Dyn>>(4, -1, 1, tokens, cols);
    const Ids ids = ids_with_repeats(tokens, vocab);
    QLORA_CHECK_CLOSE(embedding_forward(ids.to(gpu), table.to(gpu)), embedding_forward(ids, table), 0.0, 0.0);
    const auto cpu = embedding_backward(ids, dy, table.shape());
    const auto got = embedding_backward(ids.to(gpu), dy.to(gpu), table.shape()).to(Device::cpu());
    const double s = static_cast<float>(embedding_normalizer<bf16>(cols));
    for (index_t v = 0; v < vocab; ++v) {
      for (index_t c = 0; c < cols; ++c) {
        double m = 0, sum_abs = 0;
        for (index_t t = 0; t < tokens; ++t)
          if (ids(t) == v) {
            m += 1;
            sum_abs += s * std::abs(static_cast<float>(dy(t, c)));
          }
        const double err = std::abs(static_cast<float>(got(v, c)) - static_cast<float>(cpu(v, c)));
        if (!(err <= m * std::ldexp(sum_abs, -8) + std::ldexp(sum_abs, -8)))  // + the CPU's own final rounding
          FAIL_CHECK("row ", v, " column ", c, ": gpu ", got(v, c), ", cpu ", cpu(v, c), " (id used ", m, " times)");
      }
    }
  }

  TEST_CASE("an out-of-range id on the GPU throws naming the token, the id and the vocabulary size") {
    const Device gpu = cuda::device();
    const auto table = Tensor<float, Dyn, Dyn>::zeros_on(gpu, 12, 8);
    CHECK_THROWS_WITH_AS(embedding_forward(Ids::from({1, 2, 40, 3, -5}, 5).to(gpu), table),
                         "[embedding] token 2 has id 40, outside the vocabulary of size 12", Error);
  }
}
