#!/usr/bin/env python3
"""Writes examples/data/finance_reasoning.jsonl: made-up financial-reasoning records in the format of
TheFinAI/Fino1_Reasoning_Path_FinQA ("Open-ended Verifiable Question", "Complex_CoT", "Response").

Each question is asked over a small invented table (revenue, costs, margins, growth, ratios, currency); the reasoning
works the arithmetic step by step and the response states the final number. Numbers are computed exactly with
fractions and rounded half-up to the stated precision, so every answer can be checked. Deterministic: the same seed
writes the same bytes. Standard library only.  Usage: python3 make_finance_set.py [--count 400] [--seed 20250314]
"""
import argparse
import json
import random
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from pathlib import Path

COMPANIES = ["Aldermoor Tools", "Brightwater Foods", "Cobalt Ridge Mining", "Dunmore Logistics", "Elmstead Retail",
             "Fairhaven Textiles", "Glenrock Energy", "Harrow & Finch", "Ironvale Systems", "Juniper Health",
             "Kestrel Aviation", "Larkspur Media", "Marlow Chemicals", "Northgate Software", "Oakhurst Furniture",
             "Pinecrest Pharma", "Quillon Bank", "Redfern Motors", "Saltmarsh Shipping", "Thornbury Telecom"]
SEGMENTS = ["North America", "Europe", "Asia-Pacific", "Latin America", "Services", "Hardware", "Subscriptions"]
CURRENCIES = [("EUR", "€"), ("GBP", "£"), ("JPY", "¥"), ("CHF", "CHF ")]


def q(x, places=2):
    """Rounds a Fraction half-up to `places` decimals and returns the Decimal."""
    d = Decimal(x.numerator) / Decimal(x.denominator)
    return d.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def money(x, places=1):
    return f"${q(Fraction(x), places):,} million"


def pct(x):
    return f"{q(Fraction(x) * 100)}%"


def amount(rng, lo, hi):
    """A made-up amount in millions with one decimal, as a Fraction."""
    return Fraction(rng.randint(lo * 10, hi * 10), 10)


def table(title, rows, years):
    head = "| Item | " + " | ".join(str(y) for y in years) + " |"
    lines = [title, head, "|" + "---|" * (len(years) + 1)]
    for name, values in rows:
        lines.append(f"| {name} | " + " | ".join("-" if v == "" else f"{q(Fraction(v), 1):,}" for v in values) + " |")
    return "\n".join(lines)


def question(context, ask):
    return ("Please answer the given financial question based on the context.\n"
            f"Context: {context}\nQuestion: {ask}\nAnswer:")


def growth(rng, co, y):
    a, b = amount(rng, 200, 900), amount(rng, 200, 900)
    ctx = table(f"{co} (in $ millions)", [("Revenue", [a, b])], [y - 1, y])
    g = (b - a) / a
    cot = (f"Let me find the revenue growth from {y - 1} to {y}. Revenue was {money(a)} in {y - 1} and {money(b)} in "
           f"{y}. The change is {q(b, 1)} - {q(a, 1)} = {q(b - a, 1)} million. Dividing by the earlier year: "
           f"{q(b - a, 1)} / {q(a, 1)} = {q(g, 6)}. As a percentage that is {pct(g)}.")
    return ctx, f"What was the percentage change in revenue from {y - 1} to {y}?", cot, \
        f"Revenue changed by {pct(g)} from {y - 1} to {y}."


def gross_margin(rng, co, y):
    rev = amount(rng, 300, 1500)
    cogs = Fraction(round(rev * Fraction(rng.randint(3500, 8000), 10000) * 10), 10)
    ctx = table(f"{co} income statement (in $ millions)", [("Net sales", [rev]), ("Cost of goods sold", [cogs])], [y])
    m = (rev - cogs) / rev
    cot = (f"Gross margin is gross profit divided by net sales. Gross profit = {q(rev, 1)} - {q(cogs, 1)} = "
           f"{q(rev - cogs, 1)} million. Then {q(rev - cogs, 1)} / {q(rev, 1)} = {q(m, 6)}, which is {pct(m)}.")
    return ctx, f"What was the gross margin of {co} in {y}?", cot, f"The gross margin in {y} was {pct(m)}."


def operating_margin(rng, co, y):
    rev = amount(rng, 400, 2000)
    cogs = Fraction(round(rev * Fraction(rng.randint(4000, 6000), 10000) * 10), 10)
    opex = Fraction(round(rev * Fraction(rng.randint(1000, 3000), 10000) * 10), 10)
    ctx = table(f"{co} (in $ millions)", [("Revenue", [rev]), ("Cost of revenue", [cogs]),
                                           ("Operating expenses", [opex])], [y])
    oi = rev - cogs - opex
    cot = (f"Operating income = revenue - cost of revenue - operating expenses = {q(rev, 1)} - {q(cogs, 1)} - "
           f"{q(opex, 1)} = {q(oi, 1)} million. Operating margin = {q(oi, 1)} / {q(rev, 1)} = {q(oi / rev, 6)}, "
           f"or {pct(oi / rev)}.")
    return ctx, f"What was the operating margin in {y}?", cot, f"The operating margin in {y} was {pct(oi / rev)}."


