// Merging a LoRA adapter into its base model, and writing the merged model as a Hugging Face checkpoint folder
// (config.json + model.safetensors, fp32 or bf16, in the layout the base came in) or as a GGUF file
// (F32/F16/BF16/Q8_0) that llama.cpp loads.
//
//   W' = W + s · B · A        s = lora_alpha / r (alpha / sqrt(r) with rsLoRA) of that module after rank_pattern and
//                             alpha_pattern
//
// W is chosen by MergeInto:
//   original  the file's own weights (dequantized from GGUF blocks where needed): what PEFT users get from
//             merge_and_unload on a base reloaded in 16/32 bits. The merged model carries the base's full precision,
//             but it is not the model the adapter was trained with (that one saw the NF4 values), so its answers can
//             differ from `qlora generate --adapter`.
//   nf4       each projection's NF4 round trip (quantize with blocksize 64 + double quantization, dequantize), the
//             values training and `qlora generate` compute with: the merged model reproduces what was trained.
// Embeddings and norms are never quantized, so they are the file's in both.
// A multimodal checkpoint's vision tower and projector are copied through byte for byte (merged with the adapter's
// vision-tower LoRA weights where those are not zero), with the source's config.json and tokenizer files.
// Tensors are read, merged and handed on one at a time; the writers keep what they are given until they write (so a
// merged model needs its size in memory once).
#pragma once

#include <cmath>
#include <filesystem>
#include <array>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../io/gguf.hpp"
#include "../io/hf_folder.hpp"
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
enum class MergeInto { original, nf4 };

// An adapter's lora_A and lora_B of one projection.
struct LoraPair {
  const Tensor<float, Dyn, Dyn>* a = nullptr;  // [r, in]
  const Tensor<float, Dyn, Dyn>* b = nullptr;  // [out, r]
  index_t layer = 0;
  Projection projection = Projection::q_proj;
  std::string module;  // transformers' module name, for the adapter's rank / alpha patterns
};

// The adapter's pairs by the text-model weight they update ("layers.3.self_attn.q_proj.weight"), each with both
// matrices and inside the model's `layers`. `source` names the adapter in errors.
inline std::map<std::string, LoraPair> lora_pairs(const peft::Adapter& adapter, index_t layers,
                                                  const std::string& source) {
  std::map<std::string, LoraPair> lora;
  for (const auto& t : adapter.tensors) {
    const auto n = peft::parse_tensor_name(t.name);
    if (!n) fail("merge", source, ": tensor ", t.name, " is not a LoRA weight");
    if (n->layer < 0 || n->layer >= layers)
      fail("merge", source, ": tensor ", t.name, " is for layer ", n->layer, " but the model has ", layers);
    LoraPair& pair = lora[projection_weight_name(n->layer, n->projection)];
    (n->matrix == peft::LoraMatrix::A ? pair.a : pair.b) = &t.value;
    pair.layer = n->layer;
    pair.projection = n->projection;
    pair.module = peft::lora_module_of(t.name)->module;
  }
  for (const auto& [name, pair] : lora)
    if (!pair.a || !pair.b)
      fail("merge", source, ": layer ", pair.layer, " ", name_of(pair.projection), " has only one of lora_A and lora_B");
  return lora;
}

// w += s · B · A for `pair` (s: its module's scaling under `targets`), checking the shapes.
inline void add_lora_delta(Tensor<float, Dyn, Dyn>& w, const LoraPair& pair, const LoraTargets& targets,
                           const std::string& source) {
  const Tensor<float, Dyn, Dyn>& A = *pair.a;
  const Tensor<float, Dyn, Dyn>& B = *pair.b;
  if (A.size(1) != w.size(1) || B.size(0) != w.size(0) || A.size(0) != B.size(1))
    fail("merge", source, ": layer ", pair.layer, " ", name_of(pair.projection), ": lora_A ", A.shape().str(),
         " and lora_B ", B.shape().str(), " do not fit the weight ", w.shape().str());
  const double s = targets.for_module(pair.module)->scaling();  // present: checked by check_tensors
  const auto delta = matmul(B, A);  // [out, in]
  for (index_t i = 0; i < w.numel(); ++i) w.data()[i] += static_cast<float>(s * delta.data()[i]);
}

template <class Sink>
void for_each_merged_tensor(const Gemma3WeightSource& src, const peft::Adapter* adapter, const std::string& source,
                            MergeInto into, Sink&& sink) {
  const Gemma3RuntimeConfig& c = src.config();
  const std::map<std::string, LoraPair> lora = adapter ? lora_pairs(*adapter, c.layers, source)
                                                       : std::map<std::string, LoraPair>{};
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
    if (into == MergeInto::nf4 && spec.shape.size() == 2 && spec.name != "embed_tokens.weight")
      w = dequantize<float>(Tensor<NF4, Dyn, Dyn>::quantize(w, FourBitOptions{}));  // training's base values
    if (const auto it = lora.find(spec.name); it != lora.end()) {
      add_lora_delta(w, it->second, targets, source);
      merged += 2;
    }
    sink(spec, w);
  }
  if (adapter && merged != adapter->tensors.size())
    fail("merge", source, ": ", adapter->tensors.size() - merged, " adapter tensors matched no weight of the model");
}

