#!/usr/bin/env python3
"""Golden data for what Gemma 4 changes in the operators and the layer plan, from transformers' own modules.

  * RMSNorm as Gemma4RMSNorm computes it: y = rms(x) · w (the stored scale, not 1 + w), and the weight-free norm
    (with_scale=False: v_norm, router.norm); outputs and autograd gradients, fp32 and bf16.
  * Proportional RoPE (Gemma4TextRotaryEmbedding for full-attention layers: head_dim 512, partial_rotary_factor
    0.25, θ 1e6, so 64 of the 256 pairs rotate) and the sliding layers' default RoPE at head_dim 256, applied with
    Gemma 4's apply_rotary_pos_emb; outputs and input gradients.
  * Layer plans: for tiny and published-size Gemma4TextConfigs, the config.json transformers writes and what its
    code derives per layer (layer type, head_dim, KV heads, KV-sharing mode, MLP width), for nn/gemma4_config.hpp.

Every module is built from a Gemma4TextConfig (never from_pretrained: no network, no weights) and run on the CPU.
Files: tests/data/gemma4_ops/manifest.json and <name>.bin, as tests/golden/golden_files.py writes them. Read by tests/support/golden.hpp in
tests/ops/{rmsnorm,rope}.cpp and tests/nn/gemma4_config.cpp.
Run:  pip install torch transformers numpy && python3 tests/golden/gemma4_ops.py   (re-runnable; same seed, same files)
"""
import json
import warnings

import torch
from transformers import Gemma4TextConfig
from transformers.models.gemma4.modeling_gemma4 import (Gemma4RMSNorm, Gemma4TextRotaryEmbedding,
                                                        apply_rotary_pos_emb)

from golden_files import GoldenSet

golden = GoldenSet("gemma4_ops")
save, params = golden.save, golden.params


def rmsnorm(g):
    # hidden rows (one scaled up, one tiny) with a stored scale around 1, and the weight-free norm on v heads
    for case, shape, with_scale in (("norm_w", (6, 640), True), ("norm_plain", (3, 2, 256), False)):
        x = torch.randn(shape, generator=g)
        x[0] *= 30.0
        x[1] *= 1e-3
        norm = Gemma4RMSNorm(shape[-1], eps=1e-6, with_scale=with_scale)
        if with_scale:
            with torch.no_grad():
                norm.weight.copy_(1.0 + 0.5 * torch.randn(shape[-1], generator=g))
        xv = x.clone().requires_grad_(True)
        y = norm(xv)
        dy = torch.randn(shape, generator=g)
        y.backward(dy)
        save(f"{case}_x", x)
        save(f"{case}_y", y)
        save(f"{case}_dy", dy)
        save(f"{case}_dx", xv.grad)
        if with_scale:
            save(f"{case}_w", norm.weight)
            save(f"{case}_dw", norm.weight.grad)
        bf16 = norm.to(torch.bfloat16)
        if with_scale:
            save(f"{case}_bf16_w", bf16.weight)
        save(f"{case}_bf16_y", bf16(x.bfloat16()))
        norm.to(torch.float32)
        params[case] = {"eps": 1e-6, "with_scale": with_scale}


