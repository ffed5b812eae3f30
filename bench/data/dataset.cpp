// The data pipeline on the bundled examples/data/finance_reasoning.jsonl (400 records): reading + parsing the file,
// filling the default recipe template and tokenizing at max_length 512, then padded batches of 8 and packed rows.
// The tokenizer is byte-level (one token per UTF-8 byte), so the numbers measure our pipeline, not SentencePiece;
// counters give records/s and tokens/s.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <qlora/data/batch.hpp>
#include <qlora/data/dataset.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace {
using namespace qlora;

// Each UTF-8 byte b is token 1000 + b; specials have Gemma's ids. For this benchmark only.
struct ByteTokenizerForBench {
  std::vector<std::int32_t> encode(std::string_view text) const {
    std::vector<std::int32_t> ids(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) ids[i] = 1000 + static_cast<unsigned char>(text[i]);
    return ids;
  }
  std::int32_t bos_id() const { return 2; }
  std::int32_t eos_id() const { return 1; }
  std::int32_t pad_id() const { return 0; }
  std::int32_t token_id(std::string_view special) const { return special == "<start_of_turn>" ? 105 : 106; }
};

const std::string kPath = std::string(QLORA_SOURCE_DIR) + "/examples/data/finance_reasoning.jsonl";

DatasetOptions options() {
  DatasetOptions o;
  o.max_length = 512;
  return o;
}

void BM_dataset_load_template_tokenize(benchmark::State& state) {
  const ByteTokenizerForBench tok;
  std::size_t records = 0, tokens = 0;
  for (auto _ : state) {
    const auto d = load_dataset(kPath, finance_reasoning_format(), tok, options());
    records += d.samples.size();
    tokens += d.tokens;
    benchmark::DoNotOptimize(d.samples.data());
  }
  state.counters["records/s"] = benchmark::Counter(static_cast<double>(records), benchmark::Counter::kIsRate);
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(tokens), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_dataset_load_template_tokenize)->Unit(benchmark::kMillisecond);

// Batching alone (samples already tokenized): padded batches of 8, or rows packed to 512 tokens in batches of 8.
void BM_dataset_batches(benchmark::State& state) {
  const ByteTokenizerForBench tok;
  const auto d = load_dataset(kPath, finance_reasoning_format(), tok, options());
  const bool packed = state.range(0) != 0;
  for (auto _ : state) {
    const auto batches =
        make_batches(d.samples, 8, tok.pad_id(), packed ? std::optional<std::size_t>(512) : std::nullopt);
    benchmark::DoNotOptimize(batches.data());
  }
  state.counters["tokens/s"] =
      benchmark::Counter(static_cast<double>(d.tokens), benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(packed ? "packed" : "padded");
}
BENCHMARK(BM_dataset_batches)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);

}  // namespace
