// qlora_step_bench: one QLoRA training step end to end, repeated — forward (NF4 base + LoRA on all seven
// projections, fused LM-head cross-entropy), backward, gradient clipping to 1.0 and bitsandbytes' AdamW8bit — on a
// Gemma 3 model of the 270M, 1B or 4B shape, with the real weights (--model, a GGUF or HF folder) or random ones of
// the same shape (Gemma3WeightSource::random). Prints tokens/s, seconds/step (forward / backward / optimizer),
// peak RSS (VmHWM; /proc/self/clear_refs resets it after loading, so "step peak" is the training steps' own) and
// achieved GFLOP/s; --json prints one JSON line for bench/compare/compare.py.
//
// Model FLOPs per token (no recomputation counted): 4·N_base + 6·N_lora over the projections (forward 2·N, backward
// d_x only for the frozen base, d_x + d_A/d_B for LoRA), attention 12·Hq·D·ctx (QKᵀ and PV forward, twice that
// backward; ctx = mean visible keys under the causal mask and window), LM head 4·V·C (logits and d_hidden).
//
// Every run also measures the host's fp32 GEMM rate in the same process, after the steps (the library's matmul, a
// 2048³ product with the same threads, best of 5) and prints the step's GFLOP/s as a fraction of it, with the
// instruction sets the binary was compiled for: figures from different hosts, builds or hours are
// compared through that fraction.
//
// --device cuda[:N] (qlora_step_bench_cuda, the same file compiled by nvcc where the CUDA toolkit is found): the model,
// adapters and optimizer on that GPU (--bf16: its GEMMs on the tensor cores); each phase is timed up to a
// synchronisation of the device's stream, the peak is the GPU allocator's (tensors' bytes), and the host GEMM rate is
// not measured.
#include <sys/resource.h>

#include <omp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include <qlora/nn/causal_lm.hpp>
#include <qlora/nn/model.hpp>
#include <qlora/optim/adamw8bit.hpp>
#include <qlora/optim/clip.hpp>
#include <qlora/qlora.hpp>
#if QLORA_CUDA_COMPILER
#include <qlora/cuda.hpp>
#endif

