"""Coding throughput: how fast `compress` codes, and how much of that time is the entropy coder.

For each member of a finished run (and the consensus of its arm), the first N bytes of the
sample's test split are coded offline; the same stepping of the models is then timed without any
coding (the reference: the model's own forward passes, measured in the same run). The entropy
coder's share is what coding adds to the models' time.

    python benchmarks/coding.py --run runs/compare-quick --bytes 65536
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from common import env_line, positive_int, refuse
from multitudes.coding import range_coder as coding
from multitudes.coding.archive import members_of, steppers
from multitudes.data.corpora import resolve
from multitudes.data.splits import load_splits
from multitudes.errors import UserError


def models_only(data: bytes, paths, lanes: int) -> float:
    """The same calls to the models as `coding.encode`, with no coding."""
    m, used = coding.lane_layout(len(data), lanes)
    grid = np.zeros((used, m), dtype=np.uint8)
    grid.reshape(-1)[:len(data)] = np.frombuffer(data, dtype=np.uint8)
    run = steppers(paths, torch.device("cpu"))
    start = time.perf_counter()
    for j in range(1, m):
        coding.mixture(run, torch.from_numpy(grid[:, j - 1].copy()))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, type=Path)
    parser.add_argument("--arm", default="social")
    parser.add_argument("--bytes", type=positive_int, default=65536)
    parser.add_argument("--lanes", type=positive_int, default=64)
    args = parser.parse_args()
    try:  # a run that is not there, or has no such arm: one line, before any work
        everyone = members_of(args.run, args.arm, None)
    except UserError as e:
        refuse(str(e))
    data = bytes(load_splits(resolve("sample"))["test"][:args.bytes])
    print(env_line(torch.device("cpu")))
    print(f"{len(data):,} bytes of the sample's test split, {args.lanes} lanes")
    print(f"{'coder':>16} {'bpb':>7} {'B/s':>9} {'models B/s':>11} {'coder share':>11}")
    for name, paths in [(p.name, [p]) for p in everyone] + [("consensus", everyone)]:
        start = time.perf_counter()
        words, bits = coding.encode(data, steppers(paths, torch.device("cpu")), args.lanes,
                                    False)
        total = time.perf_counter() - start
        reference = models_only(data, paths, args.lanes)
        print(f"{name:>16} {8 * words.nbytes / len(data):7.4f} {len(data) / total:9,.0f} "
              f"{len(data) / reference:11,.0f} {max(0.0, 1 - reference / total):11.1%}")


if __name__ == "__main__":
    main()
