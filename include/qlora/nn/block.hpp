// Gemma3Block<Cfg, T, W>: one decoder layer of transformers' Gemma3DecoderLayer, statically composed.
//
//   h = input_layernorm(x)                       x: [tokens, hidden]
//   q, k, v = q_proj(h), k_proj(h), v_proj(h)    -> [tokens, heads, head_dim], [tokens, kv_heads, head_dim]
//   q, k = q_norm(q), k_norm(k)                  RMSNorm per head (weights shared over heads); v is not normed
//   q, k = rope(q), rope(k)                      θ 10 000 on local layers, θ 1e6 (× linear scaling) on global ones
//   a = attention(q, k, v)                       GQA, causal, sliding window on local layers, packed segments
//   x = x + post_attention_layernorm(o_proj(a))
//   x = x + post_feedforward_layernorm(down_proj(gelu_tanh(gate_proj(h')) · up_proj(h')))   h' = pre_ff_norm(x)
//
// T is the compute type (fp32 on the CPU, fp64 for gradchecks, bf16 on GPUs); W is the storage type of the seven
// frozen projections (NF4 for QLoRA, or a dense type). The options' LoraTargets (nn/adapter.hpp) say which
// projections carry a LoRA adapter (trainable A, B) and with which rank: a run-time choice, so one compiled block
// type serves every rank and target list.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <variant>

#include "../ops/activation.hpp"
#include "../ops/attention.hpp"
#include "../ops/elementwise.hpp"
#include "../ops/linear.hpp"
#include "../ops/lora.hpp"
#include "../ops/reshape.hpp"
#include "../ops/rmsnorm.hpp"
#include "../ops/rope.hpp"
#include "../quant/four_bit_tensor.hpp"
#include "adapter.hpp"
#include "config.hpp"
#include "decode_weights.hpp"
#include "weights.hpp"

namespace qlora {

// How a model is built: its LoRA adapters, the seed of A's initialisation, the 4-bit format and the device.
struct Gemma3Options {
  LoraTargets lora{};           // which projections carry LoRA, with r / lora_alpha / dropout / rsLoRA (none: frozen)
  std::uint64_t seed = 42;      // initialisation of every lora_A (stream offset = layer · 8 + projection)
  FourBitOptions quant{};       // blocksize 64, double quantization on (the recipes' bnb_4bit_use_double_quant)
  Device device = Device::cpu();
  // With a dense W: hold each projection's NF4 round trip (quantize, dequantize once) — the values an NF4 model
  // computes with, without dequantizing on every call (inference: generation runs one token at a time).
  bool nf4_values = false;
};

// What one forward pass needs besides its tokens.
struct ForwardPass {
  bool train = false;                   // LoRA dropout on
  bool gradient_checkpointing = false;  // keep only block inputs; recompute each block in backward
  RandomStream dropout{};               // this micro-batch's dropout stream (seed, micro-batch counter)
  DropoutRows batch_rows{};             // tokens per batch row and the first row's global index (dropout masks
                                        // independent of padding and of a data-parallel split)
  const DecodeWeights* packed = nullptr;  // generation's one-token passes: packed projections (nn/decode_weights.hpp)
};

// A frozen projection y = x · Wᵀ with LoraLinear's call signature.
template <class T, class Weight>
class FrozenLinear {
 public:
  explicit FrozenLinear(Weight w) : base_(std::move(w)) {}
  template <class Rows, class In>
  auto operator()(const Variable<T, Rows, In>& x, RandomStream = {}, bool = true, DropoutRows = {}) const {
    return linear(x, base_);
  }
  const Weight& base() const { return base_; }

 private:
  Weight base_;
};

// One projection of a block: frozen, or with a LoRA adapter (chosen when the model is built).
template <class T, class Weight>
class BlockLinear {
 public:
  explicit BlockLinear(FrozenLinear<T, Weight> frozen) : impl_(std::move(frozen)) {}
  explicit BlockLinear(LoraLinear<T, Weight> lora) : impl_(std::move(lora)) {}
  template <class Rows, class In>
  auto operator()(const Variable<T, Rows, In>& x, RandomStream stream = {}, bool train = true,
                  DropoutRows rows = {}) const {
    if (const auto* l = lora()) return (*l)(x, stream, train, rows);
    return std::get<FrozenLinear<T, Weight>>(impl_)(x, stream, train);
  }
  const Weight& base() const {
    return std::visit([](const auto& p) -> const Weight& { return p.base(); }, impl_);
  }
  // The adapter, or nullptr for a frozen projection.
  const LoraLinear<T, Weight>* lora() const { return std::get_if<LoraLinear<T, Weight>>(&impl_); }

