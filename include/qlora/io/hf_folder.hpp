// The files of a Hugging Face model folder besides config.json and the weights, read as transformers reads them:
//   tokenizer.model          the SentencePiece model (qlora's tokenizer; tokenizer.json is the same vocabulary in
//                            the tokenizers library's format, which qlora does not read)
//   chat_template.jinja      the chat template (transformers >= 4.47 saves it here), else tokenizer_config.json's
//                            "chat_template" (a string, or a list of {name, template} with "default" first)
//   generation_config.json   eos_token_id (one id or a list: the -it checkpoints stop at <eos> and <end_of_turn>)
// and the GGUF metadata llama.cpp needs for such a folder's text model (its convert_hf_to_gguf.py's keys for
// gemma3: sizes, RoPE, the SentencePiece vocabulary padded to the model's vocab_size, special ids, chat template).
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../data/csv.hpp"
#include "../data/gguf_vocabulary.hpp"
#include "../data/tokenizer.hpp"
#include "../nn/gemma4_weights.hpp"
#include "../nn/weights.hpp"
#include "gguf.hpp"
#include "json_file.hpp"

namespace qlora {

struct HfFolderFiles {
  std::filesystem::path tokenizer_model;      // empty when the folder has none
  std::string chat_template;                  // empty when the folder has none
  std::filesystem::path chat_template_file;   // where it was read
  std::vector<std::int32_t> eos_token_ids;    // generation_config.json (empty when absent)
  nlohmann::json generation_config;           // null when absent
};


inline HfFolderFiles read_hf_folder(const std::filesystem::path& folder) {
  namespace fs = std::filesystem;
  HfFolderFiles f;
  if (fs::exists(folder / "tokenizer.model")) f.tokenizer_model = folder / "tokenizer.model";
  if (fs::exists(folder / "chat_template.jinja")) {
    f.chat_template_file = folder / "chat_template.jinja";
    f.chat_template = read_text_file(f.chat_template_file.string(), "tokenizer");
  } else if (fs::exists(folder / "tokenizer_config.json")) {
    const nlohmann::json j = detail::read_json_file(folder / "tokenizer_config.json", "tokenizer");
    if (j.is_object() && j.contains("chat_template")) {
      const auto& t = j["chat_template"];
      if (t.is_string()) f.chat_template = t.get<std::string>();
      else if (t.is_array())
        for (const auto& entry : t)
          if (entry.is_object() && entry.value("name", "") == "default") f.chat_template = entry.value("template", "");
      if (!f.chat_template.empty()) f.chat_template_file = folder / "tokenizer_config.json";
    }
  }
  if (fs::exists(folder / "generation_config.json")) {
    f.generation_config = detail::read_json_file(folder / "generation_config.json", "generation");
    if (f.generation_config.is_object() && f.generation_config.contains("eos_token_id")) {
      const auto& e = f.generation_config["eos_token_id"];
      if (e.is_number_integer()) f.eos_token_ids.push_back(e.get<std::int32_t>());
      else if (e.is_array())
        for (const auto& id : e)
          if (id.is_number_integer()) f.eos_token_ids.push_back(id.get<std::int32_t>());
    }
  }
  return f;
}

// Whether a chat template renders Gemma's turns (qlora renders them itself, data/chat_template.hpp).
inline bool is_gemma_chat_template(const std::string& t) {
  return t.find("<start_of_turn>") != std::string::npos && t.find("<end_of_turn>") != std::string::npos;
}

// The tokenizer.model of a Hugging Face folder, for a model of `vocab` embedding rows.
inline Tokenizer open_folder_tokenizer(const std::filesystem::path& folder, index_t vocab) {
  const HfFolderFiles files = read_hf_folder(folder);
  if (files.tokenizer_model.empty()) {
    if (std::filesystem::exists(folder / "tokenizer.json"))
      fail("tokenizer", folder.string(), ": no tokenizer.model, only tokenizer.json; qlora reads the SentencePiece "
           "tokenizer.model that every Gemma release ships beside it (download it too)");
    fail("tokenizer", folder.string(), ": no tokenizer.model in the model folder");
  }
  const Tokenizer tok = Tokenizer::from_model_file(files.tokenizer_model.string());
  if (tok.vocab_size() > vocab)
    fail("tokenizer", files.tokenizer_model.string(), ": ", tok.vocab_size(), " pieces, more than the model's vocab_size ",
         vocab);
  return tok;
}

// The tokenizer of a model: a GGUF's own vocabulary, or a Hugging Face folder's tokenizer.model.
inline Tokenizer open_tokenizer(const Gemma3WeightSource& source) {
  if (source.is_gguf()) return tokenizer_from_gguf(*source.gguf());
  const std::filesystem::path folder = source.folder();
  if (folder.empty()) fail("tokenizer", source.path().string(), ": a model without files has no tokenizer");
  return open_folder_tokenizer(folder, source.config().vocab);
}
inline Tokenizer open_tokenizer(const Gemma4WeightSource& source) {
  return open_folder_tokenizer(source.folder(), source.config().vocab);
}

// GGUF metadata for the text model of a Hugging Face folder, as llama.cpp's converter writes it for gemma3.
inline void set_gguf_metadata_from_hf(GgufWriter& out, const Gemma3WeightSource& src, const Tokenizer& tok) {
  const Gemma3RuntimeConfig& c = src.config();
  const nlohmann::json& root = src.hf_config();
  const nlohmann::json& text = root.contains("text_config") ? root["text_config"] : root;
  auto u32 = [](index_t v) { return static_cast<std::uint32_t>(v); };
  out.set("general.type", std::string("model"));
  out.set("general.name", src.folder().filename().string());
  out.set("gemma3.context_length", static_cast<std::uint32_t>(text.value("max_position_embeddings", 131072)));
  out.set("gemma3.embedding_length", u32(c.hidden));
  out.set("gemma3.block_count", u32(c.layers));
  out.set("gemma3.feed_forward_length", u32(c.intermediate));
  out.set("gemma3.attention.head_count", u32(c.heads));
  out.set("gemma3.attention.layer_norm_rms_epsilon", static_cast<float>(c.rms_norm_eps > 0 ? c.rms_norm_eps : 1e-6));
  out.set("gemma3.attention.key_length", u32(c.head_dim));
  out.set("gemma3.attention.value_length", u32(c.head_dim));
  out.set("gemma3.rope.freq_base", static_cast<float>(c.rope_global_theta > 0 ? c.rope_global_theta : 1e6));
  out.set("gemma3.attention.sliding_window", u32(c.sliding_window));
  out.set("gemma3.attention.head_count_kv", u32(c.kv_heads));
  if (c.rope_global_scaling != 1) {
    out.set("gemma3.rope.scaling.type", std::string("linear"));
    out.set("gemma3.rope.scaling.factor", static_cast<float>(c.rope_global_scaling));
  }
  Vocabulary v = tok.vocabulary();
  for (index_t i = static_cast<index_t>(v.pieces.size()); i < c.vocab; ++i) {  // the converter's padding
    v.pieces.push_back("[PAD" + std::to_string(i) + "]");
    v.scores.push_back(-1000.0f);
    v.types.push_back(5);  // unused
  }
  out.set("tokenizer.ggml.model", std::string("llama"));
  out.set("tokenizer.ggml.pre", std::string("default"));
  out.set("tokenizer.ggml.tokens", v.pieces);
  out.set("tokenizer.ggml.scores", v.scores);
  out.set("tokenizer.ggml.token_type", v.types);
  out.set("tokenizer.ggml.bos_token_id", static_cast<std::uint32_t>(v.bos_id));
  out.set("tokenizer.ggml.eos_token_id", static_cast<std::uint32_t>(v.eos_id));
  out.set("tokenizer.ggml.unknown_token_id", static_cast<std::uint32_t>(v.unk_id));
  out.set("tokenizer.ggml.padding_token_id", static_cast<std::uint32_t>(v.pad_id));
  out.set("tokenizer.ggml.add_bos_token", true);
  out.set("tokenizer.ggml.add_sep_token", false);
  out.set("tokenizer.ggml.add_eos_token", false);
  out.set("tokenizer.ggml.add_space_prefix", false);
  const HfFolderFiles files = read_hf_folder(src.folder());
  if (!files.chat_template.empty()) out.set("tokenizer.chat_template", files.chat_template);
}

}  // namespace qlora
