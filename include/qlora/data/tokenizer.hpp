// The Gemma tokenizer on SentencePiece (Debian's libsentencepiece): loaded from a tokenizer.model, or built from a
// GGUF file's vocabulary (tokenizer.ggml.tokens / scores / token_type), so a GGUF alone is enough.
//
// From a GGUF the SentencePiece ModelProto is serialised here by hand (field numbers of sentencepiece_model.proto:
// ModelProto.pieces = 1 {piece = 1, score = 2, type = 3}, trainer_spec = 2 {model_type = 3 (BPE = 2),
// vocab_size = 4, byte_fallback = 35, unk/bos/eos/pad_id = 40..43, unk/bos/eos/pad_piece = 45..48}, normalizer_spec = 3 {name = 1,
// add_dummy_prefix = 3, remove_extra_whitespaces = 4, escape_whitespaces = 5}) with Gemma's settings: BPE, byte
// fallback, identity normalisation, no added space prefix, whitespace escaped to U+2581. GGUF token types use
// SentencePiece's numbering (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte).
//
// encode() first splits the text at special pieces (control, unknown and user-defined, longest match first), as
// Hugging Face tokenizers do with their added tokens, and encodes the text between them with SentencePiece. Runs of
// two or more spaces are the exception: Hugging Face's Gemma tokenizer spells the pieces of 2..31 spaces as U+2581
// runs inside its BPE vocabulary, so a run longer than the longest piece is split by BPE merges (100 spaces:
// 16+16+16+16+16+20), not by SentencePiece's longest match (31+31+31+7). SpaceRuns replays those merges.
#pragma once

#include <sentencepiece_processor.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <memory>
#include <queue>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "../core/error.hpp"

