// The tokenizer on a small hand-made BPE vocabulary: merges by score, byte fallback, whitespace escaping, special
// pieces in text, runs of spaces, decoding, and vocabulary errors. (Ids identical to Hugging Face's on the real Gemma 3 vocabulary:
// tests/data/tokenizer_gemma3.cpp with the golden ids of tests/golden/tokenizer.py.)
#include <doctest/doctest.h>

#include <cstdio>

#include <qlora/data/tokenizer.hpp>

#include "support/tiny_vocabulary.hpp"

using namespace qlora;

namespace {
using test::tiny_vocabulary;
using test::kFirstPiece;

// tiny_vocabulary() with the pieces of 2..`longest` spaces (user-defined, spelled as spaces, as Gemma GGUFs have
// them) after its own; the piece of k spaces has id kFirstSpaces + k - 2.
Vocabulary with_space_pieces(int longest) {
  auto v = tiny_vocabulary();
  for (int k = 2; k <= longest; ++k) {
    v.pieces.push_back(std::string(static_cast<std::size_t>(k), ' '));
    v.scores.push_back(0);
    v.types.push_back(4);
  }
  return v;
}
constexpr int kFirstSpaces = 272;
}  // namespace

TEST_SUITE("data") {
  TEST_CASE("BPE merges pieces by score and escapes spaces") {
    const auto t = Tokenizer::from_vocabulary(tiny_vocabulary());
    CHECK(t.vocab_size() == 272);
    CHECK(t.encode("ab") == std::vector<std::int32_t>{kFirstPiece + 4});            // "ab"
    CHECK(t.encode(" ab") == std::vector<std::int32_t>{kFirstPiece + 5});           // "▁ab"
    CHECK(t.encode("abc") == std::vector<std::int32_t>{kFirstPiece + 6});  // "ab" merges first, then "abc"
    CHECK(t.encode("cab") == std::vector<std::int32_t>{kFirstPiece + 3, kFirstPiece + 4});
    CHECK(t.encode("hi") == std::vector<std::int32_t>{kFirstPiece + 9});
  }

  TEST_CASE("characters outside the vocabulary fall back to bytes") {
    const auto t = Tokenizer::from_vocabulary(tiny_vocabulary());
    CHECK(t.encode("z") == std::vector<std::int32_t>{6 + 'z'});
    CHECK(t.encode("\xC3\xA9") == std::vector<std::int32_t>{6 + 0xC3, 6 + 0xA9});  // é as its two UTF-8 bytes
    CHECK(t.decode(t.encode("z\xC3\xA9 ab")) == "z\xC3\xA9 ab");
  }

  TEST_CASE("special pieces in text become their ids, and encode_plain leaves them as text") {
    const auto t = Tokenizer::from_vocabulary(tiny_vocabulary());
    CHECK(t.encode("<start_of_turn>hi\n") == std::vector<std::int32_t>{4, kFirstPiece + 9, 5});
    CHECK(t.encode_plain("<eos>").size() > 1);
    CHECK(t.encode("<eos>") == std::vector<std::int32_t>{1});
    CHECK(t.token_id("<start_of_turn>") == 4);
    CHECK(t.bos_id() == 2);
    CHECK(t.eos_id() == 1);
    CHECK(t.pad_id() == 0);
    CHECK_THROWS_WITH_AS(t.token_id("<end_of_turn>"), "[tokenizer] no token '<end_of_turn>' in the vocabulary", Error);
  }

  TEST_CASE("a malformed vocabulary is rejected with the reason") {
    auto v = tiny_vocabulary();
    v.scores.pop_back();
    CHECK_THROWS_WITH_AS(Tokenizer::from_vocabulary(v),
                         "[tokenizer] vocabulary arrays differ in length: 272 pieces, 271 scores, 272 types", Error);
    v = tiny_vocabulary();
    v.types[7] = 9;
    CHECK_THROWS_WITH_AS(Tokenizer::from_vocabulary(v), "[tokenizer] token 7 has unknown type 9", Error);
    CHECK_THROWS_AS(Tokenizer::from_model_file("/nonexistent/tokenizer.model"), Error);
    const auto t = Tokenizer::from_vocabulary(tiny_vocabulary());
    CHECK_THROWS_WITH_AS(t.decode({999}), "[tokenizer] decode: token id 999 outside the vocabulary of 272", Error);
    v = tiny_vocabulary();
    v.pieces[5] = "";
    CHECK_THROWS_WITH_AS(Tokenizer::from_vocabulary(v), "[tokenizer] the vocabulary: piece 5 of the model proto is empty",
                         Error);
  }

  TEST_CASE("decode leaves control tokens out by default and writes them with SpecialTokens::keep") {
    const auto t = Tokenizer::from_vocabulary(tiny_vocabulary());
    const auto ids = t.encode("<start_of_turn>hi\n");
    std::vector<std::int32_t> with_bos{t.bos_id()};
    with_bos.insert(with_bos.end(), ids.begin(), ids.end());
    CHECK(t.decode(with_bos) == "hi\n");
    CHECK(t.decode(with_bos, Tokenizer::SpecialTokens::keep) == "<bos><start_of_turn>hi\n");
    CHECK(t.decode({}, Tokenizer::SpecialTokens::keep).empty());
    // <unk> is special too, as in Hugging Face's skip_special_tokens: left out, or written as its piece.
    CHECK(t.decode({kFirstPiece + 9, 3}) == "hi");
    CHECK(t.decode({kFirstPiece + 9, 3}, Tokenizer::SpecialTokens::keep) == "hi<unk>");
  }

  TEST_CASE("<unk> written as text is the unknown token, as Hugging Face's added tokens have it") {
    const auto t = Tokenizer::from_vocabulary(tiny_vocabulary());
    CHECK(t.encode("hi<unk>hi") == std::vector<std::int32_t>{kFirstPiece + 9, 3, kFirstPiece + 9});
  }

  TEST_CASE("runs of spaces are split by Hugging Face's BPE merges, not by SentencePiece's longest match") {
    const int s2 = kFirstSpaces, s3 = kFirstSpaces + 1, s4 = kFirstSpaces + 2;
    const auto t = Tokenizer::from_vocabulary(with_space_pieces(4));
    // Up to the longest piece a run is that piece, as with SentencePiece.
    CHECK(t.encode("a  b") == std::vector<std::int32_t>{kFirstPiece + 1, s2, kFirstPiece + 2});
    CHECK(t.encode("a    b") == std::vector<std::int32_t>{kFirstPiece + 1, s4, kFirstPiece + 2});
    // Five spaces: "▁▁" merges first (lowest id), leftmost: [2,1,1,1] -> [2,2,1]; then "▁▁▁" (2+1) outranks
    // "▁▁▁▁" (2+2): [2,3]. SentencePiece's longest match would give [4,1].
    CHECK(t.encode("a     b") == std::vector<std::int32_t>{kFirstPiece + 1, s2, s3, kFirstPiece + 2});
    // Seven: [2,2,2,1] -> [2,2,3] -> [4,3]. Eight: [2,2,2,2] -> [4,2,2] -> [4,4].
    CHECK(t.encode(std::string(7, ' ')) == std::vector<std::int32_t>{s4, s3});
    CHECK(t.encode(std::string(8, ' ')) == std::vector<std::int32_t>{s4, s4});
    CHECK(t.decode(t.encode("a" + std::string(23, ' ') + "b")) == "a" + std::string(23, ' ') + "b");
  }

  TEST_CASE("a lone space left at the end of a run joins the text after it") {
    const auto t = Tokenizer::from_vocabulary(with_space_pieces(2));  // only "▁▁": three spaces are [2,1]
    CHECK(t.encode("c   ab") == std::vector<std::int32_t>{kFirstPiece + 3, kFirstSpaces, kFirstPiece + 5});  // ▁ab
    CHECK(t.encode("c   ") == std::vector<std::int32_t>{kFirstPiece + 3, kFirstSpaces, kFirstPiece});        // ▁
    CHECK(t.encode("c     ") == std::vector<std::int32_t>{kFirstPiece + 3, kFirstSpaces, kFirstSpaces, kFirstPiece});
  }

  TEST_CASE("a model proto with a NUL byte in a piece is refused, not passed to SentencePiece's trie") {
    // Found by fuzz_tokenizer_model: SentencePiece's darts trie threw a std::exception ("zero-length key") for a
    // control piece "\0eos>", which escaped as something other than qlora::Error.
    std::string proto;
    auto piece = [&](std::string_view text, int type) {
      std::string p = "\x0a" + std::string(1, static_cast<char>(text.size())) + std::string(text);
      p += std::string("\x15\0\0\0\0\x18", 6) + static_cast<char>(type);
      proto += "\x0a" + std::string(1, static_cast<char>(p.size())) + p;
    };
    piece("<pad>", 3);
    piece(std::string_view("\0eos>", 5), 3);
    piece("<bos>", 3);
    piece("<unk>", 2);
    CHECK_THROWS_WITH_AS(Tokenizer::from_serialized_proto(proto, "fuzz.model"),
                         "[tokenizer] fuzz.model: piece 1 of the model proto is not text (it holds a NUL byte)", Error);
  }
}
