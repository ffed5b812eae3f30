// Expressions, memory and autograd on a GPU, each against the same computation on the CPU; and the execution
// context: device guards, one caching pool per stream, ordered copies between streams, and a block's forward and
// backward run on two streams at once giving the single-stream and CPU results. (In this file rather than a new
// translation unit: every CUDA test file costs minutes of CI build.)
#include <doctest/doctest.h>

#include <cstdint>
#include <exception>
#include <thread>
#include <tuple>
#include <vector>

#include "support/check.hpp"
#include "support/concurrent.hpp"

#include <qlora/cuda.hpp>

using namespace qlora;

namespace {
using M = Tensor<float, Dyn, Dyn>;
using V2 = Variable<float, Dyn, Dyn>;
using V1 = Variable<float, Dyn>;
constexpr Transpose N = Transpose::no, Tr = Transpose::yes;

// A small decoder block and its loss: rmsnorm, q/k/v projections, RoPE, GQA attention, output projection with a
// residual, GeGLU MLP, and the tied-head cross-entropy; T = 48 tokens, hidden 128, 2 query heads and 1 kv head of 64.
struct BlockInputs {
  static constexpr index_t T = 48, C = 128, H = 2, D = 64, F = 256, V = 300;
  M x = test::random_tensor<M>(11, -1, 1, T, C);
  Tensor<float, Dyn> norm = test::random_tensor<Tensor<float, Dyn>>(12, -0.2, 0.2, C);
  M wq = test::random_tensor<M>(13, -0.1, 0.1, H * D, C), wk = test::random_tensor<M>(14, -0.1, 0.1, D, C);
  M wv = test::random_tensor<M>(15, -0.1, 0.1, D, C), wo = test::random_tensor<M>(16, -0.1, 0.1, C, H * D);
  M wg = test::random_tensor<M>(17, -0.1, 0.1, F, C), wu = test::random_tensor<M>(18, -0.1, 0.1, F, C);
  M wd = test::random_tensor<M>(19, -0.1, 0.1, C, F), table = test::random_tensor<M>(20, -0.5, 0.5, V, C);
  Tensor<std::int32_t, Dyn> labels, positions;
  BlockInputs() {
    std::vector<std::int32_t> l(T), p(T);
    for (std::size_t t = 0; t < l.size(); ++t) {
      l[t] = t % 7 == 3 ? kIgnoreIndex : static_cast<std::int32_t>((t * 37) % V);
      p[t] = static_cast<std::int32_t>(t);
    }
    labels = Tensor<std::int32_t, Dyn>::from(l, T);
    positions = Tensor<std::int32_t, Dyn>::from(p, T);
  }
};

// The loss and every gradient, on the host.
struct BlockResult {
  Tensor<float> loss;
  std::vector<Tensor<float, Dyn>> grads;  // flattened: x, norm, wq, wk, wv, wo, wg, wu, wd, table
};

BlockResult run_block(const BlockInputs& in, const Device& device) {
  constexpr index_t T = BlockInputs::T, H = BlockInputs::H, D = BlockInputs::D;
  auto x = V2::leaf(in.x.to(device));
  auto norm = V1::leaf(in.norm.to(device));
  std::vector<V2> w;
  for (const M* m : {&in.wq, &in.wk, &in.wv, &in.wo, &in.wg, &in.wu, &in.wd, &in.table})
    w.push_back(V2::leaf(m->to(device)));
  const auto positions = in.positions.to(device);
  const auto h = rmsnorm(x, norm);
  const auto q = rope(reshape<Dyn, Dyn, Dyn>(matmul<N, Tr>(h, w[0]), T, H, D), positions, RopeParams{});
  const auto k = rope(reshape<Dyn, Dyn, Dyn>(matmul<N, Tr>(h, w[1]), T, 1, D), positions, RopeParams{});
  const auto v = reshape<Dyn, Dyn, Dyn>(matmul<N, Tr>(h, w[2]), T, 1, D);
  const auto a = reshape<Dyn, Dyn>(attention(q, k, v, AttentionParams{0.125, 0}), T, H * D);
  const auto o = matmul<N, Tr>(a, w[3]) + x;
  const auto y = matmul<N, Tr>(geglu(matmul<N, Tr>(o, w[4]), matmul<N, Tr>(o, w[5])), w[6]);
  const auto loss = cross_entropy(y, w[7], in.labels.to(device));
  backward(loss);
  BlockResult r{loss.value().to(Device::cpu()), {}};
  auto flat = [](const auto& t) { return t.to(Device::cpu()).template reshape<Dyn>(t.numel()); };
  r.grads.push_back(flat(x.grad()));
  r.grads.push_back(flat(norm.grad()));
  for (const auto& p : w) r.grads.push_back(flat(p.grad()));
  return r;
}

void check_block(const BlockResult& got, const BlockResult& want, double atol, double rtol) {
  QLORA_CHECK_CLOSE(got.loss, want.loss, atol, rtol);
  REQUIRE(got.grads.size() == want.grads.size());
  for (std::size_t i = 0; i < got.grads.size(); ++i) {
    CAPTURE(i);
    QLORA_CHECK_CLOSE(got.grads[i], want.grads[i], atol, rtol);
  }
}

// Owns a stream the caller makes (what cuda::device_on is for).
struct UserStream {
  cudaStream_t stream{};
  UserStream() { cuda::check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "test", "stream"); }
  ~UserStream() { cudaStreamDestroy(stream); }
};
}  // namespace

