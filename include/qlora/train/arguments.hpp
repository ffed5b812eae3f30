// TrainingArguments and LoraConfig with the Hugging Face names and defaults (transformers' training_args.py, PEFT's
// LoraConfig), readable from a JSON object (the CLI turns YAML into the same JSON). Unknown keys are errors that
// suggest the nearest known name, so a typo never silently falls back to a default; values are range-checked.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <type_traits>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "../core/text.hpp"

namespace qlora {

struct TrainingArguments {
  std::string output_dir = "trainer_output";
  double num_train_epochs = 3.0;
  long max_steps = -1;  // > 0 overrides num_train_epochs
  long per_device_train_batch_size = 8;
  long per_device_eval_batch_size = 8;
  long gradient_accumulation_steps = 1;
  double learning_rate = 5e-5;
  double weight_decay = 0.0;
  double adam_beta1 = 0.9, adam_beta2 = 0.999, adam_epsilon = 1e-8;
  double max_grad_norm = 1.0;
  std::string lr_scheduler_type = "linear";
  double warmup_ratio = 0.0;
  long warmup_steps = 0;  // > 0 overrides warmup_ratio
  std::string optim = "adamw_torch";  // adamw_torch, adamw_8bit, paged_adamw_8bit, paged_adamw_32bit
  // Whether `optim` keeps 8-bit states (bitsandbytes' AdamW8bit, paged or not).
  bool eight_bit_optimizer() const { return optim == "adamw_8bit" || optim == "paged_adamw_8bit"; }
  bool bf16 = false;
  bool gradient_checkpointing = false;
  long logging_steps = 500;
  std::string save_strategy = "steps";  // no, steps, epoch
  long save_steps = 500;
  std::optional<long> save_total_limit;
  std::string eval_strategy = "no";  // no, steps, epoch
  std::optional<long> eval_steps;    // defaults to logging_steps, as in transformers
  bool eval_on_start = false;        // evaluate once before the first step (a "before training" figure)
  std::uint64_t seed = 42;
  std::vector<std::string> report_to = {"tensorboard"};
  std::optional<std::string> resume_from_checkpoint;
  long ddp_timeout = 1800;  // seconds a data-parallel rank waits for the others in a collective before ending the run
};

struct LoraConfig {
  long r = 8;
  double lora_alpha = 8;
  double lora_dropout = 0.0;
  std::vector<std::string> target_modules = {"q_proj", "v_proj"};  // PEFT's Gemma default
  bool use_rslora = false;
  std::string bias = "none";
  // PEFT's per-module overrides: module-name regex -> r / lora_alpha (nn/adapter.hpp says how they match).
  std::vector<std::pair<std::string, long>> rank_pattern;
  std::vector<std::pair<std::string, double>> alpha_pattern;
  // Set when target_modules was PEFT's "all-linear" (expanded to the names below): on a multimodal checkpoint PEFT's
  // all-linear also takes the vision tower's linear layers (out_proj, fc1, fc2 besides q/k/v_proj).
  bool all_linear = false;
  // Set for a Gemma 4 multimodal checkpoint (Gemma4ForConditionalGeneration): adapter_config.json's target_modules is
  // then the regex ".*language_model.*\.(q_proj|...)" over the text model's modules, because the same names in its
  // vision and audio towers are Gemma4ClippableLinear modules that PEFT refuses to wrap (peft 0.21: "Target module
  // Gemma4ClippableLinear(...) is not supported"), so a list of names cannot be loaded by PEFT on that class.
  bool text_model_only = false;
};

namespace detail {
// Edit distance, to suggest the nearest known option for a typo.
inline std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> prev(b.size() + 1), row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j)
      row[j] = std::min({prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, row);
  }
  return prev[b.size()];
}

template <class T>
inline constexpr bool is_pattern = std::is_same_v<T, std::vector<std::pair<std::string, long>>> ||
                                   std::is_same_v<T, std::vector<std::pair<std::string, double>>>;

