// Records to training samples: each record is rendered (a prompt template with named slots, or a chat `messages`
// list through the Gemma 3 chat template), tokenized segment by segment (special tokens as ids), masked (labels are
// the ids where the model learns, -100 elsewhere) and truncated to max_length from the end (TRL's keep_start),
// counting what was cut. Then: `select_first` (the recipe's train[:500]), `shuffle` and `train_eval_split` with a seed.
//
// Labels are aligned with input_ids, as in Hugging Face: the loss compares the logits at t-1 with labels[t].
// Randomness is std::mt19937_64 (its output is fixed by the C++ standard) with our own unbiased integer draw, so a
// seed gives the same order on every platform (std::shuffle / uniform_int_distribution differ between libraries).
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <map>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "../core/error.hpp"
#include "../core/text.hpp"
#include "chat_template.hpp"
#include "prompt_template.hpp"
#include "records.hpp"

namespace qlora {

// What the data pipeline needs of a tokenizer (data/tokenizer.hpp's Tokenizer has it).
template <class T>
concept TextTokenizer = requires(const T& t, std::string_view text) {
  { t.encode(text) } -> std::convertible_to<std::vector<std::int32_t>>;  // no BOS added
  { t.bos_id() } -> std::convertible_to<std::int32_t>;
  { t.eos_id() } -> std::convertible_to<std::int32_t>;
  { t.pad_id() } -> std::convertible_to<std::int32_t>;
  { t.token_id(text) } -> std::convertible_to<std::int32_t>;  // "<start_of_turn>" -> 105, "<end_of_turn>" -> 106
};

inline constexpr std::int32_t ignore_index = -100;  // labels that take no part in the loss

struct Sample {
  std::vector<std::int32_t> input_ids;  // [T]
  std::vector<std::int32_t> labels;     // [T]: input_ids where learned, ignore_index elsewhere
  std::size_t record = 0;               // position of its record in the file
  bool truncated = false;
};

struct TokenizedDataset {
  std::vector<Sample> samples;
  std::size_t max_length = 0;
  std::size_t truncated = 0;         // samples cut to max_length
  std::size_t truncated_to_no_labels = 0;  // of those, samples whose learned part was cut entirely
  std::size_t tokens = 0, label_tokens = 0;

