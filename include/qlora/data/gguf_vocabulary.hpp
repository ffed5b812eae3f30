// The tokenizer vocabulary stored in a GGUF file (llama.cpp's "llama" = SentencePiece tokenizer model):
// tokenizer.ggml.tokens / scores / token_type and the special ids, as a Vocabulary for Tokenizer::from_vocabulary.
#pragma once

#include "../io/gguf.hpp"
#include "tokenizer.hpp"

namespace qlora {

inline Vocabulary vocabulary_from_gguf(const GgufFile& f) {
  const std::string source = f.path().string();
  if (!f.contains("tokenizer.ggml.tokens")) fail("tokenizer", source, ": no tokenizer.ggml.tokens (no vocabulary)");
  const std::string model = f.contains("tokenizer.ggml.model") ? f.get_string("tokenizer.ggml.model") : "llama";
  if (model != "llama")
    fail("tokenizer", source, ": tokenizer.ggml.model is '", model, "'; only SentencePiece ('llama') vocabularies are supported");
  Vocabulary v;
  v.pieces = f.get_array<std::string>("tokenizer.ggml.tokens");
  v.scores = f.get_array<float>("tokenizer.ggml.scores");
  v.types = f.get_array<std::int32_t>("tokenizer.ggml.token_type");
  auto id = [&](const char* key, std::int32_t fallback) {
    return f.contains(key) ? static_cast<std::int32_t>(f.get_u32(key)) : fallback;
  };
  v.bos_id = id("tokenizer.ggml.bos_token_id", 2);
  v.eos_id = id("tokenizer.ggml.eos_token_id", 1);
  v.unk_id = id("tokenizer.ggml.unknown_token_id", 3);
  v.pad_id = id("tokenizer.ggml.padding_token_id", 0);
  v.add_space_prefix = f.contains("tokenizer.ggml.add_space_prefix") && f.get_bool("tokenizer.ggml.add_space_prefix");
  return v;
}

inline Tokenizer tokenizer_from_gguf(const GgufFile& f) { return Tokenizer::from_vocabulary(vocabulary_from_gguf(f)); }

}  // namespace qlora
