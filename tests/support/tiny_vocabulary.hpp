// A small hand-made BPE vocabulary with byte fallback, for tokenizer tests (no model file needed).
#pragma once

#include <cstdio>
#include <string>

#include <qlora/data/tokenizer.hpp>

namespace qlora::test {

// ids: 0 <pad>, 1 <eos>, 2 <bos>, 3 <unk>, 4 <start_of_turn>, 5 "\n" (user-defined), 6..261 bytes, then pieces.
inline Vocabulary tiny_vocabulary() {
  Vocabulary v;
  auto add = [&](std::string p, float score, int type) {
    v.pieces.push_back(std::move(p));
    v.scores.push_back(score);
    v.types.push_back(type);
  };
  add("<pad>", 0, 3);
  add("<eos>", 0, 3);
  add("<bos>", 0, 3);
  add("<unk>", 0, 2);
  add("<start_of_turn>", 0, 3);
  add("\n", 0, 4);
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    add(name, 0, 6);
  }
  const char* pieces[] = {"\u2581", "a", "b", "c", "ab", "\u2581ab", "abc", "h", "i", "hi"};  // U+2581 in UTF-8
  float score = -1;
  for (const char* p : pieces) add(p, score--, 1);
  return v;
}
inline constexpr int kFirstPiece = 262;  // "▁"

}  // namespace qlora::test
