#!/usr/bin/env python3
"""Golden steps of bitsandbytes' AdamW8bit on the CPU, for tests/optim/adamw8bit.cpp.

Two parameters: one of 5000 elements (8-bit blockwise states, blocksize 256) and one of 300 (below min_8bit_size
4096, so fp32 states and the 32-bit update). Four steps with fixed gradients, lr 1e-3 then 2e-3 (the learning rate
may change between steps, as a schedule does), betas (0.9, 0.999), eps 1e-8, weight_decay 0.01.
Run:  pip install torch bitsandbytes && python3 tests/golden/bnb_adamw8bit.py
Writes tests/data/bnb_adamw8bit/: params/grads/states per step as little-endian .bin and manifest.json.
"""
import json
import os

import bitsandbytes
import numpy as np
import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "bnb_adamw8bit")


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(os.path.join(OUT, f))
    gen = torch.Generator().manual_seed(42)
    big = torch.nn.Parameter(torch.randn(5000, generator=gen) * 0.5)
    small = torch.nn.Parameter(torch.randn(300, generator=gen) * 0.5)
    opt = bitsandbytes.optim.AdamW8bit([big, small], lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    files = {}

    def save(name, t):
        a = t.detach().cpu().contiguous().numpy()
        a.tofile(os.path.join(OUT, name + ".bin"))
        files[name] = {"dtype": str(a.dtype), "shape": list(a.shape)}

    save("big_init", big)
    save("small_init", small)
    lrs = [1e-3, 1e-3, 2e-3, 2e-3]
    for step, lr in enumerate(lrs, start=1):
        for group in opt.param_groups:
            group["lr"] = lr
        big.grad = torch.randn(5000, generator=gen) * (0.1 * step)
        small.grad = torch.randn(300, generator=gen) * 0.1
        big.grad[:256] = 0.0  # an all-zero block of gradients
        save(f"big_grad_{step}", big.grad)
        save(f"small_grad_{step}", small.grad)
        opt.step()
        sb, ss = opt.state[big], opt.state[small]
        save(f"big_param_{step}", big)
        save(f"big_state1_{step}", sb["state1"])
        save(f"big_state2_{step}", sb["state2"])
        save(f"big_absmax1_{step}", sb["absmax1"])
        save(f"big_absmax2_{step}", sb["absmax2"])
        save(f"small_param_{step}", small)
        save(f"small_state1_{step}", ss["state1"])
        save(f"small_state2_{step}", ss["state2"])
    save("qmap1", opt.state[big]["qmap1"])
    save("qmap2", opt.state[big]["qmap2"])
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump({"versions": {"bitsandbytes": bitsandbytes.__version__, "torch": torch.__version__},
                   "lrs": lrs, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.01, "files": files}, f, indent=1)
    print(f"wrote {len(files)} arrays to {OUT} (bitsandbytes {bitsandbytes.__version__}, torch {torch.__version__})")


if __name__ == "__main__":
    main()
