// Fuzz target: a sharded checkpoint — the input is model.safetensors.index.json beside two valid shards (the
// sharded test checkpoint) and a third shard made of the input's second part.
#include "fuzz.hpp"

#include <qlora/io/safetensors.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const bool copied = [] {
    const std::filesystem::path src = std::filesystem::path(QLORA_TEST_DATA_DIR) / "io" / "safetensors" / "sharded";
    for (const char* f : {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"})
      std::filesystem::copy_file(src / f, qlora::fuzz::scratch() / f, std::filesystem::copy_options::overwrite_existing);
    return true;
  }();
  (void)copied;
  const auto [index, shard] = qlora::fuzz::split(data, size);
  qlora::fuzz::write("model-00003-of-00003.safetensors", shard);
  const auto path = qlora::fuzz::write("model.safetensors.index.json", index);
  qlora::fuzz::expect_clean([&] {
    const qlora::SafetensorsCheckpoint c(path);
    for (const auto& name : c.names())
      if (c.info(name).numel() <= (1 << 16)) qlora::fuzz::expect_clean([&] { (void)c.read<float, qlora::Dyn>(name); });
    qlora::fuzz::expect_clean([&] { (void)c.text_tensor_name("layers.0.self_attn.q_proj.weight"); });
  });
  return 0;
}
