// bitsandbytes' AdamW8bit (and PagedAdamW8bit), matching its CPU backend (backends/cpu/ops.py):
//
// Parameters with at least min_8bit_size (4096) elements keep m and v as blockwise 8-bit codes (blocks of 256;
// m with the signed dynamic map, v with the unsigned one; a float32 absmax per block). Each step dequantizes,
// updates in float32 and re-quantizes:
//   m ← m·β1 + (1 − β1)·g           v ← v·β2 + (1 − β2)·g·g
//   denom = sqrt(v) / sqrt(1 − β2ᵗ) + eps
//   p ← p·(1 − lr·wd)  (when wd > 0)         p ← p + (−lr / (1 − β1ᵗ))·m / denom
// Smaller parameters keep float32 m and v and take bitsandbytes' 32-bit update:
//   p ← p·(1 − lr·wd);  p ← p + (−lr·sqrt(1 − β2ᵗ)/(1 − β1ᵗ)) · m / (sqrt(v) + eps·sqrt(1 − β2ᵗ))
// The golden test (tests/golden/bnb_adamw8bit.py) gets every state byte equal; parameters agree to 1 ulp, because
// torch's CPU sqrt is not always correctly rounded (it differs from IEEE sqrt in ~15 % of elements) while ours is.
// "Paged" puts the 8-bit states of parameters with >= 1e5 elements in CUDA managed memory (cuda::managed_device),
// as bitsandbytes does, so they can page to host memory under pressure; on the CPU it changes nothing. `restore`
// puts back a saved state (io/optimizer_state.hpp).
#pragma once

#include <cmath>
#include <vector>

#include "../quant/blockwise8.hpp"
#include "../quant/dynamic_map.hpp"
#include "adamw.hpp"

#if defined(__CUDACC__)
#include "../cuda/adamw8bit.cuh"
#include "../cuda/memory.cuh"
#endif

namespace qlora {

struct AdamW8bitConfig {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.01;
  index_t min_8bit_size = 4096;
  bool paged = false;
  static constexpr index_t blocksize = 256;
  static constexpr index_t paged_min_size = 100000;
};

// The float scalars of one 8-bit step (double arithmetic rounded once, as torch passes Python floats).
struct AdamW8bitStep {
  float beta1, one_minus_beta1, beta2, one_minus_beta2;
  float correction2;  // sqrt(1 − β2ᵗ)
  float eps;
  float decay;        // 1 − lr·wd (1 when wd = 0)
  float step_value;   // −lr / (1 − β1ᵗ)

  static AdamW8bitStep make(const AdamW8bitConfig& c, double lr, long t) {
    const double c1 = 1.0 - std::pow(c.beta1, static_cast<double>(t));
    const double c2 = std::sqrt(1.0 - std::pow(c.beta2, static_cast<double>(t)));
    return {static_cast<float>(c.beta1), static_cast<float>(1.0 - c.beta1), static_cast<float>(c.beta2),
            static_cast<float>(1.0 - c.beta2), static_cast<float>(c2), static_cast<float>(c.eps),
            static_cast<float>(c.weight_decay > 0 ? 1.0 - lr * c.weight_decay : 1.0), static_cast<float>(-lr / c1)};
  }
};

// m and v of one element, then p (torch's add with alpha and addcmul are single fma instructions).
// (nvcc would contract p·decay + update into an fma; __fmul_rn keeps the two roundings of the reference.)
QLORA_HD inline void adamw8bit_update(const AdamW8bitStep& s, float& p, float g, float& m, float& v) {
  m = ::fmaf(g, s.one_minus_beta1, m * s.beta1);
  v = ::fmaf(s.one_minus_beta2 * g, g, v * s.beta2);
  const float denom = std::sqrt(v) / s.correction2 + s.eps;
#if defined(__CUDA_ARCH__)
  p = __fadd_rn(__fmul_rn(p, s.decay), __fdiv_rn(__fmul_rn(s.step_value, m), denom));
#else
  p = p * s.decay;
  p = p + (s.step_value * m) / denom;
#endif
}

// bitsandbytes' 32-bit AdamW for parameters below min_8bit_size.
struct AdamW32bitStep {
  float beta1, one_minus_beta1, beta2, one_minus_beta2, decay;
  float eps_correction2;  // eps·sqrt(1 − β2ᵗ)
  float step_size;        // −lr·sqrt(1 − β2ᵗ)/(1 − β1ᵗ)

