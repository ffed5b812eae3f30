// Gemma3CausalLM<Cfg, T, W>: a statically composed Gemma3 model (nn/model.hpp) behind the CausalLM interface, and
// the definition of make_gemma3<Cfg, T, W>. Include this header in the one translation unit that instantiates a size
// (models/gemma3_*.cpp do it with QLORA_INSTANTIATE_GEMMA3); everywhere else nn/causal_lm.hpp is enough.
#pragma once

#include <memory>
#include <mutex>

#include "../train/generate.hpp"
#include "causal_lm_of.hpp"
#include "model.hpp"

namespace qlora {

template <class Cfg, class T, class W>
class Gemma3CausalLM final : public CausalLMOf<Gemma3<Cfg, T, W>> {
  static_assert(std::is_same_v<T, float>, "CausalLM models compute in fp32 (fp64 models are for gradchecks)");
  using base = CausalLMOf<Gemma3<Cfg, T, W>>;

 public:
  using typename base::model_type;
  using base::base;

  index_t layers() const override { return this->model_.runtime_config().layers; }
  index_t vocab() const override { return this->model_.runtime_config().vocab; }
  std::unique_ptr<DecodeSession> decoder(index_t capacity, DecodeKernel kernel = DecodeKernel::fp32) const override {
    if (kernel == DecodeKernel::fp32) return std::make_unique<KvCache<model_type>>(this->model_, capacity, nullptr);
    const std::lock_guard<std::mutex> lock(packing_mutex_);
    if (!packed_) packed_ = KvCache<model_type>::packed_weights_of(this->model_);
    return std::make_unique<KvCache<model_type>>(this->model_, capacity, packed_);
  }

 private:
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
