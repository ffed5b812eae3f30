#!/usr/bin/env bash
# End-to-end checks of the qlora program on the real Gemma 3 270M GGUF (QLORA_MODEL; exit 77 = skipped without it).
#   cli.sh finetune QLORA WORK   a short fine-tune leaves adapter, checkpoints, TensorBoard and metrics; generate,
#                                merge and export use its adapter
#   cli.sh resume QLORA WORK     a run killed after checkpoint-2 and resumed ends with the uninterrupted run's adapter
#                                and optimizer bytes
#   cli.sh errors QLORA WORK     bad inputs fail with their message and leave no output folder
#   cli.sh help QLORA WORK       finetune --help lists every flag (needs no model)
#   cli.sh validation QLORA WORK every bad flag value is refused before any model is loaded (needs no model)
#   cli.sh multimodal QLORA WORK the tiny multimodal folder: finetune, resume, chat records, merge, export, generate
#   cli.sh gemma4 QLORA WORK     the Gemma 4 recipe on a tiny Gemma 4 folder: finetune with gradient checkpointing,
#                                PEFT's module names (no k/v on KV-sharing layers, no v on k = v layers), resume
set -uo pipefail
what=$1 qlora=$2 work=$3
# --device cuda where the tests run (no GPU there): refused, saying what is missing — the GPU (a program compiled
# with CUDA) or the toolkit (one compiled without)
if "$qlora" finetune --device cuda --dry-run 2>&1 | grep -qF "built without CUDA"; then
  cuda_refusal="--device cuda: this qlora was built without CUDA"
else
  cuda_refusal="--device cuda: no CUDA GPU on this machine"
fi
if [ "$what" = help ]; then  # every flag of the issue is listed by `qlora finetune --help`
  help=$("$qlora" finetune --help) || { echo "FAILED: --help"; exit 1; }
  for flag in num-train-epochs per-device-train-batch-size gradient-accumulation-steps learning-rate max-grad-norm \
              optim lora-r lora-alpha lora-dropout target-modules rank-pattern alpha-pattern max-seq-length bf16 gradient-checkpointing save-steps \
              save-total-limit logging-steps report-to resume-from-checkpoint max-steps seed device cpu-gemm config model; do
    grep -q -- "--$flag" <<< "$help" || { echo "FAILED: --$flag missing from finetune --help"; exit 1; }
  done
  echo "finetune --help lists every flag"
  exit 0
