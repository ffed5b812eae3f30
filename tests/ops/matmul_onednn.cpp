// The CPU GEMM backends (ops/matmul_onednn.hpp) against an fp64 product, element by element within the bound each
// one promises: fp32 ≤ k·2⁻²⁴·(|A||B|)ᵢⱼ (+ the rounding of C), bf16 operands ≤ (2·2⁻⁹ + k·2⁻²⁴)·(|A||B|)ᵢⱼ. Every
// transpose, batched with shared and strided operands, alpha and beta, shapes on and off the kernels' blocks, and
// calls from inside a parallel region (as the fused cross-entropy makes them). Where this build has no oneDNN or
// the CPU no bf16 units the test says so and checks that the backend is reported unavailable.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <vector>

#include <qlora/ops/matmul.hpp>

#include "support/check.hpp"

using namespace qlora;

namespace {
struct Case {
  index_t batch, m, n, k;
  bool ta, tb, shared_b;
  double alpha, beta;
};

// Runs the case on `backend` and checks every element of C against the fp64 product within the backend's bound.
void check_case(const Case& t, CpuGemm backend) {
  GemmParams p;
  p.batch = t.batch;
  p.m = t.m;
  p.n = t.n;
  p.k = t.k;
  p.trans_a = t.ta;
  p.trans_b = t.tb;
  p.stride_a = t.m * t.k;
  p.stride_b = t.shared_b ? 0 : t.k * t.n;
  p.stride_c = t.m * t.n;
  p.alpha = t.alpha;
  p.beta = t.beta;
  const index_t na = t.batch * t.m * t.k, nb = (t.shared_b ? 1 : t.batch) * t.k * t.n, nc = t.batch * t.m * t.n;
  std::vector<float> a(static_cast<std::size_t>(na)), b(static_cast<std::size_t>(nb)), c(static_cast<std::size_t>(nc));
  for (index_t i = 0; i < na; ++i) a[static_cast<std::size_t>(i)] = 2 * uniform01({11, 0}, static_cast<std::uint64_t>(i)) - 1;
  for (index_t i = 0; i < nb; ++i) b[static_cast<std::size_t>(i)] = 2 * uniform01({12, 0}, static_cast<std::uint64_t>(i)) - 1;
  for (index_t i = 0; i < nc; ++i) c[static_cast<std::size_t>(i)] = 2 * uniform01({13, 0}, static_cast<std::uint64_t>(i)) - 1;
  const std::vector<float> c0 = c;
  cpu::gemm(p, a.data(), b.data(), c.data(), backend);
  const double unit = 1.0 / (1 << 24);
  // bf16 keeps 8 significant bits (unit roundoff u = 2^-8): a product of two rounded operands is within 2u + u²
  const double operand = backend == CpuGemm::onednn_bf16 ? 2.0 / (1 << 8) + 1.0 / (1 << 16) : 0.0;
  int bad = 0;
  for (index_t q = 0; q < t.batch; ++q)
    for (index_t i = 0; i < t.m; ++i)
      for (index_t j = 0; j < t.n; ++j) {
        double exact = 0, magnitude = 0;
        for (index_t l = 0; l < t.k; ++l) {
          const double x = a[static_cast<std::size_t>(q * p.stride_a + (t.ta ? l * t.m + i : i * t.k + l))];
          const double y = b[static_cast<std::size_t>(q * p.stride_b + (t.tb ? j * t.k + l : l * t.n + j))];
          exact += x * y;
          magnitude += std::abs(x * y);
        }
        const std::size_t at = static_cast<std::size_t>(q * p.stride_c + i * t.n + j);
        const double want = t.alpha * exact + t.beta * c0[at];
        const double bound = (operand + (t.k + 2) * unit) * std::abs(t.alpha) * magnitude +
                             2 * unit * (std::abs(want) + std::abs(t.beta * c0[at])) + 1e-30;
        if (std::abs(c[at] - want) > bound && bad++ < 3)
          FAIL_CHECK(cpu_gemm_name(backend), " batch ", q, " C[", i, ", ", j, "] = ", c[at], ", fp64 ", want,
                     ", bound ", bound);
      }
  CHECK(bad == 0);
}

const std::vector<Case>& cases() {
  static const std::vector<Case> all = {
      {1, 5, 7, 3, false, false, false, 1, 0},   {1, 5, 7, 3, false, true, false, 1, 0},
      {1, 5, 7, 3, true, false, false, 1, 0},    {1, 5, 7, 3, true, true, false, 1, 0},
      {1, 64, 96, 640, false, true, false, 1, 0},  // a projection's shape, on the kernels' blocks
      {1, 33, 130, 257, false, true, false, 1, 0}, // off them
      {1, 17, 48, 29, true, false, false, 1, 1},   // a LoRA weight gradient, accumulated
      {1, 9, 11, 13, false, false, false, 0.125, 0.5},
      {3, 6, 5, 4, false, true, false, 1, 0},    {3, 6, 5, 4, true, false, true, -2, 1},
      {1, 1, 300, 64, false, true, false, 1, 0},  // one token (decoding)
  };
  return all;
}
}  // namespace

