// NF4 on the GPU: dequantize throughput for a Gemma 3 4B MLP weight [10240, 2560], and an NF4 LoraLinear
// forward+backward (r 16, bf16 compute, 2048 tokens) next to the same layer over a bf16 base (target: the NF4 layer
// at >= 80 % of the bf16 layer's speed). Skips without a GPU.
#include <benchmark/benchmark.h>

#include <qlora/cuda.hpp>

#include "skip.cuh"
#include <qlora/ops/lora.hpp>
#include <qlora/qlora.hpp>
#include <qlora/quant/four_bit_tensor.hpp>

namespace {
using namespace qlora;
using W = Tensor<float, Dim<10240>, Dim<2560>>;
using W4 = Tensor<NF4, Dim<10240>, Dim<2560>>;
using WB = Tensor<bf16, Dim<10240>, Dim<2560>>;

const W& weight() {
  static const W w = [] {
    W t = W::zeros();
    for (index_t i = 0; i < t.numel(); ++i) t.data()[i] = uniform01({1, 0}, static_cast<std::uint64_t>(i)) * 0.2f - 0.1f;
    return t;
  }();
  return w;
}

bool skip_without_gpu(benchmark::State& state) {
  if (cuda::available()) return false;
  state.SkipWithError("no CUDA GPU");
  return true;
}

void BM_nf4_dequantize_cuda(benchmark::State& state) {
  if (skip_without_gpu(state)) return;
  const Device gpu = cuda::device();
  const W4 w4 = W4::quantize(weight()).to(gpu);
  auto out = Tensor<bf16, Dim<10240>, Dim<2560>>::zeros_on(gpu);
  for (auto _ : state) {
    dequantize_into(w4, out);
    gpu.allocator().synchronize();
  }
  state.SetBytesProcessed(state.iterations() * out.numel() * 2);
  state.counters["storage_GB/s"] = benchmark::Counter(static_cast<double>(w4.storage_bytes()),
                                                      benchmark::Counter::kIsIterationInvariantRate);
}

template <class Base>
void lora_step(benchmark::State& state, const Base& base) {
  const Device gpu = cuda::device();
  LoraLinear<bf16, Base> layer(base, LoraSpec{16, 32, 0.05, false}, RandomStream{2, 0});
  auto x = Variable<bf16, Dyn, Dim<2560>>::leaf(Tensor<bf16, Dyn, Dim<2560>>::zeros_on(gpu, 2048));
  // backward seeded with ones: sum(y) would reduce its 21M values in one thread block (the expression evaluator's
  // full reductions run one block a row), which took 234 ms of the step on an H200
  const auto seed = Tensor<bf16, Dyn, Dim<10240>>::full(convert<bf16>(1.0f), 2048).to(gpu);
  std::uint64_t step = 0;
  for (auto _ : state) {
    auto y = layer(x, RandomStream{3, step++});
    backward(y, seed);
    layer.lora_a().zero_grad();
    layer.lora_b().zero_grad();
    x.zero_grad();
    gpu.allocator().synchronize();
  }
  state.SetItemsProcessed(state.iterations() * 2048);
}
void BM_lora_forward_backward_nf4_cuda(benchmark::State& state) {
  if (skip_without_gpu(state)) return;
  lora_step(state, W4::quantize(weight()).to(cuda::device()));
}
void BM_lora_forward_backward_bf16_cuda(benchmark::State& state) {
  if (skip_without_gpu(state)) return;
  lora_step(state, evaluate<bf16, Dim<10240>, Dim<2560>>(weight()).to(cuda::device()));
}
}  // namespace

BENCHMARK(BM_nf4_dequantize_cuda)->UseRealTime();
BENCHMARK(BM_lora_forward_backward_nf4_cuda)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_lora_forward_backward_bf16_cuda)->UseRealTime()->Unit(benchmark::kMillisecond);
