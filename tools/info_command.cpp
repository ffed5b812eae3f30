// qlora info FILE: what a model or adapter file holds. GGUF: the Gemma 3 configuration it describes (and the
// qlora type it dispatches to), tokenizer size, tensor types and parameter count. safetensors / a checkpoint folder
// (config.json + *.safetensors): the configuration and tensors. A PEFT adapter folder: its LoRA configuration.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

#include <qlora/io/gguf.hpp>
#include <qlora/io/peft.hpp>
#include <qlora/io/safetensors.hpp>
#include <qlora/nn/config_io.hpp>

#include <qlora/io/hf_folder.hpp>
#include <qlora/nn/weights.hpp>

#include "commands.hpp"

namespace qlora::cli {
namespace {
void print_config(const Gemma3RuntimeConfig& c, std::string_view source) {
  std::printf("  hidden_size %lld, intermediate_size %lld, layers %lld, heads %lld, kv_heads %lld, head_dim %lld\n",
              static_cast<long long>(c.hidden), static_cast<long long>(c.intermediate), static_cast<long long>(c.layers),
              static_cast<long long>(c.heads), static_cast<long long>(c.kv_heads), static_cast<long long>(c.head_dim));
  std::printf("  vocab_size %lld, sliding_window %lld, rope_theta %g (global), rope scaling %g, rms_norm_eps %g\n",
              static_cast<long long>(c.vocab), static_cast<long long>(c.sliding_window), c.rope_global_theta,
              c.rope_global_scaling, c.rms_norm_eps);
  std::printf("  model: %s\n", model_name(c, source).c_str());
}

int info_gguf(const std::filesystem::path& path) {
  const GgufFile f(path);
  std::printf("%s: GGUF v%u, %zu tensors, %zu metadata keys\n", path.string().c_str(), f.version(), f.tensors().size(),
              f.metadata().size());
  if (f.contains("general.name")) std::printf("  name: %s\n", f.get_string("general.name").c_str());
  print_config(gemma3_config_from_gguf(f), path.string());
  std::map<std::string, std::pair<int, long long>> types;
  long long params = 0;
  for (const auto& t : f.tensors()) {
    auto& e = types[std::string(ggml_type_name(t.type))];
    ++e.first;
    e.second += t.numel();
    params += t.numel();
  }
  std::printf("  parameters: %lld (%.1f M)\n  tensor types:", params, static_cast<double>(params) / 1e6);
  for (const auto& [name, e] : types) std::printf(" %s x%d", name.c_str(), e.first);
  std::printf("\n");
  return 0;
}

int info_folder(const std::filesystem::path& dir) {
  if (std::filesystem::exists(dir / "adapter_config.json")) {
    std::ifstream in(dir / "adapter_config.json");
    const auto c = peft::lora_config_from_adapter_config(nlohmann::json::parse(in), (dir / "adapter_config.json").string());
    std::printf("%s: PEFT LoRA adapter, r %ld, lora_alpha %g, lora_dropout %g, rslora %s, targets", dir.string().c_str(),
                c.r, c.lora_alpha, c.lora_dropout, c.use_rslora ? "yes" : "no");
    for (const auto& t : c.target_modules) std::printf(" %s", t.c_str());
    std::printf("\n");
    for (const auto& [key, r] : c.rank_pattern) std::printf("  rank_pattern %s: r %ld\n", key.c_str(), r);
    for (const auto& [key, a] : c.alpha_pattern) std::printf("  alpha_pattern %s: lora_alpha %g\n", key.c_str(), a);
    return 0;
  }
  if (!std::filesystem::exists(dir / "config.json")) fail("info", dir.string(), ": no config.json or adapter_config.json");
  const Gemma3WeightSource source = Gemma3WeightSource::open(dir);
  const bool multimodal = source.layout() == ModelLayout::conditional_generation;
  std::printf("%s: Hugging Face checkpoint (%s)\n", dir.string().c_str(),
              multimodal ? "Gemma3ForConditionalGeneration: text model + vision tower" : "Gemma3ForCausalLM");
  print_config(source.config(), dir.string());
  const SafetensorsCheckpoint& ckpt = *source.checkpoint();
  const std::size_t vision = source.vision_tensor_names().size();
  std::printf("  tensors: %zu in %zu file(s)", ckpt.names().size(), ckpt.shards().size());
  if (multimodal) std::printf(" (%zu of them the vision tower and projector)", vision);
  std::printf("\n");
  const HfFolderFiles files = read_hf_folder(dir);
  std::printf("  tokenizer.model: %s; chat template: %s; generation eos ids:", files.tokenizer_model.empty() ? "missing" : "yes",
              files.chat_template.empty() ? "none" : is_gemma_chat_template(files.chat_template) ? "Gemma's" : "not Gemma's");
  for (std::int32_t id : files.eos_token_ids) std::printf(" %d", id);
  std::printf("%s\n", files.eos_token_ids.empty() ? " none" : "");
  return 0;
}
}  // namespace

Command add_info_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Describe a model (GGUF, Hugging Face folder) or a PEFT adapter folder");
  auto path = std::make_shared<std::string>();
  cmd->add_option("path", *path, "GGUF file, checkpoint folder or adapter folder")->required();
  return [path]() {
    const std::filesystem::path p(*path);
    if (!std::filesystem::exists(p)) fail("info", *path, ": no such file or folder");
    if (std::filesystem::is_directory(p)) return info_folder(p);
    return info_gguf(p);
  };
}

}  // namespace qlora::cli
