"""results.json: its records, its schema version, and the reader that upgrades older files.

One vocabulary from the run loop to the report: a dev evaluation is the same record in
metrics.jsonl, in an arm's `curve` and in its `finished` runs, with the keys `real_bytes`,
`best_dev_bpb`, `consensus_dev_bpb` and `members` ({id: dev_bpb}). Schema 1 (a results.json
without a "schema" key) named the curve's `best_bpb` and `consensus_bpb`; schema 2 said an arm's
kind only by its name, and kept the ensemble's placement under a label among the placed arms.
Schema 3 gives every arm an `arm` entry (its kind and whether it listens: training/arms.py) and
the ensemble's placement its own key. `read` upgrades older files, so every reader sees schema 3.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypedDict

from multitudes.errors import UserError
from multitudes.runs.checkpoint import read_json

SCHEMA = 3
SCHEMA_1_CURVE = {"best_bpb": "best_dev_bpb", "consensus_bpb": "consensus_dev_bpb"}


class MemberResult(TypedDict, total=False):
    """One member in an arm's result: who it is and its scores with its best dev weights."""
    id: str
    family: str
    params: int
    valid_bpb: float
    test_bpb: float
    best_dev_bpb: float
    best_step: int
    epochs_to_best: float  # data-limited
    train_flops: float
    flops_per_byte: float
    checkpoint: str  # relative to the run directory


class ArmResult(TypedDict, total=False):
    """One arm's entry in results.json, as its runner's milestone returns it (plus `arm`, what
    the arm is, and `curve`): the members, the best member, the consensus (uniform mixture),
    the dev-fit mixture (data-limited), and the dev curve. What every reader (the compare's
    read-out, the report, the study, the benchmarks) reads of an arm."""
    arm: dict  # training/arms.py Arm.describe(): kind, listens, the kind's own fields
    members: list[MemberResult]
    best_member: str
    best_valid_bpb: float
    best_test_bpb: float
    consensus_dev_bpb: float
    consensus_valid_bpb: float
    consensus_test_bpb: float
    mixture_dev_bpb: float  # data-limited: weights fit on the dev slice
    mixture_valid_bpb: float
    mixture_test_bpb: float
    mixture_weights: dict[str, float]
    mixture_fit: str  # "unique" when fit on a slice held out of U (absent: the dev slice)
    mixture_fit_bytes: int
    mixture_fit_bpb: float  # in-sample, on that slice
    real_bytes: int
    steps: int
    epochs: float
    train_flops: float
    teacher_flops: float  # frozen teachers' forwards heard (absent: none)
    generated_bytes: int
    valid_blocks: dict  # per-block bits on valid beyond the dev slice, for paired gaps
    curve: list[dict]  # DevPoint.to_json() of every dev evaluation
    finished: list[dict]  # FinishedRun.to_json(): `wsd` runs off the trunk
    from_record: str  # a reference point read from a record, not trained here


@dataclass(frozen=True)
class DevPoint:
    """One dev-slice evaluation of an arm: a point of its learning curve."""
    real_bytes: int
    best_dev_bpb: float
    consensus_dev_bpb: float
    members: dict[str, float]
    branch: int | None = None  # `wsd`: the step a cooldown branch ends at (None: the trunk)

    @classmethod
    def of_row(cls, row: dict) -> "DevPoint":
        """From a dev row of the history (metrics.jsonl)."""
        return cls(row["real_bytes"], row["best_dev_bpb"], row["consensus_dev_bpb"],
                   {k: v["dev_bpb"] for k, v in row["members"].items()}, row.get("branch"))

    def to_json(self) -> dict:
        point = asdict(self)
        if self.branch is None:
            del point["branch"]
        return point


@dataclass(frozen=True)
class FinishedRun:
    """A finished `wsd` run of `target` bytes (a cooldown off the trunk) on the dev slice."""
    target: int
    real_bytes: int
    best_dev_bpb: float
    consensus_dev_bpb: float
    step: int
    members: dict[str, float]

    @classmethod
    def of_row(cls, target: int, row: dict, step: int) -> "FinishedRun":
        point = DevPoint.of_row(row)
        return cls(target, point.real_bytes, point.best_dev_bpb, point.consensus_dev_bpb, step,
                   point.members)

    def to_json(self) -> dict:
        return asdict(self)