  static AdamW32bitStep make(const AdamW8bitConfig& c, double lr, long t) {
    const double c1 = 1.0 - std::pow(c.beta1, static_cast<double>(t));
    const double c2 = std::sqrt(1.0 - std::pow(c.beta2, static_cast<double>(t)));
    return {static_cast<float>(c.beta1), static_cast<float>(1.0 - c.beta1), static_cast<float>(c.beta2),
            static_cast<float>(1.0 - c.beta2), static_cast<float>(c.weight_decay > 0 ? 1.0 - lr * c.weight_decay : 1.0),
            static_cast<float>(c.eps * c2), static_cast<float>(-lr * c2 / c1)};
  }
};

QLORA_HD inline void adamw32bit_update(const AdamW32bitStep& s, float& p, float g, float& m, float& v) {
  m = ::fmaf(g, s.one_minus_beta1, m * s.beta1);
  v = ::fmaf(s.one_minus_beta2 * g, g, v * s.beta2);
  p = p * s.decay;
  p = ::fmaf(m / (std::sqrt(v) + s.eps_correction2), s.step_size, p);
}

namespace cpu {
// One 8-bit step of n elements: states dequantized, updated, re-quantized (bitsandbytes' CPU rounding).
inline void adamw8bit_step(const AdamW8bitStep& s, float* p, const float* g, std::uint8_t* q1, float* absmax1,
                           std::uint8_t* q2, float* absmax2, index_t n, const DynamicMap& map1,
                           const DynamicMap& map2, const DynamicCodeTable& table1, const DynamicCodeTable& table2) {
  constexpr index_t bs = AdamW8bitConfig::blocksize;
  std::vector<float> m(static_cast<std::size_t>(n)), v(static_cast<std::size_t>(n));
  dequantize_blockwise(q1, n, absmax1, map1, bs, m.data());
  dequantize_blockwise(q2, n, absmax2, map2, bs, v.data());
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (index_t i = 0; i < n; ++i)
    adamw8bit_update(s, p[i], g[i], m[static_cast<std::size_t>(i)], v[static_cast<std::size_t>(i)]);
  quantize_blockwise(m.data(), n, table1, bs, q1, absmax1);
  quantize_blockwise(v.data(), n, table2, bs, q2, absmax2);
}
inline void adamw32bit_step(const AdamW32bitStep& s, float* p, const float* g, float* m, float* v, index_t n) {
  for (index_t i = 0; i < n; ++i) adamw32bit_update(s, p[i], g[i], m[i], v[i]);
}
}  // namespace cpu

QLORA_DISPATCH_BEGIN

class AdamW8bit {
 public:
  struct State {
    bool eight_bit = false;
    Tensor<std::uint8_t, Dyn> state1, state2;  // 8-bit codes of m and v, [numel]
    Tensor<float, Dyn> absmax1, absmax2;       // [ceil(numel / 256)]
    Tensor<float, Dyn> m, v;                   // fp32 states of small parameters
    long step = 0;
  };

  AdamW8bit(ParameterList params, AdamW8bitConfig config = {})
      : params_(std::move(params)), config_(config), map1_(create_dynamic_map(true)), map2_(create_dynamic_map(false)),
        table1_(map1_), table2_(map2_) {
    for (const auto& p : params_) {
      State s;
      const index_t n = p.numel();
      s.eight_bit = n >= config_.min_8bit_size;
      const Device device = state_device(p);
      if (s.eight_bit) {
        const index_t blocks = blockwise_block_count(n, AdamW8bitConfig::blocksize);
        s.state1 = Tensor<std::uint8_t, Dyn>::zeros_on(device, n);
        s.state2 = Tensor<std::uint8_t, Dyn>::zeros_on(device, n);
        s.absmax1 = Tensor<float, Dyn>::zeros_on(device, blocks);
        s.absmax2 = Tensor<float, Dyn>::zeros_on(device, blocks);
      } else {
        s.m = Tensor<float, Dyn>::zeros_on(p.device(), n);
        s.v = Tensor<float, Dyn>::zeros_on(p.device(), n);
      }
      states_.push_back(std::move(s));
    }
  }

  void step(double lr) {
    // CPU parameters are independent and mostly small (LoRA matrices of 10k-40k elements): spread them over the
    // threads. Each one's arithmetic is unchanged, so the result does not depend on the thread count.
    const auto count = static_cast<std::ptrdiff_t>(params_.size());
#pragma omp parallel for schedule(dynamic) if (count > 1)
    for (std::ptrdiff_t i = 0; i < count; ++i)
      if (params_[static_cast<std::size_t>(i)].device().is_cpu()) step_one(static_cast<std::size_t>(i), lr);
    for (std::size_t i = 0; i < params_.size(); ++i)
      if (!params_[i].device().is_cpu()) step_one(i, lr);
  }