def quarterly_total(rng, co, y):
    qs = [amount(rng, 50, 400) for _ in range(4)]
    ctx = table(f"{co} quarterly revenue in {y} (in $ millions)", [("Revenue", qs)], ["Q1", "Q2", "Q3", "Q4"])
    total = sum(qs)
    steps = " + ".join(str(q(v, 1)) for v in qs)
    kind = rng.choice(["total", "average"])
    if kind == "total":
        cot = f"The annual revenue is the sum of the four quarters: {steps} = {q(total, 1)} million."
        return ctx, f"What was the total revenue for {y}?", cot, f"Total revenue for {y} was {money(total)}."
    avg = total / 4
    cot = (f"First add the quarters: {steps} = {q(total, 1)} million. The average is {q(total, 1)} / 4 = "
           f"{q(avg, 3)}, about {q(avg, 2)} million.")
    return ctx, f"What was the average quarterly revenue in {y}?", cot, \
        f"The average quarterly revenue in {y} was {money(avg, 2)}."


def segment_share(rng, co, y):
    names = rng.sample(SEGMENTS, 3)
    vals = [amount(rng, 80, 600) for _ in names]
    ctx = table(f"{co} revenue by segment, {y} (in $ millions)", list(zip(names, [[v] for v in vals])), [y])
    total = sum(vals)
    share = vals[0] / total
    cot = (f"Total revenue is {' + '.join(str(q(v, 1)) for v in vals)} = {q(total, 1)} million. {names[0]} "
           f"contributed {q(vals[0], 1)} million, so its share is {q(vals[0], 1)} / {q(total, 1)} = {q(share, 6)}, "
           f"which is {pct(share)}.")
    return ctx, f"What percentage of total revenue in {y} came from {names[0]}?", cot, \
        f"{names[0]} accounted for {pct(share)} of total revenue in {y}."


def current_ratio(rng, co, y):
    ca, cl = amount(rng, 100, 900), amount(rng, 80, 700)
    ctx = table(f"{co} balance sheet, December 31, {y} (in $ millions)",
                [("Total current assets", [ca]), ("Total current liabilities", [cl])], [y])
    r = ca / cl
    cot = (f"The current ratio is current assets divided by current liabilities: {q(ca, 1)} / {q(cl, 1)} = "
           f"{q(r, 6)}. Rounded to two decimals, {q(r)}.")
    return ctx, f"What was the current ratio at the end of {y}?", cot, f"The current ratio was {q(r)}."


def debt_to_equity(rng, co, y):
    debt = amount(rng, 100, 1200)
    equity = amount(rng, 300, 2000)
    ctx = table(f"{co} capital structure (in $ millions)", [("Total debt", [debt]), ("Shareholders' equity", [equity])],
                [y])
    r = debt / equity
    cot = (f"Debt-to-equity = total debt / shareholders' equity = {q(debt, 1)} / {q(equity, 1)} = {q(r, 6)}. "
           f"To two decimals that is {q(r)}.")
    return ctx, f"What was the debt-to-equity ratio in {y}?", cot, f"The debt-to-equity ratio in {y} was {q(r)}."


def expense_change(rng, co, y):
    a, b = amount(rng, 50, 500), amount(rng, 50, 500)
    ctx = table(f"{co} selling, general and administrative expenses (in $ millions)", [("SG&A", [a, b])], [y - 1, y])
    d = b - a
    word = "increased" if d > 0 else "decreased" if d < 0 else "did not change"
    cot = (f"SG&A was {q(a, 1)} million in {y - 1} and {q(b, 1)} million in {y}. The difference is {q(b, 1)} - "
           f"{q(a, 1)} = {q(d, 1)} million, so SG&A {word} by {money(abs(d))}.")
    return ctx, f"By how much did SG&A change from {y - 1} to {y}, in $ millions?", cot, \
        f"SG&A {word} by {money(abs(d))} (a change of {q(d, 1)} million)."