 private:
  std::variant<FrozenLinear<T, Weight>, LoraLinear<T, Weight>> impl_;
};

// transformers' name of a projection's weight: "layers.3.self_attn.q_proj.weight", "layers.3.mlp.up_proj.weight".
inline std::string projection_weight_name(index_t layer, Projection p) { return projection_path(layer, p) + ".weight"; }

// The dropout stream of one projection call: distinct per micro-batch, layer and projection.
inline RandomStream projection_stream(RandomStream pass, index_t layer, Projection p) {
  return {pass.seed, pass.offset * 1024 + static_cast<std::uint64_t>(layer) * 8 + static_cast<std::uint64_t>(p)};
}

namespace detail {
// A frozen base weight [Out, In] in storage type W, made from the file's tensor.
template <class W, class Out, class In>
Tensor<W, Out, In> load_base_weight(const Gemma3WeightSource& src, const std::string& name, const Gemma3Options& o) {
  if constexpr (FourBitElement<W>) {
    const auto q = Tensor<W, Out, In>::quantize(src.read<float, Out, In>(name), o.quant);
    return q.on(o.device);
  } else {
    auto w = src.read<W, Out, In>(name);
    if (o.nf4_values) {
      Tensor<float, Out, In> f(w.shape());
      for (index_t i = 0; i < w.numel(); ++i) f.data()[i] = convert<float>(w.data()[i]);
      const auto dq = dequantize<W>(Tensor<NF4, Out, In>::quantize(f, o.quant));
      w = dq;
    }
    return w.on(o.device);
  }
}
template <class T, class... Ds>
Variable<T, Ds...> load_constant(const Gemma3WeightSource& src, const std::string& name, const Gemma3Options& o) {
  auto t = src.read<T, Ds...>(name);
  return Variable<T, Ds...>(t.on(o.device));
}
}  // namespace detail

// The configuration a model of type Cfg is built with: the type's numbers for a published size, the file's
// (completed with defaults) for Gemma3AnySize.
template <class Cfg>
Gemma3RuntimeConfig model_config(const Gemma3WeightSource& src) {
  if constexpr (Cfg::is_static) {
    check_config<Cfg>(src.config(), src.path().string());
    return runtime_config_of<Cfg>();
  } else {
    return complete_config(src.config(), src.path().string());
  }
}

template <class Cfg, class T = float, class W = NF4>
class Gemma3Block {
  using Dims = Gemma3Dims<Cfg>;
  using C = typename Dims::hidden;
  using Hq = typename Dims::heads;
  using Hkv = typename Dims::kv_heads;
  using D = typename Dims::head_dim;
  using Q = typename Dims::q;
  template <class Out, class In>
  using projection_t = BlockLinear<T, Tensor<W, Out, In>>;

 public:
  using hidden_type = Variable<T, Dyn, C>;  // [tokens, hidden]
  using norm_type = Variable<T, C>;
  using head_norm_type = Variable<T, D>;
  using attention_type = Variable<T, Dyn, Q>;  // [tokens, heads · head_dim]
  using q_type = projection_t<Q, C>;
  using k_type = projection_t<typename Dims::kv, C>;
  using v_type = projection_t<typename Dims::kv, C>;
  using o_type = projection_t<C, Q>;
  using gate_type = projection_t<typename Dims::intermediate, C>;
  using up_type = projection_t<typename Dims::intermediate, C>;
  using down_type = projection_t<C, typename Dims::intermediate>;