namespace qlora {

// A vocabulary as a GGUF file stores it.
struct Vocabulary {
  std::vector<std::string> pieces;
  std::vector<float> scores;
  std::vector<std::int32_t> types;  // SentencePiece piece types
  std::int32_t unk_id = 3, bos_id = 2, eos_id = 1, pad_id = 0;
  bool add_space_prefix = false;
};

namespace detail {
inline void pb_varint(std::string& out, std::uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
inline void pb_key(std::string& out, int field, int wire) { pb_varint(out, static_cast<std::uint64_t>(field) << 3 | wire); }
inline void pb_bytes(std::string& out, int field, std::string_view s) {
  pb_key(out, field, 2);
  pb_varint(out, s.size());
  out.append(s);
}
inline void pb_int(std::string& out, int field, std::int64_t v) {
  pb_key(out, field, 0);
  pb_varint(out, static_cast<std::uint64_t>(v));
}
inline void pb_float(std::string& out, int field, float v) {
  pb_key(out, field, 5);
  char b[4];
  std::memcpy(b, &v, 4);
  out.append(b, 4);
}

// A serialized sentencepiece.ModelProto for a Gemma-style BPE vocabulary.
inline std::string sentencepiece_model_proto(const Vocabulary& v) {
  if (v.pieces.empty()) fail("tokenizer", "the vocabulary is empty");
  if (v.scores.size() != v.pieces.size() || v.types.size() != v.pieces.size())
    fail("tokenizer", "vocabulary arrays differ in length: ", v.pieces.size(), " pieces, ", v.scores.size(),
         " scores, ", v.types.size(), " types");
  std::string model;
  for (std::size_t i = 0; i < v.pieces.size(); ++i) {
    if (v.types[i] < 1 || v.types[i] > 6) fail("tokenizer", "token ", i, " has unknown type ", v.types[i]);
    std::string piece;
    pb_bytes(piece, 1, v.pieces[i]);
    pb_float(piece, 2, v.scores[i]);
    // SentencePiece requires the unknown piece to have type UNKNOWN; GGUF files mark Gemma's <unk> as control.
    pb_int(piece, 3, static_cast<std::int64_t>(i) == v.unk_id ? 2 : v.types[i]);
    pb_bytes(model, 1, piece);
  }
  std::string trainer;
  pb_int(trainer, 3, 2);  // BPE
  pb_int(trainer, 4, static_cast<std::int64_t>(v.pieces.size()));
  pb_int(trainer, 35, 1);  // byte_fallback
  pb_int(trainer, 40, v.unk_id);
  pb_int(trainer, 41, v.bos_id);
  pb_int(trainer, 42, v.eos_id);
  pb_int(trainer, 43, v.pad_id);
  // SentencePiece finds the special ids by piece text (unk/bos/eos/pad_piece = 45..48), not by the ids above.
  auto piece_of = [&](std::int32_t id, const char* what) -> const std::string& {
    if (id < 0 || static_cast<std::size_t>(id) >= v.pieces.size()) fail("tokenizer", what, " id ", id, " is outside the vocabulary");
    return v.pieces[static_cast<std::size_t>(id)];
  };
  pb_bytes(trainer, 45, piece_of(v.unk_id, "unknown"));
  pb_bytes(trainer, 46, piece_of(v.bos_id, "bos"));
  pb_bytes(trainer, 47, piece_of(v.eos_id, "eos"));
  pb_bytes(trainer, 48, piece_of(v.pad_id, "padding"));
  pb_bytes(model, 2, trainer);
  std::string normalizer;
  pb_bytes(normalizer, 1, "identity");
  pb_int(normalizer, 3, v.add_space_prefix ? 1 : 0);
  pb_int(normalizer, 4, 0);  // keep whitespace runs
  pb_int(normalizer, 5, 1);  // escape whitespace as U+2581
  pb_bytes(model, 3, normalizer);
  return model;
}
// The type of every piece of a serialized ModelProto (SentencePiece's C++ API of Debian's 0.1.97 cannot tell
// user-defined pieces from normal ones). Only the fields needed are read; NORMAL (1) is the proto default.
inline std::vector<std::int32_t> piece_types(std::string_view proto, std::string_view source) {
  std::size_t pos = 0;
  auto varint = [&](std::string_view buf, std::size_t& at) {
    std::uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (at >= buf.size()) fail("tokenizer", source, ": truncated model proto");
      const auto byte = static_cast<unsigned char>(buf[at++]);
      v |= std::uint64_t{byte & 0x7Fu} << shift;
      if (!(byte & 0x80)) return v;
    }
    fail("tokenizer", source, ": malformed varint in the model proto");
  };
  auto skip = [&](std::string_view buf, std::size_t& at, int wire) {
    if (wire == 0) varint(buf, at);
    else if (wire == 1) at += 8;
    else if (wire == 5) at += 4;
    else if (wire == 2) at += varint(buf, at);
    else fail("tokenizer", source, ": unsupported wire type ", wire, " in the model proto");
    if (at > buf.size()) fail("tokenizer", source, ": truncated model proto");
  };
  std::vector<std::int32_t> types;
  while (pos < proto.size()) {
    const std::uint64_t key = varint(proto, pos);
    if ((key >> 3) != 1 || (key & 7) != 2) {
      skip(proto, pos, static_cast<int>(key & 7));
      continue;
    }
    const std::uint64_t len = varint(proto, pos);
    if (pos + len > proto.size()) fail("tokenizer", source, ": truncated model proto");
    const std::string_view piece = proto.substr(pos, len);
    pos += len;
    std::int32_t type = 1;
    std::string_view text;
    for (std::size_t at = 0; at < piece.size();) {
      const std::uint64_t k = varint(piece, at);
      if ((k >> 3) == 3 && (k & 7) == 0) {
        type = static_cast<std::int32_t>(varint(piece, at));
      } else if ((k >> 3) == 1 && (k & 7) == 2) {
        const std::uint64_t n = varint(piece, at);
        if (n > piece.size() - at) fail("tokenizer", source, ": truncated model proto");
        text = piece.substr(at, n);
        at += n;
      } else {
        skip(piece, at, static_cast<int>(k & 7));
      }
    }
    // SentencePiece's trie stores pieces as C strings: an empty one, or one with a NUL byte, breaks it.
    if (text.empty() || text.find('\0') != std::string_view::npos)
      fail("tokenizer", source, ": piece ", types.size(), " of the model proto is ", text.empty() ? "empty" : "not text (it holds a NUL byte)");
    types.push_back(type);
  }
  return types;
}
}  // namespace detail

// Runs of spaces as Hugging Face's BPE encodes them. Its merges are rebuilt from the vocabulary, ranked by the id of
// the piece they make (earlier first) and, for the same piece, by the longer left half first; BPE then applies the
// best-ranked adjacent pair, leftmost first, until no pair of the run has a merge. Pieces of spaces end no other
// piece and start none but themselves in Gemma's vocabulary, so a run's pieces never merge with their neighbours,
// except a lone space left at its end, which belongs to the text after it ("▁b").
class SpaceRuns {
 public:
  // The piece of `length` spaces (spelled as spaces or as U+2581) is `id`.
  void add(std::size_t length, std::int32_t id) {
    if (length >= id_of_.size()) id_of_.resize(length + 1, -1);
    id_of_[length] = id;
  }
  // Runs matter only when two or more spaces have a piece (and a single space, the start of every merge).
  bool active() const { return id_of_.size() > 2 && id_of_[1] >= 0 && id_of_[2] >= 0; }

