// A 10-step LoRA fine-tune of the tiny Gemma 3 model against transformers' Trainer + PEFT (tests/train_golden/
// gemma3_lora_train.py → tests/data/gemma3_train/): same initial adapter (PEFT wrote it), same sequences in the same
// order, AdamW (torch), linear schedule with warmup, clipping at 1.0, 2 micro-batches per step with the loss
// normalised over the step's label tokens. The logged loss, gradient norm and learning rate of every step must match,
// and the trained adapter must give the logits PEFT's trained adapter gives.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "support/lora.hpp"
#include "support/models.hpp"
#include <qlora/io/peft.hpp>
#include <qlora/optim/adamw.hpp>
#include <qlora/train/trainer.hpp>

using namespace qlora;
using test::kData;
using test::kTiny;

namespace {

nlohmann::json train_golden() {
  std::ifstream in(kData / "gemma3_train" / "train.json");
  REQUIRE_MESSAGE(in.good(), "tests/data/gemma3_train/train.json is missing (run tests/golden/gemma3_lora_train.py)");
  return nlohmann::json::parse(in);
}

double max_relative(const Tensor<float, Dyn, Dyn>& got, const nlohmann::json& want) {
  double worst = 0, scale = 0;
  for (index_t t = 0; t < got.size(0); ++t)
    for (index_t v = 0; v < got.size(1); ++v) {
      const double w = want[t][v].get<double>();
      worst = std::max(worst, std::abs(got(t, v) - w));
      scale = std::max(scale, std::abs(w));
    }
  return worst / scale;
}
}  // namespace

// How close a backend's run must come to transformers' fp32 run: fp32 GEMMs (Eigen's, oneDNN's) within 1e-4 relative
// per logged loss and gradient norm and final logits; bf16 operands (2⁻⁹ relative rounding of every GEMM input)
// within 1e-2 (loss), 5e-2 (gradient norm, final logits).
struct Tolerance {
  double loss, grad_norm, logits;
};

