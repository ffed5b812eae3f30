#!/usr/bin/env python3
"""The qlora_step_bench step in transformers + PEFT on the CPU, measured the same way.

One training step = forward (labels = input ids, the causal-LM loss shifts them), backward, clip_grad_norm_(1.0),
optimizer step, zero_grad; repeated --steps times after --warmup. LoRA r on all seven projections (lora_alpha 32,
lora_dropout 0.05), fp32 compute (see --autocast), torch.set_num_threads(--threads). The model is the real Gemma 3
270M GGUF loaded with transformers' gguf_file= (dequantized to fp32), or a random Gemma3ForCausalLM of the same shape
(--random). --base nf4 quantizes the frozen base with bitsandbytes (NF4, double quantization, fp32 compute) — on the
CPU that is bitsandbytes' CPU backend. --autocast bf16 runs the forward pass (and so the backward's matching
products) under torch.autocast("cpu", torch.bfloat16), as Trainer's --bf16 does (bitsandbytes' compute dtype becomes
bf16 too); the weights, LoRA parameters, gradients and optimizer states stay fp32, and the GEMM rate reported is
torch's bf16 one. Peak RSS is VmHWM; /proc/self/clear_refs resets it after loading, so step_peak_rss_mib is the
steps' own. Prints one JSON line (the fields of qlora_step_bench --json).
"""
import argparse
import json
import os
import sys
import tempfile
import time


def status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def reset_peak_rss():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


CONFIGS = {  # Hugging Face config.json numbers of each size (text model)
    "270m": dict(hidden_size=640, intermediate_size=2048, num_hidden_layers=18, num_attention_heads=4,
                 num_key_value_heads=1, head_dim=256, vocab_size=262144, sliding_window=512),
    "1b": dict(hidden_size=1152, intermediate_size=6912, num_hidden_layers=26, num_attention_heads=4,
               num_key_value_heads=1, head_dim=256, vocab_size=262144, sliding_window=512),
}


