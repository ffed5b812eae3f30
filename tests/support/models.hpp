// Whole models for tests, through the compiled CausalLM interface (qlora::models, nn/causal_lm.hpp): the tiny
// checkpoint is served by the run-time-shaped Gemma 3 compiled once in the library, so a test file that only needs
// a model's logits, loss, parameters, adapters or decoding instantiates no model type of its own (build time: each
// model type costs a test file about a minute of compiling). Tests of the composed types themselves (blocks, fp64
// gradchecks, static against run-time extents) stay in tests/nn/model.cpp.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <qlora/nn/causal_lm.hpp>

namespace qlora::test {

// tests/data, and the tiny random Gemma 3 that transformers saved there.
inline const std::filesystem::path kData = std::filesystem::path(QLORA_TEST_DATA_DIR);
inline const std::filesystem::path kTiny = kData / "gemma3_model" / "tiny";

// A golden JSON file (written by a script in tests/golden/); a missing file fails the test with its name.
inline nlohmann::json read_json(const std::filesystem::path& p) {
  std::ifstream in(p);
  REQUIRE_MESSAGE(in.good(), "missing golden file ", p.string(), " (written by a script in tests/golden/)");
  return nlohmann::json::parse(in);
}

// max |got - want| / max |want| over two logit matrices [T, V] (want: the golden file's nested lists).
inline double logits_relative_error(const Tensor<float, Dyn, Dyn>& got, const nlohmann::json& want) {
  double worst = 0, scale = 0;
  REQUIRE(static_cast<index_t>(want.size()) == got.size(0));
  for (index_t t = 0; t < got.size(0); ++t) {
    REQUIRE(static_cast<index_t>(want[t].size()) == got.size(1));
    for (index_t v = 0; v < got.size(1); ++v) {
      const double w = want[t][v].get<double>();
      worst = std::max(worst, std::abs(got(t, v) - w));
      scale = std::max(scale, std::abs(w));
    }
  }
  return worst / scale;
}

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
