// Resuming is exact: a LoraLinear regression trained 8 steps (gradient accumulation 2, lora_dropout 0.1, 13
// shuffled micro-batches per epoch, so step 7 is a short last step and step 8 starts epoch 1) with a checkpoint every
// 2 steps (PEFT adapter folder + optimizer.safetensors + trainer_state.json) ends with the same adapter file, byte for
// byte, whether it ran through, was killed after a step, or was killed half-way through writing a checkpoint — and
// each resumed step saw the micro-batches (and dropout streams) of the uninterrupted run.
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <numeric>
#include <random>

#include "support/check.hpp"
#include "support/mirror_ranks.hpp"

#include <qlora/io/checkpoint.hpp>
#include <qlora/io/optimizer_state.hpp>
#include <qlora/io/peft.hpp>
#include <qlora/io/trainer_state.hpp>
#include <qlora/optim/adamw.hpp>
#include <qlora/train/trainer.hpp>

using namespace qlora;

namespace {
using Base = Tensor<float, Dim<8>, Dim<6>>;  // frozen W: [out 8, in 6]
using Layer = LoraLinear<float, Base>;

constexpr long kSteps = 8, kAccumulation = 2, kMicroBatches = 13;
constexpr long kStepsPerEpoch = (kMicroBatches + kAccumulation - 1) / kAccumulation;  // 7, the last one short

struct Batch {
  int id;
  Tensor<float, Dyn, Dim<6>> x;  // [rows, in]
  Tensor<float, Dyn, Dim<8>> y;  // [rows, out]
};

std::vector<Batch> make_data() {
  const auto target = test::random_tensor<Tensor<float, Dim<8>, Dim<6>>>(7, -1, 1);
  std::vector<Batch> data;
  for (int i = 0; i < kMicroBatches; ++i) {
    Batch b{i, test::random_tensor<Tensor<float, Dyn, Dim<6>>>(100 + static_cast<std::uint64_t>(i), -1, 1, 3),
            Tensor<float, Dyn, Dim<8>>::zeros(3)};
    for (index_t r = 0; r < 3; ++r)
      for (index_t o = 0; o < 8; ++o) {
        float acc = 0;
        for (index_t k = 0; k < 6; ++k) acc += b.x(r, k) * target(o, k);
        b.y(r, o) = acc;
      }
    data.push_back(std::move(b));
  }
  return data;
}

const std::string a_name = peft::tensor_name(0, Projection::q_proj, peft::LoraMatrix::A);
const std::string b_name = peft::tensor_name(0, Projection::q_proj, peft::LoraMatrix::B);

LoraConfig lora_config() {
  LoraConfig c;
  c.r = 2;
  c.lora_alpha = 4;
  c.lora_dropout = 0.1;
  c.target_modules = {"q_proj"};
  return c;
}

struct Kill {
  long after_step = -1;     // throw from on_step_end after this step
  long while_saving = -1;   // throw inside the checkpoint write of this step, after the adapter is written
};

// One "process": builds the model (from the latest checkpoint if there is one) and trains to step 8.
// `fed` records which batch each dropout-stream offset (step·G + micro-batch) was given.
void run(const std::filesystem::path& out, const std::vector<Batch>& data, Kill kill,
         std::map<std::uint64_t, int>& fed, dist::Communicator& comm = dist::single_process()) {
  const LoraSpec hyper{2, 4, 0.1, false};
  const Base base = test::random_tensor<Base>(3, -0.5, 0.5);
  CheckpointDirectory checkpoints(out);
  checkpoints.remove_partial();
  TrainerState state;
  std::optional<Layer> layer;
  const auto latest = checkpoints.latest();
  if (latest) {
    const peft::Adapter adapter = peft::load_adapter(*latest);
    REQUIRE(adapter.tensors.size() == 2);
    layer.emplace(base, hyper, adapter.tensors[0].value.as<Dim<2>, Dim<6>>(),
                  adapter.tensors[1].value.as<Dim<8>, Dim<2>>());
    state = load_trainer_state(*latest / "trainer_state.json");
  } else {
    layer.emplace(base, hyper, RandomStream{42, 1});
  }
  const ParameterList params{Parameter(a_name, layer->lora_a()), Parameter(b_name, layer->lora_b())};
  AdamW opt(params, AdamWConfig{0.9, 0.999, 1e-8, 0.01});
  if (latest) load_optimizer_state(opt, *latest / "optimizer.safetensors");

  TrainingArguments args;
  args.output_dir = out.string();
  args.gradient_accumulation_steps = kAccumulation;
  args.learning_rate = 0.05;
  args.warmup_steps = 2;
  args.lr_scheduler_type = "cosine";
  args.logging_steps = 1;
  args.save_steps = 2;
  args.save_total_limit = 3;
  args.report_to = {};
  args.seed = 1234;

  TrainStepFunctions<Batch> fns;
  fns.loss = [&](const Batch& b, RandomStream dropout) {
    fed[dropout.offset] = b.id;
    const auto pred = (*layer)(Variable<float, Dyn, Dim<6>>(b.x), dropout);
    const auto err = pred - Variable<float, Dyn, Dim<8>>(b.y);
    return TokenLoss{sum(err * err), b.x.size(0)};
  };
  fns.label_tokens = [](const Batch& b) { return static_cast<long>(b.x.size(0)); };
  fns.optimizer_step = [&](double lr) { opt.step(lr); };
  fns.zero_grad = [&] { opt.zero_grad(); };
  fns.save = [&](const TrainerState& s) {
    checkpoints.save(s.global_step, [&](const std::filesystem::path& folder) {
      peft::save_adapter(folder, lora_config(), "",
                         {{a_name, layer->lora_a().value()}, {b_name, layer->lora_b().value()}});
      if (s.global_step == kill.while_saving) throw std::runtime_error("killed while writing the checkpoint");
      save_optimizer_state(opt, folder / "optimizer.safetensors");
      save_trainer_state(s, folder / "trainer_state.json");
    }, args.save_total_limit);
  };
  fns.on_step_end = [&](const TrainerState& s) {
    if (s.global_step == kill.after_step) throw std::runtime_error("killed");
  };

  // epoch e: the micro-batches shuffled with seed + e
  const auto next_epoch = [&](long epoch) -> Trainer<Batch>::BatchSource {
    auto order = std::make_shared<std::vector<std::size_t>>(data.size());
    std::iota(order->begin(), order->end(), 0);
    std::mt19937_64 rng(args.seed + static_cast<std::uint64_t>(epoch));
    std::shuffle(order->begin(), order->end(), rng);
    auto next = std::make_shared<std::size_t>(0);
    return [&data, order, next]() -> std::optional<Batch> {
      if (*next >= order->size()) return std::nullopt;
      return data[(*order)[(*next)++]];
    };
  };
  Trainer<Batch> trainer(args, params, fns, kSteps, comm);
  trainer.train(next_epoch, state, kStepsPerEpoch);
}

std::string bytes_of(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  REQUIRE(in.good());
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::filesystem::path fresh_dir(const std::string& name) {
  const auto d = std::filesystem::temp_directory_path() / (name + std::to_string(::getpid()));
  std::filesystem::remove_all(d);
  return d;
}

bool has_partial(const std::filesystem::path& dir) {
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.path().filename().string().ends_with(".partial")) return true;
  return false;
}
}  // namespace

