// qlora finetune: the Python recipe's steps in order — tokenize the data set (prompt masked),
// split off an eval set, load the model with an NF4 base and fresh LoRA adapters (or resume from a checkpoint),
// train with the Trainer (accumulation, clipping, schedule, logs, checkpoints), then save the adapter as PEFT does.
// Everything is checked (model file, data, adapter type, memory) before anything is written to the output folder.
#pragma once

#include <csignal>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <variant>

#include <unistd.h>

#include <qlora/data/batch.hpp>
#include <qlora/data/dataset.hpp>
#include <qlora/data/tokenizer.hpp>
#include <qlora/dist/data_parallel.hpp>
#include <qlora/io/checkpoint.hpp>
#include <qlora/io/optimizer_state.hpp>
#include <qlora/io/trainer_state.hpp>
#include <qlora/nn/causal_lm.hpp>
#include <qlora/optim/adamw.hpp>
#include <qlora/optim/adamw8bit.hpp>
#include <qlora/train/trainer.hpp>

#include "cpu_gemm.hpp"
#include "device_option.hpp"
#include "memory_estimate.hpp"
#include "train_source.hpp"

namespace qlora::cli {

struct FinetuneJob {
  TrainingArguments args;
  LoraConfig lora;
  std::filesystem::path model_path, dataset_path;
  DatasetOptions data;
  DatasetFormat format;
  EvalSize eval_size = EvalSize::of_count(20);
  bool packing = false;
  CpuGemm cpu_gemm = CpuGemm::eigen;  // --cpu-gemm resolved: the model's CPU device carries it
  Device device = Device::cpu();      // --device resolved (tools/device_option.hpp): the CPU with cpu_gemm, or a GPU
};

// AdamW (adamw_torch, paged_adamw_32bit on the CPU) or bitsandbytes' AdamW8bit (adamw_8bit, paged_adamw_8bit).
class TrainOptimizer {
 public:
  TrainOptimizer(const TrainingArguments& a, ParameterList params) {
    if (a.eight_bit_optimizer()) {
      AdamW8bitConfig c{a.adam_beta1, a.adam_beta2, a.adam_epsilon, a.weight_decay};
      c.paged = a.optim == "paged_adamw_8bit";
      impl_ = std::make_unique<AdamW8bit>(std::move(params), c);
    } else {
      impl_ = std::make_unique<AdamW>(std::move(params), AdamWConfig{a.adam_beta1, a.adam_beta2, a.adam_epsilon,
                                                                     a.weight_decay});
    }
  }
  void step(double lr) {
    std::visit([&](auto& o) { o->step(lr); }, impl_);
  }
  void zero_grad() const {
    std::visit([](const auto& o) { o->zero_grad(); }, impl_);
  }
  void save(const std::filesystem::path& path) const {
    std::visit([&](const auto& o) { save_optimizer_state(*o, path); }, impl_);
  }
  void load(const std::filesystem::path& path) {
    std::visit([&](auto& o) { load_optimizer_state(*o, path); }, impl_);
  }

 private:
  std::variant<std::unique_ptr<AdamW>, std::unique_ptr<AdamW8bit>> impl_;
};

// The checkpoint to resume from: "latest"/"true" = the newest in output_dir, else a folder path.
// `tidy`: remove the partial checkpoints a killed run left (rank 0 of several does it).
inline std::optional<std::filesystem::path> resume_folder(const TrainingArguments& a, bool tidy = true) {
  if (!a.resume_from_checkpoint) return std::nullopt;
  const std::string& r = *a.resume_from_checkpoint;
  if (r == "latest" || r == "true" || r == "True") {
    CheckpointDirectory dir(a.output_dir);
    const std::size_t unfinished = tidy ? dir.remove_partial() : 0;
    const auto latest = dir.latest();
    if (!latest)
      fail("finetune", "--resume-from-checkpoint ", r, ": no checkpoint-<step> folder in ", a.output_dir,
           unfinished ? " (only the unfinished save of a killed run, now removed: start without --resume-from-checkpoint)"
                      : "");
    return latest;
  }
  if (!std::filesystem::is_directory(r)) fail("finetune", "--resume-from-checkpoint ", r, ": no such checkpoint folder");
  return std::filesystem::path(r);
}

// The output folder must be a folder, or creatable as one: checked before anything is loaded.
inline void check_output_dir(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::exists(dir, ec)) {
    if (!fs::is_directory(dir, ec)) fail("finetune", "--output-dir ", dir.string(), ": a file, not a folder");
    if (::access(dir.c_str(), W_OK | X_OK) != 0) fail("finetune", "--output-dir ", dir.string(), ": not writable");
    return;
  }
  fs::path parent = fs::absolute(dir, ec);
  while (!parent.empty() && !fs::exists(parent, ec) && parent != parent.parent_path()) parent = parent.parent_path();
  if (!fs::is_directory(parent, ec))
    fail("finetune", "--output-dir ", dir.string(), ": cannot be created (", parent.string(), " is not a folder)");
  if (::access(parent.c_str(), W_OK | X_OK) != 0)
    fail("finetune", "--output-dir ", dir.string(), ": cannot be created (", parent.string(), " is not writable)");
}