def build_model(args, torch, transformers):
    quant = None
    if args.base == "nf4":
        quant = transformers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                bnb_4bit_use_double_quant=True,
                                                bnb_4bit_compute_dtype=torch.bfloat16 if args.autocast == "bf16"
                                                else torch.float32)
    if args.random:
        cfg = transformers.Gemma3TextConfig(**CONFIGS[args.config], query_pre_attn_scalar=256,
                                            rope_theta=1_000_000.0, rope_local_base_freq=10_000.0,
                                            max_position_embeddings=32768, attn_implementation=args.attn)
        torch.manual_seed(1)
        model = transformers.Gemma3ForCausalLM(cfg).float()
        name = f"random:gemma-3-{args.config}"
        if quant is None:
            return model, name
        src = model
    else:
        path = args.model
        src = transformers.AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path),
                                                                dtype=torch.float32, attn_implementation=args.attn)
        name = path
        if quant is None:
            return src, name
    # bitsandbytes quantizes while loading: write the fp32 model once and load it back with the NF4 config.
    # (A model read from a GGUF refuses save_pretrained, so the config and the tensors are written directly; the
    # tied lm_head is left out, as save_pretrained does.)
    import safetensors.torch
    tmp = tempfile.mkdtemp(prefix="hf_step_")
    import copy
    cfg = copy.deepcopy(src.config)
    cfg.__dict__.pop("quantization_config", None)  # the GGUF's; the NF4 one is passed below
    cfg.save_pretrained(tmp)
    state = {k: v.detach().contiguous() for k, v in src.state_dict().items() if k != "lm_head.weight"}
    safetensors.torch.save_file(state, os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
    del src, state
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp, quantization_config=quant, dtype=torch.float32,
                                                              attn_implementation=args.attn, device_map="cpu")
    return model, name


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=os.environ.get("QLORA_MODEL", ""), help="a .gguf file (default $QLORA_MODEL)")
    p.add_argument("--random", action="store_true", help="random weights of --config's shape instead of --model")
    p.add_argument("--config", default="270m", choices=sorted(CONFIGS))
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--base", default="fp32", choices=["fp32", "nf4"], help="frozen base: fp32, or bitsandbytes NF4")
    p.add_argument("--optim", default="adamw8bit", choices=["adamw8bit", "adamw"],
                   help="bitsandbytes AdamW8bit (as qlora) or torch AdamW")
    p.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--autocast", default="none", choices=["none", "bf16"],
                   help="bf16: forward under torch.autocast(cpu, bfloat16), as transformers' --bf16")
    args = p.parse_args()
    if not args.random and not args.model:
        p.error("give --model PATH.gguf (or set QLORA_MODEL), or --random")

    import torch
    torch.set_num_threads(args.threads)
    import peft
    import transformers

    t0 = time.perf_counter()
    model, name = build_model(args, torch, transformers)
    if args.base == "nf4":
        model = peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=args.gradient_checkpointing)
    elif args.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    lora = peft.LoraConfig(r=args.rank, lora_alpha=32, lora_dropout=0.05, bias="none", task_type="CAUSAL_LM",
                           target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    model = peft.get_peft_model(model, lora)
    model.train()
    load_s = time.perf_counter() - t0
    rss_loaded, hwm_load = status_kib("VmRSS"), status_kib("VmHWM")
    peak_reset = reset_peak_rss()

    params = [q for q in model.parameters() if q.requires_grad]
    if args.optim == "adamw8bit":
        import bitsandbytes as bnb
        opt = bnb.optim.AdamW8bit(params, lr=1e-4, weight_decay=0.0)
    else:
        opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(2, vocab, (args.batch, args.seq), generator=g)

    fwd = bwd = step_opt = 0.0
    best = float("inf")
    first_loss = last_loss = None
    import contextlib
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if args.autocast == "bf16" \
        else contextlib.nullcontext
    for s in range(args.warmup + args.steps):
        a = time.perf_counter()
        with autocast():
            loss = model(input_ids=ids, labels=ids).loss
        b = time.perf_counter()
        loss.backward()
        c = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        d = time.perf_counter()
        first_loss = loss.item() if first_loss is None else first_loss
        last_loss = loss.item()
        del loss
        if s < args.warmup:
            continue
        fwd, bwd, step_opt = fwd + b - a, bwd + c - b, step_opt + d - c
        best = min(best, d - a)
    n = args.steps
    step_s = (fwd + bwd + step_opt) / n
    hwm_steps = status_kib("VmHWM")
    # The host's GEMM rate as torch reaches it in this process (2048³, best of 5 after a warm-up): fp32, or bf16
    # operands under --autocast bf16.
    gemm_dtype = torch.bfloat16 if args.autocast == "bf16" else torch.float32
    a_m, b_m = (torch.rand(2048, 2048) - 0.5).to(gemm_dtype), (torch.rand(2048, 2048) - 0.5).to(gemm_dtype)
    gemm_best = float("inf")
    for r in range(6):
        t = time.perf_counter()
        torch.mm(a_m, b_m)
        if r:
            gemm_best = min(gemm_best, time.perf_counter() - t)
    import bitsandbytes
    out = dict(framework="transformers+peft", model=name, config=f"gemma-3-{args.config}", seq=args.seq,
               batch=args.batch, rank=args.rank, steps=n, threads=torch.get_num_threads(),
               gradient_checkpointing=args.gradient_checkpointing, base=args.base, autocast=args.autocast,
               optim=args.optim, attn=args.attn,
               load_s=round(load_s, 3), step_s=round(step_s, 4), best_step_s=round(best, 4),
               forward_s=round(fwd / n, 4), backward_s=round(bwd / n, 4), optimizer_s=round(step_opt / n, 4),
               tokens_per_s=round(args.batch * args.seq / step_s, 1), peak_rss_mib=round(max(hwm_load, hwm_steps) / 1024, 1),
               step_peak_rss_mib=round(hwm_steps / 1024, 1) if peak_reset else -1,
               loaded_rss_mib=round(rss_loaded / 1024, 1), first_loss=round(first_loss, 4), last_loss=round(last_loss, 4),
               gemm_gflops=round(2 * 2048**3 / gemm_best / 1e9, 1), isa=torch.backends.cpu.get_cpu_capability(),
               versions=dict(torch=torch.__version__, transformers=transformers.__version__, peft=peft.__version__,
                             bitsandbytes=bitsandbytes.__version__))
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
