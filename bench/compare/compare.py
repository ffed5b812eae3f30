#!/usr/bin/env python3
"""qlora vs transformers + PEFT, one training step side by side on the CPU.

Runs build/bin/qlora_step_bench --json and bench/compare/hf_step.py (each in its own process, one after the other,
with the same thread count) for every variant asked for, and prints a Markdown table with tokens/s, seconds/step,
peak RSS and the ratios qlora / transformers. Example (the table in docs/benchmarks.md):

  QLORA_MODEL=$(scripts/fetch-model) python3 bench/compare/compare.py --seq 512 --rank 16 --steps 5 \\
      --hf-base fp32 --hf-base nf4
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
    a.add_argument("--bin", default=os.path.join(ROOT, "build", "bin", "qlora_step_bench"))
    a.add_argument("--model", default=os.environ.get("QLORA_MODEL", ""), help="the 270M GGUF; empty: random weights")
    a.add_argument("--config", default="270m")
    a.add_argument("--seq", type=int, default=512)
    a.add_argument("--batch", type=int, default=1)
    a.add_argument("--rank", type=int, default=16)
    a.add_argument("--steps", type=int, default=5)
    a.add_argument("--warmup", type=int, default=1)
    a.add_argument("--threads", type=int, default=2)
    a.add_argument("--hf-base", action="append", choices=["fp32", "nf4"], help="transformers base(s); default fp32")
    a.add_argument("--gradient-checkpointing", action="store_true")
    a.add_argument("--json-out", help="also write all results to this file")
    args = a.parse_args()
    bases = args.hf_base or ["fp32"]

    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    common = ["--seq", str(args.seq), "--batch", str(args.batch), "--rank", str(args.rank), "--steps", str(args.steps),
              "--warmup", str(args.warmup)] + (["--gradient-checkpointing"] if args.gradient_checkpointing else [])
    model = ["--model", args.model] if args.model else []
    q = run_json([args.bin, "--json", "--config", args.config] + model + common, env)
    hf = {}
    for base in bases:
        hf[base] = run_json([sys.executable, os.path.join(HERE, "hf_step.py"), "--threads", str(args.threads),
                             "--base", base, "--config", args.config] + (model or ["--random"]) + common, env)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"qlora": q, "hf": hf}, f, indent=1)
    if q is None:
        sys.exit("qlora_step_bench failed")

    print(f"\n{args.config}, seq {args.seq}, batch {args.batch}, LoRA r {args.rank} on all 7 projections, "
          f"{args.threads} threads, mean of {args.steps} steps after {args.warmup} warm-up\n")
    print("| run | base | tokens/s | s/step (fwd / bwd / opt) | peak RSS MiB (steps) | tokens/s ratio | peak RSS ratio |")
    print("|---|---|---:|---:|---:|---:|---:|")

    def row(name, r, ratio_t="", ratio_m=""):
        print(f"| {name} | {r['base']} | {r['tokens_per_s']:.1f} | {r['step_s']:.2f} ({r['forward_s']:.2f} / "
              f"{r['backward_s']:.2f} / {r['optimizer_s']:.2f}) | {r['peak_rss_mib']:.0f} ({r['step_peak_rss_mib']:.0f}) "
              f"| {ratio_t} | {ratio_m} |")

    row("qlora", q, "1", "1")
    for base, r in hf.items():
        if r is None:
            print(f"| transformers + PEFT | {base} | failed | | | | |")
            continue
        row("transformers + PEFT", r, f"qlora {q['tokens_per_s'] / r['tokens_per_s']:.2f}×",
            f"qlora {q['peak_rss_mib'] / r['peak_rss_mib']:.2f}×")


if __name__ == "__main__":
    main()
