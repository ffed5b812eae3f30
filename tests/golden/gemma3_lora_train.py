#!/usr/bin/env python3
"""Reference loss curve of a 10-step LoRA fine-tune of the tiny Gemma 3 model with transformers' Trainer + PEFT.

Base: the committed random model tests/data/gemma3_model/tiny (made by gemma3_logits.py), fp32, eager attention.
Adapter: PEFT LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, the seven projections, task_type CAUSAL_LM), created
after torch.manual_seed(0). PEFT starts lora_B at zero, which would make the initial adapter a no-op; so, before
anything else, every lora_B is set to normal(0, 0.02) after torch.manual_seed(1) (in named_parameters order). That
adapter is saved as initial_adapter/ (adapter_model.safetensors + adapter_config.json), so the first loss and its
gradients already depend on both A and B. A C++ trainer starting from initial_adapter/ should reproduce the curve.

Data: 20 fixed sequences from numpy default_rng(0): lengths 5..16, ids in [1, 299]; labels = input_ids with the first
k tokens (k in 1..4) set to -100.

Training: transformers Trainer, per_device_train_batch_size 1, gradient_accumulation_steps 2, max_steps 10,
learning_rate 5e-3, linear schedule with warmup_steps 2 (so step 1 runs at lr 0), weight_decay 0, max_grad_norm 1,
optim adamw_torch (betas 0.9/0.999, eps 1e-8), train_sampling_strategy "sequential" (step s uses sequences 2s-2 and
2s-1, 1-based steps; checked), seed 42, fp32, CPU. The loss is normalised by transformers over the label tokens of
both micro-batches of a step (num_items_in_batch counts labels[..., 1:] != -100).

Per step: "loss" as the Trainer logs it, "loss_by_hand" = (sum over the step's 2 micro-batches of the summed token
cross-entropy, logits[:-1] against labels[1:], -100 ignored) / (number of those label tokens), computed in float32 on
the same forward and printed as a float64 of that float32 value, "grad_norm" (total L2 norm before clipping, as
logged), "learning_rate" (the one the step used, as logged).

Writes tests/data/gemma3_train/: initial_adapter/, final_adapter/, train.json {versions, method, hyperparameters,
sequences [{input_ids, labels}], steps [{step, loss, loss_by_hand, grad_norm, learning_rate}],
final_logits {sequences, logits}} (the trained model, adapter applied, on the first 2 training sequences).

Run:  pip install torch transformers peft accelerate safetensors numpy && python3 tests/golden/gemma3_lora_train.py
"""
import json
import os
import shutil

import accelerate
import numpy as np
import peft
import safetensors
import torch
import transformers
from peft import LoraConfig, get_peft_model
from transformers import Gemma3ForCausalLM, Trainer, TrainerCallback, TrainingArguments

HERE = os.path.dirname(os.path.abspath(__file__))
BASE = os.path.join(HERE, "..", "data", "gemma3_model", "tiny")
OUT = os.path.join(HERE, "..", "data", "gemma3_train")
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def make_sequences(vocab=300):
    rng = np.random.default_rng(0)
    seqs = []
    for i in range(20):
        n = int(rng.integers(5, 17))  # 5..16
        ids = rng.integers(1, vocab, size=n).tolist()  # 1..vocab-1
        k = int(rng.integers(1, 5))  # 1..4
        labels = [-100] * k + ids[k:]
        seqs.append({"input_ids": ids, "labels": labels})
    return seqs