  std::string summary() const {
    return detail::concat(samples.size(), " samples, ", tokens, " tokens (", label_tokens, " learned); ", truncated,
                          " truncated to max_length ", max_length, " (", truncated_to_no_labels,
                          " of them lost every learned token)");
  }
};

struct DatasetOptions {
  std::size_t max_length = 1024;      // TRL SFTConfig's default
  bool train_on_prompt = false;       // true: learn every token (labels = input_ids)
  bool add_eos = true;                // templated records end with <eos> (learned), as TRL appends to plain text
  std::optional<std::size_t> select;  // only the first N records (HF split "train[:N]")
};

// Records rendered through a prompt template. Where `optional_slot` names a slot and a record's field for it is
// empty or absent, `without_optional` (the same template without that slot) is used instead: the Alpaca template
// drops its "### Input:" section for records with no input.
struct TemplatedFormat {
  PromptTemplate prompt_template;
  FieldMapping fields;
  std::string optional_slot = {};
  PromptTemplate without_optional = {};
};
// Records holding a chat: a list of turns rendered with the Gemma 3 chat template (no <eos> appended, as TRL does
// for conversations: the model learns to stop with <end_of_turn>). OpenAI's layout by default
// (`messages: [{role, content}]`); ShareGPT's (`conversations: [{from, value}]`, roles human / gpt / system) with
// sharegpt_chat_format().
struct ChatFormat {
  std::string messages_field = "messages";
  std::string role_key = "role", content_key = "content";
  std::map<std::string, std::string> role_names = {};  // the file's role name -> user / assistant / system
};
using DatasetFormat = std::variant<TemplatedFormat, ChatFormat>;

// The recipe's format for TheFinAI/Fino1_Reasoning_Path_FinQA-style records (as examples/data/finance_reasoning.jsonl):
// the question is the prompt; the reasoning in <think> tags and the answer are learned.
inline TemplatedFormat finance_reasoning_format() {
  return {{"Below is a question about financial figures. Think it through step by step, showing the arithmetic, "
           "then give the final answer.\n\n### Question:\n{question}\n\n### Response:\n",
           "<think>\n{cot}\n</think>\n{response}"},
          {{"question", "Open-ended Verifiable Question"}, {"cot", "Complex_CoT"}, {"response", "Response"}}};
}

// Appends the tokens of `segments` to ids/labels: text through tok.encode, special pieces as one id each.
// Encoding text segment by segment equals encoding the whole string (as Hugging Face does) when no vocabulary piece
// would cross a mask boundary. The boundaries fall after a newline ("model\n" | content, "### Response:\n" |
// "<think>"), where Gemma's pieces split: checked with transformers' Gemma 3 tokenizer on all bundled records. (A
// prompt ending in "\n" before a response starting with "\n" would differ: "\n\n" is one Gemma token.)
template <TextTokenizer Tok>
void encode_segments(const Tok& tok, std::span<const ChatSegment> segments, bool learn_all,
                     std::vector<std::int32_t>& ids, std::vector<std::int32_t>& labels) {
  for (const auto& seg : segments) {
    const std::size_t begin = ids.size();
    if (seg.special) {
      ids.push_back(seg.text == "<bos>"   ? static_cast<std::int32_t>(tok.bos_id())
                    : seg.text == "<eos>" ? static_cast<std::int32_t>(tok.eos_id())
                    : seg.text == "<pad>" ? static_cast<std::int32_t>(tok.pad_id())
                                          : static_cast<std::int32_t>(tok.token_id(seg.text)));
    } else {
      const std::vector<std::int32_t> piece = tok.encode(seg.text);
      ids.insert(ids.end(), piece.begin(), piece.end());
    }
    for (std::size_t i = begin; i < ids.size(); ++i)
      labels.push_back(seg.learned || learn_all ? ids[i] : ignore_index);
  }
}

// The conversation in a chat record (format.messages_field: a list of {role, content}, or the keys and role names
// the format gives; content a string or a list of {type: text, text} parts), with errors naming the record's file
// and line.
inline std::vector<ChatMessage> chat_messages(const Record& record, const ChatFormat& format = {}) {
  const std::string& field = format.messages_field;
  const std::string& role_key = format.role_key;
  const std::string& content_key = format.content_key;
  const auto it = record.fields.find(field);
  if (it == record.fields.end()) fail("dataset", record.where, ": record has no field '", field, "'");
  if (!it->is_array())
    fail("dataset", record.where, ": field '", field, "' is ", it->type_name(), "; expected a list of {role, content}");
  std::vector<ChatMessage> messages;
  for (std::size_t i = 0; i < it->size(); ++i) {
    const auto& m = (*it)[i];
    const auto role = m.is_object() ? m.find(role_key) : m.end();
    const auto content = m.is_object() ? m.find(content_key) : m.end();
    if (!m.is_object() || role == m.end() || !role->is_string() || content == m.end())
      fail("dataset", record.where, ": message ", i + 1, " of '", field, "' is not a {", role_key, ", ", content_key,
           "} object");
    ChatMessage message{role->get<std::string>(), {}};
    if (const auto named = format.role_names.find(message.role); named != format.role_names.end())
      message.role = named->second;
    else if (!format.role_names.empty() && message.role != "user" && message.role != "assistant" && message.role != "system")
      fail("dataset", record.where, ": message ", i + 1, " has ", role_key, " '", message.role, "'; known: ",
           joined(format.role_names, ", ", [](const auto& role) -> const std::string& { return role.first; }));
    if (content->is_string()) {
      message.content = content->get<std::string>();
    } else if (content->is_array()) {  // [{"type": "text", "text": ...}], each part trimmed as the template does
      for (const auto& part : *content) {
        const bool text_part = part.is_object() && part.contains("type") && part["type"] == "text" &&
                               part.contains("text") && part["text"].is_string();
        if (!text_part)
          fail("dataset", record.where, ": message ", i + 1, " has a content part that is not {type: text, text}");
        message.content += python_strip(part["text"].get<std::string>());
      }
    } else {
      fail("dataset", record.where, ": message ", i + 1, " has content of type ", content->type_name());
    }
    messages.push_back(std::move(message));
  }
  return messages;
}

namespace detail {

// The Gemma 3 chat of a record's messages; the template's errors name the record ("[chat_template] ..." becomes
// "[dataset] file:line: ...").
inline std::vector<ChatSegment> chat_of_record(const Record& record, const std::vector<ChatMessage>& messages,
                                               bool add_generation_prompt) {
  try {
    return render_gemma3_chat(messages, add_generation_prompt);
  } catch (const Error& e) {
    const std::string what = e.what();
    fail("dataset", record.where, ": ", what.substr(what.find("] ") + 2));
  }
}

inline std::vector<ChatSegment> render_record(const Record& record, const ChatFormat& format, const DatasetOptions& o) {
  const auto messages = chat_messages(record, format);
  const std::vector<ChatSegment> segments = chat_of_record(record, messages, false);
  bool learns = o.train_on_prompt;
  for (const auto& s : segments) learns = learns || s.learned;
  if (!learns) fail("dataset", record.where, ": the conversation has no model turn, so nothing to learn");
  return segments;
}


// Unbiased integer in [0, n) from the 64-bit generator (rejection of the incomplete top range).
inline std::uint64_t uniform_below(std::mt19937_64& rng, std::uint64_t n) {
  const std::uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  std::uint64_t x;
  do x = rng();
  while (x >= limit);
  return x % n;
}

}  // namespace detail

// A format made ready to render records: templates checked against their mappings once, before any record.
class RecordRenderer {
 public:
  explicit RecordRenderer(const DatasetFormat& format) : format_(format) {
    if (const auto* t = std::get_if<TemplatedFormat>(&format)) {
      filled_.emplace(t->prompt_template, t->fields);
      if (!t->optional_slot.empty()) {
        FieldMapping rest = t->fields;
        if (!rest.erase(t->optional_slot))
          fail("dataset", "optional slot {", t->optional_slot, "} is not in the field mapping");
        without_.emplace(t->without_optional, rest);
      }
    }
  }
  // The record's segments: <bos>, the prompt (not learned), the response (learned), <eos> where options.add_eos
  // and the format is a template; a conversation ends with its last turn.
  std::vector<ChatSegment> render(const Record& record, const DatasetOptions& options) const {
    if (!filled_) return detail::render_record(record, std::get<ChatFormat>(format_), options);
    return (uses_without(record) ? *without_ : *filled_).render(record, options.add_eos);
  }
  // The question of a record to generate from: the prompt part (with the model cue for a conversation) and the
  // reference answer (the learned part's text, or a conversation's final assistant turn).
  std::vector<ChatSegment> question(const Record& record, std::string& reference) const {
    reference.clear();
    if (!filled_) {
      std::vector<ChatMessage> messages = chat_messages(record, std::get<ChatFormat>(format_));
      if (!messages.empty() && (messages.back().role == "assistant" || messages.back().role == "model")) {
        reference = python_strip(messages.back().content);
        messages.pop_back();
      }
      return detail::chat_of_record(record, messages, true);
    }
    std::vector<ChatSegment> prompt;
    for (const auto& s : (uses_without(record) ? *without_ : *filled_).render(record, false))
      if (s.learned) reference += s.special ? "" : s.text;
      else prompt.push_back(s);
    return prompt;
  }

