// Fuzz target: optimizer.safetensors of a checkpoint, loaded into an AdamW and an 8-bit AdamW over two LoRA
// parameters (one larger than a quantization block of 256, one smaller).
#include "fuzz.hpp"

#include <qlora/io/optimizer_state.hpp>

namespace {
qlora::ParameterList parameters() {
  using V = qlora::Variable<float, qlora::Dyn>;
  return {qlora::Parameter("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
                           V::leaf(qlora::Tensor<float, qlora::Dyn>::zeros(300))),
          qlora::Parameter("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight",
                           V::leaf(qlora::Tensor<float, qlora::Dyn>::zeros(40)))};
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = qlora::fuzz::write("optimizer.safetensors", {reinterpret_cast<const char*>(data), size});
  // Built once: constructing the 8-bit optimizer (its quantization maps) costs more than reading a file.
  static qlora::AdamW adamw(parameters());
  static qlora::AdamW8bit adamw8bit(parameters());
  qlora::fuzz::expect_clean([&] { qlora::load_optimizer_state(adamw, path); });
  qlora::fuzz::expect_clean([&] { qlora::load_optimizer_state(adamw8bit, path); });
  return 0;
}