  // `cfg`: the model's configuration (model_config<Cfg>(src)).
  Gemma3Block(const Gemma3WeightSource& src, index_t layer, const Gemma3Options& o)
      : Gemma3Block(src, layer, o, model_config<Cfg>(src)) {}
  Gemma3Block(const Gemma3WeightSource& src, index_t layer, const Gemma3Options& o, const Gemma3RuntimeConfig& cfg)
      : cfg_(cfg),
        layer_(layer),
        q_(make<q_type>(src, Projection::q_proj, o)),
        k_(make<k_type>(src, Projection::k_proj, o)),
        v_(make<v_type>(src, Projection::v_proj, o)),
        o_(make<o_type>(src, Projection::o_proj, o)),
        gate_(make<gate_type>(src, Projection::gate_proj, o)),
        up_(make<up_type>(src, Projection::up_proj, o)),
        down_(make<down_type>(src, Projection::down_proj, o)),
        input_norm_(detail::load_constant<T, C>(src, name("input_layernorm.weight"), o)),
        post_attention_norm_(detail::load_constant<T, C>(src, name("post_attention_layernorm.weight"), o)),
        pre_feedforward_norm_(detail::load_constant<T, C>(src, name("pre_feedforward_layernorm.weight"), o)),
        post_feedforward_norm_(detail::load_constant<T, C>(src, name("post_feedforward_layernorm.weight"), o)),
        q_norm_(detail::load_constant<T, D>(src, name("self_attn.q_norm.weight"), o)),
        k_norm_(detail::load_constant<T, D>(src, name("self_attn.k_norm.weight"), o)) {}

  static constexpr bool is_global(index_t layer) { return Gemma3RuntimeConfig::is_global_layer(layer); }
  index_t layer() const { return layer_; }
  bool global() const { return is_global(layer_); }
  const Gemma3RuntimeConfig& config() const { return cfg_; }
  RopeParams rope_params() const {
    return global() ? RopeParams{cfg_.rope_global_theta, cfg_.rope_global_scaling} : RopeParams{cfg_.rope_local_theta, 1.0};
  }
  AttentionParams attention_params() const {
    return {1.0 / std::sqrt(cfg_.query_pre_attn_scalar), global() ? index_t{0} : cfg_.sliding_window};
  }

  // Queries, keys and values of x after their norms and RoPE: q [N, Hq, D], k and v [N, Hkv, D].
  struct Qkv {
    Variable<T, Dyn, Hq, D> q;
    Variable<T, Dyn, Hkv, D> k, v;
  };
  Qkv qkv(const hidden_type& x, const Tensor<std::int32_t, Dyn>& positions, const ForwardPass& pass) const {
    const index_t n = x.size(0);
    const double eps = cfg_.rms_norm_eps;
    const hidden_type h = rmsnorm(x, input_norm_, eps);
    auto q = reshape<Dyn, Hq, D>(call(q_, h, Projection::q_proj, pass), n, cfg_.heads, cfg_.head_dim);
    auto k = reshape<Dyn, Hkv, D>(call(k_, h, Projection::k_proj, pass), n, cfg_.kv_heads, cfg_.head_dim);
    auto v = reshape<Dyn, Hkv, D>(call(v_, h, Projection::v_proj, pass), n, cfg_.kv_heads, cfg_.head_dim);
    q = rope(rmsnorm(q, q_norm_, eps), positions, rope_params());
    k = rope(rmsnorm(k, k_norm_, eps), positions, rope_params());
    return {std::move(q), std::move(k), std::move(v)};
  }

  // The rest of the layer after attention: x + post_attention_norm(o_proj(a)), then the MLP and its residual.
  // a: [N, Hq · D].
  hidden_type finish(const hidden_type& x, const attention_type& a, const ForwardPass& pass) const {
    const double eps = cfg_.rms_norm_eps;
    const hidden_type attn_out = rmsnorm(call(o_, a, Projection::o_proj, pass), post_attention_norm_, eps);
    const hidden_type x1 = x + attn_out;
    const hidden_type h1 = rmsnorm(x1, pre_feedforward_norm_, eps);
    const auto mlp = geglu(call(gate_, h1, Projection::gate_proj, pass), call(up_, h1, Projection::up_proj, pass));
    return x1 + rmsnorm(call(down_, mlp, Projection::down_proj, pass), post_feedforward_norm_, eps);
  }

  // x: [N, hidden] -> [N, hidden]; positions, segment_ids: int32 [N] on x's device (segment ids may be undefined).
  hidden_type operator()(const hidden_type& x, const Tensor<std::int32_t, Dyn>& positions,
                         const Tensor<std::int32_t, Dyn>& segment_ids, const ForwardPass& pass) const {
    const Qkv t = qkv(x, positions, pass);
    const auto a = attention(t.q, t.k, t.v, attention_params(), segment_ids);
    return finish(x, reshape<Dyn, Q>(a, x.size(0), cfg_.q_dim()), pass);
  }

