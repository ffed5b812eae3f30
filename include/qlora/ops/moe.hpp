// Mixture of experts as Gemma 4's MoE block computes it (transformers' Gemma4TextRouter after its projection, and
// Gemma4TextExperts), in two differentiable ops.
//
// moe_route(z, k, c): per token, over its E expert logits z [N, E]:
//   p = softmax(z)                     (in the compute type: fp32, as transformers' router; fp64 for gradchecks)
//   K = the k most probable experts, most probable first (ties to the lower index)
//   q_j = p_{K_j} / Σ_{i<k} p_{K_i}     (= softmax of z over K)
//   w_j = q_j · c_{K_j}                c = per_expert_scale, frozen
// returns w [N, k] (differentiable) and K [N, k] (int32). Backward into z, with u_j = dw_j · c_{K_j}:
//   dz_{K_j} = q_j · (u_j − Σ_i q_i · u_i),   dz = 0 on experts outside K   (the choice itself has no gradient)
//
// moe_experts(h, w, K, gate_up, down): per token t and chosen slot j, expert e = K[t, j]:
//   [g; u] = gate_up[e] · h_t          gate_up: [E, 2I, H] (gate rows first, then up)
//   y_tj  = down[e] · (gelu_tanh(g) ⊙ u)      down: [E, H, I]
//   out_t = Σ_j w[t, j] · y_tj          accumulated expert by expert (transformers' index_add_ order)
// Backward (the experts' weights frozen): dw[t, j] = <dout_t, y_tj>; da = down[e]ᵀ · (w[t, j] · dout_t);
// [dg; du] from GeGLU's backward; dh_t += gate_up[e]ᵀ · [dg; du]. Nothing of the experts is stored for backward: each
// expert's rows are gathered and its two GEMMs recomputed (the forward's cost again, none of its memory).
//
// CPU (the device's GEMM backend per expert over the tokens routed to it), fp32 and fp64. No CUDA kernel yet: a GPU operand is
// refused by name.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <type_traits>
#include <vector>

#include "../autograd/variable.hpp"
#include "../core/tensor.hpp"
#include "activation.hpp"
#include "matmul.hpp"

namespace qlora {

template <class T>
struct MoeRouting {
  Variable<T, Dyn, Dyn> weights;            // [N, k]
  Tensor<std::int32_t, Dyn, Dyn> experts;   // [N, k], most probable first
};

namespace moe_detail {
template <class T>
void require_cpu_float(const Device& d, const char* op) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "the MoE ops compute in fp32 or fp64");
  if (!d.is_cpu()) fail(op, "runs on the CPU only so far; got an operand on ", d.str());
}

// A row-major [rows, cols] buffer.
template <class T>
struct Rows {
  index_t rows = 0, cols = 0;
  std::vector<T> v;
  Rows(index_t r, index_t c) : rows(r), cols(c), v(static_cast<std::size_t>(r * c)) {}
  T* data() { return v.data(); }
  const T* data() const { return v.data(); }
  T& operator()(index_t r, index_t c) { return v[static_cast<std::size_t>(r * cols + c)]; }
};

// C [m, n] = A [m, k] · op(B)   (op(B) = Bᵀ when B is stored [n, k], else B stored [k, n])
template <class T>
void gemm_rows(const Device& d, index_t m, index_t n, index_t k, const T* a, const T* b, bool b_transposed, T* c) {
  GemmParams p;
  p.m = m, p.n = n, p.k = k, p.trans_b = b_transposed;
  cpu::gemm(p, a, b, c, d.cpu_gemm());
}

