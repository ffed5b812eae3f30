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
