#!/usr/bin/env bash
# Data-parallel training over MPI (docs/distributed.md), on the tiny multimodal folder (needs no model download):
#   dist.sh MPIEXEC QLORA WORK
# 1. `mpirun -np 2` with per-device batch 1 gives the loss curve, checkpoints and adapter of one process with batch
#    2 (9 train samples: the last micro-batch of each epoch leaves rank 1 empty); `-np 3` batch 1 = one process
#    batch 3 (an uneven split too); within 1e-5 (losses) and 1e-6 (adapters): tools/tests/dist_compare.py.
# 2. The 2-rank run resumed from its checkpoint-2 by one process with batch 2 ends as the 2-rank run did; resumed with
#    batch 1 (another global batch) it is refused.
# 3. Failures end every rank within a bounded time with a message naming the rank: ranks started with different
#    flags; a rank stopped (SIGSTOP) with --ddp-timeout 3; a rank killed (SIGKILL).
set -uo pipefail
mpiexec=$1 qlora=$2 work=$3
here="$(cd "$(dirname "$0")" && pwd)"
model="$here/../../tests/data/gemma3_mm/hf5"
rm -rf "$work" && mkdir -p "$work"
die() { echo "FAILED: $*"; exit 1; }
# as root (containers, CI) Open MPI wants to be told; more ranks than cores are allowed (the test machine has 2)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
mpirun=("$mpiexec" --bind-to none)
# with LoRA dropout: a row's masks are keyed by its place in the global micro-batch, so they are one process's
common=(finetune --model "$model" --select 15 --eval-size 3 --max-seq-length 160 --save-steps 2 --save-total-limit 10
        --lora-r 4 --lora-alpha 8 --target-modules q_proj,v_proj,down_proj --report-to none --lora-dropout 0.1
        --gradient-accumulation-steps 2 --logging-steps 1 --eval-steps 3 --optim paged_adamw_8bit)
run() {  # run NAME RANKS BATCH [more flags]
  local name=$1 ranks=$2 batch=$3
  shift 3
  local cmd=("$qlora" "${common[@]}" --max-steps 7 --per-device-train-batch-size "$batch" --output-dir "$work/$name" "$@")
  if [ "$ranks" = 1 ]; then "${cmd[@]}" > "$work/$name.log" 2>&1
  else timeout 300 "${mpirun[@]}" -np "$ranks" "${cmd[@]}" > "$work/$name.log" 2>&1; fi || { cat "$work/$name.log"; die "$name"; }
}
run one2 1 2
run two 2 1
grep -q "data parallel over 2 ranks" "$work/two.log" || die "the 2-rank run does not say it is data parallel"
python3 "$here/dist_compare.py" "$work/one2" "$work/two" || die "2 ranks x batch 1 != 1 process x batch 2"
run one3 1 3
run three 3 1
python3 "$here/dist_compare.py" "$work/one3" "$work/three" || die "3 ranks x batch 1 != 1 process x batch 3"
[ "$(grep -c "^step 7/7 | epoch" "$work/two.log")" = 1 ] || die "the progress line is printed by more than rank 0"

# resume a 2-rank run with one process
cp -r "$work/two" "$work/resumed"
rm -rf "$work/resumed/checkpoint-4" "$work/resumed/checkpoint-6" "$work/resumed/checkpoint-7" "$work/resumed/adapter_model.safetensors"
run resumed 1 2 --resume-from-checkpoint "$work/resumed/checkpoint-2"
grep -q "resuming from" "$work/resumed.log" || die "did not resume"
python3 "$here/dist_compare.py" "$work/two" "$work/resumed" --steps 3 || die "the 2-rank run resumed by 1 process differs"
"$qlora" "${common[@]}" --max-steps 7 --per-device-train-batch-size 1 --output-dir "$work/resumed" \
  --resume-from-checkpoint "$work/resumed/checkpoint-2" > "$work/rebatch.log" 2>&1 && die "a resume with another global batch ran"
grep -q "global batch of 2 rows per micro-batch, this run has 1" "$work/rebatch.log" || { cat "$work/rebatch.log"; die "no message for another global batch"; }

# ranks started with different flags: every rank ends, rank 1 and the differing key named
SECONDS=0
timeout 120 "${mpirun[@]}" -np 1 "$qlora" "${common[@]}" --max-steps 7 --output-dir "$work/mismatch" : \
  -np 1 "$qlora" "${common[@]}" --max-steps 7 --output-dir "$work/mismatch" --learning-rate 1e-3 > "$work/mismatch.log" 2>&1
rc=$?
[ $rc != 0 ] && [ $rc != 124 ] || { cat "$work/mismatch.log"; die "mismatched ranks: exit $rc"; }
grep -q "rank 1 runs another job than rank 0" "$work/mismatch.log" && grep -q "learning_rate" "$work/mismatch.log" \
  || { cat "$work/mismatch.log"; die "no message naming rank 1 and learning_rate"; }
echo "mismatched flags: every rank ended in ${SECONDS} s"

# a rank that stops answering / that dies: the run ends, naming it
long=(--max-steps 100000 --save-strategy no --eval-strategy no)
pid_of_rank() {  # the pid of rank $1 of the qlora processes started under $work/$2
  for p in $(pgrep -f "$work/$2" ); do
    tr '\0' '\n' < /proc/$p/environ 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$1" && [ "$(cat /proc/$p/comm)" = qlora ] && echo $p
  done
}
for fault in STOP KILL; do
  name=fault-$fault
  timeout 120 "${mpirun[@]}" -np 2 "$qlora" "${common[@]}" "${long[@]}" --ddp-timeout 3 --output-dir "$work/$name" \
    > "$work/$name.log" 2>&1 &
  launcher=$!
  for _ in $(seq 100); do [ -s "$work/$name/metrics.jsonl" ] && break; sleep 0.2; done
  [ -s "$work/$name/metrics.jsonl" ] || { cat "$work/$name.log"; die "$fault: the run did not start"; }
  victim=$(pid_of_rank 1 "$name")
  [ -n "$victim" ] || die "$fault: no rank 1 process found"
  SECONDS=0
  kill -$fault "$victim"
  wait $launcher
  rc=$?
  kill -KILL "$victim" 2>/dev/null
  [ $rc != 0 ] && [ $rc != 124 ] || { tail -20 "$work/$name.log"; die "$fault: exit $rc"; }
  if [ $fault = STOP ]; then
    # stopped between collectives (rank 0 waits at the next check-in) or inside one (rank 0 waits in the sum)
    grep -Eq "rank 1 (did not reach '.*' within 3 s|stopped answering inside it)" "$work/$name.log" \
      || { tail -20 "$work/$name.log"; die "STOP: rank 1 not named"; }
  else
    grep -q "rank 1 .*exited on signal 9" "$work/$name.log" || { tail -20 "$work/$name.log"; die "KILL: rank 1 not named"; }
  fi
  echo "rank 1 got SIG$fault: every rank ended in ${SECONDS} s"
done
echo "data parallel: equal curves and adapters for 2 and 3 ranks, resume across rank counts, failures end the run"