def tiny_config(**kw):
    base = dict(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=6, num_attention_heads=2,
                num_key_value_heads=1, head_dim=256, global_head_dim=512, hidden_size_per_layer_input=0,
                vocab_size_per_layer_input=300, sliding_window=8, max_position_embeddings=131072)
    base.update(kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Gemma4TextConfig(**base)


def rope(g):
    cfg = tiny_config()
    rotary = Gemma4TextRotaryEmbedding(cfg)
    positions = torch.tensor([[0, 1, 2, 3, 4, 5, 0, 1, 2, 0, 1, 4095, 131071]])
    save("rope_positions", positions[0].to(torch.int32))
    tokens, heads = positions.shape[1], 2
    for layer_type, case in (("sliding_attention", "rope_sliding"), ("full_attention", "rope_full")):
        d = cfg.per_layer_config[layer_type].head_dim
        rp = cfg.rope_parameters[layer_type]
        params[case] = {"theta": float(rp["rope_theta"]), "factor": float(rp.get("factor", 1.0)),
                        "partial_rotary_factor": float(rp.get("partial_rotary_factor", 1.0)), "head_dim": d,
                        "rope_type": rp["rope_type"]}
        q = torch.randn(1, tokens, heads, d, generator=g)
        save(f"{case}_q", q[0])
        save(f"{case}_inv_freq", getattr(rotary, f"{layer_type}_inv_freq"))
        for dtype, suffix in ((torch.float32, ""), (torch.bfloat16, "_bf16")):
            x = q.to(dtype).clone().requires_grad_(dtype == torch.float32)
            cos, sin = rotary(x, positions, layer_type)
            out = apply_rotary_pos_emb(x, cos, sin, unsqueeze_dim=2)  # x: [1, T, H, D]
            save(f"{case}{suffix}_out", out[0])
            if dtype == torch.float32:
                dy = torch.randn(out.shape, generator=g)
                out.backward(dy)
                save(f"{case}_dy", dy[0])
                save(f"{case}_dq", x.grad[0])


# Layer plans. Tiny variants as tests/data would use them, and the published text sizes (MaxText's numbers, see
# docs/gemma4.md). Only the text config's structure matters here; no weights are made.
PLANS = {
    "tiny_dense_ple": dict(num_hidden_layers=6, hidden_size_per_layer_input=16),
    "tiny_kv_shared": dict(num_hidden_layers=8, layer_types=["sliding_attention", "sliding_attention",
                                                             "full_attention", "sliding_attention",
                                                             "full_attention", "sliding_attention",
                                                             "sliding_attention", "full_attention"],
                           num_kv_shared_layers=3, use_double_wide_mlp=True, hidden_size_per_layer_input=16),
    "tiny_k_eq_v": dict(num_hidden_layers=6, attention_k_eq_v=True, num_global_key_value_heads=1,
                        num_key_value_heads=2, num_attention_heads=4),
    "tiny_moe": dict(num_hidden_layers=6, enable_moe_block=True, num_experts=4, top_k_experts=2,
                     moe_intermediate_size=32),
    "e2b": dict(vocab_size=262144, vocab_size_per_layer_input=262144, hidden_size=1536, intermediate_size=6144,
                num_hidden_layers=35, num_attention_heads=8, num_key_value_heads=1, head_dim=256,
                layer_types=[("full_attention" if (i + 1) % 5 == 0 else "sliding_attention") for i in range(35)],
                hidden_size_per_layer_input=256, num_kv_shared_layers=20, use_double_wide_mlp=True,
                sliding_window=512, final_logit_softcapping=30.0),
    "e4b": dict(vocab_size=262144, vocab_size_per_layer_input=262144, hidden_size=2560, intermediate_size=10240,
                num_hidden_layers=42, num_attention_heads=8, num_key_value_heads=2, head_dim=256,
                hidden_size_per_layer_input=256, num_kv_shared_layers=18, sliding_window=512,
                final_logit_softcapping=30.0),
    "31b": dict(vocab_size=262144, hidden_size=5376, intermediate_size=21504, num_hidden_layers=60,
                num_attention_heads=32, num_key_value_heads=16, head_dim=256, num_global_key_value_heads=4,
                attention_k_eq_v=True, hidden_size_per_layer_input=0, sliding_window=1024,
                final_logit_softcapping=30.0, max_position_embeddings=262144),
    "26b_a4b": dict(vocab_size=262144, hidden_size=2816, intermediate_size=2112, num_hidden_layers=30,
                    num_attention_heads=16, num_key_value_heads=8, head_dim=256, num_global_key_value_heads=2,
                    attention_k_eq_v=True, hidden_size_per_layer_input=0, enable_moe_block=True, num_experts=128,
                    top_k_experts=8, moe_intermediate_size=704, sliding_window=1024, final_logit_softcapping=30.0,
                    max_position_embeddings=262144),
}


def plans():
    out = {}
    for name, kw in PLANS.items():
        cfg = tiny_config(**kw)
        modes = cfg.kv_sharing_modes
        layers = []
        for i, t in enumerate(cfg.layer_types):
            lc = cfg.per_layer_config[i]
            reuse = modes[i] == "reuse"
            layers.append({
                "type": t,
                "head_dim": lc.head_dim,
                "kv_heads": lc.num_key_value_heads,
                "kv_mode": modes[i] or "",
                "intermediate": cfg.intermediate_size * (2 if cfg.use_double_wide_mlp and reuse else 1),
                "k_eq_v": bool(cfg.attention_k_eq_v and t == "full_attention"),
            })
        # the config.json transformers writes, and the same with transformers' constructor arguments for the
        # full layers instead of the per_layer_config it derives (as configs written by other tools carry them)
        written = json.loads(cfg.to_json_string(use_diff=False))
        for k in ("id2label", "label2id"):
            written.pop(k, None)
        out[name] = {"config": written, "layers": layers}
    params["plans"] = out


def main():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(20261204)
    rmsnorm(g)
    rope(g)
    plans()
    golden.write_manifest()


if __name__ == "__main__":
    main()
