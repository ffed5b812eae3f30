// Merging a LoRA adapter into its base model, and writing the merged model as a Hugging Face checkpoint folder
// (config.json + model.safetensors, fp32 or bf16) or as a GGUF file (F32/F16/BF16/Q8_0) that llama.cpp loads.
//
//   W' = W + s · B · A        s = lora_alpha / r (alpha / sqrt(r) with rsLoRA) of that module after rank_pattern and
//                             alpha_pattern, W the file's dense weight
//
// The adapter is folded into the base weights as the file holds them (dequantized from GGUF blocks where needed),
// the way PEFT's merge_and_unload is used on a base reloaded in 16/32 bits — not into the NF4 copy training used, so
// the merged model carries the original precision of the base. Tensors are read, merged and handed on one at a time;
// the writers keep what they are given until they write (so a merged model needs its size in memory once).
// (The seed recipe's "merged" model was the base model saved again; tests/nn/merge.cpp checks that the merged
// model gives the logits of base + adapter, not those of the base.)
#pragma once

#include <cmath>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../io/gguf.hpp"
#include "../io/peft.hpp"
#include "../io/safetensors.hpp"
#include "../ops/matmul.hpp"
#include "block.hpp"
#include "weights.hpp"

namespace qlora {

struct Gemma3TensorSpec {
  std::string name;             // transformers' text-model name, e.g. "layers.0.self_attn.q_proj.weight"
  std::vector<index_t> shape;   // torch order
};

// Every tensor of a Gemma 3 text model, in the order transformers saves them.
inline std::vector<Gemma3TensorSpec> gemma3_tensor_specs(const Gemma3RuntimeConfig& c) {
  const index_t q = c.heads * c.head_dim, kv = c.kv_heads * c.head_dim;
  std::vector<Gemma3TensorSpec> specs{{"embed_tokens.weight", {c.vocab, c.hidden}}};
  for (index_t l = 0; l < c.layers; ++l) {
    auto add = [&](std::string_view leaf, std::vector<index_t> shape) {
      specs.push_back({"layers." + std::to_string(l) + "." + std::string(leaf), std::move(shape)});
    };
    add("input_layernorm.weight", {c.hidden});
    add("mlp.down_proj.weight", {c.hidden, c.intermediate});
    add("mlp.gate_proj.weight", {c.intermediate, c.hidden});
    add("mlp.up_proj.weight", {c.intermediate, c.hidden});
    add("post_attention_layernorm.weight", {c.hidden});
    add("post_feedforward_layernorm.weight", {c.hidden});
    add("pre_feedforward_layernorm.weight", {c.hidden});
    add("self_attn.k_norm.weight", {c.head_dim});
    add("self_attn.k_proj.weight", {kv, c.hidden});
    add("self_attn.o_proj.weight", {c.hidden, q});
    add("self_attn.q_norm.weight", {c.head_dim});
    add("self_attn.q_proj.weight", {q, c.hidden});
    add("self_attn.v_proj.weight", {kv, c.hidden});
  }
  specs.push_back({"norm.weight", {c.hidden}});
  return specs;
}

// Calls sink(spec, value) for every tensor of the merged model; value is [rows, cols] fp32 ([1, n] for 1-D tensors).
// `adapter` may be null (the base, converted). `source` names the adapter in errors.
template <class Sink>
void for_each_merged_tensor(const Gemma3WeightSource& src, const peft::Adapter* adapter, const std::string& source,
                            Sink&& sink) {
  const Gemma3RuntimeConfig& c = src.config();
  // The adapter's pairs by the weight they update: "layers.3.self_attn.q_proj.weight" -> {A, B}.
  struct Pair {
    const Tensor<float, Dyn, Dyn>* a = nullptr;  // [r, in]
    const Tensor<float, Dyn, Dyn>* b = nullptr;  // [out, r]
    index_t layer = 0;
    Projection projection = Projection::q_proj;
  };
  std::map<std::string, Pair> lora;
  if (adapter)
    for (const auto& t : adapter->tensors) {
      const auto n = peft::parse_tensor_name(t.name);
      if (!n) fail("merge", source, ": tensor ", t.name, " is not a LoRA weight");
      if (n->layer < 0 || n->layer >= c.layers)
        fail("merge", source, ": tensor ", t.name, " is for layer ", n->layer, " but the model has ", c.layers);
      Pair& pair = lora[projection_weight_name(n->layer, n->projection)];
      (n->matrix == peft::LoraMatrix::A ? pair.a : pair.b) = &t.value;
      pair.layer = n->layer;
      pair.projection = n->projection;
    }
  for (const auto& [name, pair] : lora)
    if (!pair.a || !pair.b)
      fail("merge", source, ": layer ", pair.layer, " ", name_of(pair.projection),
           " has only one of lora_A and lora_B");
  if (adapter) peft::check_tensors(*adapter, source);
  const LoraTargets targets = adapter ? LoraTargets(adapter->config) : LoraTargets();
  std::size_t merged = 0;
  for (const auto& spec : gemma3_tensor_specs(c)) {
    Tensor<float, Dyn, Dyn> w;
    if (spec.shape.size() == 1) {
      w = src.read<float, Dyn>(spec.name).reshape<Dyn, Dyn>(1, spec.shape[0]);
    } else {
      w = src.read<float, Dyn, Dyn>(spec.name);
      if (w.size(0) != spec.shape[0] || w.size(1) != spec.shape[1])
        fail("merge", src.path().string(), ": tensor ", spec.name, " has shape ", w.shape().str(), ", the configuration ",
             "says [", spec.shape[0], ", ", spec.shape[1], "]");
    }
    if (const auto it = lora.find(spec.name); it != lora.end()) {
      const Pair& pair = it->second;
      const Tensor<float, Dyn, Dyn>& A = *pair.a;
      const Tensor<float, Dyn, Dyn>& B = *pair.b;
      if (A.size(1) != w.size(1) || B.size(0) != w.size(0) || A.size(0) != B.size(1))
        fail("merge", source, ": layer ", pair.layer, " ", name_of(pair.projection), ": lora_A ", A.shape().str(),
             " and lora_B ", B.shape().str(), " do not fit the weight ", w.shape().str());
      const double s = targets.at(pair.layer, pair.projection)->scaling();  // present: checked by check_tensors
      const auto delta = matmul(B, A);  // [out, in]
      for (index_t i = 0; i < w.numel(); ++i) w.data()[i] += static_cast<float>(s * delta.data()[i]);
      merged += 2;
    }
    sink(spec, w);
  }
  if (adapter && merged != adapter->tensors.size())
    fail("merge", source, ": ", adapter->tensors.size() - merged, " adapter tensors matched no weight of the model");
}

// config.json of the merged checkpoint: the source's own when it has one, else a Gemma3ForCausalLM text config
// built from the GGUF's metadata.
inline nlohmann::json merged_hf_config(const Gemma3WeightSource& src, const std::string& torch_dtype) {
  nlohmann::json j;
  if (!src.hf_config().is_null()) {
    j = src.hf_config().contains("text_config") ? src.hf_config()["text_config"] : src.hf_config();
  } else {
    const Gemma3RuntimeConfig& c = src.config();
    j = {{"hidden_size", c.hidden}, {"intermediate_size", c.intermediate}, {"num_hidden_layers", c.layers},
         {"num_attention_heads", c.heads}, {"num_key_value_heads", c.kv_heads}, {"head_dim", c.head_dim},
         {"vocab_size", c.vocab}, {"sliding_window", c.sliding_window}, {"rms_norm_eps", c.rms_norm_eps},
         {"query_pre_attn_scalar", c.head_dim}, {"rope_theta", c.rope_global_theta},
         {"rope_local_base_freq", c.rope_local_theta ? c.rope_local_theta : 10000.0},
         {"max_position_embeddings", 32768}, {"hidden_activation", "gelu_pytorch_tanh"},
         {"pad_token_id", 0}, {"bos_token_id", 2}, {"eos_token_id", 1}, {"tie_word_embeddings", true}};
    if (c.rope_global_scaling != 1)
      j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", c.rope_global_scaling}};
    nlohmann::json types = nlohmann::json::array();
    for (index_t l = 0; l < c.layers; ++l) types.push_back((l + 1) % 6 == 0 ? "full_attention" : "sliding_attention");
    j["layer_types"] = types;
  }
  j["architectures"] = {"Gemma3ForCausalLM"};
  j["model_type"] = "gemma3_text";
  j["torch_dtype"] = torch_dtype;
  j["dtype"] = torch_dtype;
  return j;
}

enum class MergedDtype { float32, bfloat16 };

// Writes dir/config.json and dir/model.safetensors ("model." names, as Gemma3ForCausalLM saves them).
inline void save_merged_safetensors(const Gemma3WeightSource& src, const peft::Adapter* adapter,
                                    const std::string& adapter_source, const std::filesystem::path& dir,
                                    MergedDtype dtype = MergedDtype::float32) {
  SafetensorsWriter out;
  out.set_metadata("format", "pt");
  for_each_merged_tensor(src, adapter, adapter_source, [&](const Gemma3TensorSpec& spec, const Tensor<float, Dyn, Dyn>& w) {
    const std::string name = "model." + spec.name;
    if (dtype == MergedDtype::float32) {
      if (spec.shape.size() == 1) out.add(name, w.reshape<Dyn>(w.numel()));
      else out.add(name, w);
    } else {
      Tensor<bf16, Dyn, Dyn> b(w.shape());
      for (index_t i = 0; i < w.numel(); ++i) b.data()[i] = bf16(w.data()[i]);
      if (spec.shape.size() == 1) out.add(name, b.reshape<Dyn>(b.numel()));
      else out.add(name, b);
    }
  });
  std::filesystem::create_directories(dir);
  out.write(dir / "model.safetensors");
  const std::string text = merged_hf_config(src, dtype == MergedDtype::float32 ? "float32" : "bfloat16").dump(2) + "\n";
  AtomicFileWriter cfg(dir / "config.json", "merge");
  cfg.write(text.data(), text.size());
  cfg.commit();
}

// Writes a GGUF of the merged model with the source GGUF's metadata (architecture, configuration, tokenizer):
// projections and the embedding in `type`, norms in F32 with the +1 llama.cpp's converter adds.
inline void save_merged_gguf(const Gemma3WeightSource& src, const peft::Adapter* adapter,
                             const std::string& adapter_source, const std::filesystem::path& path, GgmlType type) {
  if (!src.is_gguf())
    fail("export", src.path().string(), ": GGUF export needs the tokenizer and metadata of a GGUF base model; export "
         "the GGUF you trained on, or convert this checkpoint with llama.cpp's convert_hf_to_gguf.py after qlora merge");
  if (type != GgmlType::F32 && type != GgmlType::F16 && type != GgmlType::BF16 && type != GgmlType::Q8_0)
    fail("export", "GGUF type ", ggml_type_name(type), " is not written (f32, f16, bf16, q8_0)");
  GgufWriter out("gemma3");
  for (const auto& [key, value] : src.gguf()->metadata()) {
    if (key == "general.architecture" || key == "general.alignment") continue;
    out.set(key, value);
  }
  const std::uint32_t file_type = type == GgmlType::F32 ? 0 : type == GgmlType::F16 ? 1 : type == GgmlType::Q8_0 ? 7 : 32;
  out.set("general.file_type", file_type);
  for_each_merged_tensor(src, adapter, adapter_source, [&](const Gemma3TensorSpec& spec, const Tensor<float, Dyn, Dyn>& w) {
    const std::string name = detail::gguf_name_of(spec.name);
    if (spec.shape.size() == 1) {
      Tensor<float, Dyn> g(Shape<Dyn>(w.numel()));
      for (index_t i = 0; i < w.numel(); ++i) g.data()[i] = w.data()[i] + 1.0f;
      out.add_tensor(name, g, GgmlType::F32);
    } else {
      out.add_tensor(name, w, type);
    }
  });
  out.write(path);
}

}  // namespace qlora
