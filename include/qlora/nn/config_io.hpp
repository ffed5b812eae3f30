// Gemma 3 configurations read from files: a GGUF's gemma3.* metadata, or a Hugging Face config.json (text-only
// "gemma3_text", or the multimodal "gemma3" with a text_config; transformers 4.x rope_theta / rope_local_base_freq /
// rope_scaling and 5.x rope_parameters). Fields a file does not carry stay unset (0 / -1) and are not checked.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "../io/gguf.hpp"
#include "config.hpp"

namespace qlora {

inline Gemma3RuntimeConfig gemma3_config_from_gguf(const GgufFile& f) {
  const std::string source = f.path().string();
  const std::string arch = f.contains("general.architecture") ? f.get_string("general.architecture") : "";
  if (arch != "gemma3") fail("config", source, ": general.architecture is '", arch, "', not gemma3");
  auto u = [&](const char* key) { return static_cast<index_t>(f.get_u32(std::string("gemma3.") + key)); };
  Gemma3RuntimeConfig c;
  c.hidden = u("embedding_length");
  c.intermediate = u("feed_forward_length");
  c.layers = u("block_count");
  c.heads = u("attention.head_count");
  c.kv_heads = u("attention.head_count_kv");
  c.head_dim = u("attention.key_length");
  c.sliding_window = u("attention.sliding_window");
  c.rope_global_theta = f.get_f32("gemma3.rope.freq_base");
  if (f.contains("gemma3.rope.scaling.factor")) c.rope_global_scaling = f.get_f32("gemma3.rope.scaling.factor");
  c.rms_norm_eps = f.get_f32("gemma3.attention.layer_norm_rms_epsilon");
  c.vocab = static_cast<index_t>(f.get_array<std::string>("tokenizer.ggml.tokens").size());
  return c;
}

inline Gemma3RuntimeConfig gemma3_config_from_json(const nlohmann::json& root, std::string_view source) {
  const nlohmann::json& j = root.contains("text_config") ? root["text_config"] : root;
  // Another model's config (Gemma 4, Llama, ...) would load as a wrong Gemma 3 or fail on a missing tensor: named here.
  auto check_model_type = [&](const nlohmann::json& o, const char* where) {
    if (!o.is_object() || !o.contains("model_type") || !o["model_type"].is_string()) return;
    const std::string type = o["model_type"].get<std::string>();
    if (type == "gemma3" || type == "gemma3_text") return;
    if (type.starts_with("gemma4"))
      fail("config", source, ": ", where, "model_type is '", type, "': a Gemma 4 checkpoint, which qlora finetune, "
           "qlora merge and the Gemma4 library type read so far (generate, evaluate, export and info take Gemma 3; "
           "docs/gemma4.md)");
    fail("config", source, ": ", where, "model_type is '", type, "', not Gemma 3 (gemma3, gemma3_text), the model "
         "qlora trains");
  };
  check_model_type(root, "");
  if (&j != &root) check_model_type(j, "text_config.");
  // Soft-capping is not part of Gemma 3 (null in its configs); a file that sets it describes a model qlora would
  // train and evaluate without the cap.
  for (const char* key : {"final_logit_softcapping", "attn_logit_softcapping"})
    if (j.is_object() && j.contains(key) && !j[key].is_null())
      fail("config", source, ": ", key, " is ", j[key].dump(), "; Gemma 3 has none (null) and qlora's Gemma 3 does "
           "not apply it");
  try {
    Gemma3RuntimeConfig c;
    c.hidden = j.at("hidden_size").get<index_t>();
    c.intermediate = j.at("intermediate_size").get<index_t>();
    c.layers = j.at("num_hidden_layers").get<index_t>();
    c.heads = j.at("num_attention_heads").get<index_t>();
    c.kv_heads = j.at("num_key_value_heads").get<index_t>();
    c.head_dim = j.at("head_dim").get<index_t>();
    c.vocab = j.at("vocab_size").get<index_t>();
    c.sliding_window = j.at("sliding_window").get<index_t>();
    c.query_pre_attn_scalar = j.value("query_pre_attn_scalar", 0.0);
    c.rms_norm_eps = j.value("rms_norm_eps", 0.0);
    // RoPE scaling: Gemma 3 uses none, or linear (4B-27B, global layers); other kinds would change every position.
    auto check_rope_type = [&](const nlohmann::json& p, const char* where) {
      if (!p.is_object()) return;
      const std::string type = p.value("rope_type", p.value("type", std::string("default")));
      if (type != "default" && type != "linear")
        fail("config", source, ": ", where, " rope_type '", type, "' is not supported (Gemma 3: default or linear)");
    };
    if (j.contains("rope_parameters")) {  // transformers 5
      const auto& rp = j["rope_parameters"];
      if (rp.contains("full_attention")) {
        check_rope_type(rp["full_attention"], "rope_parameters.full_attention");
        c.rope_global_theta = rp["full_attention"].value("rope_theta", 0.0);
        c.rope_global_scaling = rp["full_attention"].value("factor", 1.0);
      }
      if (rp.contains("sliding_attention")) {
        check_rope_type(rp["sliding_attention"], "rope_parameters.sliding_attention");
        c.rope_local_theta = rp["sliding_attention"].value("rope_theta", 0.0);
      }
    } else {  // transformers 4
      c.rope_global_theta = j.value("rope_theta", 0.0);
      c.rope_local_theta = j.value("rope_local_base_freq", 0.0);
      if (j.contains("rope_scaling") && j["rope_scaling"].is_object()) {
        check_rope_type(j["rope_scaling"], "rope_scaling");
        c.rope_global_scaling = j["rope_scaling"].value("factor", 1.0);
      }
    }
    // Gemma 3 attends globally in every 6th layer; a file that says otherwise describes another model.
    if (j.contains("sliding_window_pattern") && j["sliding_window_pattern"].is_number() &&
        j["sliding_window_pattern"].get<index_t>() != 6)
      fail("config", source, ": sliding_window_pattern ", j["sliding_window_pattern"].get<index_t>(),
           " is not Gemma 3's 6 (every 6th layer global), which qlora's Gemma 3 implements");
    if (j.contains("layer_types") && j["layer_types"].is_array()) {
      const auto& types = j["layer_types"];
      if (static_cast<index_t>(types.size()) != c.layers)
        fail("config", source, ": layer_types lists ", types.size(), " layers, num_hidden_layers is ", c.layers);
      for (index_t l = 0; l < c.layers; ++l) {
        const std::string want = Gemma3RuntimeConfig::is_global_layer(l) ? "full_attention" : "sliding_attention";
        const std::string have = types[static_cast<std::size_t>(l)].is_string() ? types[static_cast<std::size_t>(l)].get<std::string>() : types[static_cast<std::size_t>(l)].dump();
        if (have != want)
          fail("config", source, ": layer_types[", l, "] is ", have, " where Gemma 3 has ", want,
               " (every 6th layer global); qlora's Gemma 3 implements only that pattern");
      }
    }
    return c;
  } catch (const nlohmann::json::exception& e) {
    fail("config", source, ": ", e.what());
  }
}

}  // namespace qlora
