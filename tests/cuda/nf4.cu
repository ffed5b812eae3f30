// 4-bit dequantization on the GPU equals the CPU reference bit for bit (NF4 and FP4, with and without double
// quantization, odd sizes, block sizes 32 to 4096), and LoRA over an NF4 base gives the CPU's outputs and gradients within bf16/fp32
// tolerance.
#include <doctest/doctest.h>

#include "support/check.hpp"

#include <qlora/cuda.hpp>
#include <qlora/ops/lora.hpp>
#include <qlora/quant/four_bit_tensor.hpp>

using namespace qlora;

namespace {
template <class Q>
void check_dequantize() {
  using W = Tensor<float, Dim<37>, Dim<129>>;  // 4773 values: odd, a short last block, 75 blocks
  const auto w = test::random_tensor<W>(1, -2, 2);
  for (bool dq : {false, true}) {
    const auto w4 = Tensor<Q, Dim<37>, Dim<129>>::quantize(w, {64, dq});
    const auto cpu = dequantize<float>(w4);
    const auto gpu = dequantize<float>(w4.to(cuda::device()));
    QLORA_CHECK_CLOSE(gpu, cpu, 0.0, 0.0);
    QLORA_CHECK_CLOSE(dequantize<bf16>(w4.to(cuda::device())), dequantize<bf16>(w4), 0.0, 0.0);
  }
  // whole 8-value words (the kernel's vector path) with the smallest and largest block sizes, a short last block
  using V = Tensor<float, Dim<64>, Dim<520>>;  // 33280 values: 1040 blocks of 32, 8 blocks of 4096 and a part
  const auto v = test::random_tensor<V>(2, -3, 3);
  for (index_t blocksize : {32, 4096})
    for (bool dq : {false, true}) {
      CAPTURE(blocksize);
      CAPTURE(dq);
      const auto v4 = Tensor<Q, Dim<64>, Dim<520>>::quantize(v, {blocksize, dq});
      QLORA_CHECK_CLOSE(dequantize<float>(v4.to(cuda::device())), dequantize<float>(v4), 0.0, 0.0);
      QLORA_CHECK_CLOSE(dequantize<bf16>(v4.to(cuda::device())), dequantize<bf16>(v4), 0.0, 0.0);
    }
}
}  // namespace

TEST_SUITE("cuda") {
  TEST_CASE("NF4 dequantization on the GPU equals the CPU bit for bit") { check_dequantize<NF4>(); }
  TEST_CASE("FP4 dequantization on the GPU equals the CPU bit for bit") { check_dequantize<FP4>(); }

  TEST_CASE("LoRA over an NF4 base on the GPU equals the CPU (forward and gradients)") {
    using B4 = Tensor<NF4, Dim<256>, Dim<640>>;
    const auto w4 = B4::quantize(test::random_tensor<Tensor<float, Dim<256>, Dim<640>>>(2, -0.1, 0.1));
    const auto a0 = test::random_tensor<Tensor<float, Dim<16>, Dim<640>>>(3, -0.04, 0.04);
    const auto b0 = test::random_tensor<Tensor<float, Dim<256>, Dim<16>>>(4, -0.1, 0.1);
    const auto x0 = test::random_tensor<Tensor<float, Dyn, Dim<640>>>(5, -1, 1, 33);
    auto run = [&](Device device) {
      LoraLinear<float, B4> layer(device.is_cpu() ? w4 : w4.to(device), LoraSpec{16, 32, 0.05, false},
                                      a0.to(device), b0.to(device));
      auto x = Variable<float, Dyn, Dim<640>>::leaf(x0.to(device));
      auto y = layer(x, RandomStream{9, 1});
      backward(mean(square(y)));
      return std::make_tuple(y.value().to(Device::cpu()), x.grad().to(Device::cpu()),
                             layer.lora_a().grad().to(Device::cpu()), layer.lora_b().grad().to(Device::cpu()));
    };
    const auto [y_cpu, dx_cpu, da_cpu, db_cpu] = run(Device::cpu());
    const auto [y_gpu, dx_gpu, da_gpu, db_gpu] = run(cuda::device());
    QLORA_CHECK_CLOSE(y_gpu, y_cpu, 1e-4, 1e-4);
    QLORA_CHECK_CLOSE(dx_gpu, dx_cpu, 1e-6, 1e-4);
    QLORA_CHECK_CLOSE(da_gpu, da_cpu, 1e-6, 1e-4);
    QLORA_CHECK_CLOSE(db_gpu, db_cpu, 1e-6, 1e-4);
  }

  TEST_CASE("LoRA over an NF4 base in bf16 on the GPU stays within bf16 tolerance of the fp32 CPU result") {
    using B4 = Tensor<NF4, Dim<128>, Dim<256>>;
    const auto w4 = B4::quantize(test::random_tensor<Tensor<float, Dim<128>, Dim<256>>>(6, -0.1, 0.1));
    const auto a0 = test::random_tensor<Tensor<float, Dim<8>, Dim<256>>>(7, -0.06, 0.06);
    const auto b0 = test::random_tensor<Tensor<float, Dim<128>, Dim<8>>>(8, -0.1, 0.1);
    const auto x0 = test::random_tensor<Tensor<float, Dyn, Dim<256>>>(9, -1, 1, 16);
    LoraLinear<float, B4> cpu_layer(w4, LoraSpec{8, 16, 0, false}, a0, b0);
    const auto y_cpu = cpu_layer(Variable<float, Dyn, Dim<256>>(x0)).value();
    const Device gpu = cuda::device();
    auto a16 = evaluate<bf16, Dim<8>, Dim<256>>(a0).to(gpu);
    auto b16 = evaluate<bf16, Dim<128>, Dim<8>>(b0).to(gpu);
    auto x16 = evaluate<bf16, Dyn, Dim<256>>(x0).to(gpu);
    LoraLinear<bf16, B4> gpu_layer(w4.to(gpu), LoraSpec{8, 16, 0, false}, a16, b16);
    const auto y_gpu = gpu_layer(Variable<bf16, Dyn, Dim<256>>(x16)).value().to(Device::cpu());
    QLORA_CHECK_CLOSE(y_gpu, y_cpu, 2e-2, 2e-2);
  }
}