// The (token, slot) pairs routed to each expert, tokens ascending.
struct ExpertRows {
  std::vector<std::vector<index_t>> token, slot;
};
inline ExpertRows rows_by_expert(const Tensor<std::int32_t, Dyn, Dyn>& experts, index_t num_experts) {
  ExpertRows r;
  r.token.resize(static_cast<std::size_t>(num_experts));
  r.slot.resize(static_cast<std::size_t>(num_experts));
  const index_t n = experts.size(0), k = experts.size(1);
  for (index_t t = 0; t < n; ++t)
    for (index_t j = 0; j < k; ++j) {
      const std::int32_t e = experts.data()[t * k + j];
      if (e < 0 || e >= num_experts)
        fail("moe_experts", "token ", t, " is routed to expert ", e, ", outside the ", num_experts, " experts");
      r.token[static_cast<std::size_t>(e)].push_back(t);
      r.slot[static_cast<std::size_t>(e)].push_back(j);
    }
  return r;
}

// For expert e's gathered rows x [m, H]: the GeGLU inputs g, u [m, I] and the activation a [m, I].
template <class T>
void expert_hidden(const Device& d, const Rows<T>& x, const T* gate_up_e, index_t inter, Rows<T>& g, Rows<T>& u,
                   Rows<T>& a) {
  const index_t m = x.rows, hidden = x.cols;
  Rows<T> gu(m, 2 * inter);
  gemm_rows(d, m, 2 * inter, hidden, x.data(), gate_up_e, true, gu.data());
  g = Rows<T>(m, inter), u = Rows<T>(m, inter), a = Rows<T>(m, inter);
  for (index_t r = 0; r < m; ++r) {
    std::copy_n(gu.data() + r * 2 * inter, inter, g.data() + r * inter);
    std::copy_n(gu.data() + r * 2 * inter + inter, inter, u.data() + r * inter);
  }
  cpu::geglu_forward(g.data(), u.data(), a.data(), m * inter);
}
}  // namespace moe_detail

// Routing weights and chosen experts from the router's logits z [N, E] (see the top of this file).
template <class T>
MoeRouting<T> moe_route(const Variable<T, Dyn, Dyn>& logits, index_t top_k, const Tensor<T, Dyn>& per_expert_scale) {
  moe_detail::require_cpu_float<T>(logits.device(), "moe_route");
  const index_t n = logits.size(0), e = logits.size(1);
  if (per_expert_scale.size(0) != e)
    fail("moe_route", "per_expert_scale has ", per_expert_scale.size(0), " entries for ", e, " experts");
  if (top_k < 1 || top_k > e) fail("moe_route", "top_k ", top_k, " must be in [1, ", e, "]");
  const T* z = logits.value().data();
  const T* c = per_expert_scale.data();
  Tensor<T, Dyn, Dyn> w(Shape<Dyn, Dyn>(n, top_k)), q(Shape<Dyn, Dyn>(n, top_k));
  Tensor<std::int32_t, Dyn, Dyn> chosen(Shape<Dyn, Dyn>(n, top_k));
  std::vector<T> p(static_cast<std::size_t>(e));
  std::vector<index_t> order(static_cast<std::size_t>(e));
  for (index_t t = 0; t < n; ++t) {
    const T* zt = z + t * e;
    const T m = *std::max_element(zt, zt + e);
    T sum = 0;
    for (index_t i = 0; i < e; ++i) sum += (p[static_cast<std::size_t>(i)] = std::exp(zt[i] - m));
    for (auto& v : p) v /= sum;
    std::iota(order.begin(), order.end(), index_t{0});
    std::partial_sort(order.begin(), order.begin() + top_k, order.end(), [&](index_t a, index_t b) {
      const T pa = p[static_cast<std::size_t>(a)], pb = p[static_cast<std::size_t>(b)];
      return pa > pb || (pa == pb && a < b);
    });
    T chosen_sum = 0;
    for (index_t j = 0; j < top_k; ++j) chosen_sum += p[static_cast<std::size_t>(order[static_cast<std::size_t>(j)])];
    for (index_t j = 0; j < top_k; ++j) {
      const index_t ex = order[static_cast<std::size_t>(j)];
      const T qj = p[static_cast<std::size_t>(ex)] / chosen_sum;
      q.data()[t * top_k + j] = qj;
      w.data()[t * top_k + j] = qj * c[ex];
      chosen.data()[t * top_k + j] = static_cast<std::int32_t>(ex);
    }
  }
  auto backward = [q, chosen, scale = per_expert_scale, n, e, top_k, zn = logits.node()](const Tensor<T, Dyn, Dyn>& dw) {
    Tensor<T, Dyn, Dyn> dz = Tensor<T, Dyn, Dyn>::zeros(n, e);
    for (index_t t = 0; t < n; ++t) {
      T s = 0;
      for (index_t j = 0; j < top_k; ++j)
        s += q.data()[t * top_k + j] * dw.data()[t * top_k + j] * scale.data()[chosen.data()[t * top_k + j]];
      for (index_t j = 0; j < top_k; ++j) {
        const std::int32_t ex = chosen.data()[t * top_k + j];
        const T u = dw.data()[t * top_k + j] * scale.data()[ex];
        dz.data()[t * e + ex] = q.data()[t * top_k + j] * (u - s);
      }
    }
    accumulate_grad(zn, dz);
  };
  return {make_result("moe_route", std::move(w), std::move(backward), logits), std::move(chosen)};
}

