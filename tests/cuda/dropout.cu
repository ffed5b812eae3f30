// The CUDA dropout mask equals the CPU one element for element (same counter-based generator).
#include <doctest/doctest.h>

#include "support/check.hpp"

#include <qlora/cuda.hpp>
#include <qlora/ops/dropout.hpp>

using namespace qlora;

TEST_SUITE("cuda") {
  TEST_CASE("dropout on the GPU draws the CPU's mask") {
    const auto x = test::random_tensor<Tensor<float, Dyn, Dim<333>>>(1, -1, 1, 77);
    const DropoutParams d{0.1f, {2024, 17}};
    const auto cpu = dropout_apply(d, x);
    const auto gpu = dropout_apply(d, x.to(cuda::device()));
    QLORA_CHECK_CLOSE(gpu, cpu, 0.0, 0.0);
    const auto xb = test::random_tensor<Tensor<bf16, Dyn>>(2, -1, 1, 4097);
    QLORA_CHECK_CLOSE(dropout_apply(d, xb.to(cuda::device())), dropout_apply(d, xb), 0.0, 0.0);
    // batch rows (ops/dropout.hpp): rows of 3 tokens x 333 features, the first one row 4 of its micro-batch
    const DropoutParams rows{0.2f, {5, 6}, 3 * 333, 4};
    QLORA_CHECK_CLOSE(dropout_apply(rows, x.to(cuda::device())), dropout_apply(rows, x), 0.0, 0.0);
  }
}