  // Appends the ids of a run of `n` >= 2 spaces and returns how many spaces they cover: `n`, or `n - 1` when a lone
  // space is left at the end for the text after the run.
  std::size_t encode(std::size_t n, std::vector<std::int32_t>& ids) const {
    struct Symbol {
      std::size_t length, prev, next;  // prev/next: neighbours in the run, npos at its ends
    };
    constexpr std::size_t none = static_cast<std::size_t>(-1);
    std::vector<Symbol> symbols(n);
    for (std::size_t i = 0; i < n; ++i) symbols[i] = {1, i == 0 ? none : i - 1, i + 1 == n ? none : i + 1};
    // A candidate merge: rank (id of the made piece, then longer left half first), position, and the lengths it saw.
    struct Merge {
      std::int32_t made;
      std::size_t left_length, pos, right_length;
      bool operator>(const Merge& o) const {
        if (made != o.made) return made > o.made;
        if (left_length != o.left_length) return left_length < o.left_length;
        return pos > o.pos;
      }
    };
    std::priority_queue<Merge, std::vector<Merge>, std::greater<>> queue;
    auto consider = [&](std::size_t left) {
      if (left == none || symbols[left].next == none) return;
      const std::size_t a = symbols[left].length, b = symbols[symbols[left].next].length;
      if (const std::int32_t made = id(a + b); made >= 0 && id(a) >= 0 && id(b) >= 0) queue.push({made, a, left, b});
    };
    for (std::size_t i = 0; i + 1 < n; ++i) consider(i);
    while (!queue.empty()) {
      const Merge m = queue.top();
      queue.pop();
      Symbol& left = symbols[m.pos];
      if (left.length != m.left_length || left.next == none || symbols[left.next].length != m.right_length) continue;
      const std::size_t right = left.next;
      left.length += symbols[right].length;
      left.next = symbols[right].next;
      if (left.next != none) symbols[left.next].prev = m.pos;
      symbols[right].length = 0;  // gone: no queued merge can match a zero length
      consider(left.prev);
      consider(m.pos);
    }
    std::size_t covered = 0;
    for (std::size_t i = 0; i != none; i = symbols[i].next) {
      if (symbols[i].next == none && symbols[i].length == 1 && covered > 0) return covered;  // the lone tail
      ids.push_back(id(symbols[i].length));
      covered += symbols[i].length;
    }
    return covered;
  }

