"""Golden data for qlora's NF4/FP4 4-bit and blockwise 8-bit quantization, produced by the real bitsandbytes.

Run from the repository root (CPU only, no GPU needed; re-runnable, overwrites tests/data/bnb/):
    pip install bitsandbytes torch numpy
    python tests/golden/bnb_quant.py
Writes every array as raw little-endian bytes (.bin) plus tests/data/bnb/manifest.json describing each case
(file names, dtype, shape, blocksize, quant type, double quantization, ...) and the package versions used.

What bitsandbytes 0.50.x does on CPU (read from bitsandbytes/backends/{cpu,default}/ops.py and csrc/cpu_ops.cpp);
it differs from the CUDA kernels in several places and the C++ port follows these files:
  * quantize_4bit runs the Python "default" kernel: s = x * (1/absmax) for full blocks but s = x / absmax for the
    final partial block, absmax clamped to >= 1e-38 for scaling (the partial block also STORES the clamped value),
    then torch.bucketize over float32 midpoints of the sorted code (ties go to the lower code). NaN -> last bucket.
    FP4: argsort puts code 0 before code 8 (both zero), so tiny positive values get code 8, tiny negatives code 0.
    FP4 code 8 decodes to +0.0 (get_4bit_type's list spells it `-0`, an int) on the Python and AVX512 dequant paths,
    but to -0.0 on csrc's scalar path (even last dim not a multiple of 16, e.g. 3x50).
  * quantize_blockwise (8-bit) runs csrc cpu_ops.cpp: not an exact nearest-code search but a 65536-bin lookup table:
    bin = (uint16)fmaf((clamp(x*(1/absmax), -1, 1) + 1) * 0.5f, 65535, 0.5f), code = #midpoints < -1 + 2*bin/65535.
    absmax ignores NaN; NaN elements get code 0; an all-zero block gets code 0 everywhere (not the code of 0.0);
    an exact 0.0 in a nonzero block gets a tiny positive code (the middle bin starts at 1.5e-5), not code[127] = 0.
  * offset (double quantization) = torch float32 mean: SumKernel.cpp cascade sum (8-float vectors reproduce it on
    this AVX512 machine), then / n.
  * dequantize_4bit's CPU AVX512 path misreads absmax when the last dimension is a multiple of 16 but not of the
    blocksize (e.g. shape [3, 48]); no case here uses such a shape.
"""
import json
import os
import sys

