"""results.json: its records, its schema version, and the reader that upgrades older files.

One vocabulary from the run loop to the report: a dev evaluation is the same record in
metrics.jsonl, in an arm's `curve` and in its `finished` runs, with the keys `real_bytes`,
`best_dev_bpb`, `consensus_dev_bpb` and `members` ({id: dev_bpb}). Schema 1 (a results.json
without a "schema" key) named the curve's `best_bpb` and `consensus_bpb`; `read` renames them, so
every reader sees schema 2.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from multitudes.errors import UserError
from multitudes.runs.checkpoint import read_json

SCHEMA = 2
SCHEMA_1_CURVE = {"best_bpb": "best_dev_bpb", "consensus_bpb": "consensus_dev_bpb"}


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
    """A results document in schema 2 (schema 1's curves renamed; a newer one refused)."""
    schema = results.get("schema", 1)
    if not isinstance(schema, int) or not 1 <= schema <= SCHEMA:
        raise UserError(f"results.json has schema {schema!r}; this multitudes reads 1 to {SCHEMA}")
    if schema == 1:
        for arm in (results.get("arms") or {}).values():
            if isinstance(arm, dict) and isinstance(arm.get("curve"), list):
                arm["curve"] = [{SCHEMA_1_CURVE.get(k, k): v for k, v in point.items()}
                                if isinstance(point, dict) else point for point in arm["curve"]]
        results = {"schema": SCHEMA, **results}
    return results


def read(path: Path, what: str = "run results") -> dict:
    """A run's results.json, in schema 2."""
    results = read_json(Path(path), what)
    if not isinstance(results, dict):
        raise UserError(f"{path} is not a run's results (a JSON object)")
    return upgrade(results)
