// Gemma 4 text-model configuration read from a Hugging Face config.json, and the layer plan transformers derives from
// it (models/gemma4/configuration_gemma4.py, Gemma4TextConfig.__post_init__ and kv_sharing_modes; docs/gemma4.md):
//
//   layer type      layer_types[i], or every 6th layer full ((i + 1) % 6 == 0); the last layer is always full
//   head_dim        head_dim on sliding layers; global_head_dim (512) on full layers
//   KV heads        num_key_value_heads; on full layers num_global_key_value_heads when attention_k_eq_v sets it
//   keys = values   attention_k_eq_v on full layers: no v_proj, v = rms(k before its norm)
//   KV sharing      the last num_kv_shared_layers layers reuse ("reuse") the keys and values of the last earlier layer
//                   of their type ("store"); the others compute their own
//   MLP width       intermediate_size, doubled on reusing layers when use_double_wide_mlp
//   RoPE            sliding: default, θ 1e4; full: proportional, θ 1e6, partial_rotary_factor 0.25 (ops/rope.hpp)
//
// Files written by transformers 5.25 carry per_layer_config ({"5": {"head_dim": 512, ...}}); others carry the
// constructor's global_head_dim / num_global_key_value_heads: both are read. Everything a file sets that qlora's
// Gemma 4 would not compute as transformers does (another activation, bidirectional text attention, untied head,
// per-layer overrides of other fields) is refused naming the field.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "../core/shape.hpp"
#include "../ops/rope.hpp"
#include "config.hpp"

namespace qlora {

// Sliding-window or full (global) attention: the layer's geometry and RoPE follow from it.
enum class AttentionKind { sliding, full };

// transformers' kv_sharing_modes: a layer computes its own keys and values (own), computes and shares them (store),
// or attends over a producer's (reuse).
enum class KvSharing { own, store, reuse };

// What one decoder layer computes, as transformers builds Gemma4TextDecoderLayer i.
struct Gemma4LayerPlan {
  AttentionKind attention = AttentionKind::sliding;
  index_t head_dim = 0;      // 256 sliding, 512 full in every published size
  index_t kv_heads = 0;
  index_t intermediate = 0;  // the dense MLP's width (doubled on reusing layers with use_double_wide_mlp)
  KvSharing kv = KvSharing::own;
  index_t kv_source = 0;     // the layer whose keys and values this one attends over (itself unless reuse)
  bool k_eq_v = false;       // values from the key projection (full layers with attention_k_eq_v)
  index_t window = 0;        // sliding window (tokens), 0 on full layers
  RopeParams rope{};

  bool computes_kv() const { return kv != KvSharing::reuse; }  // has k_proj, k_norm (and v_proj unless k_eq_v)
};

struct Gemma4RuntimeConfig {
  index_t hidden = 0, intermediate = 0, layers = 0, heads = 0, kv_heads = 0, head_dim = 0, global_head_dim = 0;
  index_t global_kv_heads = 0;  // num_global_key_value_heads, 0 when unset
  index_t vocab = 0, sliding_window = 0;
  index_t vocab_per_layer_input = 0, hidden_per_layer_input = 0;  // PLE; hidden_per_layer_input 0: none
  index_t kv_shared_layers = 0;
  bool attention_k_eq_v = false, double_wide_mlp = false;
  bool moe = false;  // enable_moe_block
  index_t experts = 0, top_k_experts = 0, moe_intermediate = 0;
  double rms_norm_eps = 1e-6;
  double final_logit_softcap = 0;  // final_logit_softcapping, 0 when null
  RopeParams rope_sliding{10000.0, 1, 1}, rope_full{1000000.0, 1, 0.25};
  std::vector<Gemma4LayerPlan> plan;  // one per layer

