"""Training throughput of each family: multitudes' step against a plain PyTorch loop.

Both sides train the same model (quick preset sizes) on the same batches with the same AdamW and
gradient clipping; they are timed alternately in one run, best of several repeats. Prints bytes/s,
the ratio (target >= 0.95), and the achieved FLOP/s against a matmul peak measured in this run.

The population rows: the quick population (K = 4, its logit channel and trust by fitness) and
two K = 8 cells of the scaling studies, every member's bytes per second of one
`Population.step` against the same members stepped one after another by the plain loop (no
channel), for each way the population can step: one after another, side by side (one thread
per member, the default on a CPU), side by side with the channel closed (the isolated arm,
whose members each read and learn in one task), side by side in bf16 autocast
(`train.precision`), and with `--compile` side by side compiled (`train.compile`; its
compilation, about a minute per member on a CPU, is in the warm-up, not in the timing). Target (issue 25): >= 2x on 2 cores. On a GPU the plain loop runs
in bf16 autocast as `auto` does there, every timing waits for the GPU's queue, and the rows are
one after another (one stream), one CUDA stream per member (`side_by_side` there), with the
channel closed (and compiled, with `--compile`).

    python benchmarks/throughput.py [--steps 20] [--repeats 3]
    python benchmarks/throughput.py --only limited   # one population's rows, no family table
    python benchmarks/throughput.py --only quick --compile   # with the compiled row
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import torch

from common import (batches, best_time, env_line, matmul_peak, plain_loop, positive_int,
                    quick_config, quick_genomes)
from multitudes.config.schema import SocialConfig
from multitudes.population.member import Member
from multitudes.population.population import Population
from multitudes.runs.device import resolve_device, uses_bf16
from multitudes.study import plan


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=positive_int, default=20)
    parser.add_argument("--repeats", type=positive_int, default=3)
    parser.add_argument("--only", metavar="TEXT", default=None,
                        help="only the populations whose name contains TEXT, without the "
                        "per-family table")
    parser.add_argument("--compile", action="store_true",
                        help="add the row of the population compiled (train.compile)")
    args = parser.parse_args()
    chosen = [(name, cfg) for name, cfg in populations()
              if args.only is None or args.only in name]
    if not chosen:
        parser.error(f"--only {args.only!r}: no population's name contains it (names: "
                     f"{', '.join(name for name, _ in populations())})")
    device = resolve_device("auto")
    peak = matmul_peak(device)
    print(env_line(device))
    print(f"matmul peak measured now: {peak / 1e9:.1f} GFLOP/s")
    if args.only is None:  # the per-family table
        train = quick_config().train  # the recipe's batch shape, lanes and carried state
        data = batches(args.steps, train.batch_size, quick_genomes()[0].context,
                       sampling=train.sampling)
        print(f"{'family':>7} {'params':>9} {'plain B/s':>10} {'ours B/s':>10} {'ratio':>6} "
              f"{'achieved':>9} {'of peak':>7}")
        nbytes = args.steps * data[0][0][:, 1:].numel()
        for genome in quick_genomes():
            member = Member.create("m", genome, device)
            pop = Population([member], SocialConfig(channel="none"), train, 10**6, device)
            plain = plain_loop([member], data, train.grad_clip, device, uses_bf16(device))
            ours_bps, plain_bps = (nbytes / t for t in timed(pop_loop(pop, data), plain,
                                                              args.repeats))
            achieved = ours_bps * genome.flops_per_byte
            print(f"{genome.family:>7} {genome.n_params:>9,} {plain_bps:>10,.0f} "
                  f"{ours_bps:>10,.0f} {ours_bps / plain_bps:>6.3f} {achieved / 1e9:>7.2f}G "
                  f"{achieved / peak:>7.1%}")
        print()
    print("populations: every member's bytes/s of one step (K x the batch), against the same")
    print("members stepped one after another by the plain loop (no channel), alternately timed")
    print(f"{'population':>26} {'K':>2} {'plain B/s':>10} {'ours B/s':>10} {'ratio':>6}   "
          f"how ours steps")
    if device.type != "cpu":
        print(f"(on {device.type} the members step one after another, one stream, and `auto` "
              f"is bf16 already: the side-by-side and bf16 rows would repeat the first)")
    for name, cfg in chosen:
        population_rows(name, cfg, device, args.steps, args.repeats, args.compile)


def populations():
    """The quick preset (K = 4, four families) and two K = 8 cells of the scaling studies: the
    stream study's transformer mix (no dropout) and the data-limited study's GRUs (dropout 0.1,
    drawn from each member's own generator side by side)."""
    yield "quick (hetero)", quick_config()
    for study, cell in (("cpu", "transformer-M-K8-logit-s1"), ("limited", "gru-M-K8-logit-s1")):
        doc = plan.load(study, None)
        yield f"{study}: {cell[:-9]}", next(c.cfg for c in plan.cells(doc) if c.name == cell)


def population_rows(name: str, cfg, device, steps: int, repeats: int, compiled: bool = False
                    ) -> None:
    """One row per way of stepping the population (`ways_to_step`), each against the plain
    loop timed beside it."""
    train = cfg.train
    data = batches(steps, train.batch_size, cfg.members[0].context, sampling=train.sampling)
    k = len(cfg.members)
    nbytes = k * steps * data[0][0][:, 1:].numel()
    for how, switches, social in ways_to_step(cfg.social, device, compiled):
        members = [Member.create(f"m{i}", g, device) for i, g in enumerate(cfg.members)]
        pop = Population(members, social, replace(train, **switches), 10**6, device)
        plain = plain_loop(members, data, train.grad_clip, device, uses_bf16(device))
        ours_bps, plain_bps = (nbytes / t for t in timed(pop_loop(pop, data), plain, repeats))
        print(f"{name:>26} {k:>2} {plain_bps:>10,.0f} {ours_bps:>10,.0f} "
              f"{ours_bps / plain_bps:>6.3f}   {how}", flush=True)


def ways_to_step(social: SocialConfig, device, compiled: bool = False
                 ) -> list[tuple[str, dict, SocialConfig]]:
    """(how, train switches, social config) of each row. The plain loop beside every row runs in
    the precision `auto` gives the device (fp32 on the CPU, so the CPU's bf16 row measures what
    bf16 buys; bf16 on CUDA, where a bf16 row would repeat the others)."""
    closed = SocialConfig(channel="none")  # the isolated arm: a member's step is one task
    if torch.device(device).type == "cpu":
        ways = [("one after another", dict(side_by_side=False), social),
                ("side by side", dict(side_by_side=True), social),
                ("side by side, channel closed", dict(side_by_side=True), closed),
                ("side by side, bf16", dict(side_by_side=True, precision="bf16"), social)]
    else:
        ways = [("one stream", dict(side_by_side=False), social),
                ("a stream per member", dict(side_by_side=True), social),
                ("a stream per member, channel closed", dict(side_by_side=True), closed)]
    return ways + [(f"{ways[1][0]}, compiled", dict(side_by_side=True, compile=True), social)
                   ] * compiled


def pop_loop(pop: Population, data):
    def ours():
        for b, continues in data:
            pop.step(b, continues)
    return ours


def timed(ours, plain, repeats: int) -> tuple[float, float]:
    """Best seconds of each, timed alternately so that drift hits both alike."""
    ours(), plain()  # warm up both
    t_ours, t_plain = [], []
    for _ in range(repeats):
        t_plain.append(best_time(plain, 1))
        t_ours.append(best_time(ours, 1))
    return min(t_ours), min(t_plain)


if __name__ == "__main__":
    main()
