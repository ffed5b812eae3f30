// Loading, templating and tokenizing the bundled finance set (all 400 records, max_length 512) with the real Gemma 3
// tokenizer built from the 270M GGUF (QLORA_MODEL, set by scripts/fetch-model); skips without it.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <optional>

#include <qlora/data/dataset.hpp>
#include <qlora/data/gguf_vocabulary.hpp>

namespace {
using namespace qlora;

void BM_dataset_tokenize_gemma3(benchmark::State& state) {
  const char* model = std::getenv("QLORA_MODEL");
  if (!model || !std::filesystem::exists(model)) {
    state.SkipWithError("QLORA_MODEL is not set to the Gemma 3 270M GGUF");
    return;
  }
  const Tokenizer tok = tokenizer_from_gguf(GgufFile(model));
  const std::string path = std::string(QLORA_SOURCE_DIR) + "/examples/data/finance_reasoning.jsonl";
  DatasetOptions options;
  options.max_length = 512;
  std::size_t records = 0, tokens = 0, truncated = 0;
  for (auto _ : state) {
    const auto d = load_dataset(path, finance_reasoning_format(), tok, options);
    records = d.samples.size();
    tokens = d.tokens;
    truncated = d.truncated;
    benchmark::DoNotOptimize(d.samples.data());
  }
  state.counters["records"] = static_cast<double>(records);
  state.counters["tokens"] = static_cast<double>(tokens);
  state.counters["truncated"] = static_cast<double>(truncated);
}
BENCHMARK(BM_dataset_tokenize_gemma3)->Unit(benchmark::kMillisecond)->UseRealTime();
}  // namespace