TEST_SUITE("train") {
  TEST_CASE("a run killed after a step or while saving, resumed from its latest checkpoint, ends bit-identical") {
    const auto data = make_data();
    const auto straight = fresh_dir("qlora_resume_straight");
    std::map<std::uint64_t, int> fed_straight;
    run(straight, data, {}, fed_straight);
    const std::string final_adapter = bytes_of(straight / "checkpoint-8" / "adapter_model.safetensors");
    const std::string final_optimizer = bytes_of(straight / "checkpoint-8" / "optimizer.safetensors");
    CHECK(fed_straight.size() == 15);  // 7 steps of epoch 0 (the 7th has one micro-batch), 1 of epoch 1
    CHECK_FALSE(fed_straight.count(6 * kAccumulation + 1));

    struct Case {
      const char* what;
      Kill kill;
      long resumed_from;
    };
    for (const Case c : {Case{"killed after step 5", {5, -1}, 4}, Case{"killed after step 7", {7, -1}, 6},
                         Case{"killed while writing checkpoint-6", {-1, 6}, 4}}) {
      INFO(c.what);
      const auto dir = fresh_dir("qlora_resume_killed");
      std::map<std::uint64_t, int> fed;
      CHECK_THROWS(run(dir, data, c.kill, fed));
      CHECK_FALSE(has_partial(dir));
      CHECK_FALSE(std::filesystem::exists(dir / ("checkpoint-" + std::to_string(c.resumed_from + 2))));
      REQUIRE(CheckpointDirectory(dir).latest() == dir / ("checkpoint-" + std::to_string(c.resumed_from)));
      const TrainerState saved = load_trainer_state(dir / ("checkpoint-" + std::to_string(c.resumed_from)) /
                                                    "trainer_state.json");
      CHECK(saved.global_step == c.resumed_from);
      CHECK(saved.data_position == DataPosition{0, c.resumed_from * kAccumulation});

      std::map<std::uint64_t, int> fed_resumed;
      run(dir, data, {}, fed_resumed);
      CHECK(fed_resumed.begin()->first == static_cast<std::uint64_t>(c.resumed_from * kAccumulation));
      for (const auto& [offset, id] : fed_resumed) CHECK(fed_straight.at(offset) == id);
      CHECK((bytes_of(dir / "checkpoint-8" / "adapter_model.safetensors") == final_adapter));  // (( )): no byte dump
      CHECK((bytes_of(dir / "checkpoint-8" / "optimizer.safetensors") == final_optimizer));
      CHECK_FALSE(has_partial(dir));
      std::filesystem::remove_all(dir);
    }
    std::filesystem::remove_all(straight);
  }

  TEST_CASE("data parallel: a rank whose peers hold the same data ends with the single process's adapter, bit for bit") {
    // With 2 ranks that each ran these micro-batches, the step's label-token count, loss and gradients are summed:
    // the loss is scaled by 1 / (2N) and the sum doubles it back, exactly (powers of two), so the update is the
    // single process's. A trainer that forgot to sum any of them would end elsewhere.
    const auto data = make_data();
    std::map<std::uint64_t, int> fed;
    const auto single = fresh_dir("qlora-dp-single-"), mirrored = fresh_dir("qlora-dp-mirror-");
    run(single, data, {}, fed);
    test::MirrorRanks two(2);
    run(mirrored, data, {}, fed, two);
    CHECK(bytes_of(single / "checkpoint-8" / "adapter_model.safetensors") ==
          bytes_of(mirrored / "checkpoint-8" / "adapter_model.safetensors"));
    CHECK(bytes_of(single / "metrics.jsonl").size() > 0);
    for (const char* name : {"label tokens of step 1", "loss of step 1", "gradients of step 1", "gradients of step 8"})
      CHECK(std::find(two.names.begin(), two.names.end(), name) != two.names.end());
    CHECK(load_trainer_state(mirrored / "checkpoint-8" / "trainer_state.json").global_train_batch_size == 2 * 8);
    std::filesystem::remove_all(single);
    std::filesystem::remove_all(mirrored);
  }

  TEST_CASE("a state without a data position resumes from global_step and steps_per_epoch") {
    // (k mod steps_per_epoch) · G micro-batches of epoch k / steps_per_epoch are skipped, as for an HF checkpoint
    const auto data = make_data();
    const auto straight = fresh_dir("qlora_resume_rule_straight");
    std::map<std::uint64_t, int> fed;
    run(straight, data, {}, fed);
    for (const auto& [step, folder] : CheckpointDirectory(straight).list()) {
      const TrainerState s = load_trainer_state(folder / "trainer_state.json");
      REQUIRE(s.data_position.has_value());
      const long k = s.global_step;
      if (k % kStepsPerEpoch != 0)  // at an epoch's end the position is (e, all used), the rule says (e + 1, 0)
        CHECK(*s.data_position == DataPosition{k / kStepsPerEpoch, k % kStepsPerEpoch * kAccumulation});
      CHECK(s.seed == 1234);
      CHECK(s.max_steps == kSteps);
      CHECK(s.epoch == doctest::Approx(static_cast<double>(k) / kStepsPerEpoch));
    }

    const auto dir = fresh_dir("qlora_resume_rule");
    CHECK_THROWS(run(dir, data, {5, -1}, fed));
    const auto state_file = dir / "checkpoint-4" / "trainer_state.json";
    TrainerState s = load_trainer_state(state_file);
    s.data_position.reset();
    save_trainer_state(s, state_file);
    std::map<std::uint64_t, int> fed_resumed;
    run(dir, data, {}, fed_resumed);
    CHECK((bytes_of(dir / "checkpoint-8" / "adapter_model.safetensors") ==
           bytes_of(straight / "checkpoint-8" / "adapter_model.safetensors")));
    std::filesystem::remove_all(dir);
    std::filesystem::remove_all(straight);
  }
}
