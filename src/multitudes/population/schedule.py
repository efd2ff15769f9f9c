"""A member's optimizer and its learning rate at each step."""

from __future__ import annotations

import math

import torch

from multitudes.config.schema import TrainConfig
from multitudes.config.genome import Genome

BETAS = (0.9, 0.99)  # AdamW's, for training and for adaptive evaluation


def make_optimizer(model: torch.nn.Module, genome: Genome) -> torch.optim.AdamW:
    """AdamW; matrices decay, biases, norms and embeddings' 1-d parts do not. The learning
    rate is `lr_at`'s, set before every step (the 0 here is never used)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": genome.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    device = next(model.parameters()).device
    return torch.optim.AdamW(groups, lr=0.0, betas=BETAS, **fused_on(device))


def fused_on(device: torch.device) -> dict:
    """On CUDA the fused AdamW (one kernel for all of a member's parameters, instead of a
    launch per tensor); on the CPU the default, whose numbers every CPU result was made with."""
    return {"fused": True} if torch.device(device).type == "cuda" else {}


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def cooldown_factor(step: int, horizon: int | None, fraction: float) -> float:
    """`wsd`: 1 in the stable phase, then 1 - sqrt(progress) over the last `fraction` of the
    `horizon` steps (Hägele et al. 2024). No horizon: a stable trunk, branched off later."""
    if horizon is None:
        return 1.0
    length = max(1, round(fraction * horizon))
    progress = (step - (horizon - length)) / length
    return 1.0 if progress < 0 else max(0.0, 1.0 - math.sqrt(min(1.0, progress)))


def lr_at(step: int, genome: Genome, total_steps: int, train: TrainConfig,
          pop_step: int = 0, horizon: int | None = None, cycles: int = 0) -> float:
    """Linear warmup to genome.lr over the member's own steps, then flat (`constant`), flat and
    cooled down at the population's `horizon` (`wsd`), or a cosine down to the floor: over the
    whole run, or over each of `cycles` equal cycles anew (the snapshot arm), the first after
    the warmup, the last to the run's end."""
    if step < genome.warmup:
        warm = genome.lr * (step + 1) / genome.warmup
        return warm * cooldown_factor(pop_step, horizon, train.cooldown) \
            if train.schedule == "wsd" else warm
    if train.schedule == "constant":
        return genome.lr
    if train.schedule == "wsd":
        return genome.lr * cooldown_factor(pop_step, horizon, train.cooldown)
    if cycles > 1:  # the snapshot arm: cycle c runs from c x L to (c + 1) x L, the last to the end
        length = max(1, total_steps // cycles)
        c = min(pop_step // length, cycles - 1)
        start, end = c * length, (c + 1) * length if c < cycles - 1 else total_steps
        warm = genome.warmup if c == 0 else 0
        progress = min(1.0, (pop_step - start - warm) / max(1, end - start - warm))
    else:
        progress = min(1.0, (step - genome.warmup) / max(1, total_steps - genome.warmup))
    floor = train.min_lr_ratio
    return genome.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))
