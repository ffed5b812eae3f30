// Dropout on the CPU at a LoRA input's shape ([512 tokens, 2048]): the counter-based mask is regenerated per call
// (Philox4x32-10 per element), so this measures mask generation + apply. bytes/s = read + write.
#include <benchmark/benchmark.h>

#include <qlora/ops/dropout.hpp>

namespace {
void BM_dropout_cpu(benchmark::State& state) {
  using qlora::Dyn;
  auto x = qlora::Tensor<float, Dyn, qlora::Dim<2048>>::full(1.0f, 512);
  std::uint64_t step = 0;
  for (auto _ : state) {
    auto y = qlora::dropout_apply(qlora::DropoutParams{0.05f, {1234, step++}}, x);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(state.iterations() * x.numel() * 8);
}
}  // namespace

BENCHMARK(BM_dropout_cpu)->UseRealTime();
