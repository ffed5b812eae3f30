// Gemma4Block<T, W>: one decoder layer of transformers' Gemma4TextDecoderLayer, made of the same parts as Gemma3Block
// with the layer's plan (nn/gemma4_config.hpp) as values:
//
//   h = input_layernorm(x)                           every norm scales by its stored weight (NormWeight::w)
//   q = rope(q_norm(q_proj(h)))                      [N, heads, head_dim]; head_dim 512 on full layers
//   k = rope(k_norm(k_proj(h)))                      layers that compute their keys and values (plan.kv != reuse)
//   v = rms(v_proj(h))   or  rms(k_proj(h)) when k = v          v_norm has no weight, no RoPE
//   k, v = the producer layer's                      reusing layers (KV sharing): no k_proj, v_proj, k_norm
//   a = attention(q, k, v), scale 1                  sliding window on sliding layers
//   x = x + post_attention_layernorm(o_proj(a))
//   x = x + post_feedforward_layernorm(m)      m = down(gelu(gate(h')) ⊙ up(h')),  h' = pre_feedforward_layernorm(x)
//     with the mixture-of-experts block (enable_moe_block), beside the dense MLP and from the same x:
//     m = post_feedforward_layernorm_1(m) + post_feedforward_layernorm_2(experts(pre_feedforward_layernorm_2(x)))
//     routed by router.proj(rms(x) · router.scale · hidden^-0.5): softmax, top k, renormalised, per-expert scale
//     (ops/moe.hpp); the router and the experts are frozen (held in the compute type, not quantized)
//   x = x + post_per_layer_input_norm(per_layer_projection(gelu(per_layer_input_gate(x)) ⊙ ple))   with PLE
//   x = x · layer_scalar
//
// RoPE: default θ 1e4 on sliding layers, proportional (a quarter of the pairs, θ 1e6) on full ones. The seven
// projections carry LoRA where the options' targets say (a reusing layer has no k_proj / v_proj to adapt, as PEFT
// finds none); the PLE projections are frozen.
#pragma once

#include <cmath>
#include <optional>
#include <string>

#include "../ops/activation.hpp"
#include "../ops/attention.hpp"
#include "../ops/elementwise.hpp"
#include "../ops/linear.hpp"
#include "../ops/lora.hpp"
#include "../ops/moe.hpp"
#include "../ops/reshape.hpp"
#include "../ops/rmsnorm.hpp"
#include "../ops/rope.hpp"
#include "../quant/four_bit_tensor.hpp"
#include "block.hpp"
#include "gemma4_weights.hpp"

namespace qlora {

template <class T = float, class W = NF4>
class Gemma4Block {
 public:
  using hidden_type = Variable<T, Dyn, Dyn>;       // [tokens, hidden]
  using heads_type = Variable<T, Dyn, Dyn, Dyn>;   // [tokens, heads, head_dim]
  using weight_type = Tensor<W, Dyn, Dyn>;
  using projection_type = BlockLinear<T, weight_type>;
  using norm_type = Variable<T, Dyn>;

  // Keys and values after their norms and RoPE, as a producer hands them to the layers that reuse them.
  struct Kv {
    heads_type k, v;
  };
  struct Output {
    hidden_type x;
    Kv kv;  // this layer's keys and values (undefined on reusing layers)
  };

