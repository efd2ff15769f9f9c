"""Bits per byte of a model on a split, with a windowing protocol comparable to the literature.

Protocol: windows of the model's context T slide over the split with stride S (default T/2).
The first window scores all its positions; every later window scores only its last S positions,
so each byte after the first is predicted exactly once, with at least T - S bytes of context
(T - 1 at most). This is the sliding-window evaluation used for enwik8 bpc (e.g. Al-Rfou et al.
2019 score with long overlapping contexts; S = 1 would be the most generous and T times slower).
The first byte of a split has no context and is not scored, so n bytes give n - 1 predictions.
bpb is the mean of -log2 p(byte) over them; on enwik8 the same number is called bpc.

A model that holds state (an RNN trained on contiguous lanes) is scored as a compressor would
code the split: `carry_state=True` cuts the split into lanes and runs each start to end with its
state carried, every byte scored exactly once; each lane but the first starts with its state
warmed on the `context` bytes before it (read, not scored).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from multitudes.runs.device import autocast_for


def window_plan(n: int, context: int, stride: int) -> list[tuple[int, int]]:
    """(start, first scored offset) of every window over n bytes (windows hold T + 1 bytes)."""
    if n < 2:
        raise ValueError("a split needs at least 2 bytes to score one prediction")
    T = min(context, n - 1)
    plan, start = [(0, 0)], 0
    while start + T < n - 1:  # the last scored target so far is byte start + T
        nxt = min(start + stride, n - 1 - T)
        plan.append((nxt, start + T - nxt))  # score only targets beyond the previous window
        start = nxt
    return plan


def _zero_row(state):
    """A zero recurrent state for one batch row, shaped like `state` (the RNNs' initial one)."""
    if isinstance(state, tuple):
        return tuple(torch.zeros_like(t[:, :1]) for t in state)
    return torch.zeros_like(state[:, :1])


def _cat_state(first, rest):
    """Stack two recurrent states along the batch dimension (dim 1: (layers, B, d))."""
    if isinstance(first, tuple):
        return tuple(torch.cat([a, b], dim=1) for a, b in zip(first, rest))
    return torch.cat([first, rest], dim=1)


@torch.no_grad()
def carried_log2probs(model, data: np.ndarray, context: int, lanes: int = 16,
                      chunk: int = 256, device: torch.device | str = "cpu",
                      progress: bool = False, precision: str = "auto") -> np.ndarray:
    """log2 p(byte) for bytes 1..n-1 of `data`, each lane's state carried (see above)."""
    n = len(data)
    if n < 2:
        raise ValueError("a split needs at least 2 bytes to score one prediction")
    lanes = max(1, min(lanes, (n - 1) // max(1, context)))
    S = -(-(n - 1) // lanes)  # targets per lane; lane j predicts bytes j*S+1 .. (j+1)*S
    padded = np.zeros(lanes * S + 1, dtype=np.int64)
    padded[:n] = data
    inputs = torch.from_numpy(padded[:-1].reshape(lanes, S)).to(device)
    targets = torch.from_numpy(padded[1:].reshape(lanes, S)).to(device)
    was_training = model.training
    model.eval()
    state = None
    with autocast_for(device, precision):
        if lanes > 1:  # warm lanes 1.. on the bytes before them; lane 0 starts at the file start
            warm = min(context, S)
            idx = np.arange(1, lanes)[:, None] * S - warm + np.arange(warm)[None, :]
            _, rest = model.decode(torch.from_numpy(padded[idx]).to(device), None)
            state = _cat_state(_zero_row(rest), rest)  # lane 0: the fresh (zero) state
        out = torch.empty(lanes, S, dtype=torch.float64)
        for t in tqdm(range(0, S, chunk), desc="eval", disable=None if progress else True,
                      leave=False):
            logits, state = model.decode(inputs[:, t:t + chunk], state)
            logp = F.log_softmax(logits.float(), dim=-1).gather(
                -1, targets[:, t:t + chunk, None])[..., 0]
            out[:, t:t + chunk] = (logp / math.log(2)).double().cpu()
    model.train(was_training)
    return out.reshape(-1)[: n - 1].numpy()


@torch.no_grad()
def byte_log2probs(model, data: np.ndarray, context: int, stride: int = 0,
                   batch_size: int = 32, device: torch.device | str = "cpu",
                   progress: bool = False, carry_state: bool = False,
                   precision: str = "auto") -> np.ndarray:
    """log2 p(byte) for bytes 1..n-1 of `data`, by the windowing protocol above (or with the
    state carried through lanes, for a stateful model and `carry_state`), under the autocast
    of `precision` (runs/distributed.py's `scoring_precision` of the run's train.precision)."""
    if carry_state and getattr(model, "stateful", False):
        return carried_log2probs(model, data, context, device=device, progress=progress,
                                 precision=precision)
    stride = stride or max(1, context // 2)
    n = len(data)
    T = min(context, n - 1)
    plan = window_plan(n, T, stride)
    out = np.empty(n - 1, dtype=np.float64)
    was_training = model.training
    model.eval()
    autocast = autocast_for(device, precision)
    for i in tqdm(range(0, len(plan), batch_size), desc="eval", disable=None if progress else True, leave=False):
        chunk = plan[i:i + batch_size]
        idx = np.stack([data[s:s + T + 1] for s, _ in chunk]).astype(np.int64)
        batch = torch.from_numpy(idx).to(device)
        with autocast:
            logits = model(batch[:, :-1])
        logp = F.log_softmax(logits.float(), dim=-1).gather(-1, batch[:, 1:, None])[..., 0]
        logp = (logp / math.log(2)).cpu().numpy()
        for row, (start, first) in enumerate(chunk):
            out[start + first:start + T] = logp[row, first:]
    model.train(was_training)
    return out


def bpb(log2probs: np.ndarray) -> float:
    return float(-log2probs.mean())


def consensus_log2probs(member_log2probs: list[np.ndarray]) -> np.ndarray:
    """log2 of the mixture that averages the members' probabilities, at every byte."""
    stacked = np.stack(member_log2probs)  # (K, n - 1)
    top = stacked.max(0)
    return top + np.log2(np.exp2(stacked - top).mean(0))  # log2 of the mean, stably


def consensus_bpb(member_log2probs: list[np.ndarray]) -> float:
    """bpb of the mixture that averages the members' probabilities at every byte."""
    return float(-consensus_log2probs(member_log2probs).mean())


GAP_BLOCKS = 32  # contiguous blocks of a split whose bpb an equal-bytes gap is paired over


def block_bpb(log2probs: np.ndarray, blocks: int = GAP_BLOCKS) -> list[float]:
    """bpb of each of `blocks` contiguous, near-equal blocks of a split: enough to put a
    standard error on a gap between two predictors of the same bytes, where bytes next to
    each other are far from independent but blocks of thousands nearly are."""
    return [bpb(part) for part in np.array_split(log2probs, blocks)]


def paired_gap(worse: list[float], better: list[float]) -> dict:
    """mean(worse - better) over paired blocks and its standard error (n - 1 in the spread)."""
    d = np.asarray(worse, dtype=np.float64) - np.asarray(better, dtype=np.float64)
    se = float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else float("nan")
    return {"mean": float(d.mean()), "se": se, "blocks": len(d)}


def fit_mixture(member_log2probs: list[np.ndarray], iterations: int = 100) -> np.ndarray:
    """Mixture weights over the members that maximise the likelihood of these bytes (EM).

    Fit on the dev slice and applied to held-out splits: the held-out prior of NanoGPT
    Slowrun's ensembles. Starts uniform; each step sets a member's weight to its mean
    responsibility for the bytes. The likelihood never decreases, so a fixed count suffices.
    """
    p = np.exp2(np.stack(member_log2probs).astype(np.float64))  # (K, n)
    w = np.full(len(member_log2probs), 1.0 / len(member_log2probs))
    for _ in range(iterations):
        joint = w[:, None] * p
        w = (joint / joint.sum(0, keepdims=True)).mean(1)
    return w


def mixture_bpb(member_log2probs: list[np.ndarray], weights: np.ndarray) -> float:
    """bpb of the mixture with these weights (consensus_bpb: uniform weights)."""
    stacked = np.stack(member_log2probs).astype(np.float64)
    with np.errstate(divide="ignore"):  # a weight of exactly 0 drops its member
        logw = np.log2(np.asarray(weights, dtype=np.float64))[:, None]
    top = (stacked + logw).max(0)
    return float(-(top + np.log2(np.exp2(stacked + logw - top).sum(0))).mean())
