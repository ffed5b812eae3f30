// TrainingArguments and LoraConfig: Hugging Face defaults, reading JSON, and errors for typos, types and ranges.
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
}
