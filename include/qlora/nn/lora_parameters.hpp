// A model's LoRA matrices, walked block by block in PEFT's order (q, k, v, o, gate, up, down of each layer) and
// gathered as the optimizer's named parameters: shared by every model type whose blocks have for_each_projection.
#pragma once

#include <type_traits>

#include "../io/peft.hpp"
#include "../optim/parameter.hpp"
#include "adapter.hpp"

namespace qlora {

// fn(layer, projection, const LoraLinear&) for every adapted projection of `blocks`.
template <class Blocks, class Fn>
void for_each_block_lora(const Blocks& blocks, Fn&& fn) {
  for (const auto& block : blocks)
    block.for_each_projection([&](Projection p, const auto& proj) {
      if (const auto* lora = proj.lora()) fn(block.layer(), p, *lora);
    });
}

// The trainable LoRA matrices of `model` (anything with for_each_lora) under PEFT's names, A before B.
template <class Model>
ParameterList lora_parameter_list(const Model& model) {
  ParameterList params;
  model.for_each_lora([&](index_t layer, Projection p, const auto& lora) {
    params.emplace_back(peft::tensor_name(layer, p, peft::LoraMatrix::A), lora.lora_a());
    params.emplace_back(peft::tensor_name(layer, p, peft::LoraMatrix::B), lora.lora_b());
  });
  return params;
}

}  // namespace qlora