namespace {
using namespace qlora;
using Clock = std::chrono::steady_clock;

// The host's GEMM rate through the library's own matmul with the step's backend (Eigen's kernel for this build's ISA,
// or oneDNN's for the CPU's): 2048³, best of 5 after a warm-up, in GFLOP/s.
double host_gemm_gflops(CpuGemm gemm) {
  constexpr index_t n = 2048;
  using M = Tensor<float, Dyn, Dyn>;
  M a = M::zeros(n, n).to(Device::cpu(gemm)), b = M::zeros(n, n);
  for (index_t i = 0; i < n * n; ++i) {
    a.data()[i] = uniform01({1, 0}, static_cast<std::uint64_t>(i)) - 0.5f;
    b.data()[i] = uniform01({2, 0}, static_cast<std::uint64_t>(i)) - 0.5f;
  }
  double best = 1e300;
  for (int r = 0; r < 6; ++r) {
    const auto t0 = Clock::now();
    const M c = matmul(a, b);
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (c.data()[0] != c.data()[0]) std::abort();  // keeps the product alive
    if (r > 0) best = std::min(best, s);
  }
  return 2.0 * n * n * n / best / 1e9;
}

// Multiply-adds run by every CPU GEMM backend so far.
std::uint64_t all_gemm_macs() {
  std::uint64_t n = 0;
  for (const CpuGemm g : all_cpu_gemms) n += cpu::cpu_gemm_count(g).macs;
  return n;
}

// The vector extensions this build was compiled for (what the compiler may emit, not what the CPU has).
std::string build_isa() {
  std::string s;
#if defined(__x86_64__)
  s += " x86-64";
#endif
#if defined(__SSE2__)
  s += " SSE2";
#endif
#if defined(__AVX2__)
  s += " AVX2";
#endif
#if defined(__FMA__)
  s += " FMA";
#endif
#if defined(__AVX512F__)
  s += " AVX-512";
#endif
#if defined(__AVX512BF16__)
  s += " AVX512-BF16";
#endif
#if defined(__aarch64__)
  s += " aarch64";
#endif
#if defined(__ARM_NEON)
  s += " NEON";
#endif
  return s.empty() ? "scalar" : s.substr(1);
}

struct Options {
  std::string config = "270m";
  std::string model;  // empty: random weights
  long seq = 512, batch = 1, rank = 16, steps = 5, warmup = 1;
  double lora_alpha = 32, lora_dropout = 0.05;
  std::string targets = "all-linear";  // --targets q_proj,v_proj: the 4B-it recipe's
  bool gradient_checkpointing = false, json = false, breakdown = false;
  bool dynamic_extents = false;  // --extents dynamic: the run-time-shaped model (Gemma3AnySize) on the same shape
  CpuGemm gemm = fastest_cpu_gemm(false);  // --cpu-gemm: the GEMM of the model's CPU device (default: the fastest fp32)
  int gpu = -1;  // --device cuda[:N]: the GPU (-1: the CPU)
  bool bf16 = false;  // --bf16: a GPU's GEMMs on the tensor cores (bf16 operands, fp32 accumulation)
};

// The model's device: the CPU with the chosen GEMM, or GPU o.gpu (only in the nvcc-compiled program).
Device bench_device(const Options& o) {
  if (o.gpu < 0) return Device::cpu(o.gemm);
#if QLORA_CUDA_COMPILER
  return cuda::device(o.gpu).with_gpu_gemm(o.bf16 ? GpuGemm::bf16 : GpuGemm::fp32);
#else
  fail("bench", "--device cuda: this program was compiled without CUDA (run qlora_step_bench_cuda)");
#endif
}

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "qlora_step_bench: %s\n"
               "usage: qlora_step_bench [--config 270m|1b|4b] [--model PATH] [--seq 512] [--batch 1] [--rank R]\n"
               "                        [--steps 5] [--warmup 1] [--lora-alpha 32] [--lora-dropout 0.05]\n"
               "                        [--gradient-checkpointing] [--json] [--breakdown] [--extents static|dynamic]\n"
               "                        [--targets all-linear|q_proj,v_proj,...] [--cpu-gemm eigen|onednn|onednn-bf16]\n"
               "                        [--device cpu|cuda|cuda:N] [--bf16 (GPU: tensor-core GEMMs)]\n",
               why);
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(("missing value after " + a).c_str());
      return argv[++i];
    };
    if (a == "--config") o.config = value();
    else if (a == "--model") o.model = value();
    else if (a == "--seq") o.seq = std::stol(value());
    else if (a == "--batch") o.batch = std::stol(value());
    else if (a == "--rank") o.rank = std::stol(value());
    else if (a == "--steps") o.steps = std::stol(value());
    else if (a == "--warmup") o.warmup = std::stol(value());
    else if (a == "--lora-alpha") o.lora_alpha = std::stod(value());
    else if (a == "--lora-dropout") o.lora_dropout = std::stod(value());
    else if (a == "--targets") o.targets = value();
    else if (a == "--gradient-checkpointing") o.gradient_checkpointing = true;
    else if (a == "--json") o.json = true;
    else if (a == "--breakdown") o.breakdown = true;
    else if (a == "--cpu-gemm") {
      const std::string g = value();
      const auto named = cpu_gemm_named(g);
      if (!named) usage("--cpu-gemm must be eigen, onednn or onednn-bf16");
      o.gemm = *named;
      if (!cpu_gemm_available(o.gemm)) usage(("--cpu-gemm " + g + ": not in this build or not on this CPU").c_str());
    }
    else if (a == "--bf16") o.bf16 = true;
    else if (a == "--device") {
      const std::optional<int> gpu = gpu_index_named(value());
      if (!gpu) usage("--device must be cpu, cuda or cuda:N");
      o.gpu = *gpu;
    }
    else if (a == "--extents") {
      const std::string e = value();
      if (e != "static" && e != "dynamic") usage("--extents must be static or dynamic");
      o.dynamic_extents = e == "dynamic";
    }
    else usage(("unknown argument " + a).c_str());
  }
  if (o.seq < 2 || o.batch < 1 || o.steps < 1 || o.warmup < 0) usage("--seq >= 2, --batch >= 1, --steps >= 1");
  return o;
}

