// CUDA devices for qlora tensors: a caching allocator per (GPU, stream) and the devices tensors are placed on —
// `cuda::device(i)` (GPU i, its default stream), `cuda::new_stream_device(i)` (a new stream of GPU i, kept by qlora)
// and `cuda::device_on(i, stream)` (a stream the caller owns).
//
// cudaMalloc/cudaFree synchronise the device and are slow, so freed blocks are kept in size-class free lists and
// reused (the idea of PyTorch's caching allocator, much simplified: sizes round up to 512 bytes below 1 MiB and to
// 2 MiB above; no block splitting). Stats: current = bytes handed out, peak = its maximum, reserved = bytes held
// from the driver. empty_cache() returns cached blocks to the driver.
//
// One pool per (GPU, stream): a block is freed when the host drops its last tensor, while kernels queued on its
// stream may still read or write it. Handing it out again on the same stream is safe — the next user's work is queued
// after that work — but on another stream it would race. So every stream has its own pool, its copies and fills run
// on that stream, and a copy between two streams of one GPU (copy_from_peer) makes each stream wait for the other.
// Pools live until the program ends (tensors hold their Device), so make a few streams and keep them, not one per step.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "../core/device.hpp"
#include "check.cuh"
#include "stream.cuh"

namespace qlora::cuda {

// Number of visible GPUs; 0 when there is no driver or no device (never throws).
inline int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return n;
}
inline bool available() { return device_count() > 0; }

namespace detail {
template <class T>
__global__ void accumulate_kernel(T* dst, const T* src, std::size_t n) {
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < n; i += std::size_t{gridDim.x} * blockDim.x)
    dst[i] = convert<T>(convert<compute_t<T>>(dst[i]) + convert<compute_t<T>>(src[i]));
}
template <class T>
void launch_accumulate(void* dst, const void* src, std::size_t n, const Stream& stream) {
  if (n == 0) return;
  const DeviceGuard guard(stream.device);
  const unsigned blocks = static_cast<unsigned>(std::min<std::size_t>((n + 255) / 256, 4096));
  accumulate_kernel<<<blocks, 256, 0, stream.handle>>>(static_cast<T*>(dst), static_cast<const T*>(src), n);
  check(cudaGetLastError(), "memory", "launching the gradient accumulation kernel");
}

// True when `p` is ordinary (pageable) host memory: cudaMemcpyAsync from it has staged the bytes when it returns.
inline bool pageable_host_memory(const void* p) {
  cudaPointerAttributes attributes{};
  if (cudaPointerGetAttributes(&attributes, p) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return attributes.type == cudaMemoryTypeUnregistered;
}
}  // namespace detail

// What every CUDA allocator does the same way, on its GPU and stream: copies (cudaMemcpyDefault works for device and
// managed memory), zero-fill, gradient accumulation and synchronisation.
class CudaAllocatorBase : public Allocator {
 public:
  CudaAllocatorBase(int device, cudaStream_t stream) : device_(device), stream_(stream) {}
  DeviceKind kind() const override { return DeviceKind::cuda; }
  int index() const override { return device_; }
  StreamHandle stream() const override { return to_handle(stream_); }
  Stream launch_stream() const { return Stream(device_, stream_); }

