// Scaled dot-product attention of a Gemma 3 layer (transformers' eager_attention_forward, no soft-capping), after the
// block has applied the q/k RMSNorm and RoPE. For query token i, query head h and its kv head g = h / (Hq / Hkv):
//
//   s[i, j] = scale · q[i, h] · k[j, g]        scale = query_pre_attn_scalar^-0.5 (a parameter)
//   visible(i, j) = j ≤ i  and  (W = 0 or j > i − W)  and  segment[j] = segment[i]
//   p[i, ·] = softmax over visible j of s[i, ·] (fp32; fp64 when T is double)     out[i, h] = Σ_j p[i, j] · v[j, g]
//
// q, out: [T, Hq, D]; k, v: [T, Hkv, D]; segment ids: int32 [T] or undefined (one sequence). W = 0: no window
// (transformers' sliding_window_overlay: kv_idx > q_idx − W). Batches are packed: the rows of a [B, T] batch laid end
// to end as B·T tokens with a distinct segment id per row give exactly the batched result (segment ids need not be
// sorted). Forward saves lse[h, i] = log Σ_j exp s[i, j] ([Hq, T], compute type); backward recomputes p = exp(s − lse)
// from it (as flash attention does), with δ[i] = Σ_d dout[i, h, d] · out[i, h, d]:
//   dv[j, g] += Σ_i p[i, j] dout[i, h]    ds = p ∘ (dout · vᵀ − δ)    dq = scale · ds · k    dk[j, g] += scale · dsᵀ · q
// CPU: one head's [T, T] scores at a time through cpu::gemm (q's device's backend), heads in parallel. CUDA: cuda/attention.cuh (flash
// style, never stores [T, T]).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "../autograd/variable.hpp"
#include "../core/tensor.hpp"
#include "matmul.hpp"

#if defined(__CUDACC__)
#include "../cuda/attention.cuh"
#include "../cuda/attention_gemm.cuh"
#endif

