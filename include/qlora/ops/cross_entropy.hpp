// The tied LM head fused with cross-entropy, in chunks, so the [N, V] logits never exist (V = 262 144 for Gemma 3):
//
//   z[t, v] = hidden[t] · table[v]          ℓ[t, v] = cap · tanh(z / cap)  (cap = 0: ℓ = z; Gemma 2-style soft-capping)
//   lse[t] = log Σ_v exp ℓ[t, v]            loss[t] = lse[t] − ℓ[t, label[t]]     (label −100: ignored, loss 0)
//   sum = Σ_t loss[t], count = #{t : label[t] ≠ −100}, mean = sum / count (0 when count = 0; torch gives NaN there)
//
// hidden: [N, C], table: [V, C] (the tied embedding), labels: int32 [N]. The logits are made chunk by chunk
// (tokens × vocab; lse by an online max/sum over vocabulary chunks) and forward keeps only lse: [N] (compute type).
// Backward recomputes each chunk and, with scale = d_mean / count (or d_sum):
//   d_ℓ = (softmax(ℓ) − onehot(label)) · scale     d_z = d_ℓ · (1 − tanh²(z / cap))  (= d_ℓ without capping)
//   d_hidden += d_z · table_chunk          d_table_chunk += d_zᵀ · hidden   (only when the table requires a gradient)
// When only hidden needs a gradient (the table is the frozen tied embedding, as under QLoRA), the loss is a scalar,
// so ∂Σloss/∂hidden can be made in the forward pass while each logits chunk is hot (cross_entropy_forward_with_grad;
// Liger-Kernel's fused linear cross-entropy does the same): the softmax is accumulated against a running max, as in
// flash attention, and backward only scales it — two chunk GEMMs per step instead of three, one pass over the table.
// CPU: the chunk GEMMs through cpu::gemm with the hidden states' device's CPU GEMM, in the compute type (fp32; fp64 for fp64; bf16 widened to fp32); CUDA:
// cuBLAS GEMMs into fp32 chunks and fused softmax/loss kernels (cuda/cross_entropy.cuh). A label outside [0, V) other
// than −100 is a qlora::Error naming the token and the label.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <type_traits>
#include <vector>

#include <Eigen/Core>

#include "../autograd/variable.hpp"
#include "../core/expr.hpp"
#include "../core/tensor.hpp"
#include "../core/threads.hpp"
#include "../core/vector_math.hpp"
#include "matmul.hpp"

#if defined(__CUDACC__)
#include "../cuda/cross_entropy.cuh"
#endif

