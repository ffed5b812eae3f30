// Where memory lives, who hands it out and where work on it runs. A `Device` is the `Allocator` that owns its memory
// plus the execution context of the work on it: a CUDA device is a GPU index and a stream (its allocator is the
// caching pool of that pair, cuda/memory.cuh), a CPU device carries the CPU GEMM backend (ops/matmul.hpp).
// Allocators count the bytes currently handed out and the peak, so tests and benchmarks can report memory (the CPU
// allocator counts tensor storage only, not the whole process RSS).
//
// The core never calls CUDA itself: moving bytes to and from a device goes through the allocator's virtual interface,
// which `cuda/memory.cuh` implements, and the stream is an opaque handle here. So this header compiles with any C++20
// compiler.
#pragma once

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <optional>
#include <ostream>
#include <sstream>
#include <string>
#include <string_view>

#include "dtype.hpp"
#include "error.hpp"

namespace qlora {

enum class DeviceKind { cpu, cuda };

// The GEMM a CPU device runs matmul with (ops/matmul.hpp): Eigen's (the reference, always there), oneDNN's in fp32,
// or oneDNN's with bf16 operands and fp32 accumulation (ops/matmul_onednn.hpp; builds with oneDNN, the bf16 one only
// on CPUs with bf16 units). cpu_gemm_available() says what this build and this CPU offer.
enum class CpuGemm { eigen, onednn, onednn_bf16 };
inline constexpr CpuGemm all_cpu_gemms[] = {CpuGemm::eigen, CpuGemm::onednn, CpuGemm::onednn_bf16};

// The math of a GPU device's fp32 GEMMs (ops/matmul.hpp and the fused LM head): cuBLAS in fp32 (the reference), or on
// the tensor cores with the operands rounded to bf16 and fp32 accumulation (CUBLAS_COMPUTE_32F_FAST_16BF) — the GPU's
// counterpart of CpuGemm::onednn_bf16: activations, weights and gradients stay fp32 in memory.
enum class GpuGemm { fp32, bf16 };

// A CUDA stream named without CUDA headers: cudaStream_t is a pointer to an opaque driver struct, so the core keeps
// it as void* and cuda/stream.cuh converts. The null handle is the GPU's default stream.
struct StreamHandle {
  void* value = nullptr;
  friend bool operator==(const StreamHandle&, const StreamHandle&) = default;
};

struct MemoryStats {
  std::size_t current_bytes = 0;  // handed out and not yet returned
  std::size_t peak_bytes = 0;     // maximum of current_bytes since the last reset
  std::size_t reserved_bytes = 0; // held from the system (≥ current for caching allocators)
  std::size_t allocations = 0;    // calls to allocate()
};

class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual DeviceKind kind() const = 0;
  virtual int index() const { return 0; }
  // The stream this allocator's memory is used on, and its copies and fills run on (null on the CPU).
  virtual StreamHandle stream() const { return {}; }
  virtual void* allocate(std::size_t bytes) = 0;
  virtual void deallocate(void* ptr, std::size_t bytes) noexcept = 0;
  // Fills, copies into device memory and accumulation are queued on the allocator's stream (CUDA: they may still be
  // running on return); copy_from_host returns when the host may reuse `src`, copy_to_host when `dst` holds the
  // bytes (the one place where the host waits for the stream).
  virtual void fill_zero(void* ptr, std::size_t bytes) = 0;
  virtual void copy_from_host(void* dst, const void* src, std::size_t bytes) = 0;
  virtual void copy_to_host(void* dst, const void* src, std::size_t bytes) = 0;
  virtual void copy_within(void* dst, const void* src, std::size_t bytes) = 0;
  // Copies from memory of another allocator of the same kind and index (another stream's pool on the same GPU),
  // ordered after the source's queued work and before its later work; false when it cannot (the caller then goes
  // through the host).
  virtual bool copy_from_peer(void* /*dst*/, const Allocator& /*src_allocator*/, const void* /*src*/,
                              std::size_t /*bytes*/) {
    return false;
  }
  // dst[i] += src[i] for n elements of `type` (gradient accumulation; f32, f64 and bf16).
  virtual void accumulate(ScalarType type, void* dst, const void* src, std::size_t n) = 0;
  // Waits for the work queued on this allocator's stream (a no-op on the CPU).
  virtual void synchronize() {}

  MemoryStats stats() const {
    return {current_.load(), peak_.load(), reserved_.load(), allocations_.load()};
  }
  // Starts a new peak measurement from the current usage.
  void reset_peak() { peak_.store(current_.load()); }

 protected:
  void count_allocation(std::size_t bytes) {
    const std::size_t now = current_.fetch_add(bytes) + bytes;
    std::size_t peak = peak_.load();
    while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
    }
    allocations_.fetch_add(1);
  }
  void count_deallocation(std::size_t bytes) { current_.fetch_sub(bytes); }
  void set_reserved(std::size_t bytes) { reserved_.store(bytes); }

 private:
  std::atomic<std::size_t> current_{0}, peak_{0}, reserved_{0}, allocations_{0};
};

