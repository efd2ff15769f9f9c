"""Entropy coding with the members' predictions: bytes in, range-coded words out, and back.

A file is cut into L lanes (lane b is the b-th slice of ceil(n / L) bytes) and coded column by
column: the first byte of every lane uniformly (8 bits), every later byte with the probability
the model (or the mixture of several) gives it after the bytes before it in its lane. The
decoder makes exactly the same calls on exactly the same inputs (it feeds the column it has just
decoded), so on the same device, torch build and thread count its probabilities are the
encoder's bit for bit; `constriction`'s leaky quantisation then turns them into the same integer
model on both sides.

A predictor steps all lanes one byte at a time: an RNN carries its state down the lane; a
transformer decodes with its KV cache and, when the cache reaches its context, starts again
from the last `context - stride` bytes (read, not coded), as the sliding-window evaluation does.
"""

from __future__ import annotations

import math

import constriction
import numpy as np
import torch
from tqdm import tqdm

FAMILY = constriction.stream.model.Categorical(perfect=False)


def lane_layout(n: int, lanes: int) -> tuple[int, int]:
    """(lane length m, lanes used): every lane holds m bytes but the last, which holds the rest."""
    if n == 0:
        return 0, 0
    m = math.ceil(n / max(1, min(lanes, n)))
    return m, math.ceil(n / m)


class RangeCoder:
    """Either side of the range coder behind one call, so that one loop serves both:
    `code(symbols, probs)` encodes the given symbols (encoder) or decodes as many symbols as
    there are probability rows (decoder, `words` given); either way it returns the symbols."""

    def __init__(self, words: np.ndarray | None = None):
        self.encoder = constriction.stream.queue.RangeEncoder() if words is None else None
        self.decoder = None if words is None else constriction.stream.queue.RangeDecoder(words)

    def __call__(self, symbols: np.ndarray, probs: np.ndarray) -> np.ndarray:
        if not len(probs):
            return symbols
        if self.encoder is not None:
            self.encoder.encode(symbols.astype(np.int32), FAMILY, probs)
            return symbols
        return np.asarray(self.decoder.decode(FAMILY, probs), dtype=np.uint8)

    def words(self) -> np.ndarray:
        return self.encoder.get_compressed()


class ModelStepper:
    """One model's next-byte logits for every lane, one column at a time."""

    def __init__(self, model: torch.nn.Module, stride: int, device):
        self.model, self.device = model.eval(), device
        self.stateful = getattr(model, "stateful", False)
        self.context = model.context
        self.keep = max(1, self.context - stride)  # bytes re-read when a window starts again
        self.state = None
        self.history = None  # a transformer's last `context` bytes of every lane

    @torch.no_grad()
    def step(self, column: torch.Tensor) -> torch.Tensor:
        """Logits (lanes, 256) of the next byte of every lane, given the column just coded."""
        x = column.to(self.device).long()[:, None]
        if self.stateful:
            logits, self.state = self.model.decode(x, self.state)
            return logits[:, -1].float()
        self.history = x if self.history is None else \
            torch.cat([self.history, x], dim=1)[:, -self.context:]
        if self.state is not None and self.state[1] >= self.context:  # the cache is full
            self.state = None
            x = self.history[:, -self.keep:]
        logits, self.state = self.model.decode(x, self.state)
        return logits[:, -1].float()


def mixture(steppers: list[ModelStepper], column: torch.Tensor) -> np.ndarray:
    """The mean of the members' next-byte distributions (the consensus), as float64."""
    probs = [torch.softmax(s.step(column), dim=-1) for s in steppers]
    return torch.stack(probs).mean(0).double().cpu().numpy()


def encode(data: bytes, steppers: list[ModelStepper], lanes: int, progress: bool = True
           ) -> tuple[np.ndarray, float]:
    """Range-coded words of `data`, and its code length under the models in bits."""
    coder = RangeCoder()
    _, bits = _code_lanes(np.frombuffer(data, dtype=np.uint8), steppers, lanes, coder,
                          "compress", progress)
    return coder.words(), bits


def decode(words: np.ndarray, n: int, steppers: list[ModelStepper], lanes: int,
           progress: bool = True) -> bytes:
    """The `n` bytes that `encode` coded into `words` with the same models."""
    grid, _ = _code_lanes(np.zeros(n, dtype=np.uint8), steppers, lanes, RangeCoder(words),
                          "decompress", progress)
    return grid.reshape(-1)[:n].tobytes()


def _code_lanes(data: np.ndarray, steppers: list[ModelStepper], lanes: int, coder: RangeCoder,
                desc: str, progress: bool) -> tuple[np.ndarray, float]:
    """The column loop both sides share: the lanes (filled in as they are decoded) and the
    code length in bits."""
    n = len(data)
    m, used = lane_layout(n, lanes)
    grid = np.zeros((used, m), dtype=np.uint8)
    grid.reshape(-1)[:n] = data
    if n:
        grid[:, 0] = coder(grid[:, 0], uniform(used))
    bits, done = 8.0 * used, used
    bar = tqdm(total=n, unit="B", unit_scale=True, desc=desc, disable=None if progress
               else True, dynamic_ncols=True)
    bar.update(used)
    for j in range(1, m):
        probs = mixture(steppers, torch.from_numpy(grid[:, j - 1].copy()))
        k = _active(n, m, used, j)
        grid[:k, j] = symbols = coder(grid[:k, j], probs[:k])
        bits -= float(np.log2(probs[np.arange(k), symbols]).sum())
        done += k
        bar.update(k)
        if j % 64 == 0:
            bar.set_postfix(bpb=f"{bits / done:.3f}")
    bar.close()
    return grid, bits


def _active(n: int, m: int, used: int, j: int) -> int:
    """Lanes that hold a byte in column j: all full lanes, and the last if it reaches j."""
    last = n - (used - 1) * m
    return used if j < last else used - 1


def uniform(rows: int) -> np.ndarray:
    """Rows of the uniform distribution over bytes: what codes a byte with no context."""
    return np.full((rows, 256), 1.0 / 256)
