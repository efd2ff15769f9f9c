"""Recurrent families `lstm` and `gru`: embedding, a multi-layer cuDNN-style RNN, a head.

The recurrent state is carried between decoding calls, so generation costs O(1) per byte, and
between consecutive training windows of a lane (`stateful`: truncated BPTT, see data.py).
Initialisation is PyTorch's default throughout: the embedding N(0, 1) feeds the gates inputs of
unit scale (an N(0, 0.1) embedding, used before, left the RNNs on the unigram plateau).
"""

from __future__ import annotations

import torch
import torch.nn as nn

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}


class RecurrentLM(nn.Module):
    stateful = True

    def __init__(self, genome):
        super().__init__()
        g = genome
        self.context = g.context
        self.wte = nn.Embedding(256, g.d_model)
        self.rnn = CELLS[g.family](g.d_model, g.d_model, g.n_layer, batch_first=True,
                                   dropout=g.dropout if g.n_layer > 1 else 0.0)
        self.drop = nn.Dropout(g.dropout)
        self.head = nn.Linear(g.d_model, 256)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.decode(idx, None)[0]

    def decode(self, idx: torch.Tensor, state):
        """Logits for `idx` (B, T) continuing the recurrent `state` (None at the start)."""
        h, state = self.rnn(self.drop(self.wte(idx)), state)  # (B, T, d_model)
        return self.head(self.drop(h)), state


def build(genome) -> RecurrentLM:
    return RecurrentLM(genome)
