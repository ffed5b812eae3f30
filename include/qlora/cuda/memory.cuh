// CUDA devices for qlora tensors: a caching allocator per GPU and the `cuda::device(i)` that tensors are placed on.
//
// cudaMalloc/cudaFree synchronise the device and are slow, so freed blocks are kept in size-class free lists and
// reused (the idea of PyTorch's caching allocator, much simplified: sizes round up to 512 bytes below 1 MiB and to
// 2 MiB above; no block splitting). Stats: current = bytes handed out, peak = its maximum, reserved = bytes held
// from the driver. empty_cache() returns cached blocks to the driver.
#pragma once

#include <cuda_runtime.h>

#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "../core/device.hpp"
#include "check.cuh"

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
void launch_accumulate(void* dst, const void* src, std::size_t n) {
  const unsigned blocks = static_cast<unsigned>(std::min<std::size_t>((n + 255) / 256, 4096));
  accumulate_kernel<<<blocks, 256>>>(static_cast<T*>(dst), static_cast<const T*>(src), n);
  check(cudaGetLastError(), "memory", "launching the gradient accumulation kernel");
}
}  // namespace detail

// What every CUDA allocator does the same way: copies (cudaMemcpyDefault works for device and managed memory),
// zero-fill, gradient accumulation and synchronisation on GPU `device`.
class CudaAllocatorBase : public Allocator {
 public:
  explicit CudaAllocatorBase(int device) : device_(device) {}
  DeviceKind kind() const override { return DeviceKind::cuda; }
  int index() const override { return device_; }
  void fill_zero(void* ptr, std::size_t bytes) override { check(cudaMemset(ptr, 0, bytes), "memory", "cudaMemset"); }
  void copy_from_host(void* dst, const void* src, std::size_t bytes) override {
    check(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault), "memory", "copy host to device");
  }
  void copy_to_host(void* dst, const void* src, std::size_t bytes) override {
    check(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault), "memory", "copy device to host");
  }
  void copy_within(void* dst, const void* src, std::size_t bytes) override {
    check(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault), "memory", "copy device to device");
  }
  void accumulate(ScalarType type, void* dst, const void* src, std::size_t n) override {
    switch (type) {
      case ScalarType::f32: return detail::launch_accumulate<float>(dst, src, n);
      case ScalarType::f64: return detail::launch_accumulate<double>(dst, src, n);
      case ScalarType::bf16: return detail::launch_accumulate<bf16>(dst, src, n);
      default: fail("memory", "accumulate: unsupported element type");
    }
  }
  void synchronize() override { check(cudaDeviceSynchronize(), "memory", "cudaDeviceSynchronize"); }

 protected:
  int device_;
};

class CachingAllocator final : public CudaAllocatorBase {
 public:
  explicit CachingAllocator(int device) : CudaAllocatorBase(device) {}
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
      check(cudaSetDevice(device_), "memory", "selecting the device");
      const cudaError_t status = cudaMalloc(&p, size);
      if (status == cudaErrorMemoryAllocation) {
        cudaGetLastError();
        release_cached();  // give the cache back and try once more
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

// CUDA managed ("unified") memory on GPU `index`: pages migrate between host and device on demand, so buffers that
// are large and rarely touched (the paged optimizers' states) can live beyond the GPU's memory. Not cached; counted
// like device memory. Prefetched to the device when allocated.
class ManagedAllocator final : public CudaAllocatorBase {
 public:
  explicit ManagedAllocator(int device) : CudaAllocatorBase(device) {}
  void* allocate(std::size_t bytes) override {
    void* p = nullptr;
    check(cudaMallocManaged(&p, std::max<std::size_t>(bytes, 1)), "memory", "cudaMallocManaged");
    cudaMemLocation location{};
    location.type = cudaMemLocationTypeDevice;
    location.id = device_;
    cudaMemPrefetchAsync(p, std::max<std::size_t>(bytes, 1), location, 0, nullptr);  // a hint: failure is harmless
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
// One allocator of type A per visible GPU, made on first use and kept for the whole program.
template <class A>
Device device_of(int index) {
  static std::mutex mutex;
  static std::vector<std::unique_ptr<A>> allocators;
  std::lock_guard<std::mutex> lock(mutex);
  const int count = device_count();
  if (index < 0 || index >= count) fail("cuda", "no GPU cuda:", index, " (", count, " visible)");
  if (allocators.size() < static_cast<std::size_t>(count)) allocators.resize(static_cast<std::size_t>(count));
  auto& slot = allocators[static_cast<std::size_t>(index)];
  if (!slot) slot = std::make_unique<A>(index);
  return Device(*slot);
}
}  // namespace detail

// The Device of managed memory on GPU `index`.
inline Device managed_device(int index = 0) { return detail::device_of<ManagedAllocator>(index); }

// The Device of GPU `index` (its caching allocator lives for the whole program).
inline Device device(int index = 0) { return detail::device_of<CachingAllocator>(index); }

}  // namespace qlora::cuda
