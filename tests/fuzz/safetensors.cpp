// Fuzz target: one safetensors file (header JSON, dtypes, shapes against the bytes, offsets), every tensor read as
// fp32 when not too large.
#include "fuzz.hpp"

#include <qlora/io/safetensors.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = qlora::fuzz::write("input.safetensors", {reinterpret_cast<const char*>(data), size});
  qlora::fuzz::expect_clean([&] {
    const qlora::SafetensorsFile f(path);
    for (const auto& t : f.tensors())
      if (t.numel() <= (1 << 16)) qlora::fuzz::expect_clean([&] { (void)f.read<float, qlora::Dyn>(t.name); });
  });
  return 0;
}
