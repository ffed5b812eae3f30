// Merging: the merged checkpoint (base + s·B·A folded in) gives the logits of base + adapter — and those of PEFT's
// trained model — not the base's; bf16 merged checkpoints load; bad adapters are refused; a GGUF export of the real
// 270M reads back with the same logits (QLORA_MODEL).
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "support/models.hpp"

#include <qlora/nn/merge.hpp>

using namespace qlora;
using test::kData;
using test::kTiny;

namespace {
const std::vector<std::int32_t> kIds = {2, 17, 200, 45, 45, 9, 120, 3, 77};

double max_abs_diff(const Tensor<float, Dyn, Dyn>& a, const Tensor<float, Dyn, Dyn>& b) {
  REQUIRE(a.numel() == b.numel());
  double worst = 0;
  for (index_t i = 0; i < a.numel(); ++i) worst = std::max(worst, static_cast<double>(std::abs(a.data()[i] - b.data()[i])));
  return worst;
}
double max_abs(const Tensor<float, Dyn, Dyn>& a) {
  double m = 0;
  for (index_t i = 0; i < a.numel(); ++i) m = std::max(m, static_cast<double>(std::abs(a.data()[i])));
  return m;
}
}  // namespace

TEST_SUITE("nn") {
  TEST_CASE("a merged checkpoint gives the logits of base + adapter (and of PEFT's trained model), not the base's") {
    const auto src = Gemma3WeightSource::open(kTiny);
    const auto adapter_dir = kData / "gemma3_train" / "final_adapter";
    const peft::Adapter adapter = peft::load_adapter(adapter_dir);
    const auto dir = std::filesystem::temp_directory_path() / "qlora_merged_tiny";
    std::filesystem::remove_all(dir);
    save_merged_safetensors(src, &adapter, adapter_dir.string(), dir);
    CHECK(std::filesystem::exists(dir / "config.json"));

    Gemma3Options options;
    options.lora = LoraTargets(adapter.config);
    const auto with_adapter = open_causal_lm(src, options, CausalLMWeights::fp32);
    with_adapter->load_adapter(adapter, adapter_dir.string());
    const auto merged = open_causal_lm(Gemma3WeightSource::open(dir), {}, CausalLMWeights::fp32);
    const auto base = open_causal_lm(src, {}, CausalLMWeights::fp32);

    const auto want = with_adapter->logits(model_input(kIds));
    const auto got = merged->logits(model_input(kIds));
    const double err = max_abs_diff(got, want) / max_abs(want);
    const double base_diff = max_abs_diff(base->logits(model_input(kIds)), want) / max_abs(want);
    MESSAGE("merged vs base + adapter: max relative difference " << err << "; base vs base + adapter " << base_diff);
    CHECK(err < 1e-5);
    CHECK(base_diff > 1e-3);

    std::ifstream in(kData / "gemma3_train" / "train.json");
    const auto golden = nlohmann::json::parse(in)["final_logits"];
    const auto peft_ids = golden["sequences"][0].get<std::vector<std::int32_t>>();
    const auto ours = merged->logits(model_input(peft_ids));
    double worst = 0, scale = 0;
    for (index_t t = 0; t < ours.size(0); ++t)
      for (index_t v = 0; v < ours.size(1); ++v) {
        const double w = golden["logits"][0][t][v].get<double>();
        worst = std::max(worst, std::abs(ours(t, v) - w));
        scale = std::max(scale, std::abs(w));
      }
    INFO("merged vs transformers + PEFT: max relative difference " << worst / scale);
    CHECK(worst / scale < 1e-4);
    std::filesystem::remove_all(dir);
  }

  TEST_CASE("a bf16 merged checkpoint loads and stays within bf16 rounding of the fp32 one") {
    const auto src = Gemma3WeightSource::open(kTiny);
    const auto adapter_dir = kData / "gemma3_train" / "final_adapter";
    const peft::Adapter adapter = peft::load_adapter(adapter_dir);
    const auto dir = std::filesystem::temp_directory_path() / "qlora_merged_tiny_bf16";
    std::filesystem::remove_all(dir);
    save_merged_safetensors(src, &adapter, adapter_dir.string(), dir, MergedDtype::bfloat16);
    std::ifstream cfg(dir / "config.json");
    CHECK(nlohmann::json::parse(cfg)["torch_dtype"] == "bfloat16");
    CHECK(SafetensorsFile(dir / "model.safetensors").info("model.norm.weight").dtype == SafetensorsDtype::BF16);
    const auto merged = open_causal_lm(Gemma3WeightSource::open(dir), {}, CausalLMWeights::fp32);
    const auto logits = merged->logits(model_input(kIds));
    for (index_t i = 0; i < logits.numel(); ++i) REQUIRE(std::isfinite(logits.data()[i]));
    std::filesystem::remove_all(dir);
  }

  TEST_CASE("merging refuses adapter tensors for layers the model does not have, or without their partner") {
    const auto src = Gemma3WeightSource::open(kTiny);
    peft::Adapter bad;
    bad.config.r = 2;
    bad.tensors.push_back({"base_model.model.model.layers.9.self_attn.q_proj.lora_A.weight",
                           Tensor<float, Dyn, Dyn>::zeros(2, 32)});
    auto sink = [](const Gemma3TensorSpec&, const Tensor<float, Dyn, Dyn>&) {};
    CHECK_THROWS_WITH_AS(for_each_merged_tensor(src, &bad, "bad", MergeInto::original, sink),
                         doctest::Contains("is for layer 9 but the model has 6"), qlora::Error);
    bad.tensors[0].name = "base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight";
    CHECK_THROWS_WITH_AS(for_each_merged_tensor(src, &bad, "bad", MergeInto::original, sink),
                         doctest::Contains("layer 1 q_proj has only one of lora_A and lora_B"), qlora::Error);
    CHECK_THROWS_WITH_AS(save_merged_gguf(src, nullptr, "", std::filesystem::temp_directory_path() / "x.gguf",
                                          GgmlType::F16),
                         doctest::Contains("no tokenizer.model in the model folder"),
                         qlora::Error);
  }

  TEST_CASE("a GGUF export of the real 270M reads back with the same logits (QLORA_MODEL)") {
    const char* path = std::getenv("QLORA_MODEL");
    if (!path || !std::filesystem::exists(path)) {
      MESSAGE("QLORA_MODEL is not set to the Gemma 3 270M GGUF (scripts/fetch-model): GGUF export check skipped");
      return;
    }
    const auto src = Gemma3WeightSource::open(path);
    const auto out = std::filesystem::temp_directory_path() / "qlora_export_270m_f32.gguf";
    save_merged_gguf(src, nullptr, "", out, GgmlType::F32);
    const auto back = Gemma3WeightSource::open(out);
    CHECK(back.gguf()->get_string("tokenizer.ggml.model") == src.gguf()->get_string("tokenizer.ggml.model"));
    const std::vector<std::int32_t> ids = {2, 818, 5279, 529, 7001, 563};
    const auto a = open_causal_lm(src, {}, CausalLMWeights::fp32), b = open_causal_lm(back, {}, CausalLMWeights::fp32);
    const auto la = a->logits(model_input(ids)), lb = b->logits(model_input(ids));
    const double err = max_abs_diff(la, lb) / max_abs(la);
    MESSAGE("exported F32 GGUF vs original: max relative logit difference " << err);
    CHECK(err < 1e-5);
    std::filesystem::remove(out);
  }
}
