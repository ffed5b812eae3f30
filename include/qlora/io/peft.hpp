// The PEFT adapter format: adapter_config.json and the tensor names of adapter_model.safetensors, as PEFT's
// save_pretrained writes them for a LoRA adapter on Gemma 3 (tests/golden/peft_adapter.py keeps a real example).
//
//   base_model.model.model.layers.{i}.self_attn.{q,k,v,o}_proj.lora_{A,B}.weight      Gemma3ForCausalLM (270M, 1B)
//   base_model.model.model.layers.{i}.mlp.{gate,up,down}_proj.lora_{A,B}.weight
//   base_model.model.model.language_model.layers.{i}...                              Gemma3ForConditionalGeneration
// lora_A.weight is [r, in], lora_B.weight [out, r], fp32; the file's metadata is {"format": "pt"}.
#pragma once

#include <cmath>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "../nn/adapter.hpp"
#include "../train/arguments.hpp"

namespace qlora::peft {

enum class LoraMatrix { A, B };

// Which model class the adapter's names follow: text-only causal LM, or the multimodal 4B+ checkpoints.
enum class ModelLayout { causal_lm, conditional_generation };

inline std::string tensor_name(index_t layer, Projection p, LoraMatrix m, ModelLayout layout = ModelLayout::causal_lm) {
  const bool attention = p == Projection::q_proj || p == Projection::k_proj || p == Projection::v_proj ||
                         p == Projection::o_proj;
  std::string name = layout == ModelLayout::causal_lm ? "base_model.model.model.layers."
                                                      : "base_model.model.model.language_model.layers.";
  name += std::to_string(layer);
  name += attention ? ".self_attn." : ".mlp.";
  name += name_of(p);
  name += m == LoraMatrix::A ? ".lora_A.weight" : ".lora_B.weight";
  return name;
}

struct TensorName {
  index_t layer = -1;
  Projection projection = Projection::q_proj;
  LoraMatrix matrix = LoraMatrix::A;
};

// The layer, projection and matrix a PEFT tensor name refers to (either layout, and the older
// "base_model.model.language_model.model.layers." form); nullopt for names that are not LoRA weights of a layer.
inline std::optional<TensorName> parse_tensor_name(std::string_view name) {
  for (std::string_view prefix : {"base_model.model.model.layers.", "base_model.model.model.language_model.layers.",
                                  "base_model.model.language_model.model.layers."}) {
    if (name.substr(0, prefix.size()) != prefix) continue;
    std::string_view rest = name.substr(prefix.size());
    const std::size_t dot = rest.find('.');
    if (dot == std::string_view::npos || dot == 0) return std::nullopt;
    TensorName t;
    try {
      t.layer = std::stol(std::string(rest.substr(0, dot)));
    } catch (...) {
      return std::nullopt;
    }
    rest = rest.substr(dot + 1);
    for (std::string_view group : {"self_attn.", "mlp."})
      if (rest.substr(0, group.size()) == group) rest = rest.substr(group.size());
    for (int p = 0; p < 7; ++p) {
      const std::string_view proj = projection_names[static_cast<std::size_t>(p)];
      if (rest.substr(0, proj.size()) != proj) continue;
      const std::string_view tail = rest.substr(proj.size());
      if (tail == ".lora_A.weight") t.matrix = LoraMatrix::A;
      else if (tail == ".lora_B.weight") t.matrix = LoraMatrix::B;
      else return std::nullopt;
      t.projection = static_cast<Projection>(p);
      return t;
    }
    return std::nullopt;
  }
  return std::nullopt;
}

// adapter_config.json with the keys PEFT writes (PEFT fills missing keys with defaults and ignores unknown ones in
// recent versions; these are the ones it writes itself). target_modules keep the given order.
inline nlohmann::json adapter_config(const LoraConfig& c, const std::string& base_model_name_or_path) {
  nlohmann::json j;
  const double alpha_int = std::round(c.lora_alpha);
  j["alpha_pattern"] = nlohmann::json::object();
  j["auto_mapping"] = nullptr;
  j["base_model_name_or_path"] = base_model_name_or_path.empty() ? nlohmann::json(nullptr)
                                                                 : nlohmann::json(base_model_name_or_path);
  j["bias"] = c.bias;
  j["fan_in_fan_out"] = false;
  j["inference_mode"] = true;
  j["init_lora_weights"] = true;
  j["layer_replication"] = nullptr;
  j["layers_pattern"] = nullptr;
  j["layers_to_transform"] = nullptr;
  j["loftq_config"] = nlohmann::json::object();
  j["lora_alpha"] = alpha_int == c.lora_alpha ? nlohmann::json(static_cast<long>(alpha_int)) : nlohmann::json(c.lora_alpha);
  j["lora_bias"] = false;
  j["lora_dropout"] = c.lora_dropout;
  j["megatron_config"] = nullptr;
  j["megatron_core"] = "megatron.core";
  j["modules_to_save"] = nullptr;
  j["peft_type"] = "LORA";
  j["r"] = c.r;
  j["rank_pattern"] = nlohmann::json::object();
  j["revision"] = nullptr;
  j["target_modules"] = c.target_modules;
  j["task_type"] = "CAUSAL_LM";
  j["use_dora"] = false;
  j["use_rslora"] = c.use_rslora;
  return j;
}

// The file text: sorted keys, two-space indent, as json.dumps(indent=2, sort_keys=True).
inline std::string adapter_config_text(const LoraConfig& c, const std::string& base_model_name_or_path) {
  return adapter_config(c, base_model_name_or_path).dump(2);
}

// Reads the LoRA numbers back from an adapter_config.json, checking what qlora cannot honour.
inline LoraConfig lora_config_from_adapter_config(const nlohmann::json& j, std::string_view source) {
  if (j.value("peft_type", "") != "LORA") fail("peft", source, ": peft_type is not LORA");
  if (j.value("use_dora", false)) fail("peft", source, ": DoRA adapters are not supported");
  if (j.contains("rank_pattern") && !j["rank_pattern"].empty()) fail("peft", source, ": rank_pattern is not supported");
  if (j.contains("alpha_pattern") && !j["alpha_pattern"].empty()) fail("peft", source, ": alpha_pattern is not supported");
  LoraConfig c;
  c.r = j.at("r").get<long>();
  c.lora_alpha = j.at("lora_alpha").get<double>();
  c.lora_dropout = j.value("lora_dropout", 0.0);
  c.use_rslora = j.value("use_rslora", false);
  c.bias = j.value("bias", std::string("none"));
  const auto& t = j.at("target_modules");
  c.target_modules = t.is_string() ? detail::OptionReader::split_commas(t.get<std::string>())
                                   : t.get<std::vector<std::string>>();
  validate(c);
  return c;
}

}  // namespace qlora::peft
