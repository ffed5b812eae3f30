// Where a Gemma 3 model's weights come from: a Hugging Face checkpoint (a folder with config.json and one or more
// *.safetensors files, sharded or not, text-only or multimodal) or a GGUF file (llama.cpp / Ollama). Inside qlora
// every tensor is named as in transformers' Gemma3TextModel ("layers.3.self_attn.q_proj.weight", "norm.weight",
// "embed_tokens.weight"); this class maps those names to the file's and reads one tensor at a time (so a model is
// never held twice in memory while it loads).
//
// GGUF differences it undoes: the tensor names (blk.N.attn_q, ffn_norm, ...), and the +1 that llama.cpp's converter
// adds to every Gemma norm weight (transformers stores w and computes x·(1 + w); the GGUF stores 1 + w).
//
// `random(config, seed)` is a source without a file (benchmarks of the 1B/4B shapes, memory checks): each tensor is
// generated when read, with the shape its name has in `config`, from Philox keyed by (seed, FNV-1a of the name).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "../io/gguf.hpp"
#include "../io/json_file.hpp"
#include "../core/random.hpp"
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

// The torch shape of a text-model tensor under `c` ("layers.3.mlp.up_proj.weight" -> [intermediate, hidden]);
// empty for a name the model does not have.
inline std::vector<index_t> gemma3_tensor_shape(const Gemma3RuntimeConfig& c, std::string_view hf) {
  if (hf == "embed_tokens.weight") return {c.vocab, c.hidden};
  if (hf == "norm.weight") return {c.hidden};
  const std::string gguf = gguf_name_of(hf);  // non-empty exactly for the per-layer names
  if (gguf.empty()) return {};
  const index_t layer = std::stoll(std::string(hf.substr(7, hf.find('.', 7) - 7)));
  if (layer < 0 || layer >= c.layers) return {};
  const index_t q = c.heads * c.head_dim, kv = c.kv_heads * c.head_dim;
  auto ends = [&](std::string_view leaf) { return hf.size() >= leaf.size() && hf.substr(hf.size() - leaf.size()) == leaf; };
  if (ends("q_norm.weight") || ends("k_norm.weight")) return {c.head_dim};
  if (is_norm_weight(hf)) return {c.hidden};
  if (ends("q_proj.weight")) return {q, c.hidden};
  if (ends("k_proj.weight") || ends("v_proj.weight")) return {kv, c.hidden};
  if (ends("o_proj.weight")) return {c.hidden, q};
  if (ends("gate_proj.weight") || ends("up_proj.weight")) return {c.intermediate, c.hidden};
  if (ends("down_proj.weight")) return {c.hidden, c.intermediate};
  return {};
}

// FNV-1a of `s`; `h` continues the hash of what came before (a hash over several pieces).
inline std::uint64_t fnv1a64(std::string_view s, std::uint64_t h = 0xcbf29ce484222325ull) {  // offset basis, prime
  for (const char ch : s) h = (h ^ static_cast<unsigned char>(ch)) * 0x100000001b3ull;
  return h;
}

