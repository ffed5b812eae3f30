// How much memory a CPU fine-tune will need, estimated before anything big is loaded, so a run that cannot fit stops
// at once with the figures (model, adapter + optimizer, activations) instead of being killed later.
//   model: NF4 projections (0.516 B/param with double quantization) + fp32 embedding + norms
//   adapter: fp32 A, B, their gradients and two fp32 AdamW moments (an upper bound for 8-bit AdamW)
//   activations per token and layer (fp32): with checkpointing only the block input (C) plus one block's worth in
//   backward; without it every block keeps ≈ 8 C + 4 Hq·D + 2 Hkv·D + 4 I values (norms, q/k/v, attention, MLP)
// Per layer from its own extents (Gemma 4's layers differ: head_dim 512 on full layers, no k/v on KV-sharing
// consumers, double-wide MLPs), plus Gemma 4's per-layer-input table and projections.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>
#include <algorithm>

#include <sys/resource.h>

#include <qlora/core/error.hpp>
#include <qlora/nn/adapter.hpp>
#include <qlora/nn/config.hpp>
#include <qlora/nn/gemma4_config.hpp>

namespace qlora::cli {

struct MemoryEstimate {
  double model = 0, adapter = 0, activations = 0;
  double total() const { return model + adapter + activations; }
};

// What an estimate needs of one decoder layer: the widths of its seven projections' outputs (k and v 0 where the
// layer has none: Gemma 4's KV-sharing consumers, v on its k = v layers) and its other frozen parameters.
struct LayerExtents {
  double q = 0, k = 0, v = 0, intermediate = 0, head_dim = 0;
  double other_linear = 0;  // quantized linear weights besides the seven (Gemma 4's per-layer-input gate, projection)
  double norms = 0;         // norm weights (fp32)
};
// ... and of the whole model.
struct ModelExtents {
  double hidden = 0, vocab = 0;
  double other_linear = 0;  // Gemma 4: per_layer_model_projection
  double other_table = 0;   // Gemma 4: the per-layer-input table and MoE experts (held like the embedding)
  double norms = 0;
  std::vector<LayerExtents> layers;
};

inline ModelExtents extents_of(const Gemma3RuntimeConfig& c) {
  ModelExtents m;
  m.hidden = static_cast<double>(c.hidden);
  m.vocab = static_cast<double>(c.vocab);
  LayerExtents l;
  l.q = static_cast<double>(c.heads * c.head_dim);
  l.k = l.v = static_cast<double>(c.kv_heads * c.head_dim);
  l.intermediate = static_cast<double>(c.intermediate);
  l.head_dim = static_cast<double>(c.head_dim);
  l.norms = 4 * m.hidden + 2 * l.head_dim;
  m.layers.assign(static_cast<std::size_t>(c.layers), l);
  return m;
}

inline ModelExtents extents_of(const Gemma4RuntimeConfig& c) {
  ModelExtents m;
  m.hidden = static_cast<double>(c.hidden);
  m.vocab = static_cast<double>(c.vocab);
  const double p = static_cast<double>(c.hidden_per_layer_input), layers = static_cast<double>(c.layers);
  m.other_linear = layers * p * m.hidden;
  m.other_table = static_cast<double>(c.vocab_per_layer_input) * layers * p;
  m.norms = m.hidden + p;
  for (const Gemma4LayerPlan& plan : c.plan) {
    LayerExtents l;
    l.head_dim = static_cast<double>(plan.head_dim);
    l.q = static_cast<double>(c.heads) * l.head_dim;
    if (plan.computes_kv()) l.k = static_cast<double>(plan.kv_heads) * l.head_dim;
    if (plan.computes_kv() && !plan.k_eq_v) l.v = l.k;
    l.intermediate = static_cast<double>(plan.intermediate);
    l.other_linear = 2 * m.hidden * p;
    l.norms = (p > 0 ? 5 : 4) * m.hidden + 2 * l.head_dim;
    if (c.moe) {  // router (quantized like a projection), experts (held in the compute type, like a table), norms
      const double e = static_cast<double>(c.experts), mi = static_cast<double>(c.moe_intermediate);
      l.other_linear += e * m.hidden;
      m.other_table += e * 3 * mi * m.hidden;
      l.norms += 4 * m.hidden + e;
    }
    m.layers.push_back(l);
  }
  return m;
}

// The adapter is charged for the projections `targets` adapt, each with its own rank (fp32 A and B, their gradients
// and two optimizer moments: 4 copies); a projection the layer does not have is not charged.
inline MemoryEstimate estimate_memory(const ModelExtents& m, const LoraTargets& targets, index_t tokens,
                                      bool checkpointing) {
  const double C = m.hidden, V = m.vocab;
  double proj_params = m.other_linear, norms = m.norms, max_block = 0, max_intermediate = 0;
  MemoryEstimate e;
  for (std::size_t i = 0; i < m.layers.size(); ++i) {
    const LayerExtents& l = m.layers[i];
    proj_params += C * l.q + C * l.k + C * l.v + l.q * C + 3 * C * l.intermediate + l.other_linear;
    norms += l.norms;
    max_block = std::max(max_block, 8 * C + 4 * l.q + l.k + l.v + 4 * l.intermediate);
    max_intermediate = std::max(max_intermediate, l.intermediate);
    for (Projection p : all_projections) {
      const double out = p == Projection::q_proj ? l.q : p == Projection::k_proj ? l.k : p == Projection::v_proj ? l.v : 0;
      if ((p == Projection::k_proj || p == Projection::v_proj) && out == 0) continue;  // no such projection here
      if (const auto spec = targets.at(static_cast<index_t>(i), p)) {
        const double in_out = p == Projection::o_proj ? l.q + C : out > 0 ? C + out : C + l.intermediate;
        e.adapter += static_cast<double>(spec->rank) * in_out * 4 * 4;
      }
    }
  }
  e.model = proj_params * 0.516 + (V * C + m.other_table) * 4 + norms * 4;
  const double t = static_cast<double>(tokens), L = static_cast<double>(m.layers.size());
  e.activations = (checkpointing ? t * L * C + t * max_block : t * L * max_block) * 4 * 2 +  // values + gradients
                  t * 8192 * 4 * 2 + 128.0 * 8192 * 4;  // cross-entropy chunks
  return e;
}

// The same run on one GPU as the Python recipes run it (bnb NF4 base with double quantization, bf16 embedding tables
// and activations, fp32 LoRA weights and gradients, 8-bit or fp32 AdamW states, attention that never stores [T, T]),
// plus the CUDA context, cuBLAS workspace and one dequantized projection (bf16): what a card must hold.
inline MemoryEstimate estimate_gpu_memory(const ModelExtents& m, const LoraTargets& targets, index_t tokens,
                                          bool checkpointing, bool eight_bit_optimizer) {
  MemoryEstimate e = estimate_memory(m, targets, tokens, checkpointing);
  double I = 0;
  for (const LayerExtents& l : m.layers) I = std::max(I, l.intermediate);
  const double tables = m.vocab * m.hidden + m.other_table;
  e.model += -tables * 4 + tables * 2 + I * m.hidden * 2;  // bf16 tables; one dequantized projection at a time
  e.model += 0.75 * 1024.0 * 1024.0 * 1024.0;               // CUDA context, cuBLAS / cuBLASLt workspaces
  // adapter: weights + gradients fp32 (2 of the CPU's 4 copies), states 2 bytes (8-bit) or 8 bytes per parameter
  const double lora_params = e.adapter / 16;
  e.adapter = lora_params * (8 + (eight_bit_optimizer ? 2.05 : 8));
  e.activations = e.activations / 2;  // bf16 instead of fp32
  return e;
}

template <class Config>
MemoryEstimate estimate_memory(const Config& c, const LoraTargets& targets, index_t tokens, bool checkpointing) {
  return estimate_memory(extents_of(c), targets, tokens, checkpointing);
}
template <class Config>
MemoryEstimate estimate_gpu_memory(const Config& c, const LoraTargets& targets, index_t tokens, bool checkpointing,
                                   bool eight_bit_optimizer) {
  return estimate_gpu_memory(extents_of(c), targets, tokens, checkpointing, eight_bit_optimizer);
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
  // the address-space limit, less what the process has mapped already (a CUDA build maps ~0.8 GB of cuBLAS at start)
  rlimit as{};
  if (::getrlimit(RLIMIT_AS, &as) == 0 && as.rlim_cur != RLIM_INFINITY) {
    double mapped = 0;
    std::ifstream status("/proc/self/status");
    for (std::string line; std::getline(status, line);)
      if (line.rfind("VmSize:", 0) == 0) mapped = std::strtod(line.c_str() + 7, nullptr) * 1024.0;
    const double limit = static_cast<double>(as.rlim_cur);
    least(limit > mapped ? limit - mapped : 1);
  }
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
template <class Config>  // Gemma3RuntimeConfig or Gemma4RuntimeConfig
void check_memory(const Config& c, const LoraTargets& targets, index_t tokens_per_micro_batch,
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

// The same check for a run on a GPU: the GPU estimate (weights, adapter, optimizer states and activations there)
// against the memory free on it (`free_bytes`, negative where unknown).
template <class Config>
void check_gpu_memory(const Config& c, const LoraTargets& targets, index_t tokens_per_micro_batch, bool checkpointing,
                      bool eight_bit_optimizer, double free_bytes, const std::string& device) {
  const MemoryEstimate e = estimate_gpu_memory(c, targets, tokens_per_micro_batch, checkpointing, eight_bit_optimizer);
  constexpr double GiB = 1024.0 * 1024.0 * 1024.0;
  std::fprintf(stderr, "qlora: GPU memory estimate %.2f GiB (model %.2f, adapter + optimizer %.3f, activations %.2f for "
               "%lld tokens per micro-batch%s); free on %s %.1f GiB\n", e.total() / GiB, e.model / GiB,
               e.adapter / GiB, e.activations / GiB, static_cast<long long>(tokens_per_micro_batch),
               checkpointing ? ", gradient checkpointing" : "", device.c_str(), free_bytes / GiB);
  if (free_bytes > 0 && e.total() > free_bytes)
    fail("finetune", "not enough GPU memory on ", device, ": this run needs about ", e.total() / GiB, " GiB (model ",
         e.model / GiB, ", activations ", e.activations / GiB, ") but ", free_bytes / GiB, " GiB are free; try "
         "--gradient-checkpointing, a smaller --max-seq-length or --per-device-train-batch-size");
}

}  // namespace qlora::cli
