"""A study cell's row in scale.json: its fields, and the check every row read from a file (a
cell's, or a merged study's) passes before a table or figure reads it."""

from __future__ import annotations

import math
import statistics
from dataclasses import MISSING, asdict, dataclass, fields

from multitudes.errors import UserError
from multitudes.runs.checkpoint import damaged


# what every row has (wall_seconds and inference only where measured)
@dataclass(frozen=True)
class CellRow:
    """One cell's numbers in scale.json: the test bpb of each arm's best member and consensus,
    the gains, the multiplier (read on the dev slice), the compute and the yardsticks."""
    cell: str
    kind: str
    mix: str
    size: str
    family: str | None  # K = 1: the lone member's family
    K: int
    channel: str
    seed: int
    params: int
    multiplier: float | None
    multiplier_flag: str
    social_best_test_bpb: float
    social_consensus_test_bpb: float
    isolated_best_test_bpb: float
    isolated_consensus_test_bpb: float
    best_gain_test_bpb: float
    consensus_gain_test_bpb: float
    social_train_flops: float
    isolated_train_flops: float
    yardsticks_test_given: dict
    wall_seconds: float | None = None  # the cell's wall time, when recorded
    inference: dict | None = None  # the inference-time axis, when measured
    # data-limited: each arm's members mixed with weights fit on the dev slice; the isolated
    # arm's mixture is the ensemble control (the same members trained apart, mixed for free)
    social_mixture_test_bpb: float | None = None
    isolated_mixture_test_bpb: float | None = None
    mixture_gain_test_bpb: float | None = None
    # the members' mean valid bpb less their consensus's (runs/results.py diversity)
    social_diversity_valid_bpb: float | None = None
    isolated_diversity_valid_bpb: float | None = None

    def to_json(self) -> dict:
        row = asdict(self)
        for optional in ("wall_seconds", "inference", *MIXTURE_KEYS, *DIVERSITY_KEYS):
            if row[optional] is None:
                del row[optional]
        return row


MIXTURE_KEYS = ("social_mixture_test_bpb", "isolated_mixture_test_bpb", "mixture_gain_test_bpb")
DIVERSITY_KEYS = ("social_diversity_valid_bpb", "isolated_diversity_valid_bpb")

# the keys every row has (a merged scale.json's rows are checked against them)
ROW_KEYS = frozenset(f.name for f in fields(CellRow) if f.default is MISSING)


KINDS = ("population", "single", "peer")


def line_fit(points: list[tuple[float, float]]) -> dict:
    """Least squares y = a + b x through `points` (3 or more): a, b, the standard error of b
    (n - 2 degrees of freedom) and each point's residual."""
    n = len(points)
    mx, my = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    b = sum((x - mx) * (y - my) for x, y in points) / sxx
    a = my - b * mx
    residuals = [y - (a + b * x) for x, y in points]
    return {"intercept": a, "slope": b, "residuals": residuals,
            "slope_stderr": math.sqrt(sum(r * r for r in residuals) / (n - 2) / sxx)}


def spread(values: list[float]) -> dict:
    """Mean, standard deviation (0 for one value) and count."""
    return {"mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0, "n": len(values)}


def check_row(r: dict, mixes: dict | None, where) -> dict:
    """A row of scale.json as the tables and figures read it (a merged file's rows, or a
    cell's, built from files a user may have damaged); one line for the first problem."""
    def bad(what: str):
        return UserError(f"{where}: cell {r.get('cell')!r}: {what}")
    if not isinstance(r, dict) or not ROW_KEYS <= r.keys():
        raise UserError(f"{where}: a cell row lacks {', '.join(sorted(ROW_KEYS))}")
    hints = {f.name: f.type for f in fields(CellRow)}
    for key in ROW_KEYS | ({"wall_seconds", *MIXTURE_KEYS, *DIVERSITY_KEYS} & r.keys()):
        value, hint = r[key], hints[key]
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        ok = {"str": isinstance(value, str), "int": number and isinstance(value, int),
              "float": number and math.isfinite(value), "dict": isinstance(value, dict),
              "str | None": value is None or isinstance(value, str),
              "float | None": value is None or number and math.isfinite(value)}.get(hint, True)
        if not ok:
            raise bad(f"{key} = {value!r} is not a {hint}")
    if r["K"] < 1 or r["seed"] < 1:
        raise bad(f"K = {r['K']} and seed = {r['seed']} must be positive")
    if r["kind"] not in KINDS:
        raise bad(f"kind {r['kind']!r} is not one of {', '.join(KINDS)}")
    if mixes is not None and r["mix"] not in mixes:
        raise bad(f"mix {r['mix']!r} is not one of this study's ({', '.join(mixes)})")
    if r.get("inference") is not None:  # what the inference-time figure reads of it
        with damaged(where, f"cell {r['cell']!r}'s inference axis in"):
            points = [v for arm in r["inference"].values() for v in
                      [(p["size"], p["test_bpb"]) for p in arm["consensus"]]
                      + [(p["n_loop"], p["test_bpb"]) for c in arm["loops"] for p in c["curve"]]]
            if not all(isinstance(x, (int, float)) and not isinstance(x, bool)
                       for point in points for x in point):
                raise bad("its inference axis holds a value that is not a number")
    return r