// 64-byte aligned host memory (a cache line, and the widest AVX-512 load). Freed blocks of 1 MiB and more are kept
// for the next request of the same rounded size, up to kCacheLimit bytes in all: a training step allocates the same
// large shapes every time (dequantized weights, activations), and fresh memory from the system costs a page fault
// per 4 KiB (the C library maps blocks above 32 MiB anew on every call). current_bytes counts live tensors only;
// reserved_bytes adds the cached blocks. release_cached() hands them back to the system.
class CpuAllocator final : public Allocator {
 public:
  static constexpr std::size_t alignment = 64;
  static constexpr std::size_t kCacheMinBlock = std::size_t{1} << 20;  // smaller blocks go straight to malloc
  static constexpr std::size_t kCacheLimit = std::size_t{512} << 20;   // cached bytes at most

  DeviceKind kind() const override { return DeviceKind::cpu; }
  void* allocate(std::size_t bytes) override {
    const std::size_t rounded = round(bytes);
    void* p = rounded >= kCacheMinBlock ? take_cached(rounded) : nullptr;
    if (!p) p = std::aligned_alloc(alignment, rounded);
    if (!p) {  // the cache may hold what the system lacks
      release_cached();
      p = std::aligned_alloc(alignment, rounded);
    }
    if (!p) fail("memory", "out of host memory allocating ", bytes, " bytes");
    count_allocation(bytes);
    update_reserved();
    return p;
  }
  void deallocate(void* ptr, std::size_t bytes) noexcept override {
    const std::size_t rounded = round(bytes);
    if (rounded < kCacheMinBlock || !keep_cached(ptr, rounded)) std::free(ptr);
    count_deallocation(bytes);
    update_reserved();
  }
  // Frees every cached block.
  void release_cached() noexcept {
    {
      std::lock_guard<std::mutex> lock(cache_mutex_);
      for (const auto& [size, p] : cache_) std::free(p);
      cache_.clear();
      cached_bytes_ = 0;
    }
    update_reserved();
  }
  std::size_t cached_bytes() const { return cached_bytes_.load(); }
  void fill_zero(void* ptr, std::size_t bytes) override { std::memset(ptr, 0, bytes); }
  void copy_from_host(void* dst, const void* src, std::size_t bytes) override { std::memcpy(dst, src, bytes); }
  void copy_to_host(void* dst, const void* src, std::size_t bytes) override { std::memcpy(dst, src, bytes); }
  void copy_within(void* dst, const void* src, std::size_t bytes) override { std::memcpy(dst, src, bytes); }
  void accumulate(ScalarType type, void* dst, const void* src, std::size_t n) override {
    switch (type) {
      case ScalarType::f32: return add_into(static_cast<float*>(dst), static_cast<const float*>(src), n);
      case ScalarType::f64: return add_into(static_cast<double*>(dst), static_cast<const double*>(src), n);
      case ScalarType::bf16: return add_into(static_cast<bf16*>(dst), static_cast<const bf16*>(src), n);
      default: fail("memory", "accumulate: unsupported element type");
    }
  }

 private:
  static std::size_t round(std::size_t bytes) {
    return std::max<std::size_t>(alignment, (bytes + alignment - 1) / alignment * alignment);
  }
  void* take_cached(std::size_t rounded) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    const auto it = cache_.find(rounded);
    if (it == cache_.end()) return nullptr;
    void* p = it->second;
    cache_.erase(it);
    cached_bytes_ -= rounded;
    return p;
  }
  bool keep_cached(void* p, std::size_t rounded) noexcept {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cached_bytes_.load() + rounded > kCacheLimit) return false;
    try {
      cache_.emplace(rounded, p);
    } catch (...) {
      return false;
    }
    cached_bytes_ += rounded;
    return true;
  }
  void update_reserved() { set_reserved(stats().current_bytes + cached_bytes()); }

  std::mutex cache_mutex_;
  std::multimap<std::size_t, void*> cache_;  // rounded size -> free block
  std::atomic<std::size_t> cached_bytes_{0};  // changed under cache_mutex_, read without it

  template <class T>
  static void add_into(T* dst, const T* src, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) dst[i] = convert<T>(convert<float>(dst[i]) + convert<float>(src[i]));
  }
  static void add_into(double* dst, const double* src, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) dst[i] += src[i];
  }
};

// The process's host allocator (one instance, so its statistics cover every CPU tensor).
inline CpuAllocator& cpu_allocator() {
  // Never destroyed: tensors held by other static objects may still free into it while the program exits.
  static CpuAllocator* const allocator = new CpuAllocator;
  return *allocator;
}

