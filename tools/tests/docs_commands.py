#!/usr/bin/env python3
"""Runs every ```bash block of README.md and docs/*.md, so the commands the documentation shows cannot drift.

    docs_commands.py REPO BIN_DIR WORK      (CTest: docs.commands; exit 77 = skipped without QLORA_MODEL)

Each block runs verbatim in bash (`set -e`, one shell per block, blocks of a page in order, pages README.md first,
then docs/*.md alphabetically) in a scratch folder WORK that looks like a checkout to the commands:
- `qlora …` and `build/bin/<program> …` are the programs of BIN_DIR, called through a wrapper that keeps runs short
  and private: `finetune` at most 2 steps on at most 12 records (`--max-steps`, `--select`, `--eval-size` lowered
  or added; a `--dry-run` is left alone), `generate` at most 8 new tokens and 2 records, the custom-loop example
  2 steps, and every path under /tmp/ moved into WORK/tmp/. Nothing else in the line is changed: each flag, value
  and file name the documentation shows reaches the program.
- The files the examples name exist in WORK: `data.jsonl` / `fino1.jsonl` (the bundled finance set), Alpaca,
  ShareGPT, chat and CSV records, evaluation files, a `recipe.json`; `model.gguf`, `gemma-3-270m.gguf`, the
  folders `gemma-3-270m/` / `gemma-3-270m-it/` name the real Gemma 3 270M GGUF (QLORA_MODEL), `~/models/gemma-3-4b-it`
  and `gemma-3-4b` the tiny multimodal folder of tests/data (a 4B would not fit CI), `~/models/gemma-4-E2B-it` the
  tiny multimodal Gemma 4 folder (tests/data/gemma4_cli_mm), `checkpoint-folder/` the tiny
  checkpoint and `adapter-folder/` the adapter README.md's block trained.
- What cannot run inside a test is checked, not run, and said so in the output: scripts/test, scripts/finetune,
  scripts/test-portable, scripts/install-deps (exist, executable, `bash -n` clean), scripts/fuzz (its targets
  exist), `cmake -S . -B build …` (configured for real in WORK, so every -D option must be one the project uses;
  `cmake --build … --target T` checks each target exists there), benchmarks (`--benchmark_list_tests`, so their
  flags are parsed), Python scripts (each flag given is one their --help lists), `git clone` (skipped), `mpirun` over
  other machines (a hostfile) and `srun` (skipped); `mpirun` on this machine runs, its ranks' programs wrapped too.
"""
import json
import os
import shutil
import stat
import subprocess
import sys

HERE = os.path.abspath(__file__)


# ---- wrappers: called as `docs_commands.py wrap <what> args…` from the scripts put in WORK ---------------------------

def option_value(args, flag):
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            return i, args[i + 1]
        if a.startswith(flag + "="):
            return i, a.split("=", 1)[1]
    return None, None


def cap(args, flag, most, add=True):
    """`flag` at most `most`: lowered when larger, added when absent (add=True)."""
    i, value = option_value(args, flag)
    if i is None:
        return args + [flag, str(most)] if add else args
    try:
        number = float(value)
    except ValueError:
        return args  # the program refuses it with its own message
    if number <= most:
        return args
    if args[i] == flag:
        return args[:i + 1] + [str(most)] + args[i + 2:]
    return args[:i] + [f"{flag}={most}"] + args[i + 1:]


def private_paths(args, work):
    return [os.path.join(work, "tmp", a[len("/tmp/"):]) if a.startswith("/tmp/") and not a.startswith(work + "/")
            else a for a in args]


def model_names(args, work):
    model = os.environ["QLORA_MODEL"]
    names = {"gemma-3-270m/": model, "gemma-3-270m": model, "gemma-3-270m-it/": model, "gemma-3-270m-it": model,
             "gemma-3-4b": os.path.join(work, "home", "models", "gemma-3-4b-it")}
    return [names.get(a, a) for a in args]


def wrap_qlora(args, work, bin_dir):
    args = model_names(private_paths(args, work), work)
    if args and args[0] == "finetune" and "--dry-run" not in args and "--help" not in args \
            and "--print-config" not in args:
        args = cap(args, "--max-steps", 2)
        args = cap(args, "--select", 12)
        args = cap(args, "--eval-size", 2)
    if args and args[0] == "generate":
        args = cap(args, "--max-new-tokens", 8)
        if option_value(args, "--records")[0] is not None:
            args = cap(args, "--limit", 2)
    print("docs: qlora " + " ".join(args), file=sys.stderr)
    os.execv(os.path.join(bin_dir, "qlora"), [os.path.join(bin_dir, "qlora")] + args)