fi
if [ "$what" = multimodal ]; then
  # A Gemma3ForConditionalGeneration folder as the 4B-27B -it checkpoints come (tiny, random, transformers 5's
  # sharded layout: tests/data/gemma3_mm/hf5): finetune, resume, merge both ways, export and generate. Needs no model.
  mm="$(cd "$(dirname "$0")/../.." && pwd)/tests/data/gemma3_mm/hf5"
  rm -rf "$work" && mkdir -p "$work"
  die() { echo "FAILED: $*"; exit 1; }
  run=(finetune --model "$mm" --select 12 --eval-size 2 --max-seq-length 160 --max-steps 3 --save-steps 1
       --lora-r 4 --lora-alpha 8 --target-modules q_proj,v_proj --report-to none --lora-dropout 0.1)
  "$qlora" "${run[@]}" --output-dir "$work/run" 2> "$work/log.txt" || { cat "$work/log.txt"; die "finetune"; }
  cat "$work/log.txt"
  grep -q "is a Gemma3ForConditionalGeneration checkpoint: its text model is used; the vision tower" "$work/log.txt" \
    || die "no line about the skipped vision tower"
  grep -aq '"base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_A.weight"' \
    "$work/run/adapter_model.safetensors" || die "adapter not in the multimodal layout"
  grep -aq '"base_model.model.model.vision_tower.encoder.layers.0.self_attn.v_proj.lora_B.weight"' \
    "$work/run/adapter_model.safetensors" || die "adapter lacks PEFT's vision-tower entries"
  # resume: the last checkpoint removed, the run resumed from checkpoint-2 ends with the same bytes
  cp "$work/run/adapter_model.safetensors" "$work/straight.safetensors"
  rm -rf "$work/run/checkpoint-3" "$work/run/adapter_model.safetensors"
  "$qlora" "${run[@]}" --output-dir "$work/run" --resume-from-checkpoint latest 2> "$work/resumed.txt" \
    || { cat "$work/resumed.txt"; die "resume"; }
  grep -q "resuming from" "$work/resumed.txt" || die "did not resume"
  cmp "$work/straight.safetensors" "$work/run/adapter_model.safetensors" || die "the resumed run's adapter differs"
  "$qlora" merge --model "$mm" --adapter "$work/run" --output "$work/merged" > "$work/merge.txt" \
    || { cat "$work/merge.txt"; die "merge"; }
  grep -q "merging into the original weights" "$work/merge.txt" || die "merge does not say which weights"
  grep -q "vision-tower and projector tensors copied through" "$work/merge.txt" || die "merge lost the vision tower"
  "$qlora" merge --model "$mm" --adapter "$work/run" --output "$work/merged-nf4" --merge-into nf4 > "$work/merge4.txt" \
    || { cat "$work/merge4.txt"; die "merge --merge-into nf4"; }
  grep -q "merging into the nf4 weights" "$work/merge4.txt" || die "merge --merge-into nf4 does not say so"
  "$qlora" info "$work/merged" > /dev/null || die "info of the merged folder"
  "$qlora" export --model "$mm" --adapter "$work/run" --gguf "$work/text.gguf" --type f32 || die "export"
  "$qlora" info "$work/text.gguf" > /dev/null || die "info of the exported GGUF"
  "$qlora" generate --model "$mm" --adapter "$work/run" --prompt "What is 2 + 2?" --max-new-tokens 4 > /dev/null \
    || die "generate"
  "$qlora" generate --model "$work/merged-nf4" --prompt "What is 2 + 2?" --max-new-tokens 4 > /dev/null \
    2> "$work/decode-kernel.txt" || { cat "$work/decode-kernel.txt"; die "generate from the merged folder"; }
  # the int8 decode kernel is the CPU's best in every build of the program (the nvcc-compiled one calls the AVX2 kernel
  # its host compiler built in qlora::kernels; it once fell back to the scalar one, 5x slower)
  if [ "$(uname -m)" = x86_64 ] && grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo; then
    grep -qF "int8 dot products (avx2)" "$work/decode-kernel.txt" \
      || { cat "$work/decode-kernel.txt"; die "generate: this CPU has AVX2, the decode kernel is not the AVX2 one"; }
  fi
  # an adapter whose config contradicts its tensors (r 16, tensors of rank 4) is refused the same way by merge,
  # export and generate, before the model is read (the model named does not exist)
  mkdir -p "$work/bad-adapter" && cp "$work/run"/adapter_* "$work/bad-adapter/"
  sed -i 's/"r": 4/"r": 16/' "$work/bad-adapter/adapter_config.json"
  for cmd in "merge --output $work/bad-merge" "export --gguf $work/bad.gguf" "generate --prompt hi"; do
    # shellcheck disable=SC2086
    if "$qlora" $cmd --model "$work/none" --adapter "$work/bad-adapter" > "$work/bad.txt" 2>&1; then die "$cmd accepted a contradicting adapter"; fi
    grep -q "has shape \[4, 32\]: rank 4 where the config (r) says 16" "$work/bad.txt" || { cat "$work/bad.txt"; die "$cmd: no rank message"; }
    [ ! -e "$work/bad-merge" ] && [ ! -e "$work/bad.gguf" ] || die "$cmd left output behind"
  done
  # chat records: trained with --format chat, answered from the held-out records finetune wrote
  for i in $(seq 1 14); do
    printf '{"messages": [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "What is %d + %d?"}, {"role": "assistant", "content": "%d"}]}\n' "$i" "$i" "$((2 * i))"
  done > "$work/chat.jsonl"
  "$qlora" finetune --model "$mm" --dataset "$work/chat.jsonl" --format chat --eval-size 2 --max-seq-length 96 --max-steps 2 \
    --lora-r 4 --target-modules q_proj,v_proj --report-to none --output-dir "$work/chat" 2> "$work/chat.txt" \
    || { cat "$work/chat.txt"; die "finetune --format chat"; }
  "$qlora" generate --model "$mm" --adapter "$work/chat" --records "$work/chat/eval_records.jsonl" --max-new-tokens 3 \
    --output "$work/chat-preds.jsonl" > "$work/chat-gen.txt" 2>&1 || { cat "$work/chat-gen.txt"; die "generate --records (chat)"; }
  [ "$(wc -l < "$work/chat-preds.jsonl")" = 2 ] || die "generate --records (chat): not one line per held-out record"
  grep -q '"reference":"[0-9]*"' "$work/chat-preds.jsonl" || die "generate --records (chat): the reference is not the final assistant turn"
  grep -qF '<start_of_turn>user\nAnswer briefly.\n\nWhat is' "$work/chat-preds.jsonl" || die "generate --records (chat): prompt not in the chat template"
  grep -qF '<start_of_turn>model\n"' "$work/chat-preds.jsonl" || die "generate --records (chat): prompt lacks the model cue"
  # (into a file: the answer streams after the prompt, and grep -q closing the pipe early would end qlora by SIGPIPE)
  "$qlora" generate --model "$mm" --adapter "$work/chat" --format chat --prompt "What is 3 + 3?" --max-new-tokens 2 \
    > "$work/chat-prompt.txt" || die "generate --format chat --prompt"
  grep -qF "<start_of_turn>user" "$work/chat-prompt.txt" || die "generate --format chat --prompt: no chat template"
  # the layouts by name (alpaca, sharegpt, text, prompt-completion) and a custom template on a CSV: one step each,
  # then generate answers the held-out records in the same layout
  for i in $(seq 1 8); do
    input=""; [ $((i % 2)) = 0 ] && input="numbers: $i, $i"
    printf '{"instruction": "Add %d and %d.", "input": "%s", "output": "%d"}\n' "$i" "$i" "$input" "$((2 * i))" >> "$work/alpaca.jsonl"
    printf '{"conversations": [{"from": "human", "value": "Add %d and %d."}, {"from": "gpt", "value": "%d"}]}\n' "$i" "$i" "$((2 * i))" >> "$work/sharegpt.jsonl"
    printf '{"text": "The sum of %d and %d is %d."}\n' "$i" "$i" "$((2 * i))" >> "$work/text.jsonl"
    printf '{"prompt": "%d + %d =", "completion": " %d"}\n' "$i" "$i" "$((2 * i))" >> "$work/prompt-completion.jsonl"
  done
  printf 'question,answer\n"1, plus 1",2\n2+2,4\n3+3,6\n4+4,8\n' > "$work/custom.csv"
  one=(finetune --model "$mm" --max-seq-length 128 --max-steps 1 --lora-r 2 --target-modules q_proj --report-to none)
  for layout in alpaca sharegpt text prompt-completion; do
    "$qlora" "${one[@]}" --format $layout --dataset "$work/$layout.jsonl" --eval-size 2 --output-dir "$work/$layout" \
      2> "$work/$layout.txt" || { cat "$work/$layout.txt"; die "finetune --format $layout"; }
    "$qlora" generate --model "$mm" --adapter "$work/$layout" --format $layout --records "$work/$layout/eval_records.jsonl" \
      --max-new-tokens 2 --output "$work/$layout-preds.jsonl" > /dev/null 2>&1 || die "generate --format $layout"
    [ "$(wc -l < "$work/$layout-preds.jsonl")" = 2 ] || die "generate --format $layout: not one line per record"
  done
  grep -q '### Instruction:\\nAdd' "$work/alpaca-preds.jsonl" || die "alpaca: prompt not in the Alpaca template"
  grep -q '"reference":" [0-9]*"' "$work/prompt-completion-preds.jsonl" || die "prompt-completion: reference"
  "$qlora" "${one[@]}" --dataset "$work/custom.csv" --prompt-template $'Q: {question}\nA: ' --response-template '{answer}' \
    --eval-size 1 --output-dir "$work/custom" 2> "$work/custom.txt" || { cat "$work/custom.txt"; die "custom template"; }
  "$qlora" generate --model "$mm" --adapter "$work/alpaca" --format alpaca --prompt "Add 2 and 2." --max-new-tokens 2 \
    > "$work/alpaca-prompt.txt" || die "generate --format alpaca --prompt"
  grep -q "### Instruction:" "$work/alpaca-prompt.txt" || die "generate --format alpaca --prompt: no Alpaca template"
  "$qlora" "${one[@]}" --dataset "$work/alpaca.jsonl" --output-dir "$work/nope" > "$work/nope.txt" 2>&1 \
    && die "an Alpaca file read with the finance layout"
  grep -q "its fields: input, instruction, output (another layout?" "$work/nope.txt" || { cat "$work/nope.txt"; die "no layout hint"; }
  "$qlora" finetune --dry-run --model gemma-3-4b --max-seq-length 512 --target-modules q_proj,v_proj > "$work/dry.txt" \
    || die "dry-run"
  grep -q "GPU" "$work/dry.txt" || die "dry-run prints no GPU estimate"
  echo "multimodal folder: finetune, resume, chat records, the named layouts, merge (original, nf4), export and generate passed"
  exit 0