  // fn(Projection, const BlockLinear&) for each of the seven, in PEFT's order q, k, v, o, gate, up, down.
  template <class Fn>
  void for_each_projection(Fn&& fn) const {
    fn(Projection::q_proj, q_);
    fn(Projection::k_proj, k_);
    fn(Projection::v_proj, v_);
    fn(Projection::o_proj, o_);
    fn(Projection::gate_proj, gate_);
    fn(Projection::up_proj, up_);
    fn(Projection::down_proj, down_);
  }

  // Whether projection p carries a LoRA adapter.
  bool adapted(Projection p) const {
    bool out = false;
    for_each_projection([&](Projection q, const auto& proj) { out = out || (q == p && proj.lora() != nullptr); });
    return out;
  }

  const q_type& q_proj() const { return q_; }
  const k_type& k_proj() const { return k_; }
  const v_type& v_proj() const { return v_; }
  const o_type& o_proj() const { return o_; }
  const gate_type& gate_proj() const { return gate_; }
  const up_type& up_proj() const { return up_; }
  const down_type& down_proj() const { return down_; }
  const norm_type& input_layernorm() const { return input_norm_; }
  const norm_type& post_attention_layernorm() const { return post_attention_norm_; }
  const norm_type& pre_feedforward_layernorm() const { return pre_feedforward_norm_; }
  const norm_type& post_feedforward_layernorm() const { return post_feedforward_norm_; }
  const head_norm_type& q_norm() const { return q_norm_; }
  const head_norm_type& k_norm() const { return k_norm_; }

  // "layers.<i>.<leaf>", transformers' name of one of this layer's tensors.
  std::string name(std::string_view leaf) const { return tensor_name(layer_, leaf); }
  static std::string tensor_name(index_t layer, std::string_view leaf) {
    return "layers." + std::to_string(layer) + "." + std::string(leaf);
  }

 private:
  template <class Proj, class X>
  auto call(const Proj& proj, const X& x, Projection p, const ForwardPass& pass) const {
    if constexpr (std::is_same_v<T, float>) {
      if (pass.packed != nullptr && !pass.train)
        if (const PackedMatrix* m = pass.packed->find(layer_, p)) return packed_call(proj, *m, x);
    }
    return proj(x, projection_stream(pass.dropout, layer_, p), pass.train, pass.batch_rows);
  }
  // The projection over its packed weight (no gradient: generation), plus the adapter's fp32 part.
  template <class Proj, class X>
  auto packed_call(const Proj& proj, const PackedMatrix& m, const X& x) const {
    using result = decltype(proj(x));
    using tensor = typename result::tensor_type;
    tensor y(typename tensor::shape_type(x.size(0), m.rows), x.value().device());
    packed_gemv(m, x.value().data(), x.size(0), y.data());
    if (const auto* l = proj.lora()) return result(result(std::move(y)) + l->update(x));
    return result(std::move(y));
  }

  template <class Proj>
  Proj make(const Gemma3WeightSource& src, Projection p, const Gemma3Options& o) const {
    using Weight = std::remove_cvref_t<decltype(std::declval<const Proj&>().base())>;
    using Out = typename detail::weight_extents<Weight>::out;
    using In = typename detail::weight_extents<Weight>::in;
    Weight w = detail::load_base_weight<W, Out, In>(src, qlora::projection_weight_name(layer_, p), o);
    if (const std::optional<LoraSpec> spec = o.lora.at(layer_, p))
      return Proj(LoraLinear<T, Weight>(std::move(w), *spec, RandomStream{o.seed, static_cast<std::uint64_t>(layer_) * 8 +
                                                                                        static_cast<std::uint64_t>(p)}));
    return Proj(FrozenLinear<T, Weight>(std::move(w)));
  }

  Gemma3RuntimeConfig cfg_;
  index_t layer_;
  q_type q_;
  k_type k_;
  v_type v_;
  o_type o_;
  gate_type gate_;
  up_type up_;
  down_type down_;
  norm_type input_norm_, post_attention_norm_, pre_feedforward_norm_, post_feedforward_norm_;
  head_norm_type q_norm_, k_norm_;
};

}  // namespace qlora
