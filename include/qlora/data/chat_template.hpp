// The Gemma 3 chat template, rendered as the Hugging Face template of google/gemma-3-*-it does:
//
//   <bos><start_of_turn>user\n{system}\n\n{user}<end_of_turn>\n<start_of_turn>model\n{answer}<end_of_turn>\n
//
// "assistant" is written "model"; a leading system message is folded into the first user turn (its content is not
// trimmed, the turns' contents are, with Python's str.strip() whitespace); roles must alternate user/model.
// The result is a list of segments, so that special tokens become ids (never text) and the loss mask is exact per
// token: a model turn's content and its closing "<end_of_turn>\n" are learned, its "<start_of_turn>model\n" cue is
// not — the split of TRL's gemma3_training.jinja ({% generation %} around content + '<end_of_turn>\n'), which
// assistant_only_loss=True uses for Gemma 3. to_text() gives the string apply_chat_template(tokenize=False) returns.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "../core/error.hpp"

namespace qlora {

struct ChatMessage {
  std::string role;  // "system" (first only), "user", "assistant" or "model"
  std::string content;
};

struct ChatSegment {
  std::string text;      // literal text, or a special token's piece ("<bos>", "<start_of_turn>", "<end_of_turn>")
  bool special = false;  // one token, looked up by its piece; never tokenized as text
  bool learned = false;  // part of what the model learns to produce (labels = ids); otherwise labels are -100
};

namespace detail {

// Length of the Python-whitespace code point (str.isspace) that starts at s[i], or 0.
inline std::size_t python_space_at(std::string_view s, std::size_t i) {
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const std::size_t left = s.size() - i;
  const unsigned char c = b(0);
  if ((c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20)) return 1;
  if (c == 0xC2 && left >= 2 && (b(1) == 0x85 || b(1) == 0xA0)) return 2;  // U+0085, U+00A0
  if (left < 3) return 0;
  const std::uint32_t cp = (std::uint32_t{c} << 16) | (std::uint32_t{b(1)} << 8) | b(2);
  if (cp == 0xE19A80 || cp == 0xE38080) return 3;                          // U+1680, U+3000
  if (cp >= 0xE28080 && cp <= 0xE2808A) return 3;                          // U+2000..U+200A
  if (cp == 0xE280A8 || cp == 0xE280A9 || cp == 0xE280AF || cp == 0xE2819F) return 3;  // U+2028/9, U+202F, U+205F
  return 0;
}

// Start of the Python-whitespace code point that ends at s[end - 1], or `end` when there is none.
inline std::size_t python_space_before(std::string_view s, std::size_t end) {
  for (std::size_t len = 1; len <= 3 && len <= end; ++len)
    if (python_space_at(s, end - len) == len) return end - len;
  return end;
}

}  // namespace detail

// Jinja's `trim` filter: Python's str.strip() with no argument (Unicode whitespace; the text is UTF-8).
inline std::string python_strip(std::string_view s) {
  std::size_t begin = 0, end = s.size();
  while (begin < end) {
    const std::size_t n = detail::python_space_at(s, begin);
    if (n == 0) break;
    begin += n;
  }
  while (end > begin) {
    const std::size_t start = detail::python_space_before(s, end);
    if (start == end || start < begin) break;
    end = start;
  }
  return std::string(s.substr(begin, end - begin));
}

namespace detail {
inline void push_segment(std::vector<ChatSegment>& out, std::string text, bool special, bool learned) {
  if (text.empty()) return;
  if (!special && !out.empty() && !out.back().special && out.back().learned == learned) {
    out.back().text += text;  // adjacent text with the same mask is one piece of text, as the full string would be
    return;
  }
  out.push_back({std::move(text), special, learned});
}
}  // namespace detail

// Renders `messages` (and the "<start_of_turn>model\n" cue when add_generation_prompt) as Gemma 3 segments.
// A conversation of only a system message renders "<bos>" alone (Hugging Face's template drops it); an empty one is an
// Error (Hugging Face's fails on messages[0]).
inline std::vector<ChatSegment> render_gemma3_chat(std::span<const ChatMessage> messages,
                                                   bool add_generation_prompt = false) {
  if (messages.empty()) fail("chat_template", "the conversation has no messages");
  std::vector<ChatSegment> out;
  detail::push_segment(out, "<bos>", true, false);
  std::string first_user_prefix;
  std::size_t first = 0;
  if (!messages.empty() && messages[0].role == "system") {
    first_user_prefix = messages[0].content + "\n\n";
    first = 1;
  }
  for (std::size_t i = first; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    const bool user_expected = (i - first) % 2 == 0;
    const bool is_model = m.role == "assistant" || m.role == "model";
    if (m.role != "user" && !is_model)
      fail("chat_template", "message ", i + 1, " has role '", m.role,
           "'; allowed: user, assistant (or model), and system as the first message only");
    if ((m.role == "user") != user_expected)
      fail("chat_template", "conversation roles must alternate user/assistant/user/assistant/... (message ", i + 1,
           " is '", m.role, "')");
    detail::push_segment(out, "<start_of_turn>", true, false);
    detail::push_segment(out, is_model ? "model\n" : "user\n", false, false);
    if (i == first && !is_model) detail::push_segment(out, first_user_prefix, false, false);
    detail::push_segment(out, python_strip(m.content), false, is_model);
    detail::push_segment(out, "<end_of_turn>", true, is_model);
    detail::push_segment(out, "\n", false, is_model);
  }
  if (add_generation_prompt) {
    detail::push_segment(out, "<start_of_turn>", true, false);
    detail::push_segment(out, "model\n", false, false);
  }
  return out;
}

// The rendered string (special pieces written out), equal to apply_chat_template(..., tokenize=False).
inline std::string to_text(std::span<const ChatSegment> segments) {
  std::string s;
  for (const auto& seg : segments) s += seg.text;
  return s;
}

}  // namespace qlora