  void fill_zero(void* ptr, std::size_t bytes) override {
    const DeviceGuard guard(device_);
    check(cudaMemsetAsync(ptr, 0, bytes, stream_), "memory", "cudaMemsetAsync");
  }
  // Pageable host memory is staged when cudaMemcpyAsync returns; pinned or managed memory is read by the copy
  // itself, so the host waits before the caller may reuse it.
  void copy_from_host(void* dst, const void* src, std::size_t bytes) override {
    const DeviceGuard guard(device_);
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream_), "memory", "copy host to device");
    if (!detail::pageable_host_memory(src)) check(cudaStreamSynchronize(stream_), "memory", "cudaStreamSynchronize");
  }
  void copy_to_host(void* dst, const void* src, std::size_t bytes) override {
    const DeviceGuard guard(device_);
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream_), "memory", "copy device to host");
    check(cudaStreamSynchronize(stream_), "memory", "cudaStreamSynchronize");  // the host reads dst next
  }
  void copy_within(void* dst, const void* src, std::size_t bytes) override {
    const DeviceGuard guard(device_);
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream_), "memory", "copy device to device");
  }
  // Another stream's memory on this GPU: this stream waits for the source's queued work, copies, and the source's
  // stream waits for the copy (its pool may hand the source block out again as soon as the host frees it).
  bool copy_from_peer(void* dst, const Allocator& src_allocator, const void* src, std::size_t bytes) override {
    const auto* source = dynamic_cast<const CudaAllocatorBase*>(&src_allocator);
    if (!source || source->device_ != device_) return false;  // another GPU: through the host
    stream_wait(launch_stream(), source->launch_stream());
    copy_within(dst, src, bytes);
    stream_wait(source->launch_stream(), launch_stream());
    return true;
  }
  void accumulate(ScalarType type, void* dst, const void* src, std::size_t n) override {
    switch (type) {
      case ScalarType::f32: return detail::launch_accumulate<float>(dst, src, n, launch_stream());
      case ScalarType::f64: return detail::launch_accumulate<double>(dst, src, n, launch_stream());
      case ScalarType::bf16: return detail::launch_accumulate<bf16>(dst, src, n, launch_stream());
      default: fail("memory", "accumulate: unsupported element type");
    }
  }
  void synchronize() override { cuda::synchronize(launch_stream()); }

 protected:
  int device_;
  cudaStream_t stream_;
};

// The caching pool of one (GPU, stream) pair.
class CachingAllocator final : public CudaAllocatorBase {
 public:
  CachingAllocator(int device, cudaStream_t stream) : CudaAllocatorBase(device, stream) {}
  ~CachingAllocator() override { empty_cache(); }

  void* allocate(std::size_t bytes) override {
    const std::size_t size = round_size(bytes);
    std::lock_guard<std::mutex> lock(mutex_);
    void* p = nullptr;
    auto& bucket = free_[size];
    if (!bucket.empty()) {
      p = bucket.back();
      bucket.pop_back();
    } else {
      const DeviceGuard guard(device_);
      const cudaError_t status = cudaMalloc(&p, size);
      if (status == cudaErrorMemoryAllocation) {
        cudaGetLastError();
        release_cached();  // give this pool's cache back and try once more (other streams' pools keep theirs)
        if (cudaMalloc(&p, size) != cudaSuccess) {
          cudaGetLastError();
          fail("memory", "out of GPU memory on cuda:", device_, " allocating ", bytes, " bytes (",
               stats().current_bytes, " bytes in use, ", reserved_, " reserved)");
        }
      } else {
        check(status, "memory", "cudaMalloc");
      }
      reserved_ += size;
      set_reserved(reserved_);
    }
    count_allocation(size);
    return p;
  }
  void deallocate(void* ptr, std::size_t bytes) noexcept override {
    const std::size_t size = round_size(bytes);
    std::lock_guard<std::mutex> lock(mutex_);
    free_[size].push_back(ptr);
    count_deallocation(size);
  }
  // Returns every cached (free) block to the driver.
  void empty_cache() {
    std::lock_guard<std::mutex> lock(mutex_);
    release_cached();
  }

  static std::size_t round_size(std::size_t bytes) {
    constexpr std::size_t small = 512, large = 2u << 20;
    const std::size_t unit = bytes < (1u << 20) ? small : large;
    return std::max<std::size_t>(unit, (bytes + unit - 1) / unit * unit);
  }

 private:
  // cudaFree needs no current device (unified addressing) and runs from the destructor: no guard, which could throw.
  void release_cached() {
    for (auto& [size, blocks] : free_) {
      for (void* p : blocks) {
        cudaFree(p);
        reserved_ -= size;
      }
      blocks.clear();
    }
    set_reserved(reserved_);
  }

  std::mutex mutex_;
  std::map<std::size_t, std::vector<void*>> free_;
  std::size_t reserved_ = 0;
};

