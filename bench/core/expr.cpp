// y = a * b + c three ways on [rows, 2048] fp32: the fused expression (one pass, no temporary), the same written with
// a temporary (t = a * b; y = t + c: two passes and an extra buffer), and a hand-written loop (the speed of light).
// Counters: bytes/s of the memory the fused version must move (3 reads + 1 write per element).
#include <benchmark/benchmark.h>

#include <qlora/qlora.hpp>

namespace {
using Mat = qlora::Tensor<float, qlora::Dyn, qlora::Dim<2048>>;

struct Operands {
  Mat a, b, c, y;
  explicit Operands(qlora::index_t rows)
      : a(Mat::full(1.5f, rows)), b(Mat::full(2.0f, rows)), c(Mat::full(0.25f, rows)), y(Mat::zeros(rows)) {}
};

void set_counters(benchmark::State& state, qlora::index_t n) {
  state.SetItemsProcessed(state.iterations() * n);
  state.SetBytesProcessed(state.iterations() * n * 4 * static_cast<int64_t>(sizeof(float)));
}

void BM_expr_fused(benchmark::State& state) {
  Operands o(state.range(0));
  for (auto _ : state) {
    o.y = o.a * o.b + o.c;
    benchmark::DoNotOptimize(o.y.data());
  }
  set_counters(state, o.y.numel());
}

void BM_expr_temporaries(benchmark::State& state) {
  Operands o(state.range(0));
  for (auto _ : state) {
    Mat t = qlora::evaluate<float, qlora::Dyn, qlora::Dim<2048>>(o.a * o.b);  // a new temporary, as eager code makes
    o.y = t + o.c;
    benchmark::DoNotOptimize(o.y.data());
  }
  set_counters(state, o.y.numel());
}

void BM_expr_handwritten_loop(benchmark::State& state) {
  Operands o(state.range(0));
  const qlora::index_t n = o.y.numel();
  for (auto _ : state) {
    const float *a = o.a.data(), *b = o.b.data(), *c = o.c.data();
    float* y = o.y.data();
#pragma omp parallel for schedule(static)
    for (qlora::index_t i = 0; i < n; ++i) y[i] = a[i] * b[i] + c[i];
    benchmark::DoNotOptimize(y);
  }
  set_counters(state, n);
}

void BM_expr_softmax_rows(benchmark::State& state) {
  Operands o(state.range(0));
  for (auto _ : state) {
    o.y = qlora::exp(o.a - qlora::max_rows(o.a));
    benchmark::DoNotOptimize(o.y.data());
  }
  set_counters(state, o.y.numel());
}
}  // namespace

BENCHMARK(BM_expr_fused)->Arg(64)->Arg(1024)->UseRealTime();
BENCHMARK(BM_expr_temporaries)->Arg(64)->Arg(1024)->UseRealTime();
BENCHMARK(BM_expr_handwritten_loop)->Arg(64)->Arg(1024)->UseRealTime();
BENCHMARK(BM_expr_softmax_rows)->Arg(1024)->UseRealTime();
