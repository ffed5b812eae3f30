// LoRA targets as run-time values: PEFT's target_modules / rank_pattern / alpha_pattern resolved per module, checked
// against a real PEFT adapter with per-module ranks (tests/golden/peft_rank_pattern.py): the ranks and scalings PEFT
// built, its logits with the adapter loaded into our model, the merged model's logits, a save/load round trip that
// keeps the patterns, training through the headers, and the errors for bad input.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "support/lora.hpp"
#include "support/models.hpp"
#include <qlora/nn/merge.hpp>
#include <qlora/optim/adamw.hpp>

using namespace qlora;
using test::kData;
using test::kTiny;

namespace {
const std::filesystem::path kPattern = kData / "peft_rank_pattern";

nlohmann::json expected() {
  std::ifstream in(kPattern / "expected.json");
  REQUIRE_MESSAGE(in.good(), "tests/data/peft_rank_pattern/expected.json is missing (tests/golden/peft_rank_pattern.py)");
  return nlohmann::json::parse(in);
}

double max_relative(const Tensor<float, Dyn, Dyn>& got, const nlohmann::json& want) {
  double worst = 0, scale = 0;
  for (index_t t = 0; t < got.size(0); ++t)
    for (index_t v = 0; v < got.size(1); ++v) {
      const double w = want[static_cast<std::size_t>(t)][static_cast<std::size_t>(v)].get<double>();
      worst = std::max(worst, std::abs(got(t, v) - w));
      scale = std::max(scale, std::abs(w));
    }
  return worst / scale;
}

LoraConfig with_patterns(LoraConfig c, std::vector<std::pair<std::string, long>> ranks,
                         std::vector<std::pair<std::string, double>> alphas = {}) {
  c.rank_pattern = std::move(ranks);
  c.alpha_pattern = std::move(alphas);
  return c;
}
}  // namespace

