// TrainerState, the progress of a training run, and its file trainer_state.json with the Hugging Face Trainer's key
// names (transformers/trainer_callback.py, TrainerState.save_to_json: json.dumps(indent=2, sort_keys=True) + "\n"):
//   global_step, epoch, log_history (one object per logging event, with "step"), max_steps, logging_steps,
//   eval_steps, save_steps, train_batch_size, num_train_epochs
// plus qlora's own keys, which HF's TrainerState ignores when present:
//   "seed"           the run's seed (data order and dropout masks derive from it)
//   "data_position"  {"epoch": e, "micro_batches": n}: the next micro-batch is the (n+1)-th of epoch e
//   "global_train_batch_size"  rows per micro-batch over all ranks (per-device batch × ranks), the unit of the
//                    data position: a run resumed with another number of ranks must keep it
// The data position is what makes resuming exact (train/trainer.hpp skips those micro-batches). Read errors name the
// file and the key.
#pragma once

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "mapped_file.hpp"

namespace qlora {

inline constexpr std::string_view trainer_state_file_name = "trainer_state.json";

struct DataPosition {
  long epoch = 0;          // the epoch the next micro-batch comes from
  long micro_batches = 0;  // micro-batches of that epoch already used
  bool operator==(const DataPosition&) const = default;
};

struct TrainerState {
  long global_step = 0;  // optimizer steps done
  double epoch = 0;      // fractional epochs done (global_step / steps_per_epoch when that is known)
  std::vector<std::map<std::string, double>> log_history;
  std::optional<DataPosition> data_position;  // nullopt: not recorded (derived from global_step on resume)
  std::uint64_t seed = 0;
  // The run's settings, as HF records them (filled by the Trainer).
  long max_steps = 0, logging_steps = 0, eval_steps = 0, save_steps = 0, train_batch_size = 0;
  double num_train_epochs = 0;
  std::optional<long> global_train_batch_size;  // per-device batch × ranks (nullopt: not recorded)
};

inline nlohmann::json trainer_state_json(const TrainerState& s) {
  nlohmann::json j;  // nlohmann keeps object keys sorted, as sort_keys=True
  j["global_step"] = s.global_step;
  j["epoch"] = s.epoch;
  nlohmann::json history = nlohmann::json::array();
  for (const auto& entry : s.log_history) {
    nlohmann::json e = nlohmann::json::object();
    for (const auto& [k, v] : entry) {
      if (k == "step")
        e[k] = static_cast<long>(v);
      else if (std::isfinite(v))
        e[k] = v;
      else
        e[k] = nullptr;  // JSON has no NaN (Python would write NaN, which strict readers refuse)
    }
    history.push_back(std::move(e));
  }
  j["log_history"] = std::move(history);
  j["max_steps"] = s.max_steps;
  j["logging_steps"] = s.logging_steps;
  j["eval_steps"] = s.eval_steps;
  j["save_steps"] = s.save_steps;
  j["train_batch_size"] = s.train_batch_size;
  j["num_train_epochs"] = s.num_train_epochs;
  j["best_metric"] = nullptr;
  j["best_model_checkpoint"] = nullptr;
  j["is_hyper_param_search"] = false;
  j["is_local_process_zero"] = true;
  j["is_world_process_zero"] = true;
  j["total_flos"] = 0;
  j["trial_name"] = nullptr;
  j["trial_params"] = nullptr;
  j["seed"] = s.seed;
  if (s.global_train_batch_size) j["global_train_batch_size"] = *s.global_train_batch_size;
  if (s.data_position)
    j["data_position"] = {{"epoch", s.data_position->epoch}, {"micro_batches", s.data_position->micro_batches}};
  return j;
}

// The state from a parsed trainer_state.json; `source` names the file in errors. Keys qlora does not use are ignored,
// so files written by the HF Trainer read too (without a data position).
inline TrainerState trainer_state_from_json(const nlohmann::json& j, std::string_view source) {
  auto error = [&](auto&&... parts) { fail("trainer_state", source, ": ", parts...); };
  if (!j.is_object()) error("not a JSON object");
  auto count = [&](const nlohmann::json& o, const char* key, const char* where) -> long {
    const auto it = o.find(key);
    if (it == o.end()) error(where, "missing \"", key, "\"");
    if (!it->is_number_integer() || it->get<long>() < 0)
      error(where, "\"", key, "\" is ", it->dump(), ", not a count");
    return it->get<long>();
  };
  auto optional_count = [&](const char* key) { return j.contains(key) && !j[key].is_null() ? count(j, key, "") : 0L; };
  TrainerState s;
  s.global_step = count(j, "global_step", "");
  if (j.contains("epoch") && !j["epoch"].is_null()) {
    if (!j["epoch"].is_number()) error("\"epoch\" is ", j["epoch"].dump(), ", not a number");
    s.epoch = j["epoch"].get<double>();
  }
  if (j.contains("log_history")) {
    const auto& h = j["log_history"];
    if (!h.is_array()) error("\"log_history\" is not a list");
    for (std::size_t i = 0; i < h.size(); ++i) {
      if (!h[i].is_object()) error("log_history[", i, "] is not an object");
      std::map<std::string, double> entry;
      for (const auto& [k, v] : h[i].items()) {
        if (v.is_number()) entry[k] = v.get<double>();
        else if (v.is_null()) entry[k] = NAN;  // how trainer_state_json writes non-finite values
      }
      s.log_history.push_back(std::move(entry));
    }
  }
  s.max_steps = optional_count("max_steps");
  s.logging_steps = optional_count("logging_steps");
  s.eval_steps = optional_count("eval_steps");
  s.save_steps = optional_count("save_steps");
  s.train_batch_size = optional_count("train_batch_size");
  if (j.contains("num_train_epochs") && j["num_train_epochs"].is_number())
    s.num_train_epochs = j["num_train_epochs"].get<double>();
  if (j.contains("seed")) {
    if (!j["seed"].is_number_unsigned()) error("\"seed\" is ", j["seed"].dump(), ", not a non-negative integer");
    s.seed = j["seed"].get<std::uint64_t>();
  }
  if (j.contains("global_train_batch_size")) s.global_train_batch_size = count(j, "global_train_batch_size", "");
  if (j.contains("data_position")) {
    const auto& p = j["data_position"];
    if (!p.is_object()) error("\"data_position\" is not an object");
    s.data_position = DataPosition{count(p, "epoch", "data_position: "), count(p, "micro_batches", "data_position: ")};
  }
  return s;
}

// The file text: two-space indent, sorted keys, a final newline.
inline std::string trainer_state_text(const TrainerState& s) { return trainer_state_json(s).dump(2) + "\n"; }

// Writes <path> atomically (a reader or a crash never sees half a file).
inline void save_trainer_state(const TrainerState& s, const std::filesystem::path& path) {
  const std::string text = trainer_state_text(s);
  AtomicFileWriter out(path, "trainer_state");
  out.write(text.data(), text.size());
  out.commit();
}

inline TrainerState load_trainer_state(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("trainer_state", path.string(), ": cannot open");
  std::ostringstream text;
  text << in.rdbuf();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text.str());
  } catch (const nlohmann::json::exception& e) {
    fail("trainer_state", path.string(), ": not valid JSON: ", e.what());
  }
  return trainer_state_from_json(j, path.string());
}

}  // namespace qlora
