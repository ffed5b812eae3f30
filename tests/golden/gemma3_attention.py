#!/usr/bin/env python3
"""Golden data for ops/attention.hpp and ops/cross_entropy.hpp from transformers' Gemma 3 code and torch.

Attention: transformers.models.gemma3.modeling_gemma3.eager_attention_forward (the function Gemma3Attention calls for
attn_implementation="eager") on q, k, v as they arrive after the q/k norm and RoPE, with the 4-D mask built exactly as
Gemma3TextModel.forward builds it: transformers.masking_utils.create_causal_mask (global layers) or
create_sliding_window_causal_mask (local layers) from a Gemma3TextConfig (eager, sliding_window 16), inputs_embeds,
attention_mask=None, cache=None and position_ids. Packed cases pass position_ids that restart at 0 for each packed
sequence; transformers then detects the packing (find_packed_sequence_indices) and masks across sequences — the
segment ids the C++ op takes are that detection's output. Gradients by torch autograd of sum(out * dout).
Cross-entropy: logits = hidden · tableᵀ (optionally soft-capped as Gemma3ForCausalLM does), then
torch.nn.functional.cross_entropy(ignore_index=-100, reduction="mean"); its value and d_hidden.

To stay under 1 MB the random inputs are not stored: both sides generate them with `hash_uniform` (integer hash,
exact in float32; tests/ops/attention.cpp reimplements it). Outputs are raw little-endian float32/int32 + manifest.json
in tests/data/gemma3_attention/ (read by tests/support/golden.hpp). Modules are built from configs, never
from_pretrained. Run:  pip install torch transformers numpy && python3 tests/golden/gemma3_attention.py
"""
import json
import os

import numpy as np
import torch
import torch.nn.functional as F
import transformers
from transformers import Gemma3TextConfig
from transformers.masking_utils import create_causal_mask, find_packed_sequence_indices, \
    create_sliding_window_causal_mask
from transformers.models.gemma3.modeling_gemma3 import eager_attention_forward

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "gemma3_attention")
arrays, params = {}, {}


def hash_uniform(seed, shape, amplitude):
    """amplitude · (u / 2^23 − 1) with u the top 24 bits of a 32-bit integer hash of (seed, flat index): exact float32."""
    n = np.arange(int(np.prod(shape)), dtype=np.uint64)
    u = (n * np.uint64(2654435761) + np.uint64(seed) * np.uint64(40503)) & np.uint64(0xFFFFFFFF)
    u ^= u >> np.uint64(15)
    u = (u * np.uint64(2246822519)) & np.uint64(0xFFFFFFFF)
    u ^= u >> np.uint64(13)
    u = (u * np.uint64(3266489917)) & np.uint64(0xFFFFFFFF)
    u ^= u >> np.uint64(16)
    x = ((u >> np.uint64(8)).astype(np.float64) / 2.0 ** 23 - 1.0) * amplitude
    return torch.from_numpy(x.astype(np.float32).reshape(shape))


def save(name, t):
    a = t.detach().float().numpy() if isinstance(t, torch.Tensor) and t.is_floating_point() else np.asarray(t)
    a = np.ascontiguousarray(a, dtype=np.float32 if a.dtype.kind == "f" else np.int32)
    a.astype(a.dtype.newbyteorder("<")).tofile(os.path.join(OUT, name + ".bin"))
    arrays[name] = {"file": name + ".bin", "dtype": "float32" if a.dtype.kind == "f" else "int32",
                    "shape": list(a.shape)}


class Module:  # what eager_attention_forward reads from Gemma3Attention
    def __init__(self, groups, head_dim):
        self.num_key_value_groups, self.head_dim, self.training = groups, head_dim, False


