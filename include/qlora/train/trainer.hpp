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
};

template <class Batch>
class Trainer {
 public:
  using BatchSource = std::function<std::optional<Batch>()>;  // next micro-batch; nullopt at the end of an epoch

  Trainer(TrainingArguments args, ParameterList params, TrainStepFunctions<Batch> fns, long total_steps)
      : args_(std::move(args)), params_(std::move(params)), fns_(std::move(fns)), total_steps_(total_steps),
        schedule_(parse_schedule(args_.lr_scheduler_type), args_.learning_rate,
                  args_.warmup_steps > 0 ? args_.warmup_steps : warmup_steps_from_ratio(args_.warmup_ratio, total_steps),
                  total_steps) {
    validate(args_);
    if (!fns_.loss || !fns_.label_tokens || !fns_.optimizer_step || !fns_.zero_grad)
      fail("trainer", "loss, label_tokens, optimizer_step and zero_grad must be given");
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
    auto start = std::chrono::steady_clock::now();
    const long accumulation = args_.gradient_accumulation_steps;
    long tokens_seen = 0;
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
    state.num_train_epochs = args_.num_train_epochs;
    const long first_step = state.global_step;
    // Resumed: what the stopped run logged after its checkpoint is dropped. A fresh start (no checkpoint; e.g. a
    // run killed before its first one, started again) drops everything an earlier run logged in this folder.
    const long last_kept = first_step > 0 ? first_step : -1;
    metrics_->resume_after(last_kept);
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
      long step_tokens = 0;
      for (const auto& b : micro) step_tokens += fns_.label_tokens(b);
      if (step_tokens == 0) fail("trainer", "step ", state.global_step + 1, ": no label tokens in its micro-batches");

      fns_.zero_grad();
      double step_loss = 0;
      for (std::size_t m = 0; m < micro.size(); ++m) {
        TokenLoss l = fns_.loss(micro[m], micro_batch_stream(args_.seed, state.global_step, accumulation,
                                                             static_cast<long>(m)));
        const double value = static_cast<double>(l.sum.value().item());
        if (!std::isfinite(value)) fail("trainer", "step ", state.global_step + 1, ": the loss is not finite (", value, ")");
        step_loss += value / static_cast<double>(step_tokens);
        backward(scale(l.sum, 1.0 / static_cast<double>(step_tokens)));
      }
      if (fns_.input_tokens)
        for (const auto& b : micro) tokens_seen += fns_.input_tokens(b);
      else
        tokens_seen += step_tokens;
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
        emit(state, log);
        if (std::isnan(result.first_logged_loss)) result.first_logged_loss = log["loss"];
        result.last_logged_loss = log["loss"];
        print_progress(state, log, seconds, state.global_step - first_step);
        interval_loss = 0;
        interval_steps = 0;
      }
      // "steps": every N steps and at the end; "epoch": when an epoch is complete, and at the end.
      const bool epoch_end = last || (steps_per_epoch > 0 && state.global_step % steps_per_epoch == 0);
      const long eval_every = args_.eval_steps.value_or(args_.logging_steps);
      if (fns_.evaluate && ((args_.eval_strategy == "steps" && (state.global_step % eval_every == 0 || last)) ||
                            (args_.eval_strategy == "epoch" && epoch_end)))
        run_evaluation(state);
      const bool save = fns_.save && ((args_.save_strategy == "steps" && (state.global_step % args_.save_steps == 0 || last)) ||
                                      (args_.save_strategy == "epoch" && epoch_end));
      if (save) {
        progress_.end_line();  // the save may print
        fns_.save(state);
      }
      if (fns_.on_step_end) fns_.on_step_end(state);
      if (!last && fns_.stop_requested && fns_.stop_requested()) {
        progress_.end_line();
        if (fns_.save && !save) fns_.save(state);
        result.stopped = true;
        break;
      }
    }
    progress_.end_line();
    result.memory = process_memory();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    result.tokens_per_second = seconds > 0 ? static_cast<double>(tokens_seen) / seconds : 0;
    result.state = state;
    return result;
  }

  const LearningRateSchedule& schedule() const { return schedule_; }

 private:
  void run_evaluation(TrainerState& state) {
    progress_.end_line();
    const auto [sum, count] = fns_.evaluate();
    const double mean = count ? sum / static_cast<double>(count) : NAN;
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
    progress_.show(state.global_step, total_steps_, line);
  }

  TrainingArguments args_;
  ParameterList params_;
  TrainStepFunctions<Batch> fns_;
  long total_steps_;
  LearningRateSchedule schedule_;
  std::unique_ptr<MetricsLog> metrics_;
  std::unique_ptr<tensorboard::EventWriter> tensorboard_;
  ProgressLine progress_;
};

}  // namespace qlora
