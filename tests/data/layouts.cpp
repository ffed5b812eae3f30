// The named data set layouts (data/layouts.hpp): what each renders, what is learned, and the errors for layouts and
// options that do not fit.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include <qlora/data/layouts.hpp>

using namespace qlora;

namespace {

Record layout_record(nlohmann::json fields) { return {std::move(fields), "l.jsonl:1"}; }

// The rendered text, with the learned part in [[...]].
std::string marked(const std::vector<ChatSegment>& segments) {
  std::string out;
  for (const auto& s : segments) out += s.learned ? "[[" + s.text + "]]" : s.text;
  return out;
}

std::string render(const DatasetFormat& f, const nlohmann::json& fields) {
  return marked(RecordRenderer(f).render(layout_record(fields), DatasetOptions{}));
}

}  // namespace

TEST_SUITE("data") {
  TEST_CASE("alpaca: the Stanford prompt, its no-input form where input is empty or absent; the output learned") {
    const auto f = dataset_layout("alpaca");
    CHECK(render(f, {{"instruction", "Add 2 and 3."}, {"input", "2, 3"}, {"output", "5"}}) ==
          "<bos>Below is an instruction that describes a task, paired with an input that provides further context. "
          "Write a response that appropriately completes the request.\n\n### Instruction:\nAdd 2 and 3.\n\n"
          "### Input:\n2, 3\n\n### Response:\n[[5]][[<eos>]]");
    const std::string no_input = "<bos>Below is an instruction that describes a task. Write a response that "
                                 "appropriately completes the request.\n\n### Instruction:\nSay hi.\n\n### Response:\n"
                                 "[[hi]][[<eos>]]";
    CHECK(render(f, {{"instruction", "Say hi."}, {"input", ""}, {"output", "hi"}}) == no_input);
    CHECK(render(f, {{"instruction", "Say hi."}, {"output", "hi"}}) == no_input);
    CHECK(render(f, {{"instruction", "Say hi."}, {"input", nullptr}, {"output", "hi"}}) == no_input);
    CHECK_THROWS_WITH_AS(render(f, {{"instruction", "Say hi."}}),
                         doctest::Contains("record has no field 'output' (for slot {output}); its fields: instruction"),
                         Error);
  }

  TEST_CASE("sharegpt renders as the same conversation in OpenAI's messages layout") {
    const nlohmann::json sharegpt = {{"conversations",
                                      {{{"from", "system"}, {"value", "Be brief."}},
                                       {{"from", "human"}, {"value", "2+2?"}},
                                       {{"from", "gpt"}, {"value", "4"}}}}};
    const nlohmann::json messages = {{"messages",
                                      {{{"role", "system"}, {"content", "Be brief."}},
                                       {{"role", "user"}, {"content", "2+2?"}},
                                       {{"role", "assistant"}, {"content", "4"}}}}};
    const std::string expected = render(dataset_layout("chat"), messages);
    CHECK(expected == "<bos><start_of_turn>user\nBe brief.\n\n2+2?<end_of_turn>\n<start_of_turn>model\n"
                      "[[4]][[<end_of_turn>]][[\n]]");
    CHECK(render(dataset_layout("sharegpt"), sharegpt) == expected);
    CHECK(render(dataset_layout("messages"), messages) == expected);
    LayoutOptions o;
    o.messages_field = "dialog";
    CHECK(render(dataset_layout("sharegpt", o), {{"dialog", sharegpt["conversations"]}}) == expected);
    CHECK_THROWS_WITH_AS(
        render(dataset_layout("sharegpt"), {{"conversations", {{{"from", "bot"}, {"value", "x"}}}}}),
        "[dataset] l.jsonl:1: message 1 has from 'bot'; known: assistant, gpt, human, model, system, user", Error);
    CHECK_THROWS_WITH_AS(render(dataset_layout("sharegpt"), {{"conversations", {{{"role", "user"}}}}}),
                         "[dataset] l.jsonl:1: message 1 of 'conversations' is not a {from, value} object", Error);
  }

  TEST_CASE("text learns every token; prompt-completion learns the completion; custom slots are field names") {
    CHECK(render(dataset_layout("text"), {{"text", "The sum is 4."}}) == "<bos>[[The sum is 4.]][[<eos>]]");
    LayoutOptions body;
    body.text_field = "body";
    CHECK(render(dataset_layout("text", body), {{"body", "x"}}) == "<bos>[[x]][[<eos>]]");
    CHECK(render(dataset_layout("prompt-completion"), {{"prompt", "2 + 2 ="}, {"completion", " 4"}}) ==
          "<bos>2 + 2 =[[ 4]][[<eos>]]");
    LayoutOptions custom;
    custom.prompt_template = "Q: {question} ({{units}})\nA: ";
    custom.response_template = "{answer}";
    CHECK(render(dataset_layout("custom", custom), {{"question", "2+2"}, {"answer", 4}}) ==
          "<bos>Q: 2+2 ({units})\nA: [[4]][[<eos>]]");
  }

  TEST_CASE("a question to generate from: the prompt part, and the learned part as the reference") {
    std::string reference;
    const auto alpaca = RecordRenderer(dataset_layout("alpaca"))
                            .question(layout_record({{"instruction", "Say hi."}, {"output", "hi"}}), reference);
    CHECK(marked(alpaca).ends_with("### Instruction:\nSay hi.\n\n### Response:\n"));
    CHECK(reference == "hi");
    const auto chat = RecordRenderer(dataset_layout("chat")).question(
        layout_record({{"messages", {{{"role", "user"}, {"content", "2+2?"}}, {{"role", "assistant"}, {"content", " 4 "}}}}}),
        reference);
    CHECK(marked(chat) == "<bos><start_of_turn>user\n2+2?<end_of_turn>\n<start_of_turn>model\n");
    CHECK(reference == "4");
  }

  TEST_CASE("layouts and options that do not fit are refused by name") {
    CHECK_THROWS_WITH_AS(dataset_layout("yaml"),
                         "[dataset] unknown data set layout 'yaml'; known: finance, alpaca, chat, messages, sharegpt, "
                         "text, prompt-completion, custom",
                         Error);
    LayoutOptions o;
    o.text_field = "body";
    CHECK_THROWS_WITH_AS(dataset_layout("alpaca", o), "[dataset] --dataset-text-field does not apply to the alpaca layout",
                         Error);
    o = {};
    o.prompt_template = "{q}";
    CHECK_THROWS_WITH_AS(dataset_layout("chat", o), doctest::Contains("make a custom layout"), Error);
    CHECK_THROWS_WITH_AS(dataset_layout("custom", o),
                         "[dataset] the custom layout needs --response-template (what the model learns)", Error);
    o.response_template = "{a";
    CHECK_THROWS_WITH_AS(dataset_layout("custom", o), doctest::Contains("is never closed"), Error);
  }
}