TEST_SUITE("nn") {
  TEST_CASE("target_modules match a module by its name or a dotted tail of it, as PEFT matches them") {
    const LoraTargets t(test::lora_config(4, {"q_proj", "mlp.down_proj", "model.layers.2.self_attn.k_proj"}));
    CHECK(t.at(0, Projection::q_proj));
    CHECK(t.at(5, Projection::down_proj));
    CHECK(t.at(2, Projection::k_proj));
    CHECK_FALSE(t.at(3, Projection::k_proj));
    CHECK_FALSE(t.at(0, Projection::v_proj));
    CHECK_FALSE(LoraTargets(test::lora_config(4, {"proj.q_proj"})).at(0, Projection::q_proj));  // not a dotted tail
    CHECK(LoraTargets().empty());
    CHECK_FALSE(LoraTargets().at(0, Projection::q_proj));
    const LoraTargets all(test::lora_config(2, {"all-linear"}));
    for (Projection p : all_projections) CHECK(all.at(4, p));
    CHECK(all.config().target_modules.size() == 7);
  }

  TEST_CASE("rank_pattern and alpha_pattern: the first key whose (.*\\.)?(key)$ matches the module wins") {
    const LoraTargets t(with_patterns(test::lora_config(8, all_linear_targets(), 16),
                                      {{"layers\\.1\\..*", 2}, {"q_proj", 4}, {"layers.3.self_attn.q_proj", 32}},
                                      {{"mlp\\.(up|gate)_proj", 64}}));
    CHECK(t.at(0, Projection::k_proj)->rank == 8);
    CHECK(t.at(0, Projection::q_proj)->rank == 4);
    CHECK(t.at(1, Projection::q_proj)->rank == 2);  // listed first
    CHECK(t.at(3, Projection::q_proj)->rank == 4);  // "q_proj" comes before the layer-3 key
    CHECK(t.at(2, Projection::up_proj)->alpha == 64);
    CHECK(t.at(2, Projection::up_proj)->scaling() == 8.0);
    CHECK(t.at(2, Projection::down_proj)->alpha == 16);
    // a key matches whole dotted parts only: "proj" is not "q_proj"'s tail after a dot
    CHECK(LoraTargets(with_patterns(test::lora_config(8, q_v_targets()), {{"proj", 1}})).at(0, Projection::q_proj)->rank == 8);
  }

  TEST_CASE("PEFT's adapter with rank_pattern and alpha_pattern: the same ranks and scalings on every module") {
    const nlohmann::json want = expected();
    const peft::Adapter adapter = peft::load_adapter(kPattern / "adapter");
    CHECK(adapter.config.rank_pattern.size() == 3);
    CHECK(adapter.config.alpha_pattern.size() == 2);
    const LoraTargets targets(adapter.config);
    std::size_t adapted = 0;
    for (index_t layer = 0; layer < Gemma3Tiny::layers; ++layer)
      for (Projection p : all_projections) {
        const std::string module = projection_module_name(layer, p);
        CAPTURE(module);
        const auto spec = targets.at(layer, p);
        REQUIRE(spec.has_value() == want["ranks"].contains(module));
        if (!spec) continue;
        ++adapted;
        CHECK(spec->rank == want["ranks"][module].get<index_t>());
        CHECK(spec->scaling() == doctest::Approx(want["scalings"][module].get<double>()).epsilon(1e-12));
      }
    CHECK(adapted == want["ranks"].size());
  }

  TEST_CASE("PEFT's per-module-rank adapter in our model gives PEFT's logits, and so does the merged model") {
    const nlohmann::json want = expected();
    const peft::Adapter adapter = peft::load_adapter(kPattern / "adapter");
    const auto src = Gemma3WeightSource::open(kTiny);
    Gemma3Options options;
    options.lora = LoraTargets(adapter.config);
    const auto model = open_causal_lm(src, options, CausalLMWeights::fp32);
    model->load_adapter(adapter, (kPattern / "adapter").string());
    const ParameterList params = model->lora_parameters();
    // A is [r, in]: q_proj and v_proj read 32 features, down_proj 64
    CHECK(test::find_parameter(params, "layers.0.self_attn.q_proj.lora_A")->numel() == 2 * 32);
    CHECK(test::find_parameter(params, "layers.5.self_attn.v_proj.lora_A")->numel() == 1 * 32);
    CHECK(test::find_parameter(params, "layers.3.mlp.down_proj.lora_A")->numel() == 6 * 64);
    CHECK_FALSE(test::find_parameter(params, "layers.3.self_attn.k_proj.lora_A"));
    const auto ids = want["sequence"].get<std::vector<std::int32_t>>();
    const double err = max_relative(model->logits(model_input(ids)), want["logits"]);
    INFO("max relative error against PEFT: " << err);
    CHECK(err < 1e-5);
    CHECK(max_relative(model->logits(model_input(ids)), want["base_logits"]) > 1e-3);  // the adapter matters

    const auto dir = std::filesystem::temp_directory_path() / "qlora_merged_rank_pattern";
    std::filesystem::remove_all(dir);
    save_merged_safetensors(src, &adapter, (kPattern / "adapter").string(), dir);
    const auto merged = open_causal_lm(Gemma3WeightSource::open(dir), {}, CausalLMWeights::fp32);
    const double merged_err = max_relative(merged->logits(model_input(ids)), want["logits"]);
    INFO("merged: max relative error against PEFT: " << merged_err);
    CHECK(merged_err < 1e-5);
    std::filesystem::remove_all(dir);
  }

  TEST_CASE("an adapter saved with per-module ranks loads back with its patterns and its weights") {
    const peft::Adapter adapter = peft::load_adapter(kPattern / "adapter");
    Gemma3Options options;
    options.lora = LoraTargets(adapter.config);
    const auto model = test::open_tiny(options);
    model->load_adapter(adapter, "golden");
    const auto dir = std::filesystem::temp_directory_path() / "qlora_rank_pattern_roundtrip";
    std::filesystem::remove_all(dir);
    model->save_adapter(dir, "tiny");
    const peft::Adapter back = peft::load_adapter(dir);
    CHECK(back.config.rank_pattern == adapter.config.rank_pattern);
    CHECK(back.config.alpha_pattern == adapter.config.alpha_pattern);
    CHECK(back.tensors.size() == adapter.tensors.size());
    std::map<std::string, const Tensor<float, Dyn, Dyn>*> original;
    for (const auto& t : adapter.tensors) original[t.name] = &t.value;
    for (const auto& t : back.tensors) {
      CAPTURE(t.name);
      REQUIRE(original.count(t.name) == 1);
      CHECK(t.value.to_vector() == original[t.name]->to_vector());
    }
    std::filesystem::remove_all(dir);
  }

  TEST_CASE("training through the headers with per-module ranks lowers the loss and leaves untargeted modules alone") {
    LoraConfig c = with_patterns(test::lora_config(3, {"q_proj", "up_proj", "down_proj"}, 6),
                                 {{"up_proj", 1}, {"layers.2.mlp.down_proj", 7}});
    Gemma3Options options;
    options.lora = LoraTargets(c);
    const auto model = test::open_tiny(options, CausalLMWeights::nf4);
    const ParameterList params = model->lora_parameters();
    CHECK(params.size() == 6 * 3 * 2);
    CHECK(test::find_parameter(params, "layers.2.mlp.down_proj.lora_A")->numel() == 7 * 64);  // [7, 64]
    CHECK(test::find_parameter(params, "layers.2.mlp.up_proj.lora_B")->numel() == 64 * 1);    // [64, 1]
    CHECK(model->trainable_parameter_count() == 6 * (3 * (32 + 32) + 1 * (32 + 64) + 3 * (64 + 32)) + (7 - 3) * (64 + 32));
    AdamW opt(params, AdamWConfig{});
    const std::vector<std::int32_t> ids = {2, 17, 200, 45, 45, 9, 120, 3, 77};
    std::vector<Sample> samples(1);
    samples[0].input_ids = ids;
    samples[0].labels = ids;
    const ModelInput in = model_input(pad_batch(samples, 0));
    float first = 0, last = 0;
    for (int step = 0; step < 8; ++step) {
      const auto loss = model->loss_sum(in, ForwardPass{true, false, RandomStream{1, static_cast<std::uint64_t>(step)}});
      (step == 0 ? first : last) = loss.sum.value().item();
      backward(loss.sum);
      opt.step(1e-2);
      opt.zero_grad();
    }
    CHECK(last < first);
    // For compat.peft_loads_our_rank_pattern_adapter: PEFT reads this adapter and must compute these logits.
    if (const char* compat = std::getenv("QLORA_COMPAT_DIR")) {
      NoGrad no_grad;
      const auto exact = test::open_tiny(options, CausalLMWeights::fp32);  // PEFT's fp32 base
      const auto dir = std::filesystem::path(compat);
      model->save_adapter(dir / "adapter", kTiny.string());
      exact->load_adapter(dir / "adapter");
      const auto l = exact->logits(model_input(ids));
      nlohmann::json rows = nlohmann::json::array();
      for (index_t t = 0; t < l.size(0); ++t) rows.push_back(std::vector<float>(l.data() + t * l.size(1), l.data() + (t + 1) * l.size(1)));
      std::ofstream(dir / "logits.json") << nlohmann::json{{"sequences", {ids}}, {"logits", {rows}}}.dump();
      MESSAGE("wrote the per-module-rank adapter and its logits to " << dir.string());
    }
  }

  TEST_CASE("bad LoRA settings are errors that name the option") {
    CHECK_THROWS_WITH_AS(LoraTargets(test::lora_config(0, q_v_targets())), doctest::Contains("lora r must be >= 1, got 0"),
                         Error);
    CHECK_THROWS_WITH_AS(LoraTargets(test::lora_config(4, {"q_porj"})),
                         doctest::Contains("option 'target_modules' is 'q_porj'"), Error);
    CHECK_THROWS_WITH_AS(LoraTargets(with_patterns(test::lora_config(4, q_v_targets()), {{"q_proj", 0}})),
                         doctest::Contains("rank_pattern 'q_proj': r must be >= 1, got 0"), Error);
    CHECK_THROWS_WITH_AS(LoraTargets(with_patterns(test::lora_config(4, q_v_targets()), {{"layers.(0", 2}})),
                         doctest::Contains("rank_pattern key 'layers.(0' is not a valid regular expression"), Error);
    CHECK_THROWS_WITH_AS(LoraTargets(with_patterns(test::lora_config(4, q_v_targets()), {}, {{"v_proj", NAN}})),
                         doctest::Contains("alpha_pattern 'v_proj': lora_alpha must be a finite number"), Error);
    CHECK_THROWS_WITH_AS(LoraTargets(test::lora_config(4, {"all-linear", "q_proj"})),
                         doctest::Contains("all-linear must be given alone"), Error);
    Gemma3Options nowhere;
    nowhere.lora = LoraTargets(test::lora_config(4, {"model.layers.9.self_attn.q_proj"}));
    CHECK_THROWS_WITH_AS(test::open_tiny(nowhere), doctest::Contains("match no projection of gemma-3-tiny"), Error);
  }

  TEST_CASE("an adapter file whose tensors disagree with its own rank_pattern is refused, naming the tensor") {
    peft::Adapter adapter = peft::load_adapter(kPattern / "adapter");
    adapter.config.rank_pattern.clear();  // now every module should have r = 4
    CHECK_THROWS_WITH_AS(peft::check_tensors(adapter, "edited"),
                         doctest::Contains("where the config (r) says 4"), Error);
    adapter = peft::load_adapter(kPattern / "adapter");
    adapter.config.target_modules = {"q_proj", "v_proj", "o_proj"};
    CHECK_THROWS_WITH_AS(peft::check_tensors(adapter, "edited"),
                         doctest::Contains("down_proj.lora_A.weight is for a module the adapter's target_modules do not name"),
                         Error);
  }
}
