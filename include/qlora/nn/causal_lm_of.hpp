// CausalLMOf<Model>: the CausalLM overrides every compiled model shares, forwarding to a statically composed model
// (anything with name(), options(), loss_sum, lora_parameters, for_each_lora and logits, read from a weight source
// with options). Gemma3CausalLM (nn/gemma3_causal_lm.hpp) and Gemma4CausalLM (nn/gemma4_causal_lm.hpp) add their
// extents and decoding.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "adapter_io.hpp"
#include "causal_lm.hpp"

namespace qlora {

template <class Model>
class CausalLMOf : public CausalLM {
 public:
  using model_type = Model;

  template <class Source>
  CausalLMOf(const Source& source, const Gemma3Options& options) : model_(source, options), name_(model_.name()) {}

  std::string_view name() const override { return name_; }
  const Gemma3Options& options() const override { return model_.options(); }

  using CausalLM::loss_sum;
  CrossEntropySum<float> loss_sum(const ModelInput& in, const ForwardPass& pass) const override {
    return model_.loss_sum(in, pass);
  }
  ParameterList lora_parameters() const override { return model_.lora_parameters(); }
  index_t trainable_parameter_count() const override {
    index_t n = 0;
    model_.for_each_lora([&](index_t, Projection, const auto& l) { n += l.lora_a().numel() + l.lora_b().numel(); });
    return n;
  }
  std::vector<peft::AdapterTensor> text_adapter_tensors(peft::ModelLayout layout) const override {
    return adapter_tensors(model_, layout);
  }
  Tensor<float, Dyn, Dyn> logits(const ModelInput& in) const override { return model_.logits(in); }

  const model_type& model() const { return model_; }

 protected:
  void load_text_adapter(const peft::Adapter& adapter, const std::string& source) const override {
    qlora::load_adapter(model_, adapter, source);
  }

  model_type model_;

 private:
  std::string name_;
};

}  // namespace qlora
