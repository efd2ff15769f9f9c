"""The lineage arm: every generation's members mixed, what a chain of generations knows whole.

q0's and Slowrun's records mix every snapshot of a chain, with weights fit on held-out bytes;
the generations arm alone is its last generation. `compare.lineage` adds `lineage`: the members
of the social arm and of generations 2..G, each at its kept best weights read back from its
checkpoint, scored and mixed the way every arm's members are (weights fit on the dev slice, or
on U's held-out slice). It trains nothing; its compute is its sources' (their `train_flops`
summed), so its control at equal compute is the ensemble given G x its members
(`compare.ensemble_members`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from multitudes.evaluation.target import load_member
from multitudes.population.member import Member
from multitudes.population.population import Population
from multitudes.runs import distributed
from multitudes.training.arms import Arm, ArmContext
from multitudes.training.loop import ArmRunner


@dataclass(frozen=True)
class Lineage(Arm):
    """The members of the finished arms `sources` (generation 1, the social arm, to G) mixed."""
    sources: tuple[str, ...] = ()

    def waits_for(self) -> tuple[str, ...]:
        return self.sources

    def build(self, ctx: ArmContext, arms: dict) -> ArmRunner:
        return ctx.runner(self, kind=LineageRunner,
                          sources={name: arms[name] for name in self.sources})


class LineageRunner(ArmRunner):
    """An ArmRunner that trains nothing: its milestone scores its sources' members as one
    population of frozen members."""

    def __init__(self, *args, sources: dict[str, dict], **kwargs):
        super().__init__(*args, **kwargs)
        self.sources = sources

    def run_until(self, real_bytes: int, stop_below: float | None = None) -> None:
        """Nothing to train: its members finished in their own arms."""

    def milestone(self) -> dict:
        def score() -> dict:
            pop, kept = self._population()
            epochs = max(arm["epochs"] for arm in self.sources.values())
            with self.files.clock.phase(self.name, "held-out scoring"):
                self.scoring.best = kept
                result = self.scoring.milestone(pop, self.name, self.name, self.files, epochs)
            teachers = sum(arm.get("teacher_flops", 0) for arm in self.sources.values())
            return {**result, **({"teacher_flops": teachers} if teachers else {}),
                    "sources": list(self.sources)}
        return self.files.milestone(self.name, score)

    def _population(self) -> tuple[Population, dict]:
        """Every source member as a frozen member `ARM-ID` on the rank the FLOPs assign it (its
        genome read on every rank, its weights kept on its owner's), its training FLOPs its own
        arm's, and its kept dev bpb, step and epochs as its arm reported them."""
        entries = [(name, m) for name, arm in self.sources.items() for m in arm["members"]]
        saved = [load_member(self.files.out / m["checkpoint"]) for _, m in entries]
        group = self.pop.group
        owners = distributed.assign([genome.flops_per_byte for genome, _, _ in saved],
                                    group.world)
        members, kept = [], {}
        for (name, m), (genome, model, _), rank in zip(entries, saved, owners):
            member = Member.create(f"{name}-{m['id']}", genome, self.pop.device, rank,
                                   build=False)
            member.flops = m["train_flops"]
            if rank == group.rank:
                member.model = model.to(self.pop.device)
                kept[member.id] = {"dev_bpb": m.get("best_dev_bpb", math.inf),
                                   "step": m.get("best_step"),
                                   "epochs": m.get("epochs_to_best"),
                                   "weights": {k: v.detach().clone()
                                               for k, v in member.model.state_dict().items()}}
            members.append(member)
        pop = Population(members, self.pop.social, self.pop.train, self.pop.total_steps,
                         self.pop.device, group=group)
        first = next(iter(self.sources.values()))
        pop.steps, pop.real_bytes = first["steps"], first["real_bytes"]
        return pop, kept
