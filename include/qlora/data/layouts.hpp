// The data set layouts people have, by name, as TRL / Axolotl users know them; each is a DatasetFormat
// (data/dataset.hpp) the pipeline renders, masks and tokenizes:
//
//   finance            the recipe's records (Open-ended Verifiable Question, Complex_CoT, Response)
//   alpaca             {instruction, input, output}: the Stanford Alpaca prompt (its no-input form where input is
//                      empty or absent); the output is learned
//   chat / messages    OpenAI's {messages: [{role, content}]} through the Gemma 3 chat template; model turns learned
//   sharegpt           {conversations: [{from, value}]} (human / gpt / system) through the same template
//   text               one text field (TRL's dataset_text_field, default "text"), every token learned
//   prompt-completion  {prompt, completion} (TRL's prompt-completion type): the completion is learned
//   custom             --prompt-template / --response-template with named slots, each slot the record field of
//                      that name ("### Q: {question}\n### A: " / "{answer}")
//
// Template layouts end with <eos> (learned), conversations with their last <end_of_turn>.
#pragma once

#include <algorithm>
#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "../core/error.hpp"
#include "../core/text.hpp"
#include "dataset.hpp"
#include "prompt_template.hpp"

namespace qlora {

inline constexpr std::array<std::string_view, 8> dataset_layout_names = {
    "finance", "alpaca", "chat", "messages", "sharegpt", "text", "prompt-completion", "custom"};

// What a layout may be given besides its name (the CLI's --dataset-text-field, --messages-field, templates).
struct LayoutOptions {
  std::optional<std::string> text_field;      // text: the field holding the whole text (default "text")
  std::optional<std::string> messages_field;  // chat / sharegpt: the list of turns (default messages / conversations)
  std::optional<std::string> prompt_template, response_template;  // custom
};

// The Stanford Alpaca prompt, with and without its input section.
inline TemplatedFormat alpaca_format() {
  TemplatedFormat f;
  f.prompt_template = {"Below is an instruction that describes a task, paired with an input that provides further "
                       "context. Write a response that appropriately completes the request.\n\n### Instruction:\n"
                       "{instruction}\n\n### Input:\n{input}\n\n### Response:\n",
                       "{output}"};
  f.fields = {{"instruction", "instruction"}, {"input", "input"}, {"output", "output"}};
  f.optional_slot = "input";
  f.without_optional = {"Below is an instruction that describes a task. Write a response that appropriately "
                        "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n",
                        "{output}"};
  return f;
}

inline ChatFormat sharegpt_chat_format(std::string field = "conversations") {
  ChatFormat f;
  f.messages_field = std::move(field);
  f.role_key = "from";
  f.content_key = "value";
  f.role_names = {{"human", "user"}, {"gpt", "assistant"}, {"system", "system"}, {"user", "user"},
                  {"assistant", "assistant"}, {"model", "assistant"}};
  return f;
}

namespace detail {
// The slots of a template in order of appearance ("{a} {{x}} {b}" -> a, b).
inline std::vector<std::string> template_slots(std::string_view t, const char* which) {
  std::vector<std::string> out;
  for (const auto& p : parse_template(t, which))
    if (p.slot && std::find(out.begin(), out.end(), p.text) == out.end()) out.push_back(p.text);
  return out;
}
}  // namespace detail

// A custom template: every slot is the record field of the same name.
inline TemplatedFormat custom_template_format(const std::string& prompt, const std::string& response) {
  TemplatedFormat f;
  f.prompt_template = {prompt, response};
  for (const auto& slot : detail::template_slots(prompt, "prompt")) f.fields[slot] = slot;
  for (const auto& slot : detail::template_slots(response, "response")) f.fields[slot] = slot;
  return f;
}

// The layout called `name`; options that the layout does not take are errors (a --dataset-text-field given with
// --format alpaca would otherwise be silently ignored).
inline DatasetFormat dataset_layout(std::string_view name, const LayoutOptions& o = {}) {
  auto refuse = [&](bool given, const char* option) {
    if (given) fail("dataset", option, " does not apply to the ", name, " layout");
  };
  const bool templates = o.prompt_template || o.response_template;
  if (templates && name != "custom")
    fail("dataset", "--prompt-template / --response-template make a custom layout; the ", name,
         " layout has its own template (give --format custom, or leave --format out)");
  if (name != "text") refuse(o.text_field.has_value(), "--dataset-text-field");
  if (name != "chat" && name != "messages" && name != "sharegpt") refuse(o.messages_field.has_value(), "--messages-field");
  if (name == "finance") return finance_reasoning_format();
  if (name == "alpaca") return alpaca_format();
  if (name == "chat" || name == "messages") return ChatFormat{o.messages_field.value_or("messages")};
  if (name == "sharegpt") return sharegpt_chat_format(o.messages_field.value_or("conversations"));
  if (name == "text") {
    const std::string field = o.text_field.value_or("text");
    if (field.empty()) fail("dataset", "--dataset-text-field is empty");
    return TemplatedFormat{{"", "{text}"}, {{"text", field}}};
  }
  if (name == "prompt-completion")
    return TemplatedFormat{{"{prompt}", "{completion}"}, {{"prompt", "prompt"}, {"completion", "completion"}}};
  if (name == "custom") {
    if (!o.response_template) fail("dataset", "the custom layout needs --response-template (what the model learns)");
    const TemplatedFormat f = custom_template_format(o.prompt_template.value_or(""), *o.response_template);
    (void)FilledPromptTemplate(f.prompt_template, f.fields);  // the templates' syntax, checked now
    return f;
  }
  fail("dataset", "unknown data set layout '", name, "'; known: ", joined(dataset_layout_names));
}

}  // namespace qlora
