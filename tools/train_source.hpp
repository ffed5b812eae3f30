// The model a finetune job trains, as the job needs it before any weight is loaded: a Gemma 3 source (a GGUF file, a
// Hugging Face folder of either class, or a published size's name) or a Gemma 4 checkpoint folder (its config.json
// says model_type gemma4 / gemma4_text). Name, layer count and LoRA targets for the checks, the memory estimate, the
// tokenizer, a line on what the folder holds that training leaves alone, and the model itself (open_causal_lm).
#pragma once

#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <variant>

#include <nlohmann/json.hpp>

#include <qlora/data/tokenizer.hpp>
#include <qlora/io/hf_folder.hpp>
#include <qlora/io/json_file.hpp>
#include <qlora/nn/causal_lm.hpp>

#include "memory_estimate.hpp"
#include "model_path.hpp"

namespace qlora::cli {

// config.json of the checkpoint at `path` (a folder, or a file in one) when its model_type is gemma4 or gemma4_text, at
// the top or under text_config; nullopt for anything else. Reads config.json alone.
struct HfConfigFile {
  std::filesystem::path path;
  nlohmann::json json;
};
inline std::optional<HfConfigFile> gemma4_config_file(const std::filesystem::path& path) {
  std::error_code ec;
  if (path.empty() || !std::filesystem::exists(path, ec)) return std::nullopt;
  HfConfigFile f;
  f.path = (std::filesystem::is_directory(path, ec) ? path : path.parent_path()) / "config.json";
  if (!std::filesystem::exists(f.path, ec)) return std::nullopt;
  f.json = detail::read_json_file(f.path, "model");
  auto type_of = [](const nlohmann::json& o) {
    return o.is_object() && o.contains("model_type") && o["model_type"].is_string() ? o["model_type"].get<std::string>()
                                                                                    : std::string();
  };
  if (type_of(f.json).starts_with("gemma4") ||
      (f.json.contains("text_config") && type_of(f.json["text_config"]).starts_with("gemma4")))
    return f;
  return std::nullopt;
}
inline bool is_gemma4_checkpoint(const std::filesystem::path& path) { return gemma4_config_file(path).has_value(); }

class TrainSource {
 public:
  explicit TrainSource(Gemma3WeightSource s) : source_(std::move(s)) {}
  explicit TrainSource(Gemma4WeightSource s) : source_(std::move(s)) {}

  // The file or folder at `path`, of whichever family its config says.
  static TrainSource open(const std::filesystem::path& path) {
    if (is_gemma4_checkpoint(path)) return TrainSource(Gemma4WeightSource::open(path));
    return TrainSource(Gemma3WeightSource::open(path));
  }

  const Gemma3WeightSource* gemma3() const { return std::get_if<Gemma3WeightSource>(&source_); }
  const Gemma4WeightSource* gemma4() const { return std::get_if<Gemma4WeightSource>(&source_); }

  const std::filesystem::path& path() const {
    return std::visit([](const auto& s) -> const std::filesystem::path& { return s.path(); }, source_);
  }
  // "gemma-3-270m", "gemma-3 (hidden 64, 6 layers)", "gemma-4 (hidden 1536, 35 layers)"
  std::string name() const {
    if (const auto* g3 = gemma3()) return model_name(g3->config(), g3->path().string());
    const Gemma4RuntimeConfig& c = gemma4()->config();
    return detail::concat("gemma-4 (hidden ", c.hidden, ", ", c.layers, " layers)");
  }
  index_t layers() const { return std::visit([](const auto& s) { return s.config().layers; }, source_); }
  ModelLayout layout() const { return std::visit([](const auto& s) { return s.layout(); }, source_); }

  // The job's LoRA targets for this model: module names of the checkpoint's class, checked (ranks, patterns, target
  // names, at least one projection matched) before anything is read.
  LoraTargets targets(const LoraConfig& lora) const {
    LoraTargets t = LoraTargets(lora).for_layout(layout());
    t.check_matches(layers(), name());
    return t;
  }

  // The memory check before loading (memory_estimate.hpp), from the model's own extents.
  void check_memory(const LoraTargets& targets, index_t tokens_per_micro_batch, bool checkpointing, int ranks_here) const {
    std::visit([&](const auto& s) { cli::check_memory(s.config(), targets, tokens_per_micro_batch, checkpointing, ranks_here); },
               source_);
  }

  void check_gpu_memory(const LoraTargets& targets, index_t tokens_per_micro_batch, bool checkpointing,
                        bool eight_bit_optimizer, double free_bytes, const std::string& device) const {
    std::visit([&](const auto& s) {
      cli::check_gpu_memory(s.config(), targets, tokens_per_micro_batch, checkpointing, eight_bit_optimizer, free_bytes,
                            device);
    }, source_);
  }

  Tokenizer tokenizer() const { return std::visit([](const auto& s) { return open_tokenizer(s); }, source_); }

  // One line on what the folder holds that training leaves alone (towers of a multimodal checkpoint, a chat template
  // that is not Gemma's).
  void describe() const {
    if (const auto* g3 = gemma3()) return describe_source(*g3);
    const Gemma4WeightSource& g4 = *gemma4();
    if (g4.layout() == ModelLayout::conditional_generation)
      std::fprintf(stderr, "qlora: %s is a Gemma4ForConditionalGeneration checkpoint: its text model is used; the "
                   "vision and audio towers are skipped and left as they are\n", g4.path().string().c_str());
    warn_unless_gemma_chat_template(g4.folder());
  }

  std::unique_ptr<CausalLM> open_model(const Gemma3Options& options) const {
    return std::visit([&](const auto& s) { return open_causal_lm(s, options); }, source_);
  }

 private:
  std::variant<Gemma3WeightSource, Gemma4WeightSource> source_;
};

}  // namespace qlora::cli
