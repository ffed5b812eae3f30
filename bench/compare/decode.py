#!/usr/bin/env python3
"""qlora generate vs llama.cpp: prefill and decode tokens/s on the same GGUF, the same prompt and the same threads.

Each side runs in its own process, one after the other: `qlora generate --raw` (its closing line times prefill and
decode apart) for each --cpu-gemm asked for, then llama.cpp through llama-cpp-python (the PyPI package builds
llama.cpp from source): the prompt evaluated in one batch (prefill), then greedy decoding one token per pass, timed
the same way. Both read the same file; llama.cpp decodes from its Q4_K/Q6_K blocks, qlora with each
--decode-kernel asked for: int8 (its default: NF4 codes and a Q8_0 LM head through int8 dot products) or fp32 (the
training GEMMs over the NF4 values dequantized to fp32).
Prints a Markdown table (docs/benchmarks.md) and, with --json-out, the figures as JSON.

  QLORA_MODEL=$(scripts/fetch-model) python3 bench/compare/decode.py --threads 2 --prompt-words 200 --new-tokens 64

Without llama-cpp-python (pip install llama-cpp-python) the llama.cpp row says it was skipped.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

PARAGRAPH = ("The company reported revenue of 4.2 billion dollars for the quarter, up eleven percent from a year "
             "earlier, while operating margin narrowed as input costs rose and the firm kept investing in new plants. "
             "Analysts asked whether the dividend was safe given the higher leverage after the acquisition. ")


def prompt_of(words):
    text = []
    while len(text) < words:
        text += PARAGRAPH.split()
    return " ".join(text[:words])


def run_qlora(qlora, model, prompt, new_tokens, threads, gemm, decode_kernel):
    cmd = [qlora, "generate", "--model", model, "--raw", "--prompt", prompt, "--max-new-tokens", str(new_tokens),
           "--decode-kernel", decode_kernel]
    if gemm:
        cmd += ["--cpu-gemm", gemm]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    print("+", " ".join(cmd[:3]), "... --max-new-tokens", new_tokens, "--decode-kernel", decode_kernel, "--cpu-gemm",
          gemm or "auto", file=sys.stderr, flush=True)
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        print(p.stdout, p.stderr, file=sys.stderr)
        return None
    m = re.search(r"prefill (\d+) tokens in ([\d.]+) s \(([\d.]+) tokens/s\) \| decode (\d+) tokens in ([\d.]+) s "
                  r"\(([\d.]+) tokens/s\)", p.stdout)
    if not m:
        print(p.stdout[-2000:], file=sys.stderr)
        return None
    kernel = re.search(r"CPU GEMM: (.*)", p.stderr)
    decode = re.search(r"qlora: decode: (.*)", p.stderr)
    return {"decode_products": decode[1].strip() if decode else decode_kernel,
            "prompt_tokens": int(m[1]), "prefill_s": float(m[2]), "prefill_tokens_per_s": float(m[3]),
            "decode_tokens": int(m[4]), "decode_s": float(m[5]), "decode_tokens_per_s": float(m[6]),
            "kernel": kernel[1].strip() if kernel else (gemm or "auto")}


def agreement(qlora, model, records, limit, new_tokens, threads):
    """Greedy answers of --decode-kernel int8 against fp32 on the same records: how many are identical, and how far
    the others agree (the common prefix, in characters of the fp32 answer)."""
    import tempfile
    answers = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kernel in ("fp32", "int8"):
            out = os.path.join(tmp, kernel + ".jsonl")
            cmd = [qlora, "generate", "--model", model, "--records", records, "--limit", str(limit), "--max-new-tokens",
                   str(new_tokens), "--decode-kernel", kernel, "--output", out]
            print("+", " ".join(cmd[:2]), "--records ... --decode-kernel", kernel, file=sys.stderr, flush=True)
            p = subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS=str(threads)), capture_output=True, text=True)
            if p.returncode != 0:
                sys.exit(f"qlora generate --records ({kernel}) failed:\n{p.stderr[-2000:]}")
            with open(out) as f:
                answers[kernel] = [json.loads(line)["prediction"] for line in f]
    same, prefix = 0, []
    for a, b in zip(answers["fp32"], answers["int8"]):
        same += a == b
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        prefix.append(n / max(len(a), 1))
    return {"records": len(prefix), "identical": same, "new_tokens": new_tokens,
            "mean_common_prefix": sum(prefix) / max(len(prefix), 1)}


def run_llama_cpp(model, prompt, new_tokens, threads, repeats):
    try:
        import llama_cpp
        import numpy as np
    except ImportError as e:
        return {"skipped": f"llama-cpp-python is not installed ({e}); pip install llama-cpp-python"}
    llm = llama_cpp.Llama(model_path=model, n_ctx=4096, n_batch=4096, n_ubatch=512, n_threads=threads,
                          n_threads_batch=threads, verbose=False)
    tokens = llm.tokenize(prompt.encode(), add_bos=True)
    best = None
    for _ in range(repeats + 1):  # the first pass warms up (graph allocation, page cache); the best of the rest counts
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(tokens)
        t1 = time.perf_counter()
        for _ in range(new_tokens):
            nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            llm.eval([nxt])
        t2 = time.perf_counter()
        r = {"prompt_tokens": len(tokens), "prefill_s": t1 - t0, "prefill_tokens_per_s": len(tokens) / (t1 - t0),
             "decode_tokens": new_tokens, "decode_s": t2 - t1, "decode_tokens_per_s": new_tokens / (t2 - t1)}
        if best is None or r["decode_s"] + r["prefill_s"] < best["decode_s"] + best["prefill_s"]:
            best = r
    info = llama_cpp.llama_print_system_info().decode()  # "CPU : SSE3 = 1 | AVX2 = 1 | ...": the features built in
    features = [f.split("=")[0].split(":")[-1].strip() for f in info.split("|") if f.strip().endswith("= 1")]
    best["kernel"] = f"llama.cpp (llama-cpp-python {llama_cpp.__version__}; {', '.join(features)})"
    return best


def main():
    a = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    a.add_argument("--qlora", default=os.path.join(ROOT, "build", "bin", "qlora"))
    a.add_argument("--model", default=os.environ.get("QLORA_MODEL", ""), help="the GGUF both sides read")
    a.add_argument("--threads", type=int, default=2)
    a.add_argument("--prompt-words", type=int, default=200, help="the prompt's length in words (about 1.3 tokens each)")
    a.add_argument("--new-tokens", type=int, default=64, help="tokens to decode (qlora stops earlier at <eos>)")
    a.add_argument("--cpu-gemm", action="append", choices=["eigen", "onednn", "onednn-bf16"],
                   help="qlora's CPU GEMM (repeat for several); default: the CLI's auto choice")
    a.add_argument("--decode-kernel", action="append", choices=["int8", "fp32"],
                   help="qlora's decode kernel (repeat for several); default: int8 and fp32")
    a.add_argument("--repeats", type=int, default=2, help="timed runs per side (the best counts)")
    a.add_argument("--agreement-records", help="also compare int8 with fp32 greedy answers on these JSONL records")
    a.add_argument("--agreement-limit", type=int, default=20, help="records to answer for the comparison")
    a.add_argument("--json-out")
    args = a.parse_args()
    if not args.model or not os.path.isfile(args.model):
        sys.exit("decode.py: --model (or QLORA_MODEL) must name the GGUF file; scripts/fetch-model prints it")
    prompt = prompt_of(args.prompt_words)
    results = {}
    for decode_kernel in args.decode_kernel or ["int8", "fp32"]:
        for gemm in args.cpu_gemm or [None]:
            runs = [run_qlora(args.qlora, args.model, prompt, args.new_tokens, args.threads, gemm, decode_kernel)
                    for _ in range(args.repeats)]
            runs = [r for r in runs if r]
            if not runs:
                sys.exit(f"qlora generate ({decode_kernel}, {gemm or 'auto'}) failed")
            results[f"qlora (decode {decode_kernel}, GEMM {gemm or 'auto'})"] = min(
                runs, key=lambda r: r["prefill_s"] + r["decode_s"])
    results["llama.cpp"] = run_llama_cpp(args.model, prompt, args.new_tokens, args.threads, args.repeats)
    agree = None
    if args.agreement_records:
        agree = agreement(args.qlora, args.model, args.agreement_records, args.agreement_limit, args.new_tokens,
                          args.threads)
        results["int8 vs fp32 answers"] = agree
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"threads": args.threads, "model": os.path.basename(args.model), "results": results}, f, indent=1)

    ref = results["llama.cpp"]
    print(f"\n{os.path.basename(args.model)}, {args.threads} threads, greedy, best of {args.repeats} runs per side\n")
    print("| run | kernel | prompt tokens | prefill tokens/s | decoded tokens | decode tokens/s "
          "| vs llama.cpp: prefill | decode |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        if r is agree:
            continue
        if "skipped" in r:
            print(f"| {name} | skipped: {r['skipped']} | | | | | | |")
            continue
        vs_p = vs_d = ""
        if r is not ref and "skipped" not in ref:
            vs_p = f"{r['prefill_tokens_per_s'] / ref['prefill_tokens_per_s']:.2f}×"
            vs_d = f"{r['decode_tokens_per_s'] / ref['decode_tokens_per_s']:.2f}×"
        kernel = r["kernel"] if "decode_products" not in r else f"{r['kernel']}; decode: {r['decode_products']}"
        print(f"| {name} | {kernel} | {r['prompt_tokens']} | {r['prefill_tokens_per_s']:.1f} "
              f"| {r['decode_tokens']} | {r['decode_tokens_per_s']:.1f} | {vs_p} | {vs_d} |")
    if agree:
        print(f"\nGreedy answers, --decode-kernel int8 against fp32, {agree['records']} records, up to "
              f"{agree['new_tokens']} new tokens: {agree['identical']} identical; on average the first "
              f"{100 * agree['mean_common_prefix']:.0f} % of each fp32 answer is the same")


if __name__ == "__main__":
    main()
