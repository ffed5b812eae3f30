// The oneDNN CPU GEMM backend of matmul (CpuGemm::onednn and CpuGemm::onednn_bf16; ops/matmul.hpp dispatches here).
//
//   onednn       fp32 operands, fp32 accumulation: oneDNN's JIT GEMM for the ISA it finds at run time (AVX2,
//                AVX-512, ...), the same arithmetic as Eigen's up to summation order.
//   onednn_bf16  A and B rounded to bf16 (round to nearest even), products accumulated in fp32, C in fp32: what
//                torch's bf16 autocast computes. Only offered where the CPU has bf16 units (AVX512-BF16 or AMX;
//                cpu_has_bf16_units()), where oneDNN's bf16 kernels run at twice the fp32 rate.
//
// Error of one element of C = op(A)·op(B) against the exact product: fp32 ≤ k·2⁻²⁴·(|A||B|)ᵢⱼ; bf16
// ≤ (2·2⁻⁹ + k·2⁻²⁴)·(|A||B|)ᵢⱼ (each operand's rounding is at most 2⁻⁹ relative) — tests/ops/matmul_onednn.cpp
// checks both bounds against an fp64 product.
//
// One primitive per problem (shapes, transposes, strides, alpha, beta, math), made once and kept (oneDNN's own
// cache makes re-creation cheap too); each call brings its own scratchpad (thread-local), so threads may run
// primitives at once — the fused cross-entropy runs one GEMM per thread inside its parallel region, where oneDNN's
// OpenMP runtime runs single-threaded. The calls are in a class template (OneDnnGemm<float>), so that programs which
// link qlora::kernels compile this header once (models/kernels.cpp) and others include it as a header.
#pragma once

#include <oneapi/dnnl/dnnl.hpp>

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "matmul.hpp"

namespace qlora::cpu {

namespace detail {
struct OneDnnKey {
  index_t batch, m, n, k, sa, sb, sc;
  bool ta, tb, bf16;
  double alpha, beta;
  auto tie() const { return std::tie(batch, m, n, k, sa, sb, sc, ta, tb, bf16, alpha, beta); }
  bool operator<(const OneDnnKey& o) const { return tie() < o.tie(); }
};

struct OneDnnProblem {
  dnnl::matmul primitive;
  dnnl::memory::desc a, b, c, scratch;
  std::string impl;
};

inline dnnl::engine& onednn_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// The memory description of a row-major [rows, cols] operand (transposed: stored [cols, rows]) of each batch entry,
// `stride` elements apart (0: one matrix shared by the batch).
inline dnnl::memory::desc onednn_operand(index_t batch, index_t rows, index_t cols, bool transposed, index_t stride,
                                         dnnl::memory::data_type type) {
  using dims = dnnl::memory::dims;
  const index_t ld = transposed ? rows : cols;  // elements between consecutive stored rows
  // A single matrix gets the dense batch stride: oneDNN takes a zero stride for a non-blocked layout and falls back
  // to its reference kernel.
  const index_t between = stride == 0 || batch == 1 ? rows * cols : stride;
  const dims strides = transposed ? dims{between, 1, ld} : dims{between, ld, 1};
  return dnnl::memory::desc(dims{stride == 0 ? 1 : batch, rows, cols}, type, strides);
}

inline OneDnnProblem make_onednn_problem(const OneDnnKey& key) {
  using dt = dnnl::memory::data_type;
  const dt in = key.bf16 ? dt::bf16 : dt::f32;
  OneDnnProblem pr;
  pr.a = onednn_operand(key.batch, key.m, key.k, key.ta, key.sa, in);
  pr.b = onednn_operand(key.batch, key.k, key.n, key.tb, key.sb, in);
  pr.c = onednn_operand(key.batch, key.m, key.n, false, key.batch > 1 ? key.sc : 0, dt::f32);
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  if (key.alpha != 1) attr.set_output_scales(0, {static_cast<float>(key.alpha)});
  if (key.beta != 0) {
    dnnl::post_ops ops;
    ops.append_sum(static_cast<float>(key.beta));
    attr.set_post_ops(ops);
  }
  try {
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(pr.a, pr.b, pr.c), attr, onednn_engine());
    pr.scratch = pd.scratchpad_desc();
    pr.impl = pd.impl_info_str();
    pr.primitive = dnnl::matmul(pd);
  } catch (const dnnl::error& e) {
    fail("matmul", "oneDNN has no ", key.bf16 ? "bf16" : "fp32", " GEMM for ", key.batch, " x [", key.m, ", ", key.k,
         "] x [", key.k, ", ", key.n, "] on this CPU (", e.what(), ")");
  }
  return pr;
}

// The problem's primitive, made on first use and copied out under the lock (dnnl objects are reference-counted
// handles: a copy stays valid when another thread starts the cache over). At most kOneDnnCacheSize problems are kept
// (a run sees a few dozen: sequence lengths vary by batch); past that the cache starts over.
inline constexpr std::size_t kOneDnnCacheSize = 512;
inline OneDnnProblem onednn_problem(const OneDnnKey& key) {
  static std::mutex mutex;
  static std::map<OneDnnKey, OneDnnProblem> cache;
  {
    std::lock_guard<std::mutex> lock(mutex);
    const auto it = cache.find(key);
    if (it != cache.end()) return it->second;
  }
  OneDnnProblem made = make_onednn_problem(key);  // outside the lock: creation may take a millisecond
  std::lock_guard<std::mutex> lock(mutex);
  if (cache.size() >= kOneDnnCacheSize) cache.clear();
  return cache.emplace(key, std::move(made)).first->second;
}

// A thread's buffers: the scratchpad and, for bf16 math, the rounded operands.
struct OneDnnBuffers {
  std::vector<std::uint8_t> scratch;
  std::vector<bf16> a, b;
};
inline OneDnnBuffers& onednn_buffers() {
  thread_local OneDnnBuffers buffers;
  return buffers;
}

// Elements spanned by a strided batch of [rows, cols] operands.
inline index_t onednn_span(index_t batch, index_t stride, index_t rows, index_t cols) {
  return (stride ? stride * (batch - 1) : 0) + rows * cols;
}

inline void round_to_bf16(const float* x, index_t n, std::vector<bf16>& out) {
  out.resize(static_cast<std::size_t>(n));
  bf16* o = out.data();
#pragma omp parallel for schedule(static) if (n > (1 << 16))  // one thread inside a parallel region
  for (index_t i = 0; i < n; ++i) o[i] = convert<bf16>(x[i]);
}
}  // namespace detail

