// Answering a finance question with Gemma 3 270M, optionally with a LoRA adapter: the question goes through the
// training prompt template (the part before the response, as `qlora generate --prompt` does), then greedy decoding
// with the KV cache (train/generate.hpp) until <end_of_turn>, <eos> or max new tokens.
//   build/bin/example_generate [model.gguf | -] [adapter folder | -] [max new tokens = 160]
// The model is argv[1] or, when it is missing or "-", $QLORA_MODEL (scripts/fetch-model); without one the example
// exits 77. The adapter is any PEFT LoRA folder (qlora finetune and example_custom_loop write them; its config gives
// the ranks and targets); without one the base model answers. The model is picked from the file at run time
// (open_causal_lm, nn/causal_lm.hpp): this program links qlora::models instead of compiling a model type.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <qlora/data/dataset.hpp>
#include <qlora/data/gguf_vocabulary.hpp>
#include <qlora/nn/causal_lm.hpp>
#include <qlora/train/generate.hpp>

using namespace qlora;

int main(int argc, char** argv) try {
  const char* env = std::getenv("QLORA_MODEL");
  const std::string model_path = argc > 1 && std::string(argv[1]) != "-" ? argv[1] : env ? env : "";
  const std::string adapter_dir = argc > 2 && std::string(argv[2]) != "-" ? argv[2] : "";
  const index_t max_new_tokens = argc > 3 ? std::atol(argv[3]) : 160;
  if (model_path.empty()) {
    std::printf("skipped: give a Gemma 3 270M GGUF as argv[1] or QLORA_MODEL (scripts/fetch-model)\n");
    return 77;
  }

  // 1. The model, with the adapter's ranks, targets and alphas when there is one (its matrices are copied in below).
  const Gemma3WeightSource source = Gemma3WeightSource::open(model_path);
  const Tokenizer tok = source.is_gguf() ? tokenizer_from_gguf(*source.gguf())
                                         : Tokenizer::from_model_file(model_path + "/tokenizer.model");
  Gemma3Options options;
  const peft::Adapter adapter = adapter_dir.empty() ? peft::Adapter{} : peft::load_adapter(adapter_dir);
  if (!adapter_dir.empty()) options.lora = LoraTargets(adapter.config);  // the adapter's ranks, targets and alphas
  const std::unique_ptr<CausalLM> model = open_causal_lm(source, options);  // the NF4 base, as in training
  if (!adapter_dir.empty()) model->load_adapter(adapter, adapter_dir);   // checks modules and every shape

  // 2. The prompt: <bos> + the template's prompt part with the question in its slot; the response part is what the
  //    model writes, so only the segments that are not learned are encoded.
  const std::string question =
      "Please answer the given financial question based on the context.\n"
      "Context: Halvard Foods (in $ millions)\n| Item | 2021 | 2022 |\n|---|---|---|\n| Revenue | 812.5 | 903.0 |\n"
      "Question: What was the percentage change in revenue from 2021 to 2022?\nAnswer:";
  const TemplatedFormat format = finance_reasoning_format();
  const FilledPromptTemplate prompt_template(format.prompt_template, format.fields);
  const Record record{{{"Open-ended Verifiable Question", question}, {"Complex_CoT", ""}, {"Response", ""}}, "example"};
  std::vector<ChatSegment> prompt;
  for (const ChatSegment& s : prompt_template.render(record, false))
    if (!s.learned) prompt.push_back(s);
  std::vector<std::int32_t> ids, labels;
  encode_segments(tok, prompt, false, ids, labels);

  // 3. Greedy decoding with the KV cache: one prefill over the prompt, then one token at a time.
  GenerationConfig gen;
  gen.max_new_tokens = max_new_tokens;
  gen.stop_ids = {tok.eos_id(), tok.token_id("<end_of_turn>")};
  gen.decode_kernel = DecodeKernel::int8;  // tokens from packed NF4 / Q8_0 weights, as llama.cpp (fp32: exact GEMMs)
  const auto start = std::chrono::steady_clock::now();
  const Generation g = generate(*model, ids, gen);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  std::vector<std::int32_t> answer = g.tokens;
  if (g.stopped) answer.pop_back();  // the stop token is kept in g.tokens, as transformers keeps it
  const std::string who = adapter_dir.empty() ? "base model" : "adapter " + adapter_dir;
  std::printf("### prompt (%zu tokens)\n%s\n### answer (%s)\n%s\n", ids.size(), to_text(prompt).c_str(), who.c_str(),
              tok.decode(answer).c_str());
  std::printf("### %zu new tokens in %.2f s: %.1f tokens/s (prefill included)%s\n", g.tokens.size(), seconds,
              static_cast<double>(g.tokens.size()) / seconds, g.stopped ? ", ended on a stop token" : "");
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "example_generate: %s\n", e.what());
  return 1;
}
