"""Shared helpers for the benchmarks: quick-preset genomes, a batch source, a timer."""

from __future__ import annotations

import argparse
import copy
import math
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from multitudes.models import detach_state
from multitudes.population.schedule import make_optimizer, set_lr
from multitudes.training import protocols
from multitudes.config.files import load
from multitudes.data.corpora import resolve
from multitudes.data.splits import load_splits, make_stream
from multitudes.errors import UserError


def numbers(text: str) -> list[float]:
    """An argparse type: comma-separated finite numbers >= 0 (a sweep's grid of one value)."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text}: expected numbers, comma-separated") from None
    if not all(math.isfinite(v) and v >= 0 for v in values):
        raise argparse.ArgumentTypeError(f"{text}: expected finite numbers >= 0")
    return values


def _positive(text: str, convert, expected: str):
    """`text` converted, or the argparse error saying what was expected."""
    try:
        value = convert(text)
    except ValueError:
        value = None
    if value is None or not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text}: expected {expected}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1 (steps, repeats, bytes, lanes, ranks)."""
    return _positive(text, int, "a whole number >= 1")


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0 (seconds)."""
    return _positive(text, float, "a finite number > 0")


def refuse(why: str):
    """Bad input to a benchmark: one line on stderr, exit 2, before any work."""
    print(f"{Path(sys.argv[0]).name}: error: {why}", file=sys.stderr)
    sys.exit(2)


def load_or_refuse(preset: str, overrides: list[str] = ()):
    """A preset's config with `overrides` (KEY=VALUE), or `refuse` with the config's own line."""
    try:
        return load(preset=preset, overrides=list(overrides))
    except UserError as e:
        refuse(str(e))


def refuse_missing_families(cfg, preset: str, wanted) -> None:
    """`refuse` a --family the preset's members do not have."""
    families = sorted({g.family for g in cfg.members})
    for family in wanted:
        if family not in families:
            refuse(f"--family {family}: the preset {preset} has {', '.join(families)}")


def quick_config():
    return load(preset="quick")


def quick_genomes():
    return quick_config().members


def batches(n: int, batch_size: int, context: int, seed: int = 0,
            sampling: str = "random") -> list[tuple[torch.Tensor, bool]]:
    """n batches of the sample's training split, each with whether it continues the last."""
    stream = make_stream(load_splits(resolve("sample"))["train"], batch_size, context, seed,
                         sampling)
    out = []
    for _ in range(n):
        batch = stream.next()
        out.append((batch, stream.continues))
    return out


def best_time(fn, repeats: int) -> float:
    """The fastest of `repeats` timings of fn(): the least disturbed by the machine. On a GPU
    each timing waits for the kernels fn() queued (one side of a comparison may wait for its
    losses every step, the other never), so that both are timed to their end."""
    times = []
    for _ in range(repeats):
        _wait_for_the_gpu()
        start = time.perf_counter()
        fn()
        _wait_for_the_gpu()
        times.append(time.perf_counter() - start)
    return min(times)


def _wait_for_the_gpu() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def plain_loop(members, data, grad_clip: float, device, bf16: bool = False):
    """The plain PyTorch loop for copies of `members`, stepped one after another (their
    forward passes under bf16 autocast where `bf16`): the reference the benchmarks time."""
    models = [copy.deepcopy(m.model) for m in members]
    opts = [make_optimizer(model, m.genome) for model, m in zip(models, members)]
    for opt, m in zip(opts, members):
        set_lr(opt, m.genome.lr)
    stateful = [m.stateful for m in members]
    cast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    def plain():
        states = [None] * len(models)
        for b, continues in data:
            b = b.to(device)
            for i, (model, opt) in enumerate(zip(models, opts)):
                with cast:
                    if stateful[i]:  # truncated BPTT, as the population does
                        logits, state = model.decode(b[:, :-1],
                                                     states[i] if continues else None)
                        states[i] = detach_state(state)
                    else:
                        logits = model(b[:, :-1])
                    loss = F.cross_entropy(logits.float().reshape(-1, 256),
                                           b[:, 1:].reshape(-1))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                opt.step()
    return plain


def matmul_peak(device: torch.device, n: int = 1024, reps: int = 20,
                dtype: torch.dtype | None = None) -> float:
    """FLOP/s of a square matmul measured now, on this device: the roof we compare with
    (bf16 on CUDA, fp32 on the CPU, unless `dtype` says otherwise)."""
    dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device,
                                                                         dtype=dtype)
    def run():
        for _ in range(reps):
            a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
    run()
    return 2 * n ** 3 * reps / best_time(run, 3)


def env_line(device: torch.device) -> str:
    return (f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, "
            f"numpy {np.__version__}")


def alone_dev_curve(cfg, member, real_bytes: int) -> list[tuple[int, float]]:
    """Train `member` alone with the project's own loop (`cfg`'s recipe, channels closed) for
    `real_bytes`; its dev-slice curve: (real bytes read, dev bpb) at every evaluation. A stream
    run is scored at its end only; a data-limited one at the recipe's cadence, as its arm is
    (it keeps its best dev weights)."""
    evals = cfg.train.eval_every if cfg.regime == "data-limited" else 10**9
    one = replace(cfg, members=[member], social=replace(cfg.social, channel="none"),
                  evolution=replace(cfg.evolution, every=0),
                  train=replace(cfg.train, real_bytes=real_bytes, checkpoint_every=0,
                                eval_every=evals))
    with tempfile.TemporaryDirectory() as tmp:
        res = protocols.run("train", one, Path(tmp), progress=False)
    return [(p["real_bytes"], p["best_dev_bpb"]) for p in res["arms"]["isolated"]["curve"]]


def alone_dev_bpb(cfg, member, real_bytes: int) -> float:
    """`member` trained alone for `real_bytes`: its dev-slice bpb at the end."""
    return alone_dev_curve(cfg, member, real_bytes)[-1][1]
