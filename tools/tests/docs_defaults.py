#!/usr/bin/env python3
"""docs/cli.md cannot drift from the program: every row of its `qlora finetune` flag table names a flag that
`qlora finetune --help` lists and a key `--print-config` shows, with the default the program really uses; every flag
of `--help` is in the table; every "(default X)" in `--help` is the value `--print-config` shows.
Standard library only.   usage: docs_defaults.py QLORA_BINARY REPO_ROOT"""
import json
import re
import subprocess
import sys

qlora, root = sys.argv[1], sys.argv[2]
failures = []


def run(*args):
    return subprocess.run([qlora, *args], check=True, capture_output=True, text=True).stdout


help_text = run("finetune", "--help")
config = json.loads(run("finetune", "--print-config"))
help_flags = set(re.findall(r"^\s+(?:-\w,)?(--[a-z0-9-]+)", help_text, re.M)) - {"--help"}

# Cells that are words, not values: what each stands for in --print-config.
WORDS = {"off": False, "on": True, "none": None, "all": None, "—": None}
# Defaults that depend on the machine or on other values, checked by what they mean.
DERIVED = {
    "model": lambda v: v is None,        # "Gemma 3 270M GGUF": null = the packaged model is found at run time
    "dataset": lambda v: v is None,      # "bundled finance set": null = examples/data/finance_reasoning.jsonl
    "training.eval_steps": lambda v: v == config["training"]["max_steps"],  # "the step count"
}


def lookup(key):
    node = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(key)
        node = node[part]
    return node


def same(documented, actual):
    cell = documented.replace("`", "").strip()
    if cell in WORDS:
        expected = WORDS[cell]
        if expected is None:
            return actual in (None, [], {}, "none") or actual == ["none"]
        return actual == expected
    number = re.match(r"^-?[0-9.]+(e-?[0-9]+)?", cell)
    if number and isinstance(actual, (int, float)) and not isinstance(actual, bool):
        return abs(float(number.group(0)) - float(actual)) <= 1e-12 * max(1.0, abs(float(actual)))
    if isinstance(actual, list):
        return [x.strip() for x in cell.split(",")] == actual
    return cell == actual


rows = 0
table_flags = set()
with open(f"{root}/docs/cli.md", encoding="utf-8") as f:
    text = f.read()
section = text[text.index("### Flags"):]
for line in section.splitlines():
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) != 4 or not cells[0].startswith("`--") and cells[0] != "—":
        if rows and not line.startswith("|"):
            break
        continue
    flag_cell, key_cell, default_cell, _ = cells
    flag = re.match(r"`(--[a-z0-9-]+)", flag_cell)
    if flag:
        table_flags.add(flag.group(1))
        if flag.group(1) not in help_flags and flag.group(1) != "--config":
            failures.append(f"docs/cli.md lists {flag.group(1)}, which `qlora finetune --help` does not know")
    rows += 1
    if key_cell == "—":
        continue
    for key in re.findall(r"`([a-z_.0-9]+)`", key_cell):
        full = key if "." in key or key in ("model", "dataset", "device", "cpu_gemm") else f"training.{key}"
        try:
            actual = lookup(full)
        except KeyError:
            failures.append(f"docs/cli.md: config key {full} is not in `qlora finetune --print-config`")
            continue
        if full in DERIVED:
            if not DERIVED[full](actual):
                failures.append(f"docs/cli.md: {full}: documented '{default_cell}', the program uses {actual!r}")
            continue
        documented = default_cell
        if "," in default_cell and len(re.findall(r"`([a-z_.0-9]+)`", key_cell)) > 1:  # "0.9, 0.999, 1e-8"
            keys = re.findall(r"`([a-z_.0-9]+)`", key_cell)
            documented = default_cell.split(",")[keys.index(key)]
        if not same(documented, actual):
            failures.append(f"docs/cli.md: {full}: documented '{default_cell}', the program uses {json.dumps(actual)}")
for flag in sorted(help_flags - table_flags):
    failures.append(f"`qlora finetune --help` has {flag}, which docs/cli.md's flag table does not document")

# "(default X)" in --help against the configuration the program resolves
for block in re.split(r"\n(?=\s+--)", help_text):
    flag = re.match(r"\s+(--[a-z0-9-]+)", block)
    default = re.search(r"\((?:CPU demo )?default:? ([^);]+)", block)
    if not flag or not default:
        continue
    value = default.group(1).strip()
    row = next((l for l in section.splitlines() if l.startswith(f"| `{flag.group(1)}")), None)
    if row is None:
        continue
    key = re.findall(r"`([a-z_.0-9]+)`", row.split("|")[2])
    if not key:
        continue
    full = key[0]
    if full in DERIVED or full in ("model", "dataset"):
        continue
    actual = lookup(full)
    if not same(value, actual):
        failures.append(f"`qlora finetune --help` says {flag.group(1)} defaults to '{value}'; the program uses {json.dumps(actual)}")

if rows < 40:
    failures.append(f"docs/cli.md: only {rows} rows read from the flag table (the parser lost it?)")
for f in failures:
    print("FAILED:", f)
if failures:
    sys.exit(1)
print(f"docs/cli.md: {rows} flag rows match `qlora finetune --help` and --print-config")
