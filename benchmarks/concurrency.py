"""What members side by side can gain on this machine: the ceiling of `train.side_by_side`.

For each quick-preset member, the seconds of `--steps` training steps (forward, backward,
clipping, AdamW; the quick recipe's 16 x 32 batches, state carried) three ways, in one run:
alone on one thread, alone on every thread (on the main thread, as the plain loop runs), and
two copies at once in two threads of one thread each (the slower of the two). Then the
population's ceiling: the members' one-thread times split perfectly over the threads, against
their all-thread times one after another.

    python benchmarks/concurrency.py [--steps 20]
"""

from __future__ import annotations

import argparse
import threading
import time

import torch

from common import batches, env_line, plain_loop, positive_int, quick_config
from multitudes.population.member import Member
from multitudes.runs.device import resolve_device


def trainer(genome, device, data, grad_clip: float):
    """A fresh member and a function that trains a copy of it over `data` with the benchmarks'
    one plain loop (common.plain_loop), returning its seconds."""
    step_all = plain_loop([Member.create("m", genome, device)], data, grad_clip, device)

    def run() -> float:
        start = time.perf_counter()
        step_all()
        return time.perf_counter() - start
    return run


def on_main(run, threads: int) -> float:
    """`run` on this (the main) thread at `threads` intra-op threads: where the plain loop and
    a population stepped one after another run. Not in a spawned Python thread: there a member
    on two intra-op threads ran 1.2-1.8x slower than on the main thread (BENCHMARKS.md), which
    made this benchmark's ceiling read 1.98-2.13x where, read here, it was 1.27x."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        run()  # warm-up
        return run()
    finally:
        torch.set_num_threads(before)


def on_threads(runs, threads: int = 1) -> list[float]:
    """Each of `runs` in its own Python thread at `threads` intra-op threads, all at once."""
    out = [0.0] * len(runs)

    def work(i):
        torch.set_num_threads(threads)
        runs[i]()  # warm-up
        out[i] = runs[i]()
    workers = [threading.Thread(target=work, args=(i,)) for i in range(len(runs))]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=positive_int, default=20)
    args = parser.parse_args()
    device = resolve_device("auto")
    cfg = quick_config()
    data = batches(args.steps, cfg.train.batch_size, cfg.members[0].context,
                   sampling=cfg.train.sampling)
    threads = torch.get_num_threads()
    print(env_line(device))
    print(f"seconds of {args.steps} steps of one member (quick preset, 16 x 32 bytes)")
    print(f"{'family':>7} {'1 thread':>9} {f'{threads} threads':>10} {'2 at once':>10} "
          f"{'slowdown':>9}")
    one, every = [], []
    for g in cfg.members:
        alone = on_threads([trainer(g, device, data, cfg.train.grad_clip)])[0]
        wide = on_main(trainer(g, device, data, cfg.train.grad_clip), threads)
        pair = max(on_threads([trainer(g, device, data, cfg.train.grad_clip) for _ in range(2)]))
        one.append(alone)
        every.append(wide)
        print(f"{g.family:>7} {alone:>9.3f} {wide:>10.3f} {pair:>10.3f} {pair / alone:>8.2f}x")
    ceiling = sum(every) / (sum(one) / threads)
    print(f"population of all {len(one)}: one after another on {threads} threads "
          f"{sum(every):.3f} s; one thread each, split perfectly over {threads} workers "
          f"{sum(one) / threads:.3f} s: side by side can gain at most {ceiling:.2f}x")


if __name__ == "__main__":
    main()
