// Fuzz target: the GGUF reader (header, metadata, tensor infos, data), the Gemma 3 configuration and the tokenizer
// built from a GGUF vocabulary, and reading every tensor that is not too large.
#include "fuzz.hpp"

#include <qlora/data/gguf_vocabulary.hpp>
#include <qlora/io/gguf.hpp>
#include <qlora/nn/config_io.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = qlora::fuzz::write("input.gguf", {reinterpret_cast<const char*>(data), size});
  qlora::fuzz::expect_clean([&] {
    const qlora::GgufFile f(path);
    qlora::fuzz::expect_clean([&] { (void)qlora::gemma3_config_from_gguf(f); });
    qlora::fuzz::expect_clean([&] {
      const auto tok = qlora::tokenizer_from_gguf(f);
      (void)tok.decode(tok.encode("<start_of_turn>user\n12.5% of $40?"));
    });
    for (const auto& t : f.tensors())
      if (t.numel() <= (1 << 16)) qlora::fuzz::expect_clean([&] { (void)f.read<float, qlora::Dyn>(t.name); });
  });
  return 0;
}
