// Fuzz target: trainer_state.json of a checkpoint.
#include "fuzz.hpp"

#include <qlora/io/trainer_state.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = qlora::fuzz::write("trainer_state.json", {reinterpret_cast<const char*>(data), size});
  qlora::fuzz::expect_clean([&] { (void)qlora::load_trainer_state(path); });
  return 0;
}
