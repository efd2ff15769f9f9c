"""Model families, one file each, behind one registry: build(genome) -> nn.Module.

Every model maps bytes (B, T) to logits (B, T, 256) with `forward(idx)`, and supports incremental
decoding with `decode(idx, state) -> (logits, state)` (a KV cache or a carried RNN state).
"""

from __future__ import annotations

import torch.nn as nn

from multitudes.models import gpt, looped, rnn, ssm

FAMILIES = {
    "gpt": (gpt.build, "pre-LN decoder-only transformer, causal SDPA, learned positions"),
    "looped": (looped.build, "recurrent-depth transformer: a shared stack looped n_loop "
               "times"),
    "lstm": (rnn.build, "multi-layer LSTM over byte embeddings"),
    "gru": (rnn.build, "multi-layer GRU over byte embeddings"),
    "ssm": (ssm.build, "selective state-space model: a gated diagonal linear recurrence per "
            "layer (Mamba / minGRU style), chunked parallel scan, MLP"),
}


def build(genome) -> nn.Module:
    return FAMILIES[genome.family][0](genome)


def detach_state(state):
    """A recurrent state (a tensor, or a tuple of them for an LSTM) cut from its graph."""
    if isinstance(state, tuple):
        return tuple(t.detach() for t in state)
    return state.detach()
