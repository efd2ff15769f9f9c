"""Placing arms on the data-scaling reference: how much unique data each arm's test bpb is worth.

A pure function of numbers already in results.json, so that a comparison can be placed on a
reference another run measured (benchmarks/data_limited.py --reference) exactly as `compare`
places it on its own (training/limited_compare.py).
"""

from __future__ import annotations

from multitudes.evaluation.curves import data_efficiency, power_law_fit

WHATS = ("best", "consensus", "mixture")  # an arm's read-outs: its best member, uniform, dev-fit


def reference_arm(k: int) -> str:
    """The name of the reference's arm on k x U: the isolated arm itself on U."""
    return f"isolated-{k}U" if k > 1 else "isolated"


def reference_point(k: int, unique_bytes: int, arm: dict) -> dict:
    """One point of the curve: the isolated recipe on k x U, from its arm's results."""
    return {"k": k, "unique_bytes": unique_bytes, "epochs": arm["epochs"],
            "best_test_bpb": arm["best_test_bpb"],
            "consensus_test_bpb": arm["consensus_test_bpb"],
            "mixture_test_bpb": arm["mixture_test_bpb"]}


def on_curve(curve: list[tuple[float, float]], bpb_value: float) -> tuple[float, str]:
    """U'/U on a curve of (k, bpb) and its flag: "<=" with the first k when the curve's first
    point is already as good, ">" with the last k when the curve never gets there, "" else."""
    if bpb_value >= curve[0][1]:
        return float(curve[0][0]), "<="
    k = data_efficiency(curve, bpb_value)
    return (k, "") if k else (curve[-1][0], ">")


def place(points: list[dict], arms: dict, references: list[str]) -> dict:
    """Slowrun's definition: an arm's data efficiency is U'/U, where U' is the unique bytes the
    isolated recipe needs to reach that arm's test bpb, piecewise linear in log U' between the
    reference's points ("> K" past its largest, "<= 1" when the isolated arm on U is already as
    good). Two curves: one isolated member (the best of each point's members) and the ensemble
    of them (their dev-fit mixture). Every arm not in `references` (the names of the points'
    arms, U's first) is placed for its best member, consensus and dev-fit mixture; the ensemble
    control (the isolated members on U mixed, no extra training) for its consensus and mixture,
    under `ensemble`. A power law bpb = E + A k^-a is fit to each curve, residuals beside it."""
    curves = {"single": [(q["k"], q["best_test_bpb"]) for q in points],
              "ensemble": [(q["k"], q["mixture_test_bpb"]) for q in points]}

    def at(bpb_value: float) -> dict:
        out = {"test_bpb": bpb_value}
        for name, curve in curves.items():
            out[f"vs_{name}"], out[f"vs_{name}_flag"] = on_curve(curve, bpb_value)
        return out
    placed = {a: {what: at(arms[a][f"{what}_test_bpb"]) for what in WHATS}
              for a in arms if a not in references}
    ensemble = {what: at(arms[references[0]][f"{what}_test_bpb"])
                for what in ("consensus", "mixture")}
    return {"reference": points,
            "fits": {name: power_law_fit(curve) for name, curve in curves.items()},
            "placed": placed, "ensemble": ensemble}
