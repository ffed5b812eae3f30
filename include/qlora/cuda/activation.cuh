// Fused GeGLU kernels for ops/activation.hpp: one grid-stride pass reads gate and up and writes
// gelu_tanh(gate) · up (forward), or reads gate, up and dy and writes d_gate and/or d_up (backward). The per-element
// arithmetic is ops/activation.hpp's geglu_from / geglu_backward_from (through geglu_element(_backward)), which the
// CPU loops call too, so both round alike.
#pragma once

#include <algorithm>

#include "../core/dtype.hpp"
#include "check.cuh"
#include "stream.cuh"

namespace qlora::cuda {

template <class T>
__global__ void geglu_forward_kernel(const T* gate, const T* up, T* out, index_t n) {
  for (index_t i = blockIdx.x * index_t{blockDim.x} + threadIdx.x; i < n; i += index_t{gridDim.x} * blockDim.x)
    out[i] = geglu_element(gate[i], up[i]);
}

template <class T>
__global__ void geglu_backward_kernel(const T* gate, const T* up, const T* dy, T* d_gate, T* d_up, index_t n) {
  for (index_t i = blockIdx.x * index_t{blockDim.x} + threadIdx.x; i < n; i += index_t{gridDim.x} * blockDim.x)
    geglu_element_backward(gate[i], up[i], dy[i], d_gate ? d_gate + i : nullptr, d_up ? d_up + i : nullptr);
}

inline unsigned geglu_blocks(index_t n) { return static_cast<unsigned>(std::min<index_t>((n + 255) / 256, 65535 * 4)); }

// gate, up, out: [n].
template <class T>
void geglu_forward(const T* gate, const T* up, T* out, index_t n, const Stream& stream) {
  const DeviceGuard guard(stream.device);
  geglu_forward_kernel<<<geglu_blocks(n), 256, 0, stream.handle>>>(gate, up, out, n);
  check(cudaGetLastError(), "geglu", "launching the forward kernel");
}

// d_gate, d_up: [n], either may be null.
template <class T>
void geglu_backward(const T* gate, const T* up, const T* dy, T* d_gate, T* d_up, index_t n, const Stream& stream) {
  const DeviceGuard guard(stream.device);
  geglu_backward_kernel<<<geglu_blocks(n), 256, 0, stream.handle>>>(gate, up, dy, d_gate, d_up, n);
  check(cudaGetLastError(), "geglu", "launching the backward kernel");
}

}  // namespace qlora::cuda
