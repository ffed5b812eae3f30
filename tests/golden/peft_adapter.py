#!/usr/bin/env python3
"""What PEFT writes for a LoRA adapter on Gemma 3, for tests/io/peft.cpp.

Builds a tiny Gemma3ForCausalLM from a Gemma3TextConfig (no download), wraps it with peft's LoraConfig (r 4,
alpha 8, dropout 0.05, all seven projections), saves it with save_pretrained and keeps:
  adapter_config.json  exactly as PEFT writes it,
  keys.json            the tensor names, shapes and dtypes of adapter_model.safetensors, in file order.
Run:  pip install torch transformers peft safetensors && python3 tests/golden/peft_adapter.py
"""
import json
import os
import tempfile

import peft
import torch
import transformers
from peft import LoraConfig, get_peft_model
from safetensors import safe_open
from transformers import Gemma3ForCausalLM, Gemma3TextConfig


def main():
    torch.manual_seed(0)
    config = Gemma3TextConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=2, head_dim=8, sliding_window=4,
                              query_pre_attn_scalar=8, max_position_embeddings=64)
    model = Gemma3ForCausalLM(config)
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.05, task_type="CAUSAL_LM",
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    model = get_peft_model(model, lora)
    out_dir = os.path.join(os.path.dirname(__file__), "..", "data", "peft")
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        with open(os.path.join(tmp, "adapter_config.json"), encoding="utf-8") as f:
            adapter_config = f.read()
        keys = []
        with safe_open(os.path.join(tmp, "adapter_model.safetensors"), "pt") as f:
            metadata = f.metadata()
            for name in f.keys():
                t = f.get_tensor(name)
                keys.append({"name": name, "shape": list(t.shape), "dtype": str(t.dtype)})
    with open(os.path.join(out_dir, "adapter_config.json"), "w", encoding="utf-8") as f:
        f.write(adapter_config)
    with open(os.path.join(out_dir, "keys.json"), "w", encoding="utf-8") as f:
        json.dump({"versions": {"peft": peft.__version__, "transformers": transformers.__version__,
                                "torch": torch.__version__},
                   "metadata": metadata, "tensors": keys}, f, indent=1)
    print(f"wrote {out_dir}: {len(keys)} tensors (peft {peft.__version__})")


if __name__ == "__main__":
    main()
