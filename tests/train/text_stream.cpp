// Streaming the text of generated tokens (train/text_stream.hpp): the pieces handed out add up to the text decoded
// at the end, a character split over byte tokens comes out whole, stop tokens are not text.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include <qlora/train/text_stream.hpp>

#include "support/tiny_vocabulary.hpp"

using namespace qlora;

TEST_SUITE("train") {
  TEST_CASE("streamed text: the pieces add up to the decoded text; a split UTF-8 character waits for its last byte") {
    const auto tok = Tokenizer::from_vocabulary(test::tiny_vocabulary());
    const std::string text = "ab z\xC3\xA9\xE2\x82\xAC hi\nabc";  // é (2 bytes) and € (3 bytes) as byte tokens
    const std::vector<std::int32_t> ids = tok.encode(text);
    REQUIRE(tok.decode(ids) == text);
    TextStream stream(tok, {tok.eos_id()});
    std::vector<std::string> pieces;
    for (std::int32_t id : ids) pieces.push_back(stream.push(id));
    pieces.push_back(stream.push(tok.eos_id()));  // a stop token adds nothing
    pieces.push_back(stream.finish());
    std::string joined;
    for (const auto& p : pieces) {
      joined += p;
      CHECK(p.find("\xEF\xBF\xBD") == std::string::npos);  // never half a character
    }
    CHECK(joined == text);
    CHECK(stream.text() == text);
    // the first byte of € gives nothing; its last byte gives the whole character
    const std::size_t euro = std::find(ids.begin(), ids.end(), 6 + 0xE2) - ids.begin();
    REQUIRE(euro + 2 < ids.size());
    CHECK(pieces[euro].empty());
    CHECK(pieces[euro + 1].empty());
    CHECK(pieces[euro + 2] == "\xE2\x82\xAC");
  }

  TEST_CASE("a character that never completes comes out at the end as U+FFFD, as the decoded text has it") {
    const auto tok = Tokenizer::from_vocabulary(test::tiny_vocabulary());
    TextStream stream(tok, {});
    CHECK(stream.push(tok.encode("a")[0]) == "a");
    CHECK(stream.push(6 + 0xC3).empty());  // the first byte of a two-byte character
    CHECK(stream.finish() == tok.decode({tok.encode("a")[0], 6 + 0xC3}).substr(1));
  }
}
