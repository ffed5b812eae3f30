// The text of generated tokens as they come, for printing while decoding (transformers' TextStreamer): each new
// token gives the text it completes. The whole id list is decoded each time and the new end of it handed out, so the
// streamed text is exactly the text decoded at the end — spaces that SentencePiece only writes between pieces
// included — and a character whose UTF-8 bytes are spread over byte-fallback tokens is held back until its last byte
// (while incomplete, SentencePiece decodes it as U+FFFD).
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "../data/tokenizer.hpp"

namespace qlora {

class TextStream {
 public:
  // `hidden`: ids that are not text (stop tokens: <eos>, <end_of_turn>).
  TextStream(const Tokenizer& tok, std::vector<std::int32_t> hidden) : tok_(tok), hidden_(std::move(hidden)) {}

  // The text `id` adds (possibly empty).
  std::string push(std::int32_t id) {
    if (std::find(hidden_.begin(), hidden_.end(), id) != hidden_.end()) return {};
    ids_.push_back(id);
    const std::string text = tok_.decode(ids_);
    std::size_t ready = text.size();
    while (ready >= 3 && text.compare(ready - 3, 3, kReplacement) == 0) ready -= 3;  // bytes still to come
    return take(text, ready);
  }
  // What is left at the end (a character that never completed, as U+FFFD).
  std::string finish() {
    const std::string text = tok_.decode(ids_);
    return take(text, text.size());
  }
  // All the text so far, as the tokenizer decodes it.
  std::string text() const { return tok_.decode(ids_); }

 private:
  static constexpr const char* kReplacement = "\xEF\xBF\xBD";
  std::string take(const std::string& text, std::size_t ready) {
    // what was handed out must stay the start of the text (it does for SentencePiece; if a decoder ever rewrote the
    // past, nothing more is streamed and text() still has the whole answer)
    if (ready <= given_.size() || text.compare(0, given_.size(), given_) != 0) return {};
    std::string fresh = text.substr(given_.size(), ready - given_.size());
    given_ += fresh;
    return fresh;
  }

  const Tokenizer& tok_;
  std::vector<std::int32_t> hidden_, ids_;
  std::string given_;
};

}  // namespace qlora
