// One Gemma3Block (layer 0: local attention) at the Gemma 3 270M, 1B and 4B shapes, 512 tokens, NF4 base
// with LoRA r 16 on all seven projections (lora_alpha 32, lora_dropout 0.05), random weights of the real shape
// (Gemma3WeightSource::random). Forward alone (training mode, dropout on), and forward + backward (d_x and the LoRA
// gradients).
//
// FLOP/s counts model FLOPs, no recomputation: per token, 2·N_base + 2·N_lora forward (N = the seven projections'
// weights) and 4·Hq·D·ctx for attention's two GEMMs (ctx = (T + 1) / 2 visible keys, causal); backward adds
// 2·N_base (d_x only, W is frozen), 4·N_lora and 8·Hq·D·ctx.
#include <benchmark/benchmark.h>

#include <qlora/nn/model.hpp>
#include <qlora/qlora.hpp>

namespace {
using namespace qlora;
constexpr index_t kTokens = 512;

// FLOPs per token of one block with r 16 on all seven projections.
double flops_per_token(const Gemma3RuntimeConfig& c, bool backward) {
  const double hidden = static_cast<double>(c.hidden), q = static_cast<double>(c.q_dim()),
               kv = static_cast<double>(c.kv_dim()), inter = static_cast<double>(c.intermediate);
  const double base = hidden * (q + 2 * kv) + q * hidden + 3.0 * hidden * inter;
  const double lora = 16.0 * ((hidden + q) * 2.0 + (hidden + kv) * 2.0 + (hidden + inter) * 3.0);
  const double attention = 4.0 * static_cast<double>(c.heads * c.head_dim) * (kTokens + 1) / 2.0;  // forward
  return backward ? 4 * base + 6 * lora + 3 * attention : 2 * base + 2 * lora + attention;
}

// One block type for every size: the run-time-shaped block (Gemma3AnySize), which runs at the static types' speed
// (docs/benchmarks.md) and is compiled once here instead of once per size.
template <class Cfg>
void block_step(benchmark::State& state, bool with_backward) {
  using Block = Gemma3Block<Gemma3AnySize, float, NF4>;
  Gemma3Options options;
  LoraConfig lora;  // r 16, alpha 32, dropout 0.05 on all seven projections
  lora.r = 16;
  lora.lora_alpha = 32;
  lora.lora_dropout = 0.05;
  lora.target_modules = all_linear_targets();
  options.lora = LoraTargets(lora);
  const Gemma3RuntimeConfig cfg = runtime_config_of<Cfg>();
  const Block block(Gemma3WeightSource::random<Cfg>(1), 0, options, cfg);
  auto x0 = Tensor<float, Dyn, Dyn>::zeros(kTokens, cfg.hidden);
  detail::fill_random_normalish(x0.data(), x0.numel(), RandomStream{2, 0}, 1.0);
  auto x = Variable<float, Dyn, Dyn>::leaf(x0);
  auto positions = Tensor<std::int32_t, Dyn>::zeros(kTokens), segments = Tensor<std::int32_t, Dyn>::zeros(kTokens);
  for (index_t t = 0; t < kTokens; ++t) {
    positions.data()[t] = static_cast<std::int32_t>(t);
    segments.data()[t] = 1;
  }
  std::uint64_t step = 0;
  for (auto _ : state) {
    const ForwardPass pass{true, false, RandomStream{3, step++}};
    if (with_backward) {
      backward(mean(block(x, positions, segments, pass)));
      block.for_each_projection([](Projection, const auto& p) {
        p.lora()->lora_a().zero_grad();
        p.lora()->lora_b().zero_grad();
      });
      x.zero_grad();
    } else {
      NoGrad no_grad;
      benchmark::DoNotOptimize(block(x, positions, segments, pass).value().data());
    }
  }
  state.counters["tokens/s"] = benchmark::Counter(kTokens, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["FLOP/s"] = benchmark::Counter(kTokens * flops_per_token(cfg, with_backward),
                                                benchmark::Counter::kIsIterationInvariantRate);
}

void BM_gemma3_block_forward_270m(benchmark::State& s) { block_step<Gemma3_270M>(s, false); }
void BM_gemma3_block_forward_backward_270m(benchmark::State& s) { block_step<Gemma3_270M>(s, true); }
void BM_gemma3_block_forward_1b(benchmark::State& s) { block_step<Gemma3_1B>(s, false); }
void BM_gemma3_block_forward_backward_1b(benchmark::State& s) { block_step<Gemma3_1B>(s, true); }
void BM_gemma3_block_forward_4b(benchmark::State& s) { block_step<Gemma3_4B>(s, false); }
void BM_gemma3_block_forward_backward_4b(benchmark::State& s) { block_step<Gemma3_4B>(s, true); }
}  // namespace

BENCHMARK(BM_gemma3_block_forward_270m)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_gemma3_block_forward_backward_270m)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_gemma3_block_forward_1b)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_gemma3_block_forward_backward_1b)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_gemma3_block_forward_4b)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_gemma3_block_forward_backward_4b)->UseRealTime()->Unit(benchmark::kMillisecond);