def attention_case(case, seed, q_heads, kv_heads, head_dim, lengths, window):
    """One layer's attention over the packed sequences `lengths` (one entry: no packing); window 0: global layer."""
    tokens = sum(lengths)
    cfg = Gemma3TextConfig(vocab_size=16, hidden_size=64, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=q_heads, num_key_value_heads=kv_heads, head_dim=head_dim,
                           query_pre_attn_scalar=head_dim, sliding_window=max(window, 1),
                           attn_implementation="eager")
    cfg._attn_implementation = "eager"
    position_ids = torch.cat([torch.arange(n) for n in lengths]).unsqueeze(0)
    kwargs = dict(config=cfg, inputs_embeds=torch.zeros(1, tokens, cfg.hidden_size), attention_mask=None, cache=None,
                  position_ids=position_ids)
    mask = create_sliding_window_causal_mask(**kwargs) if window else create_causal_mask(**kwargs)
    packed = find_packed_sequence_indices(position_ids)
    segments = packed[0] if packed is not None else torch.zeros(tokens, dtype=torch.int64)
    scale = cfg.query_pre_attn_scalar ** -0.5  # Gemma3Attention.scaling

    # q, k, v in the op's layout [T, H, D]; eager_attention_forward takes [B, H, T, D] and returns [B, T, H, D]
    q = hash_uniform(seed, (tokens, q_heads, head_dim), 2.0).requires_grad_(True)
    k = hash_uniform(seed + 1, (tokens, kv_heads, head_dim), 2.0).requires_grad_(True)
    v = hash_uniform(seed + 2, (tokens, kv_heads, head_dim), 1.0).requires_grad_(True)
    dout = hash_uniform(seed + 3, (tokens, q_heads, head_dim), 1.0)
    to_bhtd = lambda x: x.permute(1, 0, 2).unsqueeze(0)
    out, _ = eager_attention_forward(Module(q_heads // kv_heads, head_dim), to_bhtd(q), to_bhtd(k), to_bhtd(v), mask,
                                     dropout=0.0, scaling=scale, softcap=None)
    out = out[0]  # [T, Hq, D]
    out.backward(dout)
    save(f"{case}_segments", segments)
    for n, t in (("out", out), ("dq", q.grad), ("dk", k.grad), ("dv", v.grad)):
        save(f"{case}_{n}", t)
    params[case] = {"seed": seed, "tokens": tokens, "q_heads": q_heads, "kv_heads": kv_heads, "head_dim": head_dim,
                    "window": window, "scale": scale, "lengths": lengths,
                    "amplitudes": {"q": 2.0, "k": 2.0, "v": 1.0, "dout": 1.0},
                    "mask": "create_sliding_window_causal_mask" if window else "create_causal_mask"}


def cross_entropy_case(case, seed, tokens, hidden, vocab, softcap, amplitude):
    h = hash_uniform(seed, (tokens, hidden), amplitude).requires_grad_(True)
    table = hash_uniform(seed + 1, (vocab, hidden), 1.0)
    labels = torch.from_numpy((np.arange(tokens) * 7919 + seed * 31) % vocab).long()
    labels[::5] = -100  # some ignored positions, as prompt masking and padding leave them
    logits = h @ table.T
    if softcap:  # Gemma3ForCausalLM.forward with final_logit_softcapping
        logits = torch.tanh(logits / softcap) * softcap
    loss = F.cross_entropy(logits, labels, ignore_index=-100)
    loss.backward()
    save(f"{case}_labels", labels)
    save(f"{case}_loss", loss.reshape(1))
    save(f"{case}_dhidden", h.grad)
    params[case] = {"seed": seed, "tokens": tokens, "hidden": hidden, "vocab": vocab, "softcap": softcap,
                    "amplitudes": {"hidden": amplitude, "table": 1.0}, "count": int((labels != -100).sum())}


def main():
    os.makedirs(OUT, exist_ok=True)
    attention_case("gqa1_d256_sliding", 11, 4, 1, 256, [40], 16)
    attention_case("gqa2_d128_sliding_packed", 21, 4, 2, 128, [23, 17], 16)
    attention_case("gqa1_d128_global_packed", 31, 4, 1, 128, [12, 9, 11], 0)
    cross_entropy_case("ce", 41, 20, 64, 1000, 0.0, 0.5)
    cross_entropy_case("ce_softcap", 51, 20, 64, 1000, 3.0, 0.5)
    manifest = {"torch": torch.__version__, "transformers": transformers.__version__, "arrays": arrays,
                "params": params,
                "inputs": "hash_uniform(seed + i, shape, amplitude) for q, k, v, dout (i = 0..3) and hidden, table "
                          "(i = 0, 1); see tests/golden/gemma3_attention.py"}
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
