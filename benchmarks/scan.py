"""The ssm's chunked scan against the recurrence written as a loop, and the ssm against the gpt.

Two ratios measured in one run, best of `--repeats`, forward and backward of what a training
step computes:

1. `models/ssm.py`'s `linear_scan` (chunks of CHUNK bytes in closed form; `--chunks` times
   other sizes) against the same recurrence one byte at a time in a Python loop, on (B, T, D)
   at the quick preset's training shape (`--context 128`: a longer window): what the chunk size
   costs, and where the parallel form pays.
2. A training step (forward, backward, AdamW) of an ssm member against a gpt member of the same
   shape (the quick preset's gpt: the same matmul FLOPs per byte), bytes per second each.

    OMP_NUM_THREADS=1 python benchmarks/scan.py [--batch 16] [--context 32] [--width 128]
        [--chunks 2,4,8,16] [--steps 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from common import positive_int, quick_genomes
from multitudes.models import build
from multitudes.models.ssm import CHUNK, linear_scan
from multitudes.population.schedule import make_optimizer, set_lr


def loop_scan(log_a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    h, out = h0, []
    for t in range(b.shape[1]):
        h = log_a[:, t].exp() * h + b[:, t]
        out.append(h)
    return torch.stack(out, 1)


def best_seconds(fn, steps: int, repeats: int) -> float:
    fn()  # warm-up: allocations, the first kernels
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            fn()
        best = min(best, (time.perf_counter() - start) / steps)
    return best


def scan_seconds(B: int, T: int, D: int, chunks: list[int], steps: int, repeats: int
                 ) -> tuple[dict[int, float], float]:
    g = torch.Generator().manual_seed(0)
    log_a = (-torch.rand(B, T, D, generator=g)).requires_grad_()
    b = torch.randn(B, T, D, generator=g).requires_grad_()
    h0 = torch.zeros(B, D)

    def step(scan):
        def run():
            log_a.grad = b.grad = None
            out = scan(log_a, b, h0)
            (out[0] if isinstance(out, tuple) else out).sum().backward()
        return run
    return ({c: best_seconds(step(lambda la, bb, h, c=c: linear_scan(la, bb, h, c)), steps,
                             repeats) for c in chunks},
            best_seconds(step(loop_scan), steps, repeats))


def step_seconds(genome, B: int, steps: int, repeats: int) -> float:
    torch.manual_seed(0)
    model = build(genome)
    optimizer = make_optimizer(model, genome)
    set_lr(optimizer, genome.lr)
    x = torch.randint(256, (B, genome.context + 1), generator=torch.Generator().manual_seed(1))

    def run():
        logits = model(x[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, 256), x[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return best_seconds(run, steps, repeats)


def chunk_sizes(text: str) -> list[int]:
    """An argparse type: comma-separated whole numbers >= 1."""
    return [positive_int(v) for v in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=positive_int, default=16)
    parser.add_argument("--context", type=positive_int, default=32)
    parser.add_argument("--width", type=positive_int, default=128)
    parser.add_argument("--chunks", type=chunk_sizes, default=[2, 4, 8, 16],
                        help="chunk sizes of the closed-form scan to time, e.g. 4,16")
    parser.add_argument("--steps", type=positive_int, default=20)
    parser.add_argument("--repeats", type=positive_int, default=3)
    args = parser.parse_args()
    B, T, D = args.batch, args.context, args.width
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}; best of "
          f"{args.repeats} x {args.steps} steps, forward and backward")
    chunked, looped = scan_seconds(B, T, D, args.chunks, args.steps, args.repeats)
    print(f"scan (B={B}, T={T}, D={D}): a loop over bytes {looped * 1e3:.3f} ms")
    for c, seconds in chunked.items():
        mark = "  (the model's)" if c == CHUNK else ""
        print(f"  chunks of {c:>3}: {seconds * 1e3:8.3f} ms, {looped / seconds:.2f}x the loop's "
              f"speed{mark}")
    gpt = next(g for g in quick_genomes() if g.family == "gpt").replace(context=T)
    ssm = gpt.replace(family="ssm")
    seconds = {g.family: step_seconds(g, B, args.steps, args.repeats) for g in (gpt, ssm)}
    rates = {f: B * T / s for f, s in seconds.items()}
    print(f"training step, the quick gpt's shape (d{gpt.d_model}, {gpt.n_layer} layers, d_ff "
          f"{gpt.d_ff}): gpt {rates['gpt']:,.0f} B/s, ssm {rates['ssm']:,.0f} B/s: the ssm at "
          f"{rates['ssm'] / rates['gpt']:.2f}x the gpt's rate (FLOPs per byte "
          f"{ssm.flops_per_byte / gpt.flops_per_byte:.2f}x)")


if __name__ == "__main__":
    main()
