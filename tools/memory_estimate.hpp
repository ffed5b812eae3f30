// How much memory a CPU fine-tune will need, estimated before anything big is loaded, so a run that cannot fit stops
// at once with the figures (model, adapter + optimizer, activations) instead of being killed later.
//   model: NF4 projections (0.516 B/param with double quantization) + fp32 embedding + norms
//   adapter: fp32 A, B, their gradients and two fp32 AdamW moments (an upper bound for 8-bit AdamW)
//   activations per token and layer (fp32): with checkpointing only the block input (C) plus one block's worth in
//   backward; without it every block keeps ≈ 8 C + 4 Hq·D + 2 Hkv·D + 4 I values (norms, q/k/v, attention, MLP)
#pragma once

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include <sys/resource.h>

#include <qlora/core/error.hpp>
#include <qlora/nn/adapter.hpp>
#include <qlora/nn/config.hpp>

namespace qlora::cli {

struct MemoryEstimate {
  double model = 0, adapter = 0, activations = 0;
  double total() const { return model + adapter + activations; }
};

// The adapter is charged for the projections `targets` adapt, each with its own rank (fp32 A and B, their gradients
// and two optimizer moments: 4 copies).
inline MemoryEstimate estimate_memory(const Gemma3RuntimeConfig& c, const LoraTargets& targets, index_t tokens,
                                      bool checkpointing) {
  const double C = static_cast<double>(c.hidden), I = static_cast<double>(c.intermediate),
               L = static_cast<double>(c.layers), V = static_cast<double>(c.vocab);
  const double q = static_cast<double>(c.heads * c.head_dim), kv = static_cast<double>(c.kv_heads * c.head_dim);
  const double proj_params = L * (C * q + 2 * C * kv + q * C + 3 * C * I);
  MemoryEstimate e;
  e.model = proj_params * 0.516 + V * C * 4 + L * (4 * C + 2 * static_cast<double>(c.head_dim)) * 4;
  for (index_t l = 0; l < c.layers; ++l)
    for (Projection p : all_projections)
      if (const auto spec = targets.at(l, p)) {
        const double in_out = p == Projection::q_proj ? C + q
                              : p == Projection::k_proj || p == Projection::v_proj ? C + kv
                              : p == Projection::o_proj ? q + C
                                                        : C + I;
        e.adapter += static_cast<double>(spec->rank) * in_out * 4 * 4;
      }
  const double per_block = 8 * C + 4 * q + 2 * kv + 4 * I;
  const double t = static_cast<double>(tokens);
  e.activations = (checkpointing ? t * L * C + t * per_block : t * L * per_block) * 4 * 2 +  // values + gradients
                  t * 8192 * 4 * 2 + 128.0 * 8192 * 4;  // cross-entropy chunks
  return e;
}

// The same run on one GPU as the Python recipes run it (bnb NF4 base with double quantization, bf16 embedding and
// activations, fp32 LoRA weights and gradients, 8-bit or fp32 AdamW states, attention that never stores [T, T]),
// plus the CUDA context, cuBLAS workspace and one dequantized projection (bf16): what a card must hold.
inline MemoryEstimate estimate_gpu_memory(const Gemma3RuntimeConfig& c, const LoraTargets& targets, index_t tokens,
                                          bool checkpointing, bool eight_bit_optimizer) {
  MemoryEstimate e = estimate_memory(c, targets, tokens, checkpointing);
  const double C = static_cast<double>(c.hidden), I = static_cast<double>(c.intermediate),
               V = static_cast<double>(c.vocab);
  e.model += -V * C * 4 + V * C * 2 + I * C * 2;   // bf16 embedding; one dequantized projection at a time
  e.model += 0.75 * 1024.0 * 1024.0 * 1024.0;      // CUDA context, cuBLAS / cuBLASLt workspaces
  // adapter: weights + gradients fp32 (2 of the CPU's 4 copies), states 2 bytes (8-bit) or 8 bytes per parameter
  const double lora_params = e.adapter / 16;
  e.adapter = lora_params * (8 + (eight_bit_optimizer ? 2.05 : 8));
  e.activations = e.activations / 2;               // bf16 instead of fp32
  return e;
}

// The memory this process may use, in bytes: the least of MemAvailable (/proc/meminfo), the address-space limit
// (ulimit -v) and a cgroup v2 limit (memory.max − memory.current, what a container or systemd slice allows);
// QLORA_MEMORY_AVAILABLE (bytes) pretends another figure; 0 when none is known.
inline double available_memory() {
  if (const char* pretend = std::getenv("QLORA_MEMORY_AVAILABLE"); pretend && *pretend) return std::atof(pretend);
  double have = 0;
  auto least = [&](double v) {
    if (v > 0 && (have == 0 || v < have)) have = v;
  };
  {
    std::ifstream in("/proc/meminfo");
    std::string key, unit;
    double kb = 0;
    while (in >> key >> kb >> unit)
      if (key == "MemAvailable:") least(kb * 1024);
  }
  rlimit as{};
  if (::getrlimit(RLIMIT_AS, &as) == 0 && as.rlim_cur != RLIM_INFINITY) least(static_cast<double>(as.rlim_cur));
  std::ifstream max_file("/sys/fs/cgroup/memory.max"), current_file("/sys/fs/cgroup/memory.current");
  std::string max_text;
  double current = 0;
  if (max_file >> max_text && max_text != "max" && current_file >> current) {
    const double limit = std::atof(max_text.c_str());
    least(limit > current ? limit - current : 1);
  }
  return have;
}

// `ranks_here`: processes of a data-parallel run on this machine, each holding all of it.
inline void check_memory(const Gemma3RuntimeConfig& c, const LoraTargets& targets, index_t tokens_per_micro_batch,
                         bool checkpointing, int ranks_here = 1) {
  const MemoryEstimate e = estimate_memory(c, targets, tokens_per_micro_batch, checkpointing);
  const double have = available_memory();
  constexpr double GiB = 1024.0 * 1024.0 * 1024.0;
  std::fprintf(stderr, "qlora: memory estimate %.2f GiB (model %.2f, adapter + optimizer %.3f, activations %.2f for %lld "
               "tokens per micro-batch%s)%s; available %.1f GiB\n", e.total() / GiB, e.model / GiB, e.adapter / GiB,
               e.activations / GiB, static_cast<long long>(tokens_per_micro_batch),
               checkpointing ? ", gradient checkpointing" : "",
               ranks_here > 1 ? detail::concat(" per rank, ", ranks_here, " ranks on this machine").c_str() : "",
               have / GiB);
  const double need = e.total() * ranks_here;
  if (have > 0 && need > have)
    fail("finetune", "not enough memory: this run needs about ", need / GiB, " GiB (model ", e.model / GiB,
         ", activations ", e.activations / GiB, ranks_here > 1 ? detail::concat(", times ", ranks_here, " ranks") : "",
         ") but ", have / GiB, " GiB are available; try --gradient-checkpointing, "
         "a smaller --max-seq-length or --per-device-train-batch-size");
}

}  // namespace qlora::cli