template <class T>
void OneDnnGemm<T>::gemm(const GemmParams& p, CpuGemm math, const T* a, const T* b, T* c) {
  if (p.m == 0 || p.n == 0) return;
  const bool bf16 = math == CpuGemm::onednn_bf16;
  const detail::OneDnnKey key{p.batch, p.m, p.n, p.k, p.stride_a, p.stride_b, p.stride_c,
                              p.trans_a, p.trans_b, bf16, p.alpha, p.beta};
  const detail::OneDnnProblem pr = detail::onednn_problem(key);
  detail::OneDnnBuffers& buf = detail::onednn_buffers();
  const void* a_data = a;
  const void* b_data = b;
  if (bf16) {
    detail::round_to_bf16(a, detail::onednn_span(p.batch, p.stride_a, p.m, p.k), buf.a);
    detail::round_to_bf16(b, detail::onednn_span(p.batch, p.stride_b, p.k, p.n), buf.b);
    a_data = buf.a.data();
    b_data = buf.b.data();
  }
  buf.scratch.resize(pr.scratch.get_size());
  const dnnl::engine& engine = detail::onednn_engine();
  thread_local dnnl::stream stream(engine);
  dnnl::memory am(pr.a, engine, const_cast<void*>(a_data)), bm(pr.b, engine, const_cast<void*>(b_data)),
      cm(pr.c, engine, c), sm(pr.scratch, engine, buf.scratch.data());
  pr.primitive.execute(stream, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm},
                                {DNNL_ARG_SCRATCHPAD, sm}});
  stream.wait();
}

template <class T>
bool OneDnnGemm<T>::cpu_has_bf16_units() {
  // dnnl's ISA values are bit sets, each containing the ISAs below it: AVX512-BF16 (0xe7) is within AMX (0x3e7).
  const auto isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
  const auto bf16_units = static_cast<unsigned>(dnnl::cpu_isa::avx512_core_bf16);
  return (isa & bf16_units) == bf16_units;
}

template <class T>
std::string OneDnnGemm<T>::describe(CpuGemm math) {
  const dnnl_version_t* v = dnnl_version();
  std::string isa;
  switch (dnnl::get_effective_cpu_isa()) {
    case dnnl::cpu_isa::sse41: isa = "SSE4.1"; break;
    case dnnl::cpu_isa::avx: isa = "AVX"; break;
    case dnnl::cpu_isa::avx2: isa = "AVX2"; break;
    case dnnl::cpu_isa::avx2_vnni: isa = "AVX2-VNNI"; break;
    case dnnl::cpu_isa::avx512_core: isa = "AVX-512"; break;
    case dnnl::cpu_isa::avx512_core_vnni: isa = "AVX-512 VNNI"; break;
    case dnnl::cpu_isa::avx512_core_bf16: isa = "AVX512-BF16"; break;
    case dnnl::cpu_isa::avx512_core_amx: isa = "AMX"; break;
    default: isa = "ISA " + std::to_string(static_cast<int>(dnnl::get_effective_cpu_isa())); break;
  }
  const detail::OneDnnKey key{1, 512, 2048, 640, 0, 0, 0, false, true, math == CpuGemm::onednn_bf16, 1.0, 0.0};
  return "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch) +
         (key.bf16 ? " bf16" : " fp32") + " on " + isa + " (kernel " + detail::onednn_problem(key).impl + ")";
}

}  // namespace qlora::cpu
