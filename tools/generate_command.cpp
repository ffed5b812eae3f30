// qlora generate: answers from a Gemma 3 model (NF4 base, as it was trained, held dequantized so each token costs
// no dequantization; --base-weights original computes with the file's own weights instead, e.g. a merged model),
// with or without a PEFT LoRA adapter.
// Either one --prompt (rendered through the finance prompt template, as one chat user turn with --format chat, or
// as is with --raw), or --records: a JSONL file of records as finetune held them out (eval_records.jsonl in its
// output folder; finance fields or chat "messages"), each answered and written with its reference to --output as
// {"prompt", "prediction", "reference"} lines for `qlora evaluate --jsonl`. Every option is checked, and the adapter
// read, before the model is loaded.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <qlora/data/chat_template.hpp>
#include <qlora/data/dataset.hpp>
#include <qlora/data/gguf_vocabulary.hpp>
#include <qlora/data/layouts.hpp>
#include <qlora/data/records.hpp>
#include <qlora/nn/causal_lm.hpp>
#include <qlora/train/generate.hpp>
#include <qlora/train/text_stream.hpp>

#include "commands.hpp"
#include "cpu_gemm.hpp"
#include "model_path.hpp"

namespace qlora::cli {
namespace {

struct GenerateOptions {
  std::string model, adapter, prompt, records, output, base_weights = "nf4", cpu_gemm = "auto", decode_kernel = "int8";
  std::optional<std::string> format;
  LayoutOptions layout;
  bool raw = false;
  long limit = 0;
  GenerationConfig gen;
};

struct Question {
  std::vector<std::int32_t> ids;
  std::string prompt, reference;
};

// The layout records are read with: --format (or the custom templates) when given; else each record's own keys tell
// (messages: chat, conversations: sharegpt, otherwise the finance fields), as finetune's eval_records.jsonl has them.
DatasetFormat layout_of(const GenerateOptions& o, const Record* r) {
  if (o.format || o.layout.prompt_template || o.layout.response_template)
    return dataset_layout(o.format.value_or("custom"), o.layout);
  if (r && r->fields.contains("messages")) return dataset_layout("chat", o.layout);
  if (r && r->fields.contains("conversations")) return dataset_layout("sharegpt", o.layout);
  return dataset_layout("finance", o.layout);
}

// --prompt as a record of the layout: a user turn for conversations, else the one prompt slot filled (alpaca's
// instruction with no input); a layout whose prompt has no slot (text) takes it as raw text.
std::optional<Record> prompt_record(const DatasetFormat& format, const std::string& prompt) {
  if (const auto* chat = std::get_if<ChatFormat>(&format)) {
    nlohmann::json turn = {{chat->role_key, chat->role_names.empty() ? "user" : "human"}, {chat->content_key, prompt}};
    return Record{{{chat->messages_field, nlohmann::json::array({turn})}}, "--prompt"};
  }
  const auto& t = std::get<TemplatedFormat>(format);
  std::vector<std::string> slots;
  for (const auto& slot : detail::template_slots(t.prompt_template.prompt, "prompt"))
    if (slot != t.optional_slot) slots.push_back(slot);
  if (slots.empty()) return std::nullopt;
  if (slots.size() > 1)
    fail("generate", "--prompt fills one slot, and this layout's prompt has ", slots.size(), " ({", slots[0], "}, {",
         slots[1], "}, ...): put the questions in a JSONL file and use --records");
  Record r{nlohmann::json::object(), "--prompt"};
  for (const auto& [slot, field] : t.fields) r.fields[field] = slot == slots[0] ? prompt : "";
  if (!t.optional_slot.empty()) r.fields.erase(t.fields.at(t.optional_slot));
  return r;
}

std::vector<Question> questions(const GenerateOptions& o, const Tokenizer& tok) {
  std::vector<Question> out;
  auto ask = [&](const RecordRenderer& renderer, const Record& r) {
    Question q;
    std::vector<std::int32_t> labels;
    const std::vector<ChatSegment> prompt = renderer.question(r, q.reference);
    encode_segments(tok, prompt, false, q.ids, labels);
    q.prompt = to_text(prompt);
    out.push_back(std::move(q));
  };
  if (!o.prompt.empty()) {
    const DatasetFormat format = layout_of(o, nullptr);
    const std::optional<Record> record = o.raw ? std::nullopt : prompt_record(format, o.prompt);
    if (!record) {
      Question q;
      q.ids.push_back(tok.bos_id());
      const auto ids = tok.encode(o.prompt);
      q.ids.insert(q.ids.end(), ids.begin(), ids.end());
      q.prompt = o.prompt;
      out.push_back(std::move(q));
    } else {
      ask(RecordRenderer(format), *record);
    }
    return out;
  }
  const auto records = load_records(o.records);
  for (const auto& r : records) {
    if (o.limit > 0 && static_cast<long>(out.size()) >= o.limit) break;
    ask(RecordRenderer(layout_of(o, &r)), r);
  }
  return out;
}

int answer_all(const CausalLM& model, const Tokenizer& tok, const GenerateOptions& o,
               const std::vector<std::int32_t>& eos_ids) {
  GenerationConfig gen = o.gen;
  gen.stop_ids = {tok.eos_id(), tok.token_id("<end_of_turn>")};
  for (std::int32_t id : eos_ids)  // generation_config.json's eos_token_id, as transformers stops
    if (std::find(gen.stop_ids.begin(), gen.stop_ids.end(), id) == gen.stop_ids.end()) gen.stop_ids.push_back(id);
  std::ofstream out;
  if (!o.output.empty()) {
    out.open(o.output);
    if (!out) fail("generate", o.output, ": cannot write");
  }
  for (const Question& q : questions(o, tok)) {
    // The answer is printed as it is decoded (train/text_stream.hpp), then a line with the prefill and decode rates.
    std::printf("### prompt\n%s\n### answer\n", q.prompt.c_str());
    std::fflush(stdout);
    TextStream stream(tok, gen.stop_ids);
    GenerationConfig streaming = gen;
    streaming.on_token = [&](std::int32_t id) {
      const std::string piece = stream.push(id);
      if (piece.empty()) return;
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
    };
    const Generation g = generate(model, q.ids, streaming);
    const std::string rest = stream.finish();
    const std::string answer = stream.text();
    std::printf("%s\n### %zu tokens | prefill %ld tokens in %.2f s (%.1f tokens/s) | decode %ld tokens in %.2f s "
                "(%.1f tokens/s)\n\n", rest.c_str(), g.tokens.size(), static_cast<long>(g.prompt_tokens),
                g.prefill_seconds, g.prefill_tokens_per_second(), static_cast<long>(g.decode_passes), g.decode_seconds,
                g.decode_tokens_per_second());
    std::fflush(stdout);
    if (out) out << nlohmann::json{{"prompt", q.prompt}, {"prediction", answer}, {"reference", q.reference}}.dump() << "\n";
  }
  return 0;
}

// Every option checked, and the adapter and records read, before the model is loaded.
void check_options(const GenerateOptions& o) {
  if (o.prompt.empty() == o.records.empty()) fail("generate", "give either --prompt or --records");
  if (o.gen.max_new_tokens < 1) fail("generate", "--max-new-tokens must be >= 1, got ", o.gen.max_new_tokens);
  if (o.limit < 0) fail("generate", "--limit must not be negative (0: every record), got ", o.limit);
  if (!std::isfinite(o.gen.sampling.temperature))
    fail("generate", "--temperature must be a finite number, got ", o.gen.sampling.temperature);
  validate(o.gen.sampling);
  if (o.base_weights != "nf4" && o.base_weights != "original")
    fail("generate", "--base-weights ", o.base_weights, ": use nf4 or original");
  (void)decode_kernel_named(o.decode_kernel);
  if (o.format || o.layout.prompt_template || o.layout.response_template) (void)layout_of(o, nullptr);  // names, templates
  if (o.raw && o.prompt.empty()) fail("generate", "--raw applies to --prompt");
  if (!o.records.empty())
    for (const auto& file : data_files(o.records))
      if (!std::filesystem::is_regular_file(file)) fail("generate", "--records ", file, ": no such file");
  if (!o.output.empty()) {
    const std::filesystem::path out(o.output);
    if (std::filesystem::is_directory(out)) fail("generate", "--output ", o.output, ": is a folder; give a file name");
    const auto parent = out.has_parent_path() ? out.parent_path() : std::filesystem::path(".");
    if (!std::filesystem::is_directory(parent)) fail("generate", "--output ", o.output, ": folder ", parent.string(), " does not exist");
  }
}

int run(const GenerateOptions& o) {
  check_options(o);
  const CpuGemm gemm = choose_cpu_gemm(o.cpu_gemm, false, "generate");  // an unavailable one: refused before loading
  announce_cpu_gemm(gemm);
  // The adapter (its config checked against its tensors) before the model: a bad adapter costs no loading time.
  Gemma3Options options;
  std::optional<peft::Adapter> adapter;
  if (!o.adapter.empty()) {
    adapter = peft::load_adapter(o.adapter);
    LoraConfig config = adapter->config;
    config.lora_dropout = 0;
    options.lora = LoraTargets(config);
  }
  const auto path = o.model.empty() ? default_model_path() : std::filesystem::path(o.model);
  const Gemma3WeightSource source = Gemma3WeightSource::open(path);
  describe_source(source);
  const Tokenizer tok = open_tokenizer(source);
  options.device = Device::cpu(gemm);
  // The NF4 model's numbers, dequantized once; with an adapter, the base it was trained on plus its LoRA weights
  // (each module's rank and alpha from the adapter's config; no dropout).
  const auto model = open_causal_lm(source, options, o.base_weights == "nf4" ? CausalLMWeights::nf4_dequantized
                                                                             : CausalLMWeights::fp32);
  if (adapter) model->load_adapter(*adapter, o.adapter);
  GenerateOptions run_options = o;
  run_options.gen.decode_kernel = decode_kernel_named(o.decode_kernel);
  {  // the packing (int8) is made here, once, and said
    const auto start = std::chrono::steady_clock::now();
    const std::string products = model->decoder(1, run_options.gen.decode_kernel)->products();
    std::fprintf(stderr, "qlora: decode: %s (ready in %.2f s)\n", products.c_str(),
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  const std::vector<std::int32_t> eos_ids = source.folder().empty() ? std::vector<std::int32_t>{}
                                                                    : read_hf_folder(source.folder()).eos_token_ids;
  return answer_all(*model, tok, run_options, eos_ids);
}
}  // namespace

Command add_generate_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate", "Answer prompts with a Gemma 3 model, with or without a LoRA adapter");
  auto o = std::make_shared<GenerateOptions>();
  cmd->add_option("--model", o->model, "GGUF file or checkpoint folder (default: Gemma 3 270M GGUF)");
  cmd->add_option("--adapter", o->adapter, "PEFT adapter folder (e.g. the output dir of qlora finetune)");
  cmd->add_option("--prompt", o->prompt, "A question, put into the training prompt template (or as is with --raw)");
  cmd->add_flag("--raw", o->raw, "Use --prompt as the whole prompt (after <bos>)");
  cmd->add_option("--format", o->format,
                  "The data set layout the adapter was trained with (as finetune's --format): finance (default for "
                  "--prompt), alpaca, chat, sharegpt, text, prompt-completion, custom; --records without it: "
                  "messages / conversations records are chats, others finance");
  cmd->add_option("--prompt-template", o->layout.prompt_template, "Custom layout's prompt template (as finetune)");
  cmd->add_option("--response-template", o->layout.response_template, "Custom layout's response template");
  cmd->add_option("--dataset-text-field", o->layout.text_field, "text layout: the field with the text");
  cmd->add_option("--messages-field", o->layout.messages_field, "chat / sharegpt layouts: the field with the turns");
  cmd->add_option("--records", o->records,
                  "JSONL records as finetune writes them (eval_records.jsonl); each is answered from its prompt "
                  "part (a conversation's turns before its final assistant turn), the rest is the reference");
  cmd->add_option("--limit", o->limit, "Answer only the first N records");
  cmd->add_option("--output", o->output, "Write {prompt, prediction, reference} JSONL lines here");
  cmd->add_option("--max-new-tokens", o->gen.max_new_tokens, "Tokens to generate at most (default 256)");
  cmd->add_flag("--do-sample", o->gen.sampling.do_sample, "Sample instead of greedy decoding");
  cmd->add_option("--temperature", o->gen.sampling.temperature, "Sampling temperature (default 1)");
  cmd->add_option("--top-k", o->gen.sampling.top_k, "Keep the k most likely tokens (default 50; 0: off)");
  cmd->add_option("--top-p", o->gen.sampling.top_p, "Nucleus sampling threshold (default 1: off)");
  cmd->add_option("--seed", o->gen.sampling.seed, "Seed of the sampling draws");
  cmd->add_option("--cpu-gemm", o->cpu_gemm,
                  "The CPU's GEMM: auto (the default; oneDNN's fp32 where qlora was built with it, else Eigen), "
                  "eigen, onednn");
  cmd->add_option("--base-weights", o->base_weights,
                  "nf4 (default: the NF4 values training used) or original (the file's weights as they are, e.g. a "
                  "model qlora merge wrote)");
  cmd->add_option("--decode-kernel", o->decode_kernel,
                  "int8 (the default: each new token through int8 dot products over the packed weights, NF4 codes "
                  "for an NF4 base and Q8_0 elsewhere, as llama.cpp decodes) or fp32 (the model's own fp32 GEMMs: "
                  "logits exactly those of a full forward pass)");
  return [o]() { return run(*o); };
}

}  // namespace qlora::cli
