"""The `[compare]` section: the arms a comparison trains beside the social arm, and how.

Its stream-regime fields read the isolated arm on; its data-limited fields plan the reference
curve, the students, the generations and the snapshot arm (training/limited_compare.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from multitudes.config.typed import check_fields, positive, within
from multitudes.errors import UserError

# Each generation is a whole arm trained for N real bytes: a thousand is years on a CPU, and a
# larger number is a typo, refused before anything is written (snapshot cycles alike).
MAX_GENERATIONS = 1000
# The ensemble given more compute (compare.ensemble_compute) matches G generations or C cycles;
# beyond a hundred times its epochs it is a typo.
MAX_COMPUTE = 100
# The ensemble given more members (compare.ensemble_members) matches G generations of K members;
# each member is a whole model trained on U, and more than this is a typo.
MAX_MEMBERS = 256
# The genome fields the re-tuned ensemble (compare.retuned) may change: its recipe, never its
# shape (a wider or deeper member is another model, not the same one tuned again).
RECIPE_FIELDS = ("lr", "warmup", "weight_decay", "dropout")


@dataclass
class CompareConfig:
    multiplier: float = 2.0
    """M: the isolated arm reads M x the social arm's real bytes, for the efficiency curve."""
    read_on_points: int = 4
    """`wsd` schedule: finished isolated runs (cooldowns branched off its stable trunk) at
    N x (1 + j (M - 1) / points), j = 1..points, read until one reaches the social arm."""
    evolution_ablation: bool = False
    """Also run `social+evolution` beside a `social` arm without evolution (the ablation)."""
    unique_multiples: list[int] = field(default_factory=lambda: [1, 2, 4])
    """Data-limited: the isolated reference is trained on k x U unique bytes for each k here
    (the data-scaling curve every arm is placed on); starts at 1, increasing."""
    distill: bool = False
    """Data-limited: add the `distilled` arm, one member (the genome of the isolated member the
    dev slice ranks first) trained from scratch on U with the social arm's dev-fit mixture as
    its teacher, and its control `distilled-ensemble`, taught by the isolated members' mixture:
    the population's knowledge at the inference cost of one member."""
    generations: int = 0
    """Data-limited: G >= 2 adds generations 2..G (arms `generation-g`). Generation 1 is the
    social arm; each next one is born from scratch, its genomes bred from the last by dev
    fitness (tournament, crossover, mutation: the [evolution] settings), and learns from the
    bytes, its peers and the frozen dev-fit mixture of its elders (0: none)."""
    elder_weight: float = 0.5
    """Generations: the elders' share of a listener's target beside its living peers."""
    teachers: Literal["parent", "all"] = "parent"
    """Generations: generation g is taught by generation g - 1 (`parent`, chain distillation)
    or by every generation before it, each generation's dev-fit mixture weighted equally
    (`all`; Slowrun found the immediate predecessor the better teacher)."""
    breed: bool = True
    """Generations: each generation's genomes bred from the last by dev fitness; false: the
    founders' genomes in every generation (chain distillation with evolution off)."""
    apart: bool = False
    """Generations: also train the last generation's genomes apart on U (channel closed, no
    elders), mixed the same way: what evolution's choice of genomes gives without teaching."""
    lineage: bool = False
    """Generations: also add `lineage`, every member of generations 1..G (the social arm and
    generations 2..G) mixed with weights fit as every arm's: what the whole chain knows, as q0
    and Slowrun mix every snapshot of a chain (training/lineage.py). Trains nothing."""
    student_alpha: float = 0.0
    """Data-limited: the listen weight of every taught arm's members (the distilled students,
    generations 2..G); 0: their genome's alpha, the social arm's. A student wants to hear its
    teacher more than a social member its peers (docs/results.md, "Where data binds")."""
    reference_min_epochs: float = 0.0
    """Data-limited: a reference arm on k x U reads at least this many epochs of it (more real
    bytes than the other arms when k x U x epochs > N), so that each point of the data-scaling
    curve is trained to its own best rather than cut short (0: every arm reads N)."""
    reference_epochs: list[float] = field(default_factory=list)
    """Data-limited: one epoch budget per reference point beyond U (for k = unique_multiples[1:]
    in order): the point on k x U reads exactly that many passes over it, its own planned
    schedule, as a sweep on the dev slice chose for it (`benchmarks/sweep.py --data`); [] (the
    default): each reads N real bytes, or `reference_min_epochs` passes where that is more."""
    snapshot_cycles: int = 0
    """Data-limited: C >= 2 adds the `snapshots` arm, q0's recipe on each member's own lineage
    (training/snapshots.py): the isolated members' N real bytes cut into C cycles of a cosine
    schedule each; at a cycle's end its best dev weights are kept as a snapshot and the weights
    perturbed (`snapshot_shrink`, `snapshot_noise`); from the second cycle on each member also
    listens to its own previous snapshot; all C x K snapshots mixed by dev-fit weights (0: no
    such arm)."""
    snapshot_alpha: float = 0.45
    """The snapshot arm: how much a member listens to its own previous snapshot (q0: 0.45)."""
    snapshot_tau: float = 1.2
    """The snapshot arm: the temperature of that teaching, on both sides (q0: 1.2)."""
    snapshot_shrink: float = 1.0
    """The snapshot arm: at a cycle boundary the weights become shrink x weights + noise x a
    fresh initialisation from the member's genome (shrink-and-perturb; 1 and 0: unchanged)."""
    snapshot_noise: float = 0.0
    """The snapshot arm: see `snapshot_shrink`."""
    snapshot_social: bool = False
    """Also run `social+snapshots`: the social arm's members on the same cycles, hearing their
    peers and (with `elder_weight`) their own previous snapshot."""
    ensemble_compute: list[float] = field(default_factory=list)
    """Data-limited: for each F here (> 1) add `isolated-xF`, the independent ensemble given F
    times its compute as F times its real bytes of U (its members' own schedule planned for
    them): the control a taught or cyclic arm that spends more must beat at equal compute (the
    snapshot arm with C cycles spends 1 + (C - 1) / 3C: each cycle after the first runs a
    teacher's forward, a third of a training step). []: none."""
    ensemble_members: list[int] = field(default_factory=list)
    """Data-limited: for each M here (more than the K members) add `isolated-M-members`, the
    independent ensemble given M / K times its compute as M members on U: the K founders and
    M - K more of the same genomes, member j a copy of member j mod K with a seed of its own
    (training/arms.py, `Enlarged`). The control at equal compute for an arm that spends it on
    more models (G generations of K: M = G x K; q0's snapshots). []: none."""
    retuned: dict[str, dict] = field(default_factory=dict)
    """Data-limited: each named family's recipe re-tuned on the dev slice at the run's horizon,
    e.g. `{gru = {dropout = 0.2}, looped = {weight_decay = 1.0}}` (fields among lr, warmup,
    weight_decay, dropout; `--set compare.retuned.gru.dropout=0.2`): adds `isolated-retuned`,
    the independent ensemble with those recipes, the other families' as they are. The control
    given the same tuning care at a long horizon as at the one its recipes were swept at
    (`benchmarks/sweep.py --train real_bytes=...`). {}: none."""
    mixture_fit: Literal["dev", "unique"] = "dev"
    """Data-limited: where the mixtures' weights are fit. `dev`: the dev slice of valid (the
    slice every member's best weights are chosen on); `unique`: a slice carved out of each
    arm's own unique bytes and never trained on (Slowrun's rule: no data beyond U for the
    mixture), `mixture_fraction` of each of its pieces."""
    mixture_fraction: float = 0.0625
    """With `mixture_fit = "unique"`: the share of each arm's unique bytes held out for the
    mixture's weights (the tail of each of its 16 pieces), in (0, 0.5]."""
    reference_record: str = ""
    """Data-limited: a JSON file that keeps the reference's points beyond U, computed once
    (training/reference_record.py): a point found there with the same corpus, members, recipe,
    U, k and epoch floor is read, not trained; a point trained is added. "": train them all."""

    def own_epochs(self, k: int) -> float:
        """The epoch budget `reference_epochs` gives the reference point on k x U (0: none)."""
        if k == 1 or not self.reference_epochs:
            return 0.0
        return self.reference_epochs[self.unique_multiples.index(k) - 1]

    def __post_init__(self) -> None:
        check_fields(self, "compare.")
        if not self.multiplier >= 1:
            raise UserError(f"compare.multiplier={self.multiplier}: must be at least 1")
        positive(self, "compare.", "read_on_points")
        k = self.unique_multiples
        if not isinstance(k, list) or len(k) < 2 or k[0] != 1 or not all(
                type(x) is int for x in k) or any(b <= a for a, b in zip(k, k[1:])):
            raise UserError(f"compare.unique_multiples={k!r}: expected increasing integers "
                            f"starting at 1, at least two (e.g. [1, 2, 4, 8, 16]), so that the "
                            f"reference curve brackets U")
        if self.distill and self.evolution_ablation:
            raise UserError("compare.distill and compare.evolution_ablation: one at a time")
        if not (self.generations == 0 or 2 <= self.generations <= MAX_GENERATIONS):
            raise UserError(f"compare.generations={self.generations}: 0 (none) or at least 2 "
                            f"(generation 1 is the social arm), at most {MAX_GENERATIONS}")
        within(self, "compare.", "elder_weight", 0, 1)
        if not (self.snapshot_cycles == 0 or 2 <= self.snapshot_cycles <= MAX_GENERATIONS):
            raise UserError(f"compare.snapshot_cycles={self.snapshot_cycles}: 0 (no snapshot "
                            f"arm) or at least 2, at most {MAX_GENERATIONS}")
        within(self, "compare.", "snapshot_alpha", 0, 1)
        within(self, "compare.", "snapshot_tau", 0, 10, open_=True)
        within(self, "compare.", "snapshot_shrink", 0, 1)
        within(self, "compare.", "snapshot_noise", 0, 1)
        if not self.generations and (self.apart or self.lineage or self.teachers != "parent"
                                     or not self.breed):
            raise UserError("compare.apart, compare.lineage, compare.teachers and compare.breed "
                            "shape the generations: they need compare.generations >= 2")
        F = self.ensemble_compute
        if not isinstance(F, list) or not all(
                type(x) in (int, float) and 1 < x <= MAX_COMPUTE for x in F) or any(
                b <= a for a, b in zip(F, F[1:])):
            raise UserError(f"compare.ensemble_compute={F!r}: expected increasing numbers in "
                            f"(1, {MAX_COMPUTE}] (each a multiple of the ensemble's compute, "
                            f"e.g. [1.2917]), or []")
        M = self.ensemble_members
        if not isinstance(M, list) or not all(
                type(x) is int and 2 <= x <= MAX_MEMBERS for x in M) or any(
                b <= a for a, b in zip(M, M[1:])):
            raise UserError(f"compare.ensemble_members={M!r}: expected increasing integers in "
                            f"[2, {MAX_MEMBERS}] (each the members of an enlarged independent "
                            f"ensemble, more than the config's K), or []")
        check_recipes(self.retuned)
        if not 0 < self.mixture_fraction <= 0.5:
            raise UserError(f"compare.mixture_fraction={self.mixture_fraction}: must be in "
                            f"(0, 0.5] (a held-out slice of at most half of U)")
        if self.snapshot_social and not self.snapshot_cycles:
            raise UserError("compare.snapshot_social needs compare.snapshot_cycles >= 2")
        if not 0 <= self.student_alpha < math.inf:
            raise UserError(f"compare.student_alpha={self.student_alpha}: must be a finite "
                            f"number >= 0 (0: the students' genome's alpha)")
        if not 0 <= self.reference_min_epochs < math.inf:
            raise UserError(f"compare.reference_min_epochs={self.reference_min_epochs}: must "
                            f"be a finite number >= 0")
        e = self.reference_epochs
        if not isinstance(e, list) or (e and len(e) != len(k) - 1) or not all(
                type(x) in (int, float) and 0 < x < math.inf for x in e):
            raise UserError(f"compare.reference_epochs={e!r}: expected [] or one positive "
                            f"number of epochs per reference point beyond U ({len(k) - 1} for "
                            f"compare.unique_multiples={k!r})")


def check_recipes(retuned) -> None:
    """`compare.retuned`: a table of families, each a non-empty table of recipe fields with
    numbers (the families and the values' ranges are checked against the members, where the
    run is planned)."""
    if not isinstance(retuned, dict):
        raise UserError(f"compare.retuned={retuned!r}: expected a table of families, e.g. "
                        f"{{gru = {{dropout = 0.2}}}}")
    for family, recipe in retuned.items():
        key = f"compare.retuned.{family}"
        if not isinstance(recipe, dict) or not recipe:
            raise UserError(f"{key}={recipe!r}: expected a table of recipe fields "
                            f"({', '.join(RECIPE_FIELDS)})")
        for name, value in recipe.items():
            if name not in RECIPE_FIELDS:
                raise UserError(f"{key}.{name}: not a recipe field (the re-tuned ensemble "
                                f"changes {', '.join(RECIPE_FIELDS)}; never a member's shape)")
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise UserError(f"{key}.{name}={value!r}: expected a number")
