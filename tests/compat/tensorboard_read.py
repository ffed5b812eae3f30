#!/usr/bin/env python3
"""Reads an event file written by qlora's tensorboard::EventWriter with TensorBoard's own reader.

Usage: python3 tests/compat/tensorboard_read.py <log_dir> <tag> <v1> <v2> ...
Checks that TensorBoard's EventAccumulator lists <tag> with exactly those values at steps 1, 2, ... and exits 0;
exits 77 (CTest: skipped) when the tensorboard package is not installed.
"""
import sys

try:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
except ImportError:
    print("tensorboard is not installed (pip install tensorboard): skipping")
    sys.exit(77)


def main():
    log_dir, tag, *values = sys.argv[1:]
    acc = EventAccumulator(log_dir)
    acc.Reload()
    tags = acc.Tags()["scalars"]
    if tag not in tags:
        print(f"tag {tag!r} not found; TensorBoard lists {tags}")
        return 1
    events = acc.Scalars(tag)
    got = [(e.step, round(e.value, 6)) for e in events]
    want = [(i + 1, round(float(v), 6)) for i, v in enumerate(values)]
    if got != want:
        print(f"TensorBoard read {got}, expected {want}")
        return 1
    print(f"TensorBoard reads {tag}: {got}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
