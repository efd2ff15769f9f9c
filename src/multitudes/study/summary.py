"""A study's numbers: one row per cell, means and spreads over seeds, a trend, scale.json/html.

Rebuilt from the cells' results.json after every cell (and by `multitudes scale --report DIR`),
so a study stopped halfway has a table of what it finished.

The multiplier of a cell is its compare run's data efficiency (real bytes the isolated arm needs
to reach the social arm's best dev bpb, / N). Where the isolated arm never got there it is a lower
bound ("> M", counted as M in a mean and marked); where the isolated arm at N was already as good
it is at most 1 (counted as its value, marked). K = 1 is 1 by definition.
"""

from __future__ import annotations

import math
from pathlib import Path

from multitudes.runs.checkpoint import damaged, read_json, write_bytes_atomic, write_json_atomic
from multitudes.runs.results import arms_of_kind, diversity, read as read_results
from multitudes.errors import UserError
from multitudes.study.plan import Cell
from multitudes.study.render import SIZE_METRICS, page
from multitudes.study.rows import (DIVERSITY_KEYS, MIXTURE_KEYS, CellRow, check_row, line_fit,
                                   spread)
from multitudes.study.variety import variety


def measured_and_alone(results: dict) -> tuple[str, str]:
    """The names of a cell's measured arm and of the isolated arm it is read against: a
    `compare` cell's measured arm and its reference, a `train` cell's one arm twice."""
    measured = arms_of_kind(results, "measured")
    reference = arms_of_kind(results, "reference")
    if not measured:
        raise KeyError("a measured arm")
    return measured[0], reference[0] if reference else measured[0]


def cell_line(results: dict) -> str:
    arms = results["arms"]
    soc, iso = measured_and_alone(results)
    if soc == iso:
        return f"alone {arms[iso]['best_test_bpb']:.4f} test bpb"
    return (f"multiplier {_multiplier_text(results)}, best test bpb {soc} "
            f"{arms[soc]['best_test_bpb']:.4f} / {iso} "
            f"{arms[iso]['best_test_bpb']:.4f}")


def _multiplier(results: dict) -> tuple[float | None, str]:
    """(value, flag): flag '' measured, '>' a lower bound, '<=' at most, '?' unresolved."""
    if "data_efficiency" not in results:
        return 1.0, ""
    if not results["data_efficiency_reached"]:
        return results["data_efficiency_bound"], ">"
    if results.get("data_efficiency_at_most"):
        return results["data_efficiency"], "<="
    if results.get("data_efficiency_unresolved"):
        return results["data_efficiency"], "?"
    return results["data_efficiency"], ""


def _multiplier_text(results: dict) -> str:
    value, flag = _multiplier(results)
    return f"{flag}{value:.2f}x"


def row(cell: Cell, results: dict, cell_dir: Path) -> dict:
    arms = results["arms"]
    soc, iso = (arms[name] for name in measured_and_alone(results))
    value, flag = _multiplier(results)
    wall, inference = cell_dir / "wall.json", cell_dir / "inference.json"
    mixtures = {}
    if "mixture_test_bpb" in iso:  # data-limited
        mixtures = {"social_mixture_test_bpb": soc["mixture_test_bpb"],
                    "isolated_mixture_test_bpb": iso["mixture_test_bpb"],
                    "mixture_gain_test_bpb": iso["mixture_test_bpb"] - soc["mixture_test_bpb"]}
    if cell.K > 1:  # a lone member has no one to disagree with
        mixtures |= {"social_diversity_valid_bpb": diversity(soc),
                     "isolated_diversity_valid_bpb": diversity(iso)}
    return CellRow(
        cell=cell.name, kind=cell.kind, mix=cell.mix, size=cell.size,
        family=iso["members"][0]["family"] if cell.K == 1 else None,
        K=cell.K, channel=cell.channel, seed=cell.seed,
        params=sum(m["params"] for m in iso["members"]),
        multiplier=value, multiplier_flag=flag,
        social_best_test_bpb=soc["best_test_bpb"],
        social_consensus_test_bpb=soc["consensus_test_bpb"],
        isolated_best_test_bpb=iso["best_test_bpb"],
        isolated_consensus_test_bpb=iso["consensus_test_bpb"],
        # on test, where the multiplier (read on the dev slice) is too coarse to see it
        best_gain_test_bpb=iso["best_test_bpb"] - soc["best_test_bpb"],
        consensus_gain_test_bpb=iso["consensus_test_bpb"] - soc["consensus_test_bpb"],
        social_train_flops=soc["train_flops"], isolated_train_flops=iso["train_flops"],
        yardsticks_test_given={k: v["given"] for k, v in results["yardsticks"]["test"].items()},
        wall_seconds=(float(read_json(wall, "a cell's wall time")["seconds"])
                      if wall.is_file() else None),
        inference=_inference(inference, arms), **mixtures).to_json()


