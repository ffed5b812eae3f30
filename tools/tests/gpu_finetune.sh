#!/usr/bin/env bash
# qlora finetune --device cuda against the same run on the CPU, on the tiny Gemma 3 folder (multimodal layout,
# tests/data/gemma3_mm/hf5):
#   * 8 steps (LoRA on all seven projections, dropout, paged 8-bit AdamW, clipping, gradient checkpointing) on the
#     GPU and on the CPU: every logged loss and gradient norm equal within fp32 rounding (relative 2e-4);
#   * the GPU run's checkpoint-4 resumed on the CPU ends with the loss of the straight CPU run (the checkpoint files
#     are the CPU's: a run moves between devices);
#   * the same on the GPU with --bf16 (GEMMs on the tensor cores, bf16 operands): every loss within 2e-2 of the fp32
#     CPU run's (relative) and every gradient norm within 1e-1;
#   * the memory check is the GPU's (estimate against the memory free there) and the step line shows the GPU memory;
#   * Gemma 4 (tests/data/gemma4_cli) is refused on the GPU by name (its per-layer embeddings run on the CPU so far).
# usage: gpu_finetune.sh QLORA WORK [cuda:N]. Exits 77 (skipped) where the program or the machine has no GPU.
set -euo pipefail
qlora="$1" work="$2" device="${3:-cuda}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
rm -rf "$work" && mkdir -p "$work"
die() { echo "FAILED: $*"; exit 1; }
probe=$("$qlora" finetune --device "$device" --model "$root/tests/data/gemma4_cli" --dry-run 2>&1 || true)
if grep -q "built without CUDA\|no CUDA GPU on this machine\|this machine has" <<< "$probe"; then
  echo "skipped: $(grep -o '\-\-device.*' <<< "$probe" | head -1)"
  exit 77
fi
args=(--select 24 --eval-size 4 --max-seq-length 256 --max-steps 8 --logging-steps 1 --save-steps 4 --eval-steps 8
      --per-device-train-batch-size 2 --gradient-accumulation-steps 2 --lora-r 4 --lora-alpha 8 --lora-dropout 0.1
      --target-modules all-linear --optim paged_adamw_8bit --max-grad-norm 0.3 --learning-rate 2e-3
      --gradient-checkpointing --report-to none)
compare() {  # compare A B LOSS_TOLERANCE [GRAD_NORM_TOLERANCE]: the metrics.jsonl of two runs, step by step
  python3 - "$1" "$2" "$3" "${4:-$3}" <<'PY'
import json, sys
def read(path):
    return {r["step"]: r for r in map(json.loads, open(path)) if "loss" in r}
a, b = read(sys.argv[1]), read(sys.argv[2])
tols = {"loss": float(sys.argv[3]), "grad_norm": float(sys.argv[4])}
if sorted(a) != sorted(b): sys.exit(f"steps differ: {sorted(a)} vs {sorted(b)}")
worst = 0.0
for step in sorted(a):
    for key in ("loss", "grad_norm"):
        x, y = a[step][key], b[step][key]
        rel = abs(x - y) / max(abs(y), 1e-12)
        worst = max(worst, rel)
        print(f"step {step} {key}: {x:.6f} vs {y:.6f} (relative {rel:.2e})")
        if rel > tols[key]: sys.exit(f"step {step}: {key} {x} vs {y}, relative {rel:.2e} > {tols[key]}")
print(f"worst relative difference {worst:.2e} (tolerances {tols})")
PY
}
for model in gemma3_mm/hf5; do
  name=${model//\//-}
  for dev in cpu "$device" "$device --bf16"; do
    out="$work/$name-${dev//[: ]/-}"
    # shellcheck disable=SC2086 # "$device --bf16" is two words
    "$qlora" finetune "${args[@]}" --model "$root/tests/data/$model" --device $dev --output-dir "$out" \
      2> "$out.log" || { cat "$out.log"; die "$name on $dev"; }
  done
  gpu="$work/$name-${device//:/-}" cpu="$work/$name-cpu" tc="$work/$name-${device//:/-}---bf16"
  grep -q "training on cuda" "$gpu.log" || { cat "$gpu.log"; die "$name: the GPU run does not say it trains on the GPU"; }
  grep -q "| GPU [0-9.]* GiB (peak" "$gpu.log" || { cat "$gpu.log"; die "$name: no GPU memory in the step line"; }
  grep -q "GPU memory estimate .* free on cuda" "$gpu.log" || { cat "$gpu.log"; die "$name: no GPU memory check"; }
  grep "qlora: done" "$gpu.log"
  echo "== $name: GPU vs CPU, every step"
  compare "$gpu/metrics.jsonl" "$cpu/metrics.jsonl" 2e-4 || die "$name: the GPU run's losses differ from the CPU's"
  grep -q "GPU GEMMs: bf16" "$tc.log" || { cat "$tc.log"; die "$name: --bf16 on the GPU does not say bf16 GEMMs"; }
  echo "== $name: GPU with bf16 tensor-core GEMMs vs the fp32 CPU run"
  compare "$tc/metrics.jsonl" "$cpu/metrics.jsonl" 2e-2 1e-1 || die "$name: the bf16 GPU run strays from the CPU's"
  # the GPU's checkpoint-4 continued on the CPU
  resumed="$work/$name-resumed"
  mkdir -p "$resumed" && cp -r "$gpu/checkpoint-4" "$resumed/"
  "$qlora" finetune "${args[@]}" --model "$root/tests/data/$model" --device cpu --output-dir "$resumed" \
    --resume-from-checkpoint latest 2> "$resumed.log" || { cat "$resumed.log"; die "$name: resume on the CPU"; }
  grep -q "resuming from" "$resumed.log" || die "$name: did not resume"
  echo "== $name: GPU steps 1-4 then CPU steps 5-8 vs the CPU run"
  python3 - "$resumed/metrics.jsonl" "$cpu/metrics.jsonl" <<'PY' || die "$name: the resumed run differs"
import json, sys
last = lambda p: [r for r in map(json.loads, open(p)) if "loss" in r][-1]
a, b = last(sys.argv[1]), last(sys.argv[2])
rel = abs(a["loss"] - b["loss"]) / abs(b["loss"])
print(f"step {a['step']} loss {a['loss']:.6f} vs {b['loss']:.6f} (relative {rel:.2e})")
sys.exit(0 if a["step"] == b["step"] and rel <= 2e-4 else 1)
PY
done
"$qlora" finetune "${args[@]}" --model "$root/tests/data/gemma4_cli" --device "$device" --output-dir "$work/gemma4" \
  2> "$work/gemma4.log" && die "Gemma 4 trained on the GPU: make this script compare it with the CPU"
grep -q "Gemma 4 runs on the CPU so far; asked for cuda" "$work/gemma4.log" || { cat "$work/gemma4.log"; die "Gemma 4's refusal"; }
echo "gpu_finetune: passed"
