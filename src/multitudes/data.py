"""Splits of a byte corpus and the seeded stream of training batches every member reads.

Splits follow the literature: enwik8 and enwik9 keep their last 10M bytes as valid (5M) then test
(5M); any other file is cut 90% / 5% / 5% in file order. Splits are memory-mapped, never copied.

The batch stream deals non-overlapping windows of T+1 bytes (T predicted bytes each) from the
training split in a seeded random order, epoch after epoch. An epoch's order and alignment are a
pure function of (seed, epoch), so the stream's whole state is two integers and a run resumes on
the exact next batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from multitudes.corpora import CorpusFile

SPLITS = ("train", "valid", "test")
TAIL = 5_000_000


def split_bounds(n: int, rule: str) -> dict[str, tuple[int, int]]:
    """Byte ranges [start, end) of train/valid/test for a file of n bytes."""
    if rule == "tail10M":
        if n <= 2 * TAIL:
            raise ValueError(f"a tail10M corpus needs more than {2 * TAIL} bytes, got {n}")
        cut = [n - 2 * TAIL, n - TAIL]
    elif rule == "fraction":
        cut = [int(n * 0.90), int(n * 0.95)]
    else:
        raise ValueError(f"unknown split rule {rule!r}")
    return {"train": (0, cut[0]), "valid": (cut[0], cut[1]), "test": (cut[1], n)}


def load_splits(corpus: CorpusFile) -> dict[str, np.ndarray]:
    """Memory-map the corpus and return its three splits as uint8 arrays (views, not copies)."""
    data = np.memmap(corpus.path, dtype=np.uint8, mode="r")
    return {name: data[a:b] for name, (a, b) in split_bounds(len(data), corpus.split).items()}


@dataclass
class StreamState:
    epoch: int = 0
    index: int = 0  # windows of the current epoch already dealt


class BatchStream:
    """Seeded batches of B windows of T+1 bytes; consecutive windows overlap by one byte."""

    def __init__(self, data: np.ndarray, batch_size: int, context: int, seed: int):
        if len(data) < 2 * (context + 1):
            raise ValueError(f"training data of {len(data)} bytes is too short for context "
                             f"{context}")
        self.data, self.batch_size, self.context, self.seed = data, batch_size, context, seed
        self.state = StreamState()
        self._order_epoch, self._order = -1, np.empty(0, dtype=np.int64)

    @property
    def bytes_per_batch(self) -> int:
        """Real bytes a batch consumes: the predicted positions, B * T."""
        return self.batch_size * self.context

    def _epoch_starts(self, epoch: int) -> np.ndarray:
        if epoch != self._order_epoch:
            rng = np.random.Generator(np.random.PCG64([self.seed, epoch]))
            shift = int(rng.integers(self.context))  # a new alignment each epoch
            n_windows = (len(self.data) - 1 - shift) // self.context
            self._order = shift + self.context * rng.permutation(n_windows)
            self._order_epoch = epoch
        return self._order

    def next_starts(self) -> np.ndarray:
        starts = []
        while len(starts) < self.batch_size:
            order = self._epoch_starts(self.state.epoch)
            take = order[self.state.index:self.state.index + self.batch_size - len(starts)]
            starts.extend(take.tolist())
            self.state.index += len(take)
            if self.state.index >= len(order):
                self.state = StreamState(self.state.epoch + 1, 0)
        return np.asarray(starts)

    def next(self) -> torch.Tensor:
        """The next batch as a (B, T+1) int64 tensor."""
        idx = self.next_starts()[:, None] + np.arange(self.context + 1)[None, :]
        return torch.from_numpy(self.data[idx].astype(np.int64))

    def state_dict(self) -> dict:
        return {"epoch": self.state.epoch, "index": self.state.index}

    def load_state_dict(self, state: dict) -> None:
        self.state = StreamState(int(state["epoch"]), int(state["index"]))

    @property
    def epochs_done(self) -> float:
        """Fractional epochs read so far."""
        return self.state.epoch + self.state.index / max(1, len(self._epoch_starts(
            self.state.epoch)))
