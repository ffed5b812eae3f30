#!/usr/bin/env python3
"""A PEFT adapter with per-module ranks and alphas on a subset of the projections, and the logits PEFT computes with it.

Base: the committed random model tests/data/gemma3_model/tiny (Gemma3ForCausalLM, fp32, eager attention).
Adapter: PEFT LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "o_proj", "down_proj"],
rank_pattern={"down_proj": 6, "layers.0.self_attn.q_proj": 2, "model.layers.5.self_attn.v_proj": 1},
alpha_pattern={"o_proj": 3, "layers.5.mlp.down_proj": 12}, use_rslora=False, task_type CAUSAL_LM) after
torch.manual_seed(0); every lora_B is then set to normal(0, 0.05) after torch.manual_seed(1) (named_parameters order)
so the adapter changes the logits. k_proj, gate_proj and up_proj carry no adapter.

Writes tests/data/peft_rank_pattern/: adapter/ (save_pretrained: adapter_config.json + adapter_model.safetensors),
expected.json {versions, ranks {module: r} as PEFT built them, scalings {module: s}, sequence, logits [T][vocab] of the
adapted model, base_logits of the base}.

Run:  pip install torch transformers peft safetensors && python3 tests/golden/peft_rank_pattern.py
"""
import json
import os
import shutil

import peft
import torch
import transformers
from peft import LoraConfig, get_peft_model
from transformers import Gemma3ForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
BASE = os.path.join(HERE, "..", "data", "gemma3_model", "tiny")
OUT = os.path.join(HERE, "..", "data", "peft_rank_pattern")
SEQUENCE = [2, 17, 200, 45, 45, 9, 120, 3, 77, 250, 11]


def main():
    torch.manual_seed(0)
    base = Gemma3ForCausalLM.from_pretrained(BASE, torch_dtype=torch.float32, attn_implementation="eager").eval()
    ids = torch.tensor([SEQUENCE])
    with torch.no_grad():
        base_logits = base(ids).logits[0].tolist()
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, task_type="CAUSAL_LM",
                        target_modules=["q_proj", "v_proj", "o_proj", "down_proj"],
                        rank_pattern={"down_proj": 6, "layers.0.self_attn.q_proj": 2,
                                      "model.layers.5.self_attn.v_proj": 1},
                        alpha_pattern={"o_proj": 3, "layers.5.mlp.down_proj": 12})
    model = get_peft_model(base, config)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.05)
    model.eval()
    ranks, scalings = {}, {}
    for name, module in model.named_modules():
        if hasattr(module, "lora_A") and "default" in getattr(module, "lora_A", {}):
            key = name.replace("base_model.model.", "", 1)
            ranks[key] = module.r["default"]
            scalings[key] = module.scaling["default"]
    with torch.no_grad():
        logits = model(ids).logits[0].tolist()
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    model.save_pretrained(os.path.join(OUT, "adapter"))
    os.remove(os.path.join(OUT, "adapter", "README.md"))
    config_path = os.path.join(OUT, "adapter", "adapter_config.json")
    with open(config_path) as f:
        saved = json.load(f)
    saved["base_model_name_or_path"] = "tests/data/gemma3_model/tiny"  # not this machine's absolute path
    with open(config_path, "w") as f:
        json.dump(saved, f, indent=2, sort_keys=True)
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump({"versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                                "peft": peft.__version__},
                   "ranks": ranks, "scalings": scalings, "sequence": SEQUENCE, "logits": logits,
                   "base_logits": base_logits}, f)
    print("wrote", OUT, "with", len(ranks), "adapted modules")


if __name__ == "__main__":
    main()
