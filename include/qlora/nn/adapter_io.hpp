// A model's LoRA matrices to and from PEFT adapter folders (io/peft.hpp): the tensors under PEFT's names, and loading
// an adapter (ours or one PEFT wrote) into a model whose Adapter type must agree with the file — same rank, same
// target modules, every matrix present with its shape, nothing extra — or a qlora::Error says what differs.
#pragma once

#include <algorithm>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "../io/peft.hpp"
#include "model.hpp"

namespace qlora {

// The LoRA config that describes a model's Adapter type with the model's LoRA numbers.
template <class Model>
LoraConfig lora_config_of(const Model& model) {
  LoraConfig c;
  c.r = Model::adapter::rank;
  c.lora_alpha = model.options().lora.alpha;
  c.lora_dropout = model.options().lora.dropout;
  c.use_rslora = model.options().lora.use_rslora;
  c.target_modules.clear();
  for (Projection p : Model::adapter::targets) c.target_modules.emplace_back(name_of(p));
  return c;
}

// Every lora_A / lora_B of the model as [rows, cols] fp32 views, PEFT-named.
template <class Model>
std::vector<peft::AdapterTensor> adapter_tensors(const Model& model) {
  std::vector<peft::AdapterTensor> out;
  model.for_each_lora([&](index_t layer, Projection p, const auto& proj) {
    const auto& a = proj.lora_a().value();
    const auto& b = proj.lora_b().value();
    out.push_back({peft::tensor_name(layer, p, peft::LoraMatrix::A), a.template reshape<Dyn, Dyn>(a.size(0), a.size(1))});
    out.push_back({peft::tensor_name(layer, p, peft::LoraMatrix::B), b.template reshape<Dyn, Dyn>(b.size(0), b.size(1))});
  });
  return out;
}

// Writes the model's adapter as PEFT does (save_pretrained).
template <class Model>
void save_adapter(const Model& model, const std::filesystem::path& dir, const std::string& base_model_name_or_path) {
  peft::save_adapter(dir, lora_config_of(model), base_model_name_or_path, adapter_tensors(model));
}

// Copies the adapter's matrices into the model (which keeps its own lora_alpha / dropout unless `take_hyper`).
template <class Model>
void load_adapter(const Model& model, const peft::Adapter& adapter, const std::string& source) {
  const LoraConfig want = lora_config_of(model);
  if (adapter.config.r != want.r)
    fail("peft", source, ": the adapter has r ", adapter.config.r, " but the model was built for r ", want.r);
  const std::set<std::string> have(adapter.config.target_modules.begin(), adapter.config.target_modules.end());
  const std::set<std::string> need(want.target_modules.begin(), want.target_modules.end());
  if (have != need) {
    std::string h, n;
    for (const auto& s : have) h += (h.empty() ? "" : ",") + s;
    for (const auto& s : need) n += (n.empty() ? "" : ",") + s;
    fail("peft", source, ": the adapter targets ", h, " but the model was built for ", n);
  }
  std::map<std::string, const Tensor<float, Dyn, Dyn>*> by_name;
  for (const auto& t : adapter.tensors) by_name[t.name] = &t.value;
  std::size_t used = 0;
  for (const auto& mine : adapter_tensors(model)) {
    const auto it = by_name.find(mine.name);
    if (it == by_name.end()) fail("peft", source, ": tensor ", mine.name, " is missing");
    const auto& t = *it->second;
    if (!(t.shape() == mine.value.shape()))
      fail("peft", source, ": tensor ", mine.name, " has shape ", t.shape().str(), ", the model needs ",
           mine.value.shape().str());
    mine.value.copy_from(t);
    ++used;
  }
  if (used != adapter.tensors.size()) {
    for (const auto& t : adapter.tensors) {
      const auto p = peft::parse_tensor_name(t.name);
      if (!p || p->layer >= Model::config::layers)
        fail("peft", source, ": tensor ", t.name, " belongs to no layer of a ", Model::config::name, " model");
    }
    fail("peft", source, ": ", adapter.tensors.size() - used, " tensors the model has no place for");
  }
}

template <class Model>
void load_adapter(const Model& model, const std::filesystem::path& dir) {
  load_adapter(model, peft::load_adapter(dir), dir.string());
}

}  // namespace qlora
