#!/usr/bin/env python3
"""Tiny random Gemma 4 text checkpoints written by transformers, and their fp32 logits, for the model-parity tests.

One checkpoint per variant of the dense text model (docs/gemma4.md):
  dense_ple   per-layer embeddings (PLE), 6 layers, the last full (head_dim 32 vs 16 on sliding layers)
  kv_shared   PLE, 8 layers of which the last 3 reuse the keys and values of layers 3 (sliding) and 4 (full), with
              the double-wide MLP on those 3
  k_eq_v      keys = values on full layers (no v_proj there), 2 KV heads on sliding and 1 on full layers, no PLE
  moe         the mixture-of-experts block beside the dense MLP in every layer: 4 experts, top 2, expert width 24,
              no PLE
Each is Gemma4ForCausalLM in fp32 with random weights (normal, std 0.3 / sqrt(fan_in) for projections, norm scales
around 1, layer_scalar in [0.5, 1.5]) and final_logit_softcapping 5 so the cap bites; sliding_window 4, so the
window matters on 11-token sequences. Saved with save_pretrained (config.json + model.safetensors) under
tests/data/gemma4_model/<variant>/, and the logits of two sequences (11 and 6 tokens, run separately) in the
golden set tests/data/gemma4_model/manifest.json, computed in fp32 and (the same weights) in fp64 with RMSNorm,
RoPE and attention kept in fp64 (pure_fp64 below) and the embedding scales rounded to fp32 as in the fp32 model,
which compares the math with no fp32 rounding on either side.
Run:  pip install torch transformers numpy safetensors && python3 tests/golden/gemma4_model.py
"""
import contextlib
import math
import os
import warnings

import torch
from transformers import Gemma4ForCausalLM, Gemma4TextConfig
from transformers.models.gemma4 import modeling_gemma4

from golden_files import GoldenSet

golden = GoldenSet("gemma4_model")

BASE = dict(vocab_size=96, hidden_size=32, intermediate_size=48, num_attention_heads=2, num_key_value_heads=1,
            head_dim=16, global_head_dim=32, vocab_size_per_layer_input=96, sliding_window=4,
            max_position_embeddings=4096, final_logit_softcapping=5.0, rms_norm_eps=1e-6, pad_token_id=0,
            eos_token_id=1, bos_token_id=2, tie_word_embeddings=True)
VARIANTS = {
    "dense_ple": dict(num_hidden_layers=6, hidden_size_per_layer_input=8),
    "kv_shared": dict(num_hidden_layers=8, hidden_size_per_layer_input=8, num_kv_shared_layers=3,
                      use_double_wide_mlp=True,
                      layer_types=["sliding_attention", "sliding_attention", "full_attention", "sliding_attention",
                                   "full_attention", "sliding_attention", "sliding_attention", "full_attention"]),
    "k_eq_v": dict(num_hidden_layers=6, hidden_size_per_layer_input=0, attention_k_eq_v=True,
                   num_attention_heads=4, num_key_value_heads=2, num_global_key_value_heads=1),
    "moe": dict(num_hidden_layers=4, hidden_size_per_layer_input=0, enable_moe_block=True, num_experts=4,
                top_k_experts=2, moe_intermediate_size=24),
}
SEQUENCES = [[2, 17, 5, 88, 40, 40, 3, 91, 12, 60, 7], [2, 33, 9, 70, 1, 45]]


def randomize(model, g):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:  # norm scales (stored as the scale itself in Gemma 4)
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) * (0.3 / math.sqrt(p.shape[-1])))
        for name, b in model.named_buffers():
            if name.endswith("layer_scalar"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))
        model.model.embed_tokens.weight.mul_(math.sqrt(model.config.hidden_size) * 0.5)


@contextlib.contextmanager
def pure_fp64(config):
    """transformers computes RMSNorm, RoPE's angles, eager attention's softmax and the MoE router's softmax in fp32
    even for an fp64 model; within this block they compute in the model's dtype (the same formulas), so fp64 logits
    carry the math alone."""
    def norm_forward(self, x):
        y = x * torch.pow(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon, -0.5)
        return y * self.weight if self.with_scale else y

    def inv_freq64(layer_type):
        d = config.per_layer_config[layer_type].head_dim
        rp = config.rope_parameters[layer_type]
        n_rot = int(rp.get("partial_rotary_factor", 1.0) * d // 2) if rp["rope_type"] == "proportional" else d // 2
        inv = 1.0 / (rp["rope_theta"] ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
        inv[n_rot:] = 0
        return inv / rp.get("factor", 1.0) if rp["rope_type"] == "proportional" else inv

    def rope_forward(self, x, position_ids, layer_type):
        freqs = position_ids[..., None].double() * inv_freq64(layer_type)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)

    def router_forward(self, hidden_states):  # Gemma4TextRouter.forward with its softmax in the model's dtype
        h = self.norm(hidden_states) * self.scale * self.scalar_root_size
        p = torch.nn.functional.softmax(self.proj(h), dim=-1, dtype=h.dtype)
        w, idx = torch.topk(p, k=self.config.top_k_experts, dim=-1)
        w = w / w.sum(dim=-1, keepdim=True)
        return p, w * self.per_expert_scale[idx], idx

    classes = (modeling_gemma4.Gemma4RMSNorm, modeling_gemma4.Gemma4TextRotaryEmbedding, modeling_gemma4.Gemma4TextRouter)
    saved = [c.forward for c in classes]
    for c, f in zip(classes, (norm_forward, rope_forward, router_forward)):
        c.forward = f
    try:
        yield
    finally:
        for c, f in zip(classes, saved):
            c.forward = f


def main():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(4)
    for i, s in enumerate(SEQUENCES):
        golden.save(f"ids_{i}", torch.tensor(s, dtype=torch.int32))
    for name, kw in VARIANTS.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            config = Gemma4TextConfig(**{**BASE, **kw})
            model = Gemma4ForCausalLM(config).eval()
        randomize(model, g)
        folder = os.path.join(golden.out, name)
        model.save_pretrained(folder, safe_serialization=True)
        # the experts' eager loop (the default grouped_mm takes no fp64); both models compute the same formula
        model64 = Gemma4ForCausalLM.from_pretrained(folder, dtype=torch.float64, attn_implementation="sdpa",
                                                    experts_implementation="eager").eval()
        # an fp64 model is built with fp64 embedding scales (sqrt(hidden), sqrt(P) unrounded); the checkpoint's
        # models in fp32 and bf16 use the fp32 value, which qlora uses in every dtype
        for emb in (model64.model.embed_tokens, getattr(model64.model, "embed_tokens_per_layer", None)):
            if emb is not None:
                emb.embed_scale.copy_(emb.embed_scale.float().double())
        with torch.no_grad(), pure_fp64(model64.config):
            for i, s in enumerate(SEQUENCES):
                golden.save(f"{name}_logits_{i}", model(torch.tensor([s])).logits[0])
                # fp64: the same checkpoint computed in float64, for an exact comparison of the math
                golden.save_f64(f"{name}_logits64_{i}", model64(torch.tensor([s])).logits[0])
        golden.params[name] = {"layers": config.num_hidden_layers, "softcap": config.final_logit_softcapping}
    golden.write_manifest()


if __name__ == "__main__":
    main()