TEST_SUITE("cuda") {
  TEST_CASE("tensors round-trip between host and GPU") {
    auto h = test::random_tensor<Tensor<float, Dyn, Dim<33>>>(1, -1, 1, 7);
    auto d = h.to(cuda::device());
    CHECK(d.device().is_cuda());
    QLORA_CHECK_CLOSE(d.to(Device::cpu()), h, 0.0, 0.0);
  }

  TEST_CASE("the caching allocator reuses freed blocks and reports peak bytes") {
    Device gpu = cuda::device();
    auto& alloc = gpu.allocator();
    alloc.reset_peak();
    const auto before = alloc.stats();
    { auto t = Tensor<float, Dyn>::zeros_on(gpu, 1 << 20); }
    const auto after_first = alloc.stats();
    { auto t = Tensor<float, Dyn>::zeros_on(gpu, 1 << 20); }
    const auto after_second = alloc.stats();
    CHECK(after_first.current_bytes == before.current_bytes);
    CHECK(after_first.peak_bytes >= before.current_bytes + (4u << 20));
    CHECK(after_second.reserved_bytes == after_first.reserved_bytes);  // the second tensor reused the block
  }

  TEST_CASE("fused expressions on the GPU equal the CPU") {
    using M = Tensor<float, Dyn, Dim<1000>>;
    const auto a = test::random_tensor<M>(2, -2, 2, 37), b = test::random_tensor<M>(3, -2, 2, 37);
    const auto bias = test::random_tensor<Tensor<float, Dim<1000>>>(4, -1, 1);
    const auto cpu = evaluate<float, Dyn, Dim<1000>>(tanh(a) * b + bias - 0.5f);
    const Device gpu = cuda::device();
    const auto da = a.to(gpu), db = b.to(gpu);
    const auto dbias = bias.to(gpu);
    const auto got = evaluate<float, Dyn, Dim<1000>>(tanh(da) * db + dbias - 0.5f, gpu);
    QLORA_CHECK_CLOSE(got, cpu, 1e-6, 1e-6);
  }

  TEST_CASE("row reductions on the GPU equal the CPU (softmax)") {
    using M = Tensor<double, Dyn, Dyn>;
    const auto x = test::random_tensor<M>(5, -30, 30, 19, 3001);
    const auto cpu_e = evaluate<double, Dyn, Dyn>(exp(x - max_rows(x)));
    const auto cpu = evaluate<double, Dyn, Dyn>(cpu_e / sum_rows(cpu_e));
    const Device gpu = cuda::device();
    const auto dx = x.to(gpu);
    const auto e = evaluate<double, Dyn, Dyn>(exp(dx - max_rows(dx)), gpu);
    const auto got = evaluate<double, Dyn, Dyn>(e / sum_rows(e), gpu);
    QLORA_CHECK_CLOSE(got, cpu, 1e-15, 1e-12);
  }

  TEST_CASE("bf16 expressions round once, as on the CPU") {
    using M = Tensor<bf16, Dyn, Dim<256>>;
    const auto a = test::random_tensor<M>(6, -4, 4, 9);
    const auto cpu = evaluate<bf16, Dyn, Dim<256>>(a * a + 1.0f);
    const auto got = evaluate<bf16, Dyn, Dim<256>>(a.to(cuda::device()) * a.to(cuda::device()) + 1.0f, cuda::device());
    QLORA_CHECK_CLOSE(got, cpu, 0.0, 0.0);
  }

  TEST_CASE("an expression mixing CPU and GPU operands is an error") {
    auto a = Tensor<float, Dim<4>>::zeros();
    auto d = Tensor<float, Dim<4>>::zeros_on(cuda::device());
    CHECK_THROWS_AS(d = a + d, Error);
  }

  TEST_CASE("autograd on the GPU gives the CPU's gradients") {
    using M = Tensor<float, Dyn, Dyn>;
    const auto x0 = test::random_tensor<M>(7, -1, 1, 32, 48);
    const auto w0 = test::random_tensor<M>(8, -1, 1, 24, 48);
    auto run = [&](Device device) {
      auto x = Variable<float, Dyn, Dyn>::leaf(x0.to(device));
      auto w = Variable<float, Dyn, Dyn>::leaf(w0.to(device));
      auto loss = mean(square(tanh(matmul<Transpose::no, Transpose::yes>(x, w))));
      backward(loss);
      return std::make_tuple(loss.value().to(Device::cpu()), x.grad().to(Device::cpu()), w.grad().to(Device::cpu()));
    };
    const auto [l_cpu, dx_cpu, dw_cpu] = run(Device::cpu());
    const auto [l_gpu, dx_gpu, dw_gpu] = run(cuda::device());
    QLORA_CHECK_CLOSE(l_gpu, l_cpu, 1e-6, 1e-5);
    QLORA_CHECK_CLOSE(dx_gpu, dx_cpu, 1e-6, 1e-4);
    QLORA_CHECK_CLOSE(dw_gpu, dw_cpu, 1e-6, 1e-4);
  }

  TEST_CASE("a device guard makes a GPU current and restores the previous one, also when unwinding") {
    const int gpus = cuda::device_count();
    if (gpus < 2) MESSAGE("one GPU: the guard is checked switching to the GPU that is already current");
    const int before = cuda::current_device();
    for (int from = 0; from < gpus; ++from)
      for (int to = 0; to < gpus; ++to) {
        CAPTURE(from);
        CAPTURE(to);
        cuda::check(cudaSetDevice(from), "test", "cudaSetDevice");
        {
          const cuda::DeviceGuard guard(to);
          CHECK(cuda::current_device() == to);
        }
        CHECK(cuda::current_device() == from);
        try {
          const cuda::DeviceGuard guard(to);
          fail("test", "unwinding");
        } catch (const Error&) {
        }
        CHECK(cuda::current_device() == from);
      }
    cuda::check(cudaSetDevice(before), "test", "cudaSetDevice");
    // a GPU that does not exist: an Error, the current device unchanged, and no stale error for the next launch check
    CHECK_THROWS_AS(cuda::DeviceGuard{gpus}, Error);
    CHECK(cuda::current_device() == before);
    const auto x = test::random_tensor<Tensor<float, Dim<64>>>(1, -1, 1);
    const auto doubled = evaluate<float, Dim<64>>(x.to(cuda::device()) * 2.0f, cuda::device());
    QLORA_CHECK_CLOSE(doubled, (evaluate<float, Dim<64>>(x * 2.0f)), 0.0, 0.0);
  }

  TEST_CASE("two streams of one GPU are different devices with separate caching pools") {
    const Device s1 = cuda::new_stream_device(), s2 = cuda::new_stream_device();
    CHECK(s1.is_cuda());
    CHECK(s1.index() == s2.index());
    CHECK(!(s1 == s2));
    CHECK(!(s1 == cuda::device()));
    CHECK(cuda::device() == cuda::device());
    CHECK(cuda::device_on(s1.index(), cuda::stream_of(s1)) == s1);
    CHECK(cuda::stream_of(cuda::device()) == nullptr);
    CHECK(s1.str().find("stream") != std::string::npos);
    CHECK(cuda::device().str() == "cuda:0");

    // a block freed by s1's work goes back to s1's pool: s2 gets another block, s1 gets it again
    void* first = nullptr;
    {
      const auto t = Tensor<float, Dyn>::zeros_on(s1, 1 << 20);
      first = t.data();
    }
    const auto on_s2 = Tensor<float, Dyn>::zeros_on(s2, 1 << 20);
    CHECK(static_cast<void*>(on_s2.data()) != first);
    const auto again = Tensor<float, Dyn>::zeros_on(s1, 1 << 20);
    CHECK(static_cast<void*>(again.data()) == first);
    CHECK(s1.memory().reserved_bytes == (4u << 20));  // fresh streams: each pool holds its one block
    CHECK(s2.memory().reserved_bytes == (4u << 20));
  }

  TEST_CASE("ops refuse operands from two streams; to() copies between them") {
    const Device s1 = cuda::new_stream_device(), s2 = cuda::new_stream_device();
    const auto a = test::random_tensor<M>(2, -1, 1, 8, 16), b = test::random_tensor<M>(3, -1, 1, 4, 16);
    CHECK_THROWS_WITH_AS((matmul<N, Tr>(a.to(s1), b.to(s2))), doctest::Contains("different devices"), Error);
    const auto a1 = a.to(s1), a2 = a.to(s2);
    CHECK_THROWS_WITH_AS((evaluate<float, Dyn, Dyn>(a1 + a2, s1)), doctest::Contains("stream"), Error);
    const auto sum = evaluate<float, Dyn, Dyn>(a1 + a2.to(s1), s1);
    QLORA_CHECK_CLOSE(sum, (evaluate<float, Dyn, Dyn>(a + a)), 0.0, 0.0);
  }

  TEST_CASE("a copy between two streams waits for the source's work and holds the source block until it is done") {
    const Device s1 = cuda::new_stream_device(), s2 = cuda::new_stream_device();
    const auto a0 = test::random_tensor<M>(4, -1, 1, 512, 512);
    const auto expected = matmul<N, N>(a0, a0);
    const auto a = a0.to(s1);
    const auto big = test::random_tensor<M>(5, -1, 1, 2048, 2048).to(s1);
    for (int round = 0; round < 4; ++round) {
      CAPTURE(round);
      M busy;
      for (int i = 0; i < 10; ++i) busy = matmul<N, N>(big, big);  // keeps s1 busy for milliseconds
      auto c = matmul<N, N>(a, a);                                  // queued on s1 behind the busy work
      const void* c_block = c.data();
      const auto copy = c.to(s2);                                   // must wait for c
      c = M();                                                      // c's block back to s1's pool ...
      const auto reuse = M::zeros_on(s1, 512, 512);                 // ... and zeroed on s1: must wait for the copy
      CHECK(static_cast<const void*>(reuse.data()) == c_block);     // (the case this test is about)
      QLORA_CHECK_CLOSE(copy, expected, 1e-3, 1e-4);
    }
  }

  TEST_CASE("a block's forward and backward on two streams at once equal the single-stream and CPU results") {
    const BlockInputs in;
    const BlockResult cpu = run_block(in, Device::cpu());
    const BlockResult single = run_block(in, cuda::device());
    check_block(single, cpu, 1e-5, 1e-3);  // fp32 throughout

    const UserStream user;
    const Device streams[2] = {cuda::new_stream_device(), cuda::device_on(0, user.stream)};
    for (int round = 0; round < 3; ++round) {
      CAPTURE(round);
      const auto results = test::run_concurrently(2, [&](int i) { return run_block(in, streams[i]); });
      for (std::size_t i = 0; i < 2; ++i) {
        CAPTURE(i);
        // cuBLAS may pick other GEMM algorithms while two streams are busy: equal up to rounding, not bit for bit
        check_block(results[i], single, 1e-6, 1e-4);
        check_block(results[i], cpu, 1e-5, 1e-3);
      }
    }
  }
}
