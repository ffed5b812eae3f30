#!/usr/bin/env bash
# Faults during qlora finetune, on the tiny multimodal folder (tests/data/gemma3_mm/hf5; no model download needed):
# each must end with a clear message, the previous checkpoint intact, no partial file, and a resume that ends with
# the same adapter bytes as an uninterrupted run.
#   faults.sh QLORA WORK
#   - disk full while writing a checkpoint, the final adapter, a merged model or a GGUF export (RLIMIT_FSIZE: writes
#     past the limit fail with EFBIG)
#   - SIGTERM and SIGINT mid-run: the step finishes, a checkpoint is written, exit 128 + signal, a message says how
#     to resume
#   - SIGKILL at many moments, one run after another resuming the previous one
#   - an output folder that is a file, below a file, or not writable: refused before the model is loaded; one that
#     vanishes mid-run: a clear error or a finished run, never a crash
#   - too little memory for the run (ulimit -v): refused before loading, with the estimate (needs QLORA_MODEL)
set -uo pipefail
qlora=$1 work=$2
mm="$(cd "$(dirname "$0")/../.." && pwd)/tests/data/gemma3_mm/hf5"
rm -rf "$work" && mkdir -p "$work"
die() { echo "FAILED: $*"; exit 1; }
steps=40
base=(finetune --model "$mm" --select 12 --eval-size 2 --max-seq-length 160 --lora-r 4 --target-modules q_proj,v_proj
      --report-to none --lora-dropout 0.1 --eval-strategy no)
args=("${base[@]}" --max-steps $steps)
"$qlora" "${args[@]}" --save-steps 1000 --output-dir "$work/straight" 2> "$work/straight.txt" \
  || { cat "$work/straight.txt"; die "the uninterrupted run"; }
