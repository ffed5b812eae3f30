// Model options with a LoRA adapter, for tests: PEFT's LoraConfig numbers in one call.
#pragma once

#include <string>
#include <vector>

#include <qlora/nn/block.hpp>

namespace qlora::test {

inline LoraConfig lora_config(long r, std::vector<std::string> targets, double alpha = 8, double dropout = 0,
                              bool use_rslora = false) {
  LoraConfig c;
  c.r = r;
  c.lora_alpha = alpha;
  c.lora_dropout = dropout;
  c.target_modules = std::move(targets);
  c.use_rslora = use_rslora;
  return c;
}

inline Gemma3Options lora_options(long r, std::vector<std::string> targets, double alpha = 8, double dropout = 0) {
  Gemma3Options o;
  o.lora = LoraTargets(lora_config(r, std::move(targets), alpha, dropout));
  return o;
}

}  // namespace qlora::test
