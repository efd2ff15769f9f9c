"""The roof over issue 25's target: how fast could a member's step be on this machine at all?

For each member of the quick preset, the plain PyTorch step (forward, backward, clipping, AdamW;
16 x 32 bytes, state carried) in fp32 and in bf16 autocast, against the roof of that precision:
a 1024 x 1024 matmul timed in the same run. A step's FLOPs are counted by
`torch.utils.flop_counter` where it sees them (the fused LSTM kernel it does not see: there the
genome's 6 x matrix parameters per byte is used, marked *). "at roof" is the step's time if all
its arithmetic ran at the matmul's peak and nothing else cost anything: the most any way of
stepping (side by side, batching, compiling) can gain over this plain loop in that precision.
"matmul share" is the profiler's time in matrix kernels over the step's.

    python benchmarks/ceiling.py [--steps 10] [--repeats 3]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch.profiler import profile, ProfilerActivity
from torch.utils.flop_counter import FlopCounterMode

from common import (batches, best_time, env_line, matmul_peak, plain_loop, positive_int,
                    quick_genomes)
from multitudes.population.member import Member

MATRIX_KERNELS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm",
                  "aten::mkldnn_rnn_layer", "aten::mkldnn_rnn_layer_backward")


def counted_flops(member: Member, batch) -> tuple[float, bool]:
    """FLOPs of one forward + backward; the genome's estimate where the counter sees < half."""
    model = member.model  # never trained here: the timed runs step copies of it
    with FlopCounterMode(display=False) as counter:
        logits = model(batch[:, :-1])
        F.cross_entropy(logits.reshape(-1, 256), batch[:, 1:].reshape(-1)).backward()
    model.zero_grad(set_to_none=True)
    estimate = member.genome.flops_per_byte * batch[:, 1:].numel()
    seen = counter.get_total_flops()
    return (seen, False) if seen >= estimate / 2 else (estimate, True)


def matrix_share(run) -> float:
    """Share of the profiled run's time spent in matrix kernels."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    rows = prof.key_averages()
    total = sum(r.self_cpu_time_total for r in rows)
    return sum(r.self_cpu_time_total for r in rows if r.key in MATRIX_KERNELS) / total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=positive_int, default=10)
    parser.add_argument("--repeats", type=positive_int, default=3)
    args = parser.parse_args()
    device = torch.device("cpu")
    print(env_line(device))
    peaks = {"fp32": matmul_peak(device), "bf16": matmul_peak(device, dtype=torch.bfloat16)}
    print(f"matmul peak measured now: fp32 {peaks['fp32'] / 1e9:.1f} GFLOP/s, "
          f"bf16 {peaks['bf16'] / 1e9:.1f} GFLOP/s")
    genomes = quick_genomes()
    data = batches(args.steps, 16, genomes[0].context)
    nbytes = args.steps * data[0][0][:, 1:].numel()
    print(f"{'family':>7} {'prec':>5} {'B/s':>8} {'GFLOP/s':>8} {'of roof':>8} "
          f"{'at roof':>8} {'matmul share':>13}")
    totals = {p: [0.0, 0.0, 0.0] for p in peaks}  # seconds, seconds at roof, FLOPs
    fastest = dict(peaks)  # the roof raised to any step that ran above it (the fused LSTM)
    for g in genomes:
        member = Member.create("m", g, device)
        for precision in peaks:
            run = plain_loop([member], data, 1.0, device, bf16=precision == "bf16")
            flops, estimated = counted_flops(member, data[0][0])
            flops *= args.steps
            run()  # warm-up
            seconds = best_time(run, args.repeats)
            at_roof = flops / peaks[precision]
            totals[precision][0] += seconds
            totals[precision][1] += at_roof
            totals[precision][2] += flops
            fastest[precision] = max(fastest[precision], flops / seconds)
            print(f"{g.family:>7} {precision:>5} {nbytes / seconds:>8,.0f} "
                  f"{flops / seconds / 1e9:>7.1f}{'*' if estimated else ' '} "
                  f"{flops / seconds / peaks[precision]:>8.0%} {seconds / at_roof:>7.2f}x "
                  f"{matrix_share(run):>13.0%}", flush=True)
    fp32, bf16 = totals["fp32"], totals["bf16"]
    print(f"the population stepped one after another by the plain loop, fp32: "
          f"{fp32[0]:.3f} s; at the fp32 roof {fp32[1]:.3f} s (at most {fp32[0] / fp32[1]:.2f}x); "
          f"plain bf16 {bf16[0]:.3f} s ({fp32[0] / bf16[0]:.2f}x); at the bf16 roof "
          f"{bf16[1]:.3f} s (at most {fp32[0] / bf16[1]:.2f}x)")
    print(f"with the fastest fp32 rate any step reached as the roof "
          f"({fastest['fp32'] / 1e9:.1f} GFLOP/s): at most "
          f"{fp32[0] / (fp32[2] / fastest['fp32']):.2f}x in fp32")


if __name__ == "__main__":
    main()