// The GPU a device's spelling names, as the programs' --device takes it: "cpu" -1, "cuda" 0, "cuda:N" N; nothing
// for any other text.
inline std::optional<int> gpu_index_named(std::string_view text) {
  if (text == "cpu") return -1;
  if (text == "cuda") return 0;
  if (text.substr(0, 5) != "cuda:" || text.size() == 5) return std::nullopt;
  int index = -1;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data() + 5, end, index);
  if (ec != std::errc() || ptr != end || index < 0) return std::nullopt;
  return index;
}

// An allocator and the execution context of the work on its memory.
//
// Equality: two devices are equal when they share the allocator — the same memory *and*, for CUDA, the same stream
// (a CUDA allocator is the pool of one (GPU, stream) pair). Ops require their operands to be on equal devices and
// launch on that stream, so work on equal devices is ordered without synchronisation. Two streams of one GPU are
// different devices: a kernel on one stream reading a tensor that the other stream may still be writing would race,
// so ops refuse to mix them, and `t.to(other)` copies on the GPU, ordered after the source stream's work (never
// through the host). The CPU GEMM backend does not take part: CPU work is synchronous, so every CPU device is equal.
class Device {
 public:
  Device() : allocator_(&cpu_allocator()) {}
  explicit Device(Allocator& allocator) : allocator_(&allocator) {}
  static Device cpu(CpuGemm gemm = CpuGemm::eigen) {
    Device d;
    d.cpu_gemm_ = gemm;
    return d;
  }

  DeviceKind kind() const { return allocator_->kind(); }
  int index() const { return allocator_->index(); }
  bool is_cpu() const { return kind() == DeviceKind::cpu; }
  bool is_cuda() const { return kind() == DeviceKind::cuda; }
  StreamHandle stream() const { return allocator_->stream(); }
  CpuGemm cpu_gemm() const { return cpu_gemm_; }
  GpuGemm gpu_gemm() const { return gpu_gemm_; }
  // This device with its GPU GEMMs in `g` (tensors made on it carry the choice to the ops that read them).
  Device with_gpu_gemm(GpuGemm g) const {
    Device d = *this;
    d.gpu_gemm_ = g;
    return d;
  }
  // Same memory and the same GEMM settings: a tensor on one serves the other as it is.
  bool same_settings(const Device& other) const {
    return *this == other && cpu_gemm_ == other.cpu_gemm_ && gpu_gemm_ == other.gpu_gemm_;
  }
  Allocator& allocator() const { return *allocator_; }
  MemoryStats memory() const { return allocator_->stats(); }

  // "cpu", "cuda:0" (default stream) or "cuda:0 (stream 0x...)".
  std::string str() const {
    if (is_cpu()) return "cpu";
    std::ostringstream os;
    os << "cuda:" << index();
    if (stream().value) os << " (stream " << stream().value << ")";
    return os.str();
  }
  friend bool operator==(const Device& a, const Device& b) { return a.allocator_ == b.allocator_; }
  friend std::ostream& operator<<(std::ostream& os, const Device& d) { return os << d.str(); }

 private:
  Allocator* allocator_;
  CpuGemm cpu_gemm_ = CpuGemm::eigen;
  GpuGemm gpu_gemm_ = GpuGemm::fp32;
};

// Bytes on one device, freed by the allocator that made them when the last Tensor view lets go.
class Storage {
 public:
  Storage(Device device, std::size_t bytes) : device_(device), bytes_(bytes) {
    ptr_ = bytes ? device_.allocator().allocate(bytes) : nullptr;
  }
  ~Storage() {
    if (ptr_) device_.allocator().deallocate(ptr_, bytes_);
  }
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return ptr_; }
  std::size_t bytes() const { return bytes_; }
  const Device& device() const { return device_; }

 private:
  Device device_;
  std::size_t bytes_;
  void* ptr_ = nullptr;
};

// Copies `bytes` between any two devices: on the GPU between two streams of one GPU (ordered with both streams'
// work), through the host between two GPUs.
inline void copy_bytes(const Device& dst_device, void* dst, const Device& src_device, const void* src,
                       std::size_t bytes) {
  if (bytes == 0) return;
  if (src_device.is_cpu()) {
    dst_device.allocator().copy_from_host(dst, src, bytes);
  } else if (dst_device.is_cpu()) {
    src_device.allocator().copy_to_host(dst, src, bytes);
  } else if (dst_device == src_device) {
    dst_device.allocator().copy_within(dst, src, bytes);
  } else if (dst_device.allocator().copy_from_peer(dst, src_device.allocator(), src, bytes)) {
    return;
  } else {
    Storage staging(Device::cpu(), bytes);
    src_device.allocator().copy_to_host(staging.data(), src, bytes);
    dst_device.allocator().copy_from_host(dst, staging.data(), bytes);
  }
}

}  // namespace qlora