def wrap_example(name, args, work, bin_dir):
    args = private_paths(args, work)
    if name == "example_custom_loop" and len(args) >= 2:
        args[1] = str(min(int(args[1]), 2))  # model, steps, output folder
    if name == "example_generate" and len(args) >= 3:
        args[2] = str(min(int(args[2]), 8))  # model, adapter, new tokens
    print(f"docs: {name} " + " ".join(args), file=sys.stderr)
    os.execv(os.path.join(bin_dir, name), [name] + args)


def wrap_bench(name, args, bin_dir):
    path = os.path.join(bin_dir, name)
    if not os.path.exists(path):
        print(f"docs: {name} is not built here (it needs CUDA): checked that the build names it", file=sys.stderr)
        return 0
    if name == "qlora_cuda_bench":
        print(f"docs: {name}: built; not run (it needs a GPU)", file=sys.stderr)
        return 0
    print(f"docs: {name} {' '.join(args)} --benchmark_list_tests (flags parsed, nothing timed)", file=sys.stderr)
    out = subprocess.run([path] + args + ["--benchmark_list_tests=true"], capture_output=True, text=True)
    if out.returncode != 0 or not out.stdout.strip():
        print(out.stdout[-2000:] + out.stderr[-2000:], file=sys.stderr)
        return 1
    return 0


def wrap_mpirun(args):
    """`mpirun …` on this machine runs for real (as root and with more ranks than cores allowed, as in CI); a run over
    other machines (a hostfile or host list) is checked for its program only."""
    if any(a.split("=")[0] in ("--hostfile", "-hostfile", "--machinefile", "--host", "-H") for a in args):
        print(f"docs: mpirun {' '.join(args)}: skipped (needs the machines it names)", file=sys.stderr)
        return 0
    launcher = shutil.which("mpirun")
    if not launcher:
        print("docs: mpirun is not installed (scripts/install-deps installs openmpi-bin)", file=sys.stderr)
        return 1
    print(f"docs: mpirun {' '.join(args)}", file=sys.stderr)
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1")
    os.execve(launcher, [launcher] + args, env)


def wrap_script(name, args, repo):
    path = os.path.join(repo, "scripts", name)
    if not os.access(path, os.X_OK):
        print(f"docs: scripts/{name} does not exist or is not executable", file=sys.stderr)
        return 1
    if name == "fetch-model":
        print(os.environ["QLORA_MODEL"])
        return 0
    if subprocess.run(["bash", "-n", path]).returncode != 0:
        print(f"docs: scripts/{name} has a bash syntax error", file=sys.stderr)
        return 1
    if name == "fuzz":
        targets = {f[:-4] for f in os.listdir(os.path.join(repo, "tests", "fuzz")) if f.endswith(".cpp")}
        for a in args:
            if not a.isdigit() and a not in targets:
                print(f"docs: scripts/fuzz: no fuzz target '{a}' (tests/fuzz/{a}.cpp); targets: {sorted(targets)}",
                      file=sys.stderr)
                return 1
    print(f"docs: scripts/{name} {' '.join(args)}: checked (exists, bash -n clean), not run inside a test",
          file=sys.stderr)
    return 0


def wrap_fuzz_binary(name, repo):
    target = name[len("fuzz_"):]
    if not os.path.exists(os.path.join(repo, "tests", "fuzz", target + ".cpp")):
        print(f"docs: {name}: no tests/fuzz/{target}.cpp", file=sys.stderr)
        return 1
    print(f"docs: build-fuzz/bin/{name}: a fuzz target of tests/fuzz; checked, not run", file=sys.stderr)
    return 0


def wrap_cmake(args, repo, work):
    configured = os.path.join(work, "cmake-build")
    if "--build" in args:
        targets = []
        if "--target" in args:
            i = args.index("--target") + 1
            while i < len(args) and not args[i].startswith("-"):
                targets.append(args[i])
                i += 1
        listing = subprocess.run(["ninja", "-C", configured, "-t", "targets", "all"], capture_output=True, text=True)
        known = {line.split(":")[0] for line in listing.stdout.splitlines()}
        for t in targets:
            if t not in known:
                print(f"docs: cmake --build: no target '{t}' in the configured build", file=sys.stderr)
                return 1
        print(f"docs: cmake --build: targets {targets} exist; not built again", file=sys.stderr)
        return 0
    rewritten, i = [], 0
    while i < len(args):
        if args[i] == "-S":
            rewritten += ["-S", repo]
            i += 2
        elif args[i] == "-B":
            rewritten += ["-B", configured]
            i += 2
        else:
            rewritten.append(args[i])
            i += 1
    out = subprocess.run(["cmake"] + rewritten + ["-Wdev"], capture_output=True, text=True)
    text = out.stdout + out.stderr
    if out.returncode != 0 or "Manually-specified variables were not used" in text:
        print(text[-3000:], file=sys.stderr)
        print("docs: cmake configure failed or ignored an option", file=sys.stderr)
        return 1
    print(f"docs: cmake {' '.join(args)}: configured in WORK (every option used)", file=sys.stderr)
    return 0


