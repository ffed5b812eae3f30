// --cpu-gemm of the subcommands that run a model: which CPU GEMM the model's device carries (ops/matmul.hpp).
#pragma once

#include <cstdio>
#include <string>

#include <qlora/core/error.hpp>
#include <qlora/ops/matmul.hpp>

namespace qlora::cli {

// auto: the fastest GEMM this build and this CPU have for the precision (oneDNN where built, bf16 operands with
// `bf16` where the CPU has bf16 units, else Eigen); a named one must be available, else an error saying what lacks.
inline CpuGemm choose_cpu_gemm(const std::string& name, bool bf16, const char* command) {
  if (name == "auto") return fastest_cpu_gemm(bf16);
  const auto g = cpu_gemm_named(name);
  if (!g) fail(command, "--cpu-gemm ", name, ": use auto, eigen, onednn or onednn-bf16");
  if (!cpu_gemm_available(*g))
    fail(command, "--cpu-gemm ", name, ": ",
         cpu_gemm_available(CpuGemm::onednn) ? "this CPU has no bf16 units (AVX512-BF16 or AMX)"
                                             : "this qlora was built without oneDNN (apt-get install libdnnl-dev)");
  return *g;
}

// The line each command that runs a model prints on stderr before loading it: which CPU GEMM runs its products.
inline void announce_cpu_gemm(CpuGemm g) { std::fprintf(stderr, "qlora: CPU GEMM: %s\n", describe_cpu_gemm(g).c_str()); }

}  // namespace qlora::cli
