// Gemma4CausalLM<W>: Gemma 4's text model (nn/gemma4.hpp, run-time extents) behind the CausalLM interface, and the
// class open_causal_lm makes of a Gemma4WeightSource (models/gemma4.cpp); everywhere else nn/causal_lm.hpp is enough.
#pragma once

#include <memory>
#include <string>

#include "adapter_io.hpp"
#include "causal_lm.hpp"
#include "gemma4.hpp"

namespace qlora {

template <class W>
class Gemma4CausalLM final : public CausalLM {
 public:
  using model_type = Gemma4<float, W>;

  Gemma4CausalLM(const Gemma4WeightSource& source, const Gemma3Options& options)
      : model_(source, options), name_(model_.name()) {}

  std::string_view name() const override { return name_; }
  index_t layers() const override { return model_.runtime_config().layers; }
  index_t vocab() const override { return model_.runtime_config().vocab; }
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
  std::unique_ptr<DecodeSession> decoder(index_t, DecodeKernel) const override {
    fail("generate", name_, ": qlora has no KV-cache decoding for Gemma 4 yet (layers that reuse another layer's keys "
         "and values need a cache of the producers only; docs/gemma4.md)");
  }

  const model_type& model() const { return model_; }

 protected:
  void load_text_adapter(const peft::Adapter& adapter, const std::string& source) const override {
    qlora::load_adapter(model_, adapter, source);
  }

 private:
  model_type model_;
  std::string name_;
};

}  // namespace qlora