TEST_SUITE("ops") {
  TEST_CASE("CPU GEMM backends: oneDNN fp32 within fp32's bound of the fp64 product, every layout") {
    if (!cpu_gemm_available(CpuGemm::onednn)) {
      MESSAGE("skipped: this build has no oneDNN (apt-get install libdnnl-dev); the CPU GEMM is Eigen's");
      CHECK(fastest_cpu_gemm(false) == CpuGemm::eigen);
      return;
    }
    MESSAGE("fp32 backend: " << describe_cpu_gemm(CpuGemm::onednn));
    const std::uint64_t before = cpu::cpu_gemm_count(CpuGemm::onednn).calls;
    for (const Case& t : cases()) check_case(t, CpuGemm::onednn);
    CHECK(cpu::cpu_gemm_count(CpuGemm::onednn).calls == before + cases().size());  // the dispatch reached oneDNN
    for (const Case& t : cases()) check_case(t, CpuGemm::eigen);                  // and the reference keeps its bound
  }

  TEST_CASE("CPU GEMM backends: bf16 operands within bf16's bound where the CPU has bf16 units") {
    if (!cpu_gemm_available(CpuGemm::onednn_bf16)) {
      const std::string why = cpu_gemm_available(CpuGemm::onednn) ? "this CPU has no bf16 units (AVX512-BF16 or AMX)"
                                                                  : "this build has no oneDNN";
      MESSAGE("skipped: " << why << "; --bf16 runs the fp32 GEMM here");
      CHECK(fastest_cpu_gemm(true) != CpuGemm::onednn_bf16);
      return;
    }
    MESSAGE("bf16 backend: " << describe_cpu_gemm(CpuGemm::onednn_bf16));
    CHECK(fastest_cpu_gemm(true) == CpuGemm::onednn_bf16);
    for (const Case& t : cases()) check_case(t, CpuGemm::onednn_bf16);
  }

  TEST_CASE("CPU GEMM backends: threads calling at once from a parallel region give each one's own result") {
    const CpuGemm backend = fastest_cpu_gemm(false);
    GemmParams p;
    p.m = 48;
    p.n = 64;
    p.k = 80;
    p.trans_b = true;
    constexpr int kThreads = 4;
    std::vector<std::vector<float>> a(kThreads), b(kThreads), c(kThreads), want(kThreads);
    for (int t = 0; t < kThreads; ++t) {
      a[t].resize(static_cast<std::size_t>(p.m * p.k));
      b[t].resize(static_cast<std::size_t>(p.n * p.k));
      c[t].assign(static_cast<std::size_t>(p.m * p.n), 0.f);
      want[t] = c[t];
      for (std::size_t i = 0; i < a[t].size(); ++i) a[t][i] = uniform01({20, static_cast<std::uint64_t>(t)}, i) - 0.5f;
      for (std::size_t i = 0; i < b[t].size(); ++i) b[t][i] = uniform01({21, static_cast<std::uint64_t>(t)}, i) - 0.5f;
      cpu::gemm(p, a[t].data(), b[t].data(), want[t].data(), backend);
    }
#pragma omp parallel for num_threads(kThreads) schedule(static, 1)
    for (int t = 0; t < kThreads; ++t)
      for (int rep = 0; rep < 20; ++rep) cpu::gemm(p, a[t].data(), b[t].data(), c[t].data(), backend);
    for (int t = 0; t < kThreads; ++t) CHECK(c[t] == want[t]);  // same problem, same kernel: bit for bit
  }

  TEST_CASE("CPU GEMM backends: a device's backend reaches matmul and the fused cross-entropy") {
    const CpuGemm backend = fastest_cpu_gemm(false);
    if (backend == CpuGemm::eigen) {
      MESSAGE("skipped: this build has no oneDNN");
      return;
    }
    const Device device = Device::cpu(backend);
    using M = Tensor<float, Dyn, Dyn>;
    const M x = test::random_tensor<M>(1, -1, 1, 6, 8).to(device);
    const M w = test::random_tensor<M>(2, -1, 1, 5, 8);
    const std::uint64_t before = cpu::cpu_gemm_count(backend).calls;
    const M y = matmul<Transpose::no, Transpose::yes>(x, w);
    CHECK(cpu::cpu_gemm_count(backend).calls == before + 1);
    CHECK(y.device().cpu_gemm() == backend);  // results stay on the backend's device: the next op uses it too
  }
}

TEST_SUITE("ops") {
  TEST_CASE("CPU GEMM backends: an empty inner extent (k = 0) gives C = beta·C on every backend") {
    // oneDNN refuses a product without an inner extent; the dispatch hands it to Eigen, on every backend.
    for (const CpuGemm backend : all_cpu_gemms) {
      if (!cpu_gemm_available(backend)) continue;
      const std::uint64_t eigen_before = cpu::cpu_gemm_count(CpuGemm::eigen).calls;
      check_case({1, 4, 6, 0, false, true, false, 1, 0.5}, backend);
      check_case({2, 3, 5, 0, true, false, false, 2, 0}, backend);
      CHECK(cpu::cpu_gemm_count(CpuGemm::eigen).calls == eigen_before + 2);
    }
  }

  TEST_CASE("CPU GEMM backends: names round-trip and unknown names are refused") {
    for (const CpuGemm g : all_cpu_gemms) {
      const auto back = cpu_gemm_named(cpu_gemm_name(g));
      REQUIRE(back.has_value());
      CHECK(*back == g);
    }
    CHECK_FALSE(cpu_gemm_named("mkl").has_value());
    CHECK_FALSE(cpu_gemm_named("").has_value());
    CHECK_FALSE(cpu_gemm_named("ONEDNN").has_value());
  }
}
