// Where a Gemma 4 text model's weights come from: a Hugging Face checkpoint folder (config.json and one or more
// *.safetensors files), text-only (Gemma4ForCausalLM: "model.layers.0...") or multimodal
// (Gemma4ForConditionalGeneration: "model.language_model.layers.0...", the vision and audio towers beside it, never
// read here). Inside qlora tensors are named as in transformers' Gemma4TextModel ("layers.3.self_attn.q_proj.weight",
// "embed_tokens_per_layer.weight"); every read checks the tensor's shape against the layer plan
// (nn/gemma4_config.hpp) and names the tensor, the file and both shapes when they differ.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "../io/json_file.hpp"
#include "../io/safetensors.hpp"
#include "gemma4_config.hpp"

namespace qlora {

class Gemma4WeightSource {
 public:
  // A checkpoint folder, or one .safetensors file with config.json beside it.
  static Gemma4WeightSource open(const std::filesystem::path& path) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) fail("model", path.string(), ": no such file or folder");
    const std::filesystem::path dir = std::filesystem::is_directory(path) ? path : path.parent_path();
    const std::filesystem::path config = dir / "config.json";
    if (!std::filesystem::exists(config))
      fail("model", path.string(), ": no config.json in ", dir.string(),
           " (a Hugging Face checkpoint folder holds config.json and *.safetensors)");
    const nlohmann::json j = detail::read_json_file(config, "model");
    Gemma4WeightSource s;
    s.path_ = path;
    s.config_ = gemma4_config_from_json(j, config.string());
    s.hf_config_ = j;
    s.checkpoint_ = std::make_shared<const SafetensorsCheckpoint>(path);
    return s;
  }

  const std::filesystem::path& path() const { return path_; }
  const Gemma4RuntimeConfig& config() const { return config_; }
  const nlohmann::json& hf_config() const { return hf_config_; }
  // The folder holding config.json (and the tokenizer, chat template and generation config).
  std::filesystem::path folder() const {
    return std::filesystem::is_directory(path_) ? path_ : path_.parent_path();
  }
  // The class the checkpoint was saved from: Gemma4ForConditionalGeneration when config.json nests the text model
  // under text_config or names that class, else Gemma4ForCausalLM.
  ModelLayout layout() const {
    if (hf_config_.contains("text_config")) return ModelLayout::conditional_generation;
    if (hf_config_.contains("architectures") && hf_config_["architectures"].is_array())
      for (const auto& a : hf_config_["architectures"])
        if (a.is_string() && a.get<std::string>() == "Gemma4ForConditionalGeneration")
          return ModelLayout::conditional_generation;
    return ModelLayout::causal_lm;
  }
  const SafetensorsCheckpoint& checkpoint() const { return *checkpoint_; }

  // Whether the checkpoint holds this text-model tensor (under any of the text prefixes).
  bool contains(std::string_view text_name) const {
    for (std::string_view p : gemma3_text_prefixes)
      if (checkpoint_->contains(std::string(p) + std::string(text_name))) return true;
    return false;
  }

  // The tensor `text_name` as T, which must have exactly `extents` (the plan's shape).
  template <class T, class... Ns>
  auto read(std::string_view text_name, Ns... extents) const {
    static_assert(sizeof...(Ns) >= 1 && sizeof...(Ns) <= 3, "a weight has 1 to 3 extents");
    const std::string full = checkpoint_->text_tensor_name(text_name);
    const auto& info = checkpoint_->info(full);
    const std::vector<index_t> want{static_cast<index_t>(extents)...};
    if (info.shape != want)
      fail("model", checkpoint_->path().string(), ": tensor ", full, " has shape ", shape_text(info.shape),
           ", the configuration gives ", shape_text(want));
    // spelled per rank: nvcc's host-code generator loses the pack in a pack expansion of an alias of Dyn
    if constexpr (sizeof...(Ns) == 1) return checkpoint_->read<T, Dyn>(full);
    else if constexpr (sizeof...(Ns) == 2) return checkpoint_->read<T, Dyn, Dyn>(full);
    else return checkpoint_->read<T, Dyn, Dyn, Dyn>(full);
  }

 private:
  static std::string shape_text(const std::vector<index_t>& s) {
    std::string out = "[";
    for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
    return out + "]";
  }

  std::filesystem::path path_;
  Gemma4RuntimeConfig config_;
  nlohmann::json hf_config_;
  std::shared_ptr<const SafetensorsCheckpoint> checkpoint_;
};

}  // namespace qlora
