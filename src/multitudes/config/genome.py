"""Genome: everything that defines one member, as a frozen, JSON-serialisable dataclass.

A genome is validated when it is built; an error names the field and the value. Model families
interpret the dimensions their own way (an LSTM has no heads), so fields a family ignores are
still validated but do not change its model.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, fields
from typing import Literal

from multitudes.errors import UserError
from multitudes.config.typed import check_fields, non_negative, positive

Family = Literal["gpt", "looped", "lstm", "gru", "ssm"]
FAMILIES = typing.get_args(Family)
TRANSFORMERS = ("gpt", "looped")
SWITCHABLE = ("gpt", "looped", "lstm", "gru")  # evolution.families' default
BLOCKS = TRANSFORMERS + ("ssm",)  # a pre-LN block of 3d x d in, d x d out and an MLP
# the ssm's chunk of bytes in closed form (models/ssm.py): 4 is the fastest of 2-16 on the CPU
# at T = 32 and 128 (benchmarks/scan.py; BENCHMARKS.md), the work per byte grows with it
SCAN_CHUNK = 4
GATES = {"lstm": 4, "gru": 3}  # gate blocks of one recurrent layer
VOCAB = 256


@dataclass(frozen=True)
class Genome:
    family: Family = "gpt"
    d_model: int = 128
    n_layer: int = 4
    n_head: int = 4
    d_ff: int = 512
    n_loop: int = 1  # looped family: times the shared stack is applied
    context: int = 128  # n_ctx: bytes of context (and window length in training)
    dropout: float = 0.0
    lr: float = 3e-3
    warmup: int = 50  # optimizer steps of linear warmup
    weight_decay: float = 0.1
    alpha: float = 0.5  # listen weight of the logit channel
    tau: float = 1.0  # temperature of the thoughts exchanged
    seed: int = 0

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> UserError:
            return UserError(f"genome field {name}={getattr(self, name)!r}: {why}")

        check_fields(self, "genome field ")
        positive(self, "genome field ", "d_model", "n_layer", "n_head", "d_ff", "n_loop",
                 "context", "lr", "tau")
        non_negative(self, "genome field ", "warmup", "weight_decay", "alpha")
        if self.family in TRANSFORMERS and self.d_model % self.n_head:
            raise bad("d_model", f"must be divisible by n_head={self.n_head}")
        if self.family != "looped" and self.n_loop != 1:
            raise bad("n_loop", f"only the looped family loops; {self.family} needs n_loop=1")
        if not 0.0 <= self.dropout < 1.0:
            raise bad("dropout", "must be in [0, 1)")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, where: str = "genome") -> "Genome":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"unknown key {where}.{unknown[0]} (known: {', '.join(sorted(known))})")
        try:
            return cls(**data)
        except UserError as e:  # say which member of a config
            raise UserError(str(e) if where == "genome" else f"{where}: {e}") from None

    def replace(self, **changes) -> "Genome":
        return dataclasses.replace(self, **changes)

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_head

    @property
    def n_params(self) -> int:
        """Every weight of the model this genome builds (models/; a test checks the count)."""
        d, vocab = self.d_model, VOCAB
        if self.family in BLOCKS:  # wte, wpe; per block 2 LayerNorms, qkv, proj, MLP (the
            # ssm's value, decay and gate projection in place of qkv, and no wpe)
            block = 2 * 2 * d + (3 * d * d + 3 * d) + (d * d + d) + 2 * d * self.d_ff \
                + self.d_ff + d
            wpe = self.context * d if self.family in TRANSFORMERS else 0
            return vocab * d + wpe + self.n_layer * block + 2 * d + d * vocab
        gates = GATES[self.family]  # embedding, per layer W_ih, W_hh and their biases, head
        return vocab * d + self.n_layer * gates * (2 * d * d + 2 * d) + d * vocab + vocab

    @property
    def matmul_params(self) -> int:
        """Weights that take part in a matmul per byte, per application (embeddings are lookups;
        a looped stack counts once per loop)."""
        d = self.d_model
        if self.family in BLOCKS:
            return self.n_layer * self.n_loop * (4 * d * d + 2 * d * self.d_ff) + d * VOCAB
        return self.n_layer * GATES[self.family] * 2 * d * d + d * VOCAB

    @property
    def mixing_flops(self) -> int:
        """Forward FLOPs per byte of mixing across time outside the matmul weights: attention's
        QK^T and AV at full context (Kaplan et al. 2020); the ssm's chunked scan, a weighted
        sum over up to SCAN_CHUNK earlier bytes per channel and layer, counted as the code
        computes it (a sequential scan would need a few per channel)."""
        if self.family in TRANSFORMERS:
            return 2 * self.n_layer * self.n_loop * self.context * self.d_model
        if self.family == "ssm":
            return 2 * self.n_layer * min(SCAN_CHUNK, self.context) * self.d_model
        return 0

    @property
    def flops_per_byte(self) -> int:
        """Training FLOPs per predicted byte: 3 x (2 x matmul params + mixing), forward and
        backward (the 6N rule plus attention or the scan)."""
        return 3 * (2 * self.matmul_params + self.mixing_flops)


def member_id(number: int, family: str) -> str:
    """A member's name in a run: its birth number and family (`m4-gru`)."""
    return f"m{number}-{family}"


def family_of(member_id: str) -> str:
    return member_id.split("-", 1)[1]


def describe(genomes: list[Genome], names: list[str] | None = None) -> str:
    """A table in the standard notation: d_model, d_head, d_ff, n_heads, n_layer, n_ctx, ..."""
    cols = ["member", "family", "d_model", "d_head", "d_ff", "n_heads", "n_layer", "n_loop",
            "n_ctx", "d_vocab", "params", "FLOPs/B"]
    rows = []
    for i, g in enumerate(genomes):
        attn = g.family in TRANSFORMERS
        rows.append([names[i] if names else str(i), g.family, g.d_model,
                     g.d_head if attn else "-", g.d_ff if g.family in BLOCKS else "-",
                     g.n_head if attn else "-", g.n_layer, g.n_loop, g.context, VOCAB,
                     f"{g.n_params:,}", f"{g.flops_per_byte:.3g}"])
    widths = [max(len(str(x)) for x in [c, *(r[i] for r in rows)]) for i, c in enumerate(cols)]
    lines = ["  ".join(str(c).rjust(w) for c, w in zip(row, widths)) for row in [cols, *rows]]
    return "\n".join(lines)
