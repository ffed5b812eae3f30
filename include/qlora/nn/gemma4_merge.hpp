// Merging a LoRA adapter into a Gemma 4 checkpoint folder: every tensor of the source (text model, per-layer
// embeddings, experts, vision and audio towers) is written again under its own name and shape, the adapted
// projections as W + s · B · A (s from the adapter's lora_alpha / r after rank_pattern and alpha_pattern, as in
// nn/merge.hpp), the text model's floating-point tensors in the requested dtype, everything else (a multimodal
// checkpoint's towers, integer tensors) byte for byte; config.json (dtype updated) and
// the tokenizer / chat template / generation files are copied. transformers loads the result as the source's class
// (Gemma4ForCausalLM or Gemma4ForConditionalGeneration) without PEFT. Merged into the file's own weights (PEFT's
// merge_and_unload on a 16/32-bit base); the NF4 round trip and GGUF are not written for Gemma 4 yet.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../io/peft.hpp"
#include "../io/safetensors.hpp"
#include "gemma4_weights.hpp"
#include "merge.hpp"

namespace qlora {

namespace detail {
inline bool is_float_dtype(SafetensorsDtype d) {
  return d == SafetensorsDtype::F32 || d == SafetensorsDtype::BF16 || d == SafetensorsDtype::F16;
}

// n stored elements of dtype `from` as the bytes of `want` (F32, or BF16 rounded to nearest even).
inline std::vector<std::uint8_t> float_bytes(SafetensorsDtype from, const void* src, std::size_t n,
                                             SafetensorsDtype want) {
  std::vector<std::uint8_t> out(n * (want == SafetensorsDtype::F32 ? sizeof(float) : sizeof(bf16)));
  if (want == SafetensorsDtype::F32)
    convert_safetensors_elements<float>(from, src, reinterpret_cast<float*>(out.data()), n);
  else
    convert_safetensors_elements<bf16>(from, src, reinterpret_cast<bf16*>(out.data()), n);
  return out;
}
}  // namespace detail

inline void save_merged_gemma4(const Gemma4WeightSource& src, const peft::Adapter* adapter,
                               const std::string& adapter_source, const std::filesystem::path& dir,
                               MergedDtype dtype = MergedDtype::float32) {
  const SafetensorsCheckpoint& ck = src.checkpoint();
  const Gemma4RuntimeConfig& c = src.config();
  std::map<std::string, LoraPair> lora;  // by the checkpoint's full tensor name
  if (adapter) {
    if (!adapter->vision.empty())
      fail("merge", adapter_source, ": the adapter has ", adapter->vision.size(), " tower tensors; qlora merges the "
           "text model's LoRA weights into a Gemma 4 checkpoint");
    for (auto& [text, pair] : lora_pairs(*adapter, c.layers, adapter_source)) {
      if (!src.contains(text))
        fail("merge", adapter_source, ": layer ", pair.layer, " ", name_of(pair.projection), " adapts ", text,
             ", which ", src.path().string(), " does not have (a layer that reuses another's keys and values has no "
             "k_proj / v_proj; a k = v layer no v_proj)");
      lora[ck.text_tensor_name(text)] = pair;
    }
    peft::check_tensors(*adapter, adapter_source);
  }
  const LoraTargets targets = adapter ? LoraTargets(adapter->config) : LoraTargets();
  SafetensorsWriter out;
  out.set_metadata("format", "pt");
  const SafetensorsDtype want = dtype == MergedDtype::float32 ? SafetensorsDtype::F32 : SafetensorsDtype::BF16;
  // The text model's tensors are written in `dtype`; the towers of a multimodal checkpoint byte for byte.
  const bool multimodal = src.layout() == ModelLayout::conditional_generation;
  auto in_text_model = [&](const std::string& name) {
    return !multimodal || name.starts_with("model.language_model.") || name.starts_with("language_model.");
  };
  std::size_t merged = 0;
  for (const std::string& name : ck.names()) {
    const SafetensorsTensorInfo& info = ck.info(name);
    const auto it = lora.find(name);
    if (it == lora.end() && (!detail::is_float_dtype(info.dtype) || info.dtype == want || !in_text_model(name))) {
      out.add_raw(name, info.dtype, info.shape, ck.file_of(name).raw(name));
      continue;
    }
    if (it == lora.end()) {  // converted only
      out.add_raw(name, want, info.shape, detail::float_bytes(info.dtype, ck.file_of(name).raw(name).data(),
                                                                static_cast<std::size_t>(info.numel()), want));
      continue;
    }
    Tensor<float, Dyn, Dyn> w = ck.read<float, Dyn, Dyn>(name);
    add_lora_delta(w, it->second, targets, adapter_source);
    merged += 2;
    out.add_raw(name, want, info.shape,
                detail::float_bytes(SafetensorsDtype::F32, w.data(), static_cast<std::size_t>(w.numel()), want));
  }
  if (adapter && merged != adapter->tensors.size())
    fail("merge", adapter_source, ": ", adapter->tensors.size() - merged, " adapter tensors matched no weight of ",
         src.path().string());

  std::filesystem::create_directories(dir);
  out.write(dir / "model.safetensors");
  nlohmann::json config = src.hf_config();
  const char* dtype_name = dtype == MergedDtype::float32 ? "float32" : "bfloat16";
  config["dtype"] = dtype_name;  // transformers 5's key; the older torch_dtype only where the source has it
  if (config.contains("torch_dtype")) config["torch_dtype"] = dtype_name;
  for (const char* key : {"torch_dtype", "dtype"})
    if (config.contains("text_config") && config["text_config"].is_object() && config["text_config"].contains(key))
      config["text_config"][key] = dtype_name;
  write_merged_config(dir, config);
  copy_hf_side_files(src.folder(), dir);
}

}  // namespace qlora
