// Gemma4<T, W>: transformers' Gemma4ForCausalLM text model (dense, or with the mixture-of-experts block beside each
// layer's MLP),
// composed of Gemma4Block layers whose geometry comes from the layer plan (nn/gemma4_config.hpp) at run time:
//
//   e0  = embed_tokens(ids) · sqrt(hidden)
//   ple = ((rms(e0 · W_plmᵀ · hidden^-0.5) · w_pln) + embed_tokens_per_layer(ids) · sqrt(P)) · 2^-0.5   [N, L, P]
//   x   = e0 -> layers[0..L) (layer l gets ple[:, l, :]; reusing layers get their producer's keys and values)
//   logits = c · tanh((norm(x) · embed_tokensᵀ) / c)        c = final_logit_softcapping (none when null)
//
// PLE depends only on the frozen embeddings, so it is computed once per forward without gradients. Inputs are packed
// as for Gemma 3 (model_input.hpp): segment ids keep samples apart, positions restart per sample. The loss is the
// summed next-token cross-entropy on the capped logits, fused with the tied head (ops/cross_entropy.hpp).
// CPU only so far (the per-layer inputs are sliced on the host). Gradient checkpointing keeps the producers' keys and
// values for the layers that reuse them (hidden_states; docs/gemma4.md, "KV sharing with checkpointing").
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "../autograd/tape.hpp"
#include "../io/peft.hpp"
#include "../ops/cross_entropy.hpp"
#include "../ops/embedding.hpp"
#include "../ops/matmul.hpp"
#include "../optim/parameter.hpp"
#include "gemma4_block.hpp"
#include "lora_parameters.hpp"
#include "model_input.hpp"

namespace qlora {

template <class T = float, class W = NF4>
class Gemma4 {
 public:
  using compute_type = T;
  using block_type = Gemma4Block<T, W>;
  using hidden_type = typename block_type::hidden_type;
  using table_type = Variable<T, Dyn, Dyn>;
  using norm_type = Variable<T, Dyn>;

  Gemma4(const Gemma4WeightSource& src, const Gemma3Options& options = {}) : options_(options), cfg_(src.config()) {
    if (!options.device.is_cpu())
      fail("gemma4", "Gemma 4 runs on the CPU so far; asked for ", options.device.str());
    options.lora.check_matches(cfg_.layers, "gemma-4");
    const index_t hidden = cfg_.hidden;
    embed_ = table_type(src.read<T>("embed_tokens.weight", cfg_.vocab, hidden));
    if (cfg_.per_layer_embeddings()) {
      const index_t lp = cfg_.layers * cfg_.hidden_per_layer_input;
      ple_table_ = src.read<T>("embed_tokens_per_layer.weight", cfg_.vocab_per_layer_input, lp);
      ple_model_projection_ = src.read<T>("per_layer_model_projection.weight", lp, hidden);
      ple_norm_ = norm_type(src.read<T>("per_layer_projection_norm.weight", cfg_.hidden_per_layer_input));
    }
    blocks_.reserve(static_cast<std::size_t>(cfg_.layers));
    for (index_t i = 0; i < cfg_.layers; ++i) blocks_.emplace_back(src, i, options);
    norm_ = norm_type(src.read<T>("norm.weight", hidden));
  }

  std::string name() const {
    return detail::concat("gemma-4 (hidden ", cfg_.hidden, ", ", cfg_.layers, " layers)");
  }
  const Gemma4RuntimeConfig& runtime_config() const { return cfg_; }

  // The per-layer inputs [N, P] of every layer (empty without PLE), from the frozen embeddings: no gradient.
  std::vector<Tensor<T, Dyn, Dyn>> per_layer_inputs(const Tensor<std::int32_t, Dyn>& ids,
                                                    const Tensor<T, Dyn, Dyn>& e0) const {
    std::vector<Tensor<T, Dyn, Dyn>> out;
    if (!cfg_.per_layer_embeddings()) return out;
    const index_t n = ids.size(0), layers = cfg_.layers, p = cfg_.hidden_per_layer_input, lp = layers * p;
    for (index_t t = 0; t < n; ++t)
      if (ids(t) < 0 || ids(t) >= cfg_.vocab_per_layer_input)
        fail("gemma4", "token ", ids(t), " at position ", t, " is outside the per-layer embedding's ",
             cfg_.vocab_per_layer_input, " rows");
    // context: rms(e0 · W_plmᵀ · hidden^-0.5) · w over each layer's P values
    auto ctx = matmul<Transpose::no, Transpose::yes>(e0, ple_model_projection_);  // [N, L·P]
    const T projection_scale = static_cast<T>(std::pow(static_cast<double>(cfg_.hidden), -0.5));
    for (index_t i = 0; i < ctx.numel(); ++i) ctx.data()[i] = ctx.data()[i] * projection_scale;
    const auto normed = rmsnorm_forward(ctx.template reshape<Dyn, Dyn, Dyn>(n, layers, p), ple_norm_.value(),
                                        cfg_.rms_norm_eps, NormWeight::w).y;
    const T token_scale = static_cast<T>(static_cast<float>(std::sqrt(static_cast<double>(p))));
    const T combine = static_cast<T>(std::pow(2.0, -0.5));
    out.assign(static_cast<std::size_t>(layers), Tensor<T, Dyn, Dyn>());
    for (index_t l = 0; l < layers; ++l) {
      Tensor<T, Dyn, Dyn> x(Shape<Dyn, Dyn>(n, p));
      for (index_t t = 0; t < n; ++t) {
        const T* row = ple_table_.data() + static_cast<index_t>(ids(t)) * lp + l * p;
        const T* c = normed.data() + (t * layers + l) * p;
        for (index_t j = 0; j < p; ++j) x.data()[t * p + j] = (c[j] + row[j] * token_scale) * combine;
      }
      out[static_cast<std::size_t>(l)] = std::move(x);
    }
    return out;
  }