  const Gemma4LayerPlan& layer(index_t i) const { return plan.at(static_cast<std::size_t>(i)); }
  bool per_layer_embeddings() const { return hidden_per_layer_input > 0; }
};

namespace detail {
inline const char* kv_sharing_name(KvSharing k) {
  return k == KvSharing::store ? "store" : (k == KvSharing::reuse ? "reuse" : "own");
}

// The RoPE of one layer type from rope_parameters[type]: default (every pair, any θ) or proportional.
inline RopeParams gemma4_rope_of(const nlohmann::json& p, const std::string& where, RopeParams fallback,
                                 std::string_view source) {
  if (!p.is_object()) return fallback;
  const std::string type = p.value("rope_type", std::string("default"));
  RopeParams r;
  r.theta = p.value("rope_theta", fallback.theta);
  if (type == "default") {
    if (p.contains("partial_rotary_factor") && p["partial_rotary_factor"].get<double>() != 1.0)
      fail("config", source, ": ", where, " has rope_type 'default' with partial_rotary_factor ",
           p["partial_rotary_factor"].dump(), ", a layout qlora does not implement (Gemma 4 uses 'proportional')");
    r.rotated_fraction = 1;
  } else if (type == "proportional") {
    r.scaling_factor = p.value("factor", 1.0);
    r.rotated_fraction = p.value("partial_rotary_factor", 1.0);
  } else {
    fail("config", source, ": ", where, " rope_type '", type, "' is not supported (Gemma 4: default, proportional)");
  }
  if (!(r.theta > 0) || !(r.scaling_factor > 0) || !(r.rotated_fraction >= 0 && r.rotated_fraction <= 1))
    fail("config", source, ": ", where, ": rope_theta and factor must be positive, partial_rotary_factor in [0, 1]");
  return r;
}
}  // namespace detail

// Derives the layer plan from the model-wide fields and the layer types (transformers' __post_init__ and
// kv_sharing_modes), checking that every layer can be built. `full_overrides[i]`: a per_layer_config entry's
// head_dim / num_key_value_heads for layer i (0: not given).
inline void plan_gemma4_layers(Gemma4RuntimeConfig& c, const std::vector<AttentionKind>& types,
                               const std::vector<std::pair<index_t, index_t>>& overrides, std::string_view source) {
  const index_t n = c.layers;
  c.plan.assign(static_cast<std::size_t>(n), Gemma4LayerPlan{});
  for (index_t i = 0; i < n; ++i) {
    Gemma4LayerPlan& l = c.plan[static_cast<std::size_t>(i)];
    l.attention = types[static_cast<std::size_t>(i)];
    const bool full = l.attention == AttentionKind::full;
    l.head_dim = full ? c.global_head_dim : c.head_dim;
    l.kv_heads = full && c.attention_k_eq_v && c.global_kv_heads > 0 ? c.global_kv_heads : c.kv_heads;
    if (const auto& o = overrides[static_cast<std::size_t>(i)]; o.first > 0 || o.second > 0) {
      if (o.first > 0) l.head_dim = o.first;
      if (o.second > 0) l.kv_heads = o.second;
    }
    l.k_eq_v = full && c.attention_k_eq_v;
    l.window = full ? 0 : c.sliding_window;
    l.rope = full ? c.rope_full : c.rope_sliding;
    l.kv_source = i;
    l.intermediate = c.intermediate;
  }
  // KV sharing: the last kv_shared_layers layers reuse; the last earlier layer of each type stores.
  if (c.kv_shared_layers < 0 || c.kv_shared_layers >= n)
    fail("config", source, ": num_kv_shared_layers ", c.kv_shared_layers, " must lie in [0, num_hidden_layers ", n,
         ") (a model whose every layer reuses another model's keys and values is an assistant model, not trained "
         "here)");
  const index_t first_shared = n - c.kv_shared_layers;
  for (const AttentionKind kind : {AttentionKind::sliding, AttentionKind::full}) {
    index_t producer = -1;
    for (index_t i = first_shared - 1; i >= 0 && producer < 0; --i)
      if (c.plan[static_cast<std::size_t>(i)].attention == kind) producer = i;
    bool consumed = false;
    for (index_t i = first_shared; i < n; ++i) consumed = consumed || c.plan[static_cast<std::size_t>(i)].attention == kind;
    if (producer < 0) {
      if (consumed)
        fail("config", source, ": layers from ", first_shared, " on reuse the keys and values of an earlier ",
             kind == AttentionKind::full ? "full_attention" : "sliding_attention",
             " layer, and none comes before them (num_kv_shared_layers ", c.kv_shared_layers, ")");
      continue;
    }
    c.plan[static_cast<std::size_t>(producer)].kv = KvSharing::store;
    for (index_t i = first_shared; i < n; ++i) {
      Gemma4LayerPlan& l = c.plan[static_cast<std::size_t>(i)];
      if (l.attention != kind) continue;
      const Gemma4LayerPlan& p = c.plan[static_cast<std::size_t>(producer)];
      l.kv = KvSharing::reuse;
      l.kv_source = producer;
      if (l.head_dim != p.head_dim || l.kv_heads != p.kv_heads)
        fail("config", source, ": layer ", i, " reuses layer ", producer, "'s keys and values, but its head_dim ",
             l.head_dim, " / KV heads ", l.kv_heads, " differ from that layer's ", p.head_dim, " / ", p.kv_heads);
      if (c.double_wide_mlp) l.intermediate = 2 * c.intermediate;
    }
  }
  for (index_t i = 0; i < n; ++i) {
    const Gemma4LayerPlan& l = c.plan[static_cast<std::size_t>(i)];
    if (l.head_dim < 2 || l.head_dim % 2 != 0 || l.head_dim > 2 * RopeFrequencies<float>::kMaxHalf)
      fail("config", source, ": layer ", i, " has head_dim ", l.head_dim, " (must be even, 2 to ",
           2 * RopeFrequencies<float>::kMaxHalf, ")");
    if (l.kv_heads < 1 || c.heads % l.kv_heads != 0)
      fail("config", source, ": layer ", i, " has ", l.kv_heads, " KV heads for num_attention_heads ", c.heads,
           " (must divide it)");
  }
}

// Reads a Gemma 4 config.json: the multimodal "gemma4" (text_config inside) or the text-only "gemma4_text".
inline Gemma4RuntimeConfig gemma4_config_from_json(const nlohmann::json& root, std::string_view source) {
  const bool wrapped = root.is_object() && root.contains("text_config");
  const nlohmann::json& j = wrapped ? root["text_config"] : root;
  if (!j.is_object()) fail("config", source, ": ", wrapped ? "text_config" : "the file", " is not a JSON object");
  auto type_of = [](const nlohmann::json& o) {
    return o.contains("model_type") && o["model_type"].is_string() ? o["model_type"].get<std::string>() : "";
  };
  if (wrapped && type_of(root) != "gemma4")
    fail("config", source, ": model_type is '", type_of(root), "', not gemma4");
  if (type_of(j) != "gemma4_text")
    fail("config", source, ": ", wrapped ? "text_config." : "", "model_type is '", type_of(j),
         "', not gemma4_text (a Gemma 4 text model)");
  try {
    Gemma4RuntimeConfig c;
    auto extent = [&](const char* key, index_t fallback) {
      if (!j.contains(key) || j[key].is_null()) {
        if (fallback < 0) fail("config", source, ": ", key, " is missing");
        return fallback;
      }
      if (!j[key].is_number_integer()) fail("config", source, ": ", key, " is ", j[key].dump(), ", not an integer");
      return j[key].get<index_t>();
    };
    c.hidden = extent("hidden_size", -1);
    c.intermediate = extent("intermediate_size", -1);
    c.layers = extent("num_hidden_layers", -1);
    c.heads = extent("num_attention_heads", -1);
    c.kv_heads = extent("num_key_value_heads", -1);
    c.head_dim = extent("head_dim", 256);
    c.global_head_dim = extent("global_head_dim", 512);
    c.global_kv_heads = extent("num_global_key_value_heads", 0);
    c.vocab = extent("vocab_size", -1);
    c.sliding_window = extent("sliding_window", 512);
    c.hidden_per_layer_input = extent("hidden_size_per_layer_input", 256);
    c.vocab_per_layer_input = extent("vocab_size_per_layer_input", c.vocab);
    c.kv_shared_layers = extent("num_kv_shared_layers", 0);
    c.attention_k_eq_v = j.value("attention_k_eq_v", false);
    c.double_wide_mlp = j.value("use_double_wide_mlp", false);
    c.moe = j.value("enable_moe_block", false);
    c.rms_norm_eps = j.value("rms_norm_eps", 1e-6);
    if (j.contains("final_logit_softcapping") && !j["final_logit_softcapping"].is_null())
      c.final_logit_softcap = j["final_logit_softcapping"].get<double>();

    detail::PositiveFields extents;
    extents.check("hidden_size", c.hidden);
    extents.check("intermediate_size", c.intermediate);
    extents.check("num_hidden_layers", c.layers);
    extents.check("num_attention_heads", c.heads);
    extents.check("num_key_value_heads", c.kv_heads);
    extents.check("vocab_size", c.vocab);
    extents.check("sliding_window", c.sliding_window);
    extents.check("hidden_size_per_layer_input", c.hidden_per_layer_input, 0);
    if (c.per_layer_embeddings()) extents.check("vocab_size_per_layer_input", c.vocab_per_layer_input);
    if (c.moe) {
      c.experts = extent("num_experts", -1);
      c.top_k_experts = extent("top_k_experts", -1);
      c.moe_intermediate = extent("moe_intermediate_size", -1);
      extents.check("num_experts", c.experts);
      extents.check("top_k_experts", c.top_k_experts);
      extents.check("moe_intermediate_size", c.moe_intermediate);
    }
    extents.fail_if_any(source, "Gemma 4");
    if (c.moe && c.top_k_experts > c.experts)
      fail("config", source, ": top_k_experts ", c.top_k_experts, " exceeds num_experts ", c.experts);
    if (!(c.rms_norm_eps > 0)) fail("config", source, ": rms_norm_eps must be positive");
    if (c.final_logit_softcap < 0) fail("config", source, ": final_logit_softcapping must be positive or null");

    // What qlora computes as transformers does only with these values.
    const std::string act = j.value("hidden_activation", std::string("gelu_pytorch_tanh"));
    if (act != "gelu_pytorch_tanh")
      fail("config", source, ": hidden_activation '", act, "' is not supported (Gemma 4: gelu_pytorch_tanh)");
    if (j.value("attention_bias", false)) fail("config", source, ": attention_bias true is not supported (Gemma 4 has none)");
    if (!j.value("tie_word_embeddings", root.value("tie_word_embeddings", true)))
      fail("config", source, ": tie_word_embeddings false is not supported (Gemma 4's head is the embedding)");
    if (j.contains("use_bidirectional_attention") && j["use_bidirectional_attention"].is_string() &&
        j["use_bidirectional_attention"].get<std::string>() == "all")
      fail("config", source, ": use_bidirectional_attention 'all' (a non-causal text model) is not supported");

    // RoPE per layer type.
    if (j.contains("rope_parameters") && j["rope_parameters"].is_object()) {
      const auto& rp = j["rope_parameters"];
      if (rp.contains("sliding_attention"))
        c.rope_sliding = detail::gemma4_rope_of(rp["sliding_attention"], "rope_parameters.sliding_attention",
                                                c.rope_sliding, source);
      if (rp.contains("full_attention"))
        c.rope_full = detail::gemma4_rope_of(rp["full_attention"], "rope_parameters.full_attention", c.rope_full,
                                             source);
    }

    // Layer types: given, or every 6th layer full; the last forced full as transformers does.
    std::vector<AttentionKind> types(static_cast<std::size_t>(c.layers));
    if (j.contains("layer_types") && j["layer_types"].is_array()) {
      const auto& lt = j["layer_types"];
      if (static_cast<index_t>(lt.size()) != c.layers)
        fail("config", source, ": layer_types lists ", lt.size(), " layers, num_hidden_layers is ", c.layers);
      for (index_t i = 0; i < c.layers; ++i) {
        const auto& t = lt[static_cast<std::size_t>(i)];
        const std::string name = t.is_string() ? t.get<std::string>() : t.dump();
        if (name == "full_attention") types[static_cast<std::size_t>(i)] = AttentionKind::full;
        else if (name == "sliding_attention") types[static_cast<std::size_t>(i)] = AttentionKind::sliding;
        else fail("config", source, ": layer_types[", i, "] is ", name, " (full_attention or sliding_attention)");
      }
    } else {
      for (index_t i = 0; i < c.layers; ++i)
        types[static_cast<std::size_t>(i)] = (i + 1) % 6 == 0 ? AttentionKind::full : AttentionKind::sliding;
    }
    types.back() = AttentionKind::full;

    // per_layer_config: {"<layer>": {"head_dim": ..., "num_key_value_heads": ...}}; it replaces the derived
    // overrides of full layers (transformers uses it as given).
    std::vector<std::pair<index_t, index_t>> overrides(static_cast<std::size_t>(c.layers), {0, 0});
    if (j.contains("per_layer_config") && j["per_layer_config"].is_object()) {
      for (index_t i = 0; i < c.layers; ++i)  // given entries replace the full layers' derived head_dim
        if (types[static_cast<std::size_t>(i)] == AttentionKind::full) overrides[static_cast<std::size_t>(i)] = {c.head_dim, c.kv_heads};
      for (const auto& [key, entry] : j["per_layer_config"].items()) {
        index_t layer = -1;
        try {
          std::size_t used = 0;
          layer = static_cast<index_t>(std::stoll(key, &used));
          if (used != key.size()) layer = -1;
        } catch (const std::exception&) {
        }
        if (layer < 0 || layer >= c.layers)
          fail("config", source, ": per_layer_config key '", key, "' is not a layer index below ", c.layers);
        if (!entry.is_object()) fail("config", source, ": per_layer_config['", key, "'] is not an object");
        for (const auto& [field, value] : entry.items()) {
          if (field != "head_dim" && field != "num_key_value_heads")
            fail("config", source, ": per_layer_config['", key, "'] overrides ", field,
                 "; qlora reads only head_dim and num_key_value_heads per layer");
          if (!value.is_number_integer())
            fail("config", source, ": per_layer_config['", key, "'].", field, " is ", value.dump(), ", not an integer");
        }
        auto& o = overrides[static_cast<std::size_t>(layer)];
        o.first = entry.value("head_dim", c.head_dim);
        o.second = entry.value("num_key_value_heads", c.kv_heads);
      }
    }
    plan_gemma4_layers(c, types, overrides, source);
    return c;
  } catch (const nlohmann::json::exception& e) {
    fail("config", source, ": ", e.what());
  }
}

}  // namespace qlora
