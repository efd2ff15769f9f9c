"""Online (prequential) coding: a population codes each batch of a file with what it knows before
it, then trains on it, socially or alone, exactly as `train` does; nothing is trained beforehand.

The file is cut into B contiguous lanes of `steps x T` bytes (B and T from the config); step i
codes window i of every lane (T bytes each), then `Population.step` trains on that batch. The
lanes' first bytes, and the tail that no whole window holds (fewer than B x T bytes), are coded
uniformly. Inside a window every member predicts position t from positions < t of the window (an
RNN from its state carried from the last window, as in training; a transformer from the window
alone, as in training) by incremental decoding. The coded distribution mixes the members'
(`mixture`): `bayes` weighs each by its posterior, exp(-its code length so far), updated after
every position, with a fixed share (1%) of the weight spread back over all members so that one
that starts slow can take over later (Herbster & Warmuth's fixed share); `uniform` averages them
(the consensus of the tables). A member's fitness is its own prequential bpb on the last window:
no held-out data is needed, and the decoder computes the same.

The decoder builds the same population from the header's config and replays the same calls on
the bytes it decodes, so its probabilities and its training are the encoder's bit for bit (same
torch build, device and thread count). The code length is the area under the population's
learning curve: the number to compare with gzip, xz and PPMd reading the same bytes once.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from tqdm import tqdm

from multitudes.coding.range_coder import RangeCoder, uniform
from multitudes.config.schema import RunConfig
from multitudes.runs.distributed import Group
from multitudes.runs.device import resolve_device
from multitudes.population.population import Population

MIXTURES = ("bayes", "uniform")
FIXED_SHARE = 0.01  # a prior choice, not tuned: the weight each step returns to every member


def layout(n: int, cfg: RunConfig) -> tuple[int, int]:
    """(steps, lane length m = steps x T): B lanes of m + 1 bytes, overlapping by one."""
    B, T = cfg.train.batch_size, cfg.context
    steps = max(0, (n - 1) // (B * T))
    return steps, steps * T


class OnlineCoder:
    """One pass over a file: `encode(data)` or `decode(words, n)`, training as it goes."""

    def __init__(self, cfg: RunConfig, progress: bool = True, mixture: str = "bayes"):
        self.cfg, self.progress, self.mixture = cfg, progress, mixture
        self.device = resolve_device(cfg.train.device)
        self.pop = Population.found(cfg.members, cfg.social, cfg.train, 1, self.device, Group())
        self.B, self.T = cfg.train.batch_size, cfg.context
        self.bits = 0.0
        self.seconds = 0.0
        self.log_weights = np.zeros(len(self.pop.members))  # the members' log posterior (nats)

    def run(self, n: int, coder, data: np.ndarray | None = None) -> np.ndarray:
        """Code (data given) or decode (data None) all n bytes through `coder(symbols, probs)`,
        which returns the symbols (the given ones, or the decoded ones)."""
        start = time.perf_counter()
        out = np.zeros(n, dtype=np.uint8) if data is None else data.copy()
        steps, m = layout(n, self.cfg)
        self.pop.total_steps = max(1, steps)
        if self.cfg.train.schedule == "wsd":
            self.pop.horizon = max(1, steps)  # one run of the file's length, cooled at its end
        known = np.zeros(n, dtype=bool)
        firsts = np.arange(self.B) * m if steps else np.zeros(0, dtype=np.int64)
        out[firsts] = coder(out[firsts], uniform(len(firsts)))
        known[firsts] = True
        self.bits = 8.0 * len(firsts)
        bar = tqdm(total=n, unit="B", unit_scale=True, desc="online", dynamic_ncols=True,
                   disable=None if self.progress else True)
        bar.update(len(firsts))
        for i in range(steps):
            rows = firsts[:, None] + i * self.T + np.arange(self.T + 1)[None, :]  # (B, T+1)
            self._code_window(out, known, rows, coder, continues=i > 0)
            batch = torch.from_numpy(out[rows].astype(np.int64))
            self.pop.step(batch, continues=i > 0)
            bar.update(int(self.B * self.T))
            bar.set_postfix(bpb=f"{self.bits / max(1, known.sum()):.3f}")
        rest = np.flatnonzero(~known)  # the tail no whole window holds
        out[rest] = coder(out[rest], uniform(len(rest)))
        self.bits += 8.0 * len(rest)
        bar.update(len(rest))
        bar.close()
        self.seconds = time.perf_counter() - start
        return out

    @torch.no_grad()
    def _code_window(self, out, known, rows, coder, continues: bool) -> None:
        """Code the T targets of every lane in this window, position by position."""
        states = [m.state if continues else None for m in self.pop.members]
        for m in self.pop.members:
            m.model.eval()
        fitness_bits = np.zeros(len(self.pop.members))
        coded = 0
        for t in range(self.T):
            x = torch.from_numpy(out[rows[:, t]].astype(np.int64))[:, None].to(self.device)
            probs = []
            for k, m in enumerate(self.pop.members):
                with self.pop.autocast():
                    logits, states[k] = m.model.decode(x, states[k])
                probs.append(torch.softmax(logits[:, -1].float(), dim=-1))
            member_probs = torch.stack(probs).double().cpu().numpy()  # (K, B, 256)
            weights = self._weights()
            mixed = np.tensordot(weights, member_probs, axes=1)  # (B, 256)
            targets = rows[:, t + 1]
            todo = ~known[targets]
            symbols = coder(out[targets[todo]], mixed[todo])
            out[targets[todo]] = symbols
            known[targets[todo]] = True
            lanes = np.flatnonzero(todo)
            self.bits -= float(np.log2(mixed[lanes, symbols]).sum())
            own = np.log(member_probs[:, lanes, symbols]).sum(axis=1)  # (K,) nats
            fitness_bits -= own / np.log(2)
            self._update_weights(own)
            coded += len(lanes)
        for m, bits in zip(self.pop.members, fitness_bits):
            m.fitness = float(bits / max(1, coded))  # its own prequential bpb, last window


    def _weights(self) -> np.ndarray:
        if self.mixture == "uniform":
            return np.full(len(self.log_weights), 1.0 / len(self.log_weights))
        w = np.exp(self.log_weights - self.log_weights.max())
        return w / w.sum()

    def _update_weights(self, log_likelihood: np.ndarray) -> None:
        """Bayes' rule on the bytes just coded, then the fixed share."""
        if self.mixture == "uniform":
            return
        self.log_weights = self.log_weights + log_likelihood
        w = (1 - FIXED_SHARE) * self._weights() + FIXED_SHARE / len(self.log_weights)
        self.log_weights = np.log(w)


def encode(data: bytes, cfg: RunConfig, progress: bool = True, mixture: str = "bayes"
           ) -> tuple[np.ndarray, OnlineCoder]:
    coder, ranges = OnlineCoder(cfg, progress, mixture), RangeCoder()
    coder.run(len(data), ranges, np.frombuffer(data, dtype=np.uint8))
    return ranges.words(), coder


def decode(words: np.ndarray, n: int, cfg: RunConfig, progress: bool = True,
           mixture: str = "bayes") -> bytes:
    coder = OnlineCoder(cfg, progress, mixture)
    return coder.run(n, RangeCoder(words)).tobytes()
