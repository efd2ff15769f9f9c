"""An RNN member alone at several lane counts: its training step (forward, backward, AdamW) on
B lanes x T bytes, its bytes per second, and each row's throughput as a ratio to the first
row's, measured in the same run. The recurrence runs T timesteps in a row whatever B is, so on a
GPU a few lanes leave it latency-bound (benchmarks/gpu_recipe.py's floor): this measures where
that ends. The device check's part for the RNNs (benchmarks/device_check.sh).

    python benchmarks/rnn_lanes.py                          # enwik8's LSTM, 64, 256, 512 lanes
    python benchmarks/rnn_lanes.py --preset debug --family lstm --lanes 2,8 --steps 2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (batches, best_time, env_line, load_or_refuse, positive_int,  # noqa: E402
                    refuse, refuse_missing_families)
from multitudes.models import detach_state  # noqa: E402
from multitudes.population.member import Member  # noqa: E402
from multitudes.population.schedule import set_lr  # noqa: E402
from multitudes.runs.device import autocast_for, resolve_device  # noqa: E402


def lane_counts(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected lane counts >= 1, comma-separated, got "
                                         f"{text!r}")
    return values


def time_lanes(genome, lanes: int, context: int, steps: int, repeats: int, device,
               precision: str) -> float:
    """Seconds a training step takes at `lanes` (the best of `repeats` runs of `steps`)."""
    member = Member.create("m0", genome.replace(dropout=0.0), device)
    set_lr(member.optimizer, genome.lr)
    data = [b.to(device) for b, _ in batches(steps, lanes, context, sampling="contiguous")]
    state = {"h": None}

    def run():
        for batch in data:
            with autocast_for(device, precision):
                z, h = member.model.decode(batch[:, :-1], state["h"])
            state["h"] = detach_state(h)
            loss = F.cross_entropy(z.float().reshape(-1, 256), batch[:, 1:].reshape(-1))
            member.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            member.optimizer.step()
    run()  # warm-up: allocations, cuDNN's plans
    return best_time(run, repeats) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="enwik8")
    parser.add_argument("--family", default="lstm", choices=["lstm", "gru"])
    parser.add_argument("--lanes", type=lane_counts, default=[64, 256, 512])
    parser.add_argument("--context", type=positive_int, default=None,
                        help="default: the preset's")
    parser.add_argument("--steps", type=positive_int, default=5)
    parser.add_argument("--repeats", type=positive_int, default=3)
    args = parser.parse_args()
    overrides = [f"members.*.context={args.context}"] if args.context else []
    cfg = load_or_refuse(args.preset, overrides)
    refuse_missing_families(cfg, args.preset, [args.family])
    genome = next(g for g in cfg.members if g.family == args.family)
    device = resolve_device(cfg.train.device)
    if device.type == "cpu" and max(args.lanes) * cfg.context > 1 << 20:
        refuse(f"--lanes {max(args.lanes)} x context {cfg.context}: more than a MiB a step on "
               f"a CPU (give --context or fewer lanes)")
    print(f"{args.preset}'s {args.family} (d_model {genome.d_model}, {genome.n_layer} layers), "
          f"context {cfg.context}, {env_line(device)}", flush=True)
    first = None
    for lanes in args.lanes:
        seconds = time_lanes(genome, lanes, cfg.context, args.steps, args.repeats, device,
                             cfg.train.precision)
        rate = lanes * cfg.context / seconds
        first = first or rate
        print(f"{lanes:>5} lanes: {1e3 * seconds:8.2f} ms a step, {rate:12,.0f} B/s, "
              f"{rate / first:5.2f}x the {args.lanes[0]}-lane row", flush=True)


if __name__ == "__main__":
    main()