  // The final hidden states (after the last norm): [N, hidden].
  //
  // With gradient checkpointing every layer keeps only its input, and a layer that computes keys and values keeps
  // them too (its reusing layers read them later in the forward pass): k and v are each a checkpoint of their own
  // (recomputed from the layer's input in backward), and the rest of a layer is a checkpoint whose inputs are x, k
  // and v. A reusing layer's recomputation is handed the producer's stored keys and values, and the gradients of
  // all the layers that read them add up in the producer's k and v before those are recomputed and back-propagated
  // into the producer's projections: the same gradients as without checkpointing.
  hidden_type hidden_states(const ModelInput& in, const ForwardPass& pass = {}) const {
    hidden_type x = embedding(in.tokens, embed_);
    std::vector<Tensor<T, Dyn, Dyn>> ple;
    {
      NoGrad no_grad;
      ple = per_layer_inputs(in.tokens, x.value());
    }
    using Kv = typename block_type::Kv;
    using heads_type = typename block_type::heads_type;
    const bool checkpointing = pass.gradient_checkpointing && grad_enabled();
    std::vector<Kv> stored(blocks_.size());
    for (const block_type& block : blocks_) {
      const Gemma4LayerPlan& plan = block.plan();
      const hidden_type ple_l = ple.empty() ? hidden_type() : hidden_type(ple[static_cast<std::size_t>(block.layer())]);
      const hidden_type* ple_p = ple.empty() ? nullptr : &ple_l;
      if (!checkpointing) {
        auto out = block(x, ple_p, plan.kv == KvSharing::reuse ? &stored[static_cast<std::size_t>(plan.kv_source)] : nullptr,
                         in.positions, in.segment_ids, pass);
        if (plan.kv == KvSharing::store) stored[static_cast<std::size_t>(block.layer())] = std::move(out.kv);
        x = std::move(out.x);
        continue;
      }
      const block_type* b = &block;
      Kv kv;
      if (plan.computes_kv()) {
        kv.k = checkpoint([b, in, pass](const hidden_type& h) { return b->keys(b->input_norm(h), in.positions, pass); },
                          x);
        kv.v = checkpoint([b, pass](const hidden_type& h) { return b->values(b->input_norm(h), pass); }, x);
      } else {
        kv = stored[static_cast<std::size_t>(plan.kv_source)];
      }
      x = checkpoint([b, in, pass, ple_l, has_ple = ple_p != nullptr](const hidden_type& h, const heads_type& k,
                                                                      const heads_type& v) {
        return (*b)(h, b->input_norm(h), has_ple ? &ple_l : nullptr, Kv{k, v}, in.positions, in.segment_ids, pass);
      }, x, kv.k, kv.v);
      if (plan.kv == KvSharing::store) stored[static_cast<std::size_t>(block.layer())] = std::move(kv);
    }
    return rmsnorm(x, norm_, cfg_.rms_norm_eps, NormWeight::w);
  }

  // Σ of the next-token cross-entropy over the label tokens, on the soft-capped logits, and their count.
  CrossEntropySum<T> loss_sum(const ModelInput& in, const ForwardPass& pass = {}) const {
    return cross_entropy_sum(hidden_states(in, pass), embed_, in.labels, CrossEntropyParams{cfg_.final_logit_softcap});
  }

  // Materialised fp32 logits [N, vocab], soft-capped as transformers returns them.
  Tensor<float, Dyn, Dyn> logits(const ModelInput& in) const {
    NoGrad no_grad;
    const auto h = hidden_states(in).value();
    const auto z = matmul<Transpose::no, Transpose::yes>(h, embed_.value());
    Tensor<float, Dyn, Dyn> out(Shape<Dyn, Dyn>(z.size(0), z.size(1)));
    const double cap = cfg_.final_logit_softcap;
    for (index_t i = 0; i < z.numel(); ++i) {
      const auto v = z.data()[i];
      out.data()[i] = cap > 0 ? convert<float>(static_cast<T>(cap) * std::tanh(v / static_cast<T>(cap)))
                              : convert<float>(v);
    }
    return out;
  }

  // The trainable LoRA matrices with PEFT's names (A before B, layer by layer, q k v o gate up down).
  ParameterList lora_parameters() const
    requires std::is_same_v<T, float>
  {
    return lora_parameter_list(*this);
  }
  // fn(layer, projection, const LoraLinear&) for every adapted projection, layer by layer in PEFT's order (what
  // nn/adapter_io.hpp's save_adapter / load_adapter walk).
  template <class Fn>
  void for_each_lora(Fn&& fn) const {
    for_each_block_lora(blocks_, fn);
  }

  const std::vector<block_type>& blocks() const { return blocks_; }
  const table_type& embed_tokens() const { return embed_; }
  const Gemma3Options& options() const { return options_; }

 private:
  Gemma3Options options_;
  Gemma4RuntimeConfig cfg_;
  table_type embed_;
  Tensor<T, Dyn, Dyn> ple_table_, ple_model_projection_;
  norm_type ple_norm_;
  std::vector<block_type> blocks_;
  norm_type norm_;
};

}  // namespace qlora
