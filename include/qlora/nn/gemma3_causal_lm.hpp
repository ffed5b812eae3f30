// Gemma3CausalLM<Cfg, T, W>: a statically composed Gemma3 model (nn/model.hpp) behind the CausalLM interface, and
// the definition of make_gemma3<Cfg, T, W>. Include this header in the one translation unit that instantiates a size
// (models/gemma3_*.cpp do it with QLORA_INSTANTIATE_GEMMA3); everywhere else nn/causal_lm.hpp is enough.
#pragma once

#include <memory>
#include <mutex>

#include "../train/generate.hpp"
#include "adapter_io.hpp"
#include "causal_lm.hpp"
#include "model.hpp"

namespace qlora {

template <class Cfg, class T, class W>
class Gemma3CausalLM final : public CausalLM {
  static_assert(std::is_same_v<T, float>, "CausalLM models compute in fp32 (fp64 models are for gradchecks)");

 public:
  using model_type = Gemma3<Cfg, T, W>;

  Gemma3CausalLM(const Gemma3WeightSource& source, const Gemma3Options& options)
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
  index_t trainable_parameter_count() const override { return model_.trainable_parameter_count(); }
  std::vector<peft::AdapterTensor> text_adapter_tensors(peft::ModelLayout layout) const override {
    return adapter_tensors(model_, layout);
  }
  Tensor<float, Dyn, Dyn> logits(const ModelInput& in) const override { return model_.logits(in); }
  std::unique_ptr<DecodeSession> decoder(index_t capacity, DecodeKernel kernel = DecodeKernel::fp32) const override {
    if (kernel == DecodeKernel::fp32) return std::make_unique<KvCache<model_type>>(model_, capacity, nullptr);
    const std::lock_guard<std::mutex> lock(packing_mutex_);
    if (!packed_) packed_ = KvCache<model_type>::packed_weights_of(model_);
    return std::make_unique<KvCache<model_type>>(model_, capacity, packed_);
  }

  const model_type& model() const { return model_; }

 protected:
  void load_text_adapter(const peft::Adapter& adapter, const std::string& source) const override {
    qlora::load_adapter(model_, adapter, source);
  }

 private:
  model_type model_;
  std::string name_;
  mutable std::mutex packing_mutex_;
  mutable std::shared_ptr<const DecodeWeights> packed_;  // DecodeKernel::int8's packing, made at the first use
};

template <class Cfg, class T, class W>
std::unique_ptr<CausalLM> make_gemma3(const Gemma3WeightSource& source, const Gemma3Options& options) {
  return std::make_unique<Gemma3CausalLM<Cfg, T, W>>(source, options);
}

}  // namespace qlora

// The explicit instantiations of one size for open_causal_lm: the NF4 training model and the dequantized one that
// generation uses. One translation unit per size (models/gemma3_<size>.cpp).
#define QLORA_INSTANTIATE_GEMMA3(Cfg)                                                                            \
  template std::unique_ptr<::qlora::CausalLM> qlora::make_gemma3<Cfg, float, ::qlora::NF4>(                     \
      const ::qlora::Gemma3WeightSource&, const ::qlora::Gemma3Options&);                                      \
  template std::unique_ptr<::qlora::CausalLM> qlora::make_gemma3<Cfg, float, float>(                            \
      const ::qlora::Gemma3WeightSource&, const ::qlora::Gemma3Options&)
