// The training loop of the Hugging Face Trainer, for any model that can give a summed token loss:
//
//   for each optimizer step: take gradient_accumulation_steps micro-batches, count their label tokens N, run
//   forward + backward on each with loss_sum / N (so the step's loss is the mean over all its label tokens, as
//   transformers does since num_items_in_batch), clip the global gradient norm, stop on a non-finite gradient naming
//   the step and the parameter, update with the scheduled learning rate, then log / evaluate / save on their steps.
//
// The model is reached only through `TrainStepFunctions`, so a custom loop needs none of this and the trainer needs
// no particular model type. Logs go to JSONL (always) and TensorBoard event files (report_to "tensorboard").
// Resuming is exact: the state records the data position (epoch, micro-batches used), so a run resumed from the
// checkpoint of step k feeds steps k+1.. the micro-batches an uninterrupted run would; the schedule is a function of
// the step, and each micro-batch's dropout stream is {seed, step·G + micro-batch} (counter-based, core/random.hpp).
//
// Data parallel (dist/): with a Communicator of several ranks, each rank runs its share of every micro-batch (the
// batch source gives it: data/batch.hpp RankShare), the step's label-token count N, the loss and the gradients are
// summed across ranks before clipping, so every rank applies the same update and the loss is the mean over the
// global batch's label tokens — the curve of one process with the global batch. Evaluation sums every rank's share.
// Rank 0 alone logs, prints and saves.
#pragma once

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "../autograd/tape.hpp"
#include "../core/random.hpp"
#include "../dist/data_parallel.hpp"
#include "../io/metrics.hpp"
#include "../io/tensorboard.hpp"
#include "../io/trainer_state.hpp"
#include "../optim/clip.hpp"
#include "../optim/parameter.hpp"
#include "../optim/schedule.hpp"
#include "arguments.hpp"
#include "progress.hpp"

namespace qlora {

// A loss summed over a micro-batch's label tokens, and how many there were.
struct TokenLoss {
  Variable<float> sum;
  long tokens = 0;
};

// The dropout stream of micro-batch `micro` (0-based) of the step that follows `global_step` steps: a pure function
// of (seed, step, micro-batch), so a resumed run draws the masks an uninterrupted one would. A model with several
// dropout sites derives one stream per site from it (e.g. offset · sites + site).
inline RandomStream micro_batch_stream(std::uint64_t seed, long global_step, long accumulation, long micro) {
  return {seed, static_cast<std::uint64_t>(global_step) * static_cast<std::uint64_t>(accumulation) +
                    static_cast<std::uint64_t>(micro)};
}

template <class Batch>
struct TrainStepFunctions {
  std::function<TokenLoss(const Batch&, RandomStream dropout)> loss;  // forward of one micro-batch
  std::function<long(const Batch&)> label_tokens;                    // label tokens of a micro-batch (no forward)
  std::function<void(double lr)> optimizer_step;                      // apply the update with this learning rate
  std::function<void()> zero_grad;
  std::function<void(const TrainerState&)> save;  // write a checkpoint of this state (optional)
  std::function<std::pair<double, long>()> evaluate;  // summed eval loss and tokens (optional)
  std::function<void(const TrainerState&)> on_step_end;  // after each step's log, eval and save (optional)
  std::function<long(const Batch&)> input_tokens;  // tokens a micro-batch runs, for tokens/s (optional; else label tokens)
  // Checked after each step (optional): true ends training there, with a checkpoint of that step when save is set
  // (a program's SIGINT / SIGTERM: the run resumes exactly from it).
  std::function<bool()> stop_requested;
};

struct TrainResult {
  TrainerState state;
  double first_logged_loss = NAN, last_logged_loss = NAN;
  double tokens_per_second = 0;
  bool stopped = false;  // ended early by stop_requested (state.global_step < max_steps)
  MemoryUse memory;      // the process's memory when training ended (peak: its high-water mark)
  double gpu_peak_bytes = 0;  // parameters on a GPU: the peak of its allocator's bytes since the run began (else 0)
};

template <class Batch>
class Trainer {
 public:
  using BatchSource = std::function<std::optional<Batch>()>;  // next micro-batch; nullopt at the end of an epoch