fi
if [ "$what" = validation ]; then
  # Every flag value is checked before anything is loaded: the model named does not exist, so each expected
  # message proves its check came first. No output folder may be left behind.
  rm -rf "$work" && mkdir -p "$work"
  die() { echo "FAILED: $*"; exit 1; }
  nomodel=(--model "$work/no-such-model.gguf")
  out=(--output-dir "$work/fail" "${nomodel[@]}")
  expect_fail() {
    local msg=$1; shift
    rm -rf "$work/fail"
    if "$qlora" "$@" > "$work/err.txt" 2>&1; then die "succeeded: $*"; fi
    grep -qF -- "$msg" "$work/err.txt" || { cat "$work/err.txt"; die "message '$msg' missing for: $*"; }
    [ ! -e "$work/fail" ] || die "left $work/fail behind for: $*"
    echo "ok: $* -> $msg"
  }
  expect_fail "num_train_epochs must be in (0, 1e6]" finetune "${out[@]}" --num-train-epochs 1e30
  expect_fail "num_train_epochs must be in (0, 1e6]" finetune "${out[@]}" --num-train-epochs nan
  expect_fail "max_steps must be a positive number of steps, or -1" finetune "${out[@]}" --max-steps -3
  expect_fail "max_steps must be a positive number of steps, or -1" finetune "${out[@]}" --max-steps 0
  expect_fail "--max-steps 1e3: not an integer" finetune "${out[@]}" --max-steps 1e3
  expect_fail "--max-steps 99999999999999999999: not an integer" finetune "${out[@]}" --max-steps 99999999999999999999
  expect_fail "max_seq_length must be in [2, 1048576] tokens, got -1" finetune "${out[@]}" --max-seq-length -1
  expect_fail "select must be >= 1" finetune "${out[@]}" --select -5
  expect_fail "select must be >= 1" finetune "${out[@]}" --select 0
  expect_fail "eval_size must be a record count (0, 1, 2, ...) or a fraction in (0, 1), got 2.5" finetune "${out[@]}" --eval-size 2.5
  expect_fail "eval_size must be a record count" finetune "${out[@]}" --eval-size -1
  expect_fail "learning_rate must be positive" finetune "${out[@]}" --learning-rate nan
  expect_fail "learning_rate must be positive" finetune "${out[@]}" --learning-rate -1e-4
  expect_fail "warmup_ratio must be in [0, 1]" finetune "${out[@]}" --warmup-ratio nan
  expect_fail "warmup_steps must not be negative" finetune "${out[@]}" --warmup-steps -1
  expect_fail "max_grad_norm must be a finite number >= 0" finetune "${out[@]}" --max-grad-norm inf
  expect_fail "weight_decay must be a finite number >= 0" finetune "${out[@]}" --weight-decay -0.1
  expect_fail "per_device_train_batch_size must be >= 1" finetune "${out[@]}" --per-device-train-batch-size 0
  expect_fail "per_device_eval_batch_size must be >= 1" finetune "${out[@]}" --per-device-eval-batch-size -2
  expect_fail "gradient_accumulation_steps must be >= 1" finetune "${out[@]}" --gradient-accumulation-steps 0
  expect_fail "logging_steps and save_steps must be >= 1" finetune "${out[@]}" --save-steps 0
  expect_fail "eval_steps must be >= 1" finetune "${out[@]}" --eval-steps -4
  expect_fail "save_total_limit must be >= 1" finetune "${out[@]}" --save-total-limit 0
  expect_fail "option 'seed' is -1, outside the range of an unsigned 64-bit integer" finetune "${out[@]}" --seed -1
  expect_fail "option 'report_to' is 'wandb'; allowed: tensorboard, none" finetune "${out[@]}" --report-to wandb
  expect_fail "option 'lr_scheduler_type' is 'step'" finetune "${out[@]}" --lr-scheduler-type step
  expect_fail "lora_dropout must be in [0, 1)" finetune "${out[@]}" --lora-dropout 1
  expect_fail "lora_alpha must be a finite number" finetune "${out[@]}" --lora-alpha nan
  expect_fail "unknown data set layout 'xml'; known: finance, alpaca, chat" finetune "${out[@]}" --format xml
  expect_fail "$cuda_refusal" finetune "${out[@]}" --device cuda
  expect_fail "--cpu-gemm mkl: use auto, eigen, onednn or onednn-bf16" finetune "${out[@]}" --cpu-gemm mkl
  expect_fail "--dataset-text-field does not apply to the alpaca layout" finetune "${out[@]}" --format alpaca --dataset-text-field body
  expect_fail "make a custom layout; the chat layout has its own template" finetune "${out[@]}" --format chat --prompt-template '{q}'
  expect_fail "the custom layout needs --response-template" finetune "${out[@]}" --format custom
  expect_fail "prompt template: '{' at offset 0 is never closed" finetune "${out[@]}" --prompt-template '{q' --response-template '{a}'
  expect_fail "no such data file" finetune "${out[@]}" --dataset "$work/no-such-data.jsonl"
  expect_fail "not a data file" finetune "${out[@]}" --dataset "$work"
  echo x > "$work/file" && expect_fail "a file, not a folder" finetune --output-dir "$work/file" "${nomodel[@]}"
  echo '{"data": {"max_seq_lenght": 64}}' > "$work/bad.json"
  expect_fail "data: unknown option 'max_seq_lenght' (did you mean 'max_seq_length'?)" finetune "${out[@]}" --config "$work/bad.json"
  echo '{"training": {"max_steps": 1e30}}' > "$work/bad.json"
  expect_fail "option 'max_steps' is 1e+30, not an integer" finetune "${out[@]}" --config "$work/bad.json"
  echo '{"training": {"gradient_checkpointing": "yes"}}' > "$work/bad.json"
  expect_fail "option 'gradient_checkpointing' has the wrong type (string)" finetune "${out[@]}" --config "$work/bad.json"
  echo '{"data": {"max_seq_length": 99999999999999999999}}' > "$work/bad.json"
  expect_fail "option 'max_seq_length' is 1e+20, not an integer" finetune "${out[@]}" --config "$work/bad.json"
  q=(generate "${nomodel[@]}" --prompt hi)
  expect_fail "--max-new-tokens must be >= 1, got -1" "${q[@]}" --max-new-tokens -1
  expect_fail "temperature must be > 0 when sampling, got 0" "${q[@]}" --do-sample --temperature 0
  expect_fail "--temperature must be a finite number" "${q[@]}" --temperature nan
  expect_fail "top_p must be in (0, 1], got nan" "${q[@]}" --top-p nan
  expect_fail "top_k must not be negative" "${q[@]}" --top-k -2
  expect_fail "--limit must not be negative" "${q[@]}" --limit -1
  expect_fail "--base-weights bf16: use nf4 or original" "${q[@]}" --base-weights bf16
  expect_fail "unknown data set layout 'xml'" "${q[@]}" --format xml
  expect_fail "--output $work: is a folder" "${q[@]}" --output "$work"
  expect_fail "give either --prompt or --records" generate "${nomodel[@]}"
  expect_fail "--records $work/none.jsonl: no such file" generate "${nomodel[@]}" --records "$work/none.jsonl"
  echo "every flag value is checked before the model is loaded"
  exit 0
