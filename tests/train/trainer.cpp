// The Trainer loop: loss normalised over the label tokens of all accumulated micro-batches (so two micro-batches give
// the gradient of one batch holding both), the NaN guard naming the parameter, logging, and a loss that goes down.
#include <doctest/doctest.h>

#include <unistd.h>

#include <fstream>

#include "support/check.hpp"

#include <qlora/optim/adamw.hpp>
#include <qlora/train/trainer.hpp>

using namespace qlora;

namespace {
// A micro-batch of a toy regression: rows of x, targets y, and a mask of which rows count (label tokens).
struct ToyBatch {
  Tensor<float, Dyn, Dim<4>> x;
  Tensor<float, Dyn, Dim<2>> y;
  std::vector<int> counted;
};

struct ToyModel {
  Variable<float, Dim<2>, Dim<4>> w = Variable<float, Dim<2>, Dim<4>>::leaf(
      test::random_tensor<Tensor<float, Dim<2>, Dim<4>>>(1, -0.5, 0.5));
  TokenLoss loss(const ToyBatch& b) const {
    auto mask = Tensor<float, Dyn, Dim<2>>::zeros(b.x.size(0));
    long n = 0;
    for (index_t r = 0; r < mask.size(0); ++r)
      if (b.counted[static_cast<std::size_t>(r)]) {
        mask(r, 0) = mask(r, 1) = 1;
        ++n;
      }
    auto pred = matmul<Transpose::no, Transpose::yes>(Variable<float, Dyn, Dim<4>>(b.x), w);
    auto err = pred - Variable<float, Dyn, Dim<2>>(b.y);
    return {sum(err * err * Variable<float, Dyn, Dim<2>>(mask)), n};
  }
};

ToyBatch make_batch(std::uint64_t seed, index_t rows, std::vector<int> counted) {
  auto x = test::random_tensor<Tensor<float, Dyn, Dim<4>>>(seed, -1, 1, rows);
  auto y = Tensor<float, Dyn, Dim<2>>::zeros(rows);
  for (index_t r = 0; r < rows; ++r) {
    y(r, 0) = x(r, 0) - 2 * x(r, 3);
    y(r, 1) = 0.5f * x(r, 1);
  }
  return {x, y, std::move(counted)};
}

std::string temp_dir(const char* name) {
  const auto d = std::filesystem::temp_directory_path() / (std::string(name) + std::to_string(::getpid()));
  std::filesystem::remove_all(d);
  return d.string();
}

template <class Batches>
Trainer<ToyBatch>::BatchSource source_of(const Batches& batches) {
  auto next = std::make_shared<std::size_t>(0);
  return [batches, next]() -> std::optional<ToyBatch> {
    if (*next >= batches.size()) return std::nullopt;
    return batches[(*next)++];
  };
}

// The toy model trained by AdamW: the step functions every fitting test uses.
TrainStepFunctions<ToyBatch> fitting_functions(ToyModel& model, AdamW& opt) {
  TrainStepFunctions<ToyBatch> fns;
  fns.loss = [&model](const ToyBatch& b, RandomStream) { return model.loss(b); };
  fns.label_tokens = [](const ToyBatch& b) { return static_cast<long>(b.counted.size()); };
  fns.optimizer_step = [&opt](double lr) { opt.step(lr); };
  fns.zero_grad = [&opt] { opt.zero_grad(); };
  return fns;
}
}  // namespace

