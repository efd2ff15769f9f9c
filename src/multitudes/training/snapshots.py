"""The snapshot arm: q0's recipe (2026) on each member's own lineage, the control the seed's
method must beat in the data-limited regime.

The members' N real bytes of U are cut into C cycles, each a cosine schedule of its own
(population/schedule.py). At the end of a cycle each member's best dev weights within it are kept
as a snapshot (written to `members/ARM/ID-cC`, the early-stopping rule every data-limited arm
follows), and its weights are shrunk and perturbed toward a fresh initialisation from its genome
(shrink-and-perturb, Ash and Adams 2020; `compare.snapshot_shrink`, `snapshot_noise`). From the
second cycle on each member also listens to its own previous snapshot, frozen (chain
distillation: `compare.snapshot_alpha`, `snapshot_tau` on both sides). At the end all C x K
snapshots are scored and mixed with weights fit on the dev slice: the arm's members in
results.json are its snapshots.

With `compare.snapshot_social` the social arm's members run the same cycles and hear their
peers beside their own snapshot (`compare.elder_weight` its share).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from multitudes.config.schema import RunConfig
from multitudes.data.splits import steps_for
from multitudes.errors import UserError
from multitudes.evaluation.target import load_member
from multitudes.models import build
from multitudes.population.elders import Elders, forward_flops
from multitudes.population.member import Member
from multitudes.population.population import Population
from multitudes.training import state
from multitudes.training.arms import Arm, ArmContext
from multitudes.training.loop import ArmRunner


@dataclass(frozen=True)
class Snapshots(Arm):
    """Its members on `cycles` cycles, each listening to its own previous snapshot."""
    cycles: int = 2

    def build(self, ctx: ArmContext, arms: dict) -> ArmRunner:
        compare = ctx.cfg.compare
        members = [g.replace(alpha=compare.snapshot_alpha, tau=compare.snapshot_tau)
                   for g in ctx.cfg.members]
        return ctx.runner(self, replace(ctx.cfg, members=members), kind=SnapshotRunner,
                          cycles=self.cycles)


def check(cfg: RunConfig) -> None:
    """A snapshot arm this config cannot run, before any arm trains."""
    cycles = cfg.compare.snapshot_cycles
    if not cycles:
        return
    steps = steps_for(cfg.train.real_bytes, cfg.train.batch_size, cfg.context)  # the arm's
    if cfg.train.schedule != "cosine":
        raise UserError(f"compare.snapshot_cycles={cycles} needs train.schedule = \"cosine\" "
                        f"(each cycle is a cosine of its own)")
    if steps // cycles <= max(g.warmup for g in cfg.members):
        raise UserError(f"compare.snapshot_cycles={cycles}: a cycle of {steps // cycles} steps "
                        f"of the {steps} the arm takes is no longer than the members' warm-up; "
                        f"use fewer cycles or more real bytes")


class SnapshotRunner(ArmRunner):
    """An ArmRunner that ends a cycle at each boundary: keeps the snapshots, perturbs, and
    makes each member's previous snapshot its teacher."""

    def __init__(self, *args, cycles: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.cycles, self.cycles_done = cycles, 0
        self.pop.cycles = cycles
        self.pop.elder_weight = self.cfg.compare.elder_weight

    def boundary(self, c: int) -> int:
        """The step cycle c (1-based) ends at."""
        length = max(1, self.pop.total_steps // self.cycles)
        return self.pop.total_steps if c == self.cycles else c * length

    def run_until(self, real_bytes: int, stop_below: float | None = None) -> None:
        target = self.stream.steps_for(real_bytes)
        while self.cycles_done < self.cycles and self.boundary(self.cycles_done + 1) <= target:
            super().run_until(self.boundary(self.cycles_done + 1) * self.stream.bytes_per_batch)
            self.end_cycle()
        super().run_until(real_bytes, stop_below)

    def end_cycle(self) -> None:
        """Keep each member's snapshot of the cycle just ended, perturb it for the next and
        make the snapshot its teacher; checkpoint, so a resume starts the next cycle."""
        c = self.cycles_done + 1
        for m in self.pop.members:
            if not self.pop.owns(m):
                continue
            kept = self.scoring.best.get(m.id) or {
                "dev_bpb": m.fitness, "step": self.pop.steps, "epochs": None,
                "weights": {k: v.detach().clone() for k, v in m.model.state_dict().items()}}
            state.save_member(self.snapshot_path(m.id, c), snapshot_id(m.id, c), m.genome,
                              kept["weights"], {"arm": self.name, "cycle": c,
                                                "dev_bpb": kept["dev_bpb"],
                                                "step": kept["step"], "epochs": kept["epochs"],
                                                "corpus": self.cfg.data.corpus})
            if c < self.cycles:
                self._perturb(m)
        self.scoring.best = {}  # the next cycle keeps its own best
        self.cycles_done = c
        if c < self.cycles:
            self._teachers(c)
        self.save()

    def snapshot_path(self, member_id: str, c: int):
        return self.files.member_dir(self.name, snapshot_id(member_id, c))

    def _perturb(self, m: Member) -> None:
        """shrink x weights + noise x a fresh initialisation drawn from the member's stream."""
        shrink, noise = self.cfg.compare.snapshot_shrink, self.cfg.compare.snapshot_noise
        if shrink == 1 and noise == 0:
            return
        with m.rng_scope():
            fresh = build(m.genome).to(self.pop.device).state_dict()
        with torch.no_grad():
            for name, w in m.model.state_dict().items():
                if w.is_floating_point():
                    w.mul_(shrink).add_(fresh[name], alpha=noise)

    def _teachers(self, c: int) -> None:
        """Each member's teacher: its snapshot of cycle c, frozen, read back from its file."""
        device = self.pop.device
        self.pop.own_elders = [
            Elders([load_member(self.snapshot_path(m.id, c))[1].to(device)], [1.0],
                   tau=self.cfg.compare.snapshot_tau,
                   forward_flops_per_byte=forward_flops([m.genome]))
            if self.pop.owns(m) else None for m in self.pop.members]

    def extra_state(self) -> dict:
        return {**super().extra_state(), "cycles_done": self.cycles_done}

    def prepare_elders(self, extra: dict) -> None:
        """On resume, each member's teacher of the cycle the checkpoint is in, rebuilt from its
        file before the checkpoint's carried states of the teachers are loaded."""
        done = int(extra.get("cycles_done", 0))
        if 0 < done < self.cycles:
            self._teachers(done)

    def load_extra_state(self, extra: dict) -> None:
        super().load_extra_state(extra)
        self.cycles_done = int(extra.get("cycles_done", 0))

    def milestone(self) -> dict:
        """Every snapshot of every member scored on valid and test, and mixed on dev."""
        def score() -> dict:
            pop, kept = self._snapshot_population()
            with self.files.clock.phase(self.name, "held-out scoring"):
                live, self.scoring.best = self.scoring.best, kept
                try:
                    result = self.scoring.milestone(pop, self.name, self.name, self.files,
                                                    self.stream.epochs_done)
                finally:
                    self.scoring.best = live
            result["train_flops"] = sum(m.flops for m in self.pop.members)
            result["teacher_flops"] = sum(m.teacher_flops for m in self.pop.members)
            result["cycles"] = self.cycles
            return result
        return self.files.milestone(self.name, score)

    def _snapshot_population(self) -> tuple[Population, dict]:
        """The C x K snapshots as a population of frozen members (each on its owner's rank),
        and each one's dev bpb, step and epochs when it was kept, as a milestone reports them."""
        members, kept = [], {}
        for c in range(1, self.cycles + 1):
            for m in self.pop.members:
                model = None
                if self.pop.owns(m):
                    _, model, info = load_member(self.snapshot_path(m.id, c))
                    model = model.to(self.pop.device)
                    dev = info.get("dev_bpb")
                    kept[snapshot_id(m.id, c)] = {
                        "dev_bpb": math.inf if dev is None else dev, "step": info.get("step"),
                        "epochs": info.get("epochs"),
                        "weights": {k: v.detach().clone() for k, v in model.state_dict().items()}}
                members.append(Member(snapshot_id(m.id, c), m.genome, model, None, m.rng_state,
                                      rank=m.rank))
        pop = Population(members, self.pop.social, self.pop.train, self.pop.total_steps,
                         self.pop.device, group=self.pop.group)
        pop.steps, pop.real_bytes = self.pop.steps, self.pop.real_bytes
        return pop, kept


def snapshot_id(member_id: str, c: int) -> str:
    """Member `m0-gru`'s snapshot of cycle 3: `m0-gru-c3`."""
    return f"{member_id}-c{c}"
