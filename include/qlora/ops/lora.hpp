// LoraLinear: a frozen base projection plus a trainable low-rank update (PEFT's LoRA layer).
//
//   y = x · Wᵀ + s · (dropout(x) · Aᵀ) · Bᵀ        x: [rows, in], W: [out, in] frozen, A: [r, in], B: [out, r]
//   s = alpha / r, or alpha / sqrt(r) with rsLoRA
//
// Initialised like PEFT (init_lora_weights=True): A ~ kaiming_uniform(a = sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)),
// B = 0, so the layer starts equal to the base. Gradients reach x, A and B, never W. The rank is a compile-time
// extent, so A and B have fully static types; W may be dense (fp32, bf16) or 4-bit (quant/nf4.hpp).
#pragma once

#include <cmath>

#include "../core/random.hpp"
#include "dropout.hpp"
#include "elementwise.hpp"
#include "linear.hpp"
#include "matmul.hpp"

namespace qlora {

// PEFT's LoraConfig numbers that change the layer's arithmetic.
struct LoraHyper {
  double alpha = 8;       // lora_alpha
  double dropout = 0;     // lora_dropout (kept as given, so adapter_config.json says 0.05, not 0.0500000007)
  bool use_rslora = false;
};

namespace detail {
template <class W>
struct weight_extents;
template <class E, class O, class I>
struct weight_extents<Tensor<E, O, I>> {
  using out = O;
  using in = I;
};
}  // namespace detail

template <class T, class Weight, index_t Rank>
class LoraLinear {
  using Out = typename detail::weight_extents<Weight>::out;
  using In = typename detail::weight_extents<Weight>::in;
  static_assert(Out::is_static && In::is_static, "LoraLinear: the base weight's extents must be static");
  static_assert(Rank > 0, "LoraLinear: the rank must be positive");

 public:
  using a_type = Variable<T, Dim<Rank>, In>;   // lora_A.weight: [r, in]
  using b_type = Variable<T, Out, Dim<Rank>>;  // lora_B.weight: [out, r]
  static constexpr index_t rank = Rank;

  // PEFT's initialisation of A from `init` (B = 0), on the base weight's device.
  LoraLinear(Weight base, const LoraHyper& hyper, RandomStream init) : base_(std::move(base)), hyper_(hyper) {
    if (!(hyper.dropout >= 0 && hyper.dropout < 1)) fail("lora", "lora_dropout must be in [0, 1), got ", hyper.dropout);
    auto a = Tensor<T, Dim<Rank>, In>::zeros();
    const double bound = 1.0 / std::sqrt(static_cast<double>(In::value));
    for (index_t i = 0; i < a.numel(); ++i)
      a.data()[i] = convert<T>((2.0 * uniform01(init, static_cast<std::uint64_t>(i)) - 1.0) * bound);
    const Device device = base_.device();
    a_ = a_type::leaf(device.is_cpu() ? a : a.to(device));
    b_ = b_type::leaf(Tensor<T, Out, Dim<Rank>>(typename Tensor<T, Out, Dim<Rank>>::shape_type(), device));
  }
  // With given adapter weights (e.g. loaded from a PEFT file).
  LoraLinear(Weight base, const LoraHyper& hyper, Tensor<T, Dim<Rank>, In> a, Tensor<T, Out, Dim<Rank>> b)
      : base_(std::move(base)), hyper_(hyper), a_(a_type::leaf(std::move(a))), b_(b_type::leaf(std::move(b))) {}

  double scaling() const {
    return hyper_.use_rslora ? hyper_.alpha / std::sqrt(static_cast<double>(Rank)) : hyper_.alpha / Rank;
  }

  // y: [rows, out]. `dropout_stream` selects this call's dropout mask (ignored when lora_dropout is 0 or `train` is
  // false).
  template <class Rows>
  Variable<T, Rows, Out> operator()(const Variable<T, Rows, In>& x, RandomStream dropout_stream = {},
                                    bool train = true) const {
    const auto base_y = linear(x, base_);
    const auto x_in = train ? dropout(x, DropoutParams{static_cast<float>(hyper_.dropout), dropout_stream}) : x;
    const auto low = matmul<Transpose::no, Transpose::yes>(x_in, a_);   // [rows, r]
    const auto update = matmul<Transpose::no, Transpose::yes>(low, b_);  // [rows, out]
    return base_y + scale(update, scaling());
  }

  const Weight& base() const { return base_; }
  const a_type& lora_a() const { return a_; }
  const b_type& lora_b() const { return b_; }
  const LoraHyper& hyper() const { return hyper_; }

 private:
  Weight base_;
  LoraHyper hyper_;
  a_type a_;
  b_type b_;
};

}  // namespace qlora
