// Where a Gemma 3 model's weights come from: a Hugging Face checkpoint (a folder with config.json and one or more
// *.safetensors files, sharded or not, text-only or multimodal) or a GGUF file (llama.cpp / Ollama). Inside qlora
// every tensor is named as in transformers' Gemma3TextModel ("layers.3.self_attn.q_proj.weight", "norm.weight",
// "embed_tokens.weight"); this class maps those names to the file's and reads one tensor at a time (so a model is
// never held twice in memory while it loads).
//
// GGUF differences it undoes: the tensor names (blk.N.attn_q, ffn_norm, ...), and the +1 that llama.cpp's converter
// adds to every Gemma norm weight (transformers stores w and computes x·(1 + w); the GGUF stores 1 + w).
#pragma once

#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "../io/gguf.hpp"
#include "../io/safetensors.hpp"
#include "config_io.hpp"

namespace qlora {

namespace detail {
// "layers.3.self_attn.q_proj.weight" -> "blk.3.attn_q.weight"; "" for a name GGUF does not have.
inline std::string gguf_name_of(std::string_view hf) {
  if (hf == "embed_tokens.weight") return "token_embd.weight";
  if (hf == "norm.weight") return "output_norm.weight";
  constexpr std::string_view layers = "layers.";
  if (hf.substr(0, layers.size()) != layers) return "";
  const std::string_view rest = hf.substr(layers.size());
  const std::size_t dot = rest.find('.');
  if (dot == std::string_view::npos) return "";
  const std::string_view index = rest.substr(0, dot), leaf = rest.substr(dot + 1);
  static constexpr std::pair<std::string_view, std::string_view> map[] = {
      {"self_attn.q_proj.weight", "attn_q.weight"},
      {"self_attn.k_proj.weight", "attn_k.weight"},
      {"self_attn.v_proj.weight", "attn_v.weight"},
      {"self_attn.o_proj.weight", "attn_output.weight"},
      {"self_attn.q_norm.weight", "attn_q_norm.weight"},
      {"self_attn.k_norm.weight", "attn_k_norm.weight"},
      {"input_layernorm.weight", "attn_norm.weight"},
      {"post_attention_layernorm.weight", "post_attention_norm.weight"},
      {"pre_feedforward_layernorm.weight", "ffn_norm.weight"},
      {"post_feedforward_layernorm.weight", "post_ffw_norm.weight"},
      {"mlp.gate_proj.weight", "ffn_gate.weight"},
      {"mlp.up_proj.weight", "ffn_up.weight"},
      {"mlp.down_proj.weight", "ffn_down.weight"},
  };
  for (const auto& [from, to] : map)
    if (leaf == from) return "blk." + std::string(index) + "." + std::string(to);
  return "";
}
inline bool is_norm_weight(std::string_view hf) { return hf.find("norm.weight") != std::string_view::npos; }
}  // namespace detail

class Gemma3WeightSource {
 public:
  // A .gguf file, a checkpoint folder, or one .safetensors file (config.json beside it).
  static Gemma3WeightSource open(const std::filesystem::path& path) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) fail("model", path.string(), ": no such file or folder");
    Gemma3WeightSource s;
    s.path_ = path;
    if (!std::filesystem::is_directory(path) && path.extension() == ".gguf") {
      s.gguf_ = std::make_unique<GgufFile>(path);
      s.config_ = gemma3_config_from_gguf(*s.gguf_);
      return s;
    }
    const std::filesystem::path dir = std::filesystem::is_directory(path) ? path : path.parent_path();
    const std::filesystem::path config = dir / "config.json";
    if (!std::filesystem::exists(config))
      fail("model", path.string(), ": not a GGUF file, and no config.json in ", dir.string(),
           " (a Hugging Face checkpoint folder holds config.json and *.safetensors)");
    std::ifstream in(config);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      fail("model", config.string(), ": not valid JSON: ", e.what());
    }
    s.config_ = gemma3_config_from_json(j, config.string());
    s.hf_config_ = j;
    s.safetensors_ = std::make_unique<SafetensorsCheckpoint>(path);
    return s;
  }

  const std::filesystem::path& path() const { return path_; }
  const Gemma3RuntimeConfig& config() const { return config_; }
  bool is_gguf() const { return gguf_ != nullptr; }
  const GgufFile* gguf() const { return gguf_.get(); }
  // config.json of a Hugging Face checkpoint (null for GGUF).
  const nlohmann::json& hf_config() const { return hf_config_; }

  // The tensor with transformers' text-model name, as T, in transformers' convention (norms: w, not 1 + w).
  template <class T, class... Ds>
  Tensor<T, Ds...> read(std::string_view hf_name) const {
    if (gguf_) {
      const std::string name = detail::gguf_name_of(hf_name);
      if (name.empty()) fail("model", path_.string(), ": tensor ", hf_name, " has no GGUF name");
      if (!gguf_->has_tensor(name))
        fail("model", path_.string(), ": tensor ", name, " (", hf_name, ") is missing");
      Tensor<T, Ds...> t = gguf_->read<T, Ds...>(name);
      if (detail::is_norm_weight(hf_name))
        for (index_t i = 0; i < t.numel(); ++i) t.data()[i] = convert<T>(convert<double>(t.data()[i]) - 1.0);
      return t;
    }
    return safetensors_->read_text<T, Ds...>(hf_name);
  }

 private:
  Gemma3WeightSource() = default;
  std::filesystem::path path_;
  Gemma3RuntimeConfig config_;
  nlohmann::json hf_config_;
  std::unique_ptr<GgufFile> gguf_;
  std::unique_ptr<SafetensorsCheckpoint> safetensors_;
};

}  // namespace qlora
