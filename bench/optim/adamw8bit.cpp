// One AdamW8bit step (bitsandbytes' blockwise 8-bit states, optim/adamw8bit.hpp) over the LoRA parameters of Gemma 3
// 270M with r 16 on all seven projections (18 layers × 14 tensors, 3.8 M values), as a training step runs it:
// dequantize m and v, update, quantize back through the code table. items/s = parameter values.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include <qlora/optim/adamw8bit.hpp>
#include <qlora/qlora.hpp>

namespace {
using namespace qlora;

void BM_adamw8bit_step_270m_lora(benchmark::State& state) {
  constexpr index_t layers = 18, r = 16;
  // (in, out) of q, k, v, o, gate, up, down at 270M: hidden 640, q 1024, kv 256, intermediate 2048
  const index_t shapes[7][2] = {{640, 1024}, {640, 256}, {640, 256}, {1024, 640}, {640, 2048}, {640, 2048}, {2048, 640}};
  std::vector<Variable<float, Dyn>> vars;
  std::vector<Parameter> params;
  index_t values = 0;
  for (index_t l = 0; l < layers; ++l)
    for (const auto& s : shapes)
      for (const index_t n : {r * s[0], s[1] * r}) {  // A: [r, in], B: [out, r]
        Tensor<float, Dyn> t = Tensor<float, Dyn>::zeros(n);
        for (index_t i = 0; i < n; ++i) t.data()[i] = uniform01({3, static_cast<std::uint64_t>(vars.size())}, static_cast<std::uint64_t>(i)) - 0.5f;
        vars.push_back(Variable<float, Dyn>::leaf(std::move(t)));
        values += n;
      }
  for (std::size_t i = 0; i < vars.size(); ++i) {
    std::string name = "p";  // not "p" + to_string(i): GCC 12 warns falsely there (-Wrestrict, bug 105329)
    name += std::to_string(i);
    params.emplace_back(name, vars[i]);
  }
  AdamW8bit opt(params);
  for (std::size_t i = 0; i < vars.size(); ++i) {  // a gradient of sum(p · g) is g
    Tensor<float, Dyn> g = Tensor<float, Dyn>::zeros(vars[i].value().numel());
    for (index_t j = 0; j < g.numel(); ++j) g.data()[j] = uniform01({4, i}, static_cast<std::uint64_t>(j)) * 1e-3f;
    backward(sum(vars[i] * Variable<float, Dyn>(std::move(g))));
  }
  for (auto _ : state) opt.step(2e-4);  // the gradients stay: every step does the same work
  state.SetItemsProcessed(state.iterations() * values);
}
}  // namespace

BENCHMARK(BM_adamw8bit_step_270m_lora)->UseRealTime()->Unit(benchmark::kMillisecond);