fi
if [ "$what" = gemma4 ]; then
  # examples/recipes/gemma4-e2b-it-finance.json (seven projections, checkpointing, paged 8-bit AdamW, clipping 0.3)
  # on tests/data/gemma4_cli: a tiny bf16 Gemma4ForCausalLM with per-layer embeddings, k = v on its full layers
  # (2, 5) and layers 4 and 5 reusing layers 3's and 2's keys and values (tests/golden/gemma4_cli_folder.py). The
  # recipe's length and accumulation are cut to keep the run short. Needs no model.
  root="$(cd "$(dirname "$0")/../.." && pwd)"
  g4="$root/tests/data/gemma4_cli"
  rm -rf "$work" && mkdir -p "$work"
  die() { echo "FAILED: $*"; exit 1; }
  run=(finetune --config "$root/examples/recipes/gemma4-e2b-it-finance.json" --select 12 --eval-size 2
       --max-seq-length 160 --gradient-accumulation-steps 2 --max-steps 3 --save-steps 1 --logging-steps 1
       --eval-steps 3 --report-to none)
  "$qlora" "${run[@]}" --model "$g4" --output-dir "$work/run" 2> "$work/log.txt" || { cat "$work/log.txt"; die "finetune"; }
  cat "$work/log.txt"
  grep -q "gemma-4 (hidden 32, 6 layers)" "$work/log.txt" || die "the log does not name the Gemma 4 model"
  grep -q "gradient checkpointing" "$work/log.txt" || die "the recipe's gradient checkpointing is not on"
  grep -q '"eval_loss"' "$work/run/metrics.jsonl" || die "no eval_loss in metrics.jsonl"
  names=$(python3 -c 'import json, struct, sys
f = open(sys.argv[1], "rb"); n = struct.unpack("<Q", f.read(8))[0]
print("\n".join(k for k in json.loads(f.read(n)) if k != "__metadata__"))' "$work/run/adapter_model.safetensors") ||
    die "adapter_model.safetensors unreadable"
  grep -qx "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" <<< "$names" || die "no layer 0 q_proj"
  grep -qx "base_model.model.model.layers.3.self_attn.k_proj.lora_B.weight" <<< "$names" || die "no producer k_proj"
  ! grep -q "layers.4.self_attn.k_proj\|layers.5.self_attn.v_proj" <<< "$names" || die "k/v on a KV-sharing layer"
  ! grep -q "layers.2.self_attn.v_proj" <<< "$names" || die "v_proj on a k = v layer"
  [ "$(grep -c lora_A <<< "$names")" = 37 ] || die "$(grep -c lora_A <<< "$names") adapted modules, expected 37"
  cp "$work/run/adapter_model.safetensors" "$work/straight.safetensors"
  rm -rf "$work/run/checkpoint-3" "$work/run/adapter_model.safetensors"
  "$qlora" "${run[@]}" --model "$g4" --output-dir "$work/run" --resume-from-checkpoint latest 2> "$work/resumed.txt" \
    || { cat "$work/resumed.txt"; die "resume"; }
  grep -q "resuming from" "$work/resumed.txt" || die "did not resume"
  cmp "$work/straight.safetensors" "$work/run/adapter_model.safetensors" || die "the resumed run's adapter differs"
  # The same text model in a Gemma4ForConditionalGeneration folder (vision and audio towers): trained under the
  # multimodal names, with target_modules as a regex over the text model (PEFT cannot wrap the towers' modules of the
  # same names); compat.peft_loads_our_gemma4_adapters loads both adapters with PEFT.
  "$qlora" "${run[@]}" --model "$root/tests/data/gemma4_cli_mm" --output-dir "$work/mm" 2> "$work/mm.txt" \
    || { cat "$work/mm.txt"; die "finetune of the multimodal folder"; }
  grep -q "is a Gemma4ForConditionalGeneration checkpoint: its text model is used" "$work/mm.txt" \
    || die "no line about the skipped towers"
  grep -qF '"target_modules": ".*language_model.*\\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"' \
    "$work/mm/adapter_config.json" || { cat "$work/mm/adapter_config.json"; die "target_modules not the text-model regex"; }
  grep -aq '"base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_A.weight"' \
    "$work/mm/adapter_model.safetensors" || die "adapter not in the multimodal layout"
  # merge: every tensor of the source written again (towers included), the projections with their adapters
  "$qlora" merge --model "$g4" --adapter "$work/run" --output "$work/merged" --dtype bfloat16 > "$work/merge.txt" \
    || { cat "$work/merge.txt"; die "merge"; }
  grep -q "Gemma4ForCausalLM: every tensor of the source kept" "$work/merge.txt" || { cat "$work/merge.txt"; die "merge line"; }
  "$qlora" merge --model "$root/tests/data/gemma4_cli_mm" --adapter "$work/mm" --output "$work/mm-merged" \
    > "$work/merge-mm.txt" || { cat "$work/merge-mm.txt"; die "merge of the multimodal folder"; }
  grep -q "Gemma4ForConditionalGeneration" "$work/merge-mm.txt" || die "the multimodal merge does not say its class"
  for f in tokenizer.model chat_template.jinja generation_config.json; do
    [ -f "$work/mm-merged/$f" ] || die "the merged folder lacks $f"
  done
  if "$qlora" export --model "$g4" --adapter "$work/run" --gguf "$work/g4.gguf" > "$work/export.txt" 2>&1; then
    die "GGUF export of Gemma 4 was not refused"
  fi
  grep -q "GGUF export of Gemma 4 is not written yet" "$work/export.txt" || { cat "$work/export.txt"; die "export message"; }
  [ ! -e "$work/g4.gguf" ] || die "a refused export left a file"
  echo "all Gemma 4 checks passed"
  exit 0
fi
if [ -z "${QLORA_MODEL:-}" ] || [ ! -f "$QLORA_MODEL" ]; then
  echo "skipped: QLORA_MODEL is not set to the Gemma 3 270M GGUF (scripts/fetch-model)"
  exit 77
fi
rm -rf "$work" && mkdir -p "$work"
small=(--select 16 --eval-size 2 --max-seq-length 192 --gradient-accumulation-steps 2 --logging-steps 1)
die() { echo "FAILED: $*"; exit 1; }
expect_fail() {  # expect_fail "message" args...: non-zero exit, the message on stderr, no output folder left
  local msg=$1; shift
  local out="$work/fail"
  rm -rf "$out"
  if "$qlora" "$@" > "$work/err.txt" 2>&1; then die "succeeded: $*"; fi
  grep -qF -- "$msg" "$work/err.txt" || { cat "$work/err.txt"; die "message '$msg' missing for: $*"; }
  [ ! -e "$out" ] || die "left $out behind for: $*"
  echo "ok: $* -> $msg"
}

case $what in
finetune)
  "$qlora" finetune --output-dir "$work/run" --max-steps 4 --save-steps 2 --save-total-limit 1 "${small[@]}" \
    2> "$work/log.txt" || { cat "$work/log.txt"; die "finetune"; }
  cat "$work/log.txt"
  for f in adapter_config.json adapter_model.safetensors metrics.jsonl eval_records.jsonl checkpoint-4/optimizer.safetensors \
           checkpoint-4/trainer_state.json checkpoint-4/adapter_model.safetensors; do
    [ -s "$work/run/$f" ] || die "missing $f"
  done
  [ ! -e "$work/run/checkpoint-2" ] || die "save_total_limit 1 kept checkpoint-2"
  ls "$work/run/runs/"events.out.tfevents.* > /dev/null || die "no TensorBoard events"
  grep -q '"eval_loss"' "$work/run/metrics.jsonl" || die "no eval_loss in metrics.jsonl"
  "$qlora" generate --adapter "$work/run" --records "$work/run/eval_records.jsonl" --limit 1 --max-new-tokens 8 \
    --output "$work/pred.jsonl" || die "generate"
  [ "$(wc -l < "$work/pred.jsonl")" = 1 ] || die "generate wrote no prediction"
  "$qlora" evaluate --jsonl "$work/pred.jsonl" | grep -q rouge_l || die "evaluate"
  "$qlora" export --adapter "$work/run" --gguf "$work/merged.gguf" --type q8_0 || die "export"
  "$qlora" info "$work/merged.gguf" | grep -q "model: gemma-3-270m" || die "info of the exported GGUF"
  "$qlora" merge --adapter "$work/run" --output "$work/merged" --dtype bfloat16 || die "merge"
  [ -s "$work/merged/model.safetensors" ] && [ -s "$work/merged/config.json" ] || die "merge output"
  # Any rank, any subset of the projections, per-module ranks and alphas (PEFT's rank_pattern / alpha_pattern).
  "$qlora" finetune --output-dir "$work/pattern" --max-steps 1 --lora-r 3 --target-modules q_proj,o_proj,down_proj \
    --rank-pattern 'down_proj=5,layers\.0\.self_attn\.q_proj=1' --alpha-pattern o_proj=9 --report-to none \
    --eval-size 0 --select 4 --max-seq-length 128 2> "$work/pattern.txt" || { cat "$work/pattern.txt"; die "pattern"; }
  grep -qF '"layers\\.0\\.self_attn\\.q_proj": 1' "$work/pattern/adapter_config.json" \
    || { cat "$work/pattern/adapter_config.json"; die "rank_pattern not saved"; }
  "$qlora" info "$work/pattern" | grep -q "rank_pattern" || die "info shows no rank_pattern"
  "$qlora" generate --adapter "$work/pattern" --prompt "What is 2 + 2?" --max-new-tokens 2 > /dev/null \
    || die "generate with per-module ranks"
  "$qlora" merge --adapter "$work/pattern" --output "$work/pattern-merged" || die "merge with per-module ranks"
  echo "all finetune checks passed"
  ;;
