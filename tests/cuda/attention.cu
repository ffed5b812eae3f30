// Flash-style attention kernels against the CPU reference: out, lse and dq, dk, dv in fp32 and bf16, head_dim 256 and
// 128, GQA 4:1 and 4:2, global and sliding-window layers, packed segments, token counts that are not tile multiples;
// head_dims that are not multiples of 32 (the tiny models' 8, 40, 96) and Gemma 4's 512 (fp32, bf16); refusals.
#include <doctest/doctest.h>

#include <cstdint>
#include <tuple>
#include <vector>

#include "support/check.hpp"

#include <qlora/cuda.hpp>
#include <qlora/ops/attention.hpp>

using namespace qlora;

namespace {
using Seq = Tensor<std::int32_t, Dyn>;

struct Case {
  index_t tokens, q_heads, kv_heads, head_dim, window;
  bool packed;
};

// Runs forward and backward (fixed d_out) on the CPU and the GPU and compares out, lse, dq, dk, dv.
template <class T>
void compare_path(const Case& c, double atol, double rtol) {
  CAPTURE(c.tokens);
  CAPTURE(c.q_heads);
  CAPTURE(c.kv_heads);
  CAPTURE(c.head_dim);
  CAPTURE(c.window);
  CAPTURE(c.packed);
  using X = Tensor<T, Dyn, Dyn, Dyn>;
  const auto q0 = test::random_tensor<X>(1, -2, 2, c.tokens, c.q_heads, c.head_dim);
  const auto k0 = test::random_tensor<X>(2, -2, 2, c.tokens, c.kv_heads, c.head_dim);
  const auto v0 = test::random_tensor<X>(3, -1, 1, c.tokens, c.kv_heads, c.head_dim);
  const auto dout = test::random_tensor<X>(4, -1, 1, c.tokens, c.q_heads, c.head_dim);
  std::vector<std::int32_t> ids(static_cast<std::size_t>(c.tokens));
  for (std::size_t t = 0; t < ids.size(); ++t) ids[t] = static_cast<std::int32_t>(t * 3 / ids.size());  // 3 segments
  const Seq seg = c.packed ? Seq::from(ids, c.tokens) : Seq();
  const AttentionParams p{1.0 / std::sqrt(static_cast<double>(c.head_dim)), c.window};
  auto run = [&](Device device) {
    auto q = Variable<T, Dyn, Dyn, Dyn>::leaf(q0.to(device));
    auto k = Variable<T, Dyn, Dyn, Dyn>::leaf(k0.to(device));
    auto v = Variable<T, Dyn, Dyn, Dyn>::leaf(v0.to(device));
    const auto out = attention(q, k, v, p, seg.defined() ? seg.to(device) : Seq());
    backward(out, dout.to(device));
    return std::make_tuple(out.value().to(Device::cpu()), q.grad().to(Device::cpu()), k.grad().to(Device::cpu()),
                           v.grad().to(Device::cpu()));
  };
  const auto [o_cpu, dq_cpu, dk_cpu, dv_cpu] = run(Device::cpu());
  const auto [o_gpu, dq_gpu, dk_gpu, dv_gpu] = run(cuda::device());
  QLORA_CHECK_CLOSE(o_gpu, o_cpu, atol, rtol);
  QLORA_CHECK_CLOSE(dq_gpu, dq_cpu, atol, rtol);
  QLORA_CHECK_CLOSE(dk_gpu, dk_cpu, 4 * atol, rtol);  // sums over the heads of a group: more terms
  QLORA_CHECK_CLOSE(dv_gpu, dv_cpu, 4 * atol, rtol);

  const auto f_cpu = attention_forward(q0, k0, v0, p, seg);
  const auto f_gpu = attention_forward(q0.to(cuda::device()), k0.to(cuda::device()), v0.to(cuda::device()), p,
                                       seg.defined() ? seg.to(cuda::device()) : Seq());
  QLORA_CHECK_CLOSE(f_gpu.lse, f_cpu.lse, 1e-4, 1e-5);
}

// Both CUDA paths against the CPU: the GEMM chunks (the default) and the scalar flash kernels (the reference).
template <class T>
void compare_with_cpu(const Case& c, double atol, double rtol) {
  for (const auto path : {cuda::AttentionPath::gemm, cuda::AttentionPath::flash_scalar}) {
    CAPTURE(path == cuda::AttentionPath::gemm ? "gemm" : "flash_scalar");
    const cuda::AttentionPathScope scope(path);
    compare_path<T>(c, atol, rtol);
  }
}
}  // namespace