// kB from a "VmHWM:   123 kB" line of /proc/self/status (ru_maxrss when /proc is missing).
long status_kib(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::string key = std::string(field) + ":";
  while (std::getline(in, line))
    if (line.rfind(key, 0) == 0) return std::stol(line.substr(key.size()));
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss;
}
// Resets VmHWM to the current RSS (Linux >= 4.0); false when not allowed.
bool reset_peak_rss() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  return static_cast<bool>(out.flush());
}

double seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

// B rows of T random tokens, one sample each, every position a label (the loss then covers B·(T − 1) tokens).
Batch random_batch(index_t vocab, long B, long T) {
  Batch b;
  b.B = static_cast<std::size_t>(B);
  b.T = static_cast<std::size_t>(T);
  const auto n = b.B * b.T;
  b.tokens.resize(n);
  for (std::size_t i = 0; i < n; ++i)
    b.tokens[i] = 2 + static_cast<std::int32_t>(uniform01({7, 0}, i) * static_cast<float>(vocab - 2));
  b.labels = b.tokens;
  b.positions.resize(n);
  b.segment_ids.assign(n, 1);
  for (std::size_t r = 0; r < b.B; ++r)
    for (std::size_t t = 0; t < b.T; ++t) b.positions[b.at(r, t)] = static_cast<std::int32_t>(t);
  b.lengths.assign(b.B, static_cast<std::int32_t>(T));
  return b;
}

template <class Cfg>
double flops_per_token(long T, long R) {
  const double C = Cfg::hidden, I = Cfg::intermediate, q = Cfg::q_dim, kv = Cfg::kv_dim;
  const double base = C * (q + 2 * kv) + q * C + 3 * C * I;
  const double lora = static_cast<double>(R) * ((C + q) * 2 + (C + kv) * 2 + (C + I) * 3);
  double attention = 0;  // Σ over layers of forward 4·Hq·D·ctx
  for (index_t l = 0; l < Cfg::layers; ++l) {
    const long window = Cfg::is_global_layer(l) ? T : std::min<long>(T, Cfg::sliding_window);
    double visible = 0;
    for (long i = 0; i < T; ++i) visible += static_cast<double>(std::min(i + 1, window));
    attention += 4.0 * Cfg::heads * Cfg::head_dim * visible / static_cast<double>(T);
  }
  return Cfg::layers * (4 * base + 6 * lora) + 3 * attention + 4.0 * Cfg::vocab * C;
}

// The step's phases timed apart (mean of --steps): the decoder blocks' forward, the fused LM head + cross-entropy
// as the step runs it (its gradient made in the forward pass, ops/cross_entropy.hpp), the backward (blocks; the
// head's part is a scaling), and for comparison the head by forward + backward with the logits recomputed.
template <class Model>
void breakdown(const Model& model, const ModelInput& in, double label_tokens, const Options& o) {
  double blocks_f = 0, head_f = 0, all_b = 0, head_recompute = 0;
  for (long s = 0; s < o.steps; ++s) {
    const ForwardPass pass{true, o.gradient_checkpointing, RandomStream{43, static_cast<std::uint64_t>(s)}};
    const auto t0 = Clock::now();
    const auto h = model.hidden_states(in, pass);
    const auto t1 = Clock::now();
    const auto l = cross_entropy_sum(h, model.embed_tokens(), in.labels);
    const auto t2 = Clock::now();
    backward(scale(l.sum, 1.0 / label_tokens));
    const auto t3 = Clock::now();
    {
      const auto f = cross_entropy_forward(h.value(), model.embed_tokens().value(), in.labels);
      const auto g = cross_entropy_backward(h.value(), model.embed_tokens().value(), in.labels, f.lse,
                                            1.0 / label_tokens, false);
      (void)g;
    }
    head_recompute += seconds(t3, Clock::now());
    model.for_each_lora([](index_t, Projection, const auto& p) {
      p.lora_a().zero_grad();
      p.lora_b().zero_grad();
    });
    blocks_f += seconds(t0, t1);
    head_f += seconds(t1, t2);
    all_b += seconds(t2, t3);
  }
  const double n = static_cast<double>(o.steps);
  std::fprintf(stderr, "  breakdown (s/step): blocks forward %.3f, LM head + CE forward with its gradient %.3f, "
               "backward %.3f; LM head + CE by forward + backward with recomputed logits %.3f\n",
               blocks_f / n, head_f / n, all_b / n, head_recompute / n);
}

