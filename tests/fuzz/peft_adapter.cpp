// Fuzz target: a PEFT adapter folder — adapter_config.json (the input's first part) and adapter_model.safetensors
// (the second) — read by peft::load_adapter, which checks the config against every tensor.
#include "fuzz.hpp"

#include <qlora/io/peft.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto [config, weights] = qlora::fuzz::split(data, size);
  qlora::fuzz::write("adapter_config.json", config);
  qlora::fuzz::write("adapter_model.safetensors", weights);
  qlora::fuzz::expect_clean([&] { (void)qlora::peft::load_adapter(qlora::fuzz::scratch()); });
  return 0;
}