class ListDataset(torch.utils.data.Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def collate(batch):
    assert len(batch) == 1
    return {"input_ids": torch.tensor([batch[0]["input_ids"]]), "labels": torch.tensor([batch[0]["labels"]])}


class RecordingTrainer(Trainer):
    """Trainer that also records, per micro-batch, the summed token cross-entropy of the very forward it trains on."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.micro = []  # (input_ids, ce_sum float32 tensor, count)

    def _get_train_sampler(self, *args, **kwargs):
        return torch.utils.data.SequentialSampler(self.train_dataset)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        with torch.no_grad():
            logits = outputs.logits[0, :-1].float()
            target = inputs["labels"][0, 1:]
            ce = torch.nn.functional.cross_entropy(logits, target, ignore_index=-100, reduction="sum")
            self.micro.append((inputs["input_ids"][0].tolist(), ce.detach().clone(), int((target != -100).sum()),
                               None if num_items_in_batch is None else int(num_items_in_batch)))
        return (loss, outputs) if return_outputs else loss


class LrCapture(TrainerCallback):
    def __init__(self):
        self.lrs = []

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        self.lrs.append(float(optimizer.param_groups[0]["lr"]))


def main(base_dir=BASE, out_dir=OUT, model_class=Gemma3ForCausalLM, base_name="tests/data/gemma3_model/tiny",
         vocab=300, hp_overrides=None):
    """The run above on `base_dir` (any causal-LM class of transformers), written to `out_dir`; gemma4_lora_train.py
    calls it for a tiny Gemma 4."""
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    base = model_class.from_pretrained(base_dir, attn_implementation="eager", dtype=torch.float32)
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=TARGETS, task_type="CAUSAL_LM")
    torch.manual_seed(0)
    model = get_peft_model(base, lora)
    model.peft_config["default"].base_model_name_or_path = base_name  # not this machine's path
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.02)
    model.save_pretrained(os.path.join(out_dir, "initial_adapter"))
    os.remove(os.path.join(out_dir, "initial_adapter", "README.md"))  # PEFT's model card, not needed

    seqs = make_sequences(vocab)
    hp = dict(per_device_train_batch_size=1, gradient_accumulation_steps=2, max_steps=10, learning_rate=5e-3,
              lr_scheduler_type="linear", warmup_steps=2, weight_decay=0.0, max_grad_norm=1.0, optim="adamw_torch",
              adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8, logging_steps=1, seed=42,
              train_sampling_strategy="sequential")
    hp.update(hp_overrides or {})
    args = TrainingArguments(output_dir=os.path.join("/tmp", "gemma3_lora_train_out"), eval_strategy="no",
                             save_strategy="no", report_to="none", use_cpu=True, dataloader_num_workers=0,
                             remove_unused_columns=False, disable_tqdm=True, **hp)
    lr_cb = LrCapture()
    trainer = RecordingTrainer(model=model, args=args, train_dataset=ListDataset(seqs), data_collator=collate,
                               callbacks=[lr_cb])
    trainer.train()

    logs = [h for h in trainer.state.log_history if "loss" in h and "step" in h and "train_runtime" not in h]
    assert len(logs) == 10 and len(trainer.micro) == 20 and len(lr_cb.lrs) == 10, (len(logs), len(trainer.micro))
    steps = []
    for s, h in enumerate(logs):
        (ids0, ce0, n0, k0), (ids1, ce1, n1, k1) = trainer.micro[2 * s], trainer.micro[2 * s + 1]
        assert ids0 == seqs[2 * s]["input_ids"] and ids1 == seqs[2 * s + 1]["input_ids"], f"order at step {s + 1}"
        assert k0 == k1 == n0 + n1, (k0, k1, n0, n1)
        by_hand = float((ce0 + ce1) / torch.tensor(n0 + n1, dtype=torch.float32))
        assert h["step"] == s + 1
        assert abs(h["learning_rate"] - lr_cb.lrs[s]) < 1e-12
        assert abs(h["loss"] - by_hand) < 1e-5 * max(1.0, abs(by_hand)), (h["loss"], by_hand)
        steps.append({"step": s + 1, "loss": h["loss"], "loss_by_hand": by_hand, "grad_norm": h["grad_norm"],
                      "learning_rate": h["learning_rate"], "label_tokens": n0 + n1})

    model.save_pretrained(os.path.join(out_dir, "final_adapter"))
    os.remove(os.path.join(out_dir, "final_adapter", "README.md"))
    model.eval()
    final_seqs = [seqs[0]["input_ids"], seqs[1]["input_ids"]]
    with torch.no_grad():
        # float(str(np.float32)) : the shortest decimal that reads back as the same float32, to keep the file small
        final_logits = [[[float(str(v)) for v in row] for row in model(torch.tensor([ids])).logits[0].float().numpy()]
                        for ids in final_seqs]

    versions = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
                "accelerate": accelerate.__version__, "safetensors": safetensors.__version__,
                "numpy": np.__version__}
    out = {"versions": versions,
           "method": "transformers Trainer (train_sampling_strategy='sequential', _get_train_sampler -> "
                     "SequentialSampler) on a PEFT LoRA model; loss normalised by num_items_in_batch over both "
                     "micro-batches of a step; initial lora_B = normal(0, 0.02) after torch.manual_seed(1)",
           "base_model": base_name,
           "hyperparameters": dict(hp, lora_r=4, lora_alpha=8, lora_dropout=0.0, lora_target_modules=TARGETS,
                                   lora_init_B_std=0.02, lora_init_A_seed=0, lora_init_B_seed=1,
                                   loss_normalisation="sum over the step's micro-batches / label tokens of the step "
                                                      "(labels shifted by one, -100 ignored)"),
           "sequences": seqs,
           "steps": steps,
           "final_logits": {"sequences": final_seqs, "logits": final_logits}}
    with open(os.path.join(out_dir, "train.json"), "w") as f:
        json.dump(out, f, separators=(",", ":"))
    for st in steps:
        print(f"step {st['step']:2d} loss {st['loss']:.6f} by hand {st['loss_by_hand']:.6f} "
              f"grad_norm {st['grad_norm']:.4f} lr {st['learning_rate']:.2e}")


if __name__ == "__main__":
    main()