TEST_SUITE("train") {
  TEST_CASE("accumulated micro-batches give the gradient of one batch: the loss is a mean over all label tokens") {
    const ToyBatch a = make_batch(2, 3, {1, 1, 0});
    const ToyBatch b = make_batch(3, 5, {1, 1, 1, 1, 1});
    ToyBatch both{Tensor<float, Dyn, Dim<4>>::zeros(8), Tensor<float, Dyn, Dim<2>>::zeros(8), {1, 1, 0, 1, 1, 1, 1, 1}};
    both.x.slice(0, 3).copy_from(a.x);
    both.x.slice(3, 8).copy_from(b.x);
    both.y.slice(0, 3).copy_from(a.y);
    both.y.slice(3, 8).copy_from(b.y);

    auto gradient_after_one_step = [&](std::vector<ToyBatch> batches, long accumulation) {
      ToyModel model;
      Tensor<float, Dim<2>, Dim<4>> seen;
      TrainStepFunctions<ToyBatch> fns;
      fns.loss = [&](const ToyBatch& batch, RandomStream) { return model.loss(batch); };
      fns.label_tokens = [](const ToyBatch& batch) {
        long n = 0;
        for (int c : batch.counted) n += c;
        return n;
      };
      fns.optimizer_step = [&](double) { seen = model.w.grad().clone(); };
      fns.zero_grad = [&] { model.w.zero_grad(); };
      TrainingArguments args;
      args.output_dir = temp_dir("qlora_trainer_acc");
      args.gradient_accumulation_steps = accumulation;
      args.report_to = {};
      Trainer<ToyBatch> trainer(args, {Parameter("w", model.w)}, fns, 1);
      trainer.train([&](long) { return source_of(batches); });
      return seen;
    };
    const auto accumulated = gradient_after_one_step({a, b}, 2);
    const auto single = gradient_after_one_step({both}, 1);
    QLORA_CHECK_CLOSE(accumulated, single, 1e-6, 1e-5);
  }

  TEST_CASE("training the toy model lowers the loss and writes JSONL and TensorBoard logs") {
    ToyModel model;
    AdamW opt({Parameter("w", model.w)}, AdamWConfig{0.9, 0.999, 1e-8, 0.0});
    std::vector<ToyBatch> batches;
    for (int i = 0; i < 8; ++i) batches.push_back(make_batch(10 + static_cast<std::uint64_t>(i), 4, {1, 1, 1, 1}));
    TrainStepFunctions<ToyBatch> fns = fitting_functions(model, opt);
    TrainingArguments args;
    args.output_dir = temp_dir("qlora_trainer_fit");
    args.learning_rate = 0.05;
    args.logging_steps = 10;
    args.lr_scheduler_type = "constant";
    Trainer<ToyBatch> trainer(args, opt.parameters(), fns, 80);
    const auto result = trainer.train([&](long) { return source_of(batches); }, {}, 8);
    MESSAGE("toy loss " << result.first_logged_loss << " -> " << result.last_logged_loss);
    CHECK(result.last_logged_loss < 0.05 * result.first_logged_loss);
    CHECK(result.state.global_step == 80);
    CHECK(result.state.epoch == doctest::Approx(10.0));
    std::ifstream jsonl(std::filesystem::path(args.output_dir) / "metrics.jsonl");
    int lines = 0;
    for (std::string line; std::getline(jsonl, line);) ++lines;
    CHECK(lines == 8);
    CHECK(std::filesystem::exists(std::filesystem::path(args.output_dir) / "runs"));
    std::filesystem::remove_all(args.output_dir);
  }

  TEST_CASE("a stop request ends training after the current step with a checkpoint of it") {
    ToyModel model;
    AdamW opt({Parameter("w", model.w)}, AdamWConfig{0.9, 0.999, 1e-8, 0.0});
    std::vector<ToyBatch> batches;
    for (int i = 0; i < 4; ++i) batches.push_back(make_batch(30 + static_cast<std::uint64_t>(i), 4, {1, 1, 1, 1}));
    TrainStepFunctions<ToyBatch> fns = fitting_functions(model, opt);
    std::vector<long> saved;
    fns.save = [&](const TrainerState& s) { saved.push_back(s.global_step); };
    long steps_done = 0;
    fns.on_step_end = [&](const TrainerState& s) { steps_done = s.global_step; };
    fns.stop_requested = [&] { return steps_done >= 3; };  // e.g. SIGTERM arrived during step 3
    TrainingArguments args;
    args.output_dir = temp_dir("qlora_trainer_stop");
    args.report_to = {};
    args.save_steps = 2;
    Trainer<ToyBatch> trainer(args, opt.parameters(), fns, 10);
    const auto result = trainer.train([&](long) { return source_of(batches); }, {}, 4);
    CHECK(result.stopped);
    CHECK(result.state.global_step == 3);
    CHECK(saved == std::vector<long>{2, 3});  // the regular checkpoint, then the one of the stopping step
    std::filesystem::remove_all(args.output_dir);
  }

  TEST_CASE("a run resumed from a checkpoint, or started again, leaves one metrics.jsonl record per step") {
    // A run logged steps 1-5 and was killed after its checkpoint at step 3 (its last line cut short); the run resumed
    // from that checkpoint logs steps 4-6. Each step must appear once, the resumed run's 4 and 5 replacing the old.
    std::vector<ToyBatch> batches;
    for (int i = 0; i < 6; ++i) batches.push_back(make_batch(50 + static_cast<std::uint64_t>(i), 4, {1, 1, 1, 1}));
    TrainingArguments args;
    args.output_dir = temp_dir("qlora_trainer_resume_log");
    args.logging_steps = 1;
    args.report_to = {"tensorboard"};
    const auto metrics = std::filesystem::path(args.output_dir) / "metrics.jsonl";
    {
      ToyModel model;
      AdamW opt({Parameter("w", model.w)}, AdamWConfig{0.9, 0.999, 1e-8, 0.0});
      Trainer<ToyBatch> first(args, opt.parameters(), fitting_functions(model, opt), 5);
      (void)first.train([&](long) { return source_of(batches); }, {}, 6);
    }
    std::ofstream(metrics, std::ios::app) << R"({"step": 6, "loss")";  // a line a kill cut short
    ToyModel model;
    AdamW opt({Parameter("w", model.w)}, AdamWConfig{0.9, 0.999, 1e-8, 0.0});
    Trainer<ToyBatch> resumed(args, opt.parameters(), fitting_functions(model, opt), 6);
    TrainerState state;
    state.global_step = 3;
    (void)resumed.train([&](long) { return source_of(batches); }, state, 6);
    std::ifstream in(metrics);
    std::vector<long> steps;
    for (std::string line; std::getline(in, line);) steps.push_back(nlohmann::json::parse(line).at("step").get<long>());
    CHECK(steps == std::vector<long>{1, 2, 3, 4, 5, 6});
    // started again from scratch in the same folder (e.g. killed before its first checkpoint): only the new run's
    Trainer<ToyBatch> again(args, opt.parameters(), fitting_functions(model, opt), 2);
    (void)again.train([&](long) { return source_of(batches); }, {}, 6);
    std::ifstream in2(metrics);
    steps.clear();
    for (std::string line; std::getline(in2, line);) steps.push_back(nlohmann::json::parse(line).at("step").get<long>());
    CHECK(steps == std::vector<long>{1, 2});
    std::filesystem::remove_all(args.output_dir);
  }

  TEST_CASE("a non-finite gradient stops training naming the step and the parameter") {
    ToyModel model;
    const ToyBatch bad = make_batch(4, 2, {1, 1});
    TrainStepFunctions<ToyBatch> fns;
    fns.loss = [&](const ToyBatch& b, RandomStream) {
      auto l = model.loss(b);
      // identity forward, infinite backward: a finite loss over an infinite gradient
      auto poisoned = make_result("poison", l.sum.value().clone(), [n = l.sum.node()](const Tensor<float>& dy) {
        Tensor<float> inf(dy.shape());
        inf() = std::numeric_limits<float>::infinity();
        accumulate_grad(n, inf);
      }, l.sum);
      return TokenLoss{poisoned, l.tokens};
    };
    fns.label_tokens = [](const ToyBatch& b) { return static_cast<long>(b.counted.size()); };
    fns.optimizer_step = [](double) {};
    fns.zero_grad = [&] { model.w.zero_grad(); };
    TrainingArguments args;
    args.output_dir = temp_dir("qlora_trainer_nan");
    args.report_to = {};
    Trainer<ToyBatch> trainer(args, {Parameter("layers.0.w", model.w)}, fns, 3);
    CHECK_THROWS_WITH_AS(trainer.train([&](long) { return source_of(std::vector<ToyBatch>{bad}); }),
                         doctest::Contains("[trainer] step 1: gradient of 'layers.0.w' is not finite"), Error);
    std::filesystem::remove_all(args.output_dir);
  }
}
