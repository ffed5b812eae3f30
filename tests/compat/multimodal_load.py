#!/usr/bin/env python3
"""Checks what `qlora finetune / merge / export` wrote for a Gemma3ForConditionalGeneration folder, with the Python
libraries that users load it with.

Usage: python3 tests/compat/multimodal_load.py --base DIR --adapter DIR --merged DIR [--gguf FILE] [--atol 1e-4]
  --base     the multimodal base folder qlora trained on (tests/data/gemma3_mm/hf5)
  --adapter  the adapter qlora finetune wrote (adapter_config.json + adapter_model.safetensors)
  --merged   the folder `qlora merge --merge-into original` wrote
  --gguf     the GGUF `qlora export` wrote (optional; read with gguf-py)
Checks:
  1. PEFT loads the adapter on Gemma3ForConditionalGeneration with no missing and no unexpected keys, and the file has
     exactly the keys PEFT itself saves for that LoraConfig on that class (vision tower included);
  2. transformers loads the merged folder as Gemma3ForConditionalGeneration, its vision tower equals the base's, and
     its logits equal PEFT's (base + adapter) within atol;
  3. the GGUF holds the text model (gemma3 architecture, every text tensor, the tokenizer padded to vocab_size).
Exits 0 when all pass, 1 otherwise, 77 ("skipped: ...") when torch, transformers, peft or safetensors is missing.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _logits_common import adapter_file_shapes, need, need_dir, peft_load_problem, peft_saved_shapes  # noqa: E402

SEQUENCES = [[2, 17, 200, 45, 45, 9, 120, 3, 77, 250, 11], [2, 5, 4, 300, 301, 302, 5, 1]]


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True)
    ap.add_argument("--adapter", required=True)
    ap.add_argument("--merged", required=True)
    ap.add_argument("--gguf")
    ap.add_argument("--atol", type=float, default=1e-4)
    args = ap.parse_args()
    need(["torch", "transformers", "peft", "safetensors"])
    import torch
    from peft import PeftModel
    from transformers import Gemma3ForConditionalGeneration

    need_dir(args.base, ["config.json"], "base model")
    need_dir(args.adapter, ["adapter_config.json", "adapter_model.safetensors"], "adapter")
    need_dir(args.merged, ["config.json", "model.safetensors"], "merged model")

    def load(path):
        m = Gemma3ForConditionalGeneration.from_pretrained(path, attn_implementation="eager", dtype=torch.float32)
        return m.eval()

    # 1. keys: what PEFT saves for the same LoraConfig on the same class
    with open(os.path.join(args.adapter, "adapter_config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    ours = adapter_file_shapes(args.adapter)
    theirs = peft_saved_shapes(load(args.base), cfg)
    if ours != theirs:
        only_ours = sorted(set(ours) - set(theirs))[:5]
        only_theirs = sorted(set(theirs) - set(ours))[:5]
        differ = sorted(k for k in set(ours) & set(theirs) if ours[k] != theirs[k])[:5]
        fail(f"adapter keys differ from PEFT's: only qlora {only_ours}, only PEFT {only_theirs}, shapes {differ}")
    vision = sum("vision_tower" in k for k in ours)
    print(f"ok: the adapter has PEFT's {len(ours)} keys for Gemma3ForConditionalGeneration ({vision} in the vision tower)")

    peft_model = PeftModel.from_pretrained(load(args.base), args.adapter).eval()
    problem = peft_load_problem(peft_model, args.adapter)
    if problem:
        fail(problem)
    print("ok: PEFT loads every tensor of the adapter")

    # 2. the merged folder
    merged = load(args.merged)
    base = load(args.base)
    with open(os.path.join(args.merged, "config.json"), encoding="utf-8") as f:
        if json.load(f).get("architectures") != ["Gemma3ForConditionalGeneration"]:
            fail("the merged config.json is not Gemma3ForConditionalGeneration's")
    base_state, merged_state = base.state_dict(), merged.state_dict()
    for k, v in base_state.items():
        if "vision_tower" in k or "multi_modal_projector" in k:
            if not torch.equal(v, merged_state[k]):
                fail(f"the merged vision tower differs from the base's at {k}")
    worst = 0.0
    with torch.no_grad():
        for ids in SEQUENCES:
            x = torch.tensor([ids])
            a = peft_model(input_ids=x).logits[0].float()
            b = merged(input_ids=x).logits[0].float()
            worst = max(worst, (a - b).abs().max().item())
    print(f"merged folder vs PEFT (base + adapter): max |logit difference| {worst:.3g}")
    if worst > args.atol:
        fail(f"the merged model's logits differ from PEFT's by {worst} > {args.atol}")
    print("ok: transformers loads the merge as Gemma3ForConditionalGeneration with PEFT's logits")

    # 3. the GGUF
    if args.gguf:
        try:
            import gguf
        except ImportError:
            print("skipped part 3: gguf-py is not installed (pip install gguf)")
            return 0
        r = gguf.GGUFReader(args.gguf)
        arch = bytes(r.fields["general.architecture"].parts[-1]).decode()
        tokens = len(r.fields["tokenizer.ggml.tokens"].data)
        names = {t.name for t in r.tensors}
        text_cfg = base.config.text_config
        want = 2 + 13 * text_cfg.num_hidden_layers
        if arch != "gemma3" or tokens != text_cfg.vocab_size or len(names) != want or "token_embd.weight" not in names:
            fail(f"GGUF: architecture {arch}, {tokens} tokens (want {text_cfg.vocab_size}), {len(names)} tensors (want {want})")
        print(f"ok: the GGUF holds the text model ({len(names)} tensors, {tokens} tokens)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
