// PEFT's adapter format: our tensor names are exactly the ones PEFT saved for a tiny Gemma 3 (tests/data/peft/
// keys.json, from tests/golden/peft_adapter.py), names parse back, and adapter_config.json holds PEFT's values.
#include <doctest/doctest.h>

#include <fstream>
#include <set>

#include <qlora/io/peft.hpp>

using namespace qlora;

namespace {
nlohmann::json read_json(const std::string& name) {
  std::ifstream in(std::string(QLORA_TEST_DATA_DIR) + "/peft/" + name);
  REQUIRE(in.good());
  return nlohmann::json::parse(in);
}
}  // namespace

TEST_SUITE("io") {
  TEST_CASE("LoRA tensor names equal the ones PEFT saves for Gemma 3") {
    const auto keys = read_json("keys.json");
    std::set<std::string> theirs;
    for (const auto& t : keys["tensors"]) theirs.insert(t["name"].get<std::string>());
    std::set<std::string> ours;
    for (index_t layer = 0; layer < 2; ++layer)
      for (int p = 0; p < 7; ++p)
        for (auto m : {peft::LoraMatrix::A, peft::LoraMatrix::B})
          ours.insert(peft::tensor_name(layer, static_cast<Projection>(p), m));
    CHECK(ours == theirs);
    CHECK(keys["metadata"]["format"] == "pt");
    for (const auto& t : keys["tensors"]) CHECK(t["dtype"] == "torch.float32");
  }

  TEST_CASE("PEFT tensor names parse back to layer, projection and matrix") {
    const auto t = peft::parse_tensor_name("base_model.model.model.layers.17.mlp.down_proj.lora_B.weight");
    REQUIRE(t.has_value());
    CHECK(t->layer == 17);
    CHECK(t->projection == Projection::down_proj);
    CHECK(t->matrix == peft::LoraMatrix::B);
    const auto mm = peft::parse_tensor_name("base_model.model.model.language_model.layers.3.self_attn.q_proj.lora_A.weight");
    REQUIRE(mm.has_value());
    CHECK(mm->layer == 3);
    CHECK_FALSE(peft::parse_tensor_name("base_model.model.model.layers.1.self_attn.q_proj.weight").has_value());
    CHECK_FALSE(peft::parse_tensor_name("lm_head.weight").has_value());
    CHECK(peft::tensor_name(3, Projection::q_proj, peft::LoraMatrix::A, peft::ModelLayout::conditional_generation) ==
          "base_model.model.model.language_model.layers.3.self_attn.q_proj.lora_A.weight");
  }

  TEST_CASE("adapter_config.json carries PEFT's values for every key it shares with PEFT's file") {
    const auto theirs = read_json("adapter_config.json");
    LoraConfig c;
    c.r = 4;
    c.lora_alpha = 8;
    c.lora_dropout = 0.05;
    c.target_modules = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
    const auto ours = nlohmann::json::parse(peft::adapter_config_text(c, ""));
    for (const auto& [key, value] : ours.items()) {
      INFO("key " << key);
      REQUIRE(theirs.contains(key));
      if (key == "target_modules") {
        CHECK(std::set<std::string>(value.begin(), value.end()) ==
              std::set<std::string>(theirs[key].begin(), theirs[key].end()));
      } else {
        CHECK(value == theirs[key]);
      }
    }
    const LoraConfig back = peft::lora_config_from_adapter_config(theirs, "adapter_config.json");
    CHECK(back.r == 4);
    CHECK(back.lora_alpha == 8);
    CHECK(back.target_modules.size() == 7);
  }

  TEST_CASE("adapters qlora cannot honour are refused by name") {
    auto j = read_json("adapter_config.json");
    j["use_dora"] = true;
    CHECK_THROWS_WITH_AS(peft::lora_config_from_adapter_config(j, "a.json"), "[peft] a.json: DoRA adapters are not supported",
                         Error);
  }
}
