// Gemma 3 ids from the real 270M GGUF vocabulary equal Hugging Face's for every corpus line (hand-written text,
// whitespace runs of every length 1-100, the special tokens written as text), and so does decode
// (tests/data/tokenizer/gemma3_ids.json from tests/golden/tokenizer.py). Needs the model file: QLORA_MODEL (set by
// scripts/test through scripts/fetch-model); without it the test says so and checks nothing else.
#include <doctest/doctest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>

#include <nlohmann/json.hpp>

#include <qlora/data/gguf_vocabulary.hpp>

using namespace qlora;

TEST_SUITE("data") {
  TEST_CASE("token ids from the real Gemma 3 GGUF vocabulary equal Hugging Face's") {
    const char* model = std::getenv("QLORA_MODEL");
    if (!model || !std::filesystem::exists(model)) {
      MESSAGE("QLORA_MODEL is not set to the Gemma 3 270M GGUF (scripts/fetch-model): real-vocabulary check skipped");
      return;
    }
    const auto start = std::chrono::steady_clock::now();
    const Tokenizer tok = tokenizer_from_gguf(GgufFile(model));
    MESSAGE("tokenizer from the GGUF in "
            << std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() << " s");
    std::ifstream in(std::string(QLORA_TEST_DATA_DIR) + "/tokenizer/gemma3_ids.json");
    const auto golden = nlohmann::json::parse(in);
    CHECK(tok.bos_id() == golden["bos_id"].get<int>());
    CHECK(tok.eos_id() == golden["eos_id"].get<int>());
    CHECK(tok.pad_id() == golden["pad_id"].get<int>());
    CHECK(tok.vocab_size() == 262144);
    int lines = 0;
    for (const auto& line : golden["lines"]) {
      const std::string text = line["text"];
      INFO("line " << lines << ": " << text);
      CHECK(tok.encode(text) == line["ids"].get<std::vector<std::int32_t>>());
      ++lines;
    }
    CHECK(lines > 500);  // the hand-written lines, whitespace runs 1-100 and the special tokens as text
    // Every token Hugging Face adds as a whole (control and user-defined pieces) stays whole between letters.
    const auto x = tok.encode("x"), y = tok.encode("y");
    REQUIRE(x.size() == 1);
    REQUIRE(y.size() == 1);
    int added = 0;
    for (const auto& range : golden["added_token_ranges"])
      for (int id = range[0].get<int>(); id <= range[1].get<int>(); ++id, ++added) {
        INFO("added token " << id << " '" << tok.piece(id) << "'");
        CHECK(tok.encode("x" + tok.piece(id) + "y") == std::vector<std::int32_t>{x[0], id, y[0]});
      }
    CHECK(added == 6384);
    // decode, keeping and skipping special tokens, as Hugging Face's decode(ids, skip_special_tokens=...).
    for (const auto& d : golden["decode"]) {
      const auto ids = d["ids"].get<std::vector<std::int32_t>>();
      CHECK(tok.decode(ids, Tokenizer::SpecialTokens::keep) == d["keep"].get<std::string>());
      CHECK(tok.decode(ids, Tokenizer::SpecialTokens::skip) == d["skip"].get<std::string>());
    }
    CHECK(tok.token_id("<start_of_turn>") == 105);
    CHECK(tok.token_id("<end_of_turn>") == 106);
  }
}
