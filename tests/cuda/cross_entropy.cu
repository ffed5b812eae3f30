// Chunked LM head + cross-entropy on the GPU against the CPU reference: loss sum, count, lse, d_hidden and d_table in
// fp32 and bf16, with and without soft-capping, with chunks that split tokens and vocabulary raggedly.
#include <doctest/doctest.h>

#include <cstdint>
#include <vector>

#include "support/check.hpp"

#include <qlora/cuda.hpp>
#include <qlora/ops/cross_entropy.hpp>

using namespace qlora;

namespace {
using Labels = Tensor<std::int32_t, Dyn>;

Labels make_labels(index_t tokens, index_t vocab) {
  std::vector<std::int32_t> ids(static_cast<std::size_t>(tokens));
  for (std::size_t t = 0; t < ids.size(); ++t)
    ids[t] = t % 7 == 3 ? kIgnoreIndex : static_cast<std::int32_t>((t * 7919) % static_cast<std::size_t>(vocab));
  return Labels::from(ids, tokens);
}

template <class T>
void compare_with_cpu(index_t tokens, index_t channels, index_t vocab, const CrossEntropyParams& p, double atol,
                      double rtol) {
  CAPTURE(tokens);
  CAPTURE(vocab);
  CAPTURE(p.softcap);
  CAPTURE(p.chunk_tokens);
  CAPTURE(p.chunk_vocab);
  using M = Tensor<T, Dyn, Dyn>;
  const auto hidden = test::random_tensor<M>(1, -1, 1, tokens, channels);
  const auto table = test::random_tensor<M>(2, -0.5, 0.5, vocab, channels);
  const Labels labels = make_labels(tokens, vocab);
  const Device gpu = cuda::device();
  const auto f_cpu = cross_entropy_forward(hidden, table, labels, p);
  const auto f_gpu = cross_entropy_forward(hidden.to(gpu), table.to(gpu), labels.to(gpu), p);
  CHECK(f_gpu.count == f_cpu.count);
  CHECK(f_gpu.sum == doctest::Approx(f_cpu.sum).epsilon(1e-5));
  QLORA_CHECK_CLOSE(f_gpu.lse, f_cpu.lse, 1e-4, 1e-5);
  const double scale = 1.0 / static_cast<double>(f_cpu.count);
  const auto g_cpu = cross_entropy_backward(hidden, table, labels, f_cpu.lse, scale, true, p);
  const auto g_gpu = cross_entropy_backward(hidden.to(gpu), table.to(gpu), labels.to(gpu), f_gpu.lse, scale, true, p);
  QLORA_CHECK_CLOSE(g_gpu.d_hidden, g_cpu.d_hidden, atol, rtol);
  QLORA_CHECK_CLOSE(g_gpu.d_table, g_cpu.d_table, atol, rtol);
}
}  // namespace

TEST_SUITE("cuda") {
  TEST_CASE("cross-entropy kernels equal the CPU in fp32 for ragged chunks, with and without soft-capping") {
    compare_with_cpu<float>(77, 64, 1000, CrossEntropyParams{0, 16, 300}, 1e-6, 1e-4);
    compare_with_cpu<float>(77, 64, 1000, CrossEntropyParams{5.0, 30, 128}, 1e-6, 1e-4);
    compare_with_cpu<float>(300, 128, 40000, CrossEntropyParams{}, 1e-7, 1e-4);  // default chunks
  }

  TEST_CASE("cross-entropy kernels on bf16 (fp32 logits and accumulators) equal the CPU within bf16 rounding") {
    compare_with_cpu<bf16>(64, 64, 2000, CrossEntropyParams{0, 20, 512}, 1e-4, 2e-2);
    compare_with_cpu<bf16>(64, 64, 2000, CrossEntropyParams{10.0, 64, 2000}, 1e-4, 2e-2);
  }

  TEST_CASE("differentiable cross-entropy on the GPU gives the CPU's loss and d_hidden") {
    using M = Tensor<float, Dyn, Dyn>;
    const auto h0 = test::random_tensor<M>(3, -1, 1, 40, 32);
    const auto w0 = test::random_tensor<M>(4, -1, 1, 500, 32);
    const Labels labels = make_labels(40, 500);
    auto run = [&](Device device) {
      auto h = Variable<float, Dyn, Dyn>::leaf(h0.to(device));
      const auto w = Variable<float, Dyn, Dyn>(w0.to(device));
      const auto loss = cross_entropy(h, w, labels.to(device), CrossEntropyParams{0, 16, 128});
      backward(loss);
      return std::make_pair(loss.value().item(), h.grad().to(Device::cpu()));
    };
    const auto [l_cpu, dh_cpu] = run(Device::cpu());
    const auto [l_gpu, dh_gpu] = run(cuda::device());
    CHECK(l_gpu == doctest::Approx(l_cpu).epsilon(1e-5));
    QLORA_CHECK_CLOSE(dh_gpu, dh_cpu, 1e-7, 1e-4);
  }

  TEST_CASE("cross-entropy on the GPU rejects a label outside the vocabulary") {
    const auto h = Tensor<float, Dyn, Dyn>::zeros_on(cuda::device(), 2, 8);
    const auto w = Tensor<float, Dyn, Dyn>::zeros_on(cuda::device(), 10, 8);
    CHECK_THROWS_WITH_AS(cross_entropy_forward(h, w, Labels::from({3, 10}, 2).to(cuda::device())),
                         "[cross_entropy] token 1 has label 10, outside [0, 10) and not the ignore index -100", Error);
  }
}
