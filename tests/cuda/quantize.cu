// Quantizing on the GPU gives the CPU's bytes: NF4/FP4 codes, absmax and double-quantization statistics, and
// blockwise 8-bit codes with both roundings; 8-bit dequantization equals the CPU's values.
#include <doctest/doctest.h>

#include "support/check.hpp"

#include <qlora/cuda.hpp>
#include <qlora/quant/blockwise8.hpp>
#include <qlora/quant/four_bit_tensor.hpp>

using namespace qlora;

namespace {
template <class Q>
void check_four_bit_quantize() {
  using W = Tensor<float, Dim<33>, Dim<97>>;  // odd count, a short last block
  auto w = test::random_tensor<W>(1, -3, 3);
  w(3, 5) = 0.0f;
  for (bool dq : {false, true}) {
    const auto cpu = Tensor<Q, Dim<33>, Dim<97>>::quantize(w, {64, dq});
    const auto gpu = quantize<Q>(w.to(cuda::device()), {64, dq});
    CHECK(gpu.device().is_cuda());
    QLORA_CHECK_CLOSE(gpu.packed().to(Device::cpu()), cpu.packed(), 0.0, 0.0);
    const auto a = four_bit_absmax(cpu.state()), b = four_bit_absmax(gpu.state());
    REQUIRE(a.size() == b.size());
    for (std::size_t i = 0; i < a.size(); ++i) CHECK(a[i] == b[i]);
    QLORA_CHECK_CLOSE(dequantize<float>(gpu).to(Device::cpu()), dequantize<float>(cpu), 0.0, 0.0);
  }
}
}  // namespace

TEST_SUITE("cuda") {
  TEST_CASE("NF4 quantization on the GPU gives the CPU's bytes") { check_four_bit_quantize<NF4>(); }
  TEST_CASE("FP4 quantization on the GPU gives the CPU's bytes") { check_four_bit_quantize<FP4>(); }

  TEST_CASE("blockwise 8-bit quantization on the GPU gives the CPU's codes and values") {
    auto x = test::random_tensor<Tensor<float, Dyn>>(2, -5, 5, 10000);
    x.slice(256, 512).fill_zero();  // an all-zero block
    for (bool is_signed : {true, false}) {
      const DynamicMap code = create_dynamic_map(is_signed);
      for (auto rounding : {DynamicRounding::cpu_lookup_table, DynamicRounding::cuda_nearest}) {
        const auto cpu = quantize_blockwise(x, code, 256, rounding);
        const auto gpu = quantize_blockwise(x.to(cuda::device()), code, 256, rounding);
        QLORA_CHECK_CLOSE(gpu.codes.to(Device::cpu()), cpu.codes, 0.0, 0.0);
        QLORA_CHECK_CLOSE(gpu.absmax.to(Device::cpu()), cpu.absmax, 0.0, 0.0);
        auto out_cpu = Tensor<float, Dyn>::zeros(10000);
        auto out_gpu = Tensor<float, Dyn>::zeros_on(cuda::device(), 10000);
        dequantize_blockwise(cpu, code, out_cpu);
        dequantize_blockwise(gpu, code, out_gpu);
        QLORA_CHECK_CLOSE(out_gpu.to(Device::cpu()), out_cpu, 0.0, 0.0);
      }
    }
  }
}
