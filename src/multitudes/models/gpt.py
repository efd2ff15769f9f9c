"""`gpt`: a pre-LN decoder-only transformer over bytes (GPT-2 style, learned positions)."""

from __future__ import annotations

from multitudes.models.blocks import TransformerLM


def build(genome) -> TransformerLM:
    return TransformerLM(genome)


def matmul_params(g) -> int:
    """Weights that take part in a matmul per byte (embeddings are lookups)."""
    per_block = 4 * g.d_model * g.d_model + 2 * g.d_model * g.d_ff
    return g.n_layer * g.n_loop * per_block + g.d_model * 256


def attention_flops(g) -> int:
    """Forward FLOPs per byte of QK^T and AV at full context (Kaplan et al. 2020)."""
    return 2 * g.n_layer * g.n_loop * g.context * g.d_model