// dst[i] = std · (Σ of 4 uniforms − 2) · √3: zero mean, standard deviation `std`, range ±std·2√3 (Irwin–Hall,
// close to normal), from one Philox call per element (counter i, (seed, stream) as key/offset).
template <class T>
void fill_random_normalish(T* dst, index_t n, RandomStream stream, double std) {
  const float scale = static_cast<float>(std * std::sqrt(3.0) / 16777216.0);
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (index_t i = 0; i < n; ++i) {
    const auto u = static_cast<std::uint64_t>(i);
    const Philox4x32 r = philox4x32_10({{static_cast<std::uint32_t>(u), static_cast<std::uint32_t>(u >> 32),
                                         static_cast<std::uint32_t>(stream.offset),
                                         static_cast<std::uint32_t>(stream.offset >> 32)}},
                                       static_cast<std::uint32_t>(stream.seed), static_cast<std::uint32_t>(stream.seed >> 32));
    const std::int64_t sum = static_cast<std::int64_t>(r.v[0] >> 8) + (r.v[1] >> 8) + (r.v[2] >> 8) + (r.v[3] >> 8);
    dst[i] = convert<T>(static_cast<float>(sum - 2 * 16777216) * scale);
  }
}
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
    const nlohmann::json j = detail::read_json_file(config, "model");
    s.config_ = gemma3_config_from_json(j, config.string());
    s.hf_config_ = j;
    return s;  // the safetensors files are opened at the first read, after the configuration has been checked
  }

  // No file: every tensor is generated when read, with the shape `config` gives it and standard deviation 0.02
  // (0.01 for norm weights, which transformers stores as w in x·(1 + w)); the same (config, seed) always gives the
  // same values. path() is "random:<label>". Nothing is held: reading a tensor twice generates it twice.
  static Gemma3WeightSource random(const Gemma3RuntimeConfig& config, std::uint64_t seed,
                                   std::string_view label = "gemma-3") {
    if (config.hidden <= 0 || config.layers <= 0 || config.heads <= 0 || config.kv_heads <= 0 ||
        config.head_dim <= 0 || config.vocab <= 0 || config.intermediate <= 0)
      fail("model", "random:", label, ": the configuration needs positive hidden, intermediate, layers, heads, "
           "kv_heads, head_dim and vocab");
    Gemma3WeightSource s;
    s.path_ = "random:" + std::string(label);
    s.config_ = config;
    s.random_seed_ = seed;
    return s;
  }
  // The same for a configuration type: random<Gemma3_4B>(seed) reports "random:gemma-3-4b".
  template <class Cfg>
  static Gemma3WeightSource random(std::uint64_t seed) {
    return random(runtime_config_of<Cfg>(), seed, Cfg::name);
  }
  bool is_random() const { return random_seed_.has_value(); }

  const std::filesystem::path& path() const { return path_; }
  const Gemma3RuntimeConfig& config() const { return config_; }
  bool is_gguf() const { return gguf_ != nullptr; }
  // Once a model has been built from this source, the file pages its reads brought in need not stay resident (a
  // GGUF of the 270M is 0.25 GiB of them, a 4B's several GiB): they are given back, and come back if read again.
  void release_pages() const {
    if (gguf_) gguf_->release_pages();
    if (safetensors_) safetensors_->release_pages();
  }
  const GgufFile* gguf() const { return gguf_.get(); }
  // config.json of a Hugging Face checkpoint (null for GGUF).
  const nlohmann::json& hf_config() const { return hf_config_; }
  // The folder of a Hugging Face checkpoint (tokenizer, chat template and generation config live there); empty for
  // GGUF and random sources.
  std::filesystem::path folder() const {
    if (is_gguf() || is_random()) return {};
    return std::filesystem::is_directory(path_) ? path_ : path_.parent_path();
  }
  // The class the checkpoint was saved from: Gemma3ForConditionalGeneration when config.json says so (or nests the
  // text model under text_config), else Gemma3ForCausalLM (GGUF files and random sources included).
  ModelLayout layout() const {
    if (hf_config_.is_object()) {
      if (hf_config_.contains("text_config")) return ModelLayout::conditional_generation;
      if (hf_config_.contains("architectures") && hf_config_["architectures"].is_array())
        for (const auto& a : hf_config_["architectures"])
          if (a.is_string() && a.get<std::string>() == "Gemma3ForConditionalGeneration")
            return ModelLayout::conditional_generation;
    }
    return ModelLayout::causal_lm;
  }
  // The safetensors files of a Hugging Face checkpoint (opened on first use); null for GGUF and random sources.
  const SafetensorsCheckpoint* checkpoint() const {
    if (is_gguf() || is_random()) return nullptr;
    if (!safetensors_) safetensors_ = std::make_unique<SafetensorsCheckpoint>(path_);
    return safetensors_.get();
  }
  // The file's tensors outside the text model (vision tower, multimodal projector), which text fine-tuning leaves
  // alone; merge copies them through.
  std::vector<std::string> vision_tensor_names() const {
    std::vector<std::string> out;
    if (const SafetensorsCheckpoint* c = checkpoint())
      for (const auto& name : c->names())
        if (is_gemma3_vision_tensor(name)) out.push_back(name);
    return out;
  }

  // The tensor with transformers' text-model name, as T, in transformers' convention (norms: w, not 1 + w).
  template <class T, class... Ds>
  Tensor<T, Ds...> read(std::string_view hf_name) const {
    if (random_seed_) {
      const std::vector<index_t> shape = detail::gemma3_tensor_shape(config_, hf_name);
      if (shape.empty()) fail("model", path_.string(), ": the model has no tensor ", hf_name);
      Tensor<T, Ds...> t{typename Tensor<T, Ds...>::shape_type(
          detail::file_extents<Ds...>("model", path_, hf_name, shape))};
      detail::fill_random_normalish(t.data(), t.numel(), RandomStream{*random_seed_, detail::fnv1a64(hf_name)},
                                    detail::is_norm_weight(hf_name) ? 0.01 : 0.02);
      return t;
    }
    if (gguf_) {
      const std::string name = detail::gguf_name_of(hf_name);
      if (name.empty()) fail("model", path_.string(), ": tensor ", hf_name, " has no GGUF name");
      if (!gguf_->has_tensor(name))
        fail("model", path_.string(), ": tensor ", name, " (", hf_name, ") is missing");
      Tensor<T, Ds...> t = gguf_->read<T, Ds...>(name);
      check_shape(hf_name, t.shape());
      if (detail::is_norm_weight(hf_name))
        for (index_t i = 0; i < t.numel(); ++i) t.data()[i] = convert<T>(convert<double>(t.data()[i]) - 1.0);
      return t;
    }
    Tensor<T, Ds...> t = checkpoint()->read_text<T, Ds...>(hf_name);
    check_shape(hf_name, t.shape());
    return t;
  }

 private:
  Gemma3WeightSource() = default;

  // A tensor must have the shape its configuration gives it: static extents check this as they read, run-time ones
  // (Gemma3AnySize) would otherwise take any shape the file holds.
  template <class Shape>
  void check_shape(std::string_view hf_name, const Shape& got) const {
    const std::vector<index_t> want = detail::gemma3_tensor_shape(config_, hf_name);
    if (want.empty()) return;
    const auto& extents = got.extents();
    if (!std::equal(extents.begin(), extents.end(), want.begin(), want.end()))
      fail("model", path_.string(), ": tensor ", hf_name, " has shape ", got.str(), ", its configuration needs ",
           detail::shape_str(want));
  }
  std::filesystem::path path_;
  Gemma3RuntimeConfig config_;
  nlohmann::json hf_config_;
  std::unique_ptr<GgufFile> gguf_;
  mutable std::unique_ptr<SafetensorsCheckpoint> safetensors_;
  std::optional<std::uint64_t> random_seed_;  // set for random()
};

}  // namespace qlora
