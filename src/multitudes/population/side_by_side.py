"""Members stepped side by side: one CPU thread each, instead of one after another on all.

At the per-byte recipe's batch shape (16 x 32 bytes) a member's step gained 1.4-1.6x from a
second intra-op thread (one day's reading), while two members on one thread each ran at nearly
twice one's rate: side by side can gain about 1.27x on 2 cores (BENCHMARKS.md, "The population
rows", `benchmarks/concurrency.py`). The members of a step are independent until the consensus
and again after it (and throughout when they hear no one), so the population maps its
per-member work over a pool of worker threads, each running torch ops on one intra-op thread.
PyTorch releases the GIL inside its kernels, and the CPU autograd engine runs a backward pass on
the thread that calls it, so a member's forward, backward and optimizer step all run on one
thread from start to end.

Numbers: a member's arithmetic is the same whichever worker runs it (one thread each), so a
run is reproducible bit for bit. It is not bit-identical to the same run stepped one after
another on several threads, whose reductions split differently (docs/results.md bounds the
difference). Randomness: a member whose forward draws (dropout) draws from its own
generator where its model takes one (the RNNs, `Member.draws`); otherwise (the transformers,
whose attention dropout draws inside the attention kernel) it takes `RNG_LOCK` around its
forward, because its `rng_scope` swaps torch's one global CPU generator. Members that draw
nothing never touch it.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor, wait

import torch

RNG_LOCK = threading.Lock()
_pools: dict[int, ThreadPoolExecutor] = {}  # one pool per width, shared by every population


def workers_for(members: int, device: torch.device, enabled: bool) -> int:
    """Worker threads for stepping `members` members: one per intra-op thread this process may
    use, at most one per member; 1 (one after another) on a GPU, whose kernels queue on one
    stream anyway, or when switched off."""
    if not enabled or torch.device(device).type != "cpu":
        return 1
    return max(1, min(members, torch.get_num_threads()))


def each(fn, items: list, workers: int) -> list:
    """[fn(item) for item in items], on `workers` threads of one intra-op thread each when
    workers > 1; results in the order of `items`, the first worker's exception re-raised."""
    if workers <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    pool = _pools.get(workers)
    if pool is None:
        pool = _pools[workers] = ThreadPoolExecutor(
            workers, thread_name_prefix="member", initializer=torch.set_num_threads,
            initargs=(1,))
    futures = [pool.submit(fn, item) for item in items]
    try:
        return [f.result() for f in futures]
    finally:  # after a failure or Ctrl-C no member is left half-stepped behind our back
        for f in futures:
            f.cancel()
        wait(futures)
