"""`gpt`: a pre-LN decoder-only transformer over bytes (GPT-2 style, learned positions)."""

from __future__ import annotations

from multitudes.models.blocks import TransformerLM


def build(genome) -> TransformerLM:
    return TransformerLM(genome)
