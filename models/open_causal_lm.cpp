// open_causal_lm: the file's family and size to a compiled model. The published sizes compiled into this library
// (CMake's QLORA_STATIC_MODELS, each defining QLORA_STATIC_GEMMA3_<SIZE>) use their static instantiation; every other
// configuration — and every size when none is compiled — the run-time-shaped Gemma3AnySize.
#include <type_traits>

#include <qlora/nn/causal_lm.hpp>

namespace qlora {
namespace {
template <class Cfg>
constexpr bool compiled_static() {
#if defined(QLORA_STATIC_GEMMA3_270M)
  if constexpr (std::is_same_v<Cfg, Gemma3_270M>) return true;
#endif
#if defined(QLORA_STATIC_GEMMA3_1B)
  if constexpr (std::is_same_v<Cfg, Gemma3_1B>) return true;
#endif
#if defined(QLORA_STATIC_GEMMA3_4B)
  if constexpr (std::is_same_v<Cfg, Gemma3_4B>) return true;
#endif
#if defined(QLORA_STATIC_GEMMA3_12B)
  if constexpr (std::is_same_v<Cfg, Gemma3_12B>) return true;
#endif
#if defined(QLORA_STATIC_GEMMA3_27B)
  if constexpr (std::is_same_v<Cfg, Gemma3_27B>) return true;
#endif
#if defined(QLORA_STATIC_GEMMA3_TINY)
  if constexpr (std::is_same_v<Cfg, Gemma3Tiny>) return true;
#endif
  return false;
}

template <class Cfg>
std::unique_ptr<CausalLM> make(const Gemma3WeightSource& source, Gemma3Options options, CausalLMWeights weights) {
  if (weights == CausalLMWeights::nf4) return make_gemma3<Cfg, float, NF4>(source, options);
  options.nf4_values = weights == CausalLMWeights::nf4_dequantized;
  return make_gemma3<Cfg, float, float>(source, options);
}
}  // namespace

std::unique_ptr<CausalLM> open_causal_lm(const Gemma3WeightSource& source, Gemma3Options options,
                                         CausalLMWeights weights) {
  // Module names (and so rank_pattern / alpha_pattern keys) are those of the checkpoint's class.
  const ModelLayout layout = source.layout();
  options.lora.for_layout(layout);
  std::unique_ptr<CausalLM> model =
      dispatch_config(source.config(), source.path().string(), [&](auto cfg) -> std::unique_ptr<CausalLM> {
        using Cfg = decltype(cfg);
        if constexpr (compiled_static<Cfg>()) return make<Cfg>(source, options, weights);
        else return make<Gemma3AnySize>(source, options, weights);
      });
  model->set_adapter_layout(layout);
  if (layout == ModelLayout::conditional_generation && source.checkpoint())
    model->set_vision_lora(peft::initial_vision_lora(*source.checkpoint(), options.lora, options.seed));
  source.release_pages();  // the weights are copied out: the file's pages need not stay resident
  return model;
}

}  // namespace qlora
