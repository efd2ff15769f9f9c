"""Scale-out: the quick population's social step on 1 and 2 ranks (torchrun, gloo on CPU).

Every configuration runs under `torchrun --standalone` with the same total number of threads
(1 rank x all cores, or N ranks x cores/N), on the same batches, with the same members; the
reference is the 1-rank run of the same population, measured in the same invocation. For each
run rank 0 prints the time per step, the share of it spent in collectives (the thoughts'
all-gather, including the wait for a slower rank), and the bytes each rank sent per step.

    python benchmarks/scaling.py [--steps 12] [--ranks 1 2] [--thoughts float32 bfloat16 topk]

Bytes moved per step, per rank (all-gather: each rank receives every other rank's thoughts):
    received ~ (K - K/N) * B * T * c,   c = 4V (float32), 2V (bfloat16), 5k (topk: a float32
    value and a one-byte index per kept byte)
so the cost grows linearly with the members K, the batch B x T and the vocabulary V (or k).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import batches, env_line, positive_int, quick_config, quick_genomes  # noqa: E402
from multitudes.runs import distributed  # noqa: E402
from multitudes.config.schema import SocialConfig  # noqa: E402
from multitudes.population.member import Member  # noqa: E402
from multitudes.population.population import Population  # noqa: E402
from multitudes.runs.device import resolve_device  # noqa: E402


def worker(steps: int, thoughts: str, top_k: int) -> None:
    """One rank of a timed run (started by torchrun); rank 0 prints a JSON line."""
    # gloo on the CPU, as the docstring says, on a GPU machine too (its ranks would otherwise
    # ask for one GPU each)
    group = distributed.connect(thoughts, top_k, timeout=120, device="cpu")
    device = resolve_device("cpu")
    genomes = quick_genomes()
    owners = distributed.assign([g.flops_per_byte for g in genomes], group.world)
    members = [Member.create(f"m{i}", g, device, rank, build=rank == group.rank)
               for i, (g, rank) in enumerate(zip(genomes, owners))]
    train = quick_config().train
    pop = Population(members, SocialConfig(channel="logit"), train, 10**6, device, group=group)
    data = batches(steps + 2, train.batch_size, genomes[0].context, sampling=train.sampling)
    for b in data[:2]:  # warm up
        pop.step(*b)
    group.barrier()
    group.comm_seconds, group.comm_bytes = 0.0, 0
    start = time.perf_counter()
    for b in data[2:]:
        pop.step(*b)
    group.barrier()
    wall = time.perf_counter() - start
    shares = group.gather(group.comm_seconds / wall)
    sent = group.gather(group.comm_bytes / steps)
    if group.main:
        print(json.dumps({"ranks": group.world, "thoughts": thoughts, "ms_per_step":
                          1000 * wall / steps, "comm_share": sum(shares) / len(shares),
                          "bytes_sent_per_step": max(sent), "threads": torch.get_num_threads(),
                          "env": env_line(device)}))
    distributed.disconnect()


def launch(ranks: int, steps: int, thoughts: str, top_k: int) -> dict:
    threads = max(1, (os.cpu_count() or 1) // ranks)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={ranks}", __file__, "--worker", "--steps", str(steps),
           "--thoughts", thoughts, "--top-k", str(top_k)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        sys.exit(f"scaling: the {ranks}-rank run failed:\n{out.stderr[-2000:]}")
    return json.loads(next(line for line in out.stdout.splitlines() if line.startswith("{")))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=positive_int, default=12)
    parser.add_argument("--ranks", type=positive_int, nargs="+", default=[1, 2])
    parser.add_argument("--thoughts", nargs="+", default=["float32", "bfloat16", "topk"])
    parser.add_argument("--top-k", type=positive_int, default=32)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.steps, args.thoughts[0], args.top_k)
        return
    runs = [launch(1, args.steps, "float32", args.top_k)]
    runs += [launch(n, args.steps, t, args.top_k) for n in args.ranks if n > 1
             for t in args.thoughts]
    print(runs[0]["env"])
    genomes, train = quick_genomes(), quick_config().train
    print(f"quick population (K={len(genomes)}, B={train.batch_size}, T={genomes[0].context}, "
          f"V=256), {args.steps} timed steps, {os.cpu_count()} cores shared by the ranks")
    base = runs[0]["ms_per_step"]
    print(f"{'ranks':>5} {'thoughts':>9} {'threads':>7} {'ms/step':>8} {'speed-up':>8} "
          f"{'comm share':>10} {'MB sent/step':>12}")
    for r in runs:
        print(f"{r['ranks']:>5} {r['thoughts']:>9} {r['threads']:>7} {r['ms_per_step']:>8.1f} "
              f"{base / r['ms_per_step']:>8.2f} {r['comm_share']:>10.1%} "
              f"{r['bytes_sent_per_step'] / 1e6:>12.2f}")


if __name__ == "__main__":
    main()