// The run on `backend`; with `reference` the extra checks of the fp32 reference (adapter round trip, compat files).
void check_lora_parity(CpuGemm backend, Tolerance tol, bool reference) {
  const nlohmann::json g = train_golden();
  const auto& h = g["hyperparameters"];
  Gemma3Options options = test::lora_options(4, all_linear_targets(), h["lora_alpha"].get<double>());
  options.device = Device::cpu(backend);
  MESSAGE("CPU GEMM: " << describe_cpu_gemm(backend));
  const auto model = test::open_tiny(options);
  const std::uint64_t calls_before = cpu::cpu_gemm_count(backend).calls;
  model->load_adapter(kData / "gemma3_train" / "initial_adapter");

  std::vector<Sample> samples;
  for (const auto& s : g["sequences"])
    samples.push_back({s["input_ids"].get<std::vector<std::int32_t>>(), s["labels"].get<std::vector<std::int32_t>>()});
  const std::vector<Batch> batches = make_batches(samples, 1, 0);

  TrainingArguments args;
  args.output_dir = (std::filesystem::temp_directory_path() / "qlora_lora_parity").string();
  std::filesystem::remove_all(args.output_dir);
  args.max_steps = h["max_steps"].get<long>();
  args.per_device_train_batch_size = 1;
  args.gradient_accumulation_steps = h["gradient_accumulation_steps"].get<long>();
  args.learning_rate = h["learning_rate"].get<double>();
  args.lr_scheduler_type = h["lr_scheduler_type"].get<std::string>();
  args.warmup_steps = h["warmup_steps"].get<long>();
  args.weight_decay = h["weight_decay"].get<double>();
  args.max_grad_norm = h["max_grad_norm"].get<double>();
  args.logging_steps = 1;
  args.save_strategy = "no";
  args.report_to = {};

  AdamW optimizer(model->lora_parameters(), AdamWConfig{h["adam_beta1"].get<double>(), h["adam_beta2"].get<double>(),
                                                       h["adam_epsilon"].get<double>(), args.weight_decay});
  TrainStepFunctions<Batch> fns;
  fns.loss = [&](const Batch& b, RandomStream dropout) {
    const auto l = model->loss_sum(model_input(b, model->device()), ForwardPass{true, false, dropout});
    return TokenLoss{l.sum, static_cast<long>(l.count)};
  };
  fns.label_tokens = [](const Batch& b) { return b.label_tokens(); };
  fns.optimizer_step = [&](double lr) { optimizer.step(lr); };
  fns.zero_grad = [&]() { optimizer.zero_grad(); };
  Trainer<Batch> trainer(args, model->lora_parameters(), fns, args.max_steps);
  const long steps_per_epoch = static_cast<long>(batches.size()) / args.gradient_accumulation_steps;
  const TrainResult result = trainer.train(
      [&](long) {
        auto next = std::make_shared<std::size_t>(0);
        return Trainer<Batch>::BatchSource([&, next]() -> std::optional<Batch> {
          if (*next >= batches.size()) return std::nullopt;
          return batches[(*next)++];
        });
      },
      {}, steps_per_epoch);

  const auto& want = g["steps"];
  REQUIRE(result.state.log_history.size() == want.size());
  double worst_loss = 0, worst_norm = 0;
  for (std::size_t s = 0; s < want.size(); ++s) {
    const auto& got = result.state.log_history[s];
    worst_loss = std::max(worst_loss, std::abs(got.at("loss") / want[s]["loss"].get<double>() - 1));
    worst_norm = std::max(worst_norm, std::abs(got.at("grad_norm") / want[s]["grad_norm"].get<double>() - 1));
  }
  MESSAGE("max relative difference over 10 steps: loss " << worst_loss << ", grad_norm " << worst_norm);
  CHECK(cpu::cpu_gemm_count(backend).calls > calls_before + 100);  // the run's GEMMs went to this backend
  for (std::size_t s = 0; s < want.size(); ++s) {
    const auto& got = result.state.log_history[s];
    CAPTURE(s + 1);
    INFO("loss " << got.at("loss") << " vs " << want[s]["loss"].get<double>() << ", grad_norm " << got.at("grad_norm")
                 << " vs " << want[s]["grad_norm"].get<double>());
    CHECK(got.at("loss") == doctest::Approx(want[s]["loss"].get<double>()).epsilon(tol.loss));
    CHECK(got.at("grad_norm") == doctest::Approx(want[s]["grad_norm"].get<double>()).epsilon(tol.grad_norm));
    CHECK(got.at("learning_rate") == doctest::Approx(want[s]["learning_rate"].get<double>()).epsilon(1e-6));
  }

  // The trained adapter reproduces PEFT's trained model, and saved + loaded by PEFT's names it is the same adapter.
  const auto& fl = g["final_logits"];
  for (std::size_t i = 0; i < fl["sequences"].size(); ++i) {
    const auto logits =
        model->logits(model_input(fl["sequences"][i].get<std::vector<std::int32_t>>(), model->device()));
    const double err = max_relative(logits, fl["logits"][i]);
    INFO("final logits of sequence " << i << ": max relative error " << err);
    CHECK(err < tol.logits);
  }
  if (!reference) {
    std::filesystem::remove_all(args.output_dir);
    return;
  }
  const auto saved = std::filesystem::path(args.output_dir) / "adapter";
  model->save_adapter(saved, "tests/data/gemma3_model/tiny");
  const auto reloaded = test::open_tiny(options);
  reloaded->load_adapter(saved);
  const auto ids = fl["sequences"][0].get<std::vector<std::int32_t>>();
  CHECK(reloaded->logits(model_input(ids)).to_vector() == model->logits(model_input(ids)).to_vector());
  // For the compat checks (tests/compat/peft_load.py, merged_load.py): our adapter and the logits it gives.
  if (const char* compat = std::getenv("QLORA_COMPAT_DIR")) {
    const std::filesystem::path dir(compat);
    model->save_adapter(dir / "adapter", kTiny.string());
    nlohmann::json out{{"sequences", fl["sequences"]}, {"logits", nlohmann::json::array()}};
    for (const auto& seq : fl["sequences"]) {
      const auto l = model->logits(model_input(seq.get<std::vector<std::int32_t>>()));
      nlohmann::json rows = nlohmann::json::array();
      for (index_t t = 0; t < l.size(0); ++t) {
        std::vector<float> row(l.data() + t * l.size(1), l.data() + (t + 1) * l.size(1));
        rows.push_back(row);
      }
      out["logits"].push_back(rows);
    }
    std::ofstream(dir / "logits.json") << out.dump();
    MESSAGE("wrote the adapter and its logits to " << dir.string());
  }
  std::filesystem::remove_all(args.output_dir);
}