// CUDA managed ("unified") memory on GPU `index`, used on one stream: pages migrate between host and device on
// demand, so buffers that are large and rarely touched (the paged optimizers' states) can live beyond the GPU's
// memory. Not cached; counted like device memory. Prefetched to the device, on the stream, when allocated.
class ManagedAllocator final : public CudaAllocatorBase {
 public:
  ManagedAllocator(int device, cudaStream_t stream) : CudaAllocatorBase(device, stream) {}
  void* allocate(std::size_t bytes) override {
    const DeviceGuard guard(device_);
    void* p = nullptr;
    check(cudaMallocManaged(&p, std::max<std::size_t>(bytes, 1)), "memory", "cudaMallocManaged");
    cudaMemLocation location{};
    location.type = cudaMemLocationTypeDevice;
    location.id = device_;
    cudaMemPrefetchAsync(p, std::max<std::size_t>(bytes, 1), location, 0, stream_);  // a hint: failure is harmless
    cudaGetLastError();
    count_allocation(bytes);
    return p;
  }
  void deallocate(void* ptr, std::size_t bytes) noexcept override {
    cudaFree(ptr);
    count_deallocation(bytes);
  }
};

namespace detail {
inline void require_gpu(int index) {
  const int count = device_count();
  if (index < 0 || index >= count) fail("cuda", "no GPU cuda:", index, " (", count, " visible)");
}

// One allocator of type A per (GPU, stream), made on first use and kept for the whole program.
template <class A>
Device device_of(int index, cudaStream_t stream) {
  static std::mutex mutex;
  static std::map<std::pair<int, std::uintptr_t>, std::unique_ptr<A>> allocators;
  std::lock_guard<std::mutex> lock(mutex);
  require_gpu(index);
  auto& slot = allocators[{index, reinterpret_cast<std::uintptr_t>(stream)}];
  if (!slot) slot = std::make_unique<A>(index, stream);
  return Device(*slot);
}

// A stream made by qlora (non-blocking: it does not wait for the legacy default stream), destroyed at exit.
class OwnedStream {
 public:
  explicit OwnedStream(int device) {
    const DeviceGuard guard(device);
    check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cuda", "cudaStreamCreateWithFlags");
  }
  ~OwnedStream() { cudaStreamDestroy(stream_); }
  OwnedStream(const OwnedStream&) = delete;
  OwnedStream& operator=(const OwnedStream&) = delete;
  cudaStream_t get() const { return stream_; }

 private:
  cudaStream_t stream_{};
};
}  // namespace detail

// GPU `index` on its default stream (CUDA's null stream): the device tensors are placed on unless told otherwise.
inline Device device(int index = 0) { return detail::device_of<CachingAllocator>(index, nullptr); }

// GPU `index` on `stream`, which the caller owns and keeps alive as long as any tensor or Device on it.
inline Device device_on(int index, cudaStream_t stream) { return detail::device_of<CachingAllocator>(index, stream); }

// GPU `index` on a new stream that qlora makes and keeps (with its pool) until the program ends; each call makes one.
inline Device new_stream_device(int index = 0) {
  static std::mutex mutex;
  static std::vector<std::unique_ptr<detail::OwnedStream>> streams;
  cudaStream_t stream = nullptr;
  {
    std::lock_guard<std::mutex> lock(mutex);
    detail::require_gpu(index);
    streams.push_back(std::make_unique<detail::OwnedStream>(index));
    stream = streams.back()->get();
  }
  return device_on(index, stream);
}

// The cudaStream_t a CUDA device's work runs on.
inline cudaStream_t stream_of(const Device& device) { return Stream(device).handle; }

// Managed memory on GPU `index` (default stream), or on the GPU and stream of `like`.
inline Device managed_device(int index = 0) { return detail::device_of<ManagedAllocator>(index, nullptr); }
inline Device managed_device(const Device& like) {
  const Stream s(like);
  return detail::device_of<ManagedAllocator>(s.device, s.handle);
}

}  // namespace qlora::cuda
