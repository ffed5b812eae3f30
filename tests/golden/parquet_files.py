#!/usr/bin/env python3
"""Small Parquet data sets written by pyarrow (as Hugging Face datasets writes its shards), for tests/data/parquet.cpp.

Each <name>.parquet has a <name>.jsonl beside it: the same rows as pyarrow reads them back (Table.to_pylist()), one
JSON object a line; qlora's Parquet reader must give exactly those records.

Run:  pip install pyarrow && python3 tests/golden/parquet_files.py
"""
import datetime
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq

OUT = os.path.join(os.path.dirname(__file__), "..", "data", "parquet")


def write(name, table, expected=True, **options):
    pq.write_table(table, os.path.join(OUT, name + ".parquet"), **options)
    if not expected:
        print(f"wrote {name}.parquet: {table.num_rows} rows")
        return
    rows = pq.read_table(os.path.join(OUT, name + ".parquet")).to_pylist()
    with open(os.path.join(OUT, name + ".jsonl"), "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    print(f"wrote {name}.parquet: {table.num_rows} rows, {table.schema}")


def main():
    os.makedirs(OUT, exist_ok=True)
    # Alpaca, in two row groups of 2 rows (snappy, the default), one input missing (null), non-ASCII text.
    write("alpaca", pa.table({
        "instruction": ["What is 15% of 240?", "Convert 1,000 € to dollars at 1.08.", "Name the ratio.",
                        "Summarise: revenue grew 8%."],
        "input": ["", "rate: 1.08", None, "Q3 report"],
        "output": ["36", "1,080 $", "The current ratio.", "Revenue rose 8% — 日本語 ok."],
    }), row_group_size=2)
    # ShareGPT: conversations = list<struct<from, value>>, plus an id; zstd-compressed.
    write("sharegpt", pa.table({
        "id": ["a1", "a2"],
        "conversations": [
            [{"from": "human", "value": "What is EBITDA?"}, {"from": "gpt", "value": "Earnings before interest…"}],
            [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "2+2?"},
             {"from": "gpt", "value": "4"}],
        ],
    }), compression="zstd")
    # OpenAI messages: list<struct<role, content>>.
    write("messages", pa.table({
        "messages": [
            [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
        ],
    }))
    # Every other kind of column: integers, floats, booleans, nulls, a dictionary (categorical) column, a date,
    # a list of integers, a struct, a map.
    write("types", pa.table({
        "text": pa.array(["x", "y", "z"]),
        "large_text": pa.array(["l1", "l2", None], type=pa.large_string()),
        "i8": pa.array([1, -2, None], type=pa.int8()),
        "u64": pa.array([0, 18446744073709551615, 7], type=pa.uint64()),
        "f32": pa.array([0.5, -1.25, None], type=pa.float32()),
        "f64": pa.array([3.141592653589793, 1e-300, 2.0]),
        "flag": pa.array([True, False, None]),
        "label": pa.array(["buy", "sell", "buy"]).dictionary_encode(),
        "day": pa.array([datetime.date(2024, 1, 31), None, datetime.date(1999, 12, 31)]),
        "scores": pa.array([[1, 2], [], None], type=pa.list_(pa.int32())),
        "meta": pa.array([{"k": 1, "s": "a"}, {"k": None, "s": "b"}, None],
                         type=pa.struct([("k", pa.int64()), ("s", pa.string())])),
    }))
    # A bytes column (not text): refused with the row and column.
    write("binary", pa.table({"text": ["ok"], "blob": pa.array([b"\x00\xff"], type=pa.binary())}), expected=False)
    # No rows.
    write("empty", pa.table({"text": pa.array([], type=pa.string())}), expected=False)


if __name__ == "__main__":
    main()