  Gemma4Block(const Gemma4WeightSource& src, index_t layer, const Gemma3Options& o)
      : plan_(src.config().layer(layer)),
        layer_(layer),
        heads_(src.config().heads),
        eps_(src.config().rms_norm_eps) {
    const Gemma4RuntimeConfig& c = src.config();
    const index_t hidden = c.hidden, q = c.heads * plan_.head_dim, kv = plan_.kv_heads * plan_.head_dim;
    q_.emplace(make(src, Projection::q_proj, q, hidden, o));
    o_.emplace(make(src, Projection::o_proj, hidden, q, o));
    if (plan_.computes_kv()) {
      k_.emplace(make(src, Projection::k_proj, kv, hidden, o));
      if (!plan_.k_eq_v) v_.emplace(make(src, Projection::v_proj, kv, hidden, o));
      k_norm_ = read_norm(src, "self_attn.k_norm.weight", plan_.head_dim, o);
    }
    gate_.emplace(make(src, Projection::gate_proj, plan_.intermediate, hidden, o));
    up_.emplace(make(src, Projection::up_proj, plan_.intermediate, hidden, o));
    down_.emplace(make(src, Projection::down_proj, hidden, plan_.intermediate, o));
    q_norm_ = read_norm(src, "self_attn.q_norm.weight", plan_.head_dim, o);
    input_norm_ = read_norm(src, "input_layernorm.weight", hidden, o);
    post_attention_norm_ = read_norm(src, "post_attention_layernorm.weight", hidden, o);
    pre_feedforward_norm_ = read_norm(src, "pre_feedforward_layernorm.weight", hidden, o);
    post_feedforward_norm_ = read_norm(src, "post_feedforward_layernorm.weight", hidden, o);
    if (c.per_layer_embeddings()) {
      const index_t p = c.hidden_per_layer_input;
      ple_gate_.emplace(FrozenLinear<T, weight_type>(frozen_weight(src, "per_layer_input_gate.weight", p, hidden, o)));
      ple_projection_.emplace(FrozenLinear<T, weight_type>(frozen_weight(src, "per_layer_projection.weight", hidden, p, o)));
      post_ple_norm_ = read_norm(src, "post_per_layer_input_norm.weight", hidden, o);
    }
    if (c.moe) {
      const index_t e = c.experts, mi = c.moe_intermediate;
      router_proj_.emplace(FrozenLinear<T, weight_type>(frozen_weight(src, "router.proj.weight", e, hidden, o)));
      router_scale_ = read_norm(src, "router.scale", hidden, o);
      per_expert_scale_ = src.read<T>(name("router.per_expert_scale"), e).on(o.device);
      experts_gate_up_ = src.read<T>(name("experts.gate_up_proj"), e, 2 * mi, hidden).on(o.device);
      experts_down_ = src.read<T>(name("experts.down_proj"), e, hidden, mi).on(o.device);
      post_feedforward_norm_1_ = read_norm(src, "post_feedforward_layernorm_1.weight", hidden, o);
      post_feedforward_norm_2_ = read_norm(src, "post_feedforward_layernorm_2.weight", hidden, o);
      pre_feedforward_norm_2_ = read_norm(src, "pre_feedforward_layernorm_2.weight", hidden, o);
      top_k_ = c.top_k_experts;
    }
    const auto s = src.read<float>(name("layer_scalar"), 1);
    layer_scalar_ = static_cast<double>(s.data()[0]);
    if (!std::isfinite(layer_scalar_)) fail("model", src.path().string(), ": ", name("layer_scalar"), " is not finite");
  }

  index_t layer() const { return layer_; }
  const Gemma4LayerPlan& plan() const { return plan_; }
  double layer_scalar() const { return layer_scalar_; }

  // h = input_layernorm(x): what the projections read.
  hidden_type input_norm(const hidden_type& x) const { return rmsnorm(x, input_norm_, eps_, NormWeight::w); }

  // This layer's keys and values from h = input_norm(x) (only on layers that compute them, plan().computes_kv());
  // keys() and values() give one of them alone (the checkpointed forward recomputes each on its own).
  Kv keys_values(const hidden_type& h, const Tensor<std::int32_t, Dyn>& positions, const ForwardPass& pass) const {
    const heads_type kr = key_projection(h, pass);
    return {keys_from(kr, positions), values_from(h, kr, pass)};
  }
  heads_type keys(const hidden_type& h, const Tensor<std::int32_t, Dyn>& positions, const ForwardPass& pass) const {
    return keys_from(key_projection(h, pass), positions);
  }
  heads_type values(const hidden_type& h, const ForwardPass& pass) const {
    return values_from(h, plan_.k_eq_v ? key_projection(h, pass) : heads_type(), pass);
  }

