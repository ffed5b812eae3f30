#!/usr/bin/env python3
"""Checks that llama.cpp (through llama-cpp-python) loads a GGUF written by qlora and generates from it.

Usage: python3 tests/compat/llama_cpp_gguf.py --gguf FILE [--prompt TEXT] [--tokens 16]
Loads FILE with llama_cpp.Llama on the CPU, generates --tokens tokens greedily (temperature 0, top_k 1) from the
prompt and prints their ids and text. Exits 0 when it loads and generates at least one token, 1 otherwise, 77
("skipped: ...") when llama-cpp-python is not installed (pip install llama-cpp-python; it builds llama.cpp).
"""
import argparse
import os
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--prompt", default="The capital of France is")
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--n-ctx", type=int, default=512)
    args = ap.parse_args()
    try:
        import llama_cpp
    except ImportError as e:
        print(f"skipped: Python package llama_cpp (llama-cpp-python) is not installed ({e})")
        return 77
    if not os.path.isfile(args.gguf):
        print(f"FAIL: {args.gguf} is not a file")
        return 1
    try:
        llm = llama_cpp.Llama(model_path=args.gguf, n_ctx=args.n_ctx, n_gpu_layers=0, seed=0, verbose=False,
                              n_threads=max(1, min(4, os.cpu_count() or 1)))
    except Exception as e:  # noqa: BLE001 (llama-cpp-python raises ValueError, RuntimeError, ...)
        print(f"FAIL: llama.cpp cannot load {args.gguf}: {type(e).__name__}: {e}")
        return 1
    try:
        prompt_ids = llm.tokenize(args.prompt.encode("utf-8"), add_bos=True, special=True)
        ids = []
        for tok in llm.generate(prompt_ids, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0):
            ids.append(int(tok))
            if tok == llm.token_eos() or len(ids) >= args.tokens:
                break
        text = llm.detokenize(ids).decode("utf-8", errors="replace")
    except Exception as e:  # noqa: BLE001
        print(f"FAIL: generation failed: {type(e).__name__}: {e}")
        return 1
    meta = getattr(llm, "metadata", {}) or {}
    print(f"llama-cpp-python {llama_cpp.__version__}: {args.gguf} "
          f"(architecture {meta.get('general.architecture', '?')}, vocab {llm.n_vocab()}, context {llm.n_ctx()})")
    print(f"prompt {args.prompt!r} -> {len(prompt_ids)} tokens {prompt_ids}")
    print(f"generated {len(ids)} tokens: {ids}")
    print(f"text: {text!r}")
    if not ids:
        print("FAIL: nothing was generated")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
