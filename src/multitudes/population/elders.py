"""Elders: frozen members of an earlier population whose mixture a population learns from.

The `distilled` arms of the data-limited regime (chain distillation's step): a member listens
to its living peers, if any, and to the elders, whose distribution is the mixture of theirs
with weights fit on the dev slice. An elder never trains;
a stateful one (an RNN) carries its state along the lanes as the members do, and that state is
part of the arm's checkpoint, so a resume is exact. Their forwards cost compute the listeners'
training FLOPs do not count: `forward_flops` for their genomes, and each listener's
`teacher_flops` counter (population.py) keeps its share.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from multitudes.models import detach_state


def forward_flops(genomes) -> float:
    """Forward FLOPs per byte of frozen models of these genomes (training is 3x a forward)."""
    return sum(g.flops_per_byte for g in genomes) / 3


@dataclass
class Elders:
    models: list[torch.nn.Module]
    weights: list[float]  # the mixture's weights (sum to one)
    states: list[object] = field(default_factory=list)
    tau: float = 1.0  # the temperature of their thoughts (a snapshot teaches at q0's 1.2)
    # their forwards' FLOPs per byte (a third of each one's training FLOPs per byte): the
    # compute of hearing them, which the listeners' own training FLOPs do not include
    forward_flops_per_byte: float = 0.0

    def __post_init__(self) -> None:
        for model in self.models:
            model.eval()
            model.requires_grad_(False)
        if not self.states:
            self.states = [None] * len(self.models)

    @torch.no_grad()
    def thoughts(self, x: torch.Tensor, continues: bool, autocast) -> torch.Tensor:
        """The elders' mixture over the next byte at every position of x: (B, T, 256)."""
        mixed = None
        for j, (model, w) in enumerate(zip(self.models, self.weights)):
            with autocast:
                if getattr(model, "stateful", False):
                    z, state = model.decode(x, self.states[j] if continues else None)
                    self.states[j] = detach_state(state)
                else:
                    z = model(x)
            z = z.float() if self.tau == 1 else z.float() / self.tau
            p = w * F.softmax(z, dim=-1)
            mixed = p if mixed is None else mixed + p
        return mixed

    def state_tensors(self, prefix: str = "e") -> dict[str, dict[str, torch.Tensor]]:
        """The carried states, as checkpoint tensors (elder j: `e{j}.state`)."""
        out = {}
        for j, state in enumerate(self.states):
            if state is not None:
                parts = state if isinstance(state, tuple) else (state,)
                out[f"{prefix}{j}.state"] = {str(k): t for k, t in enumerate(parts)}
        return out

    def load_state_tensors(self, tensors: dict, tuples: list[bool], device,
                           prefix: str = "e") -> None:
        for j in range(len(self.models)):
            named = tensors.get(f"{prefix}{j}.state")
            if named is None:
                self.states[j] = None
                continue
            parts = tuple(named[str(k)].to(device) for k in range(len(named)))
            self.states[j] = parts if tuples[j] else parts[0]
