// Fuzz target: a tokenizer.model (a serialized SentencePiece ModelProto): qlora's own proto walk (piece types) and
// SentencePiece's loader, then a round trip of a text with special pieces.
#include "fuzz.hpp"

#include <qlora/data/tokenizer.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string proto(reinterpret_cast<const char*>(data), size);
  qlora::fuzz::expect_clean([&] {
    const auto tok = qlora::Tokenizer::from_serialized_proto(proto, "fuzz");
    (void)tok.decode(tok.encode("<bos><start_of_turn>model\nRevenue: $1,234.56 (+7%)<end_of_turn>"));
    (void)tok.vocabulary();
  });
  return 0;
}