  Trainer(TrainingArguments args, ParameterList params, TrainStepFunctions<Batch> fns, long total_steps,
          dist::Communicator& comm = dist::single_process())
      : args_(std::move(args)), params_(std::move(params)), fns_(std::move(fns)), total_steps_(total_steps),
        comm_(comm),
        schedule_(parse_schedule(args_.lr_scheduler_type), args_.learning_rate,
                  args_.warmup_steps > 0 ? args_.warmup_steps : warmup_steps_from_ratio(args_.warmup_ratio, total_steps),
                  total_steps) {
    validate(args_);
    if (!fns_.loss || !fns_.label_tokens || !fns_.optimizer_step || !fns_.zero_grad)
      fail("trainer", "loss, label_tokens, optimizer_step and zero_grad must be given");
    if (!comm_.is_root()) return;  // rank 0 alone writes logs
    const std::filesystem::path out(args_.output_dir);
    metrics_ = std::make_unique<MetricsLog>(out / "metrics.jsonl");
    for (const auto& r : args_.report_to)
      if (r == "tensorboard") tensorboard_ = std::make_unique<tensorboard::EventWriter>(out / "runs");
  }

  // Runs optimizer steps until total_steps; `next_epoch(e)` returns the batch source of epoch e, which must give
  // the same micro-batches each time it is asked for the same epoch (e.g. shuffled with seed + e). A `state` from a
  // checkpoint resumes: its data position's micro-batches are skipped (without one, they are derived from
  // global_step and steps_per_epoch, i.e. (k mod steps_per_epoch) · gradient_accumulation_steps of epoch
  // k / steps_per_epoch).
  TrainResult train(const std::function<BatchSource(long epoch)>& next_epoch, TrainerState state = {},
                    long steps_per_epoch = 0) {
    TrainResult result;
    if (!params_.empty() && params_.front().device().is_cuda()) {
      gpu_ = params_.front().device();
      gpu_->allocator().reset_peak();
    }
    auto start = std::chrono::steady_clock::now();
    const long accumulation = args_.gradient_accumulation_steps;
    long tokens_seen = 0;
    const long global_batch = args_.per_device_train_batch_size * comm_.size();
    if (state.global_step > 0 && state.global_train_batch_size && *state.global_train_batch_size != global_batch)
      fail("trainer", "resuming at step ", state.global_step, ": the checkpoint was written with a global batch of ",
           *state.global_train_batch_size, " rows per micro-batch, this run has ", global_batch, " (",
           comm_.size(), comm_.size() == 1 ? " process" : " ranks", " x per_device_train_batch_size ",
           args_.per_device_train_batch_size, "): give a per-device batch that makes ", *state.global_train_batch_size,
           " to continue the same run");
    DataPosition position = resume_position(state, steps_per_epoch);
    BatchSource source = next_epoch(position.epoch);
    for (long i = 0; i < position.micro_batches; ++i)
      if (!source())
        fail("trainer", "resuming at step ", state.global_step, ": epoch ", position.epoch, " has only ", i,
             " micro-batches, but ", position.micro_batches, " were used before (did the data set change?)");
    state.seed = args_.seed;
    state.max_steps = total_steps_;
    state.logging_steps = args_.logging_steps;
    state.eval_steps = args_.eval_steps.value_or(args_.logging_steps);
    state.save_steps = args_.save_steps;
    state.train_batch_size = args_.per_device_train_batch_size;
    state.global_train_batch_size = global_batch;
    state.num_train_epochs = args_.num_train_epochs;
    const long first_step = state.global_step;
    // Resumed: what the stopped run logged after its checkpoint is dropped. A fresh start (no checkpoint; e.g. a
    // run killed before its first one, started again) drops everything an earlier run logged in this folder.
    const long last_kept = first_step > 0 ? first_step : -1;
    if (metrics_) metrics_->resume_after(last_kept);
    if (tensorboard_) tensorboard_->resume_after(last_kept);
    if (fns_.evaluate && args_.eval_on_start && state.global_step == 0) run_evaluation(state);
    start = std::chrono::steady_clock::now();  // throughput and ETA count training only
    double interval_loss = 0;
    long interval_steps = 0;
    while (state.global_step < total_steps_) {
      std::vector<Batch> micro;
      while (static_cast<long>(micro.size()) < accumulation) {
        std::optional<Batch> b = source();
        if (!b) {
          if (!micro.empty()) break;  // a short last step, as the HF Trainer does at the end of an epoch
          position = {position.epoch + 1, 0};
          source = next_epoch(position.epoch);
          b = source();
          if (!b) fail("trainer", "epoch ", position.epoch, " produced no batch");
        }
        ++position.micro_batches;
        micro.push_back(std::move(*b));
      }
      const std::string step_name = detail::concat("step ", state.global_step + 1);
      // [label tokens, input tokens] of this rank's share of the step, then summed over the ranks (the loss's
      // normalisation needs the global count before any backward pass)
      std::vector<long> micro_tokens;
      double counts[2] = {0, 0};
      for (const auto& b : micro) {
        micro_tokens.push_back(fns_.label_tokens(b));
        counts[0] += static_cast<double>(micro_tokens.back());
        counts[1] += static_cast<double>(fns_.input_tokens ? fns_.input_tokens(b) : micro_tokens.back());
      }
      comm_.all_reduce_sum(std::span<double>(counts), "label tokens of " + step_name);
      const auto step_tokens = static_cast<long>(counts[0]);
      if (step_tokens == 0) fail("trainer", step_name, ": no label tokens in its micro-batches");

      fns_.zero_grad();
      double step_loss = 0;
      for (std::size_t m = 0; m < micro.size(); ++m) {
        if (micro_tokens[m] == 0) continue;  // nothing to learn (a rank's empty share): adds 0 to the loss and grads
        TokenLoss l = fns_.loss(micro[m], micro_batch_stream(args_.seed, state.global_step, accumulation,
                                                             static_cast<long>(m)));
        const double value = static_cast<double>(l.sum.value().item());
        if (!std::isfinite(value)) fail("trainer", step_name, ": the loss is not finite (", value, ")");
        step_loss += value / static_cast<double>(step_tokens);
        backward(scale(l.sum, 1.0 / static_cast<double>(step_tokens)));
      }
      step_loss = comm_.all_reduce_sum(step_loss, "loss of " + step_name);
      dist::sum_gradients(comm_, params_, "gradients of " + step_name, gradient_buckets_);
      tokens_seen += static_cast<long>(counts[1]);
      const double grad_norm = clip_grad_norm(params_, args_.max_grad_norm);
      if (!std::isfinite(grad_norm)) fail("trainer", "step ", state.global_step + 1, ": ", first_nonfinite_gradient());
      const double lr = schedule_.lr(state.global_step);
      fns_.optimizer_step(lr);
      ++state.global_step;
      state.data_position = position;
      state.epoch = steps_per_epoch > 0 ? static_cast<double>(state.global_step) / static_cast<double>(steps_per_epoch)
                                        : static_cast<double>(position.epoch);
      interval_loss += step_loss;
      ++interval_steps;

      const bool last = state.global_step == total_steps_;
      if (state.global_step % args_.logging_steps == 0 || last) {
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        std::map<std::string, double> log{{"loss", interval_loss / static_cast<double>(interval_steps)},
                                          {"learning_rate", lr},
                                          {"grad_norm", grad_norm},
                                          {"epoch", state.epoch},
                                          {"tokens_per_second", static_cast<double>(tokens_seen) / seconds}};
        if (comm_.is_root()) emit(state, log);
        if (std::isnan(result.first_logged_loss)) result.first_logged_loss = log["loss"];
        result.last_logged_loss = log["loss"];
        if (comm_.is_root()) print_progress(state, log, seconds, state.global_step - first_step);
        interval_loss = 0;
        interval_steps = 0;
      }
      // "steps": every N steps and at the end; "epoch": when an epoch is complete, and at the end.
      const bool epoch_end = last || (steps_per_epoch > 0 && state.global_step % steps_per_epoch == 0);
      const long eval_every = args_.eval_steps.value_or(args_.logging_steps);
      if (fns_.evaluate && ((args_.eval_strategy == "steps" && (state.global_step % eval_every == 0 || last)) ||
                            (args_.eval_strategy == "epoch" && epoch_end)))
        run_evaluation(state);
      const bool save = fns_.save && comm_.is_root() && ((args_.save_strategy == "steps" && (state.global_step % args_.save_steps == 0 || last)) ||
                                      (args_.save_strategy == "epoch" && epoch_end));
      if (save) {
        progress_.end_line();  // the save may print
        fns_.save(state);
      }
      if (fns_.on_step_end) fns_.on_step_end(state);
      if (!last && fns_.stop_requested && stop_everywhere(step_name)) {
        progress_.end_line();
        if (fns_.save && comm_.is_root() && !save) fns_.save(state);
        result.stopped = true;
        break;
      }
    }
    progress_.end_line();
    result.memory = process_memory();
    if (gpu_) result.gpu_peak_bytes = static_cast<double>(gpu_->memory().peak_bytes);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    result.tokens_per_second = seconds > 0 ? static_cast<double>(tokens_seen) / seconds : 0;
    result.state = state;
    return result;
  }

