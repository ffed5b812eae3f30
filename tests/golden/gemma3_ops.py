#!/usr/bin/env python3
"""Golden data for the Gemma 3 operators (RMSNorm, scaled embedding, RoPE, GeGLU) from transformers' own modules.

Every module is built directly from a Gemma3TextConfig (never from_pretrained: no network, no weights), run on the
CPU, and its inputs, outputs and autograd gradients are written as raw little-endian arrays plus a manifest:
  tests/data/gemma3_ops/manifest.json   {"torch", "transformers", "arrays": {name: {file, dtype, shape}},
                                          "params": {case: {...}}}
  tests/data/gemma3_ops/<name>.bin      float32 or int32; bf16 results are stored widened to float32 (exact).
Inputs of the bf16 cases are the fp32 inputs rounded to bf16 (round to nearest even, as torch's .bfloat16()).
Read by tests/support/golden.hpp in tests/ops/{rmsnorm,embedding,rope,activation}.cpp.
Run:  pip install torch transformers numpy && python3 tests/golden/gemma3_ops.py   (re-runnable; same seed, same files)
"""
import json
import os

import numpy as np
import torch
import transformers
from transformers import Gemma3TextConfig
from transformers.models.gemma3.modeling_gemma3 import (Gemma3MLP, Gemma3RMSNorm, Gemma3RotaryEmbedding,
                                                        Gemma3TextScaledWordEmbedding, apply_rotary_pos_emb)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "gemma3_ops")
arrays, params = {}, {}


def save(name, t):
    """Writes tensor/array `t` (float -> float32, integer -> int32) as <name>.bin and records it."""
    a = t.detach().float().numpy() if isinstance(t, torch.Tensor) and t.is_floating_point() else np.asarray(t)
    a = np.ascontiguousarray(a, dtype=np.float32 if a.dtype.kind == "f" else np.int32)
    a.astype(a.dtype.newbyteorder("<")).tofile(os.path.join(OUT, name + ".bin"))
    arrays[name] = {"file": name + ".bin", "dtype": "float32" if a.dtype.kind == "f" else "int32",
                    "shape": list(a.shape)}


def config(**kw):
    base = dict(vocab_size=12, hidden_size=640, intermediate_size=256, num_hidden_layers=6, num_attention_heads=4,
                num_key_value_heads=1, head_dim=256, rms_norm_eps=1e-6, rope_theta=1000000.0,
                rope_local_base_freq=10000.0, rope_scaling={"rope_type": "linear", "factor": 8.0},
                hidden_activation="gelu_pytorch_tanh", max_position_embeddings=131072)
    base.update(kw)
    return Gemma3TextConfig(**base)


def rmsnorm(g):
    # rows of hidden 640 (one row scaled up, one tiny) and the per-head q-norm shape [tokens, heads, head_dim]
    for case, shape in (("rmsnorm", (6, 640)), ("rmsnorm_heads", (3, 4, 256))):
        x = torch.randn(shape, generator=g)
        x[0] *= 30.0
        x[1] *= 1e-3
        norm = Gemma3RMSNorm(shape[-1], eps=1e-6)
        with torch.no_grad():
            norm.weight.copy_(0.5 * torch.randn(shape[-1], generator=g))
        xv = x.clone().requires_grad_(True)
        y = norm(xv)
        dy = torch.randn(shape, generator=g)
        y.backward(dy)
        for n, t in (("x", x), ("w", norm.weight), ("y", y), ("dy", dy), ("dx", xv.grad), ("dw", norm.weight.grad)):
            save(f"{case}_{n}", t)
        params[case] = {"eps": 1e-6}
    # bf16 activations and weight: computed in fp32, rounded once
    x, w = arrays_input("rmsnorm_x"), arrays_input("rmsnorm_w")
    norm = Gemma3RMSNorm(640, eps=1e-6).to(torch.bfloat16)
    with torch.no_grad():
        norm.weight.copy_(w.bfloat16())
    save("rmsnorm_bf16_w", norm.weight)
    save("rmsnorm_bf16_y", norm(x.bfloat16()))


def arrays_input(name):
    a = np.fromfile(os.path.join(OUT, arrays[name]["file"]), dtype="<f4").reshape(arrays[name]["shape"])
    return torch.from_numpy(a.copy())


