// A QLoRA training loop written with the library directly, no Trainer: Gemma 3 270M with an NF4 base and rank-16
// LoRA on all seven projections, a few records of the bundled finance set, bitsandbytes' AdamW8bit, the loss printed
// each step and the adapter saved in PEFT's format. What `qlora finetune` adds on top (accumulation, clipping,
// schedule, checkpoints, logs) is train/trainer.hpp.
//   build/bin/example_custom_loop [model.gguf | -] [steps = 5] [output dir = custom-loop-adapter]
// The model is argv[1] or, when it is missing or "-", $QLORA_MODEL (scripts/fetch-model prints its path); without
// one the example exits 77.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <qlora/data/batch.hpp>
#include <qlora/data/dataset.hpp>
#include <qlora/data/gguf_vocabulary.hpp>
#include <qlora/nn/adapter_io.hpp>
#include <qlora/nn/model.hpp>
#include <qlora/qlora.hpp>

#ifndef QLORA_EXAMPLE_DATA
#define QLORA_EXAMPLE_DATA "examples/data"
#endif

using namespace qlora;

int main(int argc, char** argv) try {
  const char* env = std::getenv("QLORA_MODEL");
  const std::string model_path = argc > 1 && std::string(argv[1]) != "-" ? argv[1] : env ? env : "";
  if (model_path.empty()) {
    std::printf("skipped: give a Gemma 3 270M GGUF as argv[1] or QLORA_MODEL (scripts/fetch-model)\n");
    return 77;
  }
  const int steps = argc > 2 ? std::atoi(argv[2]) : 5;
  const std::string output_dir = argc > 3 ? argv[3] : "custom-loop-adapter";
  const double learning_rate = 2e-4;

  // 1. The model: the file's weights, each projection quantized to NF4 as it is read, fresh LoRA A/B (B = 0).
  const Gemma3WeightSource source = Gemma3WeightSource::open(model_path);
  Gemma3Options options;
  LoraConfig lora;  // PEFT's LoraConfig: r 16, lora_alpha 32, lora_dropout 0.05 on all seven linear layers
  lora.r = 16;
  lora.lora_alpha = 32;
  lora.lora_dropout = 0.05;
  lora.target_modules = all_linear_targets();
  options.lora = LoraTargets(lora);
  options.device = Device::cpu(fastest_cpu_gemm(false));  // oneDNN's fp32 GEMM where qlora has it, else Eigen's
  using Model = Gemma3<Gemma3_270M, float, NF4>;
  const Model model(source, options);
  const Tokenizer tok = source.is_gguf() ? tokenizer_from_gguf(*source.gguf())  // the GGUF carries the vocabulary
                                         : Tokenizer::from_model_file(model_path + "/tokenizer.model");
  std::printf("model: %s, %lld trainable LoRA parameters; CPU GEMM: %s\n", std::string(Gemma3_270M::name).c_str(),
              static_cast<long long>(model.trainable_parameter_count()),
              describe_cpu_gemm(model.device().cpu_gemm()).c_str());

  // 2. The data: the first 8 records (train[:8]) through the finance prompt template; labels only on the response.
  DatasetOptions data_options;
  data_options.max_length = 256;
  data_options.select = 8;
  const TokenizedDataset data =
      load_dataset(QLORA_EXAMPLE_DATA "/finance_reasoning.jsonl", finance_reasoning_format(), tok, data_options);
  std::printf("data: %s\n", data.summary().c_str());
  const std::vector<Batch> batches = make_batches(data.samples, 2, tok.pad_id());  // 2 rows per batch

  // 3. The optimizer over the LoRA matrices only; the NF4 base is frozen.
  AdamW8bit optimizer(model.lora_parameters(), AdamW8bitConfig{});

  // 4. The loop: forward (summed token loss), backward of the mean, step, zero the gradients.
  for (int step = 0; step < steps; ++step) {
    const auto start = std::chrono::steady_clock::now();
    const Batch& batch = batches[static_cast<std::size_t>(step) % batches.size()];
    const RandomStream dropout{42, static_cast<std::uint64_t>(step)};  // this step's dropout masks
    // The inputs on the model's device: its CPU GEMM runs every product of the step.
    const auto loss = model.loss_sum(model_input(batch, model.device()), ForwardPass{true, false, dropout});
    const auto mean_loss = scale(loss.sum, 1.0 / static_cast<double>(loss.count));
    backward(mean_loss);
    optimizer.step(learning_rate);
    optimizer.zero_grad();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("step %d/%d: loss %.4f (%lld label tokens, %zu x %zu batch, %.1f s)\n", step + 1, steps,
                static_cast<double>(mean_loss.value().item()), static_cast<long long>(loss.count), batch.B, batch.T,
                seconds);
    std::fflush(stdout);
  }

  // 5. The adapter as PEFT's save_pretrained writes it: adapter_config.json + adapter_model.safetensors.
  save_adapter(model, output_dir, model_path);
  std::printf("adapter saved in %s (qlora generate --adapter %s)\n", output_dir.c_str(), output_dir.c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "example_custom_loop: %s\n", e.what());
  return 1;
}
