"""Splits of a byte corpus and the seeded stream of training batches every member reads.

Splits follow the literature: enwik8 and enwik9 keep their last 10M bytes as valid (5M) then test
(5M); any other file is cut 90% / 5% / 5% in file order. Splits are memory-mapped, never copied.

Two batch streams deal windows of T+1 bytes (T predicted bytes each) from the training split;
each one's whole state is two integers (epoch, index), so a run resumes on the exact next batch.

- `BatchStream` (`train.sampling = "random"`): non-overlapping windows in a seeded random order,
  epoch after epoch; an epoch's order and alignment are a pure function of (seed, epoch).
- `LaneStream` (`"contiguous"`): the split is cut into B lanes, and row b of every batch is the
  next window of lane b, as the online compressors read a file. A model that holds state (an
  RNN) carries it from one window to the next: truncated backpropagation through time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from multitudes.data.corpora import CorpusFile
from multitudes.errors import UserError

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


def check_trainable(splits: dict[str, np.ndarray], batch_size: int, context: int,
                    dev_bytes: int, where: str, unique_bytes: int = 0,
                    largest_multiple: int = 1) -> None:
    """One clear error, before a run writes anything, when its splits are too small to train
    B windows of T+1 bytes and to score a dev slice, valid beyond it, and test, or when the
    data-limited regime asks for more unique bytes than the training split holds: U, or the
    reference's largest point, `largest_multiple` x U."""
    sizes = {k: len(v) for k, v in splits.items()}
    if unique_bytes > sizes["train"]:
        raise UserError(f"data.unique_bytes={unique_bytes:,} is more than the {sizes['train']:,} "
                        f"bytes of {where}'s training split")
    if unique_bytes * largest_multiple > sizes["train"]:
        raise UserError(f"the reference's largest point, {largest_multiple} x data.unique_bytes "
                        f"= {unique_bytes * largest_multiple:,} bytes, is more than the "
                        f"{sizes['train']:,} bytes of {where}'s training split (use a smaller "
                        f"U or compare.unique_multiples)")
    if unique_bytes:
        sizes["train"] = unique_bytes
    need = {"train": max(2 * (context + 1), batch_size * context + 1),
            "valid": min(dev_bytes, sizes["valid"]) + 2, "test": 2}
    for name, n in need.items():
        if sizes[name] < n:
            what = (f"data.unique_bytes={unique_bytes:,} is too few for this config"
                    if name == "train" and unique_bytes else
                    f"{where}: its {name} split holds {sizes[name]:,} bytes, too few for this "
                    f"config")
            raise UserError(f"{what} (at least {n:,}: batch {batch_size} x context "
                            f"{context}, dev slice {dev_bytes:,})")


UNIQUE_CHUNKS = 16  # the data-limited sample: this many chunks spread over the training split


def unique_sample(train: np.ndarray, unique_bytes: int, chunks: int = UNIQUE_CHUNKS
                  ) -> np.ndarray:
    """The U unique bytes of the data-limited regime: `chunks` equal pieces starting at evenly
    spaced points of the training split, concatenated.

    The first U bytes of a corpus are one run of articles, far from valid and test; pieces
    spread over the split keep U representative. The sample is nested: each piece grows in
    place as U grows, so 2U holds U, and the points of a data-scaling curve differ only in how
    much they read of the same places.
    """
    n = len(train)
    if unique_bytes > n:
        raise UserError(f"data.unique_bytes={unique_bytes:,} is more than the {n:,} bytes of "
                        f"the training split")
    if unique_bytes == n:
        return train
    return np.concatenate(_pieces(train, unique_bytes, chunks))


def _pieces(train: np.ndarray, unique_bytes: int, chunks: int) -> list[np.ndarray]:
    size, extra = divmod(unique_bytes, chunks)
    stride = len(train) // chunks
    return [train[i * stride:i * stride + size + (i < extra)] for i in range(chunks)]


