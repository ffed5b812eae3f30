// AdamW with fp32 states, step for step as torch.optim.AdamW (the single-tensor path, which torch uses on the CPU):
//
//   p ← p · (1 − lr·wd)                        decoupled weight decay, before the update
//   m ← m + (1 − β1)(g − m)                    (torch's lerp)
//   v ← β2 v + (1 − β2) g²
//   p ← p − lr/(1 − β1ᵗ) · m / (sqrt(v)/sqrt(1 − β2ᵗ) + eps)
//
// Scalars are formed in double and rounded to float once, as torch does when it passes Python floats to its fp32
// kernels. Parameters that received no gradient since zero_grad() are skipped (their step count does not advance).
// The same per-element update runs in cuda/adamw.cuh for parameters on a GPU. `restore` puts back a saved state
// (io/optimizer_state.hpp reads and writes optimizer.safetensors).
#pragma once

#include <cmath>
#include <vector>

#include "parameter.hpp"

#if defined(__CUDACC__)
#include "../cuda/adamw.cuh"
#endif

namespace qlora {

struct AdamWConfig {  // torch.optim.AdamW's defaults (the HF Trainer passes weight_decay = 0.0 unless told)
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.01;
};

// The scalars of one step of one parameter, in the float form the element update uses.
struct AdamWStep {
  float decay;          // 1 − lr·wd
  float one_minus_b1;   // lerp weight
  float beta2, one_minus_b2;
  float step_size;      // lr / (1 − β1ᵗ)
  float bias2_sqrt;     // sqrt(1 − β2ᵗ)
  float eps;

  static AdamWStep make(const AdamWConfig& c, double lr, long step) {
    const double bias1 = 1 - std::pow(c.beta1, static_cast<double>(step));
    const double bias2 = 1 - std::pow(c.beta2, static_cast<double>(step));
    return {static_cast<float>(1 - lr * c.weight_decay), static_cast<float>(1 - c.beta1), static_cast<float>(c.beta2),
            static_cast<float>(1 - c.beta2), static_cast<float>(lr / bias1), static_cast<float>(std::sqrt(bias2)),
            static_cast<float>(c.eps)};
  }
};

QLORA_HD inline void adamw_update(const AdamWStep& s, float& p, float g, float& m, float& v) {
  p = p * s.decay;
  m = m + s.one_minus_b1 * (g - m);
  v = v * s.beta2 + s.one_minus_b2 * (g * g);
  const float denom = std::sqrt(v) / s.bias2_sqrt + s.eps;
  p = p + (-s.step_size) * (m / denom);
}

namespace cpu {
inline void adamw_step(const AdamWStep& s, float* p, const float* g, float* m, float* v, index_t n) {
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (index_t i = 0; i < n; ++i) adamw_update(s, p[i], g[i], m[i], v[i]);
}
}  // namespace cpu

QLORA_DISPATCH_BEGIN

class AdamW {
 public:
  AdamW(ParameterList params, AdamWConfig config = {}) : params_(std::move(params)), config_(config) {
    for (const auto& p : params_) {
      states_.push_back({Tensor<float, Dyn>::zeros_on(p.device(), p.numel()),
                         Tensor<float, Dyn>::zeros_on(p.device(), p.numel()), 0});
    }
  }

  // One update of every parameter that has a gradient, with learning rate `lr` (from the schedule).
  void step(double lr) {
    for (std::size_t i = 0; i < params_.size(); ++i) {
      const Parameter& p = params_[i];
      const Tensor<float, Dyn> g = p.grad();
      if (!g.defined()) continue;
      State& st = states_[i];
      const AdamWStep s = AdamWStep::make(config_, lr, ++st.step);
      if (p.device().is_cpu()) {
        cpu::adamw_step(s, p.value().data(), g.data(), st.m.data(), st.v.data(), p.numel());
      } else {
        QLORA_ON_CUDA("adamw", p.device(),
                      cuda::adamw_step(s, p.value().data(), g.data(), st.m.data(), st.v.data(), p.numel(),
                                       p.device()));
      }
    }
  }
  void zero_grad() const {
    for (const auto& p : params_) p.zero_grad();
  }

  struct State {
    Tensor<float, Dyn> m, v;  // first and second moments, [numel]
    long step;
  };
  const std::vector<State>& states() const { return states_; }
  const ParameterList& parameters() const { return params_; }
  const AdamWConfig& config() const { return config_; }

  // Puts back a saved state of parameter `index` (io/optimizer_state.hpp): the moments are copied into this
  // optimizer's tensors, on whatever device they live, and the step count is set.
  void restore(std::size_t index, const State& saved) {
    require(index < states_.size(), "adamw", "restore: parameter ", index, " of ", states_.size());
    State& st = states_[index];
    const Parameter& p = params_[index];
    require(saved.m.numel() == p.numel() && saved.v.numel() == p.numel(), "adamw", "parameter '", p.name(),
            "': saved moments hold ", saved.m.numel(), " and ", saved.v.numel(), " elements, the parameter ",
            p.numel());
    require(saved.step >= 0, "adamw", "parameter '", p.name(), "': negative step count ", saved.step);
    st.m.copy_from(saved.m);
    st.v.copy_from(saved.v);
    st.step = saved.step;
  }

 private:
  ParameterList params_;
  AdamWConfig config_;
  std::vector<State> states_;
};

QLORA_DISPATCH_END
}  // namespace qlora
