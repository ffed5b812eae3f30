"""Shared by peft_load.py and merged_load.py: compare a model's logits with a JSON of expected ones.

The JSON has "sequences" (lists of token ids) and "logits" (per sequence, per position, vocab floats), the layout of
tests/data/gemma3_model/tiny_logits.json; a JSON without "logits" but with "final_logits" {sequences, logits} (like
tests/data/gemma3_train/train.json) is read from there.
"""
import json
import os
import sys

# Local folders only: never let transformers / PEFT look a path up on a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SKIP = 77


def need(modules):
    """Imports the named packages, or prints 'skipped: ...' and exits 77."""
    import importlib
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as e:
            print(f"skipped: Python package {name!r} is not installed ({e}); pip install {name}")
            sys.exit(SKIP)


def need_dir(path, files, what):
    """Exits 1 with a message unless path is a folder holding each of files."""
    if not os.path.isdir(path):
        print(f"FAIL: {what} {path} is not a folder")
        sys.exit(1)
    absent = [f for f in files if not os.path.isfile(os.path.join(path, f))]
    if absent:
        print(f"FAIL: {what} {path} lacks {', '.join(absent)}")
        sys.exit(1)


def load_expected(path):
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        print(f"FAIL: cannot read expected logits {path}: {e}")
        sys.exit(1)
    if "logits" not in data and isinstance(data.get("final_logits"), dict):
        data = data["final_logits"]
    if "sequences" not in data or "logits" not in data or len(data["sequences"]) != len(data["logits"]):
        print(f"FAIL: {path} lacks matching 'sequences' and 'logits'")
        sys.exit(1)
    return data["sequences"], data["logits"]


def compare(model, sequences, expected, atol, what):
    """Runs the model on each sequence; prints the max abs and max relative difference; returns the exit code."""
    import numpy as np
    import torch

    max_abs = 0.0
    max_rel = 0.0
    worst = None
    with torch.no_grad():
        for i, (ids, want) in enumerate(zip(sequences, expected)):
            got = model(torch.tensor([ids], dtype=torch.long)).logits[0].float().numpy()
            want = np.asarray(want, dtype=np.float64)
            if got.shape != want.shape:
                print(f"FAIL: sequence {i}: logits shape {tuple(got.shape)}, expected {tuple(want.shape)}")
                return 1
            d = np.abs(got.astype(np.float64) - want)
            if not np.all(np.isfinite(got)):
                print(f"FAIL: sequence {i}: non-finite logits")
                return 1
            if d.max() > max_abs:
                max_abs = float(d.max())
                pos, tok = np.unravel_index(int(d.argmax()), d.shape)
                worst = (i, int(pos), int(tok), float(got[pos, tok]), float(want[pos, tok]))
            max_rel = max(max_rel, float((d / np.maximum(np.abs(want), 1e-6)).max()))
    print(f"{what}: {len(sequences)} sequences, max abs diff {max_abs:.3e}, max rel diff {max_rel:.3e} (atol {atol:g})")
    if max_abs > atol:
        i, pos, tok, g, w = worst
        print(f"FAIL: max abs diff {max_abs:.3e} > {atol:g} (sequence {i}, position {pos}, token {tok}: "
              f"got {g:.7g}, expected {w:.7g})")
        return 1
    print("OK")
    return 0


def adapter_file_shapes(adapter_dir):
    """{tensor name: shape} of an adapter folder's adapter_model.safetensors."""
    from safetensors import safe_open
    with safe_open(os.path.join(adapter_dir, "adapter_model.safetensors"), "pt") as f:
        return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}


def peft_saved_shapes(model, cfg):
    """{tensor name: shape} of what PEFT saves for adapter_config `cfg` (a dict) built on `model`."""
    import tempfile
    from peft import LoraConfig, get_peft_model
    fresh = get_peft_model(model, LoraConfig(r=cfg["r"], lora_alpha=cfg["lora_alpha"],
                                             target_modules=cfg["target_modules"],
                                             rank_pattern=cfg.get("rank_pattern") or {},
                                             alpha_pattern=cfg.get("alpha_pattern") or {}))
    with tempfile.TemporaryDirectory() as tmp:
        fresh.save_pretrained(tmp)
        return adapter_file_shapes(tmp)


def peft_load_problem(peft_model, adapter_dir):
    """None when `peft_model` (PeftModel.from_pretrained of adapter_dir, which warns but does not fail on missing
    keys) holds every tensor of the adapter file with the file's values; else what is wrong, naming the tensor."""
    import torch
    from safetensors import safe_open
    state = {k: v for k, v in peft_model.state_dict().items() if "lora_" in k}
    with safe_open(os.path.join(adapter_dir, "adapter_model.safetensors"), "pt") as f:
        for k in f.keys():
            loaded = k.replace(".lora_A.weight", ".lora_A.default.weight").replace(".lora_B.weight", ".lora_B.default.weight")
            if loaded not in state:
                return f"PEFT did not load {k}"
            if not torch.equal(state[loaded].float(), f.get_tensor(k).float()):
                return f"PEFT loaded other values for {k}"
    return None
