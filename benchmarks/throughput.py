"""Training throughput of each family: multitudes' step against a plain PyTorch loop.

Both sides train the same model (quick preset sizes) on the same batches with the same AdamW and
gradient clipping; they are timed alternately in one run, best of several repeats. Prints bytes/s,
the ratio (target >= 0.95), and the achieved FLOP/s against a matmul peak measured in this run.

    python benchmarks/throughput.py [--steps 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import copy

import torch
import torch.nn.functional as F

from common import (batches, best_time, env_line, matmul_peak, quick_config,
                    quick_genomes)
from multitudes.config.schema import SocialConfig
from multitudes.population.member import Member
from multitudes.population.population import Population
from multitudes.population.schedule import make_optimizer, set_lr
from multitudes.runs.distributed import resolve_device


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = resolve_device("auto")
    train = quick_config().train  # the recipe's batch shape, lanes and carried state
    data = batches(args.steps, train.batch_size, quick_genomes()[0].context,
                   sampling=train.sampling)
    peak = matmul_peak(device)
    print(env_line(device))
    print(f"matmul peak measured now: {peak / 1e9:.1f} GFLOP/s")
    print(f"{'family':>7} {'params':>9} {'plain B/s':>10} {'ours B/s':>10} {'ratio':>6} "
          f"{'achieved':>9} {'of peak':>7}")
    for genome in quick_genomes():
        member = Member.create("m", genome, device)
        pop = Population([member], SocialConfig(channel="none"), train, 10**6, device)
        plain_model = copy.deepcopy(member.model)
        plain_opt = make_optimizer(plain_model, genome)
        set_lr(plain_opt, genome.lr)

        def ours():
            for b, continues in data:
                pop.step(b, continues)

        def plain():
            state = None
            for b, continues in data:
                b = b.to(device)
                if member.stateful:  # truncated BPTT, as the population does
                    logits, state = plain_model.decode(b[:, :-1], state if continues else None)
                    state = tuple(s.detach() for s in state) if isinstance(state, tuple) \
                        else state.detach()
                else:
                    logits = plain_model(b[:, :-1])
                loss = F.cross_entropy(logits.reshape(-1, 256), b[:, 1:].reshape(-1))
                plain_opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(plain_model.parameters(), train.grad_clip)
                plain_opt.step()

        ours(), plain()  # warm up both
        t_ours, t_plain = [], []
        for _ in range(args.repeats):  # alternate, so drift hits both alike
            t_plain.append(best_time(plain, 1))
            t_ours.append(best_time(ours, 1))
        nbytes = args.steps * data[0][0][:, 1:].numel()
        ours_bps, plain_bps = nbytes / min(t_ours), nbytes / min(t_plain)
        achieved = ours_bps * genome.flops_per_byte
        print(f"{genome.family:>7} {genome.n_params:>9,} {plain_bps:>10,.0f} {ours_bps:>10,.0f} "
              f"{ours_bps / plain_bps:>6.3f} {achieved / 1e9:>7.2f}G {achieved / peak:>7.1%}")


if __name__ == "__main__":
    main()
