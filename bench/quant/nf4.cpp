// NF4 on the CPU: dequantize throughput (GB/s of fp32 written, and of 4-bit storage read) for Gemma 3 270M's MLP
// weight [2048, 640], with and without double quantization; and one NF4 LoraLinear forward+backward (r 16, 512
// tokens) next to the same layer over an fp32 base.
#include <benchmark/benchmark.h>

#include <qlora/ops/lora.hpp>
#include <qlora/qlora.hpp>
#include <qlora/quant/four_bit_tensor.hpp>

namespace {
using namespace qlora;
using W = Tensor<float, Dim<2048>, Dim<640>>;
using W4 = Tensor<NF4, Dim<2048>, Dim<640>>;

W weight() {
  W w = W::zeros();
  for (index_t i = 0; i < w.numel(); ++i) w.data()[i] = uniform01({1, 0}, static_cast<std::uint64_t>(i)) * 0.2f - 0.1f;
  return w;
}

void BM_nf4_dequantize_cpu(benchmark::State& state) {
  const W4 w4 = W4::quantize(weight(), {64, state.range(0) != 0});
  W out = W::zeros();
  for (auto _ : state) {
    dequantize_into(w4, out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(state.iterations() * out.numel() * static_cast<int64_t>(sizeof(float)));
  state.counters["storage_GB/s"] = benchmark::Counter(static_cast<double>(w4.storage_bytes()),
                                                      benchmark::Counter::kIsIterationInvariantRate);
}

template <class Base>
void lora_step(benchmark::State& state, const Base& base) {
  LoraLinear<float, Base> layer(base, LoraSpec{16, 32, 0.05, false}, RandomStream{2, 0});
  auto x = Variable<float, Dyn, Dim<640>>::leaf(Tensor<float, Dyn, Dim<640>>::full(0.01f, 512));
  std::uint64_t step = 0;
  for (auto _ : state) {
    auto y = layer(x, RandomStream{3, step++});
    backward(sum(y));
    layer.lora_a().zero_grad();
    layer.lora_b().zero_grad();
    x.zero_grad();
  }
  state.SetItemsProcessed(state.iterations() * 512);  // tokens
}
void BM_lora_forward_backward_nf4_cpu(benchmark::State& state) { lora_step(state, W4::quantize(weight())); }
void BM_lora_forward_backward_fp32_cpu(benchmark::State& state) { lora_step(state, weight()); }
}  // namespace

BENCHMARK(BM_nf4_dequantize_cpu)->Arg(0)->Arg(1)->ArgName("double_quant")->UseRealTime();
BENCHMARK(BM_lora_forward_backward_nf4_cpu)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_lora_forward_backward_fp32_cpu)->UseRealTime()->Unit(benchmark::kMillisecond);
