// The shapes the per-op CPU benchmarks run at: 512 tokens of each real Gemma 3 config the issue names (270M, 1B,
// 4B), read from the config types of nn/config.hpp so no extent is written twice. Benchmarks register them with
// ->Apply(each_config<args>); the argument lists name their extents (ArgNames), so a row reads e.g.
// "BM_matmul_linear_forward/tokens:512/in:2560/out:10240".
#pragma once

#include <benchmark/benchmark.h>

#include <array>
#include <vector>

#include <qlora/nn/config.hpp>

namespace bench {
using qlora::index_t;

inline constexpr index_t kTokens = 512;

struct ConfigShape {
  index_t hidden, intermediate, heads, kv_heads, head_dim, q_dim, kv_dim, vocab, window;
};
template <class Cfg>
constexpr ConfigShape shape_of() {
  return {Cfg::hidden, Cfg::intermediate, Cfg::heads, Cfg::kv_heads, Cfg::head_dim,
          Cfg::q_dim,  Cfg::kv_dim,       Cfg::vocab, Cfg::sliding_window};
}
inline constexpr std::array<ConfigShape, 3> kConfigs = {shape_of<qlora::Gemma3_270M>(), shape_of<qlora::Gemma3_1B>(),
                                                        shape_of<qlora::Gemma3_4B>()};

using ArgLists = std::vector<std::vector<std::int64_t>>;

// ->Apply(each_config<args>): adds args(shape) (one or more argument lists) for each config.
template <ArgLists (*Args)(const ConfigShape&)>
void each_config(benchmark::internal::Benchmark* b) {
  for (const ConfigShape& c : kConfigs)
    for (const std::vector<std::int64_t>& a : Args(c)) b->Args(a);
}
}  // namespace bench
