// A prompt template with named slots, filled from a record's fields: the prompt part (labels -100 unless
// train_on_prompt) and the response part (learned), e.g.
//
//   prompt   "### Question:\n{question}\n\n### Response:\n"   fields: question -> "Open-ended Verifiable Question"
//   response "<think>\n{cot}\n</think>\n{response}"                   cot -> "Complex_CoT", response -> "Response"
//
// Slots are "{name}"; "{{" and "}}" are literal braces (Python's str.format). The mapping must match the template
// exactly: a slot without a field, or a field no slot uses, is an Error when the template is built, before any
// record is read. (A recipe that fills a three-slot template with two values produces wrong training text silently.)
#pragma once

#include <cstddef>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "../core/text.hpp"
#include "chat_template.hpp"
#include "records.hpp"

namespace qlora {

struct PromptTemplate {
  std::string prompt;    // what the model is given
  std::string response;  // what the model learns to write
};

using FieldMapping = std::map<std::string, std::string>;  // slot name -> record field name

namespace detail {
struct TemplatePart {
  std::string text;  // literal text, or the slot's name
  bool slot = false;
};

inline std::vector<TemplatePart> parse_template(std::string_view t, const char* which) {
  std::vector<TemplatePart> parts;
  std::string literal;
  for (std::size_t i = 0; i < t.size(); ++i) {
    const char c = t[i];
    if ((c == '{' || c == '}') && i + 1 < t.size() && t[i + 1] == c) {  // "{{" or "}}"
      literal.push_back(c);
      ++i;
    } else if (c == '}') {
      fail("dataset", which, " template: '}' at offset ", i, " has no '{' (write '}}' for a literal brace)");
    } else if (c == '{') {
      const std::size_t close = t.find_first_of("{}", i + 1);
      if (close == std::string_view::npos || t[close] != '}')
        fail("dataset", which, " template: '{' at offset ", i, " is never closed (write '{{' for a literal brace)");
      if (close == i + 1) fail("dataset", which, " template: empty slot '{}' at offset ", i, "; name every slot");
      if (!literal.empty()) parts.push_back({std::move(literal), false});
      literal.clear();
      parts.push_back({std::string(t.substr(i + 1, close - i - 1)), true});
      i = close;
    } else {
      literal.push_back(c);
    }
  }
  if (!literal.empty()) parts.push_back({std::move(literal), false});
  return parts;
}
}  // namespace detail

// A template checked against its field mapping; fills records into segments ready for tokenization.
class FilledPromptTemplate {
 public:
  FilledPromptTemplate(const PromptTemplate& t, FieldMapping fields)
      : prompt_(detail::parse_template(t.prompt, "prompt")),
        response_(detail::parse_template(t.response, "response")),
        fields_(std::move(fields)) {
    if (response_.empty()) fail("dataset", "the response template is empty: there would be nothing to learn");
    std::set<std::string> used;
    for (const auto* parts : {&prompt_, &response_})
      for (const auto& p : *parts)
        if (p.slot) {
          if (!fields_.count(p.text)) fail("dataset", "template slot {", p.text, "} has no field in the mapping");
          used.insert(p.text);
        }
    for (const auto& [slot, field] : fields_)
      if (!used.count(slot))
        fail("dataset", "the mapping gives field '", field, "' to slot {", slot, "}, which the template does not use");
  }

  // <bos>, the prompt (not learned), the response (learned) and, when add_eos, <eos> (learned).
  std::vector<ChatSegment> render(const Record& record, bool add_eos) const {
    std::vector<ChatSegment> out;
    out.push_back({"<bos>", true, false});
    append(out, prompt_, record, false);
    append(out, response_, record, true);
    if (add_eos) out.push_back({"<eos>", true, true});
    return out;
  }

  // The text of one record, prompt and response together (no <bos>/<eos>).
  std::string text(const Record& record) const {
    std::vector<ChatSegment> out;
    append(out, prompt_, record, false);
    append(out, response_, record, true);
    return to_text(out);
  }

 private:
  void append(std::vector<ChatSegment>& out, const std::vector<detail::TemplatePart>& parts, const Record& record,
              bool learned) const {
    std::string text;
    for (const auto& p : parts) text += p.slot ? value(record, p.text) : p.text;
    if (!text.empty()) out.push_back({std::move(text), false, learned});
  }

  std::string value(const Record& record, const std::string& slot) const {
    const std::string& field = fields_.at(slot);
    const auto it = record.fields.find(field);
    if (it == record.fields.end()) {
      std::vector<std::string> has;
      for (const auto& [key, v] : record.fields.items()) has.push_back(key);
      fail("dataset", record.where, ": record has no field '", field, "' (for slot {", slot, "}); its fields: ", joined(has),
           " (another layout? --format alpaca, chat, sharegpt, text, prompt-completion, or a custom template)");
    }
    if (it->is_string()) return it->get<std::string>();
    if (it->is_number() || it->is_boolean()) return it->dump();
    fail("dataset", record.where, ": field '", field, "' (for slot {", slot, "}) is ", it->type_name(),
         "; expected text or a number");
  }

  std::vector<detail::TemplatePart> prompt_, response_;
  FieldMapping fields_;
};

}  // namespace qlora
