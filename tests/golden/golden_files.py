"""Writing a golden set for tests/support/golden.hpp: raw little-endian arrays and a manifest.

  tests/data/<set>/manifest.json   {"torch", "transformers", "arrays": {name: {file, dtype, shape}}, "params": {...}}
  tests/data/<set>/<name>.bin      float32, float64 or int32 (bf16 results widened to float32: exact)
"""
import json
import os

import numpy as np
import torch
import transformers


class GoldenSet:
    def __init__(self, name):
        self.out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", name)
        self.arrays, self.params = {}, {}
        os.makedirs(self.out, exist_ok=True)

    def save(self, name, t):
        """Writes tensor/array `t` (float -> float32, integer -> int32) as <name>.bin and records it."""
        a = t.detach().float().numpy() if isinstance(t, torch.Tensor) and t.is_floating_point() else np.asarray(t)
        a = np.ascontiguousarray(a, dtype=np.float32 if a.dtype.kind == "f" else np.int32)
        a.astype(a.dtype.newbyteorder("<")).tofile(os.path.join(self.out, name + ".bin"))
        self.arrays[name] = {"file": name + ".bin", "dtype": "float32" if a.dtype.kind == "f" else "int32",
                             "shape": list(a.shape)}

    def save_f64(self, name, t):
        """Writes a float tensor as float64 <name>.bin (dtype "float64" in the manifest)."""
        a = np.ascontiguousarray(t.detach().double().numpy(), dtype="<f8")
        a.tofile(os.path.join(self.out, name + ".bin"))
        self.arrays[name] = {"file": name + ".bin", "dtype": "float64", "shape": list(a.shape)}

    def write_manifest(self):
        manifest = {"torch": torch.__version__, "transformers": transformers.__version__, "arrays": self.arrays,
                    "params": self.params}
        with open(os.path.join(self.out, "manifest.json"), "w") as f:
            json.dump(manifest, f, indent=1, sort_keys=True)
        total = sum(os.path.getsize(os.path.join(self.out, a["file"])) for a in self.arrays.values())
        print(f"wrote {len(self.arrays)} arrays ({total} bytes) to {os.path.normpath(self.out)}")