def wrap_python(args, repo):
    if not args or not args[0].endswith(".py"):
        os.execvp(sys.executable, [sys.executable] + args)
    script = os.path.join(repo, args[0])
    out = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True)
    if out.returncode != 0:
        print(out.stderr[-2000:], file=sys.stderr)
        return 1
    for a in args[1:]:
        if a.startswith("--") and a.split("=")[0] not in out.stdout:
            print(f"docs: {args[0]}: {a.split('=')[0]} is not an option of the script", file=sys.stderr)
            return 1
    print(f"docs: python3 {args[0]}: every flag is one of its options; not run (it needs torch and minutes)",
          file=sys.stderr)
    return 0


def wrap(what, args):
    repo, work, bin_dir = os.environ["DOCS_REPO"], os.environ["DOCS_WORK"], os.environ["DOCS_BIN"]
    if what == "qlora":
        return wrap_qlora(args, work, bin_dir)
    if what.startswith("example_"):
        return wrap_example(what, args, work, bin_dir)
    if what.startswith("qlora_") and what.endswith("bench"):
        return wrap_bench(what, args, bin_dir)
    if what.startswith("script:"):
        return wrap_script(what[len("script:"):], args, repo)
    if what.startswith("fuzz_"):
        return wrap_fuzz_binary(what, repo)
    if what == "cmake":
        return wrap_cmake(args, repo, work)
    if what == "python3":
        return wrap_python(args, repo)
    if what == "mpirun":
        return wrap_mpirun(args)
    if what == "srun":
        print(f"docs: srun {' '.join(args)}: skipped (needs a Slurm cluster)", file=sys.stderr)
        return 0
    print(f"docs: unknown wrapper {what}", file=sys.stderr)
    return 1


# ---- the scratch checkout ---------------------------------------------------------------------------------------------

def write(path, text):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def executable(path, text):
    write(path, text)
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def wrapper(what):
    return f'#!/usr/bin/env bash\nexec "{sys.executable}" "{HERE}" wrap {what} "$@"\n'


def fixtures(repo, work, model):
    finance = os.path.join(repo, "examples", "data", "finance_reasoning.jsonl")
    with open(finance, encoding="utf-8") as f:
        records = f.readlines()[:40]
    for name in ["data.jsonl", "fino1.jsonl"]:
        write(os.path.join(work, name), "".join(records))
    qa = [("What is 15% of 240?", "36"), ("What is 2 + 2?", "4"), ("Half of 90?", "45"), ("10% of 50?", "5"),
          ("Double 21?", "42"), ("7 times 6?", "42"), ("100 minus 1?", "99"), ("3 squared?", "9"),
          ("Square root of 81?", "9"), ("25% of 80?", "20"), ("12 + 30?", "42"), ("1000 / 8?", "125")]
    lines = [json.dumps({"instruction": q, "input": "" if i % 2 else "show the number", "output": a})
             for i, (q, a) in enumerate(qa)]
    write(os.path.join(work, "alpaca_data.jsonl"), "\n".join(lines) + "\n")
    lines = [json.dumps({"conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": a}]}) for q, a in qa]
    write(os.path.join(work, "sharegpt.jsonl"), "\n".join(lines) + "\n")
    lines = [json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
             for q, a in qa]
    write(os.path.join(work, "chats.jsonl"), "\n".join(lines) + "\n")
    write(os.path.join(work, "qa.csv"), "question,answer\n" + "".join(f'"{q}",{a}\n' for q, a in qa))
    pairs = [json.dumps({"prediction": f"The answer is {a}.", "reference": a}) for _, a in qa]
    for name in ["answers.jsonl", "results.jsonl"]:
        write(os.path.join(work, name), "\n".join(pairs) + "\n")
    write(os.path.join(work, "preds.txt"), "".join(f"The answer is {a}.\n" for _, a in qa))
    write(os.path.join(work, "refs.txt"), "".join(f"{a}\n" for _, a in qa))
    write(os.path.join(work, "recipe.json"), json.dumps(
        {"training": {"learning_rate": 2e-4, "per_device_train_batch_size": 1, "logging_steps": 1},
         "lora": {"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"]},
         "data": {"max_seq_length": 256}}, indent=1) + "\n")
    for name in ["model.gguf", "gemma-3-270m.gguf"]:
        os.symlink(model, os.path.join(work, name))
    os.makedirs(os.path.join(work, "home", "models"))
    os.symlink(os.path.join(repo, "tests", "data", "gemma3_mm", "hf5"), os.path.join(work, "home", "models", "gemma-3-4b-it"))
    os.symlink(os.path.join(repo, "tests", "data", "gemma4_cli_mm"), os.path.join(work, "home", "models", "gemma-4-E2B-it"))
    os.symlink(os.path.join(repo, "tests", "data", "gemma3_model", "tiny"), os.path.join(work, "checkpoint-folder"))
    os.symlink(os.path.join(work, "out"), os.path.join(work, "adapter-folder"))  # README.md's block trains out/
    for folder in ["examples", "tests", "bench", "docs", "tools"]:
        os.symlink(os.path.join(repo, folder), os.path.join(work, folder))
    os.makedirs(os.path.join(work, "tmp"))