class OptionReader {
 public:
  OptionReader(const nlohmann::json& j, const char* what) : json_(j), what_(what) {
    if (!j.is_object()) fail("config", what, " must be a JSON object");
  }
  template <class T>
  void read(const char* key, T& field) {
    known_.emplace_back(key);
    const auto it = json_.find(key);
    if (it == json_.end() || it->is_null()) return;
    try {
      if constexpr (is_pattern<T>) {
        if (!it->is_object()) fail("config", what_, ": option '", key, "' must be an object {module pattern: value}");
        field.clear();
        for (const auto& [k, v] : it->items()) field.emplace_back(k, v.template get<typename T::value_type::second_type>());
      } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
        field = it->is_string() ? split_commas(it->template get<std::string>()) : it->template get<T>();
      } else if constexpr (std::is_same_v<T, std::optional<long>>) {
        field = integer<long>(key, *it);
      } else if constexpr (std::is_same_v<T, std::optional<std::string>>) {
        field = it->template get<std::string>();
      } else if constexpr (std::is_same_v<T, bool>) {
        if (!it->is_boolean()) throw nlohmann::json::type_error::create(302, "not a boolean", nullptr);
        field = it->template get<bool>();
      } else if constexpr (std::is_integral_v<T>) {
        field = integer<T>(key, *it);
      } else {
        field = it->template get<T>();
      }
    } catch (const nlohmann::json::exception&) {
      fail("config", what_, ": option '", key, "' has the wrong type (", it->type_name(), ")");
    }
  }
  // An integer option: a JSON integer that fits T (nlohmann would cast 1e30 or -1 into a long or an unsigned).
  template <class T>
  T integer(const char* key, const nlohmann::json& v) const {
    if (v.is_number_unsigned()) {
      const auto u = v.template get<std::uint64_t>();
      if (u <= static_cast<std::uint64_t>(std::numeric_limits<T>::max())) return static_cast<T>(u);
    } else if (v.is_number_integer()) {
      const auto i = v.template get<std::int64_t>();
      if (i >= 0 || std::is_signed_v<T>) return static_cast<T>(i);
    } else if (v.is_number_float()) {
      fail("config", what_, ": option '", key, "' is ", v.dump(), ", not an integer");
    } else {
      throw nlohmann::json::type_error::create(302, "not an integer", nullptr);
    }
    fail("config", what_, ": option '", key, "' is ", v.dump(), ", outside the range of ",
         std::is_signed_v<T> ? "a signed" : "an unsigned", " 64-bit integer");
  }
  // Throws for keys that no read() asked for, naming the nearest known one.
  void reject_unknown() const {
    for (const auto& [key, value] : json_.items()) {
      if (std::find(known_.begin(), known_.end(), key) != known_.end()) continue;
      std::string nearest = known_.front();
      for (const auto& k : known_)
        if (edit_distance(key, k) < edit_distance(key, nearest)) nearest = k;
      fail("config", what_, ": unknown option '", key, "' (did you mean '", nearest, "'?)");
    }
  }
  static std::vector<std::string> split_commas(const std::string& s) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (start <= s.size()) {
      const std::size_t comma = s.find(',', start);
      const std::string item = s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      if (!item.empty()) out.push_back(item);
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    return out;
  }

 private:
  const nlohmann::json& json_;
  const char* what_;
  std::vector<std::string> known_;
};

inline void require_in(const std::string& value, std::initializer_list<const char*> allowed, const char* key) {
  for (const char* a : allowed)
    if (value == a) return;
  fail("config", "option '", key, "' is '", value, "'; allowed: ", joined(allowed));
}
}  // namespace detail