// Cfg: the shape (and the random weights' configuration). kStatic: the model open_causal_lm gives (qlora::models:
// the size's static instantiation where QLORA_STATIC_MODELS compiled it, 270M by default); otherwise the
// run-time-shaped Gemma3AnySize compiled here, whose internals --breakdown times.
template <class Cfg, bool kStatic>
int run(const Options& o) {
  using Model = std::conditional_t<kStatic, std::unique_ptr<CausalLM>, std::optional<Gemma3<Gemma3AnySize, float, NF4>>>;
  const auto t_load = Clock::now();
  Gemma3Options mo;
  mo.device = bench_device(o);
  LoraConfig lora;  // the recipe's adapter: all seven projections unless --targets says otherwise
  lora.r = o.rank;
  lora.lora_alpha = o.lora_alpha;
  lora.lora_dropout = o.lora_dropout;
  lora.target_modules = detail::OptionReader::split_commas(o.targets);
  expand_all_linear(lora);
  mo.lora = LoraTargets(lora);
  std::string source_name;
  Model model;
  {  // the source (and its memory map) is gone once the model is built
    const Gemma3WeightSource src = o.model.empty() ? Gemma3WeightSource::random<Cfg>(1) : Gemma3WeightSource::open(o.model);
    source_name = src.path().string();
    if constexpr (kStatic) model = open_causal_lm(src, mo);
    else model.emplace(src, mo);
  }
  const double load_s = seconds(t_load, Clock::now());
  const long rss_loaded = status_kib("VmRSS"), hwm_load = status_kib("VmHWM");
  const bool peak_reset = reset_peak_rss();
  const Device device = model->device();
  if (device.is_cuda()) device.allocator().reset_peak();

  AdamW8bitConfig oc;
  oc.weight_decay = 0.0;  // transformers' TrainingArguments default
  AdamW8bit optimizer(model->lora_parameters(), oc);
  const ParameterList params = model->lora_parameters();
  const ModelInput in = model_input(random_batch(Cfg::vocab, o.batch, o.seq), model->device());
  const std::uint64_t macs_before = cpu::cpu_gemm_count(o.gemm).macs, all_before = all_gemm_macs();
  const double label_tokens = static_cast<double>(o.batch * (o.seq - 1));
  const double tokens = static_cast<double>(o.batch * o.seq);

  double fwd = 0, bwd = 0, opt = 0, first_loss = 0, last_loss = 0;
  double best = 1e300;
  for (long s = 0; s < o.warmup + o.steps; ++s) {
    const auto t0 = Clock::now();
    const auto l = model->loss_sum(in, ForwardPass{true, o.gradient_checkpointing, RandomStream{42, static_cast<std::uint64_t>(s)}});
    const double loss = static_cast<double>(l.sum.value().item()) / label_tokens;
    const auto t1 = Clock::now();
    backward(scale(l.sum, 1.0 / label_tokens));
    device.allocator().synchronize();  // the phase's kernels included (a no-op on the CPU)
    const auto t2 = Clock::now();
    clip_grad_norm(params, 1.0);
    optimizer.step(1e-4);
    optimizer.zero_grad();
    device.allocator().synchronize();  // the phase's kernels included (a no-op on the CPU)
    const auto t3 = Clock::now();
    if (s == 0) first_loss = loss;
    last_loss = loss;
    if (s < o.warmup) continue;
    fwd += seconds(t0, t1);
    bwd += seconds(t1, t2);
    opt += seconds(t2, t3);
    best = std::min(best, seconds(t0, t3));
  }
  const double n = static_cast<double>(o.steps), step_s = (fwd + bwd + opt) / n;
  const double gflops = flops_per_token<Cfg>(o.seq, o.rank) * tokens / step_s / 1e9;
  const long hwm_steps = status_kib("VmHWM"), hwm = std::max(hwm_load, hwm_steps);
  if constexpr (!kStatic) {
    if (o.breakdown) breakdown(*model, in, label_tokens, o);
  }
  // The share of the steps' multiply-adds that the chosen GEMM ran (the rest: attention's per-head products, Eigen).
  const double gemm_share = static_cast<double>(cpu::cpu_gemm_count(o.gemm).macs - macs_before) /
                            static_cast<double>(std::max<std::uint64_t>(1, all_gemm_macs() - all_before));
  const double gpu_peak_mib = static_cast<double>(device.memory().peak_bytes) / (1024.0 * 1024.0);
  if (device.is_cuda()) {
    if (o.json) {
      std::printf("{\"framework\": \"qlora\", \"device\": \"%s\", \"model\": \"%s\", \"config\": \"%s\", "
                  "\"seq\": %ld, \"batch\": %ld, \"rank\": %ld, \"steps\": %ld, \"gradient_checkpointing\": %s, "
                  "\"base\": \"nf4\", \"gemm\": \"%s\", \"load_s\": %.3f, \"step_s\": %.4f, \"best_step_s\": %.4f, "
                  "\"forward_s\": %.4f, \"backward_s\": %.4f, \"optimizer_s\": %.4f, \"tokens_per_s\": %.1f, "
                  "\"gflops\": %.1f, \"gpu_peak_mib\": %.1f, \"first_loss\": %.4f, \"last_loss\": %.4f}\n",
                  device.str().c_str(), source_name.c_str(), std::string(model->name()).c_str(), o.seq, o.batch, o.rank,
                  o.steps, o.gradient_checkpointing ? "true" : "false", o.bf16 ? "bf16" : "fp32", load_s, step_s, best, fwd / n, bwd / n, opt / n,
                  tokens / step_s, gflops, gpu_peak_mib, first_loss, last_loss);
      return 0;
    }
    std::printf("qlora step on %s: %s (%s), NF4 base + LoRA r %ld on %s, batch %ld x seq %ld, %s GEMMs%s\n",
                device.str().c_str(), std::string(model->name()).c_str(), source_name.c_str(), o.rank,
                o.targets.c_str(), o.batch, o.seq, o.bf16 ? "bf16 tensor-core" : "fp32", o.gradient_checkpointing ? ", gradient checkpointing" : "");
    std::printf("  load %.2f s; loss %.4f -> %.4f\n", load_s, first_loss, last_loss);
    std::printf("  %.4f s/step (best %.4f): forward %.4f, backward %.4f, clip + AdamW8bit %.4f (mean of %ld after %ld "
                "warm-up)\n", step_s, best, fwd / n, bwd / n, opt / n, o.steps, o.warmup);
    std::printf("  %.1f tokens/s, %.1f GFLOP/s; GPU peak %.1f MiB (the tensors' bytes during the steps)\n",
                tokens / step_s, gflops, gpu_peak_mib);
    return 0;
  }
  const double gemm_gflops = host_gemm_gflops(o.gemm);
  const std::string gemm_desc = describe_cpu_gemm(o.gemm);
  const std::string isa = build_isa();
  const double mib = 1.0 / 1024.0;
  if (o.json) {
    std::printf("{\"framework\": \"qlora\", \"model\": \"%s\", \"config\": \"%s\", \"seq\": %ld, \"batch\": %ld, "
                "\"rank\": %ld, \"steps\": %ld, \"threads\": %d, \"gradient_checkpointing\": %s, \"base\": \"nf4\", "
                "\"load_s\": %.3f, \"step_s\": %.4f, \"best_step_s\": %.4f, \"forward_s\": %.4f, \"backward_s\": %.4f, "
                "\"optimizer_s\": %.4f, \"tokens_per_s\": %.1f, \"gflops\": %.1f, \"peak_rss_mib\": %.1f, "
                "\"step_peak_rss_mib\": %.1f, \"loaded_rss_mib\": %.1f, \"first_loss\": %.4f, \"last_loss\": %.4f, "
                "\"gemm_gflops\": %.1f, \"gemm_fraction\": %.3f, \"isa\": \"%s\", \"cpu_gemm\": \"%s\", "
                "\"cpu_gemm_kernel\": \"%s\", \"cpu_gemm_share\": %.3f}\n",
                source_name.c_str(), std::string(model->name()).c_str(), o.seq, o.batch, o.rank, o.steps,
                omp_get_max_threads(), o.gradient_checkpointing ? "true" : "false", load_s, step_s, best, fwd / n,
                bwd / n, opt / n, tokens / step_s, gflops, hwm * mib, peak_reset ? hwm_steps * mib : -1.0,
                rss_loaded * mib, first_loss, last_loss, gemm_gflops, gflops / gemm_gflops, isa.c_str(),
                cpu_gemm_name(o.gemm), gemm_desc.c_str(), gemm_share);
    return 0;
  }
  std::printf("qlora step: %s (%s), NF4 base + LoRA r %ld on %s, batch %ld x seq %ld, %d threads%s\n",
              std::string(model->name()).c_str(), source_name.c_str(), o.rank, o.targets.c_str(), o.batch, o.seq,
              omp_get_max_threads(),
              o.gradient_checkpointing ? ", gradient checkpointing" : "");
  std::printf("  load %.2f s; trainable parameters %lld; loss %.4f -> %.4f\n", load_s,
              static_cast<long long>(model->trainable_parameter_count()), first_loss, last_loss);
  std::printf("  %.3f s/step (best %.3f): forward %.3f, backward %.3f, clip + AdamW8bit %.4f (mean of %ld after %ld warm-up)\n",
              step_s, best, fwd / n, bwd / n, opt / n, o.steps, o.warmup);
  std::printf("  %.1f tokens/s, %.1f GFLOP/s (%.2f GFLOP/token)\n", tokens / step_s, gflops,
              flops_per_token<Cfg>(o.seq, o.rank) / 1e9);
  std::printf("  CPU GEMM %s: %s; %.0f %% of the steps' multiply-adds\n", cpu_gemm_name(o.gemm), gemm_desc.c_str(),
              100.0 * gemm_share);
  std::printf("  host GEMM (2048^3 through it, this build: %s): %.1f GFLOP/s; the step runs at %.0f %% of it\n",
              isa.c_str(), gemm_gflops, 100.0 * gflops / gemm_gflops);
  std::printf("  peak RSS %.1f MiB (after loading %.1f MiB, peak during the steps %.1f MiB)\n", hwm * mib,
              rss_loaded * mib, peak_reset ? hwm_steps * mib : -1.0);
  return 0;
}

}  // namespace

