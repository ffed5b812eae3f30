// The subcommands of the qlora program: each registers its options on the CLI11 app and returns the function that
// runs it. Errors are qlora::Error (or CLI11's parse errors); main() prints them and exits non-zero.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace qlora::cli {

using Command = std::function<int()>;

// qlora evaluate --predictions P --references R: BLEU, ROUGE-L, numeric exact match of generated text.
Command add_evaluate_command(CLI::App& app);

// qlora finetune [flags]: QLoRA fine-tuning of a Gemma 3 model; the README's main job.
Command add_finetune_command(CLI::App& app);

// qlora generate: answers from a model, with or without a LoRA adapter (KV cache, greedy or sampled).
Command add_generate_command(CLI::App& app);

// qlora merge / qlora export: an adapter folded into its base, saved as safetensors or GGUF.
Command add_merge_command(CLI::App& app);
Command add_export_command(CLI::App& app);

// qlora info PATH: the configuration and contents of a GGUF file, a checkpoint folder or a PEFT adapter folder.
Command add_info_command(CLI::App& app);

}  // namespace qlora::cli