def _inference(path: Path, arms: dict) -> dict | None:
    """The cell's inference axis, each arm's marked with whether its members listen."""
    if not path.is_file():
        return None
    axis = read_json(path, "a cell's inference axis")
    if not isinstance(axis, dict):  # damaged: check_row says so in one line
        return axis
    return {name: {**axis[name], "listens": arms[name]["arm"]["listens"]}
            if isinstance(axis[name], dict) and name in arms else axis[name] for name in axis}


def aggregate(rows: list[dict], mixes: dict) -> list[dict]:
    """Means and spreads over seeds, per (mix, size, channel, K); K = 1 rows join every
    channel's line as its first point, peers join the K they match."""
    lines = {}
    populations = [r for r in rows if r["kind"] == "population"]
    for r in populations:
        lines.setdefault((r["mix"], r["size"], r["channel"]), {}).setdefault(r["K"], [])
    out = []
    for (mix, size, channel), by_K in sorted(lines.items()):
        for K in sorted(set(by_K) | {1}):
            pop = [r for r in populations if (r["mix"], r["size"], r["channel"], r["K"])
                   == (mix, size, channel, K)]
            single = [r for r in rows if r["kind"] == "single" and r["size"] == size
                      and r["family"] == mixes[mix][0]]
            peers = [r for r in rows if r["kind"] == "peer" and (r["mix"], r["size"], r["K"])
                     == (mix, size, K)]
            cells = pop if K > 1 else single
            if not cells:
                continue
            entry = {"mix": mix, "size": size, "channel": channel, "K": K,
                     "seeds": sorted(r["seed"] for r in cells),
                     "multiplier": spread([r["multiplier"] for r in cells]),
                     "multiplier_flags": sorted({r["multiplier_flag"] for r in cells} - {""})}
            for key in ("best_gain_test_bpb", "consensus_gain_test_bpb",
                        "social_best_test_bpb", "social_consensus_test_bpb",
                        "isolated_best_test_bpb", "isolated_consensus_test_bpb",
                        "social_train_flops", "isolated_train_flops"):
                entry[key] = spread([r[key] for r in cells])
            for key in (*MIXTURE_KEYS, *DIVERSITY_KEYS):  # data-limited: the ensemble control
                if all(key in r for r in cells):
                    entry[key] = spread([r[key] for r in cells])
            if peers:
                entry["peer_test_bpb"] = spread([r["isolated_best_test_bpb"] for r in peers])
                entry["peer_train_flops"] = spread([r["isolated_train_flops"] for r in peers])
                entry["peer_params"] = peers[0]["params"]
            out.append(entry)
    return out


def trends(lines: list[dict]) -> list[dict]:
    """Least squares y = a + b log2 K per (mix, size, channel) with 3+ values of K, for the
    multiplier, the best member's test gain and (data-limited) the social mixture's gain over
    the ensemble control: the slope b (per doubling of K), its
    standard error and the residuals."""
    out = []
    keys = sorted({(e["mix"], e["size"], e["channel"]) for e in lines})
    for key in keys:
        for metric in ("multiplier", "best_gain_test_bpb", "mixture_gain_test_bpb"):
            pts = [(math.log2(e["K"]), e[metric]["mean"]) for e in lines
                   if (e["mix"], e["size"], e["channel"]) == key and metric in e]
            if len(pts) < 3:
                continue
            fit = line_fit(pts)
            out.append({"mix": key[0], "size": key[1], "channel": key[2], "metric": metric,
                        "intercept": fit["intercept"], "slope_per_doubling": fit["slope"],
                        "slope_stderr": fit["slope_stderr"],
                        "residuals": [{"K": 2 ** x, "residual": r}
                                      for (x, _), r in zip(pts, fit["residuals"])]})
    return out


