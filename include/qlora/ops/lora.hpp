// LoraLinear: a frozen base projection plus a trainable low-rank update (PEFT's LoRA layer).
//
//   y = x · Wᵀ + s · (dropout(x) · Aᵀ) · Bᵀ        x: [rows, in], W: [out, in] frozen, A: [r, in], B: [out, r]
//   s = alpha / r, or alpha / sqrt(r) with rsLoRA
//
// Initialised like PEFT (init_lora_weights=True): A ~ kaiming_uniform(a = sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)),
// B = 0, so the layer starts equal to the base. Gradients reach x, A and B, never W. The base's extents are static
// (they come from the model's configuration); the rank r is a run-time value (LoraSpec), checked when the adapter is
// built or given. W may be dense (fp32, bf16) or 4-bit (quant/nf4.hpp).
#pragma once

#include <cmath>

#include "../core/random.hpp"
#include "dropout.hpp"
#include "elementwise.hpp"
#include "linear.hpp"
#include "matmul.hpp"

namespace qlora {

// One adapter's numbers, as PEFT's LoraConfig gives them for a module (r and lora_alpha after rank_pattern and
// alpha_pattern, lora_dropout, use_rslora).
struct LoraSpec {
  index_t rank = 8;
  double alpha = 8;
  double dropout = 0;  // kept as given, so adapter_config.json says 0.05, not 0.0500000007
  bool use_rslora = false;
  // s = alpha / r, or alpha / sqrt(r) with rsLoRA.
  double scaling() const {
    return use_rslora ? alpha / std::sqrt(static_cast<double>(rank)) : alpha / static_cast<double>(rank);
  }
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

template <class T, class Weight>
class LoraLinear {
  using Out = typename detail::weight_extents<Weight>::out;
  using In = typename detail::weight_extents<Weight>::in;

 public:
  using a_type = Variable<T, Dyn, In>;   // lora_A.weight: [r, in]
  using b_type = Variable<T, Out, Dyn>;  // lora_B.weight: [out, r]

  // PEFT's initialisation of A from `init` (B = 0), on the base weight's device.
  LoraLinear(Weight base, const LoraSpec& spec, RandomStream init) : base_(std::move(base)), spec_(spec) {
    check_spec();
    const index_t in = base_.size(1);
    auto a = Tensor<T, Dyn, In>(typename Tensor<T, Dyn, In>::shape_type(std::array<index_t, 2>{spec.rank, in}));
    const double bound = 1.0 / std::sqrt(static_cast<double>(in));
    for (index_t i = 0; i < a.numel(); ++i)
      a.data()[i] = convert<T>((2.0 * uniform01(init, static_cast<std::uint64_t>(i)) - 1.0) * bound);
    const Device device = base_.device();
    a_ = a_type::leaf(a.on(device));
    b_ = b_type::leaf(Tensor<T, Out, Dyn>(
        typename Tensor<T, Out, Dyn>::shape_type(std::array<index_t, 2>{base_.size(0), spec.rank}), device));
  }
  // With given adapter weights (e.g. loaded from a PEFT file): a [r, in], b [out, r] with r = spec.rank.
  LoraLinear(Weight base, const LoraSpec& spec, Tensor<T, Dyn, In> a, Tensor<T, Out, Dyn> b)
      : base_(std::move(base)), spec_(spec) {
    check_spec();
    if (a.size(0) != spec.rank || a.size(1) != base_.size(1) || b.size(0) != base_.size(0) || b.size(1) != spec.rank)
      fail("lora", "adapter matrices A ", a.shape().str(), " and B ", b.shape().str(), " do not fit rank ", spec.rank,
           " on a [", base_.size(0), ", ", base_.size(1), "] projection");
    a_ = a_type::leaf(std::move(a));
    b_ = b_type::leaf(std::move(b));
  }

  index_t rank() const { return spec_.rank; }
  double scaling() const { return spec_.scaling(); }

  // y: [rows, out]. `dropout_stream` selects this call's dropout mask (ignored when lora_dropout is 0 or `train` is
  // false); `batch_rows` how x's rows make batch rows, for masks that do not depend on padding (ops/dropout.hpp).
  template <class Rows>
  Variable<T, Rows, Out> operator()(const Variable<T, Rows, In>& x, RandomStream dropout_stream = {},
                                    bool train = true, DropoutRows batch_rows = {}) const {
    const auto base_y = linear(x, base_);
    const DropoutParams d{static_cast<float>(spec_.dropout), dropout_stream,
                          static_cast<std::uint64_t>(batch_rows.tokens_per_row) * static_cast<std::uint64_t>(x.value().size(1)),
                          batch_rows.first_row};
    return base_y + update(train ? dropout(x, d) : x);
  }

  // The adapter's part alone, scaling · (x · Aᵀ) · Bᵀ: [rows, out] (x after any dropout).
  template <class Rows>
  Variable<T, Rows, Out> update(const Variable<T, Rows, In>& x) const {
    const auto low = matmul<Transpose::no, Transpose::yes>(x, a_);  // [rows, r]
    return scale(matmul<Transpose::no, Transpose::yes>(low, b_), scaling());
  }

  const Weight& base() const { return base_; }
  const a_type& lora_a() const { return a_; }
  const b_type& lora_b() const { return b_; }
  const LoraSpec& spec() const { return spec_; }

 private:
  void check_spec() const {
    if (spec_.rank < 1) fail("lora", "the rank must be >= 1, got ", spec_.rank);
    if (!(spec_.dropout >= 0 && spec_.dropout < 1)) fail("lora", "lora_dropout must be in [0, 1), got ", spec_.dropout);
    if (!std::isfinite(spec_.alpha)) fail("lora", "lora_alpha must be a finite number, got ", spec_.alpha);
  }

  Weight base_;
  LoraSpec spec_;
  a_type a_;
  b_type b_;
};

}  // namespace qlora
