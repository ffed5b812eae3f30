// Learning-rate schedules: the Hugging Face formulas at their key points.
#include <doctest/doctest.h>

#include <qlora/optim/schedule.hpp>

using namespace qlora;

TEST_SUITE("optim") {
  TEST_CASE("linear warms up then decays to zero at the last step") {
    LearningRateSchedule s(ScheduleKind::linear, 2e-4, 10, 110);
    CHECK(s.lr(0) == 0.0);
    CHECK(s.lr(5) == doctest::Approx(1e-4));
    CHECK(s.lr(10) == doctest::Approx(2e-4));
    CHECK(s.lr(60) == doctest::Approx(1e-4));
    CHECK(s.lr(110) == 0.0);
  }

  TEST_CASE("cosine follows half a cosine after warmup") {
    LearningRateSchedule s(ScheduleKind::cosine, 1.0, 0, 100);
    CHECK(s.factor(0) == doctest::Approx(1.0));
    CHECK(s.factor(50) == doctest::Approx(0.5));
    CHECK(s.factor(25) == doctest::Approx(0.5 * (1 + std::cos(std::numbers::pi * 0.25))));
    CHECK(s.factor(100) == doctest::Approx(0.0));
  }

  TEST_CASE("constant schedules, warmup from a ratio, and unknown names") {
    CHECK(LearningRateSchedule(ScheduleKind::constant, 3.0, 5, 10).lr(0) == 3.0);
    CHECK(LearningRateSchedule(ScheduleKind::constant_with_warmup, 3.0, 4, 10).lr(2) == 1.5);
    CHECK(warmup_steps_from_ratio(0.03, 100) == 3);
    CHECK(warmup_steps_from_ratio(0.03, 101) == 4);  // ceil, as TrainingArguments.get_warmup_steps
    CHECK(parse_schedule("cosine") == ScheduleKind::cosine);
    CHECK_THROWS_WITH_AS(parse_schedule("exponential"),
                         "[schedule] unknown lr_scheduler_type 'exponential' (use linear, cosine, constant or "
                         "constant_with_warmup)",
                         Error);
  }
}