def unique_with_held_out(train: np.ndarray, unique_bytes: int, fraction: float,
                         chunks: int = UNIQUE_CHUNKS) -> tuple[np.ndarray, np.ndarray]:
    """The U unique bytes split in two: the bytes trained on, and `fraction` of them held out
    (the tail of each piece, so that the held-out slice is spread over the split as U is), for
    what must be fit without data beyond U (`compare.mixture_fit = "unique"`)."""
    if unique_bytes >= len(train):
        pieces = [train[i * (len(train) // chunks):(i + 1) * (len(train) // chunks)]
                  for i in range(chunks)]
    else:
        pieces = _pieces(train, unique_bytes, chunks)
    cut = [len(p) - round(len(p) * fraction) for p in pieces]
    return (np.concatenate([p[:c] for p, c in zip(pieces, cut)]),
            np.concatenate([p[c:] for p, c in zip(pieces, cut)]))


@dataclass
class StreamState:
    epoch: int = 0
    index: int = 0  # windows of the current epoch already dealt


def steps_for(real_bytes: int, batch_size: int, context: int) -> int:
    """The steps that read `real_bytes` in batches of B x T (the last batch whole): the one
    conversion from bytes to steps."""
    return -(-real_bytes // (batch_size * context))


class Stream:
    """What every batch stream shares: B windows of T predicted bytes per batch."""

    batch_size: int
    context: int

    @property
    def bytes_per_batch(self) -> int:
        """Real bytes a batch consumes: the predicted positions, B * T."""
        return self.batch_size * self.context

    def steps_for(self, real_bytes: int) -> int:
        return steps_for(real_bytes, self.batch_size, self.context)


class BatchStream(Stream):
    """Seeded batches of B windows of T+1 bytes; consecutive windows overlap by one byte."""

    continues = False  # row b of a batch never follows row b of the previous one

    def __init__(self, data: np.ndarray, batch_size: int, context: int, seed: int):
        if len(data) < 2 * (context + 1):
            raise ValueError(f"training data of {len(data)} bytes is too short for context "
                             f"{context}")
        self.data, self.batch_size, self.context, self.seed = data, batch_size, context, seed
        self.state = StreamState()
        self._order_epoch, self._order = -1, np.empty(0, dtype=np.int64)

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

    def dealt_bytes(self, real_bytes: int) -> bytes:
        """The distinct bytes a fresh stream deals in its first `real_bytes`, in the order dealt
        (each window's T predicted bytes); past one epoch, the whole split in file order."""
        fresh = BatchStream(self.data, self.batch_size, self.context, self.seed)
        starts = fresh._epoch_starts(0)
        n = self.steps_for(real_bytes) * self.batch_size
        if n >= len(starts):
            return bytes(self.data)
        return b"".join(bytes(self.data[s + 1:s + 1 + self.context]) for s in starts[:n])


class LaneStream(Stream):
    """B contiguous lanes of the split; batch i holds window i of every lane.

    `continues` tells the population whether row b of the batch just dealt follows row b of the
    one before (so a carried state is valid); it is False at the start of every epoch.
    """

    def __init__(self, data: np.ndarray, batch_size: int, context: int):
        self.lane = (len(data) - 1) // batch_size  # bytes of each lane (the last byte: a target)
        if self.lane < context:
            raise ValueError(f"training data of {len(data)} bytes is too short for "
                             f"{batch_size} lanes of context {context}")
        self.data, self.batch_size, self.context = data, batch_size, context
        self.windows = self.lane // context  # windows per lane and epoch
        self.state = StreamState()
        self.continues = False

    def next(self) -> torch.Tensor:
        """The next batch as a (B, T+1) int64 tensor: window `index` of every lane."""
        self.continues = self.state.index > 0
        # The lane's tail that does not fill a window is read in later epochs: each epoch
        # starts the lanes at a new offset within that slack.
        slack = self.lane - self.windows * self.context
        offset = (self.state.epoch * (self.context // 3 + 1)) % (slack + 1)
        first = (np.arange(self.batch_size) * self.lane + offset
                 + self.state.index * self.context)
        idx = first[:, None] + np.arange(self.context + 1)[None, :]
        self.state.index += 1
        if self.state.index >= self.windows:
            self.state = StreamState(self.state.epoch + 1, 0)
        return torch.from_numpy(self.data[idx].astype(np.int64))

    def state_dict(self) -> dict:
        return {"epoch": self.state.epoch, "index": self.state.index,
                "continues": self.continues}

    def load_state_dict(self, state: dict) -> None:
        self.state = StreamState(int(state["epoch"]), int(state["index"]))
        self.continues = bool(state.get("continues", False))

    @property
    def epochs_done(self) -> float:
        """Bytes read so far over the bytes the lanes hold: passes over the data."""
        return (self.state.epoch * self.windows + self.state.index) * self.context / self.lane

    def dealt_bytes(self, real_bytes: int) -> bytes:
        """The distinct bytes dealt in the first `real_bytes`: each lane's read part (its
        predicted bytes), lane after lane; past one epoch, every lane whole."""
        steps = min(self.steps_for(real_bytes), self.windows)
        return b"".join(bytes(self.data[b * self.lane + 1:b * self.lane + 1 + steps * self.context])
                        for b in range(self.batch_size))


def make_stream(data: np.ndarray, batch_size: int, context: int, seed: int, sampling: str):
    """The batch stream a run reads: `random` windows or `contiguous` lanes."""
    if sampling == "contiguous":
        return LaneStream(data, batch_size, context)
    return BatchStream(data, batch_size, context, seed)