// SIGINT / SIGTERM during training: the first finishes the step, saves a checkpoint and stops (the run resumes
// exactly from it); a second, or one before training has begun, stops at once as the default action would.
namespace interrupt {
inline volatile std::sig_atomic_t stop_signal = 0;
inline volatile std::sig_atomic_t training = 0;
extern "C" inline void on_stop_signal(int sig) {
  if (!training || stop_signal) {
    std::signal(sig, SIG_DFL);
    std::raise(sig);
    return;
  }
  stop_signal = sig;
  constexpr char msg[] = "\nqlora: stopping after this step and saving a checkpoint (again to stop at once)\n";
  [[maybe_unused]] const auto n = ::write(2, msg, sizeof msg - 1);
}
}  // namespace interrupt

// A fingerprint of the tokenized samples (FNV-1a over lengths, ids and labels), for the check that every rank has
// the same data.
inline std::string data_fingerprint(const std::vector<Sample>& samples) {
  auto bytes = [](const auto& v) { return std::string_view(reinterpret_cast<const char*>(v.data()), v.size() * sizeof v[0]); };
  std::uint64_t h = detail::fnv1a64({});
  for (const Sample& s : samples) {
    const std::uint64_t length = s.input_ids.size();
    h = detail::fnv1a64(std::string_view(reinterpret_cast<const char*>(&length), sizeof length), h);
    h = detail::fnv1a64(bytes(s.input_ids), h);
    h = detail::fnv1a64(bytes(s.labels), h);
  }
  return detail::concat(samples.size(), " samples, fingerprint ", std::hex, h);
}

