#!/usr/bin/env python3
"""Reference BLEU and ROUGE-L scores from the real packages, for tests/train/evaluate.cpp.

Run:  pip install sacrebleu rouge-score && python3 tests/golden/metrics.py
Writes tests/data/metrics/metrics.json: the hypothesis/reference pairs, sacrebleu's corpus BLEU (score,
precisions, brevity penalty, lengths) and rouge-score's ROUGE-L (no stemming) for each pair.
"""
import json
import os

import rouge_score
import sacrebleu
from rouge_score import rouge_scorer

PAIRS = [
    ("The net profit margin is 12.5%.", "The net profit margin is 12.5%."),
    ("Revenue grew by 8.3 % to $1,250,000 in 2023.", "Revenue grew 8.3% to $1,250,000 in 2023."),
    ("Operating costs were 450 thousand; margin = 0.25", "Operating costs were $450,000, so the margin is 0.25."),
    ("Answer: -3.75", "The answer is -3.75"),
    ("A 3-year CAGR of 4.1% (2019-2022).", "The three-year CAGR is 4.1% for 2019–2022."),
    ("Q&amp;A: &quot;EBITDA&quot; &lt; EBIT?", "Q&A: \"EBITDA\" < EBIT?"),
    ("the the the the", "the cat sat on the mat"),
    ("", "Nothing was generated."),
    ("Gross margin: (500 - 300) / 500 = 40%.", "Gross margin = (500 - 300)/500 = 0.4 = 40%"),
    ("multi\nline-\nanswer with hyphen-\nation", "multi line answer with hyphenation"),
]


def main():
    out_dir = os.path.join(os.path.dirname(__file__), "..", "data", "metrics")
    os.makedirs(out_dir, exist_ok=True)
    hyps = [h for h, _ in PAIRS]
    refs = [r for _, r in PAIRS]
    bleu = sacrebleu.corpus_bleu(hyps, [refs])
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    rouge = [scorer.score(r, h)["rougeL"] for h, r in PAIRS]
    # BLEU of each pair alone, to exercise the smoothing and brevity branches separately.
    single = [sacrebleu.corpus_bleu([h], [[r]]) for h, r in PAIRS]
    data = {
        "versions": {"sacrebleu": sacrebleu.__version__, "rouge_score": getattr(rouge_score, "__version__", "unknown")},
        "pairs": [{"hypothesis": h, "reference": r} for h, r in PAIRS],
        "corpus_bleu": {"score": bleu.score, "precisions": bleu.precisions, "bp": bleu.bp,
                        "sys_len": bleu.sys_len, "ref_len": bleu.ref_len},
        "pair_bleu": [{"score": b.score, "precisions": b.precisions, "bp": b.bp} for b in single],
        "rouge_l": [{"precision": s.precision, "recall": s.recall, "fmeasure": s.fmeasure} for s in rouge],
    }
    path = os.path.join(out_dir, "metrics.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, ensure_ascii=False)
    print(f"wrote {path}: corpus BLEU {bleu.score:.6f} (sacrebleu {sacrebleu.__version__})")


if __name__ == "__main__":
    main()
