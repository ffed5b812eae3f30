// RoPE kernel for ops/rope.hpp (formulas there): one block per token. Its first D/2 threads compute the token's
// cos/sin (fp32 sincos of pos · inv_freq, rounded to the activation dtype as transformers does) into shared memory
// once; then all threads rotate the (i, i + D/2) pairs of every head. inv_freq travels in the kernel arguments
// (RopeFrequencies, at most 256 values), so there is nothing to allocate. inverse = rotate by −angle (backward).
#pragma once

#include <algorithm>
#include <cstdint>

#include "../core/dtype.hpp"
#include "check.cuh"
#include "stream.cuh"

namespace qlora::cuda {

template <class T, class Frequencies>
__global__ void rope_kernel(const T* x, const std::int32_t* positions, Frequencies f, T* out, index_t tokens,
                            index_t heads, bool inverse) {
  using C = compute_t<T>;
  __shared__ C cs[Frequencies::kMaxHalf], sn[Frequencies::kMaxHalf];
  const index_t half = f.half, d = 2 * half;
  for (index_t t = blockIdx.x; t < tokens; t += gridDim.x) {
    __syncthreads();  // the previous token's tables are no longer read
    const C pos = static_cast<C>(positions[t]);
    for (index_t i = threadIdx.x; i < half; i += blockDim.x) {
      const C angle = pos * f.inv_freq[i];
      cs[i] = convert<C>(convert<T>(std::cos(angle)));
      const C s = convert<C>(convert<T>(std::sin(angle)));
      sn[i] = inverse ? -s : s;
    }
    __syncthreads();
    for (index_t k = threadIdx.x; k < heads * half; k += blockDim.x) {
      const index_t h = k / half, i = k % half;
      const T* xr = x + (t * heads + h) * d;
      T* o = out + (t * heads + h) * d;
      const C x1 = convert<C>(xr[i]), x2 = convert<C>(xr[i + half]);
      o[i] = convert<T>(convert<C>(convert<T>(x1 * cs[i])) - convert<C>(convert<T>(x2 * sn[i])));
      o[i + half] = convert<T>(convert<C>(convert<T>(x2 * cs[i])) + convert<C>(convert<T>(x1 * sn[i])));
    }
  }
}

// x, out: [tokens, heads, 2·f.half], positions: [tokens].
template <class T, class Frequencies>
void rope_apply(const T* x, const std::int32_t* positions, const Frequencies& f, T* out, index_t tokens,
                index_t heads, bool inverse, const Stream& stream) {
  const DeviceGuard guard(stream.device);
  const auto blocks = static_cast<unsigned>(std::min<index_t>(tokens, 65535 * 8));
  const int threads = heads * f.half >= 512 ? 256 : 128;
  rope_kernel<<<blocks, threads, 0, stream.handle>>>(x, positions, f, out, tokens, heads, inverse);
  check(cudaGetLastError(), "rope", "launching the rotation kernel");
}

}  // namespace qlora::cuda
