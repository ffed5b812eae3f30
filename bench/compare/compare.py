#!/usr/bin/env python3
"""qlora vs transformers + PEFT, one training step side by side on the CPU.

Runs build/bin/qlora_step_bench --json and bench/compare/hf_step.py (each in its own process, one after the other,
with the same thread count) for every variant asked for, and prints a Markdown table with tokens/s, seconds/step,
peak RSS and the ratios qlora / transformers. Each process also measures the host's fp32 GEMM rate as it reaches it
(qlora: its matmul for the ISA it was built for; torch: its BLAS), so every step is reported as a fraction of that.
Example (the table in docs/benchmarks.md):

  QLORA_MODEL=$(scripts/fetch-model) python3 bench/compare/compare.py --seq 512 --rank 16 --steps 5 \\
      --hf-base fp32 --hf-base nf4

Each CPU GEMM of one build side by side (Eigen's, oneDNN's fp32, oneDNN's bf16 where the CPU has bf16 units):

  python3 bench/compare/compare.py --cpu-gemm eigen --cpu-gemm onednn --hf-base fp32 --hf-base nf4

On a CPU with bf16 units, fp32 and bf16 on both sides, then decoding against llama.cpp, in one invocation:

  python3 bench/compare/compare.py --cpu-gemm onednn --cpu-gemm onednn-bf16 --hf-base fp32 --hf-base fp32-bf16 \\
      --hf-base nf4 --hf-base nf4-bf16 --decode

Several qlora builds side by side (e.g. the native build and an AVX2 one, scripts/bench-isa builds both), with
torch held to AVX2 as on a machine without AVX-512:

  python3 bench/compare/compare.py --qlora native=build/bin/qlora_step_bench \\
      --qlora x86-64-v3=build-bench-x86-64-v3/bin/qlora_step_bench --hf-base fp32 --hf-base nf4 --hf-isa avx2
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def run_json(cmd, env):
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        print(p.stdout, p.stderr, file=sys.stderr)
        return None
    line = [l for l in p.stdout.splitlines() if l.startswith("{")][-1]
    return json.loads(line)


def main():
    a = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    a.add_argument("--bin", default=os.path.join(ROOT, "build", "bin", "qlora_step_bench"),
                   help="the qlora_step_bench to run (when no --qlora is given)")
    a.add_argument("--qlora", action="append", metavar="LABEL=PATH",
                   help="a qlora_step_bench build to run, with its label; repeat for several builds")
    a.add_argument("--hf-isa", choices=["default", "avx2"], default="default",
                   help="avx2: hold torch, oneDNN and MKL to AVX2 (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA, "
                        "MKL_ENABLE_INSTRUCTIONS), as on a CPU without AVX-512")
    a.add_argument("--model", default=os.environ.get("QLORA_MODEL", ""), help="the 270M GGUF; empty: random weights")
    a.add_argument("--config", default="270m")
    a.add_argument("--seq", type=int, default=512)
    a.add_argument("--batch", type=int, default=1)
    a.add_argument("--rank", type=int, default=16)
    a.add_argument("--steps", type=int, default=5)
    a.add_argument("--warmup", type=int, default=1)
    a.add_argument("--threads", type=int, default=2)
    a.add_argument("--hf-base", action="append", choices=["fp32", "nf4", "fp32-bf16", "nf4-bf16"],
                   help="transformers base(s), -bf16: under bf16 autocast (hf_step.py --autocast bf16); default fp32")
    a.add_argument("--gradient-checkpointing", action="store_true")
    a.add_argument("--cpu-gemm", action="append", choices=["eigen", "onednn", "onednn-bf16"],
                   help="qlora's CPU GEMM (repeat to run each build with several); default: the bench's own choice, "
                        "the fastest fp32 GEMM of the build")
    a.add_argument("--decode", action="store_true",
                   help="then, in the same invocation, qlora generate vs llama.cpp on the same GGUF and threads "
                        "(bench/compare/decode.py: prefill and decode tokens/s)")
    a.add_argument("--qlora-cli", default=os.path.join(ROOT, "build", "bin", "qlora"),
                   help="the qlora program --decode runs")
    a.add_argument("--json-out", help="also write all results to this file")
    args = a.parse_args()
    if args.decode and not args.model:
        a.error("--decode needs the GGUF both sides read: --model PATH.gguf (or QLORA_MODEL)")
    bases = args.hf_base or ["fp32"]

    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    hf_env = dict(env)
    if args.hf_isa == "avx2":
        hf_env.update(ATEN_CPU_CAPABILITY="avx2", ONEDNN_MAX_CPU_ISA="AVX2", MKL_ENABLE_INSTRUCTIONS="AVX2")
    common = ["--seq", str(args.seq), "--batch", str(args.batch), "--rank", str(args.rank), "--steps", str(args.steps),
              "--warmup", str(args.warmup)] + (["--gradient-checkpointing"] if args.gradient_checkpointing else [])
    model = ["--model", args.model] if args.model else []
    builds = [b.split("=", 1) for b in args.qlora] if args.qlora else [["qlora", args.bin]]
    q = {}
    for label, path in builds:
        for gemm in args.cpu_gemm or [None]:
            name = f"{label}, {gemm}" if gemm else label
            q[name] = run_json([path, "--json", "--config", args.config] + model + common +
                               (["--cpu-gemm", gemm] if gemm else []), env)
            if q[name] is None:
                sys.exit(f"qlora_step_bench ({name}) failed")
    hf = {}
    for variant in bases:
        base, _, autocast = variant.partition("-")
        hf[variant] = run_json([sys.executable, os.path.join(HERE, "hf_step.py"), "--threads", str(args.threads),
                                "--base", base, "--autocast", autocast or "none", "--config", args.config] +
                               (model or ["--random"]) + common, hf_env)

    first = next(iter(q.values()))
    flop_per_token = first["gflops"] * 1e9 / first["tokens_per_s"]  # the model FLOPs per token, counted by qlora
    best_hf = max((r for r in hf.values() if r), key=lambda r: r["tokens_per_s"], default=None)
    print(f"\n{args.config}, seq {args.seq}, batch {args.batch}, LoRA r {args.rank} on all 7 projections, "
          f"{args.threads} threads, mean of {args.steps} steps after {args.warmup} warm-up; "
          f"{flop_per_token / 1e9:.2f} GFLOP/token; torch ISA: {args.hf_isa}\n")
    print("| run | ISA | base | tokens/s | s/step (fwd / bwd / opt) | step GFLOP/s | host GEMM GFLOP/s "
          "| fraction | peak RSS MiB | vs best transformers: tokens/s | peak RSS |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")

    def row(name, r):
        gflops = flop_per_token * r["tokens_per_s"] / 1e9
        ratio_t = ratio_m = ""
        if best_hf and r is not best_hf:
            ratio_t = f"{r['tokens_per_s'] / best_hf['tokens_per_s']:.2f}×"
            ratio_m = f"{r['peak_rss_mib'] / best_hf['peak_rss_mib']:.2f}×"
        gemm = r.get("gemm_gflops", 0)
        isa = r.get("isa", "") + (f"; GEMM {r['cpu_gemm_kernel']}" if "cpu_gemm_kernel" in r else "")
        print(f"| {name} | {isa} | {r['base']} | {r['tokens_per_s']:.1f} | {r['step_s']:.2f} "
              f"({r['forward_s']:.2f} / {r['backward_s']:.2f} / {r['optimizer_s']:.2f}) | {gflops:.1f} | {gemm:.1f} "
              f"| {100 * gflops / gemm:.0f} % | {r['peak_rss_mib']:.0f} | {ratio_t} | {ratio_m} |")

    def hf_name(r):
        return "transformers + PEFT" + (", bf16 autocast" if r.get("autocast") == "bf16" else "")

    for label, r in q.items():
        row(f"qlora ({label})", r)
    for variant, r in hf.items():
        if r is None:
            print(f"| transformers + PEFT | | {variant} | failed | | | | | | | |")
            continue
        row(hf_name(r), r)
    if best_hf:
        print(f"\nbest {hf_name(best_hf)} configuration: {best_hf['base']} base "
              f"({best_hf['tokens_per_s']:.1f} tokens/s); versions {best_hf.get('versions', {})}")

    decode = None
    if args.decode:
        import tempfile
        with tempfile.TemporaryDirectory(prefix="qlora_compare_") as tmp:
            out = os.path.join(tmp, "decode.json")
            cmd = [sys.executable, os.path.join(HERE, "decode.py"), "--qlora", args.qlora_cli, "--model", args.model,
                   "--threads", str(args.threads), "--json-out", out]
            for gemm in args.cpu_gemm or []:
                cmd += ["--cpu-gemm", gemm]
            print("+", " ".join(cmd), file=sys.stderr, flush=True)
            sys.stdout.flush()
            if subprocess.run(cmd, env=env).returncode != 0:
                sys.exit("decode.py failed")
            with open(out) as f:
                decode = json.load(f)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"qlora": q, "hf": hf, "hf_isa": args.hf_isa, "decode": decode}, f, indent=1)


if __name__ == "__main__":
    main()
