// One decoded token's products (ops/packed_gemv.hpp) at the projections of Gemma 3 270M, 1B and 4B and at the 270M's
// LM head: the fp32 GEMM with one row (what DecodeKernel::fp32 runs) against packed_gemv over NF4 and Q8_0 blocks on
// the CPU's kernel (its input's int8 rounding included). Decoding is memory-bound, so the counter is the weight bytes
// read per second (bytes_per_second); the label says which packed kernel ran.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "../shapes.hpp"

#include <qlora/ops/matmul.hpp>
#include <qlora/ops/packed_gemv.hpp>

namespace {
using qlora::Dyn;
using qlora::index_t;
using qlora::Tensor;
using M = Tensor<float, Dyn, Dyn>;

M decode_ramp(index_t r, index_t c) {
  M t = M::zeros(r, c);
  for (index_t i = 0; i < t.numel(); ++i) t.data()[i] = static_cast<float>((i * 7919) % 1000) * 1e-3f - 0.5f;
  return t;
}

// y[1, out] = x[1, in] · W[out, in]ᵀ in fp32 (the training GEMM with one row).
void BM_decode_gemv_fp32(benchmark::State& state) {
  const auto in = state.range(0), out = state.range(1);
  const M x = decode_ramp(1, in), w = decode_ramp(out, in);
  for (auto _ : state)
    benchmark::DoNotOptimize(qlora::matmul<qlora::Transpose::no, qlora::Transpose::yes>(x, w).data());
  state.SetBytesProcessed(state.iterations() * out * in * static_cast<std::int64_t>(sizeof(float)));
}

void packed_gemv_bench(benchmark::State& state, qlora::PackedFormat format) {
  const auto in = state.range(0), out = state.range(1);
  const M x = decode_ramp(1, in), w = decode_ramp(out, in);
  const qlora::PackedMatrix m = format == qlora::PackedFormat::nf4 ? qlora::pack_nf4(w.data(), out, in, 64)
                                                                   : qlora::pack_q8_0(w.data(), out, in);
  std::vector<float> y(static_cast<std::size_t>(out));
  for (auto _ : state) {
    qlora::packed_gemv(m, x.data(), 1, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(m.bytes()));
  state.SetLabel(std::string(qlora::packed_kernel_name(qlora::packed_gemv_kernel())));
}
void BM_decode_gemv_nf4(benchmark::State& state) { packed_gemv_bench(state, qlora::PackedFormat::nf4); }
void BM_decode_gemv_q8_0(benchmark::State& state) { packed_gemv_bench(state, qlora::PackedFormat::q8_0); }
}  // namespace

// {in, out} of the projections' four distinct shapes per config, and the 270M's tied LM head.
static bench::ArgLists decode_shapes(const bench::ConfigShape& c) {
  bench::ArgLists a{{c.hidden, c.q_dim}, {c.hidden, c.kv_dim}, {c.q_dim, c.hidden}, {c.hidden, c.intermediate},
                    {c.intermediate, c.hidden}};
  if (c.hidden == bench::kConfigs[0].hidden) a.push_back({c.hidden, c.vocab});
  return a;
}

BENCHMARK(BM_decode_gemv_fp32)->Apply(bench::each_config<decode_shapes>)->ArgNames({"in", "out"});
BENCHMARK(BM_decode_gemv_nf4)->Apply(bench::each_config<decode_shapes>)->ArgNames({"in", "out"});
BENCHMARK(BM_decode_gemv_q8_0)->Apply(bench::each_config<decode_shapes>)->ArgNames({"in", "out"});
