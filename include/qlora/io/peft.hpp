// The PEFT adapter format: adapter_config.json and the tensor names of adapter_model.safetensors, as PEFT's
// save_pretrained writes them for a LoRA adapter on Gemma 3 (tests/golden/peft_adapter.py keeps a real example).
//
//   base_model.model.model.layers.{i}.self_attn.{q,k,v,o}_proj.lora_{A,B}.weight      Gemma3ForCausalLM (270M, 1B)
//   base_model.model.model.layers.{i}.mlp.{gate,up,down}_proj.lora_{A,B}.weight
//   base_model.model.model.language_model.layers.{i}...                              Gemma3ForConditionalGeneration
//   base_model.model.model.vision_tower.encoder.layers.{i}.self_attn.{q,k,v}_proj.lora_{A,B}.weight
//                     the vision tower's own projections, which target_modules such as ["q_proj", "v_proj"] also match
//                     on Gemma3ForConditionalGeneration: PEFT creates, trains (only with images) and saves them. qlora
//                     keeps them as they are (Adapter::vision): loaded, carried through training and saved again.
// lora_A.weight is [r, in], lora_B.weight [out, r], fp32; the file's metadata is {"format": "pt"}.
// save_adapter / load_adapter write and read such a folder (adapter_config.json + adapter_model.safetensors), each file
// atomically; loading converts F16/BF16 weights to fp32 and refuses pickled adapter_model.bin files.
// save_adapter(dir, config, base, a.tensors + a.vision) writes an Adapter back with nothing lost.
#pragma once

#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/random.hpp"
#include "../nn/adapter.hpp"
#include "../nn/config.hpp"
#include "../train/arguments.hpp"
#include "safetensors.hpp"

