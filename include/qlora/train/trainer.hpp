// The training loop of the Hugging Face Trainer, for any model that can give a summed token loss:
//
//   for each optimizer step: take gradient_accumulation_steps micro-batches, count their label tokens N, run
//   forward + backward on each with loss_sum / N (so the step's loss is the mean over all its label tokens, as
//   transformers does since num_items_in_batch), clip the global gradient norm, stop on a non-finite gradient naming
//   the step and the parameter, update with the scheduled learning rate, then log / evaluate / save on their steps.
//
// The model is reached only through `TrainStepFunctions`, so a custom loop needs none of this and the trainer needs
// no particular model type. Logs go to JSONL (always) and TensorBoard event files (report_to "tensorboard").
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

#include "../io/metrics.hpp"
#include "../io/tensorboard.hpp"
#include "../optim/clip.hpp"
#include "../optim/parameter.hpp"
#include "../optim/schedule.hpp"
#include "arguments.hpp"

namespace qlora {

// A loss summed over a micro-batch's label tokens, and how many there were.
struct TokenLoss {
  Variable<float> sum;
  long tokens = 0;
};

template <class Batch>
struct TrainStepFunctions {
  std::function<TokenLoss(const Batch&)> loss;                  // forward of one micro-batch
  std::function<long(const Batch&)> label_tokens;               // label tokens of a micro-batch (no forward)
  std::function<void(double lr)> optimizer_step;                 // apply the update with this learning rate
  std::function<void()> zero_grad;
  std::function<void(long step)> save;                           // write a checkpoint (optional)
  std::function<std::pair<double, long>()> evaluate;             // summed eval loss and tokens (optional)
};

struct TrainerState {  // what resuming needs besides the model, optimizer and data position
  long global_step = 0;
  double epoch = 0;
  std::vector<std::map<std::string, double>> log_history;
};

struct TrainResult {
  TrainerState state;
  double first_logged_loss = NAN, last_logged_loss = NAN;
  double tokens_per_second = 0;
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

  // Runs optimizer steps until total_steps; `next_epoch(e)` returns the batch source of epoch e.
  TrainResult train(const std::function<BatchSource(long epoch)>& next_epoch, TrainerState state = {},
                    long steps_per_epoch = 0) {
    TrainResult result;
    const auto start = std::chrono::steady_clock::now();
    long tokens_seen = 0;
    long epoch = steps_per_epoch > 0 ? state.global_step / steps_per_epoch : 0;
    BatchSource source = next_epoch(epoch);
    double interval_loss = 0;
    long interval_steps = 0;
    while (state.global_step < total_steps_) {
      std::vector<Batch> micro;
      while (static_cast<long>(micro.size()) < args_.gradient_accumulation_steps) {
        std::optional<Batch> b = source();
        if (!b) {
          if (!micro.empty()) break;  // a short last step, as the HF Trainer does at the end of an epoch
          source = next_epoch(++epoch);
          b = source();
          if (!b) fail("trainer", "epoch ", epoch, " produced no batch");
        }
        micro.push_back(std::move(*b));
      }
      long step_tokens = 0;
      for (const auto& b : micro) step_tokens += fns_.label_tokens(b);
      if (step_tokens == 0) fail("trainer", "step ", state.global_step + 1, ": no label tokens in its micro-batches");

      fns_.zero_grad();
      double step_loss = 0;
      for (const auto& b : micro) {
        TokenLoss l = fns_.loss(b);
        const double value = static_cast<double>(l.sum.value().item());
        if (!std::isfinite(value)) fail("trainer", "step ", state.global_step + 1, ": the loss is not finite (", value, ")");
        step_loss += value / static_cast<double>(step_tokens);
        backward(scale(l.sum, 1.0 / static_cast<double>(step_tokens)));
      }
      tokens_seen += step_tokens;
      const double grad_norm = clip_grad_norm(params_, args_.max_grad_norm);
      if (!std::isfinite(grad_norm)) fail("trainer", "step ", state.global_step + 1, ": ", first_nonfinite_gradient());
      const double lr = schedule_.lr(state.global_step);
      fns_.optimizer_step(lr);
      ++state.global_step;
      state.epoch = steps_per_epoch > 0 ? static_cast<double>(state.global_step) / static_cast<double>(steps_per_epoch)
                                        : static_cast<double>(epoch);
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
        print_progress(state, log, seconds);
        interval_loss = 0;
        interval_steps = 0;
      }
      const long eval_every = args_.eval_steps.value_or(args_.logging_steps);
      if (fns_.evaluate && args_.eval_strategy == "steps" && (state.global_step % eval_every == 0 || last)) {
        const auto [sum, count] = fns_.evaluate();
        const double mean = count ? sum / static_cast<double>(count) : NAN;
        emit(state, {{"eval_loss", mean}, {"eval_perplexity", std::exp(mean)}});
      }
      if (fns_.save && args_.save_strategy == "steps" && (state.global_step % args_.save_steps == 0 || last))
        fns_.save(state.global_step);
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    result.tokens_per_second = seconds > 0 ? static_cast<double>(tokens_seen) / seconds : 0;
    result.state = state;
    return result;
  }

  const LearningRateSchedule& schedule() const { return schedule_; }

 private:
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
      for (const auto& [k, v] : values) tensorboard_->add_scalar("train/" + k, static_cast<float>(v), state.global_step);
    auto entry = values;
    entry["step"] = static_cast<double>(state.global_step);
    state.log_history.push_back(std::move(entry));
  }
  void print_progress(const TrainerState& state, std::map<std::string, double>& log, double seconds) const {
    const double per_step = seconds / static_cast<double>(state.global_step);
    const double eta = per_step * static_cast<double>(total_steps_ - state.global_step);
    std::fprintf(stderr, "step %ld/%ld | epoch %.2f | loss %.4f | lr %.3g | grad_norm %.3f | %.0f tok/s | ETA %.0fs\n",
                 state.global_step, total_steps_, state.epoch, log["loss"], log["learning_rate"], log["grad_norm"],
                 log["tokens_per_second"], eta);
  }

  TrainingArguments args_;
  ParameterList params_;
  TrainStepFunctions<Batch> fns_;
  long total_steps_;
  LearningRateSchedule schedule_;
  std::unique_ptr<MetricsLog> metrics_;
  std::unique_ptr<tensorboard::EventWriter> tensorboard_;
};

}  // namespace qlora
