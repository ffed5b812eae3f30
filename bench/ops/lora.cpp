// LoraLinear on the CPU at the projections of Gemma 3 270M, 1B and 4B (512 tokens, r 16, lora_alpha 32, dropout
// 0.05): forward + backward (d_x, d_A, d_B; the base is frozen) over an NF4 base (double quantization, dequantized
// per call) and over an fp32 base — what NF4 costs on top of the same GEMMs — on each CPU GEMM this build and CPU
// offer (…/eigen, …/onednn, …/onednn-bf16). Counter FLOP/s counts model FLOPs per token: 4·in·out for the base
// (forward and d_x) and 6·r·(in + out) for the adapter.
#include <benchmark/benchmark.h>

#include <string>
#include <type_traits>

#include <qlora/ops/lora.hpp>
#include <qlora/qlora.hpp>
#include <qlora/quant/four_bit_tensor.hpp>

#include "../shapes.hpp"

namespace {
using namespace qlora;
constexpr index_t kRank = 16;

template <index_t Out, index_t In>
Tensor<float, Dim<Out>, Dim<In>> weight() {
  auto w = Tensor<float, Dim<Out>, Dim<In>>::zeros();
  for (index_t i = 0; i < w.numel(); ++i) w.data()[i] = uniform01({1, 0}, static_cast<std::uint64_t>(i)) * 0.2f - 0.1f;
  return w;
}

template <class W, index_t Out, index_t In>
void BM_lora_forward_backward(benchmark::State& state, CpuGemm backend) {
  const W base = [] {
    if constexpr (std::is_same_v<W, Tensor<NF4, Dim<Out>, Dim<In>>>) return W::quantize(weight<Out, In>());
    else return weight<Out, In>();
  }();
  const LoraLinear<float, W> layer(base, LoraSpec{kRank, 32, 0.05, false}, RandomStream{2, 0});
  auto x = Variable<float, Dyn, Dim<In>>::leaf(
      Tensor<float, Dyn, Dim<In>>::full(0.01f, bench::kTokens).on(Device::cpu(backend)));
  std::uint64_t step = 0;
  for (auto _ : state) {
    backward(sum(layer(x, RandomStream{3, step++})));
    layer.lora_a().zero_grad();
    layer.lora_b().zero_grad();
    x.zero_grad();
  }
  const double per_token = 4.0 * In * Out + 6.0 * kRank * (In + Out);
  state.counters["tokens/s"] = benchmark::Counter(bench::kTokens, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["FLOP/s"] = benchmark::Counter(bench::kTokens * per_token, benchmark::Counter::kIsIterationInvariantRate);
}

// q_proj, o_proj, gate_proj (= up_proj) and down_proj of a config, over NF4 and over fp32, on each available CPU
// GEMM.
template <class Cfg>
void register_config(const char* name) {
  constexpr index_t C = Cfg::hidden, Q = Cfg::q_dim, I = Cfg::intermediate;
  const std::string prefix = std::string("BM_lora_forward_backward/") + name;
  for (const CpuGemm backend : all_cpu_gemms) {
    if (!cpu_gemm_available(backend)) continue;
    auto add = [&](const std::string& what, auto fn) {
      benchmark::RegisterBenchmark((prefix + "/" + what + "/" + cpu_gemm_name(backend)).c_str(),
                                   [fn, backend](benchmark::State& s) { fn(s, backend); })
          ->UseRealTime()
          ->Unit(benchmark::kMillisecond);
    };
    add("q_proj/nf4", BM_lora_forward_backward<Tensor<NF4, Dim<Q>, Dim<C>>, Q, C>);
    add("q_proj/fp32", BM_lora_forward_backward<Tensor<float, Dim<Q>, Dim<C>>, Q, C>);
    add("o_proj/nf4", BM_lora_forward_backward<Tensor<NF4, Dim<C>, Dim<Q>>, C, Q>);
    add("gate_proj/nf4", BM_lora_forward_backward<Tensor<NF4, Dim<I>, Dim<C>>, I, C>);
    add("gate_proj/fp32", BM_lora_forward_backward<Tensor<float, Dim<I>, Dim<C>>, I, C>);
    add("down_proj/nf4", BM_lora_forward_backward<Tensor<NF4, Dim<C>, Dim<I>>, C, I>);
    add("down_proj/fp32", BM_lora_forward_backward<Tensor<float, Dim<C>, Dim<I>>, C, I>);
  }
}

const int registered = [] {
  register_config<Gemma3_270M>("270m");
  register_config<Gemma3_1B>("1b");
  register_config<Gemma3_4B>("4b");
  return 0;
}();
}  // namespace
