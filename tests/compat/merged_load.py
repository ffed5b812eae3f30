#!/usr/bin/env python3
"""Checks that transformers loads a merged model folder written by qlora and that it computes the expected logits.

Usage: python3 tests/compat/merged_load.py --merged DIR --expected JSON [--atol 1e-4]
  --merged    config.json + model.safetensors, loaded with AutoModelForCausalLM (fp32, eager attention)
  --expected  JSON with "sequences" and "logits" (layout of tests/data/gemma3_model/tiny_logits.json)
Prints the max abs and max relative difference; exits 0 when max abs diff <= atol, 1 otherwise (or when loading
fails, or when transformers reports missing / unexpected weights), 77 ("skipped: ...") when torch or transformers
is not installed.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _logits_common import compare, load_expected, need, need_dir  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--merged", required=True)
    ap.add_argument("--expected", required=True)
    ap.add_argument("--atol", type=float, default=1e-4)
    args = ap.parse_args()
    need(["torch", "transformers", "safetensors"])
    import torch
    from transformers import AutoModelForCausalLM

    sequences, expected = load_expected(args.expected)
    need_dir(args.merged, ["config.json"], "merged model")
    try:
        model, info = AutoModelForCausalLM.from_pretrained(args.merged, attn_implementation="eager",
                                                           torch_dtype=torch.float32, output_loading_info=True)
    except Exception as e:  # noqa: BLE001
        print(f"FAIL: transformers cannot load {args.merged}: {type(e).__name__}: {e}")
        return 1
    # tied lm_head.weight may legitimately be absent from the file
    missing = [k for k in info.get("missing_keys", []) if k != "lm_head.weight"]
    unexpected = list(info.get("unexpected_keys", []))
    mismatched = list(info.get("mismatched_keys", []))
    if missing or unexpected or mismatched:
        print(f"FAIL: {args.merged}: missing {missing}, unexpected {unexpected}, mismatched {mismatched}")
        return 1
    model = model.float().eval()
    return compare(model, sequences, expected, args.atol, f"merged model {args.merged}")


if __name__ == "__main__":
    sys.exit(main())
