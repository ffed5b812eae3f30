// qlora merge / qlora export: fold a LoRA adapter into its base model (nn/merge.hpp) and write the result — a
// Hugging Face checkpoint folder (config.json + model.safetensors, fp32 or bf16, in the base's layout: a multimodal
// base stays multimodal) that transformers loads without PEFT, or a GGUF file (f32, f16, bf16, q8_0) of the text model
// that llama.cpp and Ollama load. --merge-into picks the weights the adapter is added to: the file's original ones
// (PEFT's merge_and_unload on a 16/32-bit base) or their NF4 round trip (what training and `qlora generate` computed
// with). Without --adapter, export converts the base model alone. Everything is checked before the output is written,
// and each file is written atomically.
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>

#include <qlora/nn/gemma4_merge.hpp>
#include <qlora/nn/merge.hpp>

#include "commands.hpp"
#include "model_path.hpp"
#include "train_source.hpp"

namespace qlora::cli {
namespace {
struct MergeOptions {
  std::string model, adapter, output, gguf, dtype = "float32", type = "q8_0", merge_into = "original";
};

// Every option checked, and the adapter read (its config against its tensors, as generate does), before the model.
int run_merge(const MergeOptions& o, bool require_adapter) {
  if (require_adapter && o.adapter.empty()) fail("merge", "--adapter is required (the folder qlora finetune wrote)");
  if (o.output.empty() == o.gguf.empty()) fail("export", "give exactly one of --output DIR (safetensors) and --gguf FILE");
  MergeInto into;
  if (o.merge_into == "original") into = MergeInto::original;
  else if (o.merge_into == "nf4") into = MergeInto::nf4;
  else fail("merge", "--merge-into ", o.merge_into, ": use original or nf4");
  MergedDtype dtype;
  if (o.dtype == "float32" || o.dtype == "fp32") dtype = MergedDtype::float32;
  else if (o.dtype == "bfloat16" || o.dtype == "bf16") dtype = MergedDtype::bfloat16;
  else fail("merge", "--dtype ", o.dtype, ": use float32 or bfloat16");
  GgmlType type;
  if (o.type == "f32") type = GgmlType::F32;
  else if (o.type == "f16") type = GgmlType::F16;
  else if (o.type == "bf16") type = GgmlType::BF16;
  else if (o.type == "q8_0") type = GgmlType::Q8_0;
  else fail("export", "--type ", o.type, ": use f32, f16, bf16 or q8_0");
  if (!o.gguf.empty() && std::filesystem::is_directory(o.gguf))
    fail("export", "--gguf ", o.gguf, ": is a folder; give a file name");
  if (!o.output.empty() && std::filesystem::exists(o.output) && !std::filesystem::is_directory(o.output))
    fail("merge", "--output ", o.output, ": a file, not a folder");
  std::optional<peft::Adapter> adapter;
  if (!o.adapter.empty()) adapter = peft::load_adapter(o.adapter);
  const peft::Adapter* a = adapter ? &*adapter : nullptr;

  const auto path = o.model.empty() ? default_model_path() : std::filesystem::path(o.model);
  if (is_gemma4_checkpoint(path)) {  // a Gemma 4 folder: every tensor written again, the projections merged
    if (!o.gguf.empty())
      fail("export", path.string(), ": a Gemma 4 checkpoint; GGUF export of Gemma 4 is not written yet (use --output "
           "for a Hugging Face folder)");
    if (into != MergeInto::original)
      fail("merge", "--merge-into ", o.merge_into, ": for Gemma 4 qlora merges into the file's own weights only so far "
           "(--merge-into original)");
    const Gemma4WeightSource source = Gemma4WeightSource::open(path);
    if (a) std::printf("qlora: merging into the original weights (the file's own, as PEFT's merge_and_unload)\n");
    save_merged_gemma4(source, a, o.adapter, o.output, dtype);
    std::printf("qlora: merged %s%s%s into %s (config.json + model.safetensors, %s, %s: every tensor of the source "
                "kept)\n", path.string().c_str(), a ? " + " : "", o.adapter.c_str(), o.output.c_str(), o.dtype.c_str(),
                source.layout() == ModelLayout::conditional_generation ? "Gemma4ForConditionalGeneration"
                                                                       : "Gemma4ForCausalLM");
    return 0;
  }
  const Gemma3WeightSource source = Gemma3WeightSource::open(path);
  if (a)
    std::printf("qlora: merging into the %s weights (%s)\n", o.merge_into.c_str(),
                into == MergeInto::original
                    ? "the file's own, as PEFT's merge_and_unload on a 16/32-bit base; --merge-into nf4 reproduces "
                      "what qlora generate --adapter computes"
                    : "their NF4 round trip, the values training and qlora generate --adapter computed with");
  if (!o.output.empty()) {
    const std::size_t vision = source.layout() == ModelLayout::conditional_generation ? source.vision_tensor_names().size() : 0;
    save_merged_safetensors(source, a, o.adapter, o.output, dtype, into);
    std::printf("qlora: merged %s%s%s into %s (config.json + model.safetensors, %s%s)\n", path.string().c_str(),
                a ? " + " : "", o.adapter.c_str(), o.output.c_str(), o.dtype.c_str(),
                vision ? detail::concat(", Gemma3ForConditionalGeneration: ", vision,
                                        " vision-tower and projector tensors copied through").c_str()
                       : "");
    return 0;
  }
  if (source.layout() == ModelLayout::conditional_generation)
    std::printf("qlora: %s is multimodal; the GGUF holds its text model (the vision tower is left out)\n",
                path.string().c_str());
  save_merged_gguf(source, a, o.adapter, o.gguf, type, into);
  std::printf("qlora: wrote %s (%s%s%s, %s)\n", o.gguf.c_str(), path.string().c_str(), a ? " + " : "",
              o.adapter.c_str(), o.type.c_str());
  return 0;
}

void add_common(CLI::App* cmd, MergeOptions& o) {
  cmd->add_option("--model", o.model, "Base model: GGUF file or checkpoint folder (default: Gemma 3 270M GGUF)");
  cmd->add_option("--output", o.output, "Write a Hugging Face folder (config.json + model.safetensors) here");
  cmd->add_option("--dtype", o.dtype, "float32 (default) or bfloat16, for --output");
  cmd->add_option("--gguf", o.gguf, "Write a GGUF file of the text model here instead");
  cmd->add_option("--merge-into", o.merge_into,
                  "original (default: the file's weights, as PEFT's merge_and_unload) or nf4 (their NF4 round trip: "
                  "reproduces qlora generate --adapter)");
  cmd->add_option("--type", o.type, "f32, f16, bf16 or q8_0 (default), for --gguf");
}
}  // namespace

Command add_merge_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("merge", "Fold a LoRA adapter into the base model and save it (safetensors or GGUF)");
  auto o = std::make_shared<MergeOptions>();
  cmd->add_option("--adapter", o->adapter, "PEFT adapter folder")->required();
  add_common(cmd, *o);
  return [o]() { return run_merge(*o, true); };
}

Command add_export_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("export", "Export a model (optionally with a LoRA adapter merged) as GGUF or safetensors");
  auto o = std::make_shared<MergeOptions>();
  cmd->add_option("--adapter", o->adapter, "PEFT adapter folder to merge first (optional)");
  add_common(cmd, *o);
  return [o]() { return run_merge(*o, false); };
}

}  // namespace qlora::cli
