// Fuzz target: a Hugging Face folder's JSON files — config.json (transformers 4 and 5 forms, text_config,
// layer_types, rope parameters) through Gemma3WeightSource::open, and tokenizer_config.json /
// generation_config.json through read_hf_folder; the first byte picks which.
#include "fuzz.hpp"

#include <qlora/io/hf_folder.hpp>
#include <qlora/nn/weights.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  const auto dir = qlora::fuzz::scratch();
  for (const char* f : {"config.json", "tokenizer_config.json", "generation_config.json", "chat_template.jinja"})
    std::filesystem::remove(dir / f);
  switch (data[0] % 3) {
    case 0:
      qlora::fuzz::write("config.json", text);
      qlora::fuzz::expect_clean([&] {
        const auto source = qlora::Gemma3WeightSource::open(dir);
        (void)source.layout();
        (void)qlora::model_name(source.config(), "fuzz");
      });
      break;
    case 1:
      qlora::fuzz::write("tokenizer_config.json", text);
      qlora::fuzz::expect_clean([&] { (void)qlora::read_hf_folder(dir); });
      break;
    default:
      qlora::fuzz::write("generation_config.json", text);
      qlora::fuzz::expect_clean([&] { (void)qlora::read_hf_folder(dir); });
  }
  return 0;
}