 private:
  bool uses_without(const Record& record) const {
    if (!without_) return false;
    const auto& t = std::get<TemplatedFormat>(format_);
    const auto it = record.fields.find(t.fields.at(t.optional_slot));
    return it == record.fields.end() || it->is_null() || (it->is_string() && it->get<std::string>().empty());
  }
  DatasetFormat format_;
  std::optional<FilledPromptTemplate> filled_, without_;
};

// Tokenizes records with a format; the records' order is kept.
template <TextTokenizer Tok>
TokenizedDataset tokenize_records(std::span<const Record> records, const DatasetFormat& format, const Tok& tok,
                                  const DatasetOptions& options) {
  require(options.max_length >= 2, "dataset", "max_length must be at least 2, not ", options.max_length);
  if (options.select) records = records.first(std::min(*options.select, records.size()));
  TokenizedDataset out;
  out.max_length = options.max_length;
  const RecordRenderer renderer(format);
  out.samples.reserve(records.size());
  for (std::size_t r = 0; r < records.size(); ++r) {
    const auto segments = renderer.render(records[r], options);
    Sample s;
    s.record = r;
    encode_segments(tok, segments, options.train_on_prompt, s.input_ids, s.labels);
    if (s.input_ids.size() > options.max_length) {
      s.input_ids.resize(options.max_length);
      s.labels.resize(options.max_length);
      s.truncated = true;
      ++out.truncated;
    }
    std::size_t learned = 0;
    for (std::size_t t = 1; t < s.labels.size(); ++t) learned += s.labels[t] != ignore_index;
    if (s.truncated && learned == 0) ++out.truncated_to_no_labels;
    out.tokens += s.input_ids.size();
    out.label_tokens += learned;
    out.samples.push_back(std::move(s));
  }
  return out;
}

// Reads a .jsonl / .json / .csv file and tokenizes it.
template <TextTokenizer Tok>
TokenizedDataset load_dataset(const std::string& path, const DatasetFormat& format, const Tok& tok,
                              const DatasetOptions& options) {
  const auto records = load_records(path);
  return tokenize_records(records, format, tok, options);
}

// The first n items (all when there are fewer), as Hugging Face's split "train[:n]".
template <class T>
std::vector<T> select_first(std::vector<T> items, std::size_t n) {
  if (items.size() > n) items.resize(n);
  return items;
}

// Fisher–Yates from the back: for i = n-1 .. 1, swap items[i] with items[j], j uniform in [0, i] drawn from
// std::mt19937_64(seed) by rejection sampling. Same seed, same order, on every platform.
template <class T>
void shuffle(std::vector<T>& items, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (std::size_t i = items.size(); i > 1; --i)
    std::swap(items[i - 1], items[detail::uniform_below(rng, i)]);
}

// The size of an eval split: a fraction of the items (rounded up, as datasets' train_test_split) or a count.
struct EvalSize {
  double fraction = 0;
  std::size_t count = 0;
  static EvalSize of_fraction(double f) { return {f, 0}; }
  static EvalSize of_count(std::size_t n) { return {0, n}; }
};

template <class T>
struct Split {
  std::vector<T> train, eval;
};

// Shuffles with `seed`, then the first eval-size items are the eval set and the rest the training set (in shuffled
// order), as datasets' train_test_split does with a permutation.
template <class T>
Split<T> train_eval_split(std::vector<T> items, EvalSize size, std::uint64_t seed) {
  const std::size_t n = items.size();
  std::size_t n_eval = size.count;
  if (size.count == 0) {
    if (!(size.fraction > 0 && size.fraction < 1))
      fail("dataset", "eval fraction must be in (0, 1), not ", size.fraction);
    n_eval = static_cast<std::size_t>(std::ceil(size.fraction * static_cast<double>(n)));
  }
  if (n_eval == 0 || n_eval >= n)
    fail("dataset", "an eval split of ", n_eval, " from ", n, " samples leaves ",
         n_eval == 0 ? "no eval" : "no training", " samples");
  shuffle(items, seed);
  Split<T> s;
  const auto cut = items.begin() + static_cast<std::ptrdiff_t>(n_eval);
  s.eval.assign(std::make_move_iterator(items.begin()), std::make_move_iterator(cut));
  s.train.assign(std::make_move_iterator(cut), std::make_move_iterator(items.end()));
  return s;
}

}  // namespace qlora
