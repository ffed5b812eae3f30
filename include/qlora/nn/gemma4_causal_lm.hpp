// Gemma4CausalLM<W>: Gemma 4's text model (nn/gemma4.hpp, run-time extents) behind the CausalLM interface, and the
// class open_causal_lm makes of a Gemma4WeightSource (models/gemma4.cpp); everywhere else nn/causal_lm.hpp is enough.
#pragma once

#include <memory>
#include <string>

#include "causal_lm_of.hpp"
#include "gemma4.hpp"

namespace qlora {

template <class W>
class Gemma4CausalLM final : public CausalLMOf<Gemma4<float, W>> {
  using base = CausalLMOf<Gemma4<float, W>>;

 public:
  using base::base;

  index_t layers() const override { return this->model_.runtime_config().layers; }
  index_t vocab() const override { return this->model_.runtime_config().vocab; }
  std::unique_ptr<DecodeSession> decoder(index_t, DecodeKernel) const override {
    fail("generate", this->name(), ": qlora has no KV-cache decoding for Gemma 4 yet (layers that reuse another "
         "layer's keys and values need a cache of the producers only; docs/gemma4.md)");
  }
};

}  // namespace qlora