namespace qlora::peft {

enum class LoraMatrix { A, B };

// Which model class the adapter's names follow: text-only causal LM, or the multimodal 4B+ checkpoints.
using qlora::ModelLayout;

inline std::string tensor_name(index_t layer, Projection p, LoraMatrix m, ModelLayout layout = ModelLayout::causal_lm) {
  return "base_model.model." + projection_module_name(layer, p, module_prefix(layout)) +
         (m == LoraMatrix::A ? ".lora_A.weight" : ".lora_B.weight");
}

// The module a LoRA tensor belongs to ("base_model.model.X.lora_A.weight" -> "X") and its matrix; nullopt for a name
// of another form.
struct LoraModuleName {
  std::string module;
  LoraMatrix matrix = LoraMatrix::A;
};
inline std::optional<LoraModuleName> lora_module_of(std::string_view name) {
  constexpr std::string_view head = "base_model.model.";
  if (!name.starts_with(head)) return std::nullopt;
  for (const auto& [tail, m] : {std::pair{std::string_view(".lora_A.weight"), LoraMatrix::A},
                                std::pair{std::string_view(".lora_B.weight"), LoraMatrix::B}})
    if (name.size() > head.size() + tail.size() && name.ends_with(tail))
      return LoraModuleName{std::string(name.substr(head.size(), name.size() - head.size() - tail.size())), m};
  return std::nullopt;
}

// A LoRA weight of the vision tower or projector ("base_model.model.model.vision_tower....q_proj.lora_A.weight"):
// its module lies where is_gemma3_vision_tensor (io/safetensors.hpp) puts a checkpoint's vision tensors.
inline bool is_vision_lora_name(std::string_view name) {
  const auto m = lora_module_of(name);
  return m && is_gemma3_vision_tensor(m->module);
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

// target_modules as a regex over the text model's modules (LoraConfig::text_model_only), and the names back from one.
inline std::string text_model_target_regex(const std::vector<std::string>& names) {
  std::string alternatives;
  for (const auto& n : names) alternatives += (alternatives.empty() ? "" : "|") + n;
  return ".*language_model.*\\.(" + alternatives + ")";
}
inline std::optional<std::vector<std::string>> names_of_text_model_regex(const std::string& regex) {
  constexpr std::string_view head = ".*language_model.*\\.(";
  if (!regex.starts_with(head) || !regex.ends_with(")")) return std::nullopt;
  const std::string body = regex.substr(head.size(), regex.size() - head.size() - 1);
  std::vector<std::string> names;
  std::string name;
  for (char ch : body + "|") {
    if (ch == '|') {
      if (name.empty()) return std::nullopt;
      names.push_back(name);
      name.clear();
    } else if (std::isalnum(static_cast<unsigned char>(ch)) || ch == '_') {
      name += ch;
    } else {
      return std::nullopt;
    }
  }
  return names;
}

// adapter_config.json with the keys PEFT writes (PEFT fills missing keys with defaults and ignores unknown ones in
// recent versions; these are the ones it writes itself). target_modules keep the given order.
inline nlohmann::json adapter_config(const LoraConfig& c, const std::string& base_model_name_or_path) {
  nlohmann::json j;
  const double alpha_int = std::round(c.lora_alpha);
  j["alpha_pattern"] = nlohmann::json::object();
  for (const auto& [key, alpha] : c.alpha_pattern) j["alpha_pattern"][key] = alpha;
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
  for (const auto& [key, r] : c.rank_pattern) j["rank_pattern"][key] = r;
  j["revision"] = nullptr;
  j["target_modules"] = c.text_model_only ? nlohmann::json(text_model_target_regex(c.target_modules))
                                          : nlohmann::json(c.target_modules);
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
  LoraConfig c;
  c.r = j.at("r").get<long>();
  c.lora_alpha = j.at("lora_alpha").get<double>();
  c.lora_dropout = j.value("lora_dropout", 0.0);
  c.use_rslora = j.value("use_rslora", false);
  c.bias = j.value("bias", std::string("none"));
  const auto& t = j.at("target_modules");
  if (const auto names = t.is_string() ? names_of_text_model_regex(t.get<std::string>()) : std::nullopt) {
    c.target_modules = *names;
    c.text_model_only = true;
  } else {
    c.target_modules = t.is_string() ? detail::OptionReader::split_commas(t.get<std::string>())
                                     : t.get<std::vector<std::string>>();
  }
  for (const char* key : {"rank_pattern", "alpha_pattern"})
    if (j.contains(key) && !j[key].is_null() && !j[key].is_object())
      fail("peft", source, ": ", key, " must be an object {module pattern: value}");
  if (j.contains("rank_pattern") && j["rank_pattern"].is_object())
    for (const auto& [k, v] : j["rank_pattern"].items()) c.rank_pattern.emplace_back(k, v.get<long>());
  if (j.contains("alpha_pattern") && j["alpha_pattern"].is_object())
    for (const auto& [k, v] : j["alpha_pattern"].items()) c.alpha_pattern.emplace_back(k, v.get<double>());
  expand_all_linear(c);
  (void)LoraTargets(c);  // validates the patterns' regexes too
  return c;
}

inline constexpr std::string_view adapter_config_file_name = "adapter_config.json";
inline constexpr std::string_view adapter_weights_file_name = "adapter_model.safetensors";

// One LoRA matrix of an adapter file under its PEFT name: lora_A [r, in] or lora_B [out, r], fp32 on any device.
struct AdapterTensor {
  std::string name;
  Tensor<float, Dyn, Dyn> value;
};

struct Adapter {
  LoraConfig config;
  std::string base_model_name_or_path;  // empty when the file has null
  std::vector<AdapterTensor> tensors;   // the text model's LoRA weights, in the file's order
  std::vector<AdapterTensor> vision;    // the vision tower's / projector's (is_vision_lora_name), kept as they are
};

// The class the adapter's text names follow (causal_lm when it has none under "language_model").
inline ModelLayout layout_of(const Adapter& a) {
  for (const auto& t : a.tensors)
    if (t.name.find(".language_model.") != std::string::npos) return ModelLayout::conditional_generation;
  return a.vision.empty() ? ModelLayout::causal_lm : ModelLayout::conditional_generation;
}

// Throws unless every tensor belongs to a module the config targets and has that module's rank (r, or its
// rank_pattern entry; patterns match the module names of the class the names come from): lora_A [r, in],
// lora_B [out, r], and every module has both. `source` names the adapter in errors.
inline void check_tensors(const Adapter& a, std::string_view source) {
  const LoraTargets targets(a.config);
  std::map<std::string, std::pair<const AdapterTensor*, const AdapterTensor*>> modules;
  auto check = [&](const AdapterTensor& t) {
    const auto m = lora_module_of(t.name);
    if (!m) fail("peft", source, ": tensor ", t.name, " is not a LoRA weight name");
    const std::optional<LoraSpec> spec = targets.for_module(m->module);
    if (!spec)
      fail("peft", source, ": tensor ", t.name, " is for a module the adapter's target_modules do not name");
    const index_t r = m->matrix == LoraMatrix::A ? t.value.size(0) : t.value.size(1);
    if (r != spec->rank)
      fail("peft", source, ": tensor ", t.name, " has shape ", t.value.shape().str(), ": rank ", r, " where the config (",
           a.config.rank_pattern.empty() ? "r" : "r and rank_pattern", ") says ", spec->rank);
    auto& pair = modules[m->module];
    (m->matrix == LoraMatrix::A ? pair.first : pair.second) = &t;
  };
  for (const auto& t : a.tensors) {
    if (!parse_tensor_name(t.name)) fail("peft", source, ": tensor ", t.name, " is not a LoRA weight of a text layer");
    check(t);
  }
  for (const auto& t : a.vision) {
    if (!is_vision_lora_name(t.name)) fail("peft", source, ": tensor ", t.name, " is not a vision-tower LoRA weight");
    check(t);
  }
  for (const auto& [module, pair] : modules) {
    if (!pair.first || !pair.second)
      fail("peft", source, ": module ", module, " has only ", pair.first ? "lora_A" : "lora_B");
    if (pair.first->value.size(0) != pair.second->value.size(1))
      fail("peft", source, ": module ", module, ": lora_A ", pair.first->value.shape().str(), " and lora_B ",
           pair.second->value.shape().str(), " differ in rank");
  }
}

// The vision-tower LoRA weights PEFT creates on a multimodal checkpoint for `targets`: one lora_A [r, in] (PEFT's
// init, U(-1/sqrt(in), 1/sqrt(in)), from Philox keyed by `seed`) and lora_B [out, r] = 0 for every linear layer of the
// vision tower and projector whose module name the targets match (["q_proj", "v_proj"] matches the SigLIP encoder's
// self_attn.q_proj / v_proj). Text training leaves them as they are (no images: PEFT's own run does not change them
// either), and saving them gives the adapter the keys PEFT writes for the same checkpoint.
inline std::vector<AdapterTensor> initial_vision_lora(const SafetensorsCheckpoint& checkpoint,
                                                      const LoraTargets& targets, std::uint64_t seed) {
  std::vector<AdapterTensor> out;
  if (targets.empty()) return out;
  std::uint64_t index = 0;
  for (const std::string& name : checkpoint.names()) {
    if (!is_gemma3_vision_tensor(name) || !name.ends_with(".weight")) continue;
    const SafetensorsTensorInfo& info = checkpoint.info(name);
    if (info.shape.size() != 2 || name.find("embedding") != std::string::npos || name.find("norm") != std::string::npos)
      continue;  // linear layers only (no position embedding, norms or the patch convolution)
    const std::string module = gemma3_vision_module(name);  // transformers 5's module tree, as PEFT names it
    const std::optional<LoraSpec> spec = targets.for_module(module);
    ++index;
    if (!spec) continue;
    const index_t out_features = info.shape[0], in_features = info.shape[1];
    Tensor<float, Dyn, Dyn> a(Shape<Dyn, Dyn>(spec->rank, in_features)), b(Shape<Dyn, Dyn>(out_features, spec->rank));
    const double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
    const RandomStream stream{seed, (std::uint64_t{1} << 40) + index};
    for (index_t i = 0; i < a.numel(); ++i)
      a.data()[i] = static_cast<float>((2.0 * uniform01(stream, static_cast<std::uint64_t>(i)) - 1.0) * bound);
    for (index_t i = 0; i < b.numel(); ++i) b.data()[i] = 0.0f;
    out.push_back({"base_model.model." + module + ".lora_A.weight", std::move(a)});
    out.push_back({"base_model.model." + module + ".lora_B.weight", std::move(b)});
  }
  return out;
}

// Writes `dir`/adapter_config.json and `dir`/adapter_model.safetensors (fp32, metadata {"format": "pt"}), creating
// `dir` if needed; each file appears whole or not at all. Every name must be a LoRA weight name (parse_tensor_name).
inline void save_adapter(const std::filesystem::path& dir, const LoraConfig& config,
                         const std::string& base_model_name_or_path, const std::vector<AdapterTensor>& tensors) {
  validate(config);
  SafetensorsWriter weights;
  weights.set_metadata("format", "pt");
  for (const auto& t : tensors) {
    if (!parse_tensor_name(t.name) && !is_vision_lora_name(t.name))
      fail("peft", (dir / adapter_weights_file_name).string(), ": tensor ", t.name, " is not a LoRA weight name");
    if (!t.value.defined()) fail("peft", (dir / adapter_weights_file_name).string(), ": tensor ", t.name, " is empty");
    weights.add(t.name, t.value);
  }
  std::filesystem::create_directories(dir);
  weights.write(dir / adapter_weights_file_name);
  const std::string text = adapter_config_text(config, base_model_name_or_path);
  AtomicFileWriter out(dir / adapter_config_file_name, "peft");
  out.write(text.data(), text.size());
  out.commit();
}

// The parsed JSON of an adapter_config.json; errors name the file.
inline nlohmann::json read_adapter_config_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("peft", path.string(), ": cannot open");
  std::ostringstream text;
  text << in.rdbuf();
  try {
    return nlohmann::json::parse(text.str());
  } catch (const nlohmann::json::exception& e) {
    fail("peft", path.string(), ": not valid JSON: ", e.what());
  }
}

// Reads a PEFT adapter folder. Errors name the folder or file: missing folder or files, an adapter_model.bin
// (pickle) instead of safetensors, bad JSON or LoRA settings, names that are not LoRA weights, tensors not 2-D or not
// floating point.
inline Adapter load_adapter(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  if (!fs::exists(dir)) fail("peft", dir.string(), ": no such folder");
  if (!fs::is_directory(dir)) fail("peft", dir.string(), ": not a folder (give the adapter's folder)");
  const fs::path config_path = dir / adapter_config_file_name;
  const fs::path weights_path = dir / adapter_weights_file_name;
  if (!fs::exists(config_path)) fail("peft", config_path.string(), ": missing (is this a PEFT adapter folder?)");
  if (!fs::exists(weights_path)) {
    if (fs::exists(dir / "adapter_model.bin"))
      fail("peft", (dir / "adapter_model.bin").string(), ": .bin (pickle) adapters are not supported; convert it with "
           "safetensors (save_pretrained(..., safe_serialization=True) writes adapter_model.safetensors)");
    fail("peft", weights_path.string(), ": missing");
  }
  Adapter a;
  const nlohmann::json j = read_adapter_config_file(config_path);
  try {
    if (!j.is_object()) fail("peft", config_path.string(), ": not a JSON object");
    a.config = lora_config_from_adapter_config(j, config_path.string());
    if (j.contains("base_model_name_or_path") && j["base_model_name_or_path"].is_string())
      a.base_model_name_or_path = j["base_model_name_or_path"].get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    fail("peft", config_path.string(), ": ", e.what());
  } catch (const Error& e) {
    const std::string what = e.what();
    if (what.find(config_path.string()) != std::string::npos) throw;
    fail("peft", config_path.string(), ": ", what);
  }

  const SafetensorsFile file(weights_path);
  std::string not_lora;
  for (const auto& t : file.tensors())
    if (!parse_tensor_name(t.name) && !is_vision_lora_name(t.name)) not_lora += (not_lora.empty() ? "" : ", ") + t.name;
  if (!not_lora.empty())
    fail("peft", weights_path.string(), ": tensors that are not LoRA weights of a layer: ", not_lora,
         " (only lora_A/lora_B weights are supported; modules_to_save and biases are not)");
  for (const auto& t : file.tensors()) {
    using D = SafetensorsDtype;
    if (t.dtype != D::F32 && t.dtype != D::F16 && t.dtype != D::BF16 && t.dtype != D::F64)
      fail("peft", weights_path.string(), ": tensor ", t.name, ": dtype ", safetensors_dtype_name(t.dtype),
           " is not a floating-point weight (F32, F16, BF16, F64)");
    if (t.shape.size() != 2)
      fail("peft", weights_path.string(), ": tensor ", t.name, ": shape ", qlora::detail::shape_str(t.shape),
           " is not 2-D");
    (parse_tensor_name(t.name) ? a.tensors : a.vision).push_back({t.name, file.read<float, Dyn, Dyn>(t.name)});
  }
  check_tensors(a, weights_path.string());
  return a;
}

}  // namespace qlora::peft