// `job_text`: the resolved configuration, compared across the ranks of a data-parallel run (`comm`).
inline int run_finetune(const FinetuneJob& job, const TrainSource& source, const Tokenizer& tok,
                        dist::Communicator& comm = dist::single_process(), const std::string& job_text = {}) {
  const TrainingArguments& args = job.args;
  namespace fs = std::filesystem;
  check_output_dir(args.output_dir);
  const LoraTargets targets = source.targets(job.lora);
  const std::string name = source.name();

  // Data: tokenize, split, batch (nothing written yet).
  TokenizedDataset data = load_dataset(job.dataset_path.string(), job.format, tok, job.data);
  std::fprintf(stderr, "qlora: %s\n", data.summary().c_str());
  // Samples whose learned part was cut away by max_length would only add padding to the loss: drop them.
  const std::size_t before = data.samples.size();
  std::erase_if(data.samples, [](const Sample& s) {
    return std::none_of(s.labels.begin() + (s.labels.empty() ? 0 : 1), s.labels.end(),
                        [](std::int32_t l) { return l != ignore_index; });
  });
  if (data.samples.empty())
    fail("finetune", job.dataset_path.string(), ": every sample lost its learned tokens to max_length ",
         job.data.max_length, " (the prompts are longer): raise --max-seq-length");
  if (data.samples.size() < before)
    std::fprintf(stderr, "qlora: %zu samples have nothing left to learn after truncation and are skipped\n",
                 before - data.samples.size());
  Split<Sample> split;
  if (job.eval_size.count == 0 && job.eval_size.fraction == 0) {  // --eval-size 0: no eval set
    split.train = std::move(data.samples);
  } else {
    split = train_eval_split(std::move(data.samples), job.eval_size, args.seed);
  }
  if (split.train.empty()) fail("finetune", job.dataset_path.string(), ": no training samples left after the eval split");
  // Every rank must run the same job on the same data and model: compared with rank 0's before anything is loaded.
  dist::check_same_job(comm, job_text + "\nmodel: " + source.path().string() + " (" + name + ")\ntrain data: " +
                                 data_fingerprint(split.train) + "\neval data: " + data_fingerprint(split.eval),
                       "configuration");
  // make_batches puts batch_size rows in a micro-batch; a row is one sample, or with packing several.
  const std::size_t rows = job.packing ? pack_rows(split.train, job.data.max_length).size() : split.train.size();
  const auto batch_size = static_cast<std::size_t>(args.per_device_train_batch_size);
  const std::size_t global_batch = batch_size * static_cast<std::size_t>(comm.size());  // rows per micro-batch, all ranks
  const std::size_t micro_per_epoch = (rows + global_batch - 1) / global_batch;
  const long steps_per_epoch = static_cast<long>((micro_per_epoch + static_cast<std::size_t>(args.gradient_accumulation_steps) - 1) /
                                                 static_cast<std::size_t>(args.gradient_accumulation_steps));
  const long total_steps = args.max_steps > 0 ? args.max_steps
                                               : static_cast<long>(std::ceil(args.num_train_epochs * static_cast<double>(steps_per_epoch)));

  // Memory, before loading anything big.
  std::size_t longest = 0;
  for (const auto& s : split.train) longest = std::max(longest, s.input_ids.size());
  const auto tokens_per_micro = static_cast<index_t>(job.packing ? job.data.max_length
                                                                 : longest * static_cast<std::size_t>(args.per_device_train_batch_size));
  if (job.device.is_cuda())
    source.check_gpu_memory(targets, tokens_per_micro, args.gradient_checkpointing,
                            args.eight_bit_optimizer(), gpu_free_bytes(job.device), job.device.str());
  else
    source.check_memory(targets, tokens_per_micro, args.gradient_checkpointing, comm.ranks_on_this_machine());

  // Model (+ resume state).
  Gemma3Options options;
  options.lora = targets;
  options.seed = args.seed;
  options.device = job.device.is_cpu() ? Device::cpu(job.cpu_gemm) : job.device;
  if (job.device.is_cpu()) announce_cpu_gemm(job.cpu_gemm);
  else std::fprintf(stderr, "qlora: training on %s\n", job.device.str().c_str());
  std::fprintf(stderr, "qlora: loading %s as %s (NF4 base, double quantization), LoRA r %ld on %s%s\n",
               source.path().string().c_str(), name.c_str(), job.lora.r,
               join_names(job.lora.target_modules).c_str(),
               job.lora.rank_pattern.empty() && job.lora.alpha_pattern.empty() ? "" : " (with per-module patterns)");
  const std::unique_ptr<CausalLM> model_ptr = source.open_model(options);
  CausalLM& model = *model_ptr;
  TrainOptimizer optimizer(args, model.lora_parameters());
  TrainerState state;
  if (const auto resume = resume_folder(args, comm.is_root())) {
    model.load_adapter(*resume);
    optimizer.load(*resume / optimizer_state_file_name);
    state = load_trainer_state(*resume / trainer_state_file_name);
    std::fprintf(stderr, "qlora: resuming from %s (step %ld)\n", resume->string().c_str(), state.global_step);
  }
  // The same adapter on every rank (LoRA's initialisation is seeded, a resumed adapter read from the same files:
  // rank 0's values are sent anyway, so no rank can start from another).
  dist::broadcast_values(comm, model.lora_parameters(), "initial adapter");
  std::fprintf(stderr, "qlora: %zu train / %zu eval samples, %ld steps per epoch, %ld steps; trainable parameters %lld\n",
               split.train.size(), split.eval.size(), steps_per_epoch, total_steps,
               static_cast<long long>(model.trainable_parameter_count()));
  if (comm.size() > 1)
    std::fprintf(stderr, "qlora: data parallel over %d ranks: %ld rows per rank and micro-batch, a global batch of %zu "
                 "rows x %ld accumulation steps\n", comm.size(), args.per_device_train_batch_size, global_batch,
                 args.gradient_accumulation_steps);

  // Batches of an epoch: the train samples shuffled with seed + epoch.
  const std::int32_t pad = tok.pad_id();
  auto next_epoch = [&](long epoch) {
    auto samples = std::make_shared<std::vector<Sample>>(split.train);
    shuffle(*samples, args.seed + static_cast<std::uint64_t>(epoch));
    auto batches = std::make_shared<std::vector<Batch>>(
        make_batches(*samples, static_cast<std::size_t>(args.per_device_train_batch_size), pad,
                     job.packing ? std::optional<std::size_t>(job.data.max_length) : std::nullopt,
                     RankShare{static_cast<std::size_t>(comm.rank()), static_cast<std::size_t>(comm.size())}));
    auto next = std::make_shared<std::size_t>(0);
    return typename Trainer<Batch>::BatchSource([batches, next]() -> std::optional<Batch> {
      if (*next >= batches->size()) return std::nullopt;
      return (*batches)[(*next)++];
    });
  };
  // Evaluation: rank r takes eval batches r, r + ranks, ... (the trainer sums the ranks' losses and counts).
  std::vector<Batch> eval_batches;
  {
    std::vector<Batch> all = make_batches(split.eval, static_cast<std::size_t>(args.per_device_eval_batch_size), pad);
    for (std::size_t i = static_cast<std::size_t>(comm.rank()); i < all.size(); i += static_cast<std::size_t>(comm.size()))
      eval_batches.push_back(std::move(all[i]));
  }

  const std::string base_name = source.path().string();
  TrainStepFunctions<Batch> fns;
  fns.loss = [&](const Batch& b, RandomStream dropout) {
    // masks keyed by (global row of the micro-batch, position): equal to one process's however the rows are split
    const DropoutRows rows{static_cast<index_t>(b.T),
                           static_cast<std::uint64_t>(comm.rank()) * static_cast<std::uint64_t>(args.per_device_train_batch_size)};
    const auto l = model.loss_sum(model_input(b, model.device()), ForwardPass{true, args.gradient_checkpointing, dropout, rows});
    return TokenLoss{l.sum, static_cast<long>(l.count)};
  };
  fns.label_tokens = [](const Batch& b) { return b.label_tokens(); };
  fns.input_tokens = [](const Batch& b) {
    long n = 0;
    for (std::int32_t len : b.lengths) n += len;
    return n;
  };
  fns.optimizer_step = [&](double lr) { optimizer.step(lr); };
  fns.zero_grad = [&]() { optimizer.zero_grad(); };
  CheckpointDirectory checkpoints(args.output_dir);
  fns.save = [&](const TrainerState& s) {
    const auto dir = checkpoints.save(s.global_step, [&](const fs::path& tmp) {
      model.save_adapter(tmp, base_name);
      optimizer.save(tmp / optimizer_state_file_name);
      save_trainer_state(s, tmp / trainer_state_file_name);
    }, args.save_total_limit);
    std::fprintf(stderr, "qlora: saved %s\n", dir.string().c_str());
  };
  if (!split.eval.empty())
    fns.evaluate = [&]() {
      NoGrad no_grad;
      double sum = 0;
      long count = 0;
      for (const auto& b : eval_batches) {
        const auto l = model.loss_sum(model_input(b, model.device()));
        sum += static_cast<double>(l.sum.value().item());
        count += static_cast<long>(l.count);
      }
      return std::pair<double, long>{sum, count};
    };

  // From here on the output folder is written.
  fs::create_directories(args.output_dir);
  if (comm.is_root()) {
    std::ofstream eval_out(fs::path(args.output_dir) / "eval_records.jsonl");
    const auto records = load_records(job.dataset_path.string());
    for (const auto& s : split.eval) eval_out << records[s.record].fields.dump() << "\n";
  }
  fns.stop_requested = []() { return interrupt::stop_signal != 0; };
  Trainer<Batch> trainer(args, model.lora_parameters(), fns, total_steps, comm);
  std::signal(SIGINT, interrupt::on_stop_signal);
  std::signal(SIGTERM, interrupt::on_stop_signal);
  interrupt::training = 1;
  const TrainResult result = trainer.train(next_epoch, state, steps_per_epoch);
  interrupt::training = 0;
  if (result.stopped) {
    const int sig = interrupt::stop_signal ? static_cast<int>(interrupt::stop_signal) : SIGTERM;  // another rank's
    std::fprintf(stderr, "qlora: stopped by %s after step %ld of %ld; %s/checkpoint-%ld holds the run: continue it "
                 "with --resume-from-checkpoint latest\n", sig == SIGINT ? "SIGINT" : "SIGTERM",
                 result.state.global_step, total_steps, args.output_dir.c_str(), result.state.global_step);
    return 128 + sig;
  }
  if (!comm.is_root()) return 0;
  model.save_adapter(args.output_dir, base_name);
  constexpr double GiB = 1024.0 * 1024.0 * 1024.0;
  char gpu_peak[48] = "";
  if (job.device.is_cuda()) std::snprintf(gpu_peak, sizeof gpu_peak, ", GPU peak %.2f GiB", result.gpu_peak_bytes / GiB);
  std::fprintf(stderr, "qlora: done: %ld steps, loss %.4f -> %.4f, %.0f tokens/s, peak memory %.2f GiB%s; adapter saved in %s\n",
               result.state.global_step, result.first_logged_loss, result.last_logged_loss, result.tokens_per_second,
               result.memory.peak_bytes / GiB, gpu_peak, args.output_dir.c_str());
  return 0;
}

}  // namespace qlora::cli
