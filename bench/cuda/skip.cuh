// The CUDA benchmarks' common guard: without a GPU each benchmark reports "no CUDA GPU" and does nothing.
#pragma once

#include <benchmark/benchmark.h>

#include <qlora/cuda.hpp>

namespace qlora::bench {
inline bool no_gpu(benchmark::State& state) {
  if (cuda::available()) return false;
  state.SkipWithError("no CUDA GPU");
  return true;
}
}  // namespace qlora::bench
