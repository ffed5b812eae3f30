// One LoRA layer, end to end: wrap a frozen weight with a rank-4 adapter, check its gradients against finite
// differences, then fit the adapter so the layer reproduces a target linear map. Build: cmake --build build,
// run: build/bin/example_lora_layer.
#include <cmath>
#include <cstdio>

#include <qlora/optim/adamw.hpp>
#include <qlora/ops/lora.hpp>
#include <qlora/qlora.hpp>

using namespace qlora;

int main() {
  // 1. Gradient check in fp64: a frozen base W [8, 16] and an adapter of rank 4 (alpha 8, dropout 0.1).
  using W64 = Tensor<double, Dim<8>, Dim<16>>;
  W64 w64 = W64::zeros();
  for (index_t i = 0; i < w64.numel(); ++i) w64.data()[i] = 0.1 * static_cast<double>((i * 37) % 11) - 0.5;
  LoraLinear<double, W64> layer64(w64, LoraSpec{4, 8, 0.1, false}, RandomStream{1, 0});  // r 4
  layer64.lora_b().value().fill_zero();
  for (index_t i = 0; i < layer64.lora_b().numel(); ++i) layer64.lora_b().value().data()[i] = 0.01 * static_cast<double>(i);
  auto x64 = Variable<double, Dyn, Dim<16>>::leaf(Tensor<double, Dyn, Dim<16>>::full(0.3, 5));
  const auto report = gradcheck([&](const auto& x, const auto&, const auto&) { return layer64(x, RandomStream{7, 0}); },
                                x64, layer64.lora_a(), layer64.lora_b());
  std::printf("%s\n", report.str().c_str());
  if (!report.passed) return 1;

  // 2. Training in fp32: learn ΔW so that base + ΔW matches a target map on random inputs.
  using W32 = Tensor<float, Dim<8>, Dim<16>>;
  W32 base = W32::zeros();
  W32 target = W32::zeros();
  for (index_t o = 0; o < 8; ++o) {
    for (index_t i = 0; i < 16; ++i) {
      base(o, i) = 0.05f * static_cast<float>((o * 16 + i) * 13 % 7) - 0.15f;
      target(o, i) = base(o, i) + 0.5f * std::sin(static_cast<float>(o)) * std::cos(static_cast<float>(i));  // rank 1
    }
  }
  LoraLinear<float, W32> layer(base, LoraSpec{4, 8, 0.0, false}, RandomStream{2, 0});
  AdamW opt({Parameter("lora_A", layer.lora_a()), Parameter("lora_B", layer.lora_b())}, AdamWConfig{});
  float first = 0, last = 0;
  for (int step = 0; step < 200; ++step) {
    auto x = Tensor<float, Dyn, Dim<16>>::zeros(32);
    for (index_t i = 0; i < x.numel(); ++i) x.data()[i] = uniform01({3, static_cast<std::uint64_t>(step)}, i) - 0.5f;
    const auto want = matmul<Transpose::no, Transpose::yes>(x, target);
    const auto y = layer(Variable<float, Dyn, Dim<16>>(x));
    auto loss = mean(square(y - Variable<float, Dyn, Dim<8>>(want)));
    opt.zero_grad();
    backward(loss);
    opt.step(1e-2);
    last = loss.value().item();
    if (step == 0) first = last;
  }
  std::printf("LoRA fit: loss %.3g -> %.3g after 200 AdamW steps\n", first, last);
  return last < 0.1f * first ? 0 : 1;
}