// --extents static: the program's model (open_causal_lm); dynamic, and --breakdown: the run-time-shaped type built here.
template <class Cfg>
int run_shape(const Options& o) {
  if (o.breakdown && !o.dynamic_extents)
    std::fprintf(stderr, "qlora_step_bench: --breakdown times the run-time-shaped model (--extents dynamic)\n");
  if constexpr (kCompiledWithCuda) {  // the nvcc-compiled program: the models library's model only (compile time)
    if (o.dynamic_extents || o.breakdown) usage("--extents dynamic / --breakdown: run qlora_step_bench (the CPU build)");
    return run<Cfg, true>(o);
  } else {
    return o.dynamic_extents || o.breakdown ? run<Cfg, false>(o) : run<Cfg, true>(o);
  }
}

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  try {
    if (!o.model.empty()) {  // the file decides the shape
      const auto cfg = Gemma3WeightSource::open(o.model).config();
      return dispatch_config(cfg, o.model, [&](auto c) -> int {
        using Cfg = decltype(c);
        if constexpr (std::is_same_v<Cfg, Gemma3_270M> || std::is_same_v<Cfg, Gemma3_1B> ||
                      std::is_same_v<Cfg, Gemma3_4B>)
          return run_shape<Cfg>(o);
        else
          usage("--model: this benchmark runs the 270M, 1B and 4B shapes");
      });
    }
    if (o.config == "270m") return run_shape<Gemma3_270M>(o);
    if (o.config == "1b") return run_shape<Gemma3_1B>(o);
    if (o.config == "4b") return run_shape<Gemma3_4B>(o);
    usage("--config must be 270m, 1b or 4b");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qlora_step_bench: %s\n", e.what());
    return 1;
  }
}
