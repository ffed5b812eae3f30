// Devices as execution contexts, without a GPU: host memory posing as a GPU on a given stream shows what equality
// means (same memory and stream; the CPU GEMM choice does not count), how devices print, that copies between two
// streams' devices keep the bytes, that expressions refuse operands of another stream, and what an op on a GPU
// tensor says in a translation unit compiled without CUDA (the one dispatch helper, QLORA_ON_CUDA).
#include <doctest/doctest.h>

#include <cstdlib>
#include <cstring>
#include <vector>

#include <qlora/core/expr.hpp>

using namespace qlora;

namespace {
// Host memory reported as GPU 0 on `stream`: enough for the core's copies, fills and checks.
class HostPosingAsGpu final : public Allocator {
 public:
  explicit HostPosingAsGpu(void* stream) : stream_{stream} {}
  DeviceKind kind() const override { return DeviceKind::cuda; }
  StreamHandle stream() const override { return stream_; }
  void* allocate(std::size_t bytes) override {
    count_allocation(bytes);
    return std::malloc(bytes);
  }
  void deallocate(void* ptr, std::size_t bytes) noexcept override {
    std::free(ptr);
    count_deallocation(bytes);
  }
  void fill_zero(void* ptr, std::size_t bytes) override { std::memset(ptr, 0, bytes); }
  void copy_from_host(void* dst, const void* src, std::size_t bytes) override { std::memcpy(dst, src, bytes); }
  void copy_to_host(void* dst, const void* src, std::size_t bytes) override { std::memcpy(dst, src, bytes); }
  void copy_within(void* dst, const void* src, std::size_t bytes) override { std::memcpy(dst, src, bytes); }
  void accumulate(ScalarType, void*, const void*, std::size_t) override { fail("test", "not used"); }

 private:
  StreamHandle stream_;
};

int stream_a = 0, stream_b = 0;  // their addresses stand for two streams
}  // namespace

TEST_SUITE("core") {
  TEST_CASE("devices are equal when they share memory and stream; the CPU GEMM choice does not count") {
    HostPosingAsGpu default_stream(nullptr), a(&stream_a), b(&stream_b);
    CHECK(Device::cpu(CpuGemm::eigen) == Device::cpu());
    CHECK(Device::cpu(CpuGemm::eigen).cpu_gemm() == CpuGemm::eigen);
    CHECK(Device(a) == Device(a));
    CHECK(!(Device(a) == Device(b)));
    CHECK(!(Device(a) == Device(default_stream)));
    CHECK(!(Device(a) == Device::cpu()));
    CHECK(Device(a).stream() == StreamHandle{&stream_a});
    CHECK(Device(a).index() == Device(b).index());
    CHECK(Device(default_stream).str() == "cuda:0");
    CHECK(Device(a).str().rfind("cuda:0 (stream 0x", 0) == 0);
    CHECK(!(Device(a).str() == Device(b).str()));
  }

  TEST_CASE("a tensor copied between two streams' devices keeps its values and takes the target device") {
    HostPosingAsGpu a(&stream_a), b(&stream_b);
    const auto host = Tensor<float, Dim<5>>::from({1, -2, 3.5f, 4, 1e-3f});
    const auto on_a = host.to(Device(a));
    const auto on_b = on_a.to(Device(b));
    CHECK(on_b.device() == Device(b));
    CHECK(on_b.to_vector() == host.to_vector());
  }

  TEST_CASE("an expression refuses an operand on another stream, naming both devices") {
    HostPosingAsGpu a(&stream_a), b(&stream_b);
    const auto x = Tensor<float, Dim<4>>::zeros_on(Device(a)), y = Tensor<float, Dim<4>>::zeros_on(Device(b));
    CHECK_THROWS_WITH_AS((evaluate<float, Dim<4>>(x + y, Device(a))),
                         doctest::Contains("but the expression is evaluated on cuda:0 (stream 0x"), Error);
  }

  TEST_CASE("an op on a GPU tensor in a translation unit compiled without CUDA names the op and the device") {
    HostPosingAsGpu gpu(nullptr);
    auto x = Tensor<float, Dim<4>>::zeros_on(Device(gpu));
    CHECK_THROWS_WITH_AS(x = x + 1.0f,
                         "[expr] tensors are on cuda:0 but this translation unit was compiled without CUDA: compile "
                         "it with nvcc",
                         Error);
  }

  TEST_CASE("a device's spelling names its GPU: cpu, cuda, cuda:N, and nothing else") {
    CHECK(gpu_index_named("cpu") == -1);
    CHECK(gpu_index_named("cuda") == 0);
    CHECK(gpu_index_named("cuda:0") == 0);
    CHECK(gpu_index_named("cuda:12") == 12);
    for (const char* bad : {"", "gpu", "CUDA", "cuda:", "cuda:-1", "cuda:1x", "cuda:+1", "cuda: 1", "cuda:99999999999",
                            "cpu:0", "cudа"})
      CHECK_MESSAGE(!gpu_index_named(bad).has_value(), bad);
  }
}
