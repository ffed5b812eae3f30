#!/usr/bin/env python3
"""Reference files for a tiny Gemma 3 multimodal (4B-shaped) checkpoint: loading, tokenizer, logits and PEFT keys.

A tiny SentencePiece BPE model is trained on examples/data/finance_reasoning.jsonl with Gemma's layout (<pad> 0,
<eos> 1, <bos> 2, <unk> 3, then <start_of_turn> <end_of_turn> <start_of_image> <end_of_image> <image_soft_token>,
byte fallback, split digits, no dummy prefix, identity normalization; vocab 1024). A random
Gemma3ForConditionalGeneration with the 4B's structure at small width (7 text layers, layer 5 global and the rest
sliding, GQA 4:2, head_dim 8, sliding window 4, vocab 1088 = 1024 + 64, linear RoPE scaling 8 on the global layers,
a 2-layer SigLIP tower, 4 tokens per image, random text norm weights) is saved three ways:

  hf5/     save_pretrained of transformers 5 with save_original_format=False (2 shards +
           model.safetensors.index.json; the in-memory names model.language_model.*, model.vision_tower.* without
           "vision_model.", model.multi_modal_projector.*; default_save_names.json lists what the default
           save_original_format=True writes instead: language_model.model.*, vision_tower.*, multi_modal_projector.*),
           with the transformers tokenizer (Gemma 3 chat template), tokenizer.model and an -it generation_config.json;
  google/  the layout of Google's published gemma-3-4b-it: language_model.model.*, vision_tower.vision_model.*,
           multi_modal_projector.* in one model.safetensors, a transformers-4.5x-style config.json (rope_theta,
           rope_local_base_freq, rope_scaling, sliding_window_pattern), tokenizer.model, tokenizer_config.json with the
           chat template inside, generation_config.json;
  text/    the same text model as a Gemma3ForCausalLM (model.* names, model_type gemma3_text).

Also writes logits.json (fp32 logits of hf5/ for three token sequences, input_ids only; google/ and text/ are
checked to match), peft_qv/ (a PEFT LoRA adapter, r=4 on q_proj/v_proj, random lora_B in the text model and the
vision tower) with peft_qv_logits.json, peft_keys.json (the tensor names and shapes PEFT writes into
adapter_model.safetensors for Gemma3ForConditionalGeneration and Gemma3ForCausalLM with three target_modules
settings), tokenizer.json (special ids) and versions.json. Logits are written with the shortest decimal that
round-trips each float32.

Run:  pip install torch transformers peft safetensors sentencepiece protobuf
      python3 tests/golden/gemma3_multimodal.py
Writes tests/data/gemma3_mm/.
"""
import copy
import io
import json
import os
import shutil
import tempfile

import numpy as np
import peft
import safetensors
import sentencepiece as spm
import torch
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import (AutoTokenizer, Gemma3Config, Gemma3ForCausalLM, Gemma3ForConditionalGeneration,
                          Gemma3TextConfig, GemmaTokenizer, SiglipVisionConfig)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "data", "gemma3_mm")
DATA = os.path.join(HERE, "..", "..", "examples", "data", "finance_reasoning.jsonl")

SPECIALS = ["<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>", "<image_soft_token>"]