resume)
  args=(finetune --max-steps 4 --save-steps 2 "${small[@]}" --lora-dropout 0.1 --report-to none)
  "$qlora" "${args[@]}" --output-dir "$work/straight" 2> "$work/straight.txt" || { cat "$work/straight.txt"; die "run"; }
  "$qlora" "${args[@]}" --output-dir "$work/killed" 2> "$work/killed.txt" &
  pid=$!
  for _ in $(seq 600); do [ -d "$work/killed/checkpoint-2" ] && break; sleep 0.2; done
  kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
  [ -d "$work/killed/checkpoint-2" ] || { cat "$work/killed.txt"; die "no checkpoint-2 before the kill"; }
  [ ! -e "$work/killed/checkpoint-4" ] || echo "note: the run had finished before the kill"
  "$qlora" "${args[@]}" --output-dir "$work/killed" --resume-from-checkpoint latest 2> "$work/resumed.txt" \
    || { cat "$work/resumed.txt"; die "resume"; }
  grep -q "resuming from" "$work/resumed.txt" || die "did not resume"
  cmp "$work/straight/adapter_model.safetensors" "$work/killed/adapter_model.safetensors" || die "adapters differ"
  cmp "$work/straight/checkpoint-4/optimizer.safetensors" "$work/killed/checkpoint-4/optimizer.safetensors" \
    || die "optimizer states differ"
  echo "resumed run equals the uninterrupted one, byte for byte"
  ;;
