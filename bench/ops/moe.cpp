// Gemma 4's mixture-of-experts ops on the CPU (ops/moe.hpp) at 26B-A4B's per-token shape (hidden 2816, expert width
// 704, top 8) over 32 experts instead of 128 (the same work per token, a quarter of the 3 GB of fp32 experts),
// 512 tokens routed by random logits: routing alone, the experts forward, and forward + backward (into the tokens
// and the routing weights; the experts frozen). FLOP/s counts 2·3·I·H per token and chosen expert (forward) and
// three times that for forward + backward (the backward recomputes the forward's two GEMMs and adds two).
#include <benchmark/benchmark.h>

#include <qlora/autograd/tape.hpp>
#include <qlora/ops/moe.hpp>
#include <qlora/ops/reduce.hpp>

namespace moe_bench {  // named: the benchmarks are compiled in unity batches
using namespace qlora;
constexpr index_t kTokens = 512, kHidden = 2816, kInter = 704, kExperts = 32, kTopK = 8;

template <class Tn>
Tn filled(int salt, double amplitude, auto... extents) {
  auto t = Tn::zeros(extents...);
  for (index_t i = 0; i < t.numel(); ++i)
    t.data()[i] = static_cast<float>(amplitude * (static_cast<double>((i * 7919 + salt) % 1000) / 500.0 - 1.0));
  return t;
}

struct Inputs {
  Tensor<float, Dyn, Dyn> h = filled<Tensor<float, Dyn, Dyn>>(1, 1.0, kTokens, kHidden);
  Tensor<float, Dyn, Dyn> logits = filled<Tensor<float, Dyn, Dyn>>(2, 3.0, kTokens, kExperts);
  Tensor<float, Dyn> scale = filled<Tensor<float, Dyn>>(3, 0.2, kExperts);
  Tensor<float, Dyn, Dyn, Dyn> gate_up = filled<Tensor<float, Dyn, Dyn, Dyn>>(4, 0.02, kExperts, 2 * kInter, kHidden);
  Tensor<float, Dyn, Dyn, Dyn> down = filled<Tensor<float, Dyn, Dyn, Dyn>>(5, 0.03, kExperts, kHidden, kInter);
};
const Inputs& inputs() {
  static const Inputs in;
  return in;
}
constexpr double kForwardFlop = 2.0 * 3 * kInter * kHidden * kTokens * kTopK;

void BM_moe_route(benchmark::State& state) {
  const Inputs& in = inputs();
  for (auto _ : state)
    benchmark::DoNotOptimize(moe_route(Variable<float, Dyn, Dyn>(in.logits), kTopK, in.scale).weights.value().data());
  state.SetItemsProcessed(state.iterations() * kTokens);
}

void BM_moe_experts_forward(benchmark::State& state) {
  const Inputs& in = inputs();
  const auto r = moe_route(Variable<float, Dyn, Dyn>(in.logits), kTopK, in.scale);
  for (auto _ : state) {
    auto out = moe_experts(Variable<float, Dyn, Dyn>(in.h), r.weights, r.experts, in.gate_up, in.down);
    benchmark::DoNotOptimize(out.value().data());
  }
  state.counters["FLOP/s"] = benchmark::Counter(kForwardFlop, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_moe_experts_forward_backward(benchmark::State& state) {
  const Inputs& in = inputs();
  auto logits = Variable<float, Dyn, Dyn>::leaf(in.logits);
  auto h = Variable<float, Dyn, Dyn>::leaf(in.h);
  for (auto _ : state) {
    const auto r = moe_route(logits, kTopK, in.scale);
    backward(sum(moe_experts(h, r.weights, r.experts, in.gate_up, in.down)));
    h.zero_grad();
    logits.zero_grad();
  }
  state.counters["FLOP/s"] = benchmark::Counter(3 * kForwardFlop, benchmark::Counter::kIsIterationInvariantRate);
}

BENCHMARK(BM_moe_route)->UseRealTime();
BENCHMARK(BM_moe_experts_forward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_moe_experts_forward_backward)->Unit(benchmark::kMillisecond)->UseRealTime();
}  // namespace moe_bench
