#!/usr/bin/env python3
"""Reference logits of the tiny Gemma 3 model with its decoder Linears quantized to NF4 by bitsandbytes.

Loads the committed random model tests/data/gemma3_model/tiny (made by gemma3_logits.py; not regenerated here) with
transformers' BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
bnb_4bit_compute_dtype=torch.float32) on the CPU. Every nn.Linear of the decoder layers (q, k, v, o, gate, up, down
projections) becomes a bitsandbytes Linear4bit: NF4 codes over the flattened weight in blocks of 64, absmax
double-quantized (8-bit dynamic code, blocksize 256, offset = mean of the absmax). The embedding and the tied lm_head
stay fp32.

Forward: each Linear4bit is replaced by an fp32 nn.Linear whose weight is the dequantization of that Linear4bit's own
bitsandbytes state (codes, nested absmax, offset) with bitsandbytes' generic implementation
(bitsandbytes.backends.default.ops._dequantize_4bit_compute, the flattened-block semantics of the CUDA kernel; the
nested absmax by bitsandbytes.functional.dequantize_blockwise). Why not Linear4bit.forward itself: in bitsandbytes
0.50.2 the CPU (AVX512) dequantize_4bit kernel picks the wrong absmax when a row is shorter than the block (here
in_features 32 < 64: q, k, v, o, gate, up), giving ~0.26 relative weight error instead of NF4's ~0.09; and in eval
mode on an AVX512-BF16 CPU it repacks for a bf16 kernel that fails for in_features < 64. The file records how far that
CPU-kernel forward is from the reference ("max_abs_diff_bnb_cpu_kernel_vs_reference"), and checks that the generic
dequantization equals an independent one written here with torch ops (NF4 table lookup * absmax per 64 block).

Output tests/data/gemma3_model/tiny_nf4_logits.json: the same three sequences as tiny_logits.json, layout "sequences",
"logits" (per sequence, per position, 300 floats), plus "versions", "method", "quantized_modules" and
"max_abs_diff_vs_fp32" (max over everything of |nf4 logits - fp32 logits of tiny_logits.json|).

Run:  pip install torch transformers bitsandbytes accelerate safetensors && python3 tests/golden/gemma3_nf4_logits.py
"""
import json
import os

import bitsandbytes
import bitsandbytes.functional as bnbf
import numpy as np
import torch
import transformers
from bitsandbytes.backends.default.ops import _dequantize_4bit_compute
from transformers import BitsAndBytesConfig, Gemma3ForCausalLM

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "gemma3_model")
PROJ = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def logits_of(model, sequences):
    out = []
    with torch.no_grad():
        for ids in sequences:
            out.append(model(torch.tensor([ids])).logits[0].float().numpy())
    return out


def dequantize_generic(weight, qs):
    absmax = bnbf.dequantize_blockwise(qs.absmax, qs.state2) + qs.offset if qs.nested else qs.absmax
    code = bnbf.get_4bit_type("nf4", device="cpu").float()
    assert torch.equal(code.to(qs.code.dtype), qs.code.cpu())
    w = _dequantize_4bit_compute(weight.view(torch.uint8).reshape(-1), absmax.float(), code, qs.blocksize,
                                 qs.shape, torch.float32)
    # independent check: unpack the codes (high nibble first), look up NF4, scale by the block's absmax
    packed = weight.view(torch.uint8).reshape(-1).long()
    idx = torch.stack([packed >> 4, packed & 15], dim=1).reshape(-1)[: qs.shape.numel()]
    scale = absmax.float().repeat_interleave(qs.blocksize)[: qs.shape.numel()]
    manual = (code[idx] * scale).reshape(qs.shape)
    assert torch.equal(w, manual)
    return w


def main():
    torch.manual_seed(0)
    with open(os.path.join(DATA, "tiny_logits.json")) as f:
        ref = json.load(f)
    sequences = ref["sequences"]
    config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                bnb_4bit_compute_dtype=torch.float32)
    model = Gemma3ForCausalLM.from_pretrained(os.path.join(DATA, "tiny"), attn_implementation="eager",
                                              torch_dtype=torch.float32, quantization_config=config,
                                              device_map="cpu").eval()
    quantized = []
    for name, mod in model.named_modules():
        if isinstance(mod, bitsandbytes.nn.Linear4bit):
            qs = mod.weight.quant_state
            assert qs.quant_type == "nf4" and qs.blocksize == 64 and qs.nested and qs.state2.blocksize == 256, name
            assert mod.compute_dtype == torch.float32, name
            mod.support_avx512bf16_for_cpu = False  # see the docstring
            quantized.append(name)
    expected = [f"model.layers.{i}.{part}.{p}" for i in range(model.config.num_hidden_layers)
                for part, ps in (("self_attn", PROJ[:4]), ("mlp", PROJ[4:])) for p in ps]
    assert sorted(quantized) == sorted(expected), (quantized, expected)
    assert not isinstance(model.lm_head, bitsandbytes.nn.Linear4bit)

    bnb_cpu = logits_of(model, sequences)  # Linear4bit.forward with bitsandbytes' CPU kernel, for the record

    for name in quantized:
        parent_name, child = name.rsplit(".", 1)
        parent = model.get_submodule(parent_name)
        q = getattr(parent, child)
        lin = torch.nn.Linear(q.in_features, q.out_features, bias=False)
        lin.weight.data.copy_(dequantize_generic(q.weight.data, q.weight.quant_state))
        setattr(parent, child, lin)
    nf4 = logits_of(model, sequences)

    fp32 = [np.asarray(x, dtype=np.float32) for x in ref["logits"]]
    diff = max(float(np.abs(a - b).max()) for a, b in zip(nf4, fp32))
    cpu_kernel = max(float(np.abs(a - b).max()) for a, b in zip(nf4, bnb_cpu))

    versions = {"torch": torch.__version__, "transformers": transformers.__version__,
                "bitsandbytes": bitsandbytes.__version__, "numpy": np.__version__}
    out = {"versions": versions,
           "method": "quantized by transformers BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type='nf4', "
                     "bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=float32) on the CPU (bitsandbytes "
                     "Linear4bit, blocksize 64, nested blocksize 256); forward with each Linear4bit replaced by an "
                     "fp32 Linear of its bitsandbytes state dequantized by bitsandbytes' generic (default-backend) "
                     "dequantize, because the bitsandbytes CPU dequantize_4bit kernel mis-indexes absmax when "
                     "in_features < blocksize",
           "quantized_modules": quantized,
           "max_abs_diff_vs_fp32": diff,
           "max_abs_diff_bnb_cpu_kernel_vs_reference": cpu_kernel,
           "sequences": sequences,
           "logits": [x.tolist() for x in nf4]}
    with open(os.path.join(DATA, "tiny_nf4_logits.json"), "w") as f:
        json.dump(out, f)
    print(f"nf4 logits: max |nf4 - fp32| = {diff:.6g}; bitsandbytes CPU-kernel forward differs by {cpu_kernel:.3g}")


if __name__ == "__main__":
    main()
