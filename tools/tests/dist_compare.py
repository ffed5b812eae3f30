#!/usr/bin/env python3
"""Compares two qlora runs (standard library only): dist_compare.py RUN_A RUN_B [--steps FIRST]
   - metrics.jsonl: loss, grad_norm, learning_rate and eval_loss of every step both have (from FIRST on), within
     1e-5 relative;
   - adapter_model.safetensors (final, and of every checkpoint-N both have): every tensor within 1e-6 (absolute, or
     relative to the tensor's largest value);
   - checkpoints: the same checkpoint-N folders.
Exit 1 with the first difference named."""
import json, os, struct, sys
from array import array


def metrics(run, first):
    out = {}
    with open(os.path.join(run, "metrics.jsonl")) as f:
        for line in f:
            e = json.loads(line)
            if e["step"] >= first:
                out.setdefault(e["step"], {}).update(e)
    return out


def tensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        assert t["dtype"] == "F32", (path, name, t["dtype"])
        a, b = t["data_offsets"]
        out[name] = array("f", data[a:b])
    return out


def main():
    a, b = sys.argv[1], sys.argv[2]
    first = int(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[3] == "--steps" else 1
    fail = lambda *m: (print("FAILED:", *m), sys.exit(1))
    ma, mb = metrics(a, first), metrics(b, first)
    if sorted(ma) != sorted(mb):
        fail("logged steps differ:", sorted(ma), "vs", sorted(mb))
    worst = 0.0
    for step in sorted(ma):
        for key in ("loss", "grad_norm", "learning_rate", "eval_loss"):
            if (key in ma[step]) != (key in mb[step]):
                fail(f"step {step}: {key} logged by one run only")
            if key in ma[step]:
                x, y = ma[step][key], mb[step][key]
                rel = abs(x - y) / max(abs(x), abs(y), 1e-30)
                worst = max(worst, rel) if key == "loss" else worst
                if rel > 1e-5:
                    fail(f"step {step}: {key} {x} vs {y} (relative difference {rel:.2e} > 1e-5)")
    ckpt = lambda r: sorted(d for d in os.listdir(r) if d.startswith("checkpoint-"))
    if first == 1 and ckpt(a) != ckpt(b):
        fail("checkpoints differ:", ckpt(a), "vs", ckpt(b))
    files = [("final adapter", os.path.join(a, "adapter_model.safetensors"), os.path.join(b, "adapter_model.safetensors"))]
    files += [(d, os.path.join(a, d, "adapter_model.safetensors"), os.path.join(b, d, "adapter_model.safetensors"))
              for d in ckpt(a) if d in ckpt(b)]
    worst_w = 0.0
    for what, fa, fb in files:
        ta, tb = tensors(fa), tensors(fb)
        if sorted(ta) != sorted(tb):
            fail(what, ": tensor names differ")
        for name in ta:
            scale = max(1.0, max((abs(v) for v in ta[name]), default=0.0))
            d = max((abs(x - y) for x, y in zip(ta[name], tb[name])), default=0.0) / scale
            worst_w = max(worst_w, d)
            if d > 1e-6:
                fail(f"{what}: {name} differs by {d:.2e} > 1e-6")
    print(f"equal: {len(ma)} logged steps (largest relative loss difference {worst:.1e}), {len(files)} adapters "
          f"(largest difference {worst_w:.1e})")


main()