// Σ_j w[t, j] · expert_{K[t, j]}(h_t) for h [N, H] (see the top of this file).
template <class T>
Variable<T, Dyn, Dyn> moe_experts(const Variable<T, Dyn, Dyn>& h, const Variable<T, Dyn, Dyn>& weights,
                                  const Tensor<std::int32_t, Dyn, Dyn>& experts, const Tensor<T, Dyn, Dyn, Dyn>& gate_up,
                                  const Tensor<T, Dyn, Dyn, Dyn>& down) {
  using M = moe_detail::Rows<T>;
  moe_detail::require_cpu_float<T>(h.device(), "moe_experts");
  const Device device = h.device();
  const index_t n = h.size(0), hidden = h.size(1), num = gate_up.size(0), inter = gate_up.size(1) / 2;
  const index_t k = experts.size(1);
  if (gate_up.size(2) != hidden || gate_up.size(1) != 2 * inter || down.size(0) != num || down.size(1) != hidden ||
      down.size(2) != inter)
    fail("moe_experts", "gate_up [", num, ", ", gate_up.size(1), ", ", gate_up.size(2), "] and down [", down.size(0),
         ", ", down.size(1), ", ", down.size(2), "] do not fit hidden ", hidden);
  if (weights.size(0) != n || weights.size(1) != k || experts.size(0) != n)
    fail("moe_experts", "weights [", weights.size(0), ", ", weights.size(1), "] and experts [", experts.size(0), ", ",
         k, "] for ", n, " tokens");
  const moe_detail::ExpertRows rows = moe_detail::rows_by_expert(experts, num);
  // Expert e's rows of h, gathered.
  auto gather = [hidden](const T* src, const std::vector<index_t>& tokens) {
    M x(static_cast<index_t>(tokens.size()), hidden);
    for (std::size_t r = 0; r < tokens.size(); ++r)
      std::copy_n(src + tokens[r] * hidden, hidden, x.data() + static_cast<index_t>(r) * hidden);
    return x;
  };
  Tensor<T, Dyn, Dyn> out = Tensor<T, Dyn, Dyn>::zeros(n, hidden);
  const T* wv = weights.value().data();
  for (index_t e = 0; e < num; ++e) {
    const auto& tokens = rows.token[static_cast<std::size_t>(e)];
    if (tokens.empty()) continue;
    const auto m = static_cast<index_t>(tokens.size());
    M g(0, 0), u(0, 0), a(0, 0), y(m, hidden);
    moe_detail::expert_hidden(device, gather(h.value().data(), tokens), gate_up.data() + e * 2 * inter * hidden, inter,
                              g, u, a);
    moe_detail::gemm_rows(device, m, hidden, inter, a.data(), down.data() + e * hidden * inter, true, y.data());
    for (std::size_t r = 0; r < tokens.size(); ++r) {
      const index_t t = tokens[r];
      const T wt = wv[t * k + rows.slot[static_cast<std::size_t>(e)][r]];
      for (index_t i = 0; i < hidden; ++i) out.data()[t * hidden + i] += wt * y(static_cast<index_t>(r), i);
    }
  }
  auto backward = [hv = h.value(), wv_t = weights.value(), rows, gate_up, down, n, hidden, inter, num, k, gather,
                   device, hn = h.node(), wn = weights.node()](const Tensor<T, Dyn, Dyn>& dout) {
    Tensor<T, Dyn, Dyn> dh, dw;
    if (hn) dh = Tensor<T, Dyn, Dyn>::zeros(n, hidden);
    if (wn) dw = Tensor<T, Dyn, Dyn>::zeros(n, k);
    for (index_t e = 0; e < num; ++e) {
      const auto& tokens = rows.token[static_cast<std::size_t>(e)];
      const auto& slots = rows.slot[static_cast<std::size_t>(e)];
      if (tokens.empty()) continue;
      const auto m = static_cast<index_t>(tokens.size());
      M g(0, 0), u(0, 0), a(0, 0);
      moe_detail::expert_hidden(device, gather(hv.data(), tokens), gate_up.data() + e * 2 * inter * hidden, inter, g, u,
                                a);
      const T* dn = down.data() + e * hidden * inter;  // [H, I]
      M dy(m, hidden);  // w · dout, the gradient of y
      for (index_t r = 0; r < m; ++r) {
        const index_t t = tokens[static_cast<std::size_t>(r)];
        const index_t j = slots[static_cast<std::size_t>(r)];
        const T wt = wv_t.data()[t * k + j];
        for (index_t i = 0; i < hidden; ++i) dy(r, i) = wt * dout.data()[t * hidden + i];
      }
      if (wn) {
        M y(m, hidden);
        moe_detail::gemm_rows(device, m, hidden, inter, a.data(), dn, true, y.data());
        for (index_t r = 0; r < m; ++r) {
          const index_t t = tokens[static_cast<std::size_t>(r)];
          T dot = 0;
          for (index_t i = 0; i < hidden; ++i) dot += dout.data()[t * hidden + i] * y(r, i);
          dw.data()[t * k + slots[static_cast<std::size_t>(r)]] += dot;
        }
      }
      if (!hn) continue;
      M da(m, inter), dg(m, inter), du(m, inter), dgu(m, 2 * inter), dx(m, hidden);
      moe_detail::gemm_rows(device, m, inter, hidden, dy.data(), dn, false, da.data());  // dy · down[e]
      cpu::geglu_backward(g.data(), u.data(), da.data(), dg.data(), du.data(), m * inter);
      for (index_t r = 0; r < m; ++r) {
        std::copy_n(dg.data() + r * inter, inter, dgu.data() + r * 2 * inter);
        std::copy_n(du.data() + r * inter, inter, dgu.data() + r * 2 * inter + inter);
      }
      moe_detail::gemm_rows(device, m, hidden, 2 * inter, dgu.data(), gate_up.data() + e * 2 * inter * hidden, false,
                            dx.data());  // [dg du] · gate_up[e]
      for (index_t r = 0; r < m; ++r) {
        const index_t t = tokens[static_cast<std::size_t>(r)];
        for (index_t i = 0; i < hidden; ++i) dh.data()[t * hidden + i] += dx(r, i);
      }
    }
    if (hn) accumulate_grad(hn, dh);
    if (wn) accumulate_grad(wn, dw);
  };
  return make_result("moe_experts", std::move(out), std::move(backward), h, weights);
}

}  // namespace qlora
