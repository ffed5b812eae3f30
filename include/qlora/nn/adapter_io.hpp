// A model's LoRA matrices to and from PEFT adapter folders (io/peft.hpp): the tensors under PEFT's names, and loading
// an adapter (ours or one PEFT wrote) into a model whose adapters must agree with the file — the same modules adapted,
// each matrix present with its shape (so its rank) and nothing extra — or a qlora::Error says what differs.
#pragma once

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "../io/peft.hpp"
#include "model.hpp"

namespace qlora {

// The LoRA config the model was built with (PEFT's adapter_config.json numbers).
template <class Model>
LoraConfig lora_config_of(const Model& model) {
  return model.options().lora.config();
}

// Every lora_A / lora_B of the model as [rows, cols] fp32 views, PEFT-named for the checkpoint class `layout`.
template <class Model>
std::vector<peft::AdapterTensor> adapter_tensors(const Model& model,
                                                 peft::ModelLayout layout = peft::ModelLayout::causal_lm) {
  std::vector<peft::AdapterTensor> out;
  model.for_each_lora([&](index_t layer, Projection p, const auto& proj) {
    const auto& a = proj.lora_a().value();
    const auto& b = proj.lora_b().value();
    out.push_back({peft::tensor_name(layer, p, peft::LoraMatrix::A, layout),
                   a.template reshape<Dyn, Dyn>(a.size(0), a.size(1))});
    out.push_back({peft::tensor_name(layer, p, peft::LoraMatrix::B, layout),
                   b.template reshape<Dyn, Dyn>(b.size(0), b.size(1))});
  });
  return out;
}

// Writes the model's adapter as PEFT does (save_pretrained).
template <class Model>
void save_adapter(const Model& model, const std::filesystem::path& dir, const std::string& base_model_name_or_path,
                  peft::ModelLayout layout = peft::ModelLayout::causal_lm) {
  peft::save_adapter(dir, lora_config_of(model), base_model_name_or_path, adapter_tensors(model, layout));
}

// Copies the adapter's text-model matrices into the model, which must carry an adapter of the same rank on exactly the
// modules the file has weights for (the model keeps its own lora_alpha / dropout: resuming may change them). Vision-
// tower entries (adapter.vision) are not the text model's: CausalLM keeps them to save them again.
template <class Model>
void load_adapter(const Model& model, const peft::Adapter& adapter, const std::string& source) {
  peft::check_tensors(adapter, source);
  // By (layer, projection, matrix): an adapter saved for either checkpoint class fits the same text model.
  std::map<std::string, const Tensor<float, Dyn, Dyn>*> by_name;
  for (const auto& t : adapter.tensors) {
    const auto n = peft::parse_tensor_name(t.name);  // present: checked above
    by_name[peft::tensor_name(n->layer, n->projection, n->matrix)] = &t.value;
  }
  std::size_t used = 0;
  for (const auto& mine : adapter_tensors(model)) {
    const auto it = by_name.find(mine.name);
    if (it == by_name.end())
      fail("peft", source, ": tensor ", mine.name, " is missing (the adapter does not target this module; the model "
           "was built for target_modules ", join_names(lora_config_of(model).target_modules), ")");
    const auto& t = *it->second;
    if (!(t.shape() == mine.value.shape()))
      fail("peft", source, ": tensor ", mine.name, " has shape ", t.shape().str(), ", the model needs ",
           mine.value.shape().str(), " (the rank of the model's LoRA config)");
    mine.value.copy_from(t);
    ++used;
  }
  if (used != adapter.tensors.size()) {
    for (const auto& t : adapter.tensors) {
      const auto p = peft::parse_tensor_name(t.name);
      if (!p || p->layer >= model.runtime_config().layers)
        fail("peft", source, ": tensor ", t.name, " belongs to no layer of a ", model.name(), " model");
      if (!model.blocks()[static_cast<std::size_t>(p->layer)].adapted(p->projection))
        fail("peft", source, ": tensor ", t.name, " adapts a module the model has no adapter on (its target_modules: ",
             join_names(lora_config_of(model).target_modules), ")");
    }
    fail("peft", source, ": ", adapter.tensors.size() - used, " tensors the model has no place for");
  }
}

template <class Model>
void load_adapter(const Model& model, const std::filesystem::path& dir) {
  load_adapter(model, peft::load_adapter(dir), dir.string());
}

}  // namespace qlora