namespace qlora {

inline constexpr std::int32_t kIgnoreIndex = -100;  // torch.nn.functional.cross_entropy's default ignore_index

struct CrossEntropyParams {
  double softcap = 0;        // final_logit_softcapping; 0: off (Gemma 3 has none)
  index_t chunk_tokens = 0;  // rows of a logits chunk; 0: the device's default (CPU 512, CUDA 1024)
  index_t chunk_vocab = 0;   // columns of a logits chunk; 0: the device's default (CPU 2048, CUDA 16384)
};

// Pointers and extents of one call, shared by the CPU reference and the kernels; scratch_* only on CUDA.
template <class T>
struct CrossEntropyArgs {
  using C = compute_t<T>;
  const T* hidden = nullptr;           // [N, C]
  const T* table = nullptr;            // [V, C]
  const std::int32_t* labels = nullptr;  // [N]
  index_t tokens = 0, channels = 0, vocab = 0, chunk_tokens = 0, chunk_vocab = 0;
  C softcap = 0;
  CpuGemm gemm = CpuGemm::eigen;  // the CPU GEMM of the chunk products (the hidden states' device's)
  C* lse_out = nullptr;   // forward: [N]
  C* loss_out = nullptr;  // forward: [N], 0 where ignored
  const C* lse = nullptr;  // backward: forward's lse
  C scale = 0;             // backward: d_loss per token (d_mean / count or d_sum)
  T* d_hidden = nullptr;   // backward: [N, C]
  T* d_table = nullptr;    // backward: [V, C] or null
  T* d_hidden_sum = nullptr;  // forward with the gradient (CPU): ∂(Σ loss)/∂hidden [N, C]
  C* scratch_logits = nullptr;     // [chunk_tokens, chunk_vocab]
  T* scratch_d_logits = nullptr;   // [chunk_tokens, chunk_vocab] (aliases scratch_logits when T is C)
  C* scratch_rows = nullptr;       // [3, chunk_tokens]: running max, running sum, label logit
  C* scratch_d_hidden = nullptr;   // [chunk_tokens, C]
  C* scratch_d_table = nullptr;    // [V, C] when T is not C and d_table is wanted, else null
};

namespace cpu {
// Index of the first token whose label is neither −100 nor in [0, vocab), or −1.
inline index_t cross_entropy_first_bad_label(const std::int32_t* labels, index_t tokens, index_t vocab) {
  for (index_t t = 0; t < tokens; ++t)
    if (labels[t] != kIgnoreIndex && (labels[t] < 0 || labels[t] >= vocab)) return t;
  return -1;
}

namespace detail {
// rows × cols of `src` in the compute type: the pointer itself when T is C, else widened into `buffer`.
template <class C, class T>
const C* widened(const T* src, index_t count, Tensor<C, Dyn>& buffer) {
  if constexpr (std::is_same_v<T, C>) {
    return src;
  } else {
    if (buffer.numel() < count) buffer = Tensor<C, Dyn>(Shape<Dyn>(count));
    for (index_t i = 0; i < count; ++i) buffer.data()[i] = convert<C>(src[i]);
    return buffer.data();
  }
}

// row[0, n) = exp(row − m) in place (vectorised, core/vector_math.hpp); returns their sum.
template <class C>
C exp_shifted_sum(C* row, index_t n, C m) {
  Eigen::Map<Eigen::Array<C, Eigen::Dynamic, 1>> r(row, n);
  r -= m;
  exp_n(row, row, n);
  return r.sum();
}
// Soft-capped: row = exp(ℓ − m) · (1 − (ℓ / cap)²) in place (the softmax numerator times d_ℓ/d_z); returns Σ exp(ℓ − m).
template <class C>
C exp_shifted_sum_capped(C* row, index_t n, C m, C cap) {
  C s = 0;
  for (index_t v = 0; v < n; ++v) {
    const C e = std::exp(row[v] - m), t = row[v] / cap;
    s += e;
    row[v] = e * (C(1) - t * t);
  }
  return s;
}
template <class C>
C row_max(const C* row, index_t n) {
  return Eigen::Map<const Eigen::Array<C, Eigen::Dynamic, 1>>(row, n).maxCoeff();
}

// z[nt, nv] = h[nt, C] · w[nv, C]ᵀ, then soft-capped in place.
template <class C>
void cross_entropy_logits(const C* h, const C* w, C* z, index_t nt, index_t nv, index_t channels, C cap,
                          CpuGemm backend) {
  GemmParams g;
  g.m = nt;
  g.n = nv;
  g.k = channels;
  g.trans_b = true;
  gemm(g, h, w, z, backend);
  if (cap > 0) {
#pragma omp parallel for schedule(static) if (nt * nv > (1 << 16))
    for (index_t i = 0; i < nt * nv; ++i) z[i] = cap * std::tanh(z[i] / cap);
  }
}
}  // namespace detail

// lse_out, loss_out from hidden, table, labels (checked), chunk by chunk.
template <class T>
void cross_entropy_forward(const CrossEntropyArgs<T>& a) {
  using C = compute_t<T>;
  const index_t NT = a.chunk_tokens, NV = a.chunk_vocab;
  Tensor<C, Dyn, Dyn> z(Shape<Dyn, Dyn>(NT, NV));  // the logits chunk
  Tensor<C, Dyn> h_buf(Shape<Dyn>(0)), w_buf(Shape<Dyn>(0));
  std::vector<C> run_max(static_cast<std::size_t>(NT)), run_sum(run_max.size()), label_logit(run_max.size());
  for (index_t t0 = 0; t0 < a.tokens; t0 += NT) {
    const index_t nt = std::min(NT, a.tokens - t0);
    const C* h = detail::widened<C>(a.hidden + t0 * a.channels, nt * a.channels, h_buf);
    std::fill(run_max.begin(), run_max.end(), -std::numeric_limits<C>::infinity());
    std::fill(run_sum.begin(), run_sum.end(), C(0));
    for (index_t v0 = 0; v0 < a.vocab; v0 += NV) {
      const index_t nv = std::min(NV, a.vocab - v0);
      const C* w = detail::widened<C>(a.table + v0 * a.channels, nv * a.channels, w_buf);
      detail::cross_entropy_logits(h, w, z.data(), nt, nv, a.channels, a.softcap, a.gemm);
#pragma omp parallel for schedule(static) if (nt * nv > (1 << 16))
      for (index_t r = 0; r < nt; ++r) {
        C* row = z.data() + r * nv;
        const std::int32_t label = a.labels[t0 + r];
        if (label >= v0 && label < v0 + nv) label_logit[static_cast<std::size_t>(r)] = row[label - v0];
        const C m = detail::row_max(row, nv);
        const C s = detail::exp_shifted_sum(row, nv, m);  // overwrites the row
        auto& rm = run_max[static_cast<std::size_t>(r)];
        auto& rs = run_sum[static_cast<std::size_t>(r)];
        const C merged = std::max(rm, m);  // online logsumexp over vocabulary chunks
        rs = rs * std::exp(rm - merged) + s * std::exp(m - merged);
        rm = merged;
      }
    }
    for (index_t r = 0; r < nt; ++r) {
      const auto i = static_cast<std::size_t>(r);
      const C lse = run_max[i] + std::log(run_sum[i]);
      a.lse_out[t0 + r] = lse;
      a.loss_out[t0 + r] = a.labels[t0 + r] == kIgnoreIndex ? C(0) : lse - label_logit[i];
    }
  }
}

// d_hidden (and d_table when non-null) from forward's lse, recomputing each logits chunk.
template <class T>
void cross_entropy_backward(const CrossEntropyArgs<T>& a) {
  using C = compute_t<T>;
  const index_t NT = a.chunk_tokens, NV = a.chunk_vocab, ch = a.channels;
  Tensor<C, Dyn, Dyn> z(Shape<Dyn, Dyn>(NT, NV)), d_h(Shape<Dyn, Dyn>(NT, ch));
  Tensor<C, Dyn> h_buf(Shape<Dyn>(0)), w_buf(Shape<Dyn>(0));
  Tensor<C, Dyn> d_table_acc(Shape<Dyn>(a.d_table ? a.vocab * ch : 0));
  for (index_t t0 = 0; t0 < a.tokens; t0 += NT) {
    const index_t nt = std::min(NT, a.tokens - t0);
    const C* h = detail::widened<C>(a.hidden + t0 * ch, nt * ch, h_buf);
    for (index_t v0 = 0; v0 < a.vocab; v0 += NV) {
      const index_t nv = std::min(NV, a.vocab - v0);
      const C* w = detail::widened<C>(a.table + v0 * ch, nv * ch, w_buf);
      detail::cross_entropy_logits(h, w, z.data(), nt, nv, ch, a.softcap, a.gemm);
#pragma omp parallel for schedule(static) if (nt * nv > (1 << 16))
      for (index_t r = 0; r < nt; ++r) {
        C* row = z.data() + r * nv;  // ℓ in, d_z out
        const std::int32_t label = a.labels[t0 + r];
        const C lse = a.lse[t0 + r];
        Eigen::Map<Eigen::Array<C, Eigen::Dynamic, 1>> d(row, nv);
        if (label == kIgnoreIndex) {
          d.setZero();
          continue;
        }
        const bool here = label >= v0 && label < v0 + nv;
        if (a.softcap > 0) {  // d_z = (softmax − onehot) · (1 − tanh²(z / cap)), with tanh(z / cap) = ℓ / cap
          const C cap = a.softcap, l_label = here ? row[label - v0] : C(0);
          detail::exp_shifted_sum_capped(row, nv, lse, cap);
          if (here) row[label - v0] -= C(1) - (l_label / cap) * (l_label / cap);
        } else {
          detail::exp_shifted_sum(row, nv, lse);
          if (here) row[label - v0] -= C(1);
        }
        d *= a.scale;
      }
      GemmParams g;  // d_h[nt, C] (+)= d_z[nt, nv] · w[nv, C]
      g.m = nt;
      g.n = ch;
      g.k = nv;
      g.beta = v0 == 0 ? 0 : 1;
      gemm(g, z.data(), w, d_h.data(), a.gemm);
      if (a.d_table) {  // d_table[v0 : v0 + nv] += d_z[nt, nv]ᵀ · h[nt, C]
        GemmParams gt;
        gt.m = nv;
        gt.n = ch;
        gt.k = nt;
        gt.trans_a = true;
        gt.beta = 1;
        gemm(gt, z.data(), h, d_table_acc.data() + v0 * ch, a.gemm);
      }
    }
    for (index_t i = 0; i < nt * ch; ++i) a.d_hidden[t0 * ch + i] = convert<T>(d_h.data()[i]);
  }
  if (a.d_table)
    for (index_t i = 0; i < a.vocab * ch; ++i) a.d_table[i] = convert<T>(d_table_acc.data()[i]);
}

// lse_out, loss_out and d_hidden_sum = ∂(Σ_t loss[t])/∂hidden in one pass over the table. For each vocabulary chunk
// of a token chunk: z = h · wᵀ, p = exp(ℓ − m) against the row's running max m (acc and s are rescaled by
// exp(m_old − m) when it grows), s += Σ p, acc += (p ⊙ ℓ′) · w with ℓ′ = 1 − tanh²(z / cap) (1 without capping).
// At the end lse = m + log s and d_hidden = acc / s − ℓ′[label] · w[label]. Only tokens with a label are computed
// (the others get loss 0, lse 0 and a zero gradient). Each thread takes a contiguous range of vocabulary chunks with
// its own m, s, acc and single-threaded GEMMs — no barrier per chunk — and the ranges are merged in thread order,
// so the result is deterministic for a given thread count and differs between counts only in rounding.
template <class T>
void cross_entropy_forward_with_grad(const CrossEntropyArgs<T>& a) {
  using C = compute_t<T>;
  using Row = Eigen::Map<Eigen::Array<C, Eigen::Dynamic, 1>>;
  const index_t NT = a.chunk_tokens, NV = a.chunk_vocab, ch = a.channels;
  std::vector<index_t> rows;  // the tokens with a label
  for (index_t t = 0; t < a.tokens; ++t)
    if (a.labels[t] != kIgnoreIndex) rows.push_back(t);
  std::fill(a.lse_out, a.lse_out + a.tokens, C(0));
  std::fill(a.loss_out, a.loss_out + a.tokens, C(0));
  std::fill(a.d_hidden_sum, a.d_hidden_sum + a.tokens * ch, convert<T>(0.0));
  const index_t chunks = (a.vocab + NV - 1) / NV;
  const int team = static_cast<int>(std::max<index_t>(1, std::min<index_t>(max_threads(), chunks)));
  // GEMM operands live in the allocator's 64-byte aligned tensors: Eigen's kernels peel unaligned heads, so operands
  // at varying alignments (std::vector's) would round differently from call to call.
  struct Partial {  // one thread's share of a token chunk
    Tensor<C, Dyn> acc, z, w_buf{Shape<Dyn>(0)};  // acc: [nt, C], z: [nt, nv]
    std::vector<C> m, s;                          // [nt]
    Partial(index_t acc_size, index_t z_size) : acc(Shape<Dyn>(acc_size)), z(Shape<Dyn>(z_size)) {}
  };
  std::vector<Partial> part;
  for (int i = 0; i < team; ++i) part.emplace_back(NT * ch, NT * NV);
  Tensor<C, Dyn> h_rows(Shape<Dyn>(std::min<index_t>(NT, static_cast<index_t>(rows.size())) * ch));  // [nt, C]
  C* h = h_rows.data();
  std::vector<C> label_logit(static_cast<std::size_t>(NT));
  const auto n_rows = static_cast<index_t>(rows.size());
  int used = team;  // threads the region really got (OpenMP may give fewer)
  for (index_t r0 = 0; r0 < n_rows; r0 += NT) {
    const index_t nt = std::min(NT, n_rows - r0);
    for (index_t i = 0; i < nt; ++i)
      for (index_t c = 0; c < ch; ++c)
        h[i * ch + c] = convert<C>(a.hidden[rows[static_cast<std::size_t>(r0 + i)] * ch + c]);
#pragma omp parallel num_threads(team)
    {
      const int id = thread_index(), n = team_size();
      if (id == 0) used = n;
      Partial& q = part[static_cast<std::size_t>(id)];
      std::fill(q.acc.data(), q.acc.data() + nt * ch, C(0));
      q.m.assign(static_cast<std::size_t>(nt), -std::numeric_limits<C>::infinity());
      q.s.assign(static_cast<std::size_t>(nt), C(0));
      for (index_t chunk = chunks * id / n; chunk < chunks * (id + 1) / n; ++chunk) {
        const index_t v0 = chunk * NV, nv = std::min(NV, a.vocab - v0);
        const C* w = detail::widened<C>(a.table + v0 * ch, nv * ch, q.w_buf);
        detail::cross_entropy_logits(h, w, q.z.data(), nt, nv, ch, a.softcap, a.gemm);
        for (index_t i = 0; i < nt; ++i) {
          const auto u = static_cast<std::size_t>(i);
          C* row = q.z.data() + i * nv;
          const std::int32_t label = a.labels[rows[static_cast<std::size_t>(r0 + i)]];
          if (label >= v0 && label < v0 + nv) label_logit[u] = row[label - v0];  // one chunk, one thread
          const C mc = detail::row_max(row, nv);
          if (mc > q.m[u]) {  // a new running max: rescale what was accumulated against the old one
            const C f = std::exp(q.m[u] - mc);
            Row(q.acc.data() + i * ch, ch) *= f;
            q.s[u] *= f;
            q.m[u] = mc;
          }
          q.s[u] += a.softcap > 0 ? detail::exp_shifted_sum_capped(row, nv, q.m[u], a.softcap)
                                  : detail::exp_shifted_sum(row, nv, q.m[u]);
        }
        GemmParams g;  // acc[nt, C] += p[nt, nv] · w[nv, C]
        g.m = nt;
        g.n = ch;
        g.k = nv;
        g.beta = 1;
        gemm(g, q.z.data(), w, q.acc.data(), a.gemm);
      }
    }
    const auto threads = std::span(part).first(static_cast<std::size_t>(used));
    std::vector<C> d(static_cast<std::size_t>(ch));  // one row's merged acc
    for (index_t i = 0; i < nt; ++i) {  // merge the threads' ranges; subtract the label's term
      const auto u = static_cast<std::size_t>(i);
      C m = -std::numeric_limits<C>::infinity(), s = 0;
      for (const Partial& q : threads) m = std::max(m, q.m[u]);
      std::fill(d.begin(), d.end(), C(0));
      for (const Partial& q : threads) {
        const C f = std::exp(q.m[u] - m);
        s += q.s[u] * f;
        for (index_t c = 0; c < ch; ++c) d[static_cast<std::size_t>(c)] += q.acc.data()[i * ch + c] * f;
      }
      const index_t t = rows[static_cast<std::size_t>(r0 + i)];
      const std::int32_t label = a.labels[t];
      const C lse = m + std::log(s), l = label_logit[u];
      a.lse_out[t] = lse;
      a.loss_out[t] = lse - l;
      const C d_label = a.softcap > 0 ? C(1) - (l / a.softcap) * (l / a.softcap) : C(1);
      for (index_t c = 0; c < ch; ++c)
        a.d_hidden_sum[t * ch + c] =
            convert<T>(d[static_cast<std::size_t>(c)] / s - d_label * convert<C>(a.table[label * ch + c]));
    }
  }
}
}  // namespace cpu

// What forward gives and saves: the loss sum (accumulated in double on the host), the count of non-ignored tokens and
// lse: [N] (compute type, on the inputs' device).
template <class T>
struct CrossEntropyForward {
  double sum = 0;
  index_t count = 0;
  Tensor<compute_t<T>, Dyn> lse;
};
template <class T, class Dn, class Dc, class Dv, class Ec>
struct CrossEntropyGrads {
  Tensor<T, Dn, Dc> d_hidden;  // like hidden
  Tensor<T, Dv, Ec> d_table;   // like table; undefined unless asked for
};
// The differentiable loss sum and the count it covers, to normalise over gradient-accumulation steps.
template <class T>
struct CrossEntropySum {
  Variable<T> sum;
  index_t count = 0;
};

QLORA_DISPATCH_BEGIN

namespace impl {
// Checks shapes, devices and labels (read on the host); returns the call's arguments and the count.
template <class T, class Dn, class Dc, class Dv, class Ec>
CrossEntropyArgs<T> cross_entropy_args(const Tensor<T, Dn, Dc>& hidden, const Tensor<T, Dv, Ec>& table,
                                       const Tensor<std::int32_t, Dyn>& labels, const CrossEntropyParams& p,
                                       index_t* count) {
  static_assert(extents_compatible_v<Dc, Ec>, "cross_entropy: hidden and table have different static widths");
  if (hidden.size(1) != table.size(1) || labels.size(0) != hidden.size(0))
    fail("cross_entropy", "shapes do not fit hidden [N, C], table [V, C], labels [N]: hidden ", hidden.shape().str(),
         ", table ", table.shape().str(), ", labels ", labels.shape().str());
  if (!(hidden.device() == table.device()) || !(hidden.device() == labels.device()))
    fail("cross_entropy", "hidden, table, labels on different devices: ", hidden.device().str(), ", ",
         table.device().str(), ", ", labels.device().str());
  if (p.softcap < 0 || p.chunk_tokens < 0 || p.chunk_vocab < 0)
    fail("cross_entropy", "softcap and chunk sizes must not be negative");
  const std::vector<std::int32_t> host = labels.to_vector();
  const index_t bad = cpu::cross_entropy_first_bad_label(host.data(), hidden.size(0), table.size(0));
  if (bad >= 0)
    fail("cross_entropy", "token ", bad, " has label ", host[static_cast<std::size_t>(bad)], ", outside [0, ",
         table.size(0), ") and not the ignore index -100");
  *count = static_cast<index_t>(std::count_if(host.begin(), host.end(), [](std::int32_t l) { return l != kIgnoreIndex; }));
  const bool cpu = hidden.device().is_cpu();
  CrossEntropyArgs<T> a;
  a.hidden = hidden.data();
  a.table = table.data();
  a.labels = labels.data();
  a.tokens = hidden.size(0);
  a.channels = hidden.size(1);
  a.vocab = table.size(0);
  a.chunk_tokens = std::max<index_t>(1, std::min(a.tokens, p.chunk_tokens ? p.chunk_tokens : (cpu ? 512 : 1024)));
  a.chunk_vocab = std::max<index_t>(1, std::min(a.vocab, p.chunk_vocab ? p.chunk_vocab : (cpu ? 2048 : 16384)));
  a.softcap = static_cast<compute_t<T>>(p.softcap);
  a.gemm = hidden.device().cpu_gemm();
  return a;
}

#if defined(__CUDACC__)
// Device scratch for one CUDA call: fp32 logits chunk, its T-typed gradient (bf16 only), row statistics, accumulators.
template <class T>
struct CrossEntropyScratch {
  using C = compute_t<T>;
  Tensor<C, Dyn> logits, rows, d_hidden, d_table;
  Tensor<T, Dyn> d_logits;
  CrossEntropyScratch(CrossEntropyArgs<T>& a, const Device& device, bool backward) {
    const index_t chunk = a.chunk_tokens * a.chunk_vocab;
    logits = Tensor<C, Dyn>(Shape<Dyn>(chunk), device);
    rows = Tensor<C, Dyn>(Shape<Dyn>(3 * a.chunk_tokens), device);
    a.scratch_logits = logits.data();
    a.scratch_rows = rows.data();
    if (!backward) return;
    d_hidden = Tensor<C, Dyn>(Shape<Dyn>(a.chunk_tokens * a.channels), device);
    a.scratch_d_hidden = d_hidden.data();
    if constexpr (std::is_same_v<T, C>) {
      a.scratch_d_logits = a.scratch_logits;
    } else {
      d_logits = Tensor<T, Dyn>(Shape<Dyn>(chunk), device);
      a.scratch_d_logits = d_logits.data();
      if (a.d_table) {
        d_table = Tensor<C, Dyn>(Shape<Dyn>(a.vocab * a.channels), device);
        a.scratch_d_table = d_table.data();
      }
    }
  }
};
#endif
}  // namespace impl

// {sum, count} of the loss and the saved lse: [N].
template <class T, class Dn, class Dc, class Dv, class Ec>
CrossEntropyForward<T> cross_entropy_forward(const Tensor<T, Dn, Dc>& hidden, const Tensor<T, Dv, Ec>& table,
                                             const Tensor<std::int32_t, Dyn>& labels,
                                             const CrossEntropyParams& p = {}) {
  CrossEntropyForward<T> r;
  CrossEntropyArgs<T> a = impl::cross_entropy_args(hidden, table, labels, p, &r.count);
  r.lse = Tensor<compute_t<T>, Dyn>(Shape<Dyn>(a.tokens), hidden.device());
  Tensor<compute_t<T>, Dyn> loss(Shape<Dyn>(a.tokens), hidden.device());  // [N]
  a.lse_out = r.lse.data();
  a.loss_out = loss.data();
  if (a.tokens == 0) return r;
  if (hidden.device().is_cpu()) {
    cpu::cross_entropy_forward(a);
  } else {
    QLORA_ON_CUDA("cross_entropy", hidden.device(), impl::CrossEntropyScratch<T> scratch(a, hidden.device(), false);
                  cuda::cross_entropy_forward(a, hidden.device()));
  }
  for (const auto l : loss.to_vector()) r.sum += static_cast<double>(l);  // in token order: deterministic
  return r;
}

// d_hidden (and d_table when need_table) for d_loss per token = scale, given forward's lse.
template <class T, class Dn, class Dc, class Dv, class Ec>
CrossEntropyGrads<T, Dn, Dc, Dv, Ec> cross_entropy_backward(const Tensor<T, Dn, Dc>& hidden,
                                                            const Tensor<T, Dv, Ec>& table,
                                                            const Tensor<std::int32_t, Dyn>& labels,
                                                            const Tensor<compute_t<T>, Dyn>& lse, double scale,
                                                            bool need_table, const CrossEntropyParams& p = {}) {
  index_t count = 0;
  CrossEntropyArgs<T> a = impl::cross_entropy_args(hidden, table, labels, p, &count);
  require(lse.size(0) == a.tokens, "cross_entropy", "backward: lse has ", lse.size(0), " rows, hidden has ", a.tokens);
  CrossEntropyGrads<T, Dn, Dc, Dv, Ec> g;
  g.d_hidden = Tensor<T, Dn, Dc>(hidden.shape(), hidden.device());
  if (need_table) g.d_table = Tensor<T, Dv, Ec>(table.shape(), table.device());
  a.lse = lse.data();
  a.scale = static_cast<compute_t<T>>(scale);
  a.d_hidden = g.d_hidden.data();
  a.d_table = need_table ? g.d_table.data() : nullptr;
  if (a.tokens == 0) return g;
  if (hidden.device().is_cpu()) {
    cpu::cross_entropy_backward(a);
  } else {
    QLORA_ON_CUDA("cross_entropy", hidden.device(), impl::CrossEntropyScratch<T> scratch(a, hidden.device(), true);
                  cuda::cross_entropy_backward(a, hidden.device()));
  }
  return g;
}

// What forward-with-gradient gives: forward's result and ∂(Σ loss)/∂hidden (like hidden).
template <class T, class Dn, class Dc>
struct CrossEntropyForwardWithGrad : CrossEntropyForward<T> {
  Tensor<T, Dn, Dc> d_hidden_sum;
};

// {sum, count, lse} and ∂(Σ loss)/∂hidden in one call. CPU: one pass over the table (cpu::
// cross_entropy_forward_with_grad). CUDA: the composite — forward, then backward with d_sum = 1.
template <class T, class Dn, class Dc, class Dv, class Ec>
CrossEntropyForwardWithGrad<T, Dn, Dc> cross_entropy_forward_with_grad(const Tensor<T, Dn, Dc>& hidden,
                                                                       const Tensor<T, Dv, Ec>& table,
                                                                       const Tensor<std::int32_t, Dyn>& labels,
                                                                       const CrossEntropyParams& p = {}) {
  CrossEntropyForwardWithGrad<T, Dn, Dc> r;
  if (!hidden.device().is_cpu()) {
    static_cast<CrossEntropyForward<T>&>(r) = cross_entropy_forward(hidden, table, labels, p);
    r.d_hidden_sum = cross_entropy_backward(hidden, table, labels, r.lse, 1.0, false, p).d_hidden;
    return r;
  }
  CrossEntropyArgs<T> a = impl::cross_entropy_args(hidden, table, labels, p, &r.count);
  r.lse = Tensor<compute_t<T>, Dyn>(Shape<Dyn>(a.tokens), hidden.device());
  r.d_hidden_sum = Tensor<T, Dn, Dc>(hidden.shape(), hidden.device());
  Tensor<compute_t<T>, Dyn> loss(Shape<Dyn>(a.tokens), hidden.device());  // [N]
  a.lse_out = r.lse.data();
  a.loss_out = loss.data();
  a.d_hidden_sum = r.d_hidden_sum.data();
  if (a.tokens == 0) return r;
  cpu::cross_entropy_forward_with_grad(a);
  for (const auto l : loss.to_vector()) r.sum += static_cast<double>(l);  // in token order: deterministic
  return r;
}

namespace impl {
// The scalar loss value sum / divisor on `device` (0 when no token has a label: the sum is 0, the divisor 1).
template <class T>
Tensor<T> loss_value(const CrossEntropyForward<T>& f, double divisor, const Device& device) {
  Tensor<T> value = Tensor<T>::full(convert<T>(f.sum / divisor));
  return value.on(device);
}

// The loss (sum, or mean over `count`) as a differentiable scalar; gradients reach hidden and, if it needs one, table.
template <class T, class Dn, class Dc, class Dv, class Ec>
CrossEntropySum<T> cross_entropy_variable(const Variable<T, Dn, Dc>& hidden, const Variable<T, Dv, Ec>& table,
                                          const Tensor<std::int32_t, Dyn>& labels, const CrossEntropyParams& p,
                                          bool mean) {
  // Only hidden needs a gradient (the frozen tied embedding): make it in the forward pass, and scale it in backward.
  if (grad_enabled() && hidden.requires_grad() && !table.requires_grad()) {
    auto fwd = cross_entropy_forward_with_grad(hidden.value(), table.value(), labels, p);
    const double divisor = mean ? static_cast<double>(std::max<index_t>(fwd.count, 1)) : 1.0;
    Tensor<T> value = loss_value<T>(fwd, divisor, hidden.device());
    auto backward = [d_sum = std::move(fwd.d_hidden_sum), divisor, hn = hidden.node()](const Tensor<T>& d_loss) {
      const double scale = convert<double>(d_loss.item()) / divisor;
      Tensor<T, Dn, Dc> d_hidden(d_sum.shape(), d_sum.device());
      assign(d_hidden, d_sum * scale);
      accumulate_grad(hn, d_hidden);
    };
    return {make_result("cross_entropy", std::move(value), std::move(backward), hidden, table), fwd.count};
  }
  const auto fwd = cross_entropy_forward(hidden.value(), table.value(), labels, p);
  const double divisor = mean ? static_cast<double>(std::max<index_t>(fwd.count, 1)) : 1.0;
  Tensor<T> value = loss_value<T>(fwd, divisor, hidden.device());
  auto backward = [h = hidden.value(), w = table.value(), labels, lse = fwd.lse, p, divisor, hn = hidden.node(),
                   wn = table.node()](const Tensor<T>& d_loss) {
    const double scale = convert<double>(d_loss.item()) / divisor;
    auto g = cross_entropy_backward(h, w, labels, lse, scale, wn != nullptr, p);
    if (hn) accumulate_grad(hn, g.d_hidden);
    if (wn) accumulate_grad(wn, g.d_table);
  };
  return {make_result("cross_entropy", std::move(value), std::move(backward), hidden, table), fwd.count};
}
}  // namespace impl

// Σ over non-ignored tokens of the loss, differentiable, and how many tokens it covers.
template <class T, class Dn, class Dc, class Dv, class Ec>
CrossEntropySum<T> cross_entropy_sum(const Variable<T, Dn, Dc>& hidden, const Variable<T, Dv, Ec>& table,
                                     const Tensor<std::int32_t, Dyn>& labels, const CrossEntropyParams& p = {}) {
  return impl::cross_entropy_variable(hidden, table, labels, p, false);
}

// The mean loss over non-ignored tokens (F.cross_entropy(logits, labels, ignore_index=-100)), differentiable.
template <class T, class Dn, class Dc, class Dv, class Ec>
Variable<T> cross_entropy(const Variable<T, Dn, Dc>& hidden, const Variable<T, Dv, Ec>& table,
                          const Tensor<std::int32_t, Dyn>& labels, const CrossEntropyParams& p = {}) {
  return impl::cross_entropy_variable(hidden, table, labels, p, true).sum;
}

QLORA_DISPATCH_END
}  // namespace qlora
