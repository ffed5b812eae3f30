// Whole models for tests, through the compiled CausalLM interface (qlora::models, nn/causal_lm.hpp): the tiny
// checkpoint is served by the run-time-shaped Gemma 3 compiled once in the library, so a test file that only needs
// a model's logits, loss, parameters, adapters or decoding instantiates no model type of its own (build time: each
// model type costs a test file about a minute of compiling). Tests of the composed types themselves (blocks, fp64
// gradchecks, static against run-time extents) stay in tests/nn/model.cpp.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <random>
#include <string>

#include <qlora/nn/causal_lm.hpp>

namespace qlora::test {

// tests/data, and the tiny random Gemma 3 that transformers saved there.
inline const std::filesystem::path kData = std::filesystem::path(QLORA_TEST_DATA_DIR);
inline const std::filesystem::path kTiny = kData / "gemma3_model" / "tiny";

// The tiny Gemma 3 (tests/data/gemma3_model/tiny) with `options`' adapter; fp32 weights as saved unless told.
inline std::unique_ptr<CausalLM> open_tiny(const Gemma3Options& options = {},
                                           CausalLMWeights weights = CausalLMWeights::fp32) {
  return open_causal_lm(Gemma3WeightSource::open(kTiny), options, weights);
}

// B is zero at initialisation, which would hide A's gradient and the adapter's effect: fill every B matrix with
// seeded values in [-scale, scale].
inline void randomise_lora_b(const ParameterList& params, std::uint64_t seed, float scale = 0.5f) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-scale, scale);
  for (const auto& p : params) {
    if (!p.name().ends_with("lora_B.weight")) continue;
    float* b = p.value().data();
    for (index_t i = 0; i < p.numel(); ++i) b[i] = u(rng);
  }
}
inline void randomise_lora_b(const CausalLM& model, std::uint64_t seed, float scale = 0.5f) {
  randomise_lora_b(model.lora_parameters(), seed, scale);
}

// The LoRA parameter of that PEFT name (e.g. "layers.3.mlp.down_proj.lora_A"), or nullptr.
inline const Parameter* find_parameter(const ParameterList& params, const std::string& tail) {
  for (const auto& p : params)
    if (p.name().ends_with(tail + ".weight")) return &p;
  return nullptr;
}

}  // namespace qlora::test
