"""An arm's generations as they happen: when one is due, who dies and who is born, and the
lineage rows that record it.

The plan is decided by `generations.plan` on rank 0 from this arm's own generator (or read back
from a finished run's lineage, for `multitudes replay`); the population carries it out
(`Population.give_birth`). The generator and the next member number are part of the arm's
checkpoint (`state` / `load_state`), so a resumed run plans the same generations.
"""

from __future__ import annotations

import random

from multitudes.evolution import operators
from multitudes.evolution import generations
from multitudes.config.schema import EvolutionConfig
from multitudes.config.genome import Genome
from multitudes.population.population import Population


class Births:
    def __init__(self, arm: str, cfg: EvolutionConfig | None, founders: list[Genome],
                 replay: list[dict] | None = None):
        """`cfg`: None or `every = 0`: no evolution; `replay`: take the births and deaths from
        these lineage rows instead of deciding them."""
        self.arm = arm
        self.cfg = cfg if cfg is not None and cfg.every else None
        self.replay = replay
        self.rng = random.Random(cfg.seed if cfg else 0)
        self.next_number = len(founders)
        self.budget = generations.default_budget(cfg, founders)

    def due(self, step: int, target: int) -> bool:
        """A generation follows the dev evaluation of every `every`-th step, not the last."""
        return self.cfg is not None and step % self.cfg.every == 0 and step < target

    def founders(self, pop: Population) -> list[dict]:
        """The lineage's first rows: the founders' births (none without evolution)."""
        if self.cfg is None:
            return []
        return [{"arm": self.arm, "event": "birth", "member": m.id, "parents": [],
                 "genome": m.genome.to_dict(), "ops": [], "step": 0, "real_bytes": 0,
                 "fitness": None} for m in pop.members]

    def generation(self, pop: Population, bytes_per_step: int, dev_bpb
                   ) -> list[tuple[list[dict], str]]:
        """The worst die and newborns take their places; returns each death-and-birth's lineage
        rows and a line for the user. `dev_bpb(model)`: a newborn's first fitness."""
        if self.replay is not None:
            deaths, births = generations.from_lineage(self.replay, self.arm, pop.steps)
        else:
            ages = {m.id: (pop.real_bytes - m.birth_bytes) // bytes_per_step for m in pop.members}
            deaths, births = pop.group.on_main(lambda: generations.plan(
                pop.members, self.cfg, self.rng, self.budget, self.next_number, ages))
        self.next_number += len(births)
        done = []
        for dead_id, birth in zip(deaths, births):
            dead = pop.member(dead_id)
            genome = Genome.from_dict(birth["genome"])
            parent = pop.member(birth["parents"][0])
            same_shape = all(getattr(genome, k) == getattr(parent.genome, k)
                             for k in operators.ARCHITECTURE)
            newborn = pop.give_birth(  # inheriting as in population-based training
                dead_id, birth["member"], genome, dev_bpb,
                parent.id if self.cfg.inherit == "parent" and same_shape else None)
            newborn.childhood_left = self.cfg.childhood_steps
            newborn.childhood_alpha = self.cfg.childhood_alpha
            when = {"step": pop.steps, "real_bytes": pop.real_bytes}
            rows = [{"arm": self.arm, "event": "death", "member": dead.id, **when,
                     "fitness": dead.fitness, "age_bytes": pop.real_bytes - dead.birth_bytes},
                    {"arm": self.arm, "event": "birth", **birth, **when,
                     "fitness": newborn.fitness, "inherit": self.cfg.inherit}]
            done.append((rows, f"{self.arm} generation at step {pop.steps}: {dead.id} "
                               f"({dead.fitness:.3f} bpb) dies, {newborn.id} is born of "
                               f"{' x '.join(birth['parents'])} "
                               f"({', '.join(birth['ops']) or 'clone'})"))
        return done

    def state(self) -> dict:
        return {"evolution_rng": _lists(self.rng.getstate()), "next_number": self.next_number}

    def load_state(self, state: dict) -> None:
        self.rng.setstate(_tuples(state["evolution_rng"]))
        self.next_number = state["next_number"]


def _lists(state):
    """random.Random's state (nested tuples) as JSON lists."""
    return [_lists(x) for x in state] if isinstance(state, tuple) else state


def _tuples(state):
    return tuple(_tuples(x) for x in state) if isinstance(state, list) else state
