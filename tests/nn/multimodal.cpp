// The Gemma 3 family as people download it: a tiny random Gemma3ForConditionalGeneration with the 4B's structure
// (RoPE linear scaling 8 on the global layers, every 6th layer global, QK-norm, GQA 2:1, a SigLIP vision tower and
// projector beside the text model) that transformers 5 saved in its layout (hf5/: sharded, model.language_model.*),
// in Google's published layout (google/: language_model.model.*, vision_tower.vision_model.*, transformers-4 config),
// and its text model alone as Gemma3ForCausalLM (text/) — tests/golden/gemma3_multimodal.py, tests/data/gemma3_mm/.
// Checked here against transformers and PEFT: logits, adapter keys both ways (vision-tower entries included), merge
// into the original and the NF4 weights, merged folders in the source's layout, GGUF export of the text model.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/check.hpp"
#include "support/models.hpp"

#include <qlora/io/hf_folder.hpp>
#include <qlora/nn/merge.hpp>

using namespace qlora;
using test::kData;

namespace {

const std::filesystem::path kMm = kData / "gemma3_mm";

// max |a - b| over two logit matrices of one shape (test::compare's worst element).
double mm_max_difference(const Tensor<float, Dyn, Dyn>& a, const Tensor<float, Dyn, Dyn>& b) {
  REQUIRE(a.shape() == b.shape());
  return test::compare(a, b, 0, 0).max_abs;
}

std::vector<std::vector<std::int32_t>> mm_sequences() {
  return test::read_json(kMm / "logits.json")["sequences"].get<std::vector<std::vector<std::int32_t>>>();
}

// Names and shapes of an adapter_model.safetensors.
std::map<std::string, std::vector<index_t>> mm_adapter_keys(const std::filesystem::path& dir) {
  std::map<std::string, std::vector<index_t>> out;
  const SafetensorsFile f(dir / "adapter_model.safetensors");
  for (const auto& t : f.tensors()) out[t.name] = t.shape;
  return out;
}

std::filesystem::path mm_temp(const std::string& tag) {
  const auto dir = std::filesystem::temp_directory_path() / ("qlora_mm_" + tag);
  std::filesystem::remove_all(dir);
  return dir;
}

// LoRA r 4, alpha 8 (the golden adapters' numbers) on q_proj and v_proj unless told otherwise.
Gemma3Options mm_lora_options(std::vector<std::string> targets = {"q_proj", "v_proj"}) {
  LoraConfig config;
  config.r = 4;
  config.lora_alpha = 8;
  config.target_modules = std::move(targets);
  expand_all_linear(config);
  Gemma3Options options;
  options.lora = LoraTargets(config);
  return options;
}

// The tiny model with PEFT's q_proj/v_proj adapter (its config: r 4, alpha 8), fp32 weights as saved.
std::unique_ptr<CausalLM> mm_with_peft_adapter(const std::filesystem::path& folder, const peft::Adapter& adapter,
                                               CausalLMWeights weights = CausalLMWeights::fp32) {
  Gemma3Options options;
  options.lora = LoraTargets(adapter.config);
  auto model = open_causal_lm(Gemma3WeightSource::open(folder), options, weights);
  model->load_adapter(adapter, "peft_qv");
  return model;
}

}  // namespace