# Gemma 3 (google/gemma-3-4b-it) chat template: <bos> once, a system message folded into the first user turn,
# roles user/model, each turn "<start_of_turn>{role}\n{content | trim}<end_of_turn>\n".
CHAT_TEMPLATE = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
"""

# bos first, ids < 1024, no <image_soft_token> (8); the first and last are longer than the sliding window (4).
SEQUENCES = [[2, 17, 200, 45, 45, 9, 120, 3, 77, 1000, 11],
             [2, 5],
             [2, 1023, 1, 0, 150, 150, 150, 42, 4, 512, 512, 512, 30]]

TARGETS = {"q_proj,v_proj": ["q_proj", "v_proj"],
           "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj":
               ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
           "all-linear": "all-linear"}


def train_tokenizer():
    texts = []
    with open(DATA, encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            texts.append("\n".join(v for v in record.values() if isinstance(v, str)))
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=buf, vocab_size=1024, model_type="bpe", byte_fallback=True,
        pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>",
        unk_piece="<unk>", user_defined_symbols=SPECIALS, split_digits=True, add_dummy_prefix=False,
        remove_extra_whitespaces=False, allow_whitespace_only_pieces=True, normalization_rule_name="identity",
        character_coverage=1.0, max_sentence_length=1 << 16, num_threads=1, minloglevel=2)
    proto = buf.getvalue()
    sp = spm.SentencePieceProcessor(model_proto=proto)
    ids = {p: sp.piece_to_id(p) for p in ["<pad>", "<eos>", "<bos>", "<unk>"] + SPECIALS}
    return proto, ids


def dump_logits(path, sequences, logits):
    """JSON with the shortest round-tripping decimal of each float32 (json.dump of float64 would double the size)."""
    with open(path, "w") as f:
        f.write('{"sequences": ' + json.dumps(sequences, separators=(",", ":")) + ', "logits": [')
        for i, seq_logits in enumerate(logits):
            f.write(",\n" if i else "\n")
            f.write("[" + ",\n".join("[" + ",".join(np.format_float_positional(np.float32(x), unique=True, trim="-")
                                                    for x in row) + "]" for row in seq_logits) + "]")
        f.write("]}\n")
    with open(path) as f:  # the text parses back to the exact float32 values
        back = json.load(f)["logits"]
    for a, b in zip(logits, back):
        assert np.array_equal(np.asarray(b, dtype=np.float32), a)


def run_logits(model):
    out = []
    with torch.no_grad():
        for ids in SEQUENCES:
            out.append(model(input_ids=torch.tensor([ids])).logits[0].float().numpy())
    return out


def max_diff(a, b):
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b))


def build_model(ids):
    text = Gemma3TextConfig(
        vocab_size=1088, hidden_size=32, intermediate_size=64, num_hidden_layers=7, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, query_pre_attn_scalar=8, sliding_window=4, sliding_window_pattern=6,
        max_position_embeddings=128, rms_norm_eps=1e-6, tie_word_embeddings=True,
        rope_parameters={"full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0},
                         "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}})
    vision = SiglipVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                                image_size=28, patch_size=14, vision_use_head=False)
    config = Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4,
                          boi_token_index=ids["<start_of_image>"], eoi_token_index=ids["<end_of_image>"],
                          image_token_index=ids["<image_soft_token>"], tie_word_embeddings=True,
                          attn_implementation="eager")
    config.architectures = ["Gemma3ForConditionalGeneration"]
    torch.manual_seed(0)
    model = Gemma3ForConditionalGeneration(config).eval()
    with torch.no_grad():  # random text norm weights, so the (1 + w) convention is exercised
        for name, p in model.named_parameters():
            if name.startswith("model.language_model.") and "norm" in name:
                p.normal_(0.0, 0.3)
    assert text.layer_types == ["sliding_attention"] * 5 + ["full_attention"] + ["sliding_attention"], text.layer_types
    return model


def hf_tokenizer(proto, tmp):
    d = os.path.join(tmp, "spm")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "tokenizer.model"), "wb") as f:
        f.write(proto)
    tok = GemmaTokenizer.from_pretrained(d, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                         unk_token="<unk>", mask_token=None, add_bos_token=True, add_eos_token=False)
    tok.chat_template = CHAT_TEMPLATE
    sp = spm.SentencePieceProcessor(model_proto=proto)
    for s in ["<start_of_turn>user\nWhat is 15% of 240?<end_of_turn>\n", "  two  spaces\t\ttabs 日本 €1.5"]:
        assert tok(s).input_ids == [2] + sp.encode(s), s
    assert len(tok) == 1024
    return tok


def generation_config(ids):
    return {"bos_token_id": ids["<bos>"], "pad_token_id": ids["<pad>"],
            "eos_token_id": [ids["<eos>"], ids["<end_of_turn>"]], "do_sample": True, "top_k": 64, "top_p": 0.95,
            "transformers_version": transformers.__version__}


def save_hf5(model, tok, proto, ids, tmp):
    path = os.path.join(OUT, "hf5")
    total = sum(t.numel() * t.element_size() for n, t in model.state_dict().items() if n != "lm_head.weight")
    # transformers 5's save_pretrained reverts to legacy names by default (save_original_format=True); hf5/ keeps the
    # names the model has in memory, and default_save_names.json records what the default writes.
    model.save_pretrained(path, max_shard_size=int(total * 0.6), save_original_format=False)
    with open(os.path.join(path, "model.safetensors.index.json")) as f:
        shards = sorted(set(json.load(f)["weight_map"].values()))
    assert len(shards) == 2, shards
    for k in ("vocab_file", "is_local", "local_files_only"):  # the temporary folder it was built from
        tok.init_kwargs.pop(k, None)
    tok.save_pretrained(path)
    with open(os.path.join(path, "tokenizer.model"), "wb") as f:
        f.write(proto)
    with open(os.path.join(path, "generation_config.json"), "w") as f:
        json.dump(generation_config(ids), f, indent=2)
    with open(os.path.join(path, "config.json")) as f:
        cfg = json.load(f)
    rope = cfg["text_config"]["rope_parameters"]
    assert rope["full_attention"]["rope_type"] == "linear" and rope["full_attention"]["factor"] == 8.0
    assert rope["full_attention"]["rope_theta"] == 1e6 and rope["sliding_attention"]["rope_theta"] == 1e4
    assert rope["sliding_attention"]["rope_type"] == "default"
    default = os.path.join(tmp, "default_save")
    model.save_pretrained(default)
    with safetensors.safe_open(os.path.join(default, "model.safetensors"), "pt") as f:
        default_names = sorted(f.keys())
    with open(os.path.join(OUT, "default_save_names.json"), "w") as f:
        json.dump({"note": "tensor names of model.save_pretrained(dir) with transformers " + transformers.__version__ +
                   " defaults (save_original_format=True), for the same model as hf5/",
                   "names": default_names}, f, indent=0)
    sd = {}
    for s in shards:
        sd.update(load_file(os.path.join(path, s)))
    return path, sd


def google_name(name):
    for old, new in (("model.language_model.", "language_model.model."),
                     ("model.vision_tower.", "vision_tower.vision_model."),
                     ("model.multi_modal_projector.", "multi_modal_projector."),
                     ("lm_head.", "language_model.lm_head.")):
        if name.startswith(old):
            return new + name[len(old):]
    raise ValueError(name)


def save_google(model, sd, proto, ids):
    path = os.path.join(OUT, "google")
    os.makedirs(path, exist_ok=True)
    save_file({google_name(n): t.contiguous() for n, t in sorted(sd.items())}, os.path.join(path, "model.safetensors"),
              metadata={"format": "pt"})
    t, v = model.config.text_config, model.config.vision_config
    config = {
        "architectures": ["Gemma3ForConditionalGeneration"],
        "boi_token_index": ids["<start_of_image>"],
        "eoi_token_index": ids["<end_of_image>"],
        "eos_token_id": [ids["<eos>"], ids["<end_of_turn>"]],
        "image_token_index": ids["<image_soft_token>"],
        "initializer_range": 0.02,
        "mm_tokens_per_image": 4,
        "model_type": "gemma3",
        "text_config": {
            "attention_bias": False, "attention_dropout": 0.0, "attn_logit_softcapping": None,
            "cache_implementation": "hybrid", "final_logit_softcapping": None, "head_dim": t.head_dim,
            "hidden_activation": "gelu_pytorch_tanh", "hidden_size": t.hidden_size, "initializer_range": 0.02,
            "intermediate_size": t.intermediate_size, "max_position_embeddings": t.max_position_embeddings,
            "model_type": "gemma3_text", "num_attention_heads": t.num_attention_heads,
            "num_hidden_layers": t.num_hidden_layers, "num_key_value_heads": t.num_key_value_heads,
            "query_pre_attn_scalar": t.query_pre_attn_scalar, "rms_norm_eps": t.rms_norm_eps,
            "rope_local_base_freq": 10000.0, "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
            "rope_theta": 1000000.0, "sliding_window": t.sliding_window, "sliding_window_pattern": 6,
            "torch_dtype": "float32", "use_cache": True, "vocab_size": t.vocab_size},
        "torch_dtype": "float32",
        "transformers_version": "4.50.0.dev0",
        "vision_config": {
            "attention_dropout": 0.0, "hidden_act": "gelu_pytorch_tanh", "hidden_size": v.hidden_size,
            "image_size": v.image_size, "intermediate_size": v.intermediate_size, "layer_norm_eps": v.layer_norm_eps,
            "model_type": "siglip_vision_model", "num_attention_heads": v.num_attention_heads, "num_channels": 3,
            "num_hidden_layers": v.num_hidden_layers, "patch_size": v.patch_size, "torch_dtype": "float32",
            "vision_use_head": False},
    }
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(path, "tokenizer.model"), "wb") as f:
        f.write(proto)
    special = {"<pad>", "<eos>", "<bos>", "<unk>"}
    tok_config = {
        "add_bos_token": True, "add_eos_token": False,
        "added_tokens_decoder": {str(ids[p]): {"content": p, "lstrip": False, "normalized": False, "rstrip": False,
                                               "single_word": False, "special": p in special}
                                 for p in ["<pad>", "<eos>", "<bos>", "<unk>"] + SPECIALS},
        "boi_token": "<start_of_image>", "bos_token": "<bos>", "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False, "eoi_token": "<end_of_image>", "eos_token": "<eos>",
        "extra_special_tokens": {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>",
                                 "image_token": "<image_soft_token>"},
        "image_token": "<image_soft_token>", "model_max_length": 1000000000000000019884624838656,
        "pad_token": "<pad>", "processor_class": "Gemma3Processor", "sp_model_kwargs": None,
        "spaces_between_special_tokens": False, "tokenizer_class": "GemmaTokenizer", "unk_token": "<unk>",
        "use_default_system_prompt": False}
    with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
        json.dump(tok_config, f, indent=2)
    gen = generation_config(ids)
    gen["transformers_version"] = "4.50.0.dev0"
    with open(os.path.join(path, "generation_config.json"), "w") as f:
        json.dump(gen, f, indent=2)
    return path


def save_text(model, sd):
    path = os.path.join(OUT, "text")
    text_config = copy.deepcopy(model.config.text_config)
    text_config.architectures = ["Gemma3ForCausalLM"]
    text_config._attn_implementation = "eager"
    torch.manual_seed(0)
    text = Gemma3ForCausalLM(text_config).eval()
    prefix = "model.language_model."
    lm = {"model." + n[len(prefix):]: t for n, t in sd.items() if n.startswith(prefix)}
    missing, unexpected = text.load_state_dict(lm, strict=False)
    assert missing == ["lm_head.weight"] and not unexpected, (missing, unexpected)
    assert text.lm_head.weight.data_ptr() == text.model.embed_tokens.weight.data_ptr()  # tied
    text.save_pretrained(path)
    return path


def load(cls, path):
    model, info = cls.from_pretrained(path, attn_implementation="eager", dtype=torch.float32, output_loading_info=True)
    bad = {k: v for k, v in info.items() if v}
    assert not bad, (path, bad)
    return model.eval()


def check_tokenizers(hf5, google, proto):
    sp = spm.SentencePieceProcessor(model_proto=proto)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": " What is 15% of 240? "},
                {"role": "assistant", "content": "36.\n"}, {"role": "user", "content": "And 20%?"}]
    expected = ("<bos><start_of_turn>user\nBe brief.\n\nWhat is 15% of 240?<end_of_turn>\n<start_of_turn>model\n36."
                "<end_of_turn>\n<start_of_turn>user\nAnd 20%?<end_of_turn>\n<start_of_turn>model\n")
    for path in (hf5, google):
        tok = AutoTokenizer.from_pretrained(path)
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert text == expected, (path, text)
        s = "Revenue grew 8.3%  year over year;\tEBITDA = 4.2M.<end_of_turn>\n"
        assert tok(s).input_ids == [2] + sp.encode(s), path
        assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id, tok.unk_token_id) == (2, 1, 0, 3), path
        print(f"tokenizer {os.path.basename(path)}/: {type(tok).__name__}, {len(tok)} tokens, chat template ok")


def peft_adapter(model, tmp):
    torch.manual_seed(1)
    pm = get_peft_model(copy.deepcopy(model), LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                                                         target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, p in pm.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    pm.eval()
    path = os.path.join(OUT, "peft_qv")
    pm.save_pretrained(path, safe_serialization=True)
    cfg_path = os.path.join(path, "adapter_config.json")
    with open(cfg_path) as f:  # PEFT keeps target_modules as a set: its order follows PYTHONHASHSEED
        cfg = json.load(f)
    cfg["target_modules"] = sorted(cfg["target_modules"])
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
    logits = run_logits(pm)
    # reload from disk on a fresh base: the files, not the in-memory model, are the reference
    back = PeftModel.from_pretrained(copy.deepcopy(model), path).eval()
    print(f"peft_qv: reloaded adapter max |diff| {max_diff(logits, run_logits(back)):.3g}")
    with safetensors.safe_open(os.path.join(path, "adapter_model.safetensors"), "pt") as f:
        keys = sorted(f.keys())
    return logits, keys


def saved_peft_keys(base, target, tmp):
    torch.manual_seed(1)
    pm = get_peft_model(copy.deepcopy(base), LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=target,
                                                        task_type="CAUSAL_LM"))
    d = tempfile.mkdtemp(dir=tmp)
    pm.save_pretrained(d, safe_serialization=True)
    out = {}
    with safetensors.safe_open(os.path.join(d, "adapter_model.safetensors"), "pt") as f:
        for k in sorted(f.keys()):
            out[k] = list(f.get_slice(k).get_shape())
    return out


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    tmp = tempfile.mkdtemp()
    try:
        proto, ids = train_tokenizer()
        proto2, _ = train_tokenizer()
        assert proto == proto2, "SentencePiece training is not deterministic"
        print("special ids:", ids)
        with open(os.path.join(OUT, "tokenizer.json"), "w") as f:
            json.dump({"vocab_size": 1024, "special_ids": ids}, f, indent=1)

        model = build_model(ids)
        tok = hf_tokenizer(proto, tmp)
        hf5, sd = save_hf5(model, tok, proto, ids, tmp)
        google = save_google(model, sd, proto, ids)
        text = save_text(model, sd)

        check_tokenizers(hf5, google, proto)
        ref = run_logits(load(Gemma3ForConditionalGeneration, hf5))
        assert max_diff(ref, run_logits(model)) == 0.0
        dump_logits(os.path.join(OUT, "logits.json"), SEQUENCES, ref)
        g = load(Gemma3ForConditionalGeneration, google)
        assert g.config.text_config.layer_types == model.config.text_config.layer_types
        assert g.config.text_config.rope_parameters == model.config.text_config.rope_parameters, \
            (g.config.text_config.rope_parameters, model.config.text_config.rope_parameters)
        dg = max_diff(ref, run_logits(g))
        t = load(Gemma3ForCausalLM, text)
        dt = max_diff(ref, run_logits(t))
        print(f"logits: google/ max |diff| {dg:.3g}, text/ max |diff| {dt:.3g}")
        assert dg <= 1e-6 and dt <= 1e-6

        qv_logits, qv_keys = peft_adapter(model, tmp)
        dump_logits(os.path.join(OUT, "peft_qv_logits.json"), SEQUENCES, qv_logits)
        print(f"peft_qv: {len(qv_keys)} tensors, base vs adapter max |diff| {max_diff(ref, qv_logits):.3g}")

        keys = {}
        for cls, base in (("Gemma3ForConditionalGeneration", model), ("Gemma3ForCausalLM", t)):
            keys[cls] = {name: saved_peft_keys(base, target, tmp) for name, target in TARGETS.items()}
            for name, k in keys[cls].items():
                vision = sum(1 for n in k if ".vision_tower." in n)
                print(f"peft keys {cls} [{name}]: {len(k)} tensors, {vision} in the vision tower")
        with open(os.path.join(OUT, "peft_keys.json"), "w") as f:
            def block(d, inner):  # one tensor per line
                return "{\n" + ",\n".join(json.dumps(k) + ": " + inner(v) for k, v in d.items()) + "}"
            f.write(block(keys, lambda per: block(per, lambda d: block(d, json.dumps))) + "\n")
    finally:
        shutil.rmtree(tmp)

    with open(os.path.join(OUT, "versions.json"), "w") as f:
        json.dump({"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
                   "sentencepiece": spm.__version__, "safetensors": safetensors.__version__}, f, indent=1)
    total = sum(os.path.getsize(os.path.join(r, n)) for r, _, ns in os.walk(OUT) for n in ns)
    print(f"wrote {OUT}: {total} bytes")


if __name__ == "__main__":
    main()