import numpy as np
import torch
import bitsandbytes
import bitsandbytes.functional as F

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "bnb")
SEED = 1234


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    for old in os.listdir(OUT_DIR):
        if old.endswith(".bin") or old == "manifest.json":
            os.remove(os.path.join(OUT_DIR, old))
    written = []

    def save(name, t):
        a = t.detach().cpu().contiguous().numpy()
        dtype = {np.float32: "float32", np.uint8: "uint8"}[a.dtype.type]
        fname = name + ".bin"
        a.astype(a.dtype.newbyteorder("<")).tofile(os.path.join(OUT_DIR, fname))
        written.append((fname, a.nbytes))
        return {"file": fname, "dtype": dtype, "shape": list(a.shape)}

    gen = torch.Generator().manual_seed(SEED)
    randn = lambda *shape: torch.randn(*shape, generator=gen, dtype=torch.float32)

    # Inputs. "special" vectors put one edge case in each block; their numel is odd and not a block multiple.
    special4 = torch.cat([
        torch.zeros(64),                                            # all-zero full block
        randn(64) * 1e30,                                           # large magnitude
        randn(64) * 1e-40,                                          # denormals only
        -randn(64).abs(),                                           # negatives only
        torch.tensor(F.get_4bit_type("nf4", device="cpu").tolist() * 4),  # exact code values (ties at 1/absmax)
        torch.zeros(33),                                            # all-zero short last block (absmax clamped)
    ]).float()
    special8 = torch.cat([
        torch.zeros(256), randn(256) * 1e30, randn(256) * 1e-40, -randn(256).abs(),
        F.create_dynamic_map(signed=True)[torch.arange(100) * 2 + 27],   # code values, short last block
    ]).float()
    nan4 = randn(2, 64)
    nan4[0, 5] = float("nan")
    nan8 = randn(300)
    nan8[7] = float("nan")
    inputs = {
        "randn_7x13": randn(7, 13),           # 91 elements: odd numel, last 64-block has 27 items
        "randn_3x50": randn(3, 50) * 3.5,     # even rows not a multiple of 16: scalar C++ dequant path
        "randn_160x128": randn(160, 128),     # 320 absmax blocks -> 2 nested 256-blocks for double quant
        "special4_353": special4,
        "nan_2x64": nan4,
        "randn_64x128": randn(64, 128),
        "special8_1124": special8,
        "nan_300": nan8,
    }
    manifest = {
        "bitsandbytes_version": bitsandbytes.__version__,
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "seed": SEED,
        "tables": {
            "nf4_code": save("table_nf4_code", F.get_4bit_type("nf4", device="cpu")),
            "fp4_code": save("table_fp4_code", F.get_4bit_type("fp4", device="cpu")),
            "dynamic_signed": save("table_dynamic_signed", F.create_dynamic_map(signed=True)),
            "dynamic_unsigned": save("table_dynamic_unsigned", F.create_dynamic_map(signed=False)),
        },
        "inputs": {name: save("input_" + name, t) for name, t in inputs.items()},
        "cases": [],
    }

    four_bit = [(inp, qt, bs, dq) for inp in ["randn_7x13", "randn_3x50", "randn_160x128", "special4_353"]
                for qt in ["nf4", "fp4"] for bs in [64] for dq in [False, True]]
    four_bit += [("nan_2x64", "nf4", 64, False), ("nan_2x64", "fp4", 64, False),
                 ("randn_7x13", "nf4", 32, False), ("randn_160x128", "nf4", 128, True)]
    for inp, qt, bs, dq in four_bit:
        x = inputs[inp]
        name = f"q4_{qt}_bs{bs}_{'dq_' if dq else ''}{inp}"
        packed, st = F.quantize_4bit(x, blocksize=bs, compress_statistics=dq, quant_type=qt)
        deq = F.dequantize_4bit(packed, st)
        case = {"name": name, "kind": "4bit", "input": inp, "shape": list(x.shape), "numel": x.numel(),
                "blocksize": bs, "quant_type": qt, "double_quant": dq,
                "outputs": {"packed": save(name + "_packed", packed), "dequantized": save(name + "_dequant", deq)}}
        if dq:
            case["nested_blocksize"] = st.state2.blocksize
            case["offset"] = float(st.offset)
            case["offset_hex"] = struct_hex(st.offset)
            case["outputs"]["absmax_codes"] = save(name + "_absmax_codes", st.absmax)
            case["outputs"]["nested_absmax"] = save(name + "_nested_absmax", st.state2.absmax)
            case["outputs"]["offset"] = save(name + "_offset", st.offset.reshape(1))
            absmax = F.dequantize_blockwise(st.absmax, st.state2) + st.offset
            case["outputs"]["absmax_dequantized"] = save(name + "_absmax_dequant", absmax)
        else:
            case["outputs"]["absmax"] = save(name + "_absmax", st.absmax)
        manifest["cases"].append(case)

    eight_bit = [(inp, m, bs) for inp in ["randn_7x13", "randn_64x128", "special8_1124", "nan_300"]
                 for m in ["signed", "unsigned"] for bs in [256, 4096]]
    for inp, m, bs in eight_bit:
        x = inputs[inp]
        if m == "unsigned" and inp.startswith("randn"):
            x, inp = x.abs(), inp  # unsigned maps hold non-negative statistics; input recorded as |input|
        code = F.create_dynamic_map(signed=(m == "signed"))
        name = f"q8_{m}_bs{bs}_{inp}"
        q, st = F.quantize_blockwise(x, code=code, blocksize=bs)
        deq = F.dequantize_blockwise(q, st)
        manifest["cases"].append({
            "name": name, "kind": "blockwise8", "input": inp, "input_abs": m == "unsigned" and inp.startswith("randn"),
            "shape": list(x.shape), "numel": x.numel(), "blocksize": bs, "map": m,
            "outputs": {"codes": save(name + "_codes", q), "absmax": save(name + "_absmax", st.absmax),
                        "dequantized": save(name + "_dequant", deq)}})

    with open(os.path.join(OUT_DIR, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    total = sum(n for _, n in written)
    for fname, n in written:
        print(f"wrote {fname} ({n} bytes)")
    print(f"wrote manifest.json: {len(manifest['cases'])} cases, {len(written)} arrays, {total} bytes of arrays")
    print(f"bitsandbytes {bitsandbytes.__version__}, torch {torch.__version__}, "
          f"cpu capability {manifest['torch_cpu_capability']}, python {sys.version.split()[0]}")


def struct_hex(t):
    return "%08x" % int(np.array([float(t)], dtype="<f4").view("<u4")[0])


if __name__ == "__main__":
    main()
