"""The arms of a run, each a kind of its own.

An arm's kind (a type here) decides what it trains and which arms it waits for; its name is a
label for tables and directories only, and no code reads behaviour out of it. A new arm is a new
kind: a subclass with its own `build` (and `waits_for` when it learns from another arm),
planned by a protocol (training/stream_compare.py, training/limited_compare.py).

Every arm starts from the same genomes and seeds and reads the same batches as the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

from multitudes.config.schema import EvolutionConfig, RunConfig, SocialConfig
from multitudes.population.elders import Elders
from multitudes.runs.files import RunFiles
from multitudes.runs.results import ArmResult
from multitudes.training import taught
from multitudes.training.loop import ArmRunner


@dataclass(frozen=True)
class ArmContext:
    """What every arm of a run is built from: the config, the splits, the run's files, the
    lineage to replay (or None), and whether reference arms branch finished `wsd` runs off a
    stable trunk (the stream regime's read-on)."""
    cfg: RunConfig
    splits: dict
    files: RunFiles
    replay: list[dict] | None = None
    branching: bool = False

    def runner(self, arm: Arm, cfg: RunConfig | None = None, branching: bool = False,
               elders: Elders | None = None, kind: type[ArmRunner] = ArmRunner,
               **more) -> ArmRunner:
        """The runner of `arm` (under `cfg`, the run's by default): an ArmRunner, or the
        subclass `kind` given `more` of its own arguments."""
        return kind(cfg or self.cfg, self.splits, self.files, name=arm.name,
                    social=arm.social, total_bytes=arm.total_bytes,
                    unique_bytes=arm.unique_bytes, evolution=arm.evolution,
                    replay=self.replay, branching=branching, elders=elders, **more)


@dataclass(frozen=True)
class Arm:
    """One arm: its label, how its members talk and evolve, what it reads (`total_bytes`, the
    length its schedule plans for; `unique_bytes`, data-limited: the training split cut to this
    many bytes, 0 for all)."""
    name: str
    social: SocialConfig
    total_bytes: int
    unique_bytes: int = 0
    evolution: EvolutionConfig | None = None

    def waits_for(self) -> tuple[str, ...]:
        """The arms that must finish before this one is built (their results feed it)."""
        return ()

    def describe(self) -> dict:
        """What results.json records of the arm beside its numbers (its `arm` entry): its kind,
        whether its members hear their peers, and its kind's own fields (k, teacher, g, ...).
        Readers (the report, the study) choose by these, never by the arm's name."""
        own = {f.name: getattr(self, f.name) for f in fields(self)
               if f.name not in _ARM_FIELDS}
        return {"kind": type(self).__name__.lower(), "listens": self.social.listens,
                **{k: list(v) if isinstance(v, tuple) else v for k, v in own.items()}}

    def build(self, ctx: ArmContext, arms: dict[str, ArmResult]) -> ArmRunner:
        """Its runner; `arms`: the results of the arms finished so far, by name."""
        return ctx.runner(self)


_ARM_FIELDS = {f.name for f in fields(Arm)}


@dataclass(frozen=True)
class Measured(Arm):
    """An arm whose gain is reported: the social arm (and social+evolution in the ablation)."""


@dataclass(frozen=True)
class Reference(Arm):
    """The isolated recipe the gain is measured against: read on to M x N in the stream regime
    (as finished runs off its trunk under `wsd`), or trained on k x U unique bytes."""
    k: int = 1

    def build(self, ctx: ArmContext, arms: dict) -> ArmRunner:
        return ctx.runner(self, branching=ctx.branching)


@dataclass(frozen=True)
class Longer(Arm):
    """The independent ensemble given `compute` times its compute, as that many times its real
    bytes of U (its own schedule planned for them): the control for an arm that spends more
    (generations, teachers' forwards), at equal compute. Not a point of the reference curve."""
    compute: float = 1.0


@dataclass(frozen=True)
class Enlarged(Arm):
    """The independent ensemble given more members: `members` isolated members on U, the
    config's K and then copies of them with seeds of their own (`enlarged`), every one read for
    the run's N bytes: the control at equal compute for an arm that spends more as more models
    (generations, snapshots), where `Longer` spends it as more epochs."""
    members: int = 0

    def build(self, ctx: ArmContext, arms: dict) -> ArmRunner:
        return ctx.runner(self, replace(ctx.cfg, members=enlarged(ctx.cfg.members, self.members)))


@dataclass(frozen=True)
class Retuned(Arm):
    """The independent ensemble with some families' recipes re-tuned on the dev slice at the
    run's horizon (`compare.retuned`, e.g. heavier dropout at 64 epochs than at 16): the same
    shapes, seeds and batches, other recipes. The control given the same tuning care as the
    arms it is compared with where a longer horizon moves the best regularization."""
    recipes: dict = field(default_factory=dict)

    def build(self, ctx: ArmContext, arms: dict) -> ArmRunner:
        return ctx.runner(self, replace(ctx.cfg, members=retuned(ctx.cfg.members, self.recipes)))


def retuned(members: list, recipes: dict) -> list:
    """`members` with each family named in `recipes` given its fields there."""
    return [g.replace(**recipes.get(g.family, {})) for g in members]


# A copy's seed: its original's plus this times the round it belongs to (member j is in round
# j // K), far from the member seeds of a study's seeds (100 s + i, study/plan.py).
COPY_SEED_STRIDE = 10_007


def enlarged(members: list, count: int) -> list:
    """`count` genomes: `members` and then member j mod K again for j = K..count - 1, each copy
    with its own seed, so it starts from another initialisation and draws its own dropout."""
    K = len(members)
    return [members[j % K].replace(seed=members[j % K].seed + COPY_SEED_STRIDE * (j // K))
            if j >= K else members[j] for j in range(count)]


@dataclass(frozen=True)
class Student(Arm):
    """One member (the genome of the member of `ranked` the dev slice ranks first) taught by
    the finished arm `teacher`'s frozen members (training/taught.py)."""
    teacher: str = ""
    ranked: str = ""

    def waits_for(self) -> tuple[str, ...]:
        return (self.teacher, self.ranked)

    def build(self, ctx: ArmContext, arms: dict) -> ArmRunner:
        best = min(arms[self.ranked]["members"], key=lambda m: m["best_dev_bpb"])
        return _taught(self, ctx, [arms[self.teacher]], [taught.genome_of(ctx.files, best)])


@dataclass(frozen=True)
class Generation(Arm):
    """Generation g: K members bred from generation g - 1 (`parent`; with `bred` false, the
    founders' genomes again) and taught by the finished arms `teachers` (the parent alone, or
    every generation before it)."""
    g: int = 2
    parent: str = ""
    teachers: tuple[str, ...] = ()
    bred: bool = True

    def waits_for(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((self.parent, *self.teachers)))

    def build(self, ctx: ArmContext, arms: dict) -> ArmRunner:
        members = taught.offspring_of(ctx.cfg, ctx.files, arms[self.parent], self.g) \
            if self.bred else ctx.cfg.members
        return _taught(self, ctx, [arms[t] for t in self.teachers], members)


@dataclass(frozen=True)
class Apart(Arm):
    """The genomes of the finished arm `source` (a generation) trained again on U alone, from
    scratch: what the choice of genomes gives without any teaching."""
    source: str = ""

    def waits_for(self) -> tuple[str, ...]:
        return (self.source,)

    def build(self, ctx: ArmContext, arms: dict) -> ArmRunner:
        genomes = [taught.genome_of(ctx.files, m) for m in arms[self.source]["members"]]
        return ctx.runner(self, taught.student_config(ctx.cfg, genomes))


def _taught(arm: Arm, ctx: ArmContext, teachers: list[dict], members: list) -> ArmRunner:
    """The runner of `members` listening to the frozen members of the finished arms
    `teachers`, each arm's dev-fit mixture weighted equally."""
    cfg = taught.student_config(ctx.cfg, members)
    runner = ctx.runner(arm, cfg, elders=taught.elders_of(ctx.cfg, ctx.files, teachers))
    runner.pop.elder_weight = ctx.cfg.compare.elder_weight
    return runner
