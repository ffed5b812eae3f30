// open_causal_lm for Gemma 4 checkpoints: the text model with run-time extents, NF4 (training) or fp32 weights.
#include <qlora/nn/gemma4_causal_lm.hpp>

namespace qlora {

std::unique_ptr<CausalLM> open_causal_lm(const Gemma4WeightSource& source, Gemma3Options options,
                                         CausalLMWeights weights) {
  const ModelLayout layout = source.layout();
  options.lora.for_layout(layout);
  // The towers' q/k/v/o/gate/up/down are Gemma4ClippableLinear, which PEFT cannot wrap: the adapter names the text
  // model's modules by a regex so that PEFT loads it on Gemma4ForConditionalGeneration.
  if (layout == ModelLayout::conditional_generation) options.lora.text_model_only();
  std::unique_ptr<CausalLM> model;
  if (weights == CausalLMWeights::nf4) {
    model = std::make_unique<Gemma4CausalLM<NF4>>(source, options);
  } else {
    options.nf4_values = weights == CausalLMWeights::nf4_dequantized;
    model = std::make_unique<Gemma4CausalLM<float>>(source, options);
  }
  model->set_adapter_layout(layout);
  return model;
}

}  // namespace qlora