 private:
  void step_one(std::size_t i, double lr) {
    const Parameter& p = params_[i];
    const Tensor<float, Dyn> g = p.grad();
    if (!g.defined()) return;
    State& s = states_[i];
    ++s.step;
    if (p.device().is_cpu()) {
      if (s.eight_bit)
        cpu::adamw8bit_step(AdamW8bitStep::make(config_, lr, s.step), p.value().data(), g.data(), s.state1.data(),
                            s.absmax1.data(), s.state2.data(), s.absmax2.data(), p.numel(), map1_, map2_, table1_,
                            table2_);
      else
        cpu::adamw32bit_step(AdamW32bitStep::make(config_, lr, s.step), p.value().data(), g.data(), s.m.data(),
                             s.v.data(), p.numel());
      return;
    }
    QLORA_ON_CUDA("adamw8bit", p.device(),
                  if (s.eight_bit) cuda::adamw8bit_step(AdamW8bitStep::make(config_, lr, s.step), p.value().data(),
                                                        g.data(), s.state1.data(), s.absmax1.data(), s.state2.data(),
                                                        s.absmax2.data(), p.numel(), code_on(p.device(), 1),
                                                        code_on(p.device(), 2), p.device());
                  else cuda::adamw32bit_step(AdamW32bitStep::make(config_, lr, s.step), p.value().data(), g.data(),
                                             s.m.data(), s.v.data(), p.numel(), p.device()));
  }

 public:
  void zero_grad() const {
    for (const auto& p : params_) p.zero_grad();
  }

  const std::vector<State>& states() const { return states_; }
  const ParameterList& parameters() const { return params_; }
  const AdamW8bitConfig& config() const { return config_; }

  // Puts back a saved state of parameter `index` (io/optimizer_state.hpp): the saved tensors (on any device) are
  // copied into this optimizer's, which keep their device (paged ones stay in managed memory); the step is set.
  void restore(std::size_t index, const State& saved) {
    require(index < states_.size(), "adamw8bit", "restore: parameter ", index, " of ", states_.size());
    State& st = states_[index];
    const Parameter& p = params_[index];
    require(saved.eight_bit == st.eight_bit, "adamw8bit", "parameter '", p.name(), "': saved ",
            saved.eight_bit ? "8-bit" : "32-bit", " states, but this optimizer keeps ",
            st.eight_bit ? "8-bit" : "32-bit",
            " states for its ", p.numel(), " elements (min_8bit_size ", config_.min_8bit_size, ")");
    require(saved.step >= 0, "adamw8bit", "parameter '", p.name(), "': negative step count ", saved.step);
    auto copy = [&](const auto& into, const auto& from, const char* what) {
      require(from.numel() == into.numel(), "adamw8bit", "parameter '", p.name(), "': saved ", what, " holds ",
              from.numel(), " elements, expected ", into.numel());
      into.copy_from(from);
    };
    if (st.eight_bit) {
      copy(st.state1, saved.state1, "state1");
      copy(st.state2, saved.state2, "state2");
      copy(st.absmax1, saved.absmax1, "absmax1");
      copy(st.absmax2, saved.absmax2, "absmax2");
    } else {
      copy(st.m, saved.m, "exp_avg");
      copy(st.v, saved.v, "exp_avg_sq");
    }
    st.step = saved.step;
  }

  // Bytes held by the optimizer states (what the 8-bit format saves): 2 bytes per element plus 8 per 256 for
  // 8-bit parameters, 8 per element for the others.
  std::size_t state_bytes() const {
    std::size_t total = 0;
    for (const auto& s : states_)
      total += s.state1.bytes() + s.state2.bytes() + s.absmax1.bytes() + s.absmax2.bytes() + s.m.bytes() + s.v.bytes();
    return total;
  }

 private:
  Device state_device(const Parameter& p) const {
#if defined(__CUDACC__)
    if (config_.paged && p.device().is_cuda() && p.numel() >= AdamW8bitConfig::paged_min_size)
      return cuda::managed_device(p.device());  // the parameter's GPU and stream
#endif
    return p.device();
  }
#if defined(__CUDACC__)
  // The code on `device` (one copy per GPU and stream: a kernel reads only memory of its own stream).
  const float* code_on(const Device& device, int which) {
    auto& tables = which == 1 ? code1_ : code2_;
    for (const auto& t : tables)
      if (t.device() == device) return t.data();
    const DynamicMap& map = which == 1 ? map1_ : map2_;
    tables.push_back(Tensor<float, Dim<256>>::from(std::vector<float>(map.begin(), map.end())).to(device));
    return tables.back().data();
  }
  std::vector<Tensor<float, Dim<256>>> code1_, code2_;
#endif

  ParameterList params_;
  AdamW8bitConfig config_;
  DynamicMap map1_, map2_;
  DynamicCodeTable table1_, table2_;  // the CPU quantization's lookup tables of map1_, map2_
  std::vector<State> states_;
};

QLORA_DISPATCH_END
}  // namespace qlora
