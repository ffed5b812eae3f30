// Which projections of a Gemma block carry LoRA, with which rank and alpha: a run-time value, as PEFT's LoraConfig
// says it. `LoraTargets` resolves a LoraConfig (r, lora_alpha, lora_dropout, use_rslora, target_modules, rank_pattern,
// alpha_pattern) into one `LoraSpec` per adapted projection, or none for a frozen one; an empty LoraTargets is the
// frozen model (inference, merged weights).
//
// The rules are PEFT's (tuners_utils.check_target_module_exists, utils.other.get_pattern_key), applied to the module
// names transformers gives the checkpoint's class: "model.layers.3.self_attn.q_proj" in Gemma3ForCausalLM (270M,
// 1B), "model.language_model.layers.3.self_attn.q_proj" in Gemma3ForConditionalGeneration (4B-27B), and the vision
// tower's "model.vision_tower.encoder.layers.0.self_attn.q_proj" (module_prefix says which text prefix):
// - a target_modules entry adapts a module when it equals the module's name or ends it after a dot ("q_proj",
//   "self_attn.q_proj", "model.layers.0.mlp.down_proj");
// - a rank_pattern / alpha_pattern key applies to a module when the regex `(.*\.)?(key)$` matches its whole name
//   (so "q_proj" matches every layer's q_proj, "layers\.0\.self_attn\.q_proj" only layer 0's); the first key that
//   matches wins, in the order the config lists them.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../core/text.hpp"
#include "config.hpp"
#include "../ops/lora.hpp"
#include "../train/arguments.hpp"

namespace qlora {

enum class Projection { q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj };

inline constexpr std::array<std::string_view, 7> projection_names = {"q_proj", "k_proj", "v_proj", "o_proj",
                                                                     "gate_proj", "up_proj", "down_proj"};
inline constexpr std::array<Projection, 7> all_projections = {Projection::q_proj,    Projection::k_proj,
                                                              Projection::v_proj,    Projection::o_proj,
                                                              Projection::gate_proj, Projection::up_proj,
                                                              Projection::down_proj};
constexpr std::string_view name_of(Projection p) { return projection_names[static_cast<int>(p)]; }
constexpr bool is_attention(Projection p) {
  return p == Projection::q_proj || p == Projection::k_proj || p == Projection::v_proj || p == Projection::o_proj;
}

// "a,b,c": a target list as the messages and logs show it.
inline std::string join_names(const std::vector<std::string>& names) { return joined(names, ","); }

// The recipes' target lists: PEFT's default for Gemma (q_proj, v_proj) and all seven linear layers ("all-linear").
inline std::vector<std::string> q_v_targets() { return {"q_proj", "v_proj"}; }
inline std::vector<std::string> all_linear_targets() {
  return {projection_names.begin(), projection_names.end()};
}

// A projection's path inside the decoder: "layers.3.self_attn.q_proj", "layers.3.mlp.up_proj". Module, weight and
// PEFT tensor names are this path with a prefix and a suffix.
inline std::string projection_path(index_t layer, Projection p) {
  return "layers." + std::to_string(layer) + (is_attention(p) ? ".self_attn." : ".mlp.") + std::string(name_of(p));
}

// The text model's module prefix in transformers' classes: Gemma3ForCausalLM and Gemma3ForConditionalGeneration.
inline constexpr std::string_view causal_lm_module_prefix = "model.";
inline constexpr std::string_view conditional_generation_module_prefix = "model.language_model.";
constexpr std::string_view module_prefix(ModelLayout layout) {
  return layout == ModelLayout::causal_lm ? causal_lm_module_prefix : conditional_generation_module_prefix;
}

// transformers' module name of a projection: "model.layers.3.self_attn.q_proj" (Gemma3ForCausalLM), or with the
// multimodal class's prefix "model.language_model.layers.3.self_attn.q_proj".
inline std::string projection_module_name(index_t layer, Projection p,
                                          std::string_view prefix = causal_lm_module_prefix) {
  return std::string(prefix) + projection_path(layer, p);
}

class LoraTargets {
 public:
  LoraTargets() = default;  // no adapter anywhere
  // Checks the config (ranks, alphas, target names, pattern regexes); errors name the option at fault.
  explicit LoraTargets(LoraConfig config) : config_(std::move(config)) {
    expand_all_linear(*config_);
    validate(*config_);
    for (const auto& entry : config_->rank_pattern) rank_res_.push_back(pattern_regex(entry.first, "rank_pattern"));
    for (const auto& [key, a] : config_->alpha_pattern) {
      if (!std::isfinite(a)) fail("config", "alpha_pattern '", key, "': lora_alpha must be a finite number");
      alpha_res_.push_back(pattern_regex(key, "alpha_pattern"));
    }
  }