// config.json of the merged checkpoint: the source's own, whole, when it has one (a multimodal config stays
// multimodal), else a Gemma3ForCausalLM text config built from the GGUF's metadata.
inline nlohmann::json merged_hf_config(const Gemma3WeightSource& src, const std::string& torch_dtype) {
  nlohmann::json j;
  if (!src.hf_config().is_null()) {
    j = src.hf_config();
    if (src.layout() == ModelLayout::conditional_generation) {
      for (const char* key : {"torch_dtype", "dtype"}) j[key] = torch_dtype;
      if (j.contains("text_config") && j["text_config"].is_object())
        for (const char* key : {"torch_dtype", "dtype"})
          if (j["text_config"].contains(key)) j["text_config"][key] = torch_dtype;
      return j;
    }
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

// The files of a Hugging Face folder besides config and weights that a merged folder needs to be used as the base
// was (tokenizer, chat template, generation defaults, the image processor of a multimodal checkpoint).
inline constexpr std::array<std::string_view, 10> hf_side_files = {
    "tokenizer.model",        "tokenizer.json",       "tokenizer_config.json",   "special_tokens_map.json",
    "added_tokens.json",      "chat_template.jinja",  "chat_template.json",      "generation_config.json",
    "preprocessor_config.json", "processor_config.json"};

// dir/config.json, written atomically.
inline void write_merged_config(const std::filesystem::path& dir, const nlohmann::json& config) {
  const std::string text = config.dump(2) + "\n";
  AtomicFileWriter cfg(dir / "config.json", "merge");
  cfg.write(text.data(), text.size());
  cfg.commit();
}

// The source folder's hf_side_files that exist, copied into dir (unless dir is the folder itself).
inline void copy_hf_side_files(const std::filesystem::path& folder, const std::filesystem::path& dir) {
  for (std::string_view file : hf_side_files) {
    const std::filesystem::path from = folder / file;
    if (std::filesystem::exists(from) && !std::filesystem::equivalent(folder, dir))
      std::filesystem::copy_file(from, dir / file, std::filesystem::copy_options::overwrite_existing);
  }
}

namespace detail {
// A merged fp32 weight in the storage type a writer is given.
template <class To>
Tensor<To, Dyn, Dyn> converted(const Tensor<float, Dyn, Dyn>& w) {
  Tensor<To, Dyn, Dyn> out(w.shape());
  for (index_t i = 0; i < w.numel(); ++i) out.data()[i] = To(w.data()[i]);
  return out;
}
}  // namespace detail

// The vision tower / projector tensors of a multimodal source, as they are (bytes copied), or merged with the
// adapter's vision LoRA where its lora_B is not all zero (written back in the tensor's own dtype).
inline void add_vision_tensors(const Gemma3WeightSource& src, const peft::Adapter* adapter,
                               const std::string& adapter_source, SafetensorsWriter& out) {
  std::map<std::string, std::pair<const Tensor<float, Dyn, Dyn>*, const Tensor<float, Dyn, Dyn>*>> lora;
  if (adapter)
    for (const auto& t : adapter->vision) {
      const auto m = peft::lora_module_of(t.name);
      auto& pair = lora[m->module];
      (m->matrix == peft::LoraMatrix::A ? pair.first : pair.second) = &t.value;
    }
  const LoraTargets targets = adapter ? LoraTargets(adapter->config) : LoraTargets();
  std::size_t used = 0;
  for (const std::string& name : src.vision_tensor_names()) {
    const SafetensorsTensorInfo& info = src.checkpoint()->info(name);
    const std::string module = gemma3_vision_module(name);
    const auto it = name.ends_with(".weight") ? lora.find(module) : lora.end();
    if (it == lora.end()) {
      out.add_raw(name, info.dtype, info.shape, src.checkpoint()->file_of(name).raw(name));
      continue;
    }
    used += 2;
    const Tensor<float, Dyn, Dyn>& A = *it->second.first;
    const Tensor<float, Dyn, Dyn>& B = *it->second.second;
    bool zero = true;
    for (index_t i = 0; i < B.numel() && zero; ++i) zero = B.data()[i] == 0.0f;
    if (zero) {  // an untrained vision adapter (text-only training): the weight is unchanged
      out.add_raw(name, info.dtype, info.shape, src.checkpoint()->file_of(name).raw(name));
      continue;
    }
    Tensor<float, Dyn, Dyn> w = src.checkpoint()->read<float, Dyn, Dyn>(name);
    if (A.size(1) != w.size(1) || B.size(0) != w.size(0))
      fail("merge", adapter_source, ": module ", module, ": lora_A ", A.shape().str(), " and lora_B ", B.shape().str(),
           " do not fit the weight ", w.shape().str());
    const double s = targets.for_module(module)->scaling();  // present: checked by check_tensors
    const auto delta = matmul(B, A);
    for (index_t i = 0; i < w.numel(); ++i) w.data()[i] += static_cast<float>(s * delta.data()[i]);
    if (info.dtype == SafetensorsDtype::BF16) out.add(name, detail::converted<bf16>(w));
    else if (info.dtype == SafetensorsDtype::F16) out.add(name, detail::converted<f16>(w));
    else out.add(name, w);
  }
  if (adapter && used != adapter->vision.size())
    fail("merge", adapter_source, ": ", adapter->vision.size() - used,
         " vision-tower adapter tensors matched no weight of the model's vision tower");
}

// Writes dir/config.json and dir/model.safetensors in the layout the source has (Gemma3ForCausalLM's "model." names,
// or a multimodal checkpoint's text prefix with its vision tower copied through), and copies the source folder's
// tokenizer, chat template and generation config (from a GGUF: its vocabulary as tokenizer.model).
inline void save_merged_safetensors(const Gemma3WeightSource& src, const peft::Adapter* adapter,
                                    const std::string& adapter_source, const std::filesystem::path& dir,
                                    MergedDtype dtype = MergedDtype::float32, MergeInto into = MergeInto::original) {
  SafetensorsWriter out;
  out.set_metadata("format", "pt");
  const SafetensorsCheckpoint* checkpoint = src.layout() == ModelLayout::conditional_generation ? src.checkpoint() : nullptr;
  for_each_merged_tensor(src, adapter, adapter_source, into,
                         [&](const Gemma3TensorSpec& spec, const Tensor<float, Dyn, Dyn>& w) {
    const std::string name = checkpoint ? checkpoint->text_tensor_name(spec.name) : "model." + spec.name;
    if (dtype == MergedDtype::float32) {
      if (spec.shape.size() == 1) out.add(name, w.reshape<Dyn>(w.numel()));
      else out.add(name, w);
    } else {
      const Tensor<bf16, Dyn, Dyn> b = detail::converted<bf16>(w);
      if (spec.shape.size() == 1) out.add(name, b.reshape<Dyn>(b.numel()));
      else out.add(name, b);
    }
  });
  if (checkpoint) add_vision_tensors(src, adapter, adapter_source, out);
  else if (adapter && !adapter->vision.empty())
    fail("merge", adapter_source, ": the adapter has ", adapter->vision.size(), " vision-tower tensors but ",
         src.path().string(), " is a text-only model");
  std::filesystem::create_directories(dir);
  out.write(dir / "model.safetensors");
  write_merged_config(dir, merged_hf_config(src, dtype == MergedDtype::float32 ? "float32" : "bfloat16"));
  if (src.is_gguf()) {  // the GGUF's vocabulary as a tokenizer.model, so the folder is complete
    const std::string proto = detail::sentencepiece_model_proto(vocabulary_from_gguf(*src.gguf()));
    AtomicFileWriter tok(dir / "tokenizer.model", "merge");
    tok.write(proto.data(), proto.size());
    tok.commit();
  }
  if (const std::filesystem::path folder = src.folder(); !folder.empty()) copy_hf_side_files(folder, dir);
}

// Writes a GGUF of the merged text model: with the source GGUF's metadata (architecture, configuration, tokenizer),
// or for a Hugging Face folder the metadata llama.cpp's converter writes (io/hf_folder.hpp; its tokenizer.model
// needed); projections and the embedding in `type`, norms in F32 with the +1 llama.cpp's converter adds. A multimodal
// checkpoint's vision tower is not written (llama.cpp keeps it in a separate mmproj file).
inline void save_merged_gguf(const Gemma3WeightSource& src, const peft::Adapter* adapter,
                             const std::string& adapter_source, const std::filesystem::path& path, GgmlType type,
                             MergeInto into = MergeInto::original) {
  if (!src.is_gguf() && src.folder().empty())
    fail("export", src.path().string(), ": GGUF export needs a GGUF file or a Hugging Face folder (for the tokenizer)");
  if (type != GgmlType::F32 && type != GgmlType::F16 && type != GgmlType::BF16 && type != GgmlType::Q8_0)
    fail("export", "GGUF type ", ggml_type_name(type), " is not written (f32, f16, bf16, q8_0)");
  GgufWriter out("gemma3");
  if (src.is_gguf()) {
    for (const auto& [key, value] : src.gguf()->metadata()) {
      if (key == "general.architecture" || key == "general.alignment") continue;
      out.set(key, value);
    }
  } else {
    set_gguf_metadata_from_hf(out, src, open_tokenizer(src));
  }
  const std::uint32_t file_type = type == GgmlType::F32 ? 0 : type == GgmlType::F16 ? 1 : type == GgmlType::Q8_0 ? 7 : 32;
  out.set("general.file_type", file_type);
  for_each_merged_tensor(src, adapter, adapter_source, into,
                         [&](const Gemma3TensorSpec& spec, const Tensor<float, Dyn, Dyn>& w) {
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
