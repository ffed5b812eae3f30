#!/usr/bin/env python3
"""Checks the adapters `qlora finetune` wrote for Gemma 4 folders with PEFT, as users load them.

Usage: python3 tests/compat/gemma4_adapter_load.py --base DIR --adapter DIR [--merged DIR] [--base ... --adapter ...]
  --base     a Gemma 4 folder qlora trained on: Gemma4ForCausalLM (tests/data/gemma4_cli) or
             Gemma4ForConditionalGeneration with vision and audio towers (tests/data/gemma4_cli_mm)
  --adapter  the adapter qlora finetune wrote for it
  --merged   optional, after each pair it belongs to: the folder `qlora merge` wrote from them
Checks, for each pair:
  1. PEFT builds the adapter's LoraConfig on the base's class (on the multimodal class a list of names fails there:
     the towers' Gemma4ClippableLinear modules share the names and PEFT refuses them, so qlora writes a regex over
     the text model), and saves exactly the adapter's keys and shapes (no k/v on KV-sharing layers, no v on k = v
     layers);
  2. PeftModel.from_pretrained loads every tensor of the file with its values, and the loaded adapter changes the
     logits (it is applied, not ignored);
  3. transformers loads the merged folder as the base's class, with every tensor of the base (towers included); a
     float32 merge gives PEFT's base + adapter logits within 1e-4, a bfloat16 one has every weight equal to PEFT's
     merge_and_unload weight within bf16's rounding.
Exits 0 when all pass, 1 otherwise, 77 ("skipped: ...") when torch, transformers, peft or safetensors is missing.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _logits_common import adapter_file_shapes, need, need_dir, peft_load_problem, peft_saved_shapes  # noqa: E402


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


def check(base_dir, adapter_dir, merged_dir):
    import torch
    import transformers
    from peft import PeftModel

    need_dir(base_dir, ["config.json"], "base model")
    need_dir(adapter_dir, ["adapter_config.json", "adapter_model.safetensors"], "adapter")
    with open(os.path.join(base_dir, "config.json"), encoding="utf-8") as f:
        arch = json.load(f)["architectures"][0]
    cls = getattr(transformers, arch)

    def load():
        return cls.from_pretrained(base_dir, attn_implementation="eager", dtype=torch.float32).eval()

    with open(os.path.join(adapter_dir, "adapter_config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    ours = adapter_file_shapes(adapter_dir)
    theirs = peft_saved_shapes(load(), cfg)
    if ours != theirs:
        fail(f"{arch}: adapter keys differ from PEFT's: only qlora {sorted(set(ours) - set(theirs))[:5]}, "
             f"only PEFT {sorted(set(theirs) - set(ours))[:5]}")
    print(f"ok: {arch}: target_modules {cfg['target_modules']!r}; PEFT saves the same {len(ours)} keys")

    peft_model = PeftModel.from_pretrained(load(), adapter_dir).eval()
    problem = peft_load_problem(peft_model, adapter_dir)
    if problem:
        fail(f"{arch}: {problem}")
    ids = torch.tensor([[2, 17, 200, 45, 45, 9, 120, 3, 77, 250, 11]])
    with torch.no_grad():
        with_adapter = peft_model(input_ids=ids).logits
        with peft_model.disable_adapter():
            without = peft_model(input_ids=ids).logits
    moved = (with_adapter - without).abs().max().item()
    if not moved > 0:
        fail(f"{arch}: the loaded adapter does not change the logits")
    print(f"ok: {arch}: PEFT loads every tensor; the adapter moves the logits by up to {moved:.3g}")
    if merged_dir is None:
        return
    need_dir(merged_dir, ["config.json", "model.safetensors"], "merged model")
    with open(os.path.join(merged_dir, "config.json"), encoding="utf-8") as f:
        merged_cfg = json.load(f)
    if merged_cfg["architectures"] != [arch]:
        fail(f"the merged folder is {merged_cfg['architectures']}, not {arch}")
    merged = cls.from_pretrained(merged_dir, attn_implementation="eager", dtype=torch.float32).eval()
    base_keys = set(load().state_dict())
    if set(merged.state_dict()) != base_keys:
        fail(f"{arch}: the merged model's tensors differ from the base's")
    dtype = merged_cfg.get("dtype", merged_cfg.get("torch_dtype"))
    if dtype == "float32":
        with torch.no_grad():
            diff = (merged(input_ids=ids).logits - with_adapter).abs().max().item()
        if diff > 1e-4:
            fail(f"{arch}: the merged folder's logits differ from PEFT's base + adapter by {diff} > 1e-4")
        print(f"ok: {arch}: the float32 merged folder gives PEFT's base + adapter logits within {diff:.3g}")
        return
    # bfloat16: every weight is PEFT's merge_and_unload (fp32) rounded to bf16 (these tiny random models amplify
    # bf16 rounding too much for a logits comparison to mean anything)
    ref = PeftModel.from_pretrained(load(), adapter_dir).merge_and_unload().state_dict()
    got = merged.state_dict()
    worst = 0.0
    for k, v in ref.items():
        err = ((got[k] - v).abs() / (v.abs() + 1e-30)).max().item() if v.numel() else 0.0
        worst = max(worst, err)
    if worst > 2 ** -8 * 1.01:  # u = 2^-8, and the fp32 sums on the two sides may round apart
        fail(f"{arch}: a bfloat16 merged weight is {worst} (relative) from PEFT's merged weight rounded to bf16")
    print(f"ok: {arch}: every bfloat16 merged weight is PEFT's merged weight within bf16 rounding ({worst:.3g})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", action="append", required=True)
    ap.add_argument("--adapter", action="append", required=True)
    ap.add_argument("--merged", action="append", default=[])
    # --merged belongs to the pair before it
    merged_of = {}
    argv = sys.argv[1:]
    for i, a in enumerate(argv):
        if a == "--merged" and i + 1 < len(argv):
            merged_of[len([x for x in argv[:i] if x == "--adapter"]) - 1] = argv[i + 1]
    args = ap.parse_args()
    if len(args.base) != len(args.adapter):
        fail("give one --adapter for each --base")
    need(["torch", "transformers", "peft", "safetensors"])
    for i, (base, adapter) in enumerate(zip(args.base, args.adapter)):
        check(base, adapter, merged_of.get(i))


if __name__ == "__main__":
    main()