TEST_SUITE("train") {
  TEST_CASE("a 10-step LoRA run of the tiny Gemma 3 gives transformers + PEFT's loss curve") {
    check_lora_parity(CpuGemm::eigen, {1e-4, 1e-4, 1e-4}, true);
  }

  TEST_CASE("the same run with oneDNN's fp32 GEMM, and with bf16 GEMM operands where the CPU has bf16 units") {
    if (!cpu_gemm_available(CpuGemm::onednn)) {
      MESSAGE("skipped: this build has no oneDNN (apt-get install libdnnl-dev)");
      return;
    }
    check_lora_parity(CpuGemm::onednn, {1e-4, 1e-4, 1e-4}, false);
    if (!cpu_gemm_available(CpuGemm::onednn_bf16)) {
      MESSAGE("bf16 run skipped: this CPU has no bf16 units (AVX512-BF16 or AMX)");
      return;
    }
    check_lora_parity(CpuGemm::onednn_bf16, {1e-2, 5e-2, 5e-2}, false);
  }

  TEST_CASE("PEFT's trained adapter loaded into the tiny model gives PEFT's logits") {
    const nlohmann::json g = train_golden();
    const Gemma3Options options =
        test::lora_options(4, all_linear_targets(), g["hyperparameters"]["lora_alpha"].get<double>());
    const auto model = test::open_tiny(options);
    model->load_adapter(kData / "gemma3_train" / "final_adapter");
    const auto& fl = g["final_logits"];
    for (std::size_t i = 0; i < fl["sequences"].size(); ++i) {
      const double err = max_relative(model->logits(model_input(fl["sequences"][i].get<std::vector<std::int32_t>>())),
                                      fl["logits"][i]);
      INFO("sequence " << i << ": max relative error " << err);
      CHECK(err < 1e-5);
    }
  }

  TEST_CASE("an adapter of another rank or other targets is refused, naming what differs") {
    const auto qv = test::open_tiny(test::lora_options(4, q_v_targets()));
    CHECK_THROWS_WITH_AS(qv->load_adapter(kData / "gemma3_train" / "initial_adapter"),
                         doctest::Contains("adapts a module the model has no adapter on (its target_modules: "
                                           "q_proj,v_proj)"),
                         qlora::Error);
    const auto r8 = test::open_tiny(test::lora_options(8, all_linear_targets()));
    CHECK_THROWS_WITH_AS(r8->load_adapter(kData / "gemma3_train" / "initial_adapter"),
                         doctest::Contains("lora_A.weight has shape [4, 32], the model needs [8, 32]"), qlora::Error);
    const auto all = test::open_tiny(test::lora_options(4, all_linear_targets()));
    peft::Adapter partial = peft::load_adapter(kData / "gemma3_train" / "initial_adapter");
    partial.config.target_modules = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj"};
    std::erase_if(partial.tensors, [](const peft::AdapterTensor& t) { return t.name.find("down_proj") != std::string::npos; });
    CHECK_THROWS_WITH_AS(all->load_adapter(partial, "partial"),
                         doctest::Contains("down_proj.lora_A.weight is missing (the adapter does not target this module"),
                         qlora::Error);
  }
}