TEST_SUITE("cuda") {
  TEST_CASE("attention kernels equal the CPU reference in fp32 (head_dim 256, GQA 4:1, sliding window)") {
    compare_with_cpu<float>({77, 4, 1, 256, 16, false}, 2e-5, 1e-4);
    compare_with_cpu<float>({200, 4, 1, 256, 64, true}, 2e-5, 1e-4);
    compare_with_cpu<float>({33, 4, 1, 256, 0, false}, 2e-5, 1e-4);
  }

  TEST_CASE("attention kernels equal the CPU reference in fp32 (head_dim 128, GQA 4:2, global and packed)") {
    compare_with_cpu<float>({130, 4, 2, 128, 0, true}, 2e-5, 1e-4);
    compare_with_cpu<float>({64, 4, 2, 128, 40, false}, 2e-5, 1e-4);
    compare_with_cpu<float>({5, 2, 2, 128, 0, false}, 2e-5, 1e-4);
  }

  TEST_CASE("attention kernels on bf16 equal the CPU within bf16 rounding (fp32 accumulation)") {
    compare_with_cpu<bf16>({96, 4, 1, 256, 32, true}, 2e-2, 2e-2);
    compare_with_cpu<bf16>({70, 4, 2, 128, 0, false}, 2e-2, 2e-2);
  }

  TEST_CASE("attention kernels equal the CPU for head_dims that are not multiples of 32 and for Gemma 4's 512") {
    compare_with_cpu<float>({19, 4, 1, 8, 0, false}, 2e-5, 1e-4);    // the tiny Gemma 3 test model's head_dim
    compare_with_cpu<float>({45, 2, 1, 40, 8, true}, 2e-5, 1e-4);
    compare_with_cpu<float>({70, 3, 3, 96, 0, false}, 2e-5, 1e-4);
    compare_with_cpu<double>({33, 2, 1, 8, 0, true}, 1e-10, 1e-10);
    compare_with_cpu<float>({67, 8, 2, 512, 0, false}, 2e-5, 1e-4);  // Gemma 4's full layers: GQA 4:1, head_dim 512
    compare_with_cpu<bf16>({40, 4, 1, 512, 0, true}, 2e-2, 2e-2);
  }

  TEST_CASE("the GEMM path over several chunks (a chunk's scores kept within the budget) equals the CPU") {
    // a 1 MiB budget: 4 heads x 300 tokens x 2 fp32 buffers = 9600 bytes a row, 109 rows a chunk, three chunks, the
    // later ones seeing every earlier key (global) or only their window; bf16 with its fp32 scratch
    const cuda::AttentionPathScope scope(cuda::AttentionPath::gemm);
    const std::size_t budget = cuda::set_attention_gemm_budget(std::size_t{1} << 20);
    CHECK(cuda::attention_gemm_plan<float>({300, 4, 1, 64, 0, 1.0}).chunk == 109);
    compare_path<float>({300, 4, 1, 64, 0, false}, 2e-5, 1e-4);
    compare_path<float>({300, 4, 2, 40, 50, true}, 2e-5, 1e-4);
    compare_path<bf16>({300, 4, 1, 256, 0, true}, 2e-2, 2e-2);
    compare_path<double>({150, 2, 1, 24, 30, false}, 1e-10, 1e-10);
    cuda::set_attention_gemm_budget(budget);
    compare_path<float>({70, 2, 1, 640, 0, false}, 2e-5, 1e-4);  // any head_dim on this path
  }

  TEST_CASE("the flash kernels refuse a head_dim past 512, and fp64 at 512 (shared memory), by name") {
    const cuda::AttentionPathScope scope(cuda::AttentionPath::flash_scalar);
    using X = Tensor<float, Dyn, Dyn, Dyn>;
    const auto q = X::zeros_on(cuda::device(), 4, 2, 640), k = X::zeros_on(cuda::device(), 4, 1, 640);
    CHECK_THROWS_WITH_AS(attention_forward(q, k, k, AttentionParams{1, 0}),
                         "[attention] CUDA kernels support head_dim 1 to 512; got 640", Error);
    using X64 = Tensor<double, Dyn, Dyn, Dyn>;
    const auto q64 = X64::zeros_on(cuda::device(), 4, 2, 512), k64 = X64::zeros_on(cuda::device(), 4, 1, 512);
    CHECK_THROWS_WITH_AS(attention_forward(q64, k64, k64, AttentionParams{1, 0}),
                         doctest::Contains("head_dim 512 in f64 needs 288 KiB of shared memory a block"), Error);
  }
}