  bool empty() const { return !config_; }
  const LoraConfig& config() const {
    if (!config_) fail("lora", "this model has no LoRA adapter");
    return *config_;
  }

  // The checkpoint class the module names are those of: the text model's prefix ("model." by default;
  // "model.language_model." for a multimodal checkpoint, so that rank_pattern keys written for its module names
  // apply), and on a multimodal checkpoint PEFT's all-linear takes the vision tower's out_proj, fc1 and fc2 too.
  LoraTargets& for_layout(ModelLayout layout) {
    module_prefix_ = qlora::module_prefix(layout);
    if (layout == ModelLayout::conditional_generation && config_ && config_->all_linear)
      for (std::string_view name : vision_linear_names)
        if (std::find(config_->target_modules.begin(), config_->target_modules.end(), name) ==
            config_->target_modules.end())
          config_->target_modules.emplace_back(name);
    return *this;
  }
  const std::string& module_prefix() const { return module_prefix_; }
  // Saved adapters name their targets by a regex over the text model (LoraConfig::text_model_only).
  LoraTargets& text_model_only() {
    if (config_) config_->text_model_only = true;
    return *this;
  }

  // The adapter of `layer`'s projection `p`, or nullopt when it is not targeted.
  std::optional<LoraSpec> at(index_t layer, Projection p) const {
    return for_module(projection_module_name(layer, p, module_prefix_));
  }
  // The adapter of any module by its transformers name (a vision-tower projection too), or nullopt.
  std::optional<LoraSpec> for_module(const std::string& module) const {
    if (!config_) return std::nullopt;
    if (!targets(module)) return std::nullopt;
    LoraSpec s{config_->r, config_->lora_alpha, config_->lora_dropout, config_->use_rslora};
    for (std::size_t i = 0; i < rank_res_.size(); ++i)
      if (std::regex_match(module, rank_res_[i])) {
        s.rank = config_->rank_pattern[i].second;
        break;
      }
    for (std::size_t i = 0; i < alpha_res_.size(); ++i)
      if (std::regex_match(module, alpha_res_[i])) {
        s.alpha = config_->alpha_pattern[i].second;
        break;
      }
    return s;
  }

  // Throws unless some projection of a `layers`-layer model is targeted (PEFT: "Target modules ... not found").
  void check_matches(index_t layers, std::string_view model) const {
    if (!config_) return;
    for (index_t l = 0; l < layers; ++l)
      for (Projection p : all_projections)
        if (at(l, p)) return;
    fail("lora", "target_modules '", join_names(config_->target_modules), "' match no projection of ", model,
         " (module names are like ", projection_module_name(0, Projection::q_proj, module_prefix_), ")");
  }

 private:
  bool targets(const std::string& module) const {
    for (const auto& t : config_->target_modules)
      if (module == t || (module.size() > t.size() && module.ends_with(t) && module[module.size() - t.size() - 1] == '.'))
        return true;
    return false;
  }
  static std::regex pattern_regex(const std::string& key, const char* option) {
    try {
      return std::regex("(.*\\.)?(" + key + ")", std::regex::ECMAScript | std::regex::optimize);
    } catch (const std::regex_error& e) {
      fail("config", option, " key '", key, "' is not a valid regular expression: ", e.what());
    }
  }

  std::optional<LoraConfig> config_;
  std::vector<std::regex> rank_res_, alpha_res_;
  std::string module_prefix_{causal_lm_module_prefix};
};

}  // namespace qlora