def size_effects(rows: list[dict], sizes: list[str]) -> list[dict]:
    """Does a gain grow with size? For each (mix, channel, K >= 2) measured at two sizes
    next to each other in `sizes` (the study's order, smallest first; sizes it does not define,
    from a merged file, after them in the order met): each gain at both sizes
    and its change, paired by seed (a seed's cells at both sizes read the same U bytes for the
    same epochs), with the spread of the paired changes."""
    populations = [r for r in rows if r["kind"] == "population" and r["K"] > 1]
    order = [*sizes, *(r["size"] for r in populations)]  # a merged file's own sizes last
    measured = [s for s in dict.fromkeys(order) if any(r["size"] == s for r in populations)]
    out = []
    for small, large in zip(measured, measured[1:]):
        keys = sorted({(r["mix"], r["channel"], r["K"]) for r in populations})
        for mix, channel, K in keys:
            at = {size: {r["seed"]: r for r in populations
                         if (r["mix"], r["channel"], r["K"], r["size"]) == (mix, channel, K, size)}
                  for size in (small, large)}
            seeds = sorted(set(at[small]) & set(at[large]))
            for metric in SIZE_METRICS:
                if not seeds or not all(metric in at[z][s] for z in at for s in seeds):
                    continue
                pairs = [(at[small][s][metric], at[large][s][metric]) for s in seeds]
                out.append({"mix": mix, "channel": channel, "K": K, "metric": metric,
                            "sizes": [small, large], "seeds": seeds,
                            small: spread([a for a, _ in pairs]),
                            large: spread([b for _, b in pairs]),
                            "change": spread([b - a for a, b in pairs])})
    return out


def collect(out: Path, plan: list[Cell]) -> list[dict]:
    rows = []
    for cell in plan:
        cell_dir = out / "cells" / cell.name
        if (cell_dir / "results.json").is_file():
            results = read_results(cell_dir / "results.json", "a cell's results")
            with damaged(cell_dir, "the cell"):
                rows.append(check_row(row(cell, results, cell_dir), None, cell_dir))
    return rows


def real_bytes(doc: dict) -> int | None:
    """The real bytes per arm of every cell of a study."""
    return doc.get("base", {}).get("train", {}).get("real_bytes")


def merge(rows: list[dict], others: dict[str, dict]) -> list[dict]:
    """This study's rows and the finished cells of other runs of the same study (their
    scale.json, by path), e.g. one size run as a study of its own: a cell present twice is taken
    from this study. Refused unless every file is the same study on the same bytes and data (the
    yardsticks, measured on the same test split given the same bytes, must agree)."""
    sticks = next((r["yardsticks_test_given"] for r in rows), None)
    names = {r["cell"] for r in rows}
    out = list(rows)
    for path, other in others.items():
        for r in other["cells"]:
            if sticks is not None and r["yardsticks_test_given"] != sticks:
                raise UserError(f"--merge {path}: cell {r['cell']} was measured on other data "
                                f"(its yardsticks differ from this study's)")
            sticks = sticks or r["yardsticks_test_given"]
            if r["cell"] not in names:
                names.add(r["cell"])
                out.append(r)
    return out


def write(out: Path, doc: dict, plan: list[Cell], others: dict[str, dict] | None = None) -> dict:
    """scale.json and scale.html; with `others` (see merge), scale-merged.json and .html."""
    rows = collect(out, plan)
    finished = len(rows)  # this study's; merged cells are counted apart
    if others:
        rows = merge(rows, others)
    stem = "scale-merged" if others else "scale"
    lines = aggregate(rows, doc["mix"])
    base = doc.get("base", {})
    summary = {"study": doc.get("name"), "cells_planned": len(plan), "cells_finished": finished,
               "regime": base.get("regime", "stream"),
               "unique_bytes": base.get("data", {}).get("unique_bytes", 0),
               "real_bytes": real_bytes(doc),
               "wall_seconds": sum(r.get("wall_seconds", 0.0) for r in rows),
               "lines": lines, "trends": trends(lines),
               "size_effects": size_effects(rows, list(doc.get("size", {}))),
               "variety": variety(rows, doc["mix"]), "cells": rows}
    if others:
        summary["merged"] = sorted(others)
        summary["cells_merged"] = len(rows) - finished
    write_json_atomic(out / f"{stem}.json", summary)
    write_bytes_atomic(out / f"{stem}.html", page(summary, doc, len(plan), finished, others))
    return summary