 private:
  std::int32_t id(std::size_t length) const { return length < id_of_.size() ? id_of_[length] : -1; }
  std::vector<std::int32_t> id_of_;  // [k]: the id of the piece of k spaces, -1 when the vocabulary has none
};

class Tokenizer {
 public:
  static Tokenizer from_vocabulary(const Vocabulary& v) {
    return from_serialized_proto(detail::sentencepiece_model_proto(v), "the vocabulary");
  }
  static Tokenizer from_model_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail("tokenizer", path, ": cannot open the SentencePiece model");
    std::ostringstream bytes;
    bytes << in.rdbuf();
    return from_serialized_proto(bytes.str(), path);
  }
  static Tokenizer from_serialized_proto(const std::string& proto, std::string_view source) {
    Tokenizer t;
    t.types_ = detail::piece_types(proto, source);  // checks what SentencePiece's loader would trip over first
    try {
      const auto status = t.sp_->LoadFromSerializedProto(proto);
      if (!status.ok()) fail("tokenizer", source, ": SentencePiece rejected the model: ", status.ToString());
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      fail("tokenizer", source, ": SentencePiece rejected the model: ", e.what());
    }
    t.collect_specials(t.types_);
    return t;
  }

  // The pieces, scores and types as a GGUF file stores them (tokenizer.ggml.tokens / scores / token_type).
  Vocabulary vocabulary() const {
    Vocabulary v;
    for (int id = 0; id < sp_->GetPieceSize(); ++id) {
      v.pieces.push_back(sp_->IdToPiece(id));
      v.scores.push_back(sp_->GetScore(id));
      v.types.push_back(static_cast<std::size_t>(id) < types_.size() ? types_[static_cast<std::size_t>(id)] : 1);
    }
    v.unk_id = sp_->unk_id();
    v.bos_id = sp_->bos_id();
    v.eos_id = sp_->eos_id();
    v.pad_id = sp_->pad_id();
    return v;
  }

  // Token ids of `text` (no BOS/EOS added); special pieces written in the text become their ids.
  std::vector<std::int32_t> encode(std::string_view text) const {
    std::vector<std::int32_t> ids;
    std::size_t plain_start = 0, pos = 0;
    while (pos < text.size()) {
      if (text[pos] == ' ' && pos + 1 < text.size() && text[pos + 1] == ' ' && space_runs_.active()) {
        std::size_t n = 2;
        while (pos + n < text.size() && text[pos + n] == ' ') ++n;
        append_plain(text.substr(plain_start, pos - plain_start), ids);
        pos += space_runs_.encode(n, ids);
        plain_start = pos;
        continue;
      }
      const auto [id, length] = match_special(text, pos);
      if (length == 0) {
        ++pos;
        continue;
      }
      append_plain(text.substr(plain_start, pos - plain_start), ids);
      ids.push_back(id);
      pos += length;
      plain_start = pos;
    }
    append_plain(text.substr(plain_start), ids);
    return ids;
  }
  // Token ids of `text` with no special-piece recognition (a literal "<eos>" stays characters).
  std::vector<std::int32_t> encode_plain(std::string_view text) const {
    std::vector<std::int32_t> ids;
    append_plain(text, ids);
    return ids;
  }
  // The text of `ids`. Control tokens (<bos>, <eos>, <pad>, <start_of_turn>, <end_of_turn>, …) and <unk> are left out with
  // SpecialTokens::skip (the default: Hugging Face's decode(ids, skip_special_tokens=True), what generation shows)
  // and written as their pieces with SpecialTokens::keep (Hugging Face's default decode(ids)).
  enum class SpecialTokens { skip, keep };
  std::string decode(const std::vector<std::int32_t>& ids, SpecialTokens special = SpecialTokens::skip) const {
    for (std::int32_t id : ids)
      if (id < 0 || id >= vocab_size()) fail("tokenizer", "decode: token id ", id, " outside the vocabulary of ", vocab_size());
    std::string out;
    std::vector<int> run;
    auto flush = [&] {
      std::string text;
      const auto status = sp_->Decode(run, &text);
      if (!status.ok()) fail("tokenizer", "decode failed: ", status.ToString());
      out += text;
      run.clear();
    };
    for (std::int32_t id : ids) {
      if (sp_->IsControl(id) || sp_->IsUnknown(id)) {
        flush();
        if (special == SpecialTokens::keep) out += sp_->IdToPiece(id);
      } else {
        run.push_back(id);
      }
    }
    flush();
    return out;
  }