  // The layer after its keys and values: x: [N, hidden], h = input_norm(x); ple: this layer's per-layer input
  // [N, P] (null without PLE); kv: this layer's keys and values, or on a reusing layer its producer's;
  // positions, segment_ids: int32 [N].
  hidden_type operator()(const hidden_type& x, const hidden_type& h, const hidden_type* ple, const Kv& kv,
                         const Tensor<std::int32_t, Dyn>& positions, const Tensor<std::int32_t, Dyn>& segment_ids,
                         const ForwardPass& pass) const {
    const double eps = eps_;
    const index_t n = x.size(0), d = plan_.head_dim;
    heads_type q = reshape<Dyn, Dyn, Dyn>(call(*q_, h, Projection::q_proj, pass), n, heads_, d);
    q = rope(rmsnorm(q, q_norm_, eps, NormWeight::w), positions, plan_.rope);
    const heads_type a = attention(q, kv.k, kv.v, AttentionParams{1.0, plan_.window}, segment_ids);
    const hidden_type attn = rmsnorm(call(*o_, reshape<Dyn, Dyn>(a, n, heads_ * d), Projection::o_proj, pass),
                                     post_attention_norm_, eps, NormWeight::w);
    const hidden_type x1 = x + attn;
    const hidden_type h1 = rmsnorm(x1, pre_feedforward_norm_, eps, NormWeight::w);
    hidden_type mlp = call(*down_, geglu(call(*gate_, h1, Projection::gate_proj, pass),
                                         call(*up_, h1, Projection::up_proj, pass)),
                           Projection::down_proj, pass);
    if (router_proj_) mlp = rmsnorm(mlp, post_feedforward_norm_1_, eps, NormWeight::w) + experts(x1);
    hidden_type x2 = x1 + rmsnorm(mlp, post_feedforward_norm_, eps, NormWeight::w);
    if (ple_gate_) {
      if (ple == nullptr) fail("gemma4", "layer ", layer_, " needs its per-layer input, which was not given");
      const hidden_type g = geglu((*ple_gate_)(x2), *ple);
      x2 = x2 + rmsnorm((*ple_projection_)(g), post_ple_norm_, eps, NormWeight::w);
    }
    return scale(x2, layer_scalar_);
  }

  // The whole layer: its own keys and values, or on a reusing layer `shared` (the producer's; null otherwise).
  Output operator()(const hidden_type& x, const hidden_type* ple, const Kv* shared,
                    const Tensor<std::int32_t, Dyn>& positions, const Tensor<std::int32_t, Dyn>& segment_ids,
                    const ForwardPass& pass) const {
    const hidden_type h = input_norm(x);
    Output out;
    if (plan_.computes_kv()) {
      out.kv = keys_values(h, positions, pass);
      out.x = (*this)(x, h, ple, out.kv, positions, segment_ids, pass);
    } else {
      if (shared == nullptr)
        fail("gemma4", "layer ", layer_, " reuses layer ", plan_.kv_source, "'s keys and values, which were not given");
      out.x = (*this)(x, h, ple, *shared, positions, segment_ids, pass);
    }
    return out;
  }

  // The mixture-of-experts branch from the attention block's output x1: routed experts, then their output norm.
  hidden_type experts(const hidden_type& x1) const {
    const double root = std::pow(static_cast<double>(x1.size(1)), -0.5);
    const hidden_type logits = (*router_proj_)(scale(rmsnorm(x1, router_scale_, eps_, NormWeight::w), root));
    const MoeRouting<T> route = moe_route(logits, top_k_, per_expert_scale_);
    const hidden_type out = moe_experts(rmsnorm(x1, pre_feedforward_norm_2_, eps_, NormWeight::w), route.weights,
                                        route.experts, experts_gate_up_, experts_down_);
    return rmsnorm(out, post_feedforward_norm_2_, eps_, NormWeight::w);
  }

  // fn(Projection, const BlockLinear&) for each projection this layer has, in PEFT's order q, k, v, o, gate, up, down.
  template <class Fn>
  void for_each_projection(Fn&& fn) const {
    fn(Projection::q_proj, *q_);
    if (k_) fn(Projection::k_proj, *k_);
    if (v_) fn(Projection::v_proj, *v_);
    fn(Projection::o_proj, *o_);
    fn(Projection::gate_proj, *gate_);
    fn(Projection::up_proj, *up_);
    fn(Projection::down_proj, *down_);
  }

  // A projection's adapter, or nullptr where the layer has no such projection or leaves it frozen.
  using lora_type = LoraLinear<T, weight_type>;
  const lora_type* q_lora() const { return lora_of(q_); }
  const lora_type* k_lora() const { return lora_of(k_); }
  const lora_type* v_lora() const { return lora_of(v_); }
  const lora_type* o_lora() const { return lora_of(o_); }
  const lora_type* gate_lora() const { return lora_of(gate_); }
  const lora_type* up_lora() const { return lora_of(up_); }
  const lora_type* down_lora() const { return lora_of(down_); }

  // Whether projection p exists in this layer and carries a LoRA adapter.
  bool adapted(Projection p) const {
    bool out = false;
    for_each_projection([&](Projection q, const auto& proj) { out = out || (q == p && proj.lora() != nullptr); });
    return out;
  }