same_as_straight() {  # the final adapter of run $1 equals the uninterrupted run's, byte for byte
  cmp -s "$work/straight/adapter_model.safetensors" "$1/adapter_model.safetensors" || die "$2: the adapter differs"
}
same_steps() {  # run $1's metrics.jsonl holds the uninterrupted run's steps, each once, in order
  diff <(grep -o '"step":[0-9]*' "$work/straight/metrics.jsonl") <(grep -o '"step":[0-9]*' "$1/metrics.jsonl") > /dev/null \
    || die "$2: metrics.jsonl does not hold each step once ($(grep -o '"step":[0-9]*' "$1/metrics.jsonl" | tr '\n' ' '))"
}
has_checkpoint() { ls -d "$1"/checkpoint-* 2> /dev/null | grep -qv '\.partial$'; }  # a published one (a kill may leave only .partial)
no_partial() { ! ls -d "$1"/*.partial > /dev/null 2>&1 || die "$2: a .partial folder was left in $1"; }
wait_for_step() {  # wait_for_step LOG N: until the log shows step N (training has begun)
  for _ in $(seq 400); do grep -q "^step $2/" "$1" 2> /dev/null && return 0; sleep 0.05; done
  return 1
}

# SIGTERM and SIGINT: the step ends, a checkpoint is written, the run resumes to the same adapter.
for sig in TERM INT; do
  out="$work/sig$sig"
  "$qlora" "${args[@]}" --save-steps 1000 --output-dir "$out" 2> "$out.txt" &
  pid=$!
  wait_for_step "$out.txt" 5 || { kill -9 $pid; die "SIG$sig: training did not start"; }
  kill -$sig $pid
  wait $pid
  rc=$?
  [ $rc -ne 0 ] || die "SIG$sig: the run ended normally before the signal (make it longer)"
  want=$((128 + $(kill -l $sig)))
  [ $rc -eq $want ] || { cat "$out.txt"; die "SIG$sig: exit $rc, expected $want"; }
  grep -q "qlora: stopped by SIG$sig after step [0-9]* of $steps; .*checkpoint-[0-9]* holds the run" "$out.txt" \
    || { cat "$out.txt"; die "SIG$sig: no message"; }
  ls -d "$out"/checkpoint-* > /dev/null 2>&1 || die "SIG$sig: no checkpoint"
  no_partial "$out" "SIG$sig"
  [ $sig = TERM ] && cp -r "$out" "$work/full"  # a stopped run, for the disk-full case below
  "$qlora" "${args[@]}" --save-steps 1000 --output-dir "$out" --resume-from-checkpoint latest 2> "$out.resume.txt" \
    || { cat "$out.resume.txt"; die "SIG$sig: resume"; }
  same_as_straight "$out" "SIG$sig"
  same_steps "$out" "SIG$sig"
  echo "ok: SIG$sig: $(grep -o 'stopped by .* of [0-9]*' "$out.txt"), exit $rc; resumed to the same adapter and metrics steps"
done

# Disk full: the run stopped by SIGTERM above resumes with a file-size limit that its next checkpoint exceeds.
last=$(ls -d "$work/full"/checkpoint-* | sort -V | tail -n 1)
cp -r "$last" "$work/last-checkpoint.copy"
( trap '' XFSZ; ulimit -f 16; exec "$qlora" "${args[@]}" --save-steps 1 --output-dir "$work/full" \
    --resume-from-checkpoint latest ) 2> "$work/full.txt" && die "disk full: the run succeeded"
grep -q "checkpoint-[0-9]*: not saved: .*write failed: File too large" "$work/full.txt" \
  || { cat "$work/full.txt"; die "disk full: no clear message"; }
diff -r "$work/last-checkpoint.copy" "$last" > /dev/null || die "disk full: $(basename "$last") changed"
no_partial "$work/full" "disk full"
[ "$(ls -d "$work/full"/checkpoint-* | sort -V | tail -n 1)" = "$last" ] || die "disk full: a newer checkpoint appeared"
"$qlora" "${args[@]}" --save-steps 1000 --output-dir "$work/full" --resume-from-checkpoint latest 2> /dev/null \
  || die "disk full: resume"
same_as_straight "$work/full" "disk full"
echo "ok: disk full while saving: $(grep -o 'checkpoint-[0-9]*: not saved.*' "$work/full.txt" | head -c 60)...; $(basename "$last") intact, resume ends with the same adapter"

# Disk full at the end of a run (the final adapter), in merge and in export: a message, no file or temporary left.
no_temp() { ! ls "$1"/*.tmp-* > /dev/null 2>&1 || die "$2: a temporary file was left in $1"; }
( trap '' XFSZ; ulimit -f 16; exec "$qlora" "${base[@]}" --max-steps 2 --save-strategy no --output-dir "$work/final" ) \
  2> "$work/final.txt" && die "disk full (final adapter): the run succeeded"
grep -q "adapter_model.safetensors: write failed: File too large" "$work/final.txt" \
  || { cat "$work/final.txt"; die "disk full (final adapter): no clear message"; }
[ ! -e "$work/final/adapter_model.safetensors" ] || die "disk full (final adapter): a partial adapter was left"
no_temp "$work/final" "disk full (final adapter)"
for what in merge export; do
  if [ $what = merge ]; then dest=(--output "$work/merged"); else dest=(--gguf "$work/merged/text.gguf"); fi
  mkdir -p "$work/merged"
  ( trap '' XFSZ; ulimit -f 64; exec "$qlora" $what --model "$mm" --adapter "$work/straight" "${dest[@]}" ) \
    > "$work/$what.txt" 2>&1 && die "disk full ($what): it succeeded"
  grep -q "write failed: File too large" "$work/$what.txt" || { cat "$work/$what.txt"; die "disk full ($what): message"; }
  [ ! -e "$work/merged/model.safetensors" ] && [ ! -e "$work/merged/text.gguf" ] || die "disk full ($what): a partial file"
  no_temp "$work/merged" "disk full ($what)"
done
echo "ok: disk full while writing the final adapter, a merged model, a GGUF: a message, nothing partial left"

# SIGKILL at many moments: each run resumes the last one and is killed at a random point, then one runs to the end.
out="$work/killed"
kills=0
for i in $(seq 8); do
  resume=()
  has_checkpoint "$out" && resume=(--resume-from-checkpoint latest)
  "$qlora" "${args[@]}" --save-steps 3 --output-dir "$out" "${resume[@]}" 2> "$work/kill$i.txt" &
  pid=$!
  sleep "0.$(( (RANDOM % 9) + 1 ))"
  kill -9 $pid 2> /dev/null && kills=$((kills + 1))
  wait $pid 2> /dev/null
done
resume=()
has_checkpoint "$out" && resume=(--resume-from-checkpoint latest)
"$qlora" "${args[@]}" --save-steps 3 --output-dir "$out" "${resume[@]}" 2> "$work/kill-final.txt" \
  || { cat "$work/kill-final.txt"; die "SIGKILL: the final resume"; }
no_partial "$out" "SIGKILL"
same_as_straight "$out" "SIGKILL"
same_steps "$out" "SIGKILL"
echo "ok: SIGKILL at $kills random moments, each run resuming the last: the same adapter at the end, one metrics record per step"

# SIGKILL before the first checkpoint, then the same command again (nothing to resume): one record per step.
out="$work/restart"
"$qlora" "${args[@]}" --save-steps 1000 --output-dir "$out" 2> "$out.txt" &
pid=$!
wait_for_step "$out.txt" 2 || { kill -9 $pid; die "restart: training did not start"; }
kill -9 $pid
wait $pid 2> /dev/null
"$qlora" "${args[@]}" --save-steps 1000 --output-dir "$out" 2> "$out.2.txt" || { cat "$out.2.txt"; die "restart: the second run"; }
same_as_straight "$out" "restart"
same_steps "$out" "restart"
echo "ok: killed before its first checkpoint and started again: the same adapter, one metrics record per step"

# A killed first save leaves only checkpoint-<step>.partial: resuming "latest" says so, removes it, keeps nothing half-made.
out="$work/only-partial"
mkdir -p "$out/checkpoint-3.partial"
"$qlora" "${args[@]}" --output-dir "$out" --resume-from-checkpoint latest 2> "$out.txt" && die "only a .partial: resume succeeded"
grep -q "no checkpoint-<step> folder in .*only the unfinished save of a killed run, now removed" "$out.txt" \
  || { cat "$out.txt"; die "only a .partial: no clear message"; }
no_partial "$out" "only a .partial"
echo "ok: only an unfinished save to resume from: $(grep -o 'no checkpoint.*' "$out.txt" | head -c 90)..."

# An output folder that is a file (or below one): refused before the model is loaded.
echo x > "$work/a-file"
for dir in "$work/a-file" "$work/a-file/sub"; do
  "$qlora" "${args[@]}" --output-dir "$dir" 2> "$work/file.txt" && die "output dir $dir: accepted"
  grep -q "\[finetune\] --output-dir $dir: " "$work/file.txt" || { cat "$work/file.txt"; die "output dir $dir: message"; }
  ! grep -q "loading" "$work/file.txt" || die "output dir $dir: refused only after loading"
done
echo "ok: an output folder that is a file is refused before loading"
# Not writable (as root, checked as the unprivileged user nobody: root may write anywhere).
mkdir -p "$work/readonly" && chmod 755 "$work/readonly"
ro=("$qlora")
ro_args=("${args[@]}")
if [ "$(id -u)" = 0 ]; then  # nobody must be able to read the model: a world-readable copy
  cp -r "$mm" "$work/model" && chmod -R a+rX "$work/model" && chmod o+rx "$work"
  ro_args=("${args[@]/#$mm/$work/model}")  # the same flags, --model the copy
  ro=(setpriv --reuid=65534 --regid=65534 --clear-groups "$qlora")
else
  chmod a-w "$work/readonly"
fi
"${ro[@]}" "${ro_args[@]}" --output-dir "$work/readonly/run" 2> "$work/ro.txt" && die "read-only output: accepted"
grep -q "\[finetune\] --output-dir $work/readonly/run: cannot be created ($work/readonly is not writable)" "$work/ro.txt" \
  || { cat "$work/ro.txt"; die "read-only output: message"; }
chmod u+w "$work/readonly"
# Vanishing mid-run: the folder deleted while training; a clear error, or the run finishes (folders recreated).
"$qlora" "${args[@]}" --save-steps 1 --output-dir "$work/vanish" 2> "$work/vanish.txt" &
pid=$!
wait_for_step "$work/vanish.txt" 3 || { kill -9 $pid; die "vanishing output: training did not start"; }
rm -rf "$work/vanish"
wait $pid
rc=$?
[ $rc -lt 128 ] || { cat "$work/vanish.txt"; die "vanishing output: killed by a signal ($rc)"; }
if [ $rc -ne 0 ]; then
  grep -q "^qlora: \[" "$work/vanish.txt" || { tail -n 5 "$work/vanish.txt"; die "vanishing output: no clear message"; }
  echo "ok: an output folder that vanishes mid-run: $(grep '^qlora: \[' "$work/vanish.txt" | head -n 1 | head -c 150)"
else
  echo "ok: an output folder that vanishes mid-run: the run recreated it and finished"
fi


# Too little memory (the address-space limit counts): refused before loading, with the estimate.
if [ -n "${QLORA_MODEL:-}" ] && [ -f "$QLORA_MODEL" ]; then
  ( ulimit -v 1200000; exec "$qlora" finetune --model "$QLORA_MODEL" --output-dir "$work/oom" --max-steps 1 --select 4 \
      --eval-size 0 --report-to none ) 2> "$work/oom.txt" && die "out of memory: the run succeeded"
  grep -q "not enough memory: this run needs about" "$work/oom.txt" || { cat "$work/oom.txt"; die "out of memory: message"; }
  [ ! -e "$work/oom" ] || die "out of memory: an output folder was left"
  echo "ok: too little memory: $(grep -o 'not enough memory.*available' "$work/oom.txt")"
else
  echo "skipped the memory case: QLORA_MODEL is not set to the Gemma 3 270M GGUF"
fi
echo "all fault checks passed"
