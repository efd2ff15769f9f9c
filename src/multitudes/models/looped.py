"""`looped`: a recurrent-depth transformer: one stack of blocks applied n_loop times.

The weights are shared across loops, so parameters stay those of a shallow model while compute
grows with n_loop; `n_loop` can be raised at evaluation (`multitudes eval --n-loop`). With
n_loop=1 the model is exactly a `gpt` with the same weights.
"""

from __future__ import annotations

from multitudes.models.blocks import TransformerLM


def build(genome) -> TransformerLM:
    return TransformerLM(genome)