TEST_SUITE("nn") {
  TEST_CASE("Gemma 3 4B-structured folders of both multimodal layouts and the text-only class give transformers' logits") {
    const auto golden = test::read_json(kMm / "logits.json");
    for (const char* folder : {"hf5", "google", "text"}) {
      CAPTURE(folder);
      const auto source = Gemma3WeightSource::open(kMm / folder);
      const bool multimodal = std::string(folder) != "text";
      CHECK((source.layout() == ModelLayout::conditional_generation) == multimodal);
      CHECK(source.config().rope_global_scaling == 8.0);
      CHECK(source.config().kv_heads * 2 == source.config().heads);
      CHECK(source.vision_tensor_names().size() == (multimodal ? 39u : 0u));
      const auto model = open_causal_lm(source, {}, CausalLMWeights::fp32);
      for (std::size_t s = 0; s < golden["sequences"].size(); ++s) {
        const auto ids = golden["sequences"][s].get<std::vector<std::int32_t>>();
        const double err = test::logits_relative_error(model->logits(model_input(ids)), golden["logits"][s]);
        CAPTURE(s);
        CHECK(err < 1e-5);
      }
    }
  }

  TEST_CASE("a Hugging Face folder's tokenizer, chat template and generation config are read as transformers reads them") {
    for (const char* folder : {"hf5", "google"}) {
      CAPTURE(folder);
      const auto source = Gemma3WeightSource::open(kMm / folder);
      const Tokenizer tok = open_tokenizer(source);
      CHECK(tok.vocab_size() == 1024);  // fewer pieces than the model's 1088 rows, as the 4B's 262144 < 262208
      CHECK(tok.token_id("<end_of_turn>") == 5);
      const HfFolderFiles files = read_hf_folder(kMm / folder);
      CHECK(is_gemma_chat_template(files.chat_template));
      CHECK(files.eos_token_ids == std::vector<std::int32_t>{1, 5});
    }
    const auto text = Gemma3WeightSource::open(kMm / "text");
    CHECK_THROWS_WITH_AS(open_tokenizer(text), doctest::Contains("no tokenizer.model"), Error);
  }

  TEST_CASE("PEFT's adapter on Gemma3ForConditionalGeneration loads with its vision-tower entries and gives PEFT's logits") {
    const peft::Adapter adapter = peft::load_adapter(kMm / "peft_qv");
    CHECK(adapter.tensors.size() == 28);  // 7 layers x {q, v} x {A, B}
    CHECK(adapter.vision.size() == 8);    // 2 SigLIP layers x {q, v} x {A, B}
    CHECK(peft::layout_of(adapter) == ModelLayout::conditional_generation);
    const auto golden = test::read_json(kMm / "peft_qv_logits.json");
    for (const char* folder : {"hf5", "google", "text"}) {  // the text model alone takes the same text adapter
      CAPTURE(folder);
      const auto model = mm_with_peft_adapter(kMm / folder, adapter);
      for (std::size_t s = 0; s < golden["sequences"].size(); ++s) {
        const auto ids = golden["sequences"][s].get<std::vector<std::int32_t>>();
        CHECK(test::logits_relative_error(model->logits(model_input(ids)), golden["logits"][s]) < 1e-5);
      }
    }
    // Saved again, nothing is lost: the same keys, shapes and values, vision tower included.
    const auto model = mm_with_peft_adapter(kMm / "hf5", adapter);
    const auto dir = mm_temp("resaved");
    model->save_adapter(dir, "hf5");
    CHECK(mm_adapter_keys(dir) == mm_adapter_keys(kMm / "peft_qv"));
    const SafetensorsFile a(kMm / "peft_qv" / "adapter_model.safetensors"), b(dir / "adapter_model.safetensors");
    for (const auto& t : a.tensors()) {
      CAPTURE(t.name);
      CHECK(a.read<float, Dyn, Dyn>(t.name).to_vector() == b.read<float, Dyn, Dyn>(t.name).to_vector());
    }
  }

  TEST_CASE("qlora's adapter has the keys PEFT writes for the checkpoint's class, vision tower included") {
    const auto golden = test::read_json(kMm / "peft_keys.json");
    const std::pair<const char*, const char*> classes[] = {{"Gemma3ForConditionalGeneration", "hf5"},
                                                           {"Gemma3ForConditionalGeneration", "google"},
                                                           {"Gemma3ForCausalLM", "text"}};
    for (const auto& [cls, folder_name] : classes)
      for (const auto& [setting_name, want] : golden[cls].items()) {
        const std::string folder = folder_name, setting = setting_name;  // clang 14: no structured bindings in CAPTURE
        CAPTURE(folder);
        CAPTURE(setting);
        const Gemma3Options options = mm_lora_options(setting == "all-linear"
                                                          ? std::vector<std::string>{"all-linear"}
                                                          : detail::OptionReader::split_commas(setting));
        const auto model = open_causal_lm(Gemma3WeightSource::open(kMm / folder), options, CausalLMWeights::fp32);
        const auto dir = mm_temp(std::string("keys_") + folder);
        model->save_adapter(dir, folder);
        std::map<std::string, std::vector<index_t>> expected;
        for (const auto& [name, shape] : want.items()) expected[name] = shape.get<std::vector<index_t>>();
        CHECK(mm_adapter_keys(dir) == expected);
        // and qlora reads its own multimodal adapter back
        CHECK_NOTHROW(model->load_adapter(dir));
      }
  }

  TEST_CASE("rank_pattern keys written for the multimodal module names apply to a multimodal checkpoint") {
    LoraConfig config;
    config.r = 4;
    config.lora_alpha = 8;
    config.target_modules = {"q_proj"};
    config.rank_pattern = {{"model.language_model.layers.1.self_attn.q_proj", 2}};
    Gemma3Options options;
    options.lora = LoraTargets(config);
    const auto model = open_causal_lm(Gemma3WeightSource::open(kMm / "hf5"), options, CausalLMWeights::fp32);
    const ParameterList params = model->lora_parameters();  // find_parameter points into it
    const Parameter* a1 = test::find_parameter(params, "layers.1.self_attn.q_proj.lora_A");
    const Parameter* a0 = test::find_parameter(params, "layers.0.self_attn.q_proj.lora_A");
    REQUIRE(a1);
    REQUIRE(a0);
    CHECK(a1->numel() == 2 * 32);  // lora_A [r, hidden 32]
    CHECK(a0->numel() == 4 * 32);
  }

  TEST_CASE("merge into the original weights gives PEFT's logits; merge into nf4 gives what qlora generate computes") {
    const peft::Adapter adapter = peft::load_adapter(kMm / "peft_qv");
    const auto golden = test::read_json(kMm / "peft_qv_logits.json");
    const auto source = Gemma3WeightSource::open(kMm / "hf5");
    const auto original = mm_temp("merged_original");
    save_merged_safetensors(source, &adapter, "peft_qv", original, MergedDtype::float32, MergeInto::original);
    const auto nf4 = mm_temp("merged_nf4");
    save_merged_safetensors(source, &adapter, "peft_qv", nf4, MergedDtype::float32, MergeInto::nf4);
    // the generation model: NF4 values dequantized once, plus the adapter
    const auto generating = mm_with_peft_adapter(kMm / "hf5", adapter, CausalLMWeights::nf4_dequantized);
    const auto merged_original = open_causal_lm(Gemma3WeightSource::open(original), {}, CausalLMWeights::fp32);
    const auto merged_nf4 = open_causal_lm(Gemma3WeightSource::open(nf4), {}, CausalLMWeights::fp32);
    double nf4_vs_generate = 0, original_vs_generate = 0;
    for (std::size_t s = 0; s < golden["sequences"].size(); ++s) {
      const auto in = model_input(golden["sequences"][s].get<std::vector<std::int32_t>>());
      CHECK(test::logits_relative_error(merged_original->logits(in), golden["logits"][s]) < 1e-5);
      const auto g = generating->logits(in);
      nf4_vs_generate = std::max(nf4_vs_generate, mm_max_difference(merged_nf4->logits(in), g));
      original_vs_generate = std::max(original_vs_generate, mm_max_difference(merged_original->logits(in), g));
    }
    MESSAGE("max |logit difference| to qlora generate's model: merge into nf4 ", nf4_vs_generate, ", into original ",
            original_vs_generate);
    CHECK(nf4_vs_generate < 1e-4);
    CHECK(original_vs_generate > 100 * nf4_vs_generate);  // the two merges differ, and nf4 is the one that matches
  }

  TEST_CASE("a merged multimodal folder keeps the source's layout, config, side files and vision tower") {
    const auto source = Gemma3WeightSource::open(kMm / "hf5");
    // qlora's own fresh adapter: its vision-tower entries are PEFT's init (lora_B = 0), so the tower is unchanged
    const auto model = open_causal_lm(source, mm_lora_options(), CausalLMWeights::fp32);
    test::randomise_lora_b(*model, 3);
    const auto adapter_dir = mm_temp("fresh_adapter");
    model->save_adapter(adapter_dir, "hf5");
    const peft::Adapter adapter = peft::load_adapter(adapter_dir);
    CHECK(adapter.vision.size() == 8);
    const auto out = mm_temp("merged_layout");
    save_merged_safetensors(source, &adapter, adapter_dir.string(), out);
    const auto merged = Gemma3WeightSource::open(out);
    CHECK(merged.layout() == ModelLayout::conditional_generation);
    CHECK(merged.hf_config()["architectures"] == nlohmann::json::array({"Gemma3ForConditionalGeneration"}));
    CHECK(merged.hf_config()["vision_config"] == source.hf_config()["vision_config"]);
    for (const char* file : {"tokenizer.model", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"})
      CHECK_MESSAGE(std::filesystem::exists(out / file), file);
    const SafetensorsFile written(out / "model.safetensors");
    CHECK(written.contains("model.language_model.layers.0.self_attn.q_proj.weight"));
    for (const std::string& name : source.vision_tensor_names()) {
      CAPTURE(name);
      REQUIRE(written.contains(name));
      const auto a = source.checkpoint()->file_of(name).raw(name);
      const auto b = written.raw(name);
      CHECK(std::equal(a.begin(), a.end(), b.begin(), b.end()));
    }
    // the merge carries the adapter: its logits are the adapted model's
    const auto merged_model = open_causal_lm(merged, {}, CausalLMWeights::fp32);
    const auto in = model_input(mm_sequences()[0]);
    CHECK(mm_max_difference(merged_model->logits(in), model->logits(in)) < 1e-4);
  }

  TEST_CASE("a multimodal folder exports its text model as GGUF, tokenizer included, with the merged model's logits") {
    const auto source = Gemma3WeightSource::open(kMm / "hf5");
    const peft::Adapter adapter = peft::load_adapter(kMm / "peft_qv");
    const auto path = std::filesystem::temp_directory_path() / "qlora_mm_export.gguf";
    save_merged_gguf(source, &adapter, "peft_qv", path, GgmlType::F32);
    const auto gguf = Gemma3WeightSource::open(path);
    CHECK(gguf.config().rope_global_scaling == 8.0);
    CHECK(gguf.config().vocab == 1088);
    const Tokenizer from_gguf = open_tokenizer(gguf), from_folder = open_tokenizer(source);
    const std::string text = "<start_of_turn>user\nRevenue rose 12.5% to $1,234.<end_of_turn>\n";
    CHECK(from_gguf.encode(text) == from_folder.encode(text));
    const auto model = open_causal_lm(gguf, {}, CausalLMWeights::fp32);
    const auto golden = test::read_json(kMm / "peft_qv_logits.json");
    const auto in = model_input(golden["sequences"][0].get<std::vector<std::int32_t>>());
    CHECK(test::logits_relative_error(model->logits(in), golden["logits"][0]) < 1e-5);
  }

  TEST_CASE("configurations that are not Gemma 3's attention pattern or RoPE are refused with the field named") {
    nlohmann::json c = test::read_json(kMm / "hf5" / "config.json");
    nlohmann::json bad = c;
    bad["text_config"]["layer_types"][0] = "full_attention";
    CHECK_THROWS_WITH_AS(gemma3_config_from_json(bad, "cfg"), doctest::Contains("layer_types[0] is full_attention"), Error);
    bad = c;
    bad["text_config"]["rope_parameters"]["full_attention"]["rope_type"] = "yarn";
    CHECK_THROWS_WITH_AS(gemma3_config_from_json(bad, "cfg"), doctest::Contains("rope_type 'yarn'"), Error);
    const nlohmann::json google = test::read_json(kMm / "google" / "config.json");
    CHECK(gemma3_config_from_json(google, "google").rope_global_scaling == 8.0);
  }
}

TEST_SUITE("nn") {
  TEST_CASE("transformers 5's default save names (language_model.model.*, vision_tower.* without vision_model) load, "
            "adapt with PEFT's keys and merge back under the same names") {
    // hf5/ renamed as save_pretrained writes by default (save_original_format=True; the names are in
    // default_save_names.json): the layout of most fine-tuned Gemma 3 folders saved with transformers 5.
    const auto names = test::read_json(kMm / "default_save_names.json")["names"].get<std::vector<std::string>>();
    const std::set<std::string> wanted(names.begin(), names.end());
    auto renamed = [](std::string n) {
      for (const auto& [from, to] : {std::pair<std::string, std::string>{"model.language_model.", "language_model.model."},
                                     {"model.vision_tower.", "vision_tower."},
                                     {"model.multi_modal_projector.", "multi_modal_projector."}})
        if (n.starts_with(from)) return to + n.substr(from.size());
      return n;
    };
    const auto dir = mm_temp("default_save");
    std::filesystem::create_directories(dir);
    for (const char* f : {"config.json", "tokenizer.model", "generation_config.json", "chat_template.jinja"})
      std::filesystem::copy_file(kMm / "hf5" / f, dir / f);
    const SafetensorsCheckpoint hf5(kMm / "hf5");
    SafetensorsWriter w;
    std::set<std::string> written;
    for (const auto& name : hf5.names()) {
      const auto& info = hf5.info(name);
      w.add_raw(renamed(name), info.dtype, info.shape, hf5.file_of(name).raw(name));
      written.insert(renamed(name));
    }
    REQUIRE(written == wanted);
    w.write(dir / "model.safetensors");

    const auto source = Gemma3WeightSource::open(dir);
    CHECK(source.layout() == ModelLayout::conditional_generation);
    CHECK(source.vision_tensor_names().size() == 39);
    const auto golden = test::read_json(kMm / "logits.json");
    const auto model = open_causal_lm(source, {}, CausalLMWeights::fp32);
    const auto in = model_input(golden["sequences"][0].get<std::vector<std::int32_t>>());
    CHECK(test::logits_relative_error(model->logits(in), golden["logits"][0]) < 1e-5);

    // the adapter's vision keys are PEFT's module names (model.vision_tower.encoder…), whatever the file calls them
    const auto adapted = open_causal_lm(source, mm_lora_options(), CausalLMWeights::fp32);
    const auto adapter_dir = mm_temp("default_save_adapter");
    adapted->save_adapter(adapter_dir, dir.string());
    std::map<std::string, std::vector<index_t>> expected;
    const nlohmann::json keys = test::read_json(kMm / "peft_keys.json");
    for (const auto& [name, shape] : keys["Gemma3ForConditionalGeneration"]["q_proj,v_proj"].items())
      expected[name] = shape.get<std::vector<index_t>>();
    CHECK(mm_adapter_keys(adapter_dir) == expected);

    // PEFT's adapter (trained vision LoRA) merges into the renamed vision tower and keeps the file's names
    const peft::Adapter peft_adapter = peft::load_adapter(kMm / "peft_qv");
    const auto out = mm_temp("default_save_merged");
    save_merged_safetensors(source, &peft_adapter, "peft_qv", out);
    const SafetensorsFile merged(out / "model.safetensors");
    std::set<std::string> merged_names;
    for (const auto& t : merged.tensors()) merged_names.insert(t.name);
    CHECK(merged_names == wanted);
    const std::string q = "vision_tower.encoder.layers.0.self_attn.q_proj.weight";
    {  // W' = W + (alpha / r) · B · A for the vision tower's q_proj of layer 0
      const auto w = source.checkpoint()->read<float, Dyn, Dyn>(q), w2 = merged.read<float, Dyn, Dyn>(q);
      const Tensor<float, Dyn, Dyn>* A = nullptr;
      const Tensor<float, Dyn, Dyn>* B = nullptr;
      for (const auto& t : peft_adapter.vision) {
        if (t.name == "base_model.model.model.vision_tower.encoder.layers.0.self_attn.q_proj.lora_A.weight") A = &t.value;
        if (t.name == "base_model.model.model.vision_tower.encoder.layers.0.self_attn.q_proj.lora_B.weight") B = &t.value;
      }
      REQUIRE(A);
      REQUIRE(B);
      const auto delta = matmul(*B, *A);
      double worst = 0, moved = 0;
      for (index_t i = 0; i < w.numel(); ++i) {
        worst = std::max(worst, std::abs(static_cast<double>(w2.data()[i]) - w.data()[i] - 2.0 * delta.data()[i]));
        moved = std::max(moved, std::abs(static_cast<double>(w2.data()[i]) - w.data()[i]));
      }
      CHECK(moved > 1e-3);
      CHECK(worst < 1e-6);
    }
    const auto merged_model = open_causal_lm(Gemma3WeightSource::open(out), {}, CausalLMWeights::fp32);
    const auto peft_golden = test::read_json(kMm / "peft_qv_logits.json");
    CHECK(test::logits_relative_error(merged_model->logits(in), peft_golden["logits"][0]) < 1e-5);
  }
}
