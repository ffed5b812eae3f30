// Gemma3<Cfg, Adapter, T, W>: transformers' Gemma3ForCausalLM (text), statically composed:
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
// quantized as it is read. Trainable parameters are the LoRA A/B of the projections `Adapter` names, named as PEFT
// names them (io/peft.hpp).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "../autograd/tape.hpp"
#include "../data/batch.hpp"
#include "../io/peft.hpp"
#include "../ops/cross_entropy.hpp"
#include "../ops/embedding.hpp"
#include "../optim/parameter.hpp"
#include "block.hpp"

namespace qlora {

// A batch as device tensors of N = B·T packed tokens.
struct ModelInput {
  Tensor<std::int32_t, Dyn> tokens;       // [N]
  Tensor<std::int32_t, Dyn> positions;    // [N]
  Tensor<std::int32_t, Dyn> segment_ids;  // [N]: unique per (row, sample); padding gets its row's own negative id
  Tensor<std::int32_t, Dyn> labels;       // [N]: next-token targets (-100: no loss)
  long label_tokens = 0;
};

inline ModelInput model_input(const Batch& b, Device device = Device::cpu()) {
  const auto n = static_cast<index_t>(b.B * b.T);
  ModelInput in;
  std::vector<std::int32_t> seg(b.segment_ids.size());
  for (std::size_t r = 0; r < b.B; ++r)
    for (std::size_t t = 0; t < b.T; ++t) {
      const std::int32_t s = b.segment_ids[b.at(r, t)];
      seg[b.at(r, t)] = s == 0 ? -static_cast<std::int32_t>(r + 1) : static_cast<std::int32_t>(r * (b.T + 1)) + s;
    }
  auto put = [&](const std::vector<std::int32_t>& v) {
    auto t = Tensor<std::int32_t, Dyn>::from(v, n);
    return device.is_cpu() ? t : t.to(device);
  };
  in.tokens = put(b.tokens);
  in.positions = put(b.positions);
  in.segment_ids = put(seg);
  in.labels = put(b.next_token_labels());
  in.label_tokens = b.label_tokens();
  return in;
}

// One sequence (positions 0.., one segment), for inference and tests.
inline ModelInput model_input(const std::vector<std::int32_t>& ids, Device device = Device::cpu()) {
  Batch b;
  b.B = 1;
  b.T = ids.size();
  b.tokens = ids;
  b.labels.assign(ids.size(), ignore_index);
  b.positions.resize(ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i) b.positions[i] = static_cast<std::int32_t>(i);
  b.segment_ids.assign(ids.size(), 1);
  return model_input(b, device);
}

template <class Cfg, class Adapter = NoAdapter, class T = float, class W = NF4>
class Gemma3 {
 public:
  using config = Cfg;
  using adapter = Adapter;
  using block_type = Gemma3Block<Cfg, Adapter, T, W>;
  using hidden_type = typename block_type::hidden_type;  // [tokens, hidden]
  using embedding_type = Variable<T, Dim<Cfg::vocab>, Dim<Cfg::hidden>>;

  Gemma3(const Gemma3WeightSource& src, const Gemma3Options& options = {}) : options_(options) {
    check_config<Cfg>(src.config(), src.path().string());
    embed_ = detail::load_constant<T, Dim<Cfg::vocab>, Dim<Cfg::hidden>>(src, "embed_tokens.weight", options);
    blocks_.reserve(static_cast<std::size_t>(Cfg::layers));
    for (index_t i = 0; i < Cfg::layers; ++i) blocks_.emplace_back(src, i, options);
    norm_ = detail::load_constant<T, Dim<Cfg::hidden>>(src, "norm.weight", options);
  }

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
    return rmsnorm(x, norm_, Cfg::rms_norm_eps);
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
    ParameterList params;
    for_each_lora([&](index_t layer, Projection p, const auto& proj) {
      params.emplace_back(peft::tensor_name(layer, p, peft::LoraMatrix::A), proj.lora_a());
      params.emplace_back(peft::tensor_name(layer, p, peft::LoraMatrix::B), proj.lora_b());
    });
    return params;
  }
  // fn(layer, projection, const LoraLinear&) for every adapted projection.
  template <class Fn>
  void for_each_lora(Fn&& fn) const {
    for (const block_type& block : blocks_)
      block.for_each_projection([&](Projection p, const auto& proj) {
        if constexpr (is_lora_linear_v<std::remove_cvref_t<decltype(proj)>>) fn(block.layer(), p, proj);
      });
  }
  index_t trainable_parameter_count() const {
    index_t n = 0;
    for_each_lora([&](index_t, Projection, const auto& proj) { n += proj.lora_a().numel() + proj.lora_b().numel(); });
    return n;
  }

  const std::vector<block_type>& blocks() const { return blocks_; }
  const embedding_type& embed_tokens() const { return embed_; }
  const Variable<T, Dim<Cfg::hidden>>& norm() const { return norm_; }
  const Gemma3Options& options() const { return options_; }
  Device device() const { return options_.device; }

 private:
  Gemma3Options options_;
  embedding_type embed_;
  std::vector<block_type> blocks_;
  Variable<T, Dim<Cfg::hidden>> norm_;
};

}  // namespace qlora
