// Gemma 3 configurations from files: the tiny model's config.json (transformers 5 format) and the real 270M GGUF.
#include <doctest/doctest.h>

#include <cstdlib>
#include <fstream>

#include <qlora/nn/config_io.hpp>

using namespace qlora;

TEST_SUITE("nn") {
  TEST_CASE("a transformers config.json is read and dispatched to its configuration type") {
    std::ifstream in(std::string(QLORA_TEST_DATA_DIR) + "/gemma3_model/tiny/config.json");
    const auto c = gemma3_config_from_json(nlohmann::json::parse(in), "tiny/config.json");
    CHECK(c.hidden == 32);
    CHECK(c.rope_local_theta == 10000.0);
    CHECK(c.rope_global_theta == 1000000.0);
    CHECK(dispatch_config(c, "tiny/config.json", [](auto cfg) { return std::string(decltype(cfg)::name); }) ==
          "gemma-3-tiny");
    CHECK_THROWS_WITH_AS(gemma3_config_from_json(nlohmann::json::parse(R"({"hidden_size": 32})"), "bad.json"),
                         doctest::Contains("[config] bad.json: "), Error);
  }

  TEST_CASE("a config.json of another model is refused, naming its model_type or the field Gemma 3 lacks") {
    std::ifstream in(std::string(QLORA_TEST_DATA_DIR) + "/gemma3_model/tiny/config.json");
    const nlohmann::json tiny = nlohmann::json::parse(in);
    auto with = [&](const char* key, nlohmann::json value) {
      nlohmann::json j = tiny;
      j[key] = std::move(value);
      return j;
    };
    CHECK_THROWS_WITH_AS(gemma3_config_from_json(with("model_type", "gemma4_text"), "e2b/config.json"),
                         doctest::Contains("e2b/config.json: model_type is 'gemma4_text': a Gemma 4 checkpoint, which qlora finetune, "),
                         Error);
    CHECK_THROWS_WITH_AS(gemma3_config_from_json(with("model_type", "llama"), "llama/config.json"),
                         doctest::Contains("model_type is 'llama', not Gemma 3"), Error);
    CHECK_THROWS_WITH_AS(gemma3_config_from_json(with("final_logit_softcapping", 30.0), "capped.json"),
                         doctest::Contains("capped.json: final_logit_softcapping is 30.0; Gemma 3 has none"), Error);
    CHECK_THROWS_WITH_AS(gemma3_config_from_json(with("attn_logit_softcapping", 50), "capped.json"),
                         doctest::Contains("attn_logit_softcapping is 50"), Error);
    // The multimodal layout: the wrapper's model_type and the text model's are both checked.
    nlohmann::json mm = {{"model_type", "gemma4"}, {"text_config", tiny}};
    CHECK_THROWS_WITH_AS(gemma3_config_from_json(mm, "mm.json"), doctest::Contains("model_type is 'gemma4'"), Error);
    mm["model_type"] = "gemma3";
    mm["text_config"]["model_type"] = "gemma4_text";
    CHECK_THROWS_WITH_AS(gemma3_config_from_json(mm, "mm.json"), doctest::Contains("text_config.model_type is"), Error);
    mm["text_config"]["model_type"] = "gemma3_text";
    CHECK(gemma3_config_from_json(mm, "mm.json").hidden == 32);  // and Gemma 3's own pass
    CHECK(gemma3_config_from_json(with("final_logit_softcapping", nullptr), "null.json").hidden == 32);
  }

  TEST_CASE("the real Gemma 3 270M GGUF describes gemma-3-270m") {
    const char* model = std::getenv("QLORA_MODEL");
    if (!model || !std::filesystem::exists(model)) {
      MESSAGE("QLORA_MODEL is not set to the Gemma 3 270M GGUF (scripts/fetch-model): skipped");
      return;
    }
    const auto c = gemma3_config_from_gguf(GgufFile(model));
    CHECK(c.vocab == 262144);
    CHECK(dispatch_config(c, model, [](auto cfg) { return std::string(decltype(cfg)::name); }) == "gemma-3-270m");
  }
}
