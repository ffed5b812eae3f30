"""Golden safetensors files for qlora's reader and writer, written by the real `safetensors` package.

Run from the repository root (CPU only; re-runnable, overwrites tests/data/io/safetensors/):
    pip install safetensors numpy torch huggingface_hub
    python tests/golden/safetensors_files.py
Writes
  * numpy.safetensors: every numpy dtype the format has (F64, F32, F16, I64, I32, I16, I8, U8, BOOL, ...), a 0-d
    tensor and a zero-size one, metadata {"format": "np"};
  * torch_bf16.safetensors: bf16 and fp32 torch tensors, metadata {"format": "pt"};
  * no_metadata.safetensors: the same as numpy but without "__metadata__";
  * sharded/: a Gemma 3 multimodal-style state dict split by huggingface_hub.save_torch_state_dict into two shards
    plus model.safetensors.index.json (text tensors under "model.language_model.", a vision tower beside them);
  * manifest.json: per file its SHA-256, size and metadata, and per tensor its dtype, shape and values (as float64),
    so the C++ test checks values and writes the same tensors to compare its file byte for byte with these.
The package keeps metadata in a Rust HashMap, so files with more than one metadata key vary in key order between runs;
these files have at most one key.
"""
import hashlib
import json
import os
import shutil

import numpy as np
import safetensors
import safetensors.numpy
import safetensors.torch
import torch
import huggingface_hub

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "io", "safetensors")


def numpy_tensors():
    rng = np.random.default_rng(7)
    return {
        "weight": rng.standard_normal((3, 5)).astype(np.float32),
        "bias": np.array([1.5, -2.25, 1e-8, 65504.0], dtype=np.float32),
        "half": rng.standard_normal((2, 3)).astype(np.float16),
        "double": np.array([[np.pi, -1e300]], dtype=np.float64),
        "ids": np.array([0, -1, 2**40], dtype=np.int64),
        "counts": np.array([[1, -2], [3, 2**31 - 1]], dtype=np.int32),
        "shorts": np.array([-3, 7], dtype=np.int16),
        "bytes": np.arange(6, dtype=np.uint8).reshape(2, 3),
        "signed_bytes": np.array([-128, 127], dtype=np.int8),
        "mask": np.array([True, False, True]),
        "scalar": np.array(2.5, dtype=np.float32),
        "empty": np.zeros((0, 4), dtype=np.float32),
        "名前 \"quoted\"\n": np.array([1.0], dtype=np.float32),  # name escaping as serde_json does it
    }


def torch_tensors():
    g = torch.Generator().manual_seed(11)
    return {
        "model.embed_tokens.weight": torch.randn(4, 8, generator=g).to(torch.bfloat16),
        "model.norm.weight": torch.tensor([1.0, -0.5, 3.140625, 1e-3], dtype=torch.bfloat16),
        "lora_A.weight": torch.randn(2, 8, generator=g),
        "half": torch.randn(3, generator=g).to(torch.float16),
    }


def gemma_state_dict():
    g = torch.Generator().manual_seed(5)
    sd = {}
    for i in range(2):
        p = f"model.language_model.layers.{i}."
        sd[p + "self_attn.q_proj.weight"] = torch.randn(8, 4, generator=g).to(torch.bfloat16)
        sd[p + "mlp.up_proj.weight"] = torch.randn(6, 4, generator=g).to(torch.bfloat16)
        sd[p + "input_layernorm.weight"] = torch.randn(4, generator=g).to(torch.bfloat16)
    sd["model.language_model.embed_tokens.weight"] = torch.randn(10, 4, generator=g).to(torch.bfloat16)
    sd["model.language_model.norm.weight"] = torch.randn(4, generator=g).to(torch.bfloat16)
    sd["model.vision_tower.vision_model.embeddings.patch_embedding.weight"] = torch.randn(4, 3, generator=g)
    sd["model.multi_modal_projector.mm_input_projection_weight"] = torch.randn(3, 4, generator=g)
    return sd


def describe(path, values):
    with open(path, "rb") as f:
        data = f.read()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        v = values[name]
        tensors[name] = {
            "dtype": info["dtype"],
            "shape": info["shape"],
            "values": np.asarray(v, dtype=np.float64).reshape(-1).tolist(),
        }
    return {
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "metadata": header.get("__metadata__"),
        "tensors": tensors,
    }


def main():
    if os.path.isdir(OUT_DIR):
        shutil.rmtree(OUT_DIR)
    os.makedirs(OUT_DIR)
    manifest = {"versions": {"safetensors": safetensors.__version__, "numpy": np.__version__,
                             "torch": torch.__version__, "huggingface_hub": huggingface_hub.__version__},
                "files": {}}

    nt = numpy_tensors()
    safetensors.numpy.save_file(nt, os.path.join(OUT_DIR, "numpy.safetensors"), metadata={"format": "np"})
    manifest["files"]["numpy.safetensors"] = describe(os.path.join(OUT_DIR, "numpy.safetensors"), nt)
    safetensors.numpy.save_file(nt, os.path.join(OUT_DIR, "no_metadata.safetensors"))
    manifest["files"]["no_metadata.safetensors"] = describe(os.path.join(OUT_DIR, "no_metadata.safetensors"), nt)

    tt = torch_tensors()
    safetensors.torch.save_file(tt, os.path.join(OUT_DIR, "torch_bf16.safetensors"), metadata={"format": "pt"})
    tv = {k: v.float().numpy() for k, v in tt.items()}
    manifest["files"]["torch_bf16.safetensors"] = describe(os.path.join(OUT_DIR, "torch_bf16.safetensors"), tv)

    sd = gemma_state_dict()
    shard_dir = os.path.join(OUT_DIR, "sharded")
    os.makedirs(shard_dir)
    huggingface_hub.save_torch_state_dict(sd, shard_dir, max_shard_size=300)
    with open(os.path.join(shard_dir, "model.safetensors.index.json")) as f:
        index = json.load(f)
    manifest["sharded"] = {
        "weight_map": index["weight_map"],
        "values": {k: v.float().numpy().reshape(-1).astype(np.float64).tolist() for k, v in sd.items()},
        "shapes": {k: list(v.shape) for k, v in sd.items()},
    }
    assert len(set(index["weight_map"].values())) >= 2, "expected at least two shards"

    with open(os.path.join(OUT_DIR, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print("wrote", OUT_DIR, "with", sorted(os.listdir(OUT_DIR)), "shards", sorted(os.listdir(shard_dir)))


if __name__ == "__main__":
    main()
