"""The GPU recipe on paper: what one population step of a preset costs on a GPU, and why the
RNNs' lanes decide it. Arithmetic, not a measurement (no GPU has run this project yet): each
assumption is an option and is printed with the result, and benchmarks/device_check.sh measures
what this predicts the day a GPU is at hand.

    python benchmarks/gpu_recipe.py                                  # the enwik8 preset
    python benchmarks/gpu_recipe.py --shape 64x512 --shape 512x128 --shape 1024x64

Per member and shape (lanes B x context T, B*T bytes a step): its training FLOPs per step
(Genome.flops_per_byte: 3 x (2 x matmul params + attention) per byte), the time those take at the
assumed utilisation of the rated peak, and for an RNN the floor its recurrence sets whatever
the FLOPs: T timesteps one after another, per layer, forward and backward (about 3 passes),
each at least a kernel's latency. A step's time is the larger of the two, summed over the
members (they step one after another on one stream), and the population's MFU is its FLOPs
over that time at the rated peak.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
from multitudes.config import files as config_files  # noqa: E402
from multitudes.config.genome import Genome  # noqa: E402
from multitudes.errors import UserError  # noqa: E402

H100_BF16 = 989e12  # dense bf16 FLOP/s of an H100 SXM, as rated


def shape(text: str) -> tuple[int, int]:
    try:
        lanes, context = (int(x) for x in text.lower().split("x"))
    except ValueError:
        lanes = context = 0
    if lanes < 1 or context < 1:
        raise argparse.ArgumentTypeError(f"expected LANESxCONTEXT, e.g. 512x128, got {text!r}")
    return lanes, context


def fraction(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1], got {text!r}")
    return value


def positive(text: str) -> float:
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def member_ms(g: Genome, lanes: int, context: int, peak: float, mfu: float,
              latency_us: float) -> tuple[float, float, float]:
    """(FLOPs per step, ms at the assumed MFU, ms of the recurrence's latency floor)."""
    flops = g.replace(context=context).flops_per_byte * lanes * context  # attention: its T
    compute = 1e3 * flops / (peak * mfu)
    floor = 0.0
    if g.family in ("lstm", "gru"):
        floor = 1e3 * context * g.n_layer * 3 * latency_us * 1e-6
    return flops, compute, floor


def table(members: list[Genome], shapes: list[tuple[int, int]], peak: float, mfu: float,
          latency_us: float, real_bytes: int) -> str:
    lines = [f"assumed: peak {peak:.3g} FLOP/s, {mfu:.0%} of it on the matmuls, "
             f"{latency_us:g} us a recurrent timestep's kernels (per layer and pass)", "",
             "| shape (lanes x context) | member | GFLOP/step | ms at that MFU | RNN floor ms "
             "| step ms |", "|---|---|---|---|---|---|"]
    for lanes, context in shapes:
        total_flops = total_ms = 0.0
        for i, g in enumerate(members):
            flops, compute, floor = member_ms(g, lanes, context, peak, mfu, latency_us)
            step = max(compute, floor)
            total_flops, total_ms = total_flops + flops, total_ms + step
            lines.append(f"| {lanes} x {context} | m{i} {g.family} | {flops / 1e9:,.0f} | "
                         f"{compute:.1f} | {floor:.1f} | {step:.1f} |")
        steps = real_bytes / (lanes * context)
        minutes = steps * total_ms / 1e3 / 60
        slowest = max(max(member_ms(g, lanes, context, peak, mfu, latency_us)[1:])
                      for g in members)
        lines.append(f"| {lanes} x {context} | **population** | {total_flops / 1e9:,.0f} | | | "
                     f"**{total_ms:.1f}** (MFU {total_flops / (total_ms / 1e3) / peak:.0%}; "
                     f"{steps:,.0f} steps: {minutes:.0f} min an arm on one GPU, "
                     f"{steps * slowest / 1e3 / 60:.0f} min on {len(members)}, one member "
                     f"each) |")
    return "\n".join(lines)


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):
        """A bad option is one line on stderr and exit 2 (argparse would print its usage too)."""
        print(f"gpu_recipe.py: error: {message}", file=sys.stderr)
        sys.exit(2)


def main() -> None:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="enwik8")
    parser.add_argument("--shape", type=shape, action="append",
                        help="lanes x context (default: the preset's, 512x128 and 1024x64)")
    parser.add_argument("--peak", type=positive, default=H100_BF16,
                        help="rated FLOP/s (default: an H100's dense bf16)")
    parser.add_argument("--mfu", type=fraction, default=0.4,
                        help="the share of the peak the members' matmuls reach")
    parser.add_argument("--latency-us", type=positive, default=10.0,
                        help="a recurrent timestep's kernels, per layer and pass")
    args = parser.parse_args()
    try:
        cfg = config_files.load(args.preset, None, [])
    except UserError as e:
        print(f"gpu_recipe.py: error: {e}", file=sys.stderr)
        sys.exit(2)
    shapes = args.shape or [(cfg.train.batch_size, cfg.context), (512, 128), (1024, 64)]
    print(f"preset {cfg.name}: {len(cfg.members)} members, {cfg.train.real_bytes:,} real bytes "
          f"an arm")
    print(table(cfg.members, shapes, args.peak, args.mfu, args.latency_us,
                cfg.train.real_bytes))


if __name__ == "__main__":
    main()
