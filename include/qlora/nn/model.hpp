// Gemma3<Cfg, T, W>: transformers' Gemma3ForCausalLM (text), statically composed:
//
//   x = embed_tokens(ids) · sqrt(hidden)  ->  layers[0..L) (Gemma3Block)  ->  norm  ->  logits = x · embed_tokensᵀ
//
// The LM head is tied to the embedding and never materialises [tokens, vocab] for the loss (ops/cross_entropy.hpp).
// Inputs are packed: the rows of a batch are laid end to end as N tokens, each (row, sample) with its own segment id
// so attention never crosses them, positions restarting at 0 per sample. The loss is the summed token cross-entropy
// of next-token prediction (labels shifted as Hugging Face's causal-LM loss does), with the count of label tokens,
// so the trainer can normalise over gradient accumulation.
//
// Loading checks the file's configuration against Cfg and reads one tensor at a time; with W = NF4 each projection is
// quantized as it is read. Trainable parameters are the LoRA A/B of the projections the options' LoraTargets name
// (any ranks, per module), named as PEFT names them (io/peft.hpp).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "../autograd/tape.hpp"
#include "../io/peft.hpp"
#include "../ops/cross_entropy.hpp"
#include "../ops/embedding.hpp"
#include "../optim/parameter.hpp"
#include "block.hpp"
#include "lora_parameters.hpp"
#include "model_input.hpp"

namespace qlora {

template <class Cfg, class T = float, class W = NF4>
class Gemma3 {
 public:
  using config = Cfg;
  using compute_type = T;
  using block_type = Gemma3Block<Cfg, T, W>;
  using dims = Gemma3Dims<Cfg>;
  using hidden_type = typename block_type::hidden_type;  // [tokens, hidden]
  using embedding_type = Variable<T, typename dims::vocab, typename dims::hidden>;
  using norm_type = Variable<T, typename dims::hidden>;

  // Checks the file's configuration against Cfg (a published size) or that it is buildable (Gemma3AnySize).
  Gemma3(const Gemma3WeightSource& src, const Gemma3Options& options = {})
      : options_(options), cfg_(model_config<Cfg>(src)) {
    options.lora.check_matches(cfg_.layers, name());
    embed_ = detail::load_constant<T, typename dims::vocab, typename dims::hidden>(src, "embed_tokens.weight", options);
    blocks_.reserve(static_cast<std::size_t>(cfg_.layers));
    for (index_t i = 0; i < cfg_.layers; ++i) blocks_.emplace_back(src, i, options, cfg_);
    norm_ = detail::load_constant<T, typename dims::hidden>(src, "norm.weight", options);
  }

  // "gemma-3-270m" (also when the run-time-shaped model holds a published size), or "gemma-3 (hidden 64, 6 layers)"
  // for a shape no published size has.
  std::string name() const {
    if constexpr (Cfg::is_static) return std::string(Cfg::name);
    else return model_name(cfg_, "model");
  }
  const Gemma3RuntimeConfig& runtime_config() const { return cfg_; }

  // The final hidden states (after the last norm): [N, hidden].
  hidden_type hidden_states(const ModelInput& in, const ForwardPass& pass = {}) const {
    hidden_type x = embedding(in.tokens, embed_);
    for (const block_type& block : blocks_) {
      if (pass.gradient_checkpointing && grad_enabled()) {
        const block_type* b = &block;
        x = checkpoint([b, in, pass](const hidden_type& h) { return (*b)(h, in.positions, in.segment_ids, pass); }, x);
      } else {
        x = block(x, in.positions, in.segment_ids, pass);
      }
    }
    return rmsnorm(x, norm_, cfg_.rms_norm_eps);
  }

  // Σ of the next-token cross-entropy over the label tokens, and their count.
  CrossEntropySum<T> loss_sum(const ModelInput& in, const ForwardPass& pass = {}) const {
    return cross_entropy_sum(hidden_states(in, pass), embed_, in.labels);
  }

  // Materialised logits [N, vocab] in fp32 (inference and tests; use loss_sum for training).
  Tensor<float, Dyn, Dyn> logits(const ModelInput& in) const {
    NoGrad no_grad;
    const auto h = hidden_states(in).value();
    return logits_of(h);
  }
  // hidden: [n, hidden] -> [n, vocab] fp32 logits through the tied head.
  template <class... Ds>
  Tensor<float, Dyn, Dyn> logits_of(const Tensor<T, Ds...>& hidden) const {
    const auto z = matmul<Transpose::no, Transpose::yes>(hidden, embed_.value());  // [n, vocab]
    Tensor<float, Dyn, Dyn> out(Shape<Dyn, Dyn>(z.size(0), z.size(1)));
    const auto v = z.to_vector();
    for (std::size_t i = 0; i < v.size(); ++i) out.data()[i] = convert<float>(v[i]);
    return out;
  }

  // The trainable LoRA matrices with PEFT's names (q, k, v, o, gate, up, down of each layer; A before B).
  ParameterList lora_parameters() const
    requires std::is_same_v<T, float>
  {
    return lora_parameter_list(*this);
  }
  // fn(layer, projection, const LoraLinear&) for every adapted projection, layer by layer in PEFT's order.
  template <class Fn>
  void for_each_lora(Fn&& fn) const {
    for_each_block_lora(blocks_, fn);
  }
  index_t trainable_parameter_count() const {
    index_t n = 0;
    for_each_lora([&](index_t, Projection, const auto& proj) { n += proj.lora_a().numel() + proj.lora_b().numel(); });
    return n;
  }

  const std::vector<block_type>& blocks() const { return blocks_; }
  const embedding_type& embed_tokens() const { return embed_; }
  const norm_type& norm() const { return norm_; }
  const Gemma3Options& options() const { return options_; }
  Device device() const { return options_.device; }

 private:
  Gemma3Options options_;
  Gemma3RuntimeConfig cfg_;
  embedding_type embed_;
  std::vector<block_type> blocks_;
  norm_type norm_;
};

}  // namespace qlora
