"""`compare` in the data-limited regime: the arms on U unique bytes, placed on the isolated
recipe's curve over k x U.

The training split is cut to U unique bytes read in epochs; every arm keeps each member's best
valid weights (early stopping). The isolated arm is also trained on 2U and 4U (or more) unique
bytes, and the multiplier is the unique data it needs to match the social arm's best member's
test bpb, interpolated in log(U), divided by U ("> K" when not reached). The taught arms (the
distilled students, generations 2..G) learn from finished arms (training/taught.py). Points
beyond U may be read from, and are added to, a reference record (reference_record.py).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from multitudes.errors import UserError
from multitudes.evaluation.placement import place, reference_arm, reference_point
from multitudes.training.arms import (Apart, Arm, Enlarged, Generation, Longer, Reference,
                                      Retuned, Student)
from multitudes.training.compare import Compare
from multitudes.training.lineage import Lineage
from multitudes.training.loop import ArmRunner, isolated
from multitudes.training.protocol import add_curves, register
from multitudes.training.reference_record import ReferenceRecord, corpus_digest, point_config
from multitudes.training import snapshots
from multitudes.training.snapshots import Snapshots
from multitudes.training.stream_compare import measured_arms


@register("compare", "data-limited")
class LimitedCompare(Compare):
    record: ReferenceRecord | None = None  # compare.reference_record, opened by `recorded`
    point_configs: dict[str, dict] = {}  # the config of each reference point beyond U, by arm

    def plan(self) -> list[Arm]:
        """The measured arms on U, the isolated reference on k x U for every multiple, the
        ensemble given more compute (`compare.ensemble_compute`, as epochs;
        `compare.ensemble_members`, as members), the ensemble re-tuned (`compare.retuned`),
        then the snapshot arms (training/snapshots.py), the students (taught by the social arm
        and by the isolated ensemble) and generations 2..G."""
        cfg = self.cfg
        N, U, alone = cfg.train.real_bytes, cfg.data.unique_bytes, isolated(cfg.social)
        references = [Reference(reference_arm(k), alone, reference_bytes(cfg, k),
                                unique_bytes=k * U, k=k) for k in cfg.compare.unique_multiples]
        ensemble = references[0].name
        longer = [Longer(f"{ensemble}-x{F:g}", alone, round(F * N), unique_bytes=U, compute=F)
                  for F in cfg.compare.ensemble_compute]
        longer += [Enlarged(f"{ensemble}-{M}-members", alone, N, unique_bytes=U, members=M)
                   for M in cfg.compare.ensemble_members]
        if cfg.compare.retuned:
            longer.append(Retuned(f"{ensemble}-retuned", alone, N, unique_bytes=U,
                                  recipes=cfg.compare.retuned))
        students = [Student(name, cfg.social, N, U, teacher=teacher, ranked=ensemble)
                    for name, teacher in (("distilled", "social"),
                                          ("distilled-ensemble", ensemble))
                    ] if cfg.compare.distill else []
        students += generations(cfg)
        C = cfg.compare.snapshot_cycles
        cyclic = [Snapshots("snapshots", alone, N, U, cycles=C)] if C else []
        if C and cfg.compare.snapshot_social:
            cyclic.append(Snapshots("social+snapshots", cfg.social, N, U, cycles=C))
        return ([replace(a, unique_bytes=U) for a in measured_arms(cfg)] + references
                + longer + cyclic + students)

    def check(self) -> None:
        snapshots.check(self.cfg)
        compare, K = self.cfg.compare, len(self.cfg.members)
        if compare.ensemble_members and compare.ensemble_members[0] <= K:
            raise UserError(f"compare.ensemble_members={compare.ensemble_members!r}: each must "
                            f"be more than the config's {K} members (the independent ensemble "
                            f"itself is the isolated arm)")
        families = {g.family for g in self.cfg.members}
        if lacking := sorted(set(compare.retuned) - families):
            raise UserError(f"compare.retuned.{lacking[0]}: the config has no {lacking[0]} "
                            f"member (it has {', '.join(sorted(families))})")
        for family, recipe in compare.retuned.items():  # each value in its field's range
            try:
                for genome in self.cfg.members:
                    if genome.family == family:
                        genome.replace(**recipe)  # raises on a value out of its range
            except UserError as e:
                raise UserError(f"compare.retuned.{family}: {e}") from None
        teachers = [key for key in ("distill", "generations", "snapshot_social")
                    if getattr(compare, key)]
        if self.cfg.social.channel == "complement" and teachers:
            raise UserError(f"social.channel='complement' with compare.{teachers[0]}: taught "
                            f"arms hear their teachers through the logit channel, which the "
                            f"complement channel does not blend with (one at a time)")

    def largest_multiple(self) -> int:
        return max(self.cfg.compare.unique_multiples)

    # -- the reference record ----------------------------------------------------------------
    def recorded(self, splits: dict, plan: list[Arm], resumed: Path | None) -> dict[str, dict]:
        """With `compare.reference_record`: the reference points beyond U it holds, read instead
        of trained. A resumed run (`resumed`: its directory) reads its own points back from its
        milestones, as an uninterrupted run has them, not from the record it added them to."""
        self.record, self.point_configs = None, {}
        cfg = self.cfg
        if not cfg.compare.reference_record:
            return {}
        self.record = ReferenceRecord.open(cfg.compare.reference_record)
        corpus = corpus_digest(splits)
        self.point_configs = {a.name: point_config(cfg, corpus, a.k) for a in plan
                              if isinstance(a, Reference) and a.k > 1}
        own = {name for name, c in self.point_configs.items() if resumed is not None
               and self.record.trained_by(c) == os.path.abspath(resumed)}
        found = {name: self.record.find(c) for name, c in self.point_configs.items()
                 if name not in own}
        return {name: from_record(res, self.record.path) for name, res in found.items()
                if res is not None}

    def finished(self, arm: Arm, result: dict, runner: ArmRunner, out: Path) -> None:
        if arm.name in self.point_configs:  # recorded as it finishes: a later stop loses none
            add_curves(result, runner)
            runner.files.for_writer(lambda: self.record.add(
                self.point_configs[arm.name], result, str(runner.pop.device), out))

    # -- the read-out ------------------------------------------------------------------------
    def efficiency(self, plan: list[Arm], arms: dict, arm: str) -> dict:
        """Every arm placed on the isolated recipe's curve over k x U unique bytes
        (evaluation/placement.py), and the headline: the arm's best member."""
        references = [a for a in plan if isinstance(a, Reference)]
        points = [reference_point(a.k, a.unique_bytes, arms[a.name]) for a in references]
        limited = place(points, arms, [a.name for a in references])
        head, bound = limited["placed"][arm]["best"], points[-1]["k"]
        return {"data_efficiency": head["vs_single"] if head["vs_single_flag"] != ">" else None,
                "data_efficiency_reached": head["vs_single_flag"] != ">",
                "data_efficiency_bound": bound,
                "data_efficiency_at_most": head["vs_single_flag"] == "<=",
                "data_efficiency_basis": "unique training bytes the isolated recipe's best "
                                         "member needs to reach the social arm's best member's "
                                         "test bpb (piecewise linear in log U between measured "
                                         "points), / U",
                "data_limited": limited}


