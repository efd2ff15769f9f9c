"""Scoring throughput: the quick population scored one member after another on every thread,
against the same members scored side by side (one thread each, as `Population.each_owned`
does by default on a CPU), timed alternately in one run, best of several repeats.

Scoring is a run's second cost after the training steps (`timings.json` of the README's main
job: the dev slice every `eval_every` steps, valid and test at every milestone). The members
are the quick preset's, freshly built: the arithmetic of scoring does not depend on what the
weights have learnt. Both ways must give the same bytes' log2 probabilities, bit for bit; the
benchmark checks that too.

    python benchmarks/scoring.py [--bytes 32768] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from common import env_line, positive_int, quick_config, refuse
from multitudes.data.corpora import resolve
from multitudes.data.splits import load_splits
from multitudes.evaluation.bpb import byte_log2probs
from multitudes.population import side_by_side
from multitudes.population.member import Member
from multitudes.runs.device import resolve_device


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bytes", type=positive_int, default=32768,
                        help="bytes of the valid split to score (default: the dev slice's 32 KiB)")
    parser.add_argument("--repeats", type=positive_int, default=3)
    args = parser.parse_args()
    device = resolve_device("auto")
    cfg = quick_config()
    data = load_splits(resolve(cfg.data.corpus))["valid"][: args.bytes]
    if len(data) < 2 * cfg.context:
        refuse(f"--bytes {args.bytes}: too few to score with a context of {cfg.context}")
    members = [Member.create(f"m{i}", g, device) for i, g in enumerate(cfg.members)]
    carry = cfg.train.sampling == "contiguous"

    def score(m: Member) -> np.ndarray:
        return byte_log2probs(m.model, data, cfg.context, device=device, carry_state=carry)

    workers = side_by_side.workers_for(len(members), device, True)
    ways = {"one after another": lambda: [score(m) for m in members],
            f"side by side ({workers} workers)": lambda: side_by_side.each(score, members,
                                                                            workers)}
    outputs = {how: way() for how, way in ways.items()}  # warm-up, and the numbers to compare
    same = all(np.array_equal(a, b) for a, b in zip(*outputs.values()))
    times = {how: [] for how in ways}
    for _ in range(args.repeats):  # alternately, so that drift hits both alike
        for how, way in ways.items():
            start = time.perf_counter()
            way()
            times[how].append(time.perf_counter() - start)
    print(env_line(device))
    print(f"the quick population (K = {len(members)}) scoring {len(data):,} bytes of valid, "
          f"best of {args.repeats}")
    reference = min(times["one after another"])
    print(f"{'how':>28} {'seconds':>8} {'B/s':>9} {'speed-up':>8}")
    for how, ts in times.items():
        print(f"{how:>28} {min(ts):>8.2f} {len(members) * len(data) / min(ts):>9,.0f} "
              f"{reference / min(ts):>8.2f}x")
    print(f"log2 probabilities identical both ways: {same}")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
