"""Adaptive evaluation: a trained member codes a split as an adaptive compressor does.

The classical yardsticks adapt while they code: xz finds matches in the test bytes it has just
coded, PPMd updates its counts after every byte. A member scored with frozen weights is a
different protocol, and comparing the two flatters the compressors. Here the member codes the
split prequentially (dynamic evaluation, Krause et al. 2018): it scores a window exactly as the
static protocol of `evaluate` does, then takes one optimizer step on that window, so that every
byte is predicted before any update has seen it. It is the same number `compress --online`
pays for, starting from a trained member instead of a fresh one.

- a stateful member (an RNN trained with carried state) reads the split as one lane of
  consecutive windows of its context, its state carried (truncated BPTT: one window deep);
- any other member reads the static protocol's windows (context T, stride T/2 by default) and
  steps on the whole window it has just scored (its first bytes were scored by the window before).

The optimizer is a fresh AdamW with the member's betas and no weight decay, at a learning rate
chosen per member on the dev slice of valid (0 among the candidates: adapting may not help), and
gradients clipped to norm 1 as in training. The member's own weights are never changed: it
adapts on a copy.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from multitudes.config.schema import DEFAULT_GRAD_CLIP
from multitudes.evaluation.bpb import bpb, window_plan
from multitudes.population.schedule import BETAS, set_lr
from multitudes.runs.device import autocast_for
from multitudes.models import detach_state

LEARNING_RATES = (0.0, 1e-4, 3e-4, 1e-3, 3e-3)  # the dev slice chooses among them, per member
GRAD_CLIP = DEFAULT_GRAD_CLIP  # a member's run's default


def _windows(n: int, context: int, stride: int, stateful: bool) -> list[tuple[int, int, int]]:
    """(start, length T, first scored offset) of every window over n bytes, in coding order."""
    if stateful:  # consecutive windows; the state carries the context across them
        return [(s, min(context, n - 1 - s), 0) for s in range(0, n - 1, context)]
    T = min(context, n - 1)
    return [(s, T, first) for s, first in window_plan(n, T, stride or max(1, context // 2))]


def adaptive_log2probs(model, data: np.ndarray, context: int, lr: float, carry_state: bool,
                       stride: int = 0, device: torch.device | str = "cpu",
                       progress: bool = False) -> np.ndarray:
    """log2 p(byte) for bytes 1..n-1 of `data`, each predicted before a step has seen it."""
    n = len(data)
    if n < 2:
        raise ValueError("a split needs at least 2 bytes to score one prediction")
    model = copy.deepcopy(model).to(device)
    model.eval()  # no dropout: the step adapts the weights the scores come from
    stateful = carry_state and getattr(model, "stateful", False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=BETAS, weight_decay=0.0)
    set_lr(optimizer, lr)
    tokens = torch.from_numpy(np.asarray(data, dtype=np.int64)).to(device)
    out = np.empty(n - 1, dtype=np.float64)
    state, autocast = None, autocast_for(device)
    for start, T, first in tqdm(_windows(n, context, stride, stateful), desc="adaptive eval",
                                disable=None if progress else True, leave=False):
        x, y = tokens[None, start:start + T], tokens[None, start + 1:start + T + 1]
        with torch.set_grad_enabled(lr > 0), autocast:
            if stateful:
                logits, state = model.decode(x, state)
                state = detach_state(state)
            else:
                logits = model(x)
        logp = F.log_softmax(logits.float(), dim=-1).gather(-1, y[..., None])[0, :, 0]
        out[start + first:start + T] = (logp[first:].detach() / math.log(2)).double().cpu().numpy()
        if lr > 0:  # the step comes after the scores: no byte is predicted by a model it trained
            optimizer.zero_grad(set_to_none=True)
            (-logp.mean()).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
            optimizer.step()
    return out


def choose_lr(model, dev: np.ndarray, context: int, carry_state: bool, stride: int = 0,
              device: torch.device | str = "cpu",
              learning_rates: tuple[float, ...] = LEARNING_RATES) -> tuple[float, dict]:
    """The candidate rate with the lowest adaptive bpb on `dev`, and every candidate's bpb."""
    tried = {lr: bpb(adaptive_log2probs(model, dev, context, lr, carry_state, stride, device))
             for lr in learning_rates}
    return min(tried, key=lambda lr: (tried[lr], lr)), tried