def generations(cfg) -> list[Arm]:
    """Generations 2..G, each taught by its parent or by every generation before it, the last
    generation's genomes trained apart (`compare.apart`) and every generation mixed
    (`compare.lineage`)."""
    N, U, G = cfg.train.real_bytes, cfg.data.unique_bytes, cfg.compare.generations
    names = ["social"] + [f"generation-{g}" for g in range(2, G + 1)]
    arms: list[Arm] = [Generation(names[g - 1], cfg.social, N, U, g=g, parent=names[g - 2],
                                  teachers=tuple(names[:g - 1]) if cfg.compare.teachers == "all"
                                  else (names[g - 2],), bred=cfg.compare.breed)
                       for g in range(2, G + 1)]
    if G and cfg.compare.apart:
        arms.append(Apart(f"{names[-1]}-apart", isolated(cfg.social), N, U, source=names[-1]))
    if G and cfg.compare.lineage:
        arms.append(Lineage("lineage", cfg.social, N, U, sources=tuple(names)))
    return arms


def reference_bytes(cfg, k: int) -> int:
    """The real bytes the reference point on k x U reads: N on U itself (the isolated arm reads
    what the social arm reads); beyond U its own epoch budget when `compare.reference_epochs`
    gives one, else N, or `reference_min_epochs` passes over k x U where that is more."""
    N, U, own = cfg.train.real_bytes, cfg.data.unique_bytes, cfg.compare.own_epochs(k)
    if own:
        return round(k * U * own)
    return max(N, int(k * U * cfg.compare.reference_min_epochs))


def from_record(result: dict, path: Path) -> dict:
    """A reference point read from the record, as its arm in results.json: its members' numbers
    without their checkpoints, which are in the run that trained it, not in this one."""
    members = [{k: v for k, v in m.items() if k != "checkpoint"} for m in result["members"]]
    return {**result, "members": members, "from_record": str(path)}
