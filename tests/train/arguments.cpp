// TrainingArguments and LoraConfig: Hugging Face defaults, reading JSON, and errors for typos, types and ranges.
#include <cmath>
#include <limits>

#include <doctest/doctest.h>

#include <qlora/train/arguments.hpp>

using namespace qlora;
using nlohmann::json;

TEST_SUITE("train") {
  TEST_CASE("defaults are those of transformers and PEFT") {
    const TrainingArguments a;
    CHECK(a.learning_rate == 5e-5);
    CHECK(a.num_train_epochs == 3.0);
    CHECK(a.lr_scheduler_type == "linear");
    CHECK(a.max_grad_norm == 1.0);
    CHECK(a.seed == 42);
    const LoraConfig c;
    CHECK(c.r == 8);
    CHECK(c.lora_alpha == 8);
  }

  TEST_CASE("a recipe's settings are read by their Hugging Face names") {
    const auto a = training_arguments_from_json(json::parse(R"({
      "output_dir": "out", "num_train_epochs": 3, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 4,
      "learning_rate": 2e-4, "max_grad_norm": 0.3, "optim": "paged_adamw_8bit", "lr_scheduler_type": "cosine",
      "warmup_ratio": 0.03, "bf16": true, "save_total_limit": 2, "report_to": "tensorboard"})"));
    CHECK(a.per_device_train_batch_size == 2);
    CHECK(a.optim == "paged_adamw_8bit");
    CHECK(a.eight_bit_optimizer());
    const std::pair<const char*, bool> eight_bit[] = {
        {"adamw_8bit", true}, {"paged_adamw_8bit", true}, {"adamw_torch", false}, {"paged_adamw_32bit", false}};
    for (const auto& named : eight_bit) {  // (no structured binding: clang 14 cannot capture one in CHECK_MESSAGE)
      TrainingArguments b;
      b.optim = named.first;
      CHECK_MESSAGE(b.eight_bit_optimizer() == named.second, named.first);
    }
    CHECK(a.save_total_limit == 2);
    CHECK(a.report_to == std::vector<std::string>{"tensorboard"});
    const auto c = lora_config_from_json(json::parse(
        R"({"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": "q_proj,k_proj,v_proj,o_proj"})"));
    CHECK(c.r == 16);
    CHECK(c.target_modules.size() == 4);
  }

  TEST_CASE("an unknown option is an error that suggests the nearest name") {
    CHECK_THROWS_WITH_AS(training_arguments_from_json(json::parse(R"({"learning_rat": 1e-4})")),
                         "[config] TrainingArguments: unknown option 'learning_rat' (did you mean 'learning_rate'?)",
                         Error);
  }

  TEST_CASE("wrong types and values out of range are errors naming the option") {
    CHECK_THROWS_WITH_AS(training_arguments_from_json(json::parse(R"({"max_steps": "ten"})")),
                         "[config] TrainingArguments: option 'max_steps' has the wrong type (string)", Error);
    CHECK_THROWS_WITH_AS(training_arguments_from_json(json::parse(R"({"optim": "sgd"})")),
                         "[config] option 'optim' is 'sgd'; allowed: adamw_torch, adamw_8bit, paged_adamw_8bit, "
                         "paged_adamw_32bit",
                         Error);
    CHECK_THROWS_AS(lora_config_from_json(json::parse(R"({"lora_dropout": 1.0})")), Error);
    CHECK_THROWS_WITH_AS(lora_config_from_json(json::parse(R"({"target_modules": ["q_proj", "lm_head"]})")),
                         "[config] option 'target_modules' is 'lm_head'; allowed: q_proj, k_proj, v_proj, o_proj, "
                         "gate_proj, up_proj, down_proj, out_proj, fc1, fc2",
                         Error);
  }

  TEST_CASE("integers are integers of the option's range; NaN and out-of-range numbers are refused by name") {
    CHECK_THROWS_WITH_AS(training_arguments_from_json(json::parse(R"({"max_steps": 1e30})")),
                         "[config] TrainingArguments: option 'max_steps' is 1e+30, not an integer", Error);
    CHECK_THROWS_WITH_AS(training_arguments_from_json(json::parse(R"({"seed": -1})")),
                         "[config] TrainingArguments: option 'seed' is -1, outside the range of an unsigned 64-bit "
                         "integer",
                         Error);
    CHECK_THROWS_WITH_AS(training_arguments_from_json(json::parse(R"({"logging_steps": 18446744073709551615})")),
                         "[config] TrainingArguments: option 'logging_steps' is 18446744073709551615, outside the range "
                         "of a signed 64-bit integer",
                         Error);
    CHECK_THROWS_WITH_AS(training_arguments_from_json(json::parse(R"({"bf16": 1})")),
                         "[config] TrainingArguments: option 'bf16' has the wrong type (number)", Error);
    CHECK_THROWS_WITH_AS(training_arguments_from_json(json::parse(R"({"max_steps": -5})")),
                         "[config] max_steps must be a positive number of steps, or -1 to train num_train_epochs; got -5",
                         Error);
    CHECK_THROWS_WITH_AS(training_arguments_from_json(json::parse(R"({"num_train_epochs": 1e30})")),
                         "[config] num_train_epochs must be in (0, 1e6] (or give max_steps), got 1e+30", Error);
    CHECK_NOTHROW(training_arguments_from_json(json::parse(R"({"num_train_epochs": 1e30, "max_steps": 10})")));
    TrainingArguments a;
    for (double TrainingArguments::*field : {&TrainingArguments::max_grad_norm, &TrainingArguments::warmup_ratio,
                                             &TrainingArguments::weight_decay, &TrainingArguments::learning_rate})
      for (double bad : {std::nan(""), -1.0, std::numeric_limits<double>::infinity()}) {
        a = TrainingArguments{};
        a.*field = bad;
        CHECK_THROWS_AS(validate(a), Error);
      }
    a = TrainingArguments{};
    a.eval_steps = 0;
    CHECK_THROWS_WITH_AS(validate(a), "[config] eval_steps must be >= 1", Error);
    a = TrainingArguments{};
    a.report_to = {"wandb"};
    CHECK_THROWS_WITH_AS(validate(a), "[config] option 'report_to' is 'wandb'; allowed: tensorboard, none", Error);
  }

  TEST_CASE("to_json gives back what the readers take") {
    TrainingArguments a;
    a.max_steps = 7;
    a.save_total_limit = 2;
    a.report_to = {"none"};
    const TrainingArguments b = training_arguments_from_json(to_json(a));
    CHECK(to_json(b) == to_json(a));
    CHECK(b.save_total_limit == 2);
    LoraConfig c = lora_config_from_json(json::parse(R"({"target_modules": "all-linear", "rank_pattern": {"q_proj": 4}})"));
    const LoraConfig d = lora_config_from_json(to_json(c));
    CHECK(d.all_linear);
    CHECK(d.target_modules == c.target_modules);
    CHECK(d.rank_pattern == c.rank_pattern);
  }
}
