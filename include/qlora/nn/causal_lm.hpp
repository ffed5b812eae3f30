// CausalLM: the run-time face of a compiled model. The programs (finetune, generate, evaluate) and anyone who picks a
// model from a file use this small interface; the statically composed model types (nn/model.hpp) sit behind it, one
// per family × size × compute type, each compiled once in its own translation unit (models/*.cpp, or a user's own
// TU with QLORA_INSTANTIATE_GEMMA3 from nn/gemma3_causal_lm.hpp).
//
//   auto model = open_causal_lm(Gemma3WeightSource::open(path), options);  // family and size from the file
//   model->loss_sum(input, pass)  ·  model->lora_parameters()  ·  model->save_adapter(dir, base)  ·  model->decoder(n)
//
// This header declares the per-size factories without defining them, so including it instantiates no model.
#pragma once

#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "../autograd/tape.hpp"
#include "../io/peft.hpp"
#include "../ops/cross_entropy.hpp"
#include "../optim/parameter.hpp"
#include "block.hpp"
#include "config.hpp"
#include "gemma4_weights.hpp"
#include "model_input.hpp"
#include "weights.hpp"

namespace qlora {

// The KV cache of one generated sequence: extend() runs the next tokens through the model and returns the fp32
// logits of the last one.
class DecodeSession {
 public:
  virtual ~DecodeSession() = default;
  virtual std::vector<float> extend(std::span<const std::int32_t> ids) = 0;
  virtual index_t length() const = 0;
  // What the one-token passes compute with: "fp32 (the model's GEMMs)" or the packed weights' description.
  virtual std::string products() const = 0;
};

class CausalLM {
 public:
  virtual ~CausalLM() = default;
  CausalLM() = default;
  CausalLM(const CausalLM&) = delete;
  CausalLM& operator=(const CausalLM&) = delete;

  virtual std::string_view name() const = 0;                   // "gemma-3-270m", "gemma-4 (hidden 1536, 35 layers)"
  virtual index_t layers() const = 0;                          // decoder layers
  virtual index_t vocab() const = 0;                           // rows of the embedding (and the tied head)
  virtual const Gemma3Options& options() const = 0;             // LoRA targets, seed, device
  Device device() const { return options().device; }

  // Training: Σ of the next-token cross-entropy over the label tokens (fp32) and their count.
  virtual CrossEntropySum<float> loss_sum(const ModelInput& in, const ForwardPass& pass) const = 0;
  CrossEntropySum<float> loss_sum(const ModelInput& in) const { return loss_sum(in, ForwardPass{}); }  // eval pass
  // The trainable LoRA matrices under PEFT's names (A before B, layer by layer, q k v o gate up down).
  virtual ParameterList lora_parameters() const = 0;
  virtual index_t trainable_parameter_count() const = 0;
  // The adapter as PEFT writes it for the checkpoint's class (adapter_layout()) / read back (ranks and modules must
  // agree with the model's; an adapter of either class fits). A multimodal adapter's vision-tower entries are kept
  // (vision_lora()) and written again by save_adapter, so nothing PEFT trained is lost.
  void save_adapter(const std::filesystem::path& dir, const std::string& base_model_name_or_path) const {
    std::vector<peft::AdapterTensor> tensors = text_adapter_tensors(adapter_layout_);
    tensors.insert(tensors.end(), vision_lora_.begin(), vision_lora_.end());
    peft::save_adapter(dir, options().lora.config(), base_model_name_or_path, tensors);
  }
  void load_adapter(const peft::Adapter& adapter, const std::string& source) {
    load_text_adapter(adapter, source);
    vision_lora_ = adapter.vision;
  }
  void load_adapter(const std::filesystem::path& dir) { load_adapter(peft::load_adapter(dir), dir.string()); }
  // The text model's LoRA matrices under PEFT's names for `layout` (views of the trained values).
  virtual std::vector<peft::AdapterTensor> text_adapter_tensors(peft::ModelLayout layout) const = 0;

  // The checkpoint class whose names save_adapter writes (open_causal_lm sets the source's).
  peft::ModelLayout adapter_layout() const { return adapter_layout_; }
  void set_adapter_layout(peft::ModelLayout layout) { adapter_layout_ = layout; }
  // LoRA weights of the vision tower / projector that the adapter carries but text training does not touch.
  const std::vector<peft::AdapterTensor>& vision_lora() const { return vision_lora_; }
  void set_vision_lora(std::vector<peft::AdapterTensor> tensors) { vision_lora_ = std::move(tensors); }

  // Inference: materialised fp32 logits [N, vocab], and KV-cache decoding for up to `capacity` positions with the
  // one-token passes' products of `kernel` (nn/decode_weights.hpp; int8 packs the weights once per model).
  virtual Tensor<float, Dyn, Dyn> logits(const ModelInput& in) const = 0;
  virtual std::unique_ptr<DecodeSession> decoder(index_t capacity, DecodeKernel kernel = DecodeKernel::fp32) const = 0;

 protected:
  virtual void load_text_adapter(const peft::Adapter& adapter, const std::string& source) const = 0;

 private:
  peft::ModelLayout adapter_layout_ = peft::ModelLayout::causal_lm;
  std::vector<peft::AdapterTensor> vision_lora_;
};

// How a model's numbers are held: a 4-bit NF4 base computed in fp32 (QLoRA training); the same NF4 values
// dequantized once into fp32 weights (generation: one token at a time, no dequantization per call); or the file's own
// weights in fp32, not quantized (plain LoRA, as PEFT on an fp32 base — the reference the tests compare with).
enum class CausalLMWeights { nf4, nf4_dequantized, fp32 };

// One compiled Gemma 3 model; defined in nn/gemma3_causal_lm.hpp and instantiated once per size (models/*.cpp).
template <class Cfg, class T, class W>
std::unique_ptr<CausalLM> make_gemma3(const Gemma3WeightSource& source, const Gemma3Options& options);

// Gemma 4's text model (nn/gemma4.hpp) from a checkpoint folder: NF4 or fp32 weights as for Gemma 3 (run-time
// extents; one instantiation per weight type in models/gemma4.cpp). Training and logits; no KV-cache decoding yet
// (decoder() refuses, naming the model).
std::unique_ptr<CausalLM> open_causal_lm(const Gemma4WeightSource& source, Gemma3Options options,
                                         CausalLMWeights weights = CausalLMWeights::nf4);

// The model the file describes, with `options`' adapters and device: the published size's own instantiation where
// the program has one compiled in (QLORA_STATIC_MODELS), else the run-time-shaped Gemma3AnySize, which computes the
// same numbers at the same speed (docs/benchmarks.md). Defined in models/open_causal_lm.cpp (link qlora::models).
std::unique_ptr<CausalLM> open_causal_lm(const Gemma3WeightSource& source, Gemma3Options options,
                                         CausalLMWeights weights = CausalLMWeights::nf4);

}  // namespace qlora