errors)
  out=(--output-dir "$work/fail")
  expect_fail "no such file or folder" finetune "${out[@]}" --model "$work/no-such-model.gguf"
  expect_fail "no such data file" finetune "${out[@]}" --dataset "$work/no-such-data.jsonl"
  mkdir -p "$work/odd" && echo '{"hidden_size": 999, "intermediate_size": 1, "num_hidden_layers": 3,
    "num_attention_heads": 3, "num_key_value_heads": 2, "head_dim": 8, "vocab_size": 10, "sliding_window": 4}' \
    > "$work/odd/config.json"
  expect_fail "num_attention_heads 3 is not a multiple of num_key_value_heads 2" info "$work/odd"
  expect_fail "lora r must be >= 1, got 0" finetune "${out[@]}" --lora-r 0
  expect_fail "option 'target_modules' is 'k_porj'" finetune "${out[@]}" --target-modules k_porj
  expect_fail "rank_pattern key 'q_proj(' is not a valid regular expression" finetune "${out[@]}" --rank-pattern 'q_proj(=4'
  expect_fail "--rank-pattern q_proj=4.5: '4.5' is not an integer rank" finetune "${out[@]}" --rank-pattern q_proj=4.5
  expect_fail "match no projection of gemma-3-270m" finetune "${out[@]}" --target-modules model.layers.40.mlp.up_proj
  expect_fail "unknown option --learning-rat; did you mean --learning-rate?" finetune "${out[@]}" --learning-rat 1e-4
  expect_fail "--learning-rate abc: not a number" finetune "${out[@]}" --learning-rate abc
  expect_fail "option 'optim' is 'sgd'" finetune "${out[@]}" --optim sgd
  QLORA_MEMORY_AVAILABLE=100000000 expect_fail "not enough memory: this run needs about" finetune "${out[@]}"
  echo '{"training": {"learning_rat": 1}}' > "$work/bad.json"
  expect_fail "learning_rat" finetune "${out[@]}" --config "$work/bad.json"
  expect_fail "every sample lost its learned tokens to max_length 16" finetune "${out[@]}" --max-seq-length 16
  expect_fail "$cuda_refusal" finetune "${out[@]}" --device cuda
  expect_fail "--cpu-gemm mkl: use auto, eigen, onednn or onednn-bf16" finetune "${out[@]}" --cpu-gemm mkl
  echo "all error checks passed"
  ;;
*) die "unknown check $what" ;;
esac
