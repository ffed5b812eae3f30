// The Gemma 3 model assembly against transformers: the tiny random Gemma 3 that transformers saved (safetensors) must
// give transformers' fp32 logits; the real Gemma 3 270M GGUF must give the logits transformers computes from the
// same GGUF (QLORA_MODEL); packing rows equals running them one by one; the block and the model loss pass fp64
// gradchecks for every LoRA matrix; checkpointing keeps the gradients; broken checkpoints give named errors.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "support/check.hpp"
#include "support/lora.hpp"
#include "support/models.hpp"

#include <qlora/nn/model.hpp>

using namespace qlora;
using test::kData;
using test::kTiny;
using test::logits_relative_error;
using test::read_json;

namespace {

std::vector<std::int32_t> ids_of(const nlohmann::json& j) { return j.get<std::vector<std::int32_t>>(); }

// The all-linear rank-2 adapter most tests use.
const Gemma3Options kTinyAll = test::lora_options(2, all_linear_targets());

// B is zero at initialisation, which would hide A's gradient: fill every B with seeded values (fp64 models, whose
// matrices are not fp32 Parameters; test::randomise_lora_b does the same through lora_parameters()).
template <class Model>
void randomise_lora_b(const Model& m, std::uint64_t seed) {
  m.for_each_lora([&](index_t layer, Projection p, const auto& proj) {
    const auto& b = proj.lora_b().value();
    std::mt19937_64 rng(seed + static_cast<std::uint64_t>(layer * 8) + static_cast<std::uint64_t>(p));
    std::uniform_real_distribution<double> u(-0.5, 0.5);
    for (index_t i = 0; i < b.numel(); ++i) b.data()[i] = convert<typename std::remove_cvref_t<decltype(b)>::value_type>(u(rng));
  });
}

// A copy of the tiny checkpoint with `edit` applied to its tensor list (name -> float tensor), in a fresh folder.
std::filesystem::path edited_tiny(const std::string& tag,
                                  const std::function<void(std::map<std::string, Tensor<float, Dyn, Dyn>>&)>& edit) {
  const auto dir = std::filesystem::temp_directory_path() / ("qlora_tiny_" + tag);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::filesystem::copy_file(kTiny / "config.json", dir / "config.json");
  const SafetensorsFile f(kTiny / "model.safetensors");
  std::map<std::string, Tensor<float, Dyn, Dyn>> tensors;
  for (const auto& name : f.names()) {
    const auto& info = f.info(name);
    if (info.shape.size() == 2) tensors[name] = f.read<float, Dyn, Dyn>(name);
    else tensors[name] = f.read<float, Dyn>(name).reshape<Dyn, Dyn>(1, info.shape[0]);
  }
  edit(tensors);
  SafetensorsWriter w;
  for (const auto& [name, t] : tensors) {
    if (name.find("norm") != std::string::npos) w.add(name, t.reshape<Dyn>(t.numel()));
    else w.add(name, t);
  }
  w.write(dir / "model.safetensors");
  return dir;
}
}  // namespace