def upgrade(results: dict) -> dict:
    """A results document in schema 3 (older ones upgraded; a newer one refused)."""
    schema = results.get("schema", 1)
    if not isinstance(schema, int) or not 1 <= schema <= SCHEMA:
        raise UserError(f"results.json has schema {schema!r}; this multitudes reads 1 to {SCHEMA}")
    arms = results.get("arms") if isinstance(results.get("arms"), dict) else {}
    if schema == 1:
        for arm in arms.values():
            if isinstance(arm, dict) and isinstance(arm.get("curve"), list):
                arm["curve"] = [{SCHEMA_1_CURVE.get(k, k): v for k, v in point.items()}
                                if isinstance(point, dict) else point for point in arm["curve"]]
    if schema <= 2:
        for name, arm in arms.items():
            if isinstance(arm, dict) and "arm" not in arm:
                arm["arm"] = _kind_by_name(name, results.get("command"))
        limited = results.get("data_limited")
        placed = limited.get("placed") if isinstance(limited, dict) else None
        if isinstance(placed, dict) and SCHEMA_2_ENSEMBLE in placed:
            limited["ensemble"] = placed.pop(SCHEMA_2_ENSEMBLE)
    return {"schema": SCHEMA, **{k: v for k, v in results.items() if k != "schema"}}


SCHEMA_2_ENSEMBLE = "ensemble (isolated on U)"


def mixture_source(arm: ArmResult) -> str:
    """Where an arm's mixture weights were fit, as a table's header says it: `dev-fit` (the dev
    slice of valid) or `U-fit` (a slice held out of its unique bytes)."""
    return "U-fit" if arm.get("mixture_fit") == "unique" else "dev-fit"


def diversity(arm: ArmResult) -> float:
    """The members' mean valid bpb less their consensus's: what their disagreement is worth to
    their average (the log loss's ambiguity, Jensen's gap: 0 when the members agree
    everywhere). On the whole of valid, which the dev slice's decisions read only a head of."""
    members = arm["members"]
    return sum(m["valid_bpb"] for m in members) / len(members) - arm["consensus_valid_bpb"]


def arms_of_kind(results: dict, kind: str) -> list[str]:
    """The names of the arms of one kind ("measured", "reference", ...), in the run's order."""
    return [name for name, arm in results["arms"].items() if arm["arm"]["kind"] == kind]


def _kind_by_name(name: str, command: str | None) -> dict:
    """An arm's `arm` entry, for a file written before arms recorded it: the names the older
    versions gave each kind of arm (the one place a name is read for a kind, and only here)."""
    if command == "train":
        return {"kind": "measured", "listens": name == "social"}
    if name in ("social", "social+evolution"):
        return {"kind": "measured", "listens": True}
    if m := re.fullmatch(r"isolated(?:-(\d+)U)?", name):
        return {"kind": "reference", "listens": False, "k": int(m[1] or 1)}
    if name in ("distilled", "distilled-ensemble"):
        return {"kind": "student", "listens": True, "ranked": "isolated",
                "teacher": "social" if name == "distilled" else "isolated"}
    if m := re.fullmatch(r"generation-(\d+)(-apart)?", name):
        if m[2]:
            return {"kind": "apart", "listens": False, "source": name[:-len("-apart")]}
        g = int(m[1])
        parent = "social" if g == 2 else f"generation-{g - 1}"
        return {"kind": "generation", "listens": True, "g": g, "parent": parent}
    if name in ("snapshots", "social+snapshots"):
        return {"kind": "snapshots", "listens": name != "snapshots"}
    return {"kind": "unknown", "listens": False}


def read(path: Path, what: str = "run results") -> dict:
    """A run's results.json, in schema 3."""
    results = read_json(Path(path), what)
    if not isinstance(results, dict):
        raise UserError(f"{path} is not a run's results (a JSON object)")
    return upgrade(results)
