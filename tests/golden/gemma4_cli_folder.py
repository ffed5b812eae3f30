#!/usr/bin/env python3
"""A tiny random Gemma 4 checkpoint folder as users download one, for the command-line tests (qlora finetune with the
Gemma 4 recipe, tools/tests/cli.sh gemma4): Gemma4ForCausalLM saved by transformers in bf16 (as the published
checkpoints are) with every variant of the dense text model in one (per-layer embeddings, keys = values on full
layers, the last 2 of 6 layers reusing earlier layers' keys and values, the double-wide MLP on those), and the
tokenizer files of the tiny multimodal Gemma 3 folder (tests/data/gemma3_mm/hf5: a 1024-piece SentencePiece model
with Gemma's control tokens, Gemma's chat template, generation_config.json), so a vocabulary of 1088 rows covers it.
Written to tests/data/gemma4_cli/, and the same text model inside a Gemma4ForConditionalGeneration with tiny vision
and audio towers (random; their q/k/v/o/gate/up/down are Gemma4ClippableLinear, which PEFT cannot wrap) to
tests/data/gemma4_cli_mm/, as the published -it checkpoints come.
Run:  pip install torch transformers safetensors && python3 tests/golden/gemma4_cli_folder.py
"""
import os
import shutil
import warnings

import torch
from transformers import Gemma4Config, Gemma4ForCausalLM, Gemma4ForConditionalGeneration, Gemma4TextConfig
from transformers.models.gemma4 import configuration_gemma4

from gemma4_model import randomize

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data")
OUT = os.path.join(DATA, "gemma4_cli")
OUT_MM = os.path.join(DATA, "gemma4_cli_mm")
TOKENIZER_FROM = os.path.join(DATA, "gemma3_mm", "hf5")


def main():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = Gemma4TextConfig(
            vocab_size=1088, vocab_size_per_layer_input=1088, hidden_size=32, hidden_size_per_layer_input=8,
            intermediate_size=48, num_hidden_layers=6, num_attention_heads=2, num_key_value_heads=1, head_dim=16,
            global_head_dim=32, num_global_key_value_heads=1, attention_k_eq_v=True, num_kv_shared_layers=2,
            use_double_wide_mlp=True, sliding_window=8, max_position_embeddings=4096, final_logit_softcapping=30.0,
            rms_norm_eps=1e-6, pad_token_id=0, eos_token_id=1, bos_token_id=2, tie_word_embeddings=True,
            layer_types=["sliding_attention", "sliding_attention", "full_attention", "sliding_attention",
                         "sliding_attention", "full_attention"])
        model = Gemma4ForCausalLM(config).eval()
    randomize(model, g)
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    model.to(torch.bfloat16).save_pretrained(OUT, safe_serialization=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vision = configuration_gemma4.Gemma4VisionConfig(hidden_size=16, intermediate_size=24, num_hidden_layers=1,
                                                         num_attention_heads=2, num_key_value_heads=2, head_dim=8)
        audio = configuration_gemma4.Gemma4AudioConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2)
        mm = Gemma4ForConditionalGeneration(Gemma4Config(text_config=config.to_dict(), vision_config=vision.to_dict(),
                                                         audio_config=audio.to_dict())).eval()
    # the text model's weights are the text-only checkpoint's; the towers keep their random initialisation
    missing = mm.model.language_model.load_state_dict(model.model.state_dict(), strict=True)
    assert not missing.missing_keys and not missing.unexpected_keys, missing
    if os.path.isdir(OUT_MM):
        shutil.rmtree(OUT_MM)
    mm.to(torch.bfloat16).save_pretrained(OUT_MM, safe_serialization=True)
    for out in (OUT, OUT_MM):
        for name in ("tokenizer.model", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"):
            shutil.copy(os.path.join(TOKENIZER_FROM, name), os.path.join(out, name))
        print("wrote", out, sorted(os.listdir(out)))


if __name__ == "__main__":
    main()