  const LearningRateSchedule& schedule() const { return schedule_; }

 private:
  // Any rank's stop request (its SIGINT / SIGTERM) stops every rank after the same step.
  bool stop_everywhere(const std::string& step_name) {
    return comm_.all_reduce_sum(fns_.stop_requested() ? 1.0 : 0.0, "stop request after " + step_name) > 0;
  }
  void run_evaluation(TrainerState& state) {
    progress_.end_line();
    const auto [local_sum, local_count] = fns_.evaluate();  // this rank's share of the eval set
    double totals[2] = {local_sum, static_cast<double>(local_count)};
    comm_.all_reduce_sum(std::span<double>(totals), detail::concat("evaluation at step ", state.global_step));
    const double sum = totals[0];
    const auto count = static_cast<long>(totals[1]);
    const double mean = count ? sum / static_cast<double>(count) : NAN;
    if (!comm_.is_root()) return;
    emit(state, {{"eval_loss", mean}, {"eval_perplexity", std::exp(mean)}});
    std::fprintf(stderr, "step %ld/%ld | eval_loss %.4f | eval_perplexity %.3f | %ld eval tokens\n", state.global_step,
                 total_steps_, mean, std::exp(mean), count);
  }
  DataPosition resume_position(const TrainerState& state, long steps_per_epoch) const {
    if (state.data_position) return *state.data_position;
    if (state.global_step == 0) return {};
    if (steps_per_epoch <= 0)
      fail("trainer", "resuming at step ", state.global_step, " needs the state's data position or steps_per_epoch");
    return {state.global_step / steps_per_epoch,
            state.global_step % steps_per_epoch * args_.gradient_accumulation_steps};
  }
  std::string first_nonfinite_gradient() const {
    for (const auto& p : params_) {
      const Tensor<float, Dyn> g = p.grad();
      if (!g.defined()) continue;
      const auto v = g.to_vector();
      for (std::size_t i = 0; i < v.size(); ++i)
        if (!std::isfinite(v[i]))
          return detail::concat("gradient of '", p.name(), "' is not finite (element ", i, " = ", v[i], ")");
    }
    return "the gradient norm is not finite";
  }
  void emit(TrainerState& state, const std::map<std::string, double>& values) {
    metrics_->write(state.global_step, values);
    if (tensorboard_)
      for (const auto& [k, v] : values)  // as transformers' TensorBoardCallback: train/loss, eval/loss
        tensorboard_->add_scalar(k.rfind("eval_", 0) == 0 ? "eval/" + k.substr(5) : "train/" + k, static_cast<float>(v),
                                 state.global_step);
    auto entry = values;
    entry["step"] = static_cast<double>(state.global_step);
    state.log_history.push_back(std::move(entry));
  }
  // The step line (train/progress.hpp): a bar redrawn in place on a terminal, a log line otherwise.
  void print_progress(const TrainerState& state, std::map<std::string, double>& log, double seconds,
                      long steps_this_run) {
    const double per_step = seconds / static_cast<double>(steps_this_run);
    const double eta = per_step * static_cast<double>(total_steps_ - state.global_step);
    char line[256];
    std::snprintf(line, sizeof line, "step %ld/%ld | epoch %.2f | loss %.4f | lr %.3g | grad_norm %.3f | %.0f tok/s | ETA %.0fs | %s",
                  state.global_step, total_steps_, state.epoch, log["loss"], log["learning_rate"], log["grad_norm"],
                  log["tokens_per_second"], eta, describe(process_memory()).c_str());
    std::string text = line;
    if (gpu_) {
      const MemoryStats m = gpu_->memory();
      text += " | " + describe_device("GPU", static_cast<double>(m.current_bytes), static_cast<double>(m.peak_bytes));
    }
    progress_.show(state.global_step, total_steps_, text);
  }

  TrainingArguments args_;
  ParameterList params_;
  TrainStepFunctions<Batch> fns_;
  long total_steps_;
  dist::Communicator& comm_;
  Tensor<float, Dyn> gradient_buckets_;  // the buffer of the ranks' gradient sums, kept between steps
  LearningRateSchedule schedule_;
  std::unique_ptr<MetricsLog> metrics_;
  std::unique_ptr<tensorboard::EventWriter> tensorboard_;
  ProgressLine progress_;
  std::optional<Device> gpu_;  // the parameters' GPU, whose memory the step line shows
};

}  // namespace qlora