  // "layers.<i>.<leaf>", transformers' name of one of this layer's tensors.
  std::string name(std::string_view leaf) const { return "layers." + std::to_string(layer_) + "." + std::string(leaf); }

 private:
  static const lora_type* lora_of(const std::optional<projection_type>& p) { return p ? p->lora() : nullptr; }

  // k_proj(h) as [N, kv_heads, head_dim], before its norm and RoPE (k = v layers take their values from it too).
  heads_type key_projection(const hidden_type& h, const ForwardPass& pass) const {
    if (!plan_.computes_kv())
      fail("gemma4", "layer ", layer_, " computes no keys and values: it reuses layer ", plan_.kv_source, "'s");
    return reshape<Dyn, Dyn, Dyn>(call(*k_, h, Projection::k_proj, pass), h.size(0), plan_.kv_heads, plan_.head_dim);
  }
  heads_type keys_from(const heads_type& kr, const Tensor<std::int32_t, Dyn>& positions) const {
    return rope(rmsnorm(kr, k_norm_, eps_, NormWeight::w), positions, plan_.rope);
  }
  // v = rms(v_proj(h)), or rms(kr) on a k = v layer (kr = key_projection(h)).
  heads_type values_from(const hidden_type& h, const heads_type& kr, const ForwardPass& pass) const {
    if (plan_.k_eq_v) return rmsnorm_unscaled(kr, eps_);
    return rmsnorm_unscaled(
        reshape<Dyn, Dyn, Dyn>(call(*v_, h, Projection::v_proj, pass), h.size(0), plan_.kv_heads, plan_.head_dim),
        eps_);
  }

  template <class X>
  auto call(const projection_type& proj, const X& x, Projection p, const ForwardPass& pass) const {
    return proj(x, projection_stream(pass.dropout, layer_, p), pass.train, pass.batch_rows);
  }

  weight_type frozen_weight(const Gemma4WeightSource& src, std::string_view leaf, index_t out, index_t in,
                            const Gemma3Options& o) const {
    const auto w = src.read<float>(name(leaf), out, in);
    if constexpr (FourBitElement<W>) {
      return Tensor<W, Dyn, Dyn>::quantize(w, o.quant).on(o.device);
    } else {
      // nf4_values: the values an NF4 model computes with (quantized and dequantized once), held densely
      const Tensor<float, Dyn, Dyn> v =
          o.nf4_values ? dequantize<float>(Tensor<NF4, Dyn, Dyn>::quantize(w, o.quant)) : w;
      Tensor<W, Dyn, Dyn> t(v.shape());
      for (index_t i = 0; i < v.numel(); ++i) t.data()[i] = convert<W>(v.data()[i]);
      return t.on(o.device);
    }
  }

  projection_type make(const Gemma4WeightSource& src, Projection p, index_t out, index_t in,
                       const Gemma3Options& o) const {
    const std::string leaf = projection_path(layer_, p).substr(name("").size()) + ".weight";
    weight_type w = frozen_weight(src, leaf, out, in, o);
    if (const std::optional<LoraSpec> spec = o.lora.at(layer_, p))
      return projection_type(LoraLinear<T, weight_type>(
          std::move(w), *spec, RandomStream{o.seed, static_cast<std::uint64_t>(layer_) * 8 + static_cast<std::uint64_t>(p)}));
    return projection_type(FrozenLinear<T, weight_type>(std::move(w)));
  }

  norm_type read_norm(const Gemma4WeightSource& src, std::string_view leaf, index_t n, const Gemma3Options& o) const {
    const auto w = src.read<T>(name(leaf), n);
    return norm_type(w.on(o.device));
  }

  Gemma4LayerPlan plan_;
  index_t layer_, heads_;
  double eps_;
  std::optional<projection_type> q_, k_, v_, o_, gate_, up_, down_;
  std::optional<FrozenLinear<T, weight_type>> ple_gate_, ple_projection_, router_proj_;
  norm_type input_norm_, post_attention_norm_, pre_feedforward_norm_, post_feedforward_norm_, q_norm_, k_norm_,
      post_ple_norm_, router_scale_, post_feedforward_norm_1_, post_feedforward_norm_2_, pre_feedforward_norm_2_;
  Tensor<T, Dyn> per_expert_scale_;
  Tensor<T, Dyn, Dyn, Dyn> experts_gate_up_, experts_down_;
  index_t top_k_ = 0;
  double layer_scalar_ = 1;
};

}  // namespace qlora
