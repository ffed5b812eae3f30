// Fuzz target: the data readers — JSONL, JSON and CSV records (the first byte picks the file type) — and the
// tokenized data set in the finance template and the chat format (the second byte), with the tiny test tokenizer.
#include "fuzz.hpp"

#include <qlora/data/dataset.hpp>
#include <qlora/data/tokenizer.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const qlora::Tokenizer tok = qlora::Tokenizer::from_model_file(
      (std::filesystem::path(QLORA_TEST_DATA_DIR) / "gemma3_mm" / "hf5" / "tokenizer.model").string());
  if (size < 2) return 0;
  static const char* const extensions[] = {"jsonl", "json", "csv"};
  const std::string name = std::string("records.") + extensions[data[0] % 3];
  const auto path = qlora::fuzz::write(name, {reinterpret_cast<const char*>(data + 2), size - 2});
  qlora::DatasetOptions options;
  options.max_length = 64 + data[1] % 64;
  options.train_on_prompt = data[1] & 0x80;
  qlora::fuzz::expect_clean([&] { (void)qlora::load_records(path.string()); });
  qlora::fuzz::expect_clean([&] {
    if (data[1] & 1) (void)qlora::load_dataset(path.string(), qlora::DatasetFormat{qlora::ChatFormat{}}, tok, options);
    else (void)qlora::load_dataset(path.string(), qlora::DatasetFormat{qlora::finance_reasoning_format()}, tok, options);
  });
  return 0;
}
