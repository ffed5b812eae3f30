// Gemma RMSNorm kernels for ops/rmsnorm.hpp (formulas there; the scale is offset + w[c], or 1 without a weight).
// One thread block per row: the threads stride over the columns, the row's sum of squares (forward) or Σ g·x̂
// (backward) goes through block_reduce in the compute type (fp32 for fp32/bf16, fp64 for fp64), and every element is
// rounded once when stored. dw is a second kernel that sums
// dy·x̂ down the rows for a strip of 32 columns per block, in a fixed order, so it is deterministic (no atomics).
#pragma once

#include <algorithm>

#include "../core/dtype.hpp"
#include "check.cuh"
#include "stream.cuh"
#include "reduce.cuh"

namespace qlora::cuda {

struct RmsNormAdd {
  template <class V>
  __device__ V operator()(V a, V b) const { return a + b; }
};

// x, y: [rows, cols], w: [cols] (null: scale 1), rstd: [rows]; d_x, d_w null when not wanted.
template <class T>
struct RmsNormArgs {
  const T* x = nullptr;
  const T* w = nullptr;
  const T* dy = nullptr;
  T* y = nullptr;
  T* dx = nullptr;
  T* dw = nullptr;
  compute_t<T>* rstd_out = nullptr;     // forward writes it
  const compute_t<T>* rstd = nullptr;   // backward reads it
  index_t rows = 0, cols = 0;
  compute_t<T> eps = 0;
  compute_t<T> offset = 1;  // 1: Gemma 3's 1 + w; 0: Gemma 4's w

  __device__ compute_t<T> scale(index_t c) const {
    return w ? offset + convert<compute_t<T>>(w[c]) : compute_t<T>(1);
  }
};

template <class T>
__global__ void rmsnorm_forward_kernel(RmsNormArgs<T> p) {
  using C = compute_t<T>;
  for (index_t r = blockIdx.x; r < p.rows; r += gridDim.x) {
    const T* x = p.x + r * p.cols;
    C ss = 0;
    for (index_t c = threadIdx.x; c < p.cols; c += blockDim.x) {
      const C v = convert<C>(x[c]);
      ss += v * v;
    }
    ss = block_reduce(ss, RmsNormAdd{}, C(0));
    const C s = C(1) / std::sqrt(ss / static_cast<C>(p.cols) + p.eps);
    if (threadIdx.x == 0) p.rstd_out[r] = s;
    for (index_t c = threadIdx.x; c < p.cols; c += blockDim.x)
      p.y[r * p.cols + c] = convert<T>(convert<C>(x[c]) * s * p.scale(c));
  }
}

template <class T>
__global__ void rmsnorm_backward_input_kernel(RmsNormArgs<T> p) {
  using C = compute_t<T>;
  for (index_t r = blockIdx.x; r < p.rows; r += gridDim.x) {
    const T *x = p.x + r * p.cols, *dy = p.dy + r * p.cols;
    const C s = p.rstd[r];
    C dot = 0;
    for (index_t c = threadIdx.x; c < p.cols; c += blockDim.x)
      dot += convert<C>(dy[c]) * p.scale(c) * (convert<C>(x[c]) * s);
    const C m = block_reduce(dot, RmsNormAdd{}, C(0)) / static_cast<C>(p.cols);
    for (index_t c = threadIdx.x; c < p.cols; c += blockDim.x) {
      const C g = convert<C>(dy[c]) * p.scale(c);
      p.dx[r * p.cols + c] = convert<T>(s * (g - convert<C>(x[c]) * s * m));
    }
  }
}

// Block (32, 8): thread (tx, ty) sums rows ty, ty + 8, ... of column 32·blockIdx.x + tx; shared memory adds the 8.
template <class T>
__global__ void rmsnorm_backward_weight_kernel(RmsNormArgs<T> p) {
  using C = compute_t<T>;
  __shared__ C partial[8][33];
  const index_t c = blockIdx.x * index_t{32} + threadIdx.x;
  C acc = 0;
  if (c < p.cols)
    for (index_t r = threadIdx.y; r < p.rows; r += 8)
      acc += convert<C>(p.dy[r * p.cols + c]) * convert<C>(p.x[r * p.cols + c]) * p.rstd[r];
  partial[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < p.cols) {
    C sum = 0;
    for (int i = 0; i < 8; ++i) sum += partial[i][threadIdx.x];
    p.dw[c] = convert<T>(sum);
  }
}

inline int rmsnorm_threads(index_t cols) { return cols >= 2048 ? 512 : (cols >= 512 ? 256 : 128); }
inline unsigned rmsnorm_blocks(index_t rows) { return static_cast<unsigned>(std::min<index_t>(rows, 65535 * 8)); }

template <class T>
void rmsnorm_forward(const T* x, const T* w, T* y, compute_t<T>* rstd, index_t rows, index_t cols, double eps,
                     double offset, const Stream& stream) {
  const DeviceGuard guard(stream.device);
  RmsNormArgs<T> p;
  p.x = x;
  p.w = w;
  p.y = y;
  p.rstd_out = rstd;
  p.rows = rows;
  p.cols = cols;
  p.eps = static_cast<compute_t<T>>(eps);
  p.offset = static_cast<compute_t<T>>(offset);
  rmsnorm_forward_kernel<<<rmsnorm_blocks(rows), rmsnorm_threads(cols), 0, stream.handle>>>(p);
  check(cudaGetLastError(), "rmsnorm", "launching the forward kernel");
}

template <class T>
void rmsnorm_backward(const T* dy, const T* x, const T* w, const compute_t<T>* rstd, T* dx, T* dw, index_t rows,
                      index_t cols, double offset, const Stream& stream) {
  const DeviceGuard guard(stream.device);
  RmsNormArgs<T> p;
  p.x = x;
  p.w = w;
  p.dy = dy;
  p.dx = dx;
  p.dw = dw;
  p.rstd = rstd;
  p.rows = rows;
  p.cols = cols;
  p.offset = static_cast<compute_t<T>>(offset);
  if (dx) {
    rmsnorm_backward_input_kernel<<<rmsnorm_blocks(rows), rmsnorm_threads(cols), 0, stream.handle>>>(p);
    check(cudaGetLastError(), "rmsnorm", "launching the input-gradient kernel");
  }
  if (dw) {
    const auto blocks = static_cast<unsigned>((cols + 31) / 32);
    rmsnorm_backward_weight_kernel<<<blocks, dim3(32, 8), 0, stream.handle>>>(p);
    check(cudaGetLastError(), "rmsnorm", "launching the weight-gradient kernel");
  }
}

}  // namespace qlora::cuda
