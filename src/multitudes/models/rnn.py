"""Recurrent families `lstm` and `gru`: embedding, a multi-layer cuDNN-style RNN, a head.

The recurrent state is carried between decoding calls, so generation costs O(1) per byte, and
between consecutive training windows of a lane (`stateful`: truncated BPTT, see data/splits.py).
Initialisation is PyTorch's default throughout: the embedding N(0, 1) feeds the gates inputs of
unit scale (an N(0, 0.1) embedding, used before, left the RNNs on the unigram plateau).

Dropout draws from `self.generator` when the member hands it one (`Member.draws`): its own
CPU generator, so members side by side draw at once without sharing torch's global one. The
draws are bit for bit those of `nn.Dropout` and of the RNN's own dropout between layers with
that generator's state as the global one (tests/test_models.py), so a run's numbers do not
depend on which way it drew. Without a generator (on CUDA, or a caller that swapped the
member's state into the global generator) the model is the plain modules.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn as nn
import torch.nn.functional as F

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}


def dropout(x: torch.Tensor, p: float, training: bool,
            generator: torch.Generator | None) -> torch.Tensor:
    """`F.dropout`, drawing from `generator` when given: the CPU's own recipe (a Bernoulli
    noise tensor scaled by 1 / (1 - p), multiplied in), so the same draws as F.dropout's."""
    if generator is None or not training or p == 0:
        return F.dropout(x, p, training)
    return x * torch.empty_like(x).bernoulli_(1 - p, generator=generator).div_(1 - p)


@contextmanager
def outside_cuda_autocast(x: torch.Tensor):
    """The recurrence on CUDA in fp32 (TF32 matmuls where allowed), not under the run's
    autocast: cuDNN's RNN autocast wrapper casts to fp16 whatever dtype the autocast asks for,
    and an RNN trained in fp16 without a loss scaler loses its small gradients (and an overflow
    would reset a healthy member as sick). Elsewhere (the CPU, bf16 or fp32) nothing changes."""
    if x.device.type != "cuda":
        yield x
        return
    with torch.autocast("cuda", enabled=False):
        yield x.float()


class RecurrentLM(nn.Module):
    stateful = True
    takes_generator = True  # Member.draws hands its generator here, no global state swapped

    def __init__(self, genome):
        super().__init__()
        g = genome
        self.context, self.p = g.context, g.dropout
        self.wte = nn.Embedding(256, g.d_model)
        self.rnn = CELLS[g.family](g.d_model, g.d_model, g.n_layer, batch_first=True,
                                   dropout=g.dropout if g.n_layer > 1 else 0.0)
        self.head = nn.Linear(g.d_model, 256)
        self.generator: torch.Generator | None = None

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.decode(idx, None)[0]

    def decode(self, idx: torch.Tensor, state):
        """Logits for `idx` (B, T) continuing the recurrent `state` (None at the start)."""
        g = self.generator
        x = dropout(self.wte(idx), self.p, self.training, g)
        with outside_cuda_autocast(x) as x:
            if g is not None and self.training and self.rnn.dropout > 0:
                h, state = self._layer_by_layer(x, state, g)
            else:
                h, state = self.rnn(x, state)  # (B, T, d_model)
        return self.head(dropout(h, self.p, self.training, g)), state

    def _layer_by_layer(self, x: torch.Tensor, state, g: torch.Generator):
        """What `self.rnn(x, state)` computes in training, one layer at a time with its
        dropout between layers drawn from `g`: the same ATen op per layer that the module
        runs for all of them, with the same weights."""
        rnn, lstm = self.rnn, isinstance(self.rnn, nn.LSTM)
        L, weights = rnn.num_layers, rnn._flat_weights
        if state is None:
            zeros = x.new_zeros(L, x.shape[0], rnn.hidden_size)
            state = (zeros, zeros) if lstm else zeros
        outs = []
        for i in range(L):
            w = weights[4 * i:4 * i + 4]  # w_ih, w_hh, b_ih, b_hh of layer i
            if lstm:
                x, h, c = torch.ops.aten.lstm.input(x, (state[0][i:i + 1], state[1][i:i + 1]),
                                                    w, True, 1, 0.0, True, False, True)
                outs.append((h, c))
            else:
                x, h = torch.ops.aten.gru.input(x, state[i:i + 1], w, True, 1, 0.0, True,
                                                False, True)
                outs.append(h)
            if i < L - 1:
                x = dropout(x, rnn.dropout, True, g)
        if lstm:
            return x, (torch.cat([h for h, _ in outs]), torch.cat([c for _, c in outs]))
        return x, torch.cat(outs)


def build(genome) -> RecurrentLM:
    return RecurrentLM(genome)
