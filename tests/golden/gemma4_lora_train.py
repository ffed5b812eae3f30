#!/usr/bin/env python3
"""Reference loss curve of a 10-step LoRA fine-tune of a tiny Gemma 4 with transformers' Trainer + PEFT: the run of
gemma3_lora_train.py (same adapter settings, initial lora_B, 20 sequences, Trainer hyperparameters; see there) on
the committed tiny Gemma 4 checkpoint with per-layer embeddings tests/data/gemma4_model/dense_ple (written by
gemma4_model.py; its vocabulary of 96 tokens bounds the sequences' ids) and on the KV-sharing one, kv_shared.
Writes tests/data/gemma4_train/<variant>/ like tests/data/gemma3_train/.
Run:  pip install torch transformers peft accelerate safetensors numpy && python3 tests/golden/gemma4_lora_train.py
"""
import os

from transformers import Gemma4ForCausalLM

import gemma3_lora_train

HERE = os.path.dirname(os.path.abspath(__file__))
# The MoE run with smaller steps: AdamW's first steps move every weight by about the learning rate whatever its
# gradient's size, so fp32 rounding differences between the two sides grow step by step, and the routing (a
# discrete choice) turns them into visible loss differences sooner than in the dense models.
HP_OVERRIDES = {"moe": {"learning_rate": 1e-3}}

if __name__ == "__main__":
    for variant in ("dense_ple", "kv_shared", "moe"):
        gemma3_lora_train.main(base_dir=os.path.join(HERE, "..", "data", "gemma4_model", variant),
                               out_dir=os.path.join(HERE, "..", "data", "gemma4_train", variant),
                               model_class=Gemma4ForCausalLM, base_name=f"tests/data/gemma4_model/{variant}",
                               vocab=96, hp_overrides=HP_OVERRIDES.get(variant))
