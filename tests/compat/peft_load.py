#!/usr/bin/env python3
"""Checks that PEFT loads a LoRA adapter written by qlora and that it computes the expected logits.

Usage: python3 tests/compat/peft_load.py --base DIR --adapter DIR --expected JSON [--atol 1e-4]
  --base      a transformers Gemma 3 or Gemma 4 folder (config.json + model.safetensors), loaded fp32, eager attention
  --adapter   a PEFT adapter folder (adapter_config.json + adapter_model.safetensors), applied with
              peft.PeftModel.from_pretrained
  --expected  JSON with "sequences" and "logits" (layout of tests/data/gemma3_model/tiny_logits.json), or with
              "final_logits" holding them (tests/data/gemma3_train/train.json)
Prints the max abs and max relative difference; exits 0 when max abs diff <= atol, 1 otherwise (or when loading
fails), 77 ("skipped: ...") when torch, transformers or peft is not installed.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _logits_common import compare, load_expected, need, need_dir  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True)
    ap.add_argument("--adapter", required=True)
    ap.add_argument("--expected", required=True)
    ap.add_argument("--atol", type=float, default=1e-4)
    args = ap.parse_args()
    need(["torch", "transformers", "peft", "safetensors"])
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    sequences, expected = load_expected(args.expected)
    need_dir(args.base, ["config.json"], "base model")
    need_dir(args.adapter, ["adapter_config.json"], "adapter")
    try:
        base = AutoModelForCausalLM.from_pretrained(args.base, attn_implementation="eager", torch_dtype=torch.float32)
    except Exception as e:  # noqa: BLE001
        print(f"FAIL: transformers cannot load the base model {args.base}: {type(e).__name__}: {e}")
        return 1
    try:
        model = PeftModel.from_pretrained(base, args.adapter, is_trainable=False)
    except Exception as e:  # noqa: BLE001
        print(f"FAIL: PEFT cannot load the adapter {args.adapter}: {type(e).__name__}: {e}")
        return 1
    model = model.float().eval()
    # PeftModel.from_pretrained warns but carries on when keys are missing; insist that every LoRA weight loaded.
    from safetensors import safe_open
    path = os.path.join(args.adapter, "adapter_model.safetensors")
    if os.path.exists(path):
        with safe_open(path, "pt") as f:
            n_file = len(list(f.keys()))
        n_model = sum(1 for n, _ in model.named_parameters() if "lora_" in n)
        if n_file != n_model:
            print(f"FAIL: the adapter file has {n_file} tensors but the PEFT model has {n_model} LoRA parameters")
            return 1
    return compare(model, sequences, expected, args.atol, f"PEFT {args.adapter} on {args.base}")


if __name__ == "__main__":
    sys.exit(main())