  std::int32_t token_id(std::string_view piece) const {
    const int id = sp_->PieceToId(piece);
    if (id == sp_->unk_id() && piece != sp_->IdToPiece(id)) fail("tokenizer", "no token '", piece, "' in the vocabulary");
    return id;
  }
  std::string piece(std::int32_t id) const { return sp_->IdToPiece(id); }
  std::int32_t bos_id() const { return sp_->bos_id(); }
  std::int32_t eos_id() const { return sp_->eos_id(); }
  std::int32_t pad_id() const { return sp_->pad_id(); }
  std::int32_t vocab_size() const { return sp_->GetPieceSize(); }

 private:
  Tokenizer() : sp_(std::make_shared<sentencepiece::SentencePieceProcessor>()) {}

  void collect_specials(const std::vector<std::int32_t>& types) {
    for (int id = 0; id < sp_->GetPieceSize(); ++id) {
      const std::string p = sp_->IdToPiece(id);
      const std::size_t spaces = space_count(p);
      if (spaces > 0) space_runs_.add(spaces, id);
      const std::int32_t type = types[static_cast<std::size_t>(id)];
      if (type != 2 && type != 3 && type != 4) continue;  // unknown, control, user-defined
      if (p.empty() || (spaces > 0 && p[0] == ' ')) continue;  // a run of spaces is SpaceRuns' business
      specials_.emplace(p, id);
      max_special_ = std::max(max_special_, p.size());
      first_bytes_[static_cast<unsigned char>(p[0])] = true;
    }
  }
  // How many spaces `piece` is made of, spelled as spaces or as U+2581 (0 when it holds anything else).
  static std::size_t space_count(std::string_view piece) {
    static constexpr std::string_view escaped = "\xE2\x96\x81";
    if (piece.empty()) return 0;
    if (piece.find_first_not_of(' ') == std::string_view::npos) return piece.size();
    std::size_t n = 0;
    for (; piece.starts_with(escaped); piece.remove_prefix(escaped.size())) ++n;
    return piece.empty() ? n : 0;
  }
  // The longest special piece starting at `pos` (length 0 when none).
  std::pair<std::int32_t, std::size_t> match_special(std::string_view text, std::size_t pos) const {
    if (!first_bytes_[static_cast<unsigned char>(text[pos])]) return {0, 0};
    for (std::size_t len = std::min(max_special_, text.size() - pos); len > 0; --len) {
      const auto it = specials_.find(std::string(text.substr(pos, len)));
      if (it != specials_.end()) return {it->second, len};
    }
    return {0, 0};
  }
  void append_plain(std::string_view text, std::vector<std::int32_t>& ids) const {
    if (text.empty()) return;
    std::vector<int> out;
    const auto status = sp_->Encode(text, &out);
    if (!status.ok()) fail("tokenizer", "encode failed: ", status.ToString());
    ids.insert(ids.end(), out.begin(), out.end());
  }

  std::shared_ptr<sentencepiece::SentencePieceProcessor> sp_;
  std::unordered_map<std::string, std::int32_t> specials_;
  SpaceRuns space_runs_;
  std::vector<std::int32_t> types_;  // SentencePiece piece types, by id
  std::size_t max_special_ = 0;
  bool first_bytes_[256] = {};
};

}  // namespace qlora
