// The Gemma 3 chat template against Hugging Face: the expected strings are what transformers 5.24's
// render_jinja_template gives with google/gemma-3-*-it's chat template (bos_token "<bos>"), pasted byte for byte.
// Also the learned/not-learned split of the segments (TRL's gemma3_training.jinja) and the errors.
#include <doctest/doctest.h>

#include <qlora/data/chat_template.hpp>
#include <string>
#include <vector>

using namespace qlora;

namespace {
std::string render(const std::vector<ChatMessage>& m, bool add_generation_prompt = false) {
  return to_text(render_gemma3_chat(m, add_generation_prompt));
}
std::string learned_text(const std::vector<ChatSegment>& segments) {
  std::string s;
  for (const auto& seg : segments)
    if (seg.learned) s += seg.text;
  return s;
}
}  // namespace

TEST_SUITE("data") {
  TEST_CASE("a single user/model exchange renders as the Hugging Face Gemma 3 template") {
    CHECK(render({{"user", "Hello"}, {"assistant", "Hi there"}}) ==
          "<bos><start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\nHi there<end_of_turn>\n");
    // "model" is accepted as the model role too and renders the same.
    CHECK(render({{"user", "Hello"}, {"model", "Hi there"}}) == render({{"user", "Hello"}, {"assistant", "Hi there"}}));
  }

  TEST_CASE("several turns are trimmed and the generation prompt appends the model cue") {
    CHECK(render({{"user", "What is 2+2?"}, {"assistant", "4"}, {"user", "  And 3+3?\n"}, {"assistant", "6."}}, true) ==
          "<bos><start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n4<end_of_turn>\n"
          "<start_of_turn>user\nAnd 3+3?<end_of_turn>\n<start_of_turn>model\n6.<end_of_turn>\n<start_of_turn>model\n");
  }

  TEST_CASE("a system message is folded into the first user turn, untrimmed, with a blank line") {
    // U+00A0 and U+3000 are whitespace to Python's str.strip (Jinja's trim), so they go too.
    CHECK(render({{"system", "  You are a CFO. "}, {"user", "\u00a0Margin?\u3000"}, {"assistant", "\n42%\n\n"}}) ==
          "<bos><start_of_turn>user\n  You are a CFO. \n\nMargin?<end_of_turn>\n<start_of_turn>model\n42%"
          "<end_of_turn>\n");
    CHECK(render({{"system", "Be brief."}, {"user", "Hi"}}, true) ==
          "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n");
    CHECK(render({{"system", "x"}}) == "<bos>");  // Hugging Face drops a lone system message
  }

  TEST_CASE("python_strip removes exactly Python's whitespace at both ends") {
    CHECK(python_strip(" \t\n\r\v\f a b \x1c\x1f") == "a b");
    CHECK(python_strip("\u2000\u200a\u2028\u2029\u202f\u205f\u1680\u0085x\u00a0") == "x");
    CHECK(python_strip("\u200bx\u200b") == "\u200bx\u200b");  // zero-width space is not whitespace to Python
    CHECK(python_strip("\u00e9") == "\u00e9");
    CHECK(python_strip("   ").empty());
  }

  TEST_CASE("only the model turns' content and their closing <end_of_turn> and newline are learned") {
    const auto segments = render_gemma3_chat(
        std::vector<ChatMessage>{{"user", "Q1"}, {"assistant", "A1"}, {"user", "Q2"}, {"assistant", "A2"}});
    CHECK(learned_text(segments) == "A1<end_of_turn>\nA2<end_of_turn>\n");
    // Special pieces are separate segments, never inside text.
    int specials = 0;
    for (const auto& s : segments) {
      if (s.special) {
        ++specials;
        CHECK((s.text == "<bos>" || s.text == "<start_of_turn>" || s.text == "<end_of_turn>"));
      } else {
        CHECK(s.text.find("<start_of_turn>") == std::string::npos);
      }
    }
    CHECK(specials == 1 + 4 * 2);
    // The cue "<start_of_turn>model\n" is not learned: it is prompt, given to the model at generation time.
    CHECK(segments[5].text == "<start_of_turn>");
    CHECK_FALSE(segments[5].learned);
    CHECK(segments[6].text == "model\n");
    CHECK_FALSE(segments[6].learned);
  }

  TEST_CASE("conversations the template rejects are errors naming the message") {
    CHECK_THROWS_WITH_AS(render({{"assistant", "Hi"}}),
                         "[chat_template] conversation roles must alternate user/assistant/user/assistant/... "
                         "(message 1 is 'assistant')",
                         Error);
    CHECK_THROWS_WITH_AS(render({{"system", "s"}, {"user", "a"}, {"user", "b"}}),
                         "[chat_template] conversation roles must alternate user/assistant/user/assistant/... "
                         "(message 3 is 'user')",
                         Error);
    CHECK_THROWS_WITH_AS(render({{"user", "a"}, {"tool", "b"}}),
                         "[chat_template] message 2 has role 'tool'; allowed: user, assistant (or model), and system "
                         "as the first message only",
                         Error);
    CHECK_THROWS_WITH_AS(render({}), "[chat_template] the conversation has no messages", Error);
  }
}
