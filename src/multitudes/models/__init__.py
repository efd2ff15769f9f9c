"""Model families, one file each, behind one registry: build(genome) -> nn.Module.

Every model maps bytes (B, T) to logits (B, T, 256) with `forward(idx)`, and supports incremental
decoding with `decode(idx, state) -> (logits, state)` (a KV cache or a carried RNN state).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from multitudes.models import gpt, looped, rnn

FAMILIES = {
    "gpt": (gpt.build, gpt, "pre-LN decoder-only transformer, causal SDPA, learned positions"),
    "looped": (looped.build, looped, "recurrent-depth transformer: a shared stack looped n_loop "
               "times"),
    "lstm": (rnn.build, rnn, "multi-layer LSTM over byte embeddings"),
    "gru": (rnn.build, rnn, "multi-layer GRU over byte embeddings"),
}


def build(genome) -> nn.Module:
    return FAMILIES[genome.family][0](genome)


def count_params(genome) -> int:
    with torch.device("meta"):  # exact count without allocating or initialising anything
        model = build(genome)
    return sum(p.numel() for p in model.parameters())


def flops_per_byte(genome) -> int:
    """Training FLOPs per predicted byte: 3 x (2 x matmul params + attention)."""
    module = FAMILIES[genome.family][1]
    return 3 * (2 * module.matmul_params(genome) + module.attention_flops(genome))