def currency(rng, co, y):
    code, sym = rng.choice(CURRENCIES)
    local = amount(rng, 100, 900) if code != "JPY" else Fraction(rng.randint(10000, 90000))
    rate = Fraction(rng.randint(60, 140), 100) if code != "JPY" else Fraction(rng.randint(60, 95), 10000)
    ctx = (f"{co} reported {y} revenue of {sym}{q(local, 1):,} million from its {code} operations. The average "
           f"exchange rate for {y} was 1 {code} = {q(rate, 4)} USD.")
    usd = local * rate
    cot = (f"To convert to US dollars multiply by the rate: {q(local, 1)} x {q(rate, 4)} = {q(usd, 5)} million USD, "
           f"about {money(usd, 2)}.")
    return ctx, "What was this revenue in US dollars?", cot, f"The revenue was about {money(usd, 2)}."


def eps(rng, co, y):
    ni = amount(rng, 20, 800)
    shares = Fraction(rng.randint(50, 900))
    ctx = (f"In {y}, {co} earned net income of {money(ni)}. The weighted average number of shares outstanding was "
           f"{shares} million.")
    e = ni / shares
    cot = (f"Basic EPS = net income / weighted average shares = {q(ni, 1)} million / {shares} million = {q(e, 6)}. "
           f"In dollars per share that is ${q(e)}.")
    return ctx, f"What was the basic earnings per share in {y}?", cot, f"Basic EPS in {y} was ${q(e)} per share."


def interest(rng, co, y):
    debt = amount(rng, 100, 2000)
    rate = Fraction(rng.randint(150, 950), 10000)
    ctx = (f"At the start of {y} {co} had {money(debt)} of fixed-rate notes outstanding at an annual interest rate "
           f"of {q(rate * 100)}%. No notes were issued or repaid during the year.")
    cost = debt * rate
    cot = (f"Annual interest = principal x rate = {q(debt, 1)} x {q(rate, 4)} = {q(cost, 5)} million, "
           f"so about {money(cost, 2)}.")
    return ctx, f"What was the interest expense on these notes for {y}?", cot, \
        f"The interest expense for {y} was about {money(cost, 2)}."


def roe(rng, co, y):
    ni = amount(rng, 30, 400)
    e0, e1 = amount(rng, 500, 3000), amount(rng, 500, 3000)
    ctx = table(f"{co} (in $ millions)", [("Net income", ["", ni]), ("Shareholders' equity", [e0, e1])], [y - 1, y])
    avg = (e0 + e1) / 2
    r = ni / avg
    cot = (f"Return on equity uses average equity: ({q(e0, 1)} + {q(e1, 1)}) / 2 = {q(avg, 2)} million. Then ROE = "
           f"{q(ni, 1)} / {q(avg, 2)} = {q(r, 6)}, which is {pct(r)}.")
    return ctx, f"What was the return on average equity in {y}?", cot, f"The return on average equity was {pct(r)}."


def net_margin_change(rng, co, y):
    r0, r1 = amount(rng, 300, 1500), amount(rng, 300, 1500)
    n0 = Fraction(round(r0 * Fraction(rng.randint(200, 2500), 10000) * 10), 10)
    n1 = Fraction(round(r1 * Fraction(rng.randint(200, 2500), 10000) * 10), 10)
    ctx = table(f"{co} (in $ millions)", [("Revenue", [r0, r1]), ("Net income", [n0, n1])], [y - 1, y])
    m0, m1 = n0 / r0, n1 / r1
    d = (q(m1 * 100) - q(m0 * 100))
    cot = (f"Net margin = net income / revenue. For {y - 1}: {q(n0, 1)} / {q(r0, 1)} = {q(m0, 6)}, or {pct(m0)}. "
           f"For {y}: {q(n1, 1)} / {q(r1, 1)} = {q(m1, 6)}, or {pct(m1)}. The change is {pct(m1)} - {pct(m0)} = "
           f"{d} percentage points.")
    return ctx, f"By how many percentage points did the net profit margin change from {y - 1} to {y}?", cot, \
        f"The net profit margin changed by {d} percentage points, from {pct(m0)} to {pct(m1)}."


KINDS = [growth, gross_margin, operating_margin, quarterly_total, segment_share, current_ratio, debt_to_equity,
         expense_change, currency, eps, interest, roe, net_margin_change]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=400)
    ap.add_argument("--seed", type=int, default=20250314)
    ap.add_argument("--out", default=str(Path(__file__).with_name("finance_reasoning.jsonl")))
    args = ap.parse_args()
    rng = random.Random(args.seed)
    with open(args.out, "w", encoding="utf-8", newline="\n") as f:
        for i in range(args.count):
            kind = KINDS[i % len(KINDS)]
            ctx, ask, cot, resp = kind(rng, rng.choice(COMPANIES), rng.randint(2016, 2024))
            record = {"Open-ended Verifiable Question": question(ctx, ask), "Complex_CoT": cot, "Response": resp}
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    print(f"wrote {args.count} records to {args.out}")


if __name__ == "__main__":
    main()