namespace qlora {

// What the layer fixes: the softmax scale and the sliding window (0: global attention).
struct AttentionParams {
  double scale = 1.0;  // query_pre_attn_scalar^-0.5 (Gemma 3 270M: 256^-0.5)
  index_t window = 0;  // Gemma 3 local layers: sliding_window (512 for 270M/1B, 1024 for 4B+)
};

// Extents shared by the CPU reference and the kernels.
struct AttentionDims {
  index_t tokens = 0, q_heads = 0, kv_heads = 0, head_dim = 0;
  CpuGemm gemm = CpuGemm::eigen;  // the CPU reference's per-head GEMMs: q's device's backend
};

namespace cpu {
// Whether query i sees key j (the formula above); seg may be null.
inline bool attention_visible(index_t i, index_t j, index_t window, const std::int32_t* seg) {
  return j <= i && (window == 0 || j > i - window) && (seg == nullptr || seg[i] == seg[j]);
}

namespace detail {
// Row-major C[m, n] = alpha · op(A) · op(B) (+ C when accumulate) on contiguous compute-type buffers.
template <class C>
void attention_gemm(index_t m, index_t n, index_t k, bool ta, bool tb, double alpha, const C* a, const C* b, C* c,
                    CpuGemm backend, bool accumulate = false) {
  GemmParams p;
  p.m = m;
  p.n = n;
  p.k = k;
  p.trans_a = ta;
  p.trans_b = tb;
  p.alpha = alpha;
  p.beta = accumulate ? 1 : 0;
  gemm(p, a, b, c, backend);
}

// x[:, head, :] of x: [T, H, D] as a contiguous [T, D] buffer in the compute type.
template <class C, class T>
void gather_head(const T* x, index_t heads, index_t head, const AttentionDims& s, C* out) {
  for (index_t t = 0; t < s.tokens; ++t)
    for (index_t d = 0; d < s.head_dim; ++d)
      out[t * s.head_dim + d] = convert<C>(x[(t * heads + head) * s.head_dim + d]);
}

// scores[i, j] ← p[i, j] = exp(s[i, j] − lse[i]) where visible, 0 elsewhere.
template <class C>
void probabilities_from_lse(C* scores, const C* lse, const AttentionDims& s, const AttentionParams& p,
                            const std::int32_t* seg) {
  for (index_t i = 0; i < s.tokens; ++i)
    for (index_t j = 0; j < s.tokens; ++j) {
      C& x = scores[i * s.tokens + j];
      x = attention_visible(i, j, p.window, seg) ? std::exp(x - lse[i]) : C(0);
    }
}
}  // namespace detail

// out: [T, Hq, D] and lse: [Hq, T] from q: [T, Hq, D], k, v: [T, Hkv, D]; seg: [T] or null.
template <class T>
void attention_forward(const T* q, const T* k, const T* v, const std::int32_t* seg, T* out, compute_t<T>* lse,
                       const AttentionDims& s, const AttentionParams& p) {
  using C = compute_t<T>;
  const index_t n = s.tokens, d = s.head_dim, group = s.q_heads / s.kv_heads;
#pragma omp parallel for schedule(static) if (s.q_heads > 1 && n * n * d > (1 << 16))
  for (index_t h = 0; h < s.q_heads; ++h) {
    std::vector<C> qh(static_cast<std::size_t>(n * d)), kh(qh.size()), vh(qh.size()), oh(qh.size());
    std::vector<C> scores(static_cast<std::size_t>(n * n));  // [T, T]: this head's s, then p
    detail::gather_head(q, s.q_heads, h, s, qh.data());
    detail::gather_head(k, s.kv_heads, h / group, s, kh.data());
    detail::gather_head(v, s.kv_heads, h / group, s, vh.data());
    detail::attention_gemm(n, n, d, false, true, p.scale, qh.data(), kh.data(), scores.data(), s.gemm);
    C* lse_h = lse + h * n;
    for (index_t i = 0; i < n; ++i) {
      const C* row = scores.data() + i * n;
      C m = -std::numeric_limits<C>::infinity();
      for (index_t j = 0; j <= i; ++j)
        if (attention_visible(i, j, p.window, seg)) m = std::max(m, row[j]);
      C l = 0;
      for (index_t j = 0; j <= i; ++j)
        if (attention_visible(i, j, p.window, seg)) l += std::exp(row[j] - m);
      lse_h[i] = m + std::log(l);  // j = i is always visible: l ≥ 1
    }
    detail::probabilities_from_lse(scores.data(), lse_h, s, p, seg);
    detail::attention_gemm(n, d, n, false, false, 1.0, scores.data(), vh.data(), oh.data(), s.gemm);
    for (index_t t = 0; t < n; ++t)
      for (index_t e = 0; e < d; ++e) out[(t * s.q_heads + h) * d + e] = convert<T>(oh[t * d + e]);
  }
}

// dq: [T, Hq, D], dk, dv: [T, Hkv, D] from d_out, out: [T, Hq, D] and forward's lse: [Hq, T].
template <class T>
void attention_backward(const T* d_out, const T* q, const T* k, const T* v, const T* out, const compute_t<T>* lse,
                        const std::int32_t* seg, T* dq, T* dk, T* dv, const AttentionDims& s,
                        const AttentionParams& p) {
  using C = compute_t<T>;
  const index_t n = s.tokens, d = s.head_dim, group = s.q_heads / s.kv_heads;
  const auto hd = static_cast<std::size_t>(n * d);
  // Each head's share of dk, dv ([Hq][T, D]); summed over the heads of a group afterwards, in head order.
  std::vector<C> dk_part(hd * static_cast<std::size_t>(s.q_heads)), dv_part(dk_part.size());
#pragma omp parallel for schedule(static) if (s.q_heads > 1 && n * n * d > (1 << 16))
  for (index_t h = 0; h < s.q_heads; ++h) {
    std::vector<C> qh(hd), kh(hd), vh(hd), oh(hd), doh(hd), dqh(hd), delta(static_cast<std::size_t>(n));
    std::vector<C> prob(static_cast<std::size_t>(n * n)), dprob(prob.size());  // [T, T] each
    detail::gather_head(q, s.q_heads, h, s, qh.data());
    detail::gather_head(k, s.kv_heads, h / group, s, kh.data());
    detail::gather_head(v, s.kv_heads, h / group, s, vh.data());
    detail::gather_head(out, s.q_heads, h, s, oh.data());
    detail::gather_head(d_out, s.q_heads, h, s, doh.data());
    for (index_t i = 0; i < n; ++i) {
      C acc = 0;
      for (index_t e = 0; e < d; ++e) acc += doh[static_cast<std::size_t>(i * d + e)] * oh[static_cast<std::size_t>(i * d + e)];
      delta[static_cast<std::size_t>(i)] = acc;
    }
    detail::attention_gemm(n, n, d, false, true, p.scale, qh.data(), kh.data(), prob.data(), s.gemm);
    detail::probabilities_from_lse(prob.data(), lse + h * n, s, p, seg);
    C* dk_h = dk_part.data() + hd * static_cast<std::size_t>(h);
    C* dv_h = dv_part.data() + hd * static_cast<std::size_t>(h);
    detail::attention_gemm(n, d, n, true, false, 1.0, prob.data(), doh.data(), dv_h, s.gemm);       // pᵀ · dout
    detail::attention_gemm(n, n, d, false, true, 1.0, doh.data(), vh.data(), dprob.data(), s.gemm);  // dout · vᵀ
    for (index_t i = 0; i < n; ++i)
      for (index_t j = 0; j < n; ++j) {
        const auto ij = static_cast<std::size_t>(i * n + j);
        dprob[ij] = prob[ij] * (dprob[ij] - delta[static_cast<std::size_t>(i)]);  // ds
      }
    detail::attention_gemm(n, d, n, false, false, p.scale, dprob.data(), kh.data(), dqh.data(), s.gemm);  // scale · ds · k
    detail::attention_gemm(n, d, n, true, false, p.scale, dprob.data(), qh.data(), dk_h, s.gemm);         // scale · dsᵀ · q
    for (index_t t = 0; t < n; ++t)
      for (index_t e = 0; e < d; ++e) dq[(t * s.q_heads + h) * d + e] = convert<T>(dqh[static_cast<std::size_t>(t * d + e)]);
  }
  for (index_t g = 0; g < s.kv_heads; ++g)
    for (index_t t = 0; t < n; ++t)
      for (index_t e = 0; e < d; ++e) {
        C sk = 0, sv = 0;
        for (index_t h = g * group; h < (g + 1) * group; ++h) {
          const std::size_t at = hd * static_cast<std::size_t>(h) + static_cast<std::size_t>(t * d + e);
          sk += dk_part[at];
          sv += dv_part[at];
        }
        dk[(t * s.kv_heads + g) * d + e] = convert<T>(sk);
        dv[(t * s.kv_heads + g) * d + e] = convert<T>(sv);
      }
}
}  // namespace cpu

// What forward gives and saves: out like q, lse: [Hq, T] in the compute type.
template <class T, class Dt, class Dh, class Dd>
struct AttentionForward {
  Tensor<T, Dt, Dh, Dd> out;
  Tensor<compute_t<T>, Dyn, Dyn> lse;
};
template <class T, class Dt, class Dh, class Dd, class Et, class Eh, class Ed>
struct AttentionGrads {
  Tensor<T, Dt, Dh, Dd> dq;  // like q
  Tensor<T, Et, Eh, Ed> dk;  // like k
  Tensor<T, Et, Eh, Ed> dv;  // like v
};

QLORA_DISPATCH_BEGIN

namespace impl {
template <class T, class Dt, class Dh, class Dd, class Et, class Eh, class Ed>
AttentionDims attention_check(const Tensor<T, Dt, Dh, Dd>& q, const Tensor<T, Et, Eh, Ed>& k,
                              const Tensor<T, Et, Eh, Ed>& v, const Tensor<std::int32_t, Dyn>& seg,
                              const AttentionParams& p) {
  static_assert(extents_compatible_v<Dt, Et>, "attention: q and k have different static token counts");
  static_assert(extents_compatible_v<Dd, Ed>, "attention: q and k have different static head_dim");
  const AttentionDims s{q.size(0), q.size(1), k.size(1), q.size(2), q.device().cpu_gemm()};
  const std::string shapes = "q " + q.shape().str() + ", k " + k.shape().str() + ", v " + v.shape().str();
  if (k.size(0) != s.tokens || k.size(2) != s.head_dim || !(k.shape() == v.shape()))
    fail("attention", "shapes do not fit [T, Hq, D], [T, Hkv, D], [T, Hkv, D]: ", shapes);
  if (s.kv_heads == 0 || s.q_heads % s.kv_heads != 0)
    fail("attention", "query heads must be a multiple of kv heads: ", shapes);
  if (!(q.device() == k.device()) || !(q.device() == v.device()))
    fail("attention", "q, k, v on different devices: ", q.device().str(), ", ", k.device().str(), ", ",
         v.device().str());
  if (seg.defined() && (seg.size(0) != s.tokens || !(seg.device() == q.device())))
    fail("attention", "segment ids ", seg.shape().str(), " on ", seg.device().str(), " do not fit ", shapes, " on ",
         q.device().str());
  if (!(p.scale > 0) || p.window < 0)
    fail("attention", "scale must be positive and window non-negative (scale ", p.scale, ", window ", p.window, ")");
  return s;
}
}  // namespace impl

// out = attention(q, k, v) and the saved lse. segment_ids: int32 [T] on q's device, or undefined.
template <class T, class Dt, class Dh, class Dd, class Et, class Eh, class Ed>
AttentionForward<T, Dt, Dh, Dd> attention_forward(const Tensor<T, Dt, Dh, Dd>& q, const Tensor<T, Et, Eh, Ed>& k,
                                                  const Tensor<T, Et, Eh, Ed>& v, const AttentionParams& p,
                                                  const Tensor<std::int32_t, Dyn>& segment_ids = {}) {
  const AttentionDims s = impl::attention_check(q, k, v, segment_ids, p);
  AttentionForward<T, Dt, Dh, Dd> r{Tensor<T, Dt, Dh, Dd>(q.shape(), q.device()),
                                    Tensor<compute_t<T>, Dyn, Dyn>(Shape<Dyn, Dyn>(s.q_heads, s.tokens), q.device())};
  if (q.numel() == 0) return r;
  if (q.device().is_cpu()) {
    cpu::attention_forward(q.data(), k.data(), v.data(), segment_ids.data(), r.out.data(), r.lse.data(), s, p);
  } else {
    // the GEMM chunks (cuda/attention_gemm.cuh) unless the process asked for the scalar flash kernels
    QLORA_ON_CUDA("attention", q.device(),
                  const cuda::AttentionShape shape{s.tokens, s.q_heads, s.kv_heads, s.head_dim, p.window, p.scale};
                  if (cuda::attention_path() == cuda::AttentionPath::gemm) {
                    const cuda::AttentionGemmPlan plan = cuda::attention_gemm_plan<T>(shape);
                    Tensor<compute_t<T>, Dyn> scores(Shape<Dyn>(plan.scores), q.device());
                    Tensor<T, Dyn> probs(Shape<Dyn>(plan.probs), q.device());
                    cuda::attention_gemm_forward(q.data(), k.data(), v.data(), segment_ids.data(), r.out.data(),
                                                 r.lse.data(), shape, plan, scores.data(), probs.data(), q.device());
                  } else {
                    cuda::attention_forward(q.data(), k.data(), v.data(), segment_ids.data(), r.out.data(),
                                            r.lse.data(), shape, q.device());
                  });
  }
  return r;
}

// dq, dk, dv for d_out (like q), given forward's inputs, out and lse.
template <class T, class Dt, class Dh, class Dd, class Et, class Eh, class Ed>
AttentionGrads<T, Dt, Dh, Dd, Et, Eh, Ed> attention_backward(
    const Tensor<T, Dt, Dh, Dd>& d_out, const Tensor<T, Dt, Dh, Dd>& q, const Tensor<T, Et, Eh, Ed>& k,
    const Tensor<T, Et, Eh, Ed>& v, const Tensor<T, Dt, Dh, Dd>& out, const Tensor<compute_t<T>, Dyn, Dyn>& lse,
    const AttentionParams& p, const Tensor<std::int32_t, Dyn>& segment_ids = {}) {
  const AttentionDims s = impl::attention_check(q, k, v, segment_ids, p);
  require_same_shape(d_out.shape(), q.shape(), "attention", "backward: d_out and q");
  require_same_shape(out.shape(), q.shape(), "attention", "backward: out and q");
  require(lse.size(0) == s.q_heads && lse.size(1) == s.tokens, "attention", "backward: lse is ", lse.shape().str(),
          ", expected [", s.q_heads, ", ", s.tokens, "]");
  AttentionGrads<T, Dt, Dh, Dd, Et, Eh, Ed> g{Tensor<T, Dt, Dh, Dd>(q.shape(), q.device()),
                                              Tensor<T, Et, Eh, Ed>(k.shape(), k.device()),
                                              Tensor<T, Et, Eh, Ed>(v.shape(), v.device())};
  if (q.numel() == 0) return g;
  if (q.device().is_cpu()) {
    cpu::attention_backward(d_out.data(), q.data(), k.data(), v.data(), out.data(), lse.data(), segment_ids.data(),
                            g.dq.data(), g.dk.data(), g.dv.data(), s, p);
  } else {
    // delta: [Hq, T], Σ_d dout · out, between the two passes
    QLORA_ON_CUDA("attention", q.device(), Tensor<compute_t<T>, Dyn, Dyn> delta(lse.shape(), q.device());
                  const cuda::AttentionShape shape{s.tokens, s.q_heads, s.kv_heads, s.head_dim, p.window, p.scale};
                  if (cuda::attention_path() == cuda::AttentionPath::gemm) {
                    using C = compute_t<T>;
                    constexpr bool same = std::is_same_v<T, C>;
                    const cuda::AttentionGemmPlan plan = cuda::attention_gemm_plan<T>(shape);
                    Tensor<C, Dyn> scores(Shape<Dyn>(plan.scores), q.device());
                    Tensor<C, Dyn> d_scores(Shape<Dyn>(plan.scores), q.device());
                    Tensor<T, Dyn> probs(Shape<Dyn>(plan.probs), q.device());
                    Tensor<C, Dyn> kv_acc(Shape<Dyn>(same ? 0 : 2 * k.numel()), q.device());
                    C* dk_acc = same ? reinterpret_cast<C*>(g.dk.data()) : kv_acc.data();
                    C* dv_acc = same ? reinterpret_cast<C*>(g.dv.data()) : kv_acc.data() + k.numel();
                    cuda::attention_gemm_backward(d_out.data(), q.data(), k.data(), v.data(), out.data(), lse.data(),
                                                  segment_ids.data(), g.dq.data(), g.dk.data(), g.dv.data(),
                                                  delta.data(), shape, plan, scores.data(), d_scores.data(),
                                                  probs.data(), dk_acc, dv_acc, q.device());
                  } else {
                    cuda::attention_backward(d_out.data(), q.data(), k.data(), v.data(), out.data(), lse.data(),
                                             segment_ids.data(), g.dq.data(), g.dk.data(), g.dv.data(), delta.data(),
                                             shape, q.device());
                  });
  }
  return g;
}

// The differentiable attention: gradients reach whichever of q, k, v require them.
template <class T, class Dt, class Dh, class Dd, class Et, class Eh, class Ed>
Variable<T, Dt, Dh, Dd> attention(const Variable<T, Dt, Dh, Dd>& q, const Variable<T, Et, Eh, Ed>& k,
                                  const Variable<T, Et, Eh, Ed>& v, const AttentionParams& p,
                                  const Tensor<std::int32_t, Dyn>& segment_ids = {}) {
  auto fwd = attention_forward(q.value(), k.value(), v.value(), p, segment_ids);
  auto backward = [q_val = q.value(), k_val = k.value(), v_val = v.value(), out = fwd.out, lse = fwd.lse, p,
                   segment_ids, qn = q.node(), kn = k.node(), vn = v.node()](const Tensor<T, Dt, Dh, Dd>& d_out) {
    auto g = attention_backward(d_out, q_val, k_val, v_val, out, lse, p, segment_ids);
    if (qn) accumulate_grad(qn, g.dq);
    if (kn) accumulate_grad(kn, g.dk);
    if (vn) accumulate_grad(vn, g.dv);
  };
  auto out = fwd.out;
  return make_result("attention", std::move(out), std::move(backward), q, k, v);
}

QLORA_DISPATCH_END
}  // namespace qlora
