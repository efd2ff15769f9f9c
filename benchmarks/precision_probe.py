"""Each member's forward and backward in the run's precision against fp32, on one batch: the
dtype every floating-point op ran in, the loss difference, the share of exactly-zero gradients
of the recurrent weights (fp16 without a loss scaler underflows there first), and peak memory.
The device check's first GPU part (benchmarks/device_check.sh); on the CPU it runs too (bf16
autocast there), which is how the tests check it.

    python benchmarks/precision_probe.py                     # the enwik8 preset's members, auto
    python benchmarks/precision_probe.py --preset debug --lanes 4 --context 32 --precision bf16

One line a member, printed as it is measured (a part cut off by its time limit keeps the lines
it printed).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import batches, load_or_refuse, positive_int  # noqa: E402
from multitudes.population.member import Member  # noqa: E402
from multitudes.runs.device import autocast_for, resolve_device  # noqa: E402

SHORT = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16",
         torch.float64: "fp64"}


# ops that only view or move a tensor: their dtype is their input's, and they crowd the line
VIEWS = {"view", "_unsafe_view", "t", "transpose", "detach", "select", "split", "expand",
         "permute", "unsqueeze", "squeeze", "slice", "clone", "stack", "alias"}


class OpDtypes(TorchDispatchMode):
    """Counts (op, dtype of its first floating output) of what runs inside it, views aside."""

    def __init__(self):
        super().__init__()
        self.seen = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        first = out[0] if isinstance(out, (tuple, list)) and out else out
        if isinstance(first, torch.Tensor) and first.is_floating_point() and \
                func.overloadpacket.__name__ not in VIEWS:
            self.seen[(func.overloadpacket.__name__, SHORT.get(first.dtype, str(first.dtype)))] += 1
        return out


def step(member: Member, batch: torch.Tensor, autocast) -> tuple[float, dict, Counter]:
    """One forward and backward: the loss, every parameter's gradient, the ops' dtypes."""
    model = member.model
    model.zero_grad(set_to_none=True)
    x, y = batch[:, :-1], batch[:, 1:]
    ops = OpDtypes()
    with ops, autocast:
        z = model(x)
    loss = F.cross_entropy(z.float().reshape(-1, z.shape[-1]), y.reshape(-1))
    loss.backward()
    return loss.item(), {n: p.grad.detach().clone() for n, p in model.named_parameters()
                         if p.grad is not None}, ops.seen


def zero_share(grads: dict) -> float | None:
    """The share of exactly-zero entries of the recurrent weights' gradients (None: no RNN)."""
    recurrent = [g for n, g in grads.items() if "weight_hh" in n]
    if not recurrent:
        return None
    return sum(int((g == 0).sum()) for g in recurrent) / sum(g.numel() for g in recurrent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="enwik8")
    parser.add_argument("--lanes", type=positive_int, default=None, help="default: the preset's")
    parser.add_argument("--context", type=positive_int, default=None,
                        help="default: the preset's")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default=None,
                        help="default: the preset's train.precision")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    args = parser.parse_args()
    overrides = [f"members.*.context={args.context}"] if args.context else []
    cfg = load_or_refuse(args.preset, overrides)
    device = resolve_device(args.device)
    precision = args.precision or cfg.train.precision
    lanes = args.lanes or cfg.train.batch_size
    [(batch, _)] = batches(1, lanes, cfg.context)
    batch = batch.to(device)
    print(f"{args.preset} members, {lanes} x {cfg.context} bytes, {device.type}, precision "
          f"{precision} against fp32", flush=True)
    for i, genome in enumerate(cfg.members):
        member = Member.create(f"m{i}", genome.replace(dropout=0.0), device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        base, base_grads, _ = step(member, batch, autocast_for(device, "fp32"))
        loss, grads, ops = step(member, batch, autocast_for(device, precision))
        memory = (f"{torch.cuda.max_memory_allocated(device) / 2**20:,.0f} MiB peak"
                  if device.type == "cuda" else "peak memory: CPU, not measured")
        zeros = zero_share(grads)
        zeros_text = "" if zeros is None else (
            f"; recurrent-weight gradients exactly zero {zeros:.2%} (fp32 "
            f"{zero_share(base_grads):.2%})")
        dtypes = ", ".join(f"{op} {dtype} x{n}" for (op, dtype), n in sorted(ops.items()))
        print(f"m{i} {genome.family}: loss {loss:.5f} vs fp32 {base:.5f} (diff "
              f"{abs(loss - base):.2e}){zeros_text}; {memory}; ops: {dtypes}", flush=True)
        del member


if __name__ == "__main__":
    main()
