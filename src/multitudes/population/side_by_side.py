"""Members stepped side by side: one CPU thread each, instead of one after another on all; on a
GPU, one CUDA stream each (`on_streams`).

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
    use, at most one per member; 1 on a GPU (one Python thread queues every member's kernels,
    each on its own stream: `on_streams`), or when switched off."""
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


def on_streams(fn, items: list, streams: list, inputs: tuple = ()) -> list:
    """[fn(item) for item in items] on a GPU, item k's kernels queued on `streams[k]`, so that
    the members' small kernels run beside each other instead of one member's after another's
    (a member's step launches hundreds of kernels that each fill a fraction of an H100).

    One Python thread queues them all (no host wait in a member's step: population.py reads its
    values back once, after). Each stream first waits for what the current stream has queued
    (the batch, the consensus); the current stream then waits for every one of them, so what
    follows reads finished results. `inputs` (tensors made on the current stream that the
    members read) are marked as used on each stream, so their memory is not handed out again
    while a member may still read it. A member's arithmetic is the same on any stream.
    """
    current = torch.cuda.current_stream()
    out = []
    for item, stream in zip(items, streams):
        stream.wait_stream(current)
        for t in inputs:
            t.record_stream(stream)
        with torch.cuda.stream(stream):
            out.append(fn(item))
    for stream in streams:
        current.wait_stream(stream)
    return out