// Every value range-checked before anything is loaded; NaN fails every check (each is written as "x in range").
inline void validate(const TrainingArguments& a) {
  auto finite = [](double v) { return std::isfinite(v); };
  if (a.output_dir.empty()) fail("config", "output_dir is empty");
  if (a.per_device_train_batch_size < 1) fail("config", "per_device_train_batch_size must be >= 1");
  if (a.per_device_eval_batch_size < 1) fail("config", "per_device_eval_batch_size must be >= 1");
  if (a.gradient_accumulation_steps < 1) fail("config", "gradient_accumulation_steps must be >= 1");
  if (!(a.learning_rate > 0) || !finite(a.learning_rate)) fail("config", "learning_rate must be positive");
  if (!(a.max_steps == -1 || a.max_steps > 0))
    fail("config", "max_steps must be a positive number of steps, or -1 to train num_train_epochs; got ", a.max_steps);
  // 1e6 epochs of any data set is past any real run; it keeps the step count far from overflowing.
  if (a.max_steps == -1 && !(a.num_train_epochs > 0 && a.num_train_epochs <= 1e6))
    fail("config", "num_train_epochs must be in (0, 1e6] (or give max_steps), got ", a.num_train_epochs);
  if (!(a.weight_decay >= 0) || !finite(a.weight_decay)) fail("config", "weight_decay must be a finite number >= 0");
  if (!(a.adam_beta1 >= 0 && a.adam_beta1 < 1) || !(a.adam_beta2 >= 0 && a.adam_beta2 < 1))
    fail("config", "adam_beta1 and adam_beta2 must be in [0, 1)");
  if (!(a.adam_epsilon > 0) || !finite(a.adam_epsilon)) fail("config", "adam_epsilon must be positive");
  if (!(a.max_grad_norm >= 0) || !finite(a.max_grad_norm))
    fail("config", "max_grad_norm must be a finite number >= 0 (0 turns clipping off)");
  if (!(a.warmup_ratio >= 0 && a.warmup_ratio <= 1)) fail("config", "warmup_ratio must be in [0, 1]");
  if (a.warmup_steps < 0) fail("config", "warmup_steps must not be negative");
  if (a.logging_steps < 1 || a.save_steps < 1) fail("config", "logging_steps and save_steps must be >= 1");
  if (a.eval_steps && *a.eval_steps < 1) fail("config", "eval_steps must be >= 1");
  if (a.ddp_timeout < 1) fail("config", "ddp_timeout must be >= 1 second, got ", a.ddp_timeout);
  if (a.save_total_limit && *a.save_total_limit < 1) fail("config", "save_total_limit must be >= 1 (or absent: keep all)");
  detail::require_in(a.lr_scheduler_type, {"linear", "cosine", "constant", "constant_with_warmup"}, "lr_scheduler_type");
  detail::require_in(a.optim, {"adamw_torch", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit"}, "optim");
  detail::require_in(a.save_strategy, {"no", "steps", "epoch"}, "save_strategy");
  detail::require_in(a.eval_strategy, {"no", "steps", "epoch"}, "eval_strategy");
  for (const auto& r : a.report_to) detail::require_in(r, {"tensorboard", "none"}, "report_to");
}

// PEFT's "all-linear" shorthand as the seven projection names (what PEFT writes into adapter_config.json).
inline void expand_all_linear(LoraConfig& c) {
  if (c.target_modules == std::vector<std::string>{"all-linear"}) {
    c.target_modules = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
    c.all_linear = true;
  }
}

// The linear layers of the SigLIP vision tower that PEFT names besides q/k/v_proj (a multimodal checkpoint's
// all-linear, or an adapter PEFT trained on one); they match nothing in the text model.
inline constexpr std::array<std::string_view, 3> vision_linear_names = {"out_proj", "fc1", "fc2"};

// Target entries are module names or their dotted tails ("q_proj", "self_attn.q_proj",
// "model.layers.0.mlp.down_proj"): the last part must name one of the seven projections (or a vision-tower linear
// layer of a multimodal checkpoint: out_proj, fc1, fc2).
inline void validate(const LoraConfig& c) {
  if (c.r < 1) fail("config", "lora r must be >= 1, got ", c.r);
  if (!std::isfinite(c.lora_alpha)) fail("config", "lora_alpha must be a finite number");
  if (!(c.lora_dropout >= 0 && c.lora_dropout < 1)) fail("config", "lora_dropout must be in [0, 1)");
  if (c.target_modules.empty()) fail("config", "target_modules is empty");
  for (const auto& m : c.target_modules) {
    const std::size_t dot = m.rfind('.');
    const std::string last = dot == std::string::npos ? m : m.substr(dot + 1);
    if (m == "all-linear")
      fail("config", "target_modules: all-linear must be given alone (it means all seven projections)");
    detail::require_in(last, {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
                              "out_proj", "fc1", "fc2"},
                       "target_modules");
  }
  for (const auto& [key, r] : c.rank_pattern)
    if (r < 1) fail("config", "rank_pattern '", key, "': r must be >= 1, got ", r);
  for (const auto& [key, alpha] : c.alpha_pattern)
    if (!std::isfinite(alpha)) fail("config", "alpha_pattern '", key, "': lora_alpha must be a finite number");
  detail::require_in(c.bias, {"none"}, "bias");
}

inline TrainingArguments training_arguments_from_json(const nlohmann::json& j) {
  TrainingArguments a;
  detail::OptionReader r(j, "TrainingArguments");
  r.read("output_dir", a.output_dir);
  r.read("num_train_epochs", a.num_train_epochs);
  r.read("max_steps", a.max_steps);
  r.read("per_device_train_batch_size", a.per_device_train_batch_size);
  r.read("per_device_eval_batch_size", a.per_device_eval_batch_size);
  r.read("gradient_accumulation_steps", a.gradient_accumulation_steps);
  r.read("learning_rate", a.learning_rate);
  r.read("weight_decay", a.weight_decay);
  r.read("adam_beta1", a.adam_beta1);
  r.read("adam_beta2", a.adam_beta2);
  r.read("adam_epsilon", a.adam_epsilon);
  r.read("max_grad_norm", a.max_grad_norm);
  r.read("lr_scheduler_type", a.lr_scheduler_type);
  r.read("warmup_ratio", a.warmup_ratio);
  r.read("warmup_steps", a.warmup_steps);
  r.read("optim", a.optim);
  r.read("bf16", a.bf16);
  r.read("gradient_checkpointing", a.gradient_checkpointing);
  r.read("logging_steps", a.logging_steps);
  r.read("save_strategy", a.save_strategy);
  r.read("save_steps", a.save_steps);
  r.read("save_total_limit", a.save_total_limit);
  r.read("eval_strategy", a.eval_strategy);
  r.read("eval_steps", a.eval_steps);
  r.read("eval_on_start", a.eval_on_start);
  r.read("seed", a.seed);
  r.read("report_to", a.report_to);
  r.read("resume_from_checkpoint", a.resume_from_checkpoint);
  r.read("ddp_timeout", a.ddp_timeout);
  r.reject_unknown();
  validate(a);
  return a;
}

// The arguments as JSON with the same keys the readers take (what `qlora finetune --print-config` shows); reading
// it back gives the same arguments.
inline nlohmann::json to_json(const TrainingArguments& a) {
  nlohmann::json j = {{"output_dir", a.output_dir}, {"num_train_epochs", a.num_train_epochs}, {"max_steps", a.max_steps},
                      {"per_device_train_batch_size", a.per_device_train_batch_size},
                      {"per_device_eval_batch_size", a.per_device_eval_batch_size},
                      {"gradient_accumulation_steps", a.gradient_accumulation_steps},
                      {"learning_rate", a.learning_rate}, {"weight_decay", a.weight_decay},
                      {"adam_beta1", a.adam_beta1}, {"adam_beta2", a.adam_beta2}, {"adam_epsilon", a.adam_epsilon},
                      {"max_grad_norm", a.max_grad_norm}, {"lr_scheduler_type", a.lr_scheduler_type},
                      {"warmup_ratio", a.warmup_ratio}, {"warmup_steps", a.warmup_steps}, {"optim", a.optim},
                      {"bf16", a.bf16}, {"gradient_checkpointing", a.gradient_checkpointing},
                      {"logging_steps", a.logging_steps}, {"save_strategy", a.save_strategy},
                      {"save_steps", a.save_steps}, {"save_total_limit", nullptr}, {"eval_strategy", a.eval_strategy},
                      {"eval_steps", nullptr}, {"eval_on_start", a.eval_on_start}, {"seed", a.seed},
                      {"report_to", a.report_to}, {"resume_from_checkpoint", nullptr},
                      {"ddp_timeout", a.ddp_timeout}};
  if (a.save_total_limit) j["save_total_limit"] = *a.save_total_limit;
  if (a.eval_steps) j["eval_steps"] = *a.eval_steps;
  if (a.resume_from_checkpoint) j["resume_from_checkpoint"] = *a.resume_from_checkpoint;
  return j;
}

inline nlohmann::json to_json(const LoraConfig& c) {
  nlohmann::json j = {{"r", c.r}, {"lora_alpha", c.lora_alpha}, {"lora_dropout", c.lora_dropout},
                      {"target_modules", c.all_linear ? std::vector<std::string>{"all-linear"} : c.target_modules},
                      {"use_rslora", c.use_rslora}, {"bias", c.bias},
                      {"rank_pattern", nlohmann::json::object()}, {"alpha_pattern", nlohmann::json::object()}};
  for (const auto& [k, v] : c.rank_pattern) j["rank_pattern"][k] = v;
  for (const auto& [k, v] : c.alpha_pattern) j["alpha_pattern"][k] = v;
  return j;
}

inline LoraConfig lora_config_from_json(const nlohmann::json& j) {
  LoraConfig c;
  detail::OptionReader r(j, "LoraConfig");
  r.read("r", c.r);
  r.read("lora_alpha", c.lora_alpha);
  r.read("lora_dropout", c.lora_dropout);
  r.read("target_modules", c.target_modules);
  r.read("use_rslora", c.use_rslora);
  r.read("bias", c.bias);
  r.read("rank_pattern", c.rank_pattern);
  r.read("alpha_pattern", c.alpha_pattern);
  r.reject_unknown();
  expand_all_linear(c);
  validate(c);
  return c;
}

}  // namespace qlora