TEST_SUITE("nn") {
  TEST_CASE("the tiny Gemma 3 (fp32 weights) gives transformers' logits") {
    const auto golden = read_json(kData / "gemma3_model" / "tiny_logits.json");
    const auto model = test::open_tiny();
    for (std::size_t s = 0; s < golden["sequences"].size(); ++s) {
      const auto logits = model->logits(model_input(ids_of(golden["sequences"][s])));
      const double err = logits_relative_error(logits, golden["logits"][s]);
      INFO("sequence " << s << ": max relative error " << err);
      CHECK(err < 1e-5);
    }
  }

  TEST_CASE("an NF4 base (double quantization) stays close to transformers + bitsandbytes NF4") {
    const auto path = kData / "gemma3_model" / "tiny_nf4_logits.json";
    if (!std::filesystem::exists(path)) {
      MESSAGE("tests/data/gemma3_model/tiny_nf4_logits.json is missing (tests/golden/gemma3_nf4_logits.py): skipped");
      return;
    }
    const auto golden = read_json(path);
    const auto model = test::open_tiny({}, CausalLMWeights::nf4);
    for (std::size_t s = 0; s < golden["sequences"].size(); ++s) {
      const auto logits = model->logits(model_input(ids_of(golden["sequences"][s])));
      const double err = logits_relative_error(logits, golden["logits"][s]);
      INFO("sequence " << s << ": max relative error vs bitsandbytes NF4 " << err);
      CHECK(err < 1e-5);
    }
  }

  TEST_CASE("dense weights holding the NF4 values give the NF4 model's logits exactly (fast inference)") {
    const auto a = test::open_tiny({}, CausalLMWeights::nf4_dequantized);
    const auto b = test::open_tiny({}, CausalLMWeights::nf4);
    const std::vector<std::int32_t> ids = {2, 17, 200, 45, 45, 9, 120, 3, 77};
    CHECK(a->logits(model_input(ids)).to_vector() == b->logits(model_input(ids)).to_vector());
  }

  TEST_CASE("rows of a padded batch, and samples packed in one row, give the logits of each sequence alone") {
    const auto model = test::open_tiny();
    std::vector<Sample> samples(3);
    samples[0].input_ids = {2, 17, 200, 45, 45, 9, 120};
    samples[1].input_ids = {2, 5, 77};
    samples[2].input_ids = {2, 299, 1, 0, 150};
    for (auto& s : samples) s.labels = s.input_ids;
    std::vector<std::vector<std::size_t>> rows = {{0}, {1, 2}};  // row 1 packs two samples
    const Batch batch = make_batch(samples, rows, 0);
    const auto packed = model->logits(model_input(batch));
    auto expect_rows = [&](std::size_t sample, std::size_t row, std::size_t start) {
      const auto alone = model->logits(model_input(samples[sample].input_ids));
      for (index_t t = 0; t < alone.size(0); ++t)
        for (index_t v = 0; v < alone.size(1); ++v)
          REQUIRE(std::abs(alone(t, v) - packed(static_cast<index_t>(batch.at(row, start) + t), v)) < 1e-5);
    };
    expect_rows(0, 0, 0);
    expect_rows(1, 1, 0);
    expect_rows(2, 1, 3);
  }

  TEST_CASE("the model's loss sum equals the cross-entropy of its materialised logits") {
    const auto model = test::open_tiny(kTinyAll);
    test::randomise_lora_b(*model, 3);
    std::vector<Sample> samples(1);
    samples[0].input_ids = {2, 17, 200, 45, 45, 9, 120, 3, 77};
    samples[0].labels = {-100, -100, -100, 45, 45, 9, 120, 3, 77};
    const Batch batch = pad_batch(samples, 0);
    const ModelInput in = model_input(batch);
    const auto loss = model->loss_sum(in);
    const auto logits = model->logits(in);
    const auto labels = in.labels.to_vector();
    double want = 0;
    long count = 0;
    for (index_t t = 0; t < logits.size(0); ++t) {
      if (labels[static_cast<std::size_t>(t)] == kIgnoreIndex) continue;
      double mx = -1e30, s = 0;
      for (index_t v = 0; v < logits.size(1); ++v) mx = std::max(mx, static_cast<double>(logits(t, v)));
      for (index_t v = 0; v < logits.size(1); ++v) s += std::exp(logits(t, v) - mx);
      want += std::log(s) + mx - logits(t, labels[static_cast<std::size_t>(t)]);
      ++count;
    }
    CHECK(loss.count == 6);
    CHECK(count == 6);
    CHECK(loss.sum.value().item() == doctest::Approx(want).epsilon(1e-5));
  }

  TEST_CASE("a Gemma 3 block (local and global) passes gradcheck for x and every LoRA matrix") {
    const auto src = Gemma3WeightSource::open(kTiny);
    Gemma3Options options = test::lora_options(2, {"q_proj", "v_proj", "down_proj"}, 4);
    options.seed = 7;
    for (index_t layer : {index_t{0}, index_t{5}}) {
      CAPTURE(layer);
      const Gemma3Block<Gemma3Tiny, double, double> block(src, layer, options);
      CHECK(block.global() == (layer == 5));
      CHECK(!block.k_proj().lora());
      block.for_each_projection([&](Projection p, const auto& proj) {
        if (const auto* lora = proj.lora()) {
          const auto& b = lora->lora_b().value();
          for (index_t i = 0; i < b.numel(); ++i) b.data()[i] = 0.05 * static_cast<double>((i * 7 + static_cast<int>(p)) % 11) - 0.25;
        }
      });
      const index_t n = 7;  // longer than the window (4): the local layer's window matters
      auto x = Variable<double, Dyn, Dim<32>>::leaf(test::random_tensor<Tensor<double, Dyn, Dim<32>>>(5, -1, 1, n));
      const auto positions = Tensor<std::int32_t, Dyn>::from({0, 1, 2, 3, 4, 0, 1}, n);
      const auto segments = Tensor<std::int32_t, Dyn>::from({1, 1, 1, 1, 1, 2, 2}, n);
      const ForwardPass pass{};
      QLORA_CHECK_GRADIENTS([&](const auto& in, const auto&, const auto&, const auto&, const auto&, const auto&,
                                const auto&) { return block(in, positions, segments, pass); },
                            x, block.q_proj().lora()->lora_a(), block.q_proj().lora()->lora_b(),
                            block.v_proj().lora()->lora_a(), block.v_proj().lora()->lora_b(),
                            block.down_proj().lora()->lora_a(), block.down_proj().lora()->lora_b());
    }
  }

  TEST_CASE("the model's loss passes gradcheck for LoRA matrices of a local and the global layer, with dropout") {
    const Gemma3<Gemma3Tiny, double, double> model(Gemma3WeightSource::open(kTiny),
                                                   test::lora_options(2, q_v_targets(), 4, 0.2));
    randomise_lora_b(model, 11);
    std::vector<Sample> samples(2);
    samples[0].input_ids = {2, 17, 200, 45, 45, 9};
    samples[0].labels = {-100, -100, 200, 45, 45, 9};
    samples[1].input_ids = {2, 5, 77, 8};
    samples[1].labels = {-100, 5, 77, 8};
    const ModelInput in = model_input(pad_batch(samples, 0));
    const ForwardPass pass{true, false, RandomStream{9, 3}};
    const auto& b1 = model.blocks()[1];
    const auto& b5 = model.blocks()[5];
    QLORA_CHECK_GRADIENTS([&](const auto&, const auto&, const auto&, const auto&) { return model.loss_sum(in, pass).sum; },
                          b1.q_proj().lora()->lora_a(), b1.v_proj().lora()->lora_b(), b5.q_proj().lora()->lora_b(),
                          b5.v_proj().lora()->lora_a());
  }

  TEST_CASE("gradient checkpointing gives the same loss and gradients") {
    const auto model = test::open_tiny(kTinyAll);
    test::randomise_lora_b(*model, 5);
    std::vector<Sample> samples(1);
    samples[0].input_ids = {2, 17, 200, 45, 45, 9, 120, 3, 77, 250, 11};
    samples[0].labels = samples[0].input_ids;
    const ModelInput in = model_input(pad_batch(samples, 0));
    const ParameterList params = model->lora_parameters();
    CHECK(params.size() == 6 * 7 * 2);
    std::vector<std::vector<float>> grads[2];
    float losses[2];
    for (int pass_kind = 0; pass_kind < 2; ++pass_kind) {
      for (const auto& p : params) p.zero_grad();
      const auto loss = model->loss_sum(in, ForwardPass{false, pass_kind == 1, {}});
      losses[pass_kind] = loss.sum.value().item();
      backward(loss.sum);
      for (const auto& p : params) grads[pass_kind].push_back(p.grad().to_vector());
    }
    CHECK(losses[0] == losses[1]);
    for (std::size_t i = 0; i < params.size(); ++i) {
      CAPTURE(params[i].name());
      CHECK(grads[0][i] == grads[1][i]);
    }
  }

  TEST_CASE("PEFT's parameter names and the trainable count of an all-linear adapter") {
    const auto model = test::open_tiny(kTinyAll, CausalLMWeights::nf4);
    const ParameterList params = model->lora_parameters();
    CHECK(params.front().name() == "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
    CHECK(params.back().name() == "base_model.model.model.layers.5.mlp.down_proj.lora_B.weight");
    // per layer: r · (in + out) for q (32 -> 32), k, v (32 -> 16), o (32 -> 32), gate, up (32 -> 64), down (64 -> 32)
    const index_t per_layer = 2 * ((32 + 32) + 2 * (32 + 16) + (32 + 32) + 2 * (32 + 64) + (64 + 32));
    CHECK(model->trainable_parameter_count() == 6 * per_layer);
  }

  TEST_CASE("the run-time-shaped model (every extent Dyn) gives the static model's loss, logits and gradients") {
    const auto src = Gemma3WeightSource::open(kTiny);
    const Gemma3<Gemma3Tiny, float, float> fixed(src, kTinyAll);
    const auto any_model = open_causal_lm(src, kTinyAll, CausalLMWeights::fp32);  // qlora::models' Gemma3AnySize
    const CausalLM& any = *any_model;
    CHECK(any.name() == "gemma-3-tiny");  // a known shape is named as such whichever model type holds it
    CHECK(any.layers() == 6);
    CHECK(any.vocab() == src.config().vocab);
    test::randomise_lora_b(fixed.lora_parameters(), 21);
    test::randomise_lora_b(any.lora_parameters(), 21);
    std::vector<Sample> samples(1);
    samples[0].input_ids = {2, 17, 200, 45, 45, 9, 120, 3, 77};
    samples[0].labels = samples[0].input_ids;
    const ModelInput in = model_input(pad_batch(samples, 0));
    const ForwardPass pass{true, false, RandomStream{5, 1}};
    const auto a = fixed.loss_sum(in, pass);
    const auto b = any.loss_sum(in, pass);
    CHECK(a.sum.value().item() == b.sum.value().item());
    backward(a.sum);
    backward(b.sum);
    const ParameterList pa = fixed.lora_parameters(), pb = any.lora_parameters();
    REQUIRE(pa.size() == pb.size());
    for (std::size_t i = 0; i < pa.size(); ++i) {
      CAPTURE(pa[i].name());
      CHECK(pa[i].name() == pb[i].name());
      CHECK(pa[i].grad().to_vector() == pb[i].grad().to_vector());
    }
    NoGrad no_grad;
    CHECK(fixed.logits(model_input(samples[0].input_ids)).to_vector() ==
          any.logits(model_input(samples[0].input_ids)).to_vector());
  }

  TEST_CASE("a Gemma 3 of no published shape builds, trains and names itself by its extents") {
    Gemma3RuntimeConfig c = runtime_config_of<Gemma3Tiny>();
    c.hidden = 48;
    c.layers = 7;
    c.heads = 6;
    c.kv_heads = 3;
    c.head_dim = 4;
    c.intermediate = 40;
    const auto src = Gemma3WeightSource::random(c, 3, "odd");
    const auto model = open_causal_lm(src, test::lora_options(3, {"q_proj", "down_proj"}), CausalLMWeights::nf4);
    CHECK(model->name() == "gemma-3 (hidden 48, 7 layers)");
    CHECK(model->layers() == 7);
    const ParameterList params = model->lora_parameters();
    CHECK(params.size() == 7 * 2 * 2);
    CHECK(test::find_parameter(params, "layers.6.self_attn.q_proj.lora_A")->numel() == 3 * 48);  // [3, 48]
    std::vector<Sample> samples(1);
    samples[0].input_ids = {2, 17, 200, 45, 45, 9};
    samples[0].labels = samples[0].input_ids;
    const auto loss = model->loss_sum(model_input(pad_batch(samples, 0)), ForwardPass{true, false, {}});
    CHECK(std::isfinite(loss.sum.value().item()));
    backward(loss.sum);
    CHECK(params.front().grad().defined());
  }

  TEST_CASE("loading a checkpoint of another size names the fields that differ") {
    const auto src = Gemma3WeightSource::open(kTiny);
    CHECK_THROWS_WITH_AS(check_config<Gemma3_270M>(src.config(), src.path().string()),
                         doctest::Contains("does not describe gemma-3-270m: hidden_size 32 (expected 640)"),
                         qlora::Error);
  }

  TEST_CASE("a checkpoint with a missing tensor or a wrong shape gives an error naming the tensor") {
    const auto missing = edited_tiny("missing", [](auto& t) { t.erase("model.layers.3.mlp.up_proj.weight"); });
    CHECK_THROWS_WITH_AS(open_causal_lm(Gemma3WeightSource::open(missing), {}, CausalLMWeights::fp32),
                         doctest::Contains("layers.3.mlp.up_proj.weight"), qlora::Error);
    const auto wrong = edited_tiny("shape", [](auto& t) {
      t["model.layers.2.self_attn.k_proj.weight"] = Tensor<float, Dyn, Dyn>::zeros(8, 32);
    });
    CHECK_THROWS_WITH_AS(open_causal_lm(Gemma3WeightSource::open(wrong), {}, CausalLMWeights::fp32),
                         doctest::Contains("layers.2.self_attn.k_proj.weight has shape [8, 32], its configuration needs "
                                           "[16, 32]"),
                         qlora::Error);
    CHECK_THROWS_WITH_AS(open_causal_lm(Gemma3WeightSource::open(wrong), {}, CausalLMWeights::nf4),
                         doctest::Contains("layers.2.self_attn.k_proj.weight has shape [8, 32]"), qlora::Error);
    CHECK_THROWS_WITH_AS(Gemma3WeightSource::open(std::filesystem::temp_directory_path() / "qlora-no-such-model"),
                         doctest::Contains("no such file or folder"), qlora::Error);
    std::filesystem::remove_all(missing);
    std::filesystem::remove_all(wrong);
  }

  TEST_CASE("the real Gemma 3 270M GGUF (fp32 bases) gives the logits transformers computes from it (QLORA_MODEL)") {
    const char* path = std::getenv("QLORA_MODEL");
    if (!path || !std::filesystem::exists(path)) {
      MESSAGE("QLORA_MODEL is not set to the Gemma 3 270M GGUF (scripts/fetch-model): real-model parity skipped");
      return;
    }
    const auto golden = read_json(kData / "gemma3_model" / "real_logits.json");
    const auto model = open_causal_lm(Gemma3WeightSource::open(path), {}, CausalLMWeights::fp32);
    for (const auto& r : golden["records"]) {
      const auto logits = model->logits(model_input(ids_of(r["ids"])));
      const auto argmax = r["argmax"].get<std::vector<index_t>>();
      const index_t T = logits.size(0);
      int argmax_equal = 0;
      for (index_t t = 0; t < T; ++t) {
        index_t best = 0;
        for (index_t v = 1; v < logits.size(1); ++v)
          if (logits(t, v) > logits(t, best)) best = v;
        argmax_equal += best == argmax[static_cast<std::size_t>(t)];
      }
      const auto index = r["last_index"].get<std::vector<index_t>>();
      const auto values = r["last_logits"].get<std::vector<double>>();
      double worst = 0, scale = 0;
      for (std::size_t i = 0; i < index.size(); ++i) {
        worst = std::max(worst, std::abs(logits(T - 1, index[i]) - values[i]));
        scale = std::max(scale, std::abs(values[i]));
      }
      INFO(r["prompt"].get<std::string>() << ": last-position max relative error " << worst / scale << ", argmax equal at "
                                           << argmax_equal << "/" << T);
      CHECK(worst / scale < 1e-3);
      CHECK(argmax_equal == T);
    }
  }
}