def setup(repo, work, bin_dir, model):
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    fixtures(repo, work, model)
    bin_wrappers = os.path.join(work, "build", "bin")
    for program in ["qlora", "example_custom_loop", "example_generate", "qlora_bench", "qlora_cuda_bench",
                    "qlora_step_bench"]:
        executable(os.path.join(bin_wrappers, program), wrapper(program))
    for script in os.listdir(os.path.join(repo, "scripts")):
        if os.path.isfile(os.path.join(repo, "scripts", script)):
            executable(os.path.join(work, "scripts", script), wrapper("script:" + script))
    for source in os.listdir(os.path.join(repo, "tests", "fuzz")):
        if source.endswith(".cpp"):
            executable(os.path.join(work, "build-fuzz", "bin", "fuzz_" + source[:-4]), wrapper("fuzz_" + source[:-4]))
    # Shell functions for the commands a block calls by name.
    return f"""set -eo pipefail
cd "{work}"
export HOME="{work}/home" QLORA_PROGRESS=lines
qlora() {{ "{work}/build/bin/qlora" "$@"; }}
cmake() {{ "{sys.executable}" "{HERE}" wrap cmake "$@"; }}
python3() {{ "{sys.executable}" "{HERE}" wrap python3 "$@"; }}
git() {{ echo "docs: git $* (skipped: needs the network)" >&2; }}
mpirun() {{ "{sys.executable}" "{HERE}" wrap mpirun "$@"; }}
mpiexec() {{ "{sys.executable}" "{HERE}" wrap mpirun "$@"; }}
srun() {{ "{sys.executable}" "{HERE}" wrap srun "$@"; }}
"""


# ---- the blocks ---------------------------------------------------------------------------------------------------------

def blocks(repo):
    pages = ["README.md"] + sorted(os.path.join("docs", f) for f in os.listdir(os.path.join(repo, "docs"))
                                   if f.endswith(".md"))
    for page in pages:
        lines = open(os.path.join(repo, page), encoding="utf-8").read().split("\n")
        i = 0
        while i < len(lines):
            if lines[i].strip() in ("```bash", "```sh", "```shell"):
                start = i + 1
                j = start
                while j < len(lines) and lines[j].strip() != "```":
                    j += 1
                yield page, start + 1, lines[start:j]
                i = j
            i += 1


def runnable(block_lines):
    """The block as bash runs it: `git clone <this repository> …` lines (placeholders in angle brackets are not
    shell) become a skip notice, and usage synopses lose their [optional] parts."""
    out = []
    for line in block_lines:
        if line.lstrip().startswith("git clone"):
            out.append('echo "docs: ' + line.strip().replace('"', "'") + ' (skipped: needs the network)" >&2')
            continue
        depth, kept = 0, []
        for ch in line:  # `[--output scores.json]`, `[--dtype float32|bfloat16]`: synopsis parts, left out
            if ch == "[":
                depth += 1
                continue
            if ch == "]" and depth:
                depth -= 1
                continue
            if not depth:
                kept.append(ch)
        out.append("".join(kept))
    return "\n".join(out)


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "wrap":
        return wrap(sys.argv[2], sys.argv[3:])
    repo, bin_dir, work = (os.path.abspath(a) for a in sys.argv[1:4])
    model = os.environ.get("QLORA_MODEL", "")
    if not model or not os.path.exists(model):
        print("skipped: QLORA_MODEL is not set to the Gemma 3 270M GGUF (scripts/fetch-model); the documented "
              "commands use it")
        return 77
    os.environ.update(DOCS_REPO=repo, DOCS_WORK=work, DOCS_BIN=bin_dir)
    prelude = setup(repo, work, bin_dir, model)
    count = 0
    for page, line, block in blocks(repo):
        script = prelude + runnable(block) + "\n"
        print(f"--- {page}:{line}", flush=True)
        result = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
        notes = [l for l in result.stderr.splitlines() if l.startswith("docs: ")]
        for note in notes:
            print("    " + note[len("docs: "):])
        if result.returncode != 0:
            print(f"FAILED: the block at {page}:{line} exited {result.returncode}:\n" + "\n".join(block))
            print("--- its output (tail):\n" + (result.stdout + result.stderr)[-4000:])
            return 1
        count += 1
    print(f"all {count} command blocks of README.md and docs/ ran")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
