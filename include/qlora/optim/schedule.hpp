// Learning-rate schedules with the Hugging Face names and formulas (transformers/optimization.py): the factor that
// multiplies the base learning rate at optimizer step `step` (0-based, the value used for the update of that step).
//   constant:               1
//   constant_with_warmup:   step/warmup during warmup, then 1
//   linear (HF default):    step/warmup, then max(0, (total − step)/(total − warmup))
//   cosine:                 step/warmup, then max(0, ½(1 + cos(π · 2·cycles · progress))), cycles = 0.5
// Warmup steps from a ratio are ceil(ratio · total), as TrainingArguments.get_warmup_steps does.
#pragma once

#include <cmath>
#include <numbers>
#include <string>
#include <string_view>

#include "../core/error.hpp"

namespace qlora {

enum class ScheduleKind { constant, constant_with_warmup, linear, cosine };

inline ScheduleKind parse_schedule(std::string_view name) {
  if (name == "constant") return ScheduleKind::constant;
  if (name == "constant_with_warmup") return ScheduleKind::constant_with_warmup;
  if (name == "linear") return ScheduleKind::linear;
  if (name == "cosine") return ScheduleKind::cosine;
  fail("schedule", "unknown lr_scheduler_type '", name, "' (use linear, cosine, constant or constant_with_warmup)");
}

inline long warmup_steps_from_ratio(double ratio, long total_steps) {
  if (!(ratio >= 0 && ratio <= 1)) fail("schedule", "warmup_ratio must be in [0, 1], got ", ratio);
  return static_cast<long>(std::ceil(ratio * static_cast<double>(total_steps)));
}

class LearningRateSchedule {
 public:
  LearningRateSchedule(ScheduleKind kind, double base_lr, long warmup_steps, long total_steps)
      : kind_(kind), base_lr_(base_lr), warmup_(warmup_steps), total_(total_steps) {
    if (warmup_steps < 0) fail("schedule", "warmup_steps must not be negative, got ", warmup_steps);
    if (total_steps <= 0 && kind != ScheduleKind::constant && kind != ScheduleKind::constant_with_warmup)
      fail("schedule", "the number of training steps must be positive, got ", total_steps);
  }

  double factor(long step) const {
    const auto s = static_cast<double>(step);
    const auto w = static_cast<double>(warmup_), t = static_cast<double>(total_);
    if (kind_ == ScheduleKind::constant) return 1.0;
    if (step < warmup_) return s / std::max(1.0, w);
    switch (kind_) {
      case ScheduleKind::constant_with_warmup: return 1.0;
      case ScheduleKind::linear: return std::max(0.0, (t - s) / std::max(1.0, t - w));
      case ScheduleKind::cosine: {
        const double progress = (s - w) / std::max(1.0, t - w);
        return std::max(0.0, 0.5 * (1.0 + std::cos(std::numbers::pi * 2.0 * 0.5 * progress)));
      }
      default: return 1.0;
    }
  }
  double lr(long step) const { return base_lr_ * factor(step); }

 private:
  ScheduleKind kind_;
  double base_lr_;
  long warmup_, total_;
};

}  // namespace qlora