def embedding(g):
    cfg = config()
    ids = torch.tensor([0, 5, 11, 5, 7, 0, 3, 5, 10, 1], dtype=torch.int64)
    for dtype, name in ((torch.float32, "f32"), (torch.bfloat16, "bf16")):
        # as Gemma3TextModel builds it: embed_scale = hidden_size ** 0.5, cast to the weight dtype in forward
        emb = Gemma3TextScaledWordEmbedding(cfg.vocab_size, cfg.hidden_size, cfg.pad_token_id,
                                            embed_scale=cfg.hidden_size ** 0.5).to(dtype)
        with torch.no_grad():
            emb.weight.copy_(torch.randn(cfg.vocab_size, cfg.hidden_size, generator=g).to(dtype))
        y = emb(ids)
        save(f"embedding_{name}_table", emb.weight)
        save(f"embedding_{name}_y", y)
        params[f"embedding_{name}"] = {"hidden": cfg.hidden_size, "vocab": cfg.vocab_size,
                                       "scale": float(emb.embed_scale.to(dtype)), "padding_idx": emb.padding_idx}
        if dtype == torch.float32:
            dy = torch.randn(y.shape, generator=g)
            y.backward(dy)
            save("embedding_f32_dy", dy)
            save("embedding_f32_dtable", emb.weight.grad)
    save("embedding_ids", ids.to(torch.int32))


def rope(g):
    cfg = config()
    rotary = Gemma3RotaryEmbedding(cfg)
    # a packed batch: three sequences whose positions restart at 0, then two far positions
    positions = torch.tensor([[0, 1, 2, 3, 4, 5, 0, 1, 2, 0, 1, 4095, 131071]])
    tokens, heads, d = positions.shape[1], 2, cfg.head_dim
    save("rope_positions", positions[0].to(torch.int32))
    q = torch.randn(1, tokens, heads, d, generator=g)
    save("rope_q", q[0])
    for layer_type, case in (("sliding_attention", "rope_local"), ("full_attention", "rope_global")):
        rp = cfg.rope_parameters[layer_type]
        params[case] = {"theta": float(rp["rope_theta"]), "factor": float(rp.get("factor", 1.0)), "head_dim": d,
                        "rope_type": rp["rope_type"]}
        for dtype, suffix in ((torch.float32, ""), (torch.bfloat16, "_bf16")):
            x = q.to(dtype).clone().requires_grad_(dtype == torch.float32)
            cos, sin = rotary(x, positions, layer_type)  # [1, T, D] in x's dtype
            out, _ = apply_rotary_pos_emb(x, x, cos, sin, unsqueeze_dim=2)  # x: [1, T, H, D]
            save(f"{case}{suffix}_out", out[0])
            if dtype == torch.float32:
                save(f"{case}_cos", cos[0])
                save(f"{case}_sin", sin[0])
                dy = torch.randn(out.shape, generator=g)
                out.backward(dy)
                save(f"{case}_dy", dy[0])
                save(f"{case}_dq", x.grad[0])


def geglu(g):
    act = Gemma3MLP(config()).act_fn  # ACT2FN["gelu_pytorch_tanh"]
    gate = torch.randn(8, 256, generator=g) * 3.0
    gate[0, :8] = torch.tensor([0.0, -0.0, 1e-4, -1e-4, 8.0, -8.0, 20.0, -20.0])
    up = torch.randn(8, 256, generator=g)
    gv, uv = gate.clone().requires_grad_(True), up.clone().requires_grad_(True)
    out = act(gv) * uv
    dy = torch.randn(out.shape, generator=g)
    out.backward(dy)
    for n, t in (("gate", gate), ("up", up), ("out", out), ("dy", dy), ("dgate", gv.grad), ("dup", uv.grad)):
        save(f"geglu_{n}", t)
    save("geglu_bf16_out", act(gate.bfloat16()) * up.bfloat16())
    params["geglu"] = {"activation": "gelu_pytorch_tanh"}


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(20250301)
    rmsnorm(g)
    embedding(g)
    rope(g)
    geglu(g)
    manifest = {"torch": torch.__version__, "transformers": transformers.__version__, "arrays": arrays,
                "params": params}
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
    total = sum(os.path.getsize(os.path.join(OUT, a["file"])) for a in arrays.values())
    print(f"wrote {len(arrays)} arrays ({total} bytes) to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
