"""Does a population's gain grow with its variety? Its lead over the ensemble of the same
members trained apart, against the number of distinct families at a fixed K (issue 44).

A cell's variety is the number of distinct families among its K members (its mix's families
cycled, as the plan builds them). For every (size, channel, K) measured at three or more
varieties, each lead (the dev-fit mixture's over the ensemble's; the best member's over the
isolated best; test bpb, positive: the social arm ahead) at each variety as mean ± std over
seeds with every seed's value, and a least-squares line through every cell's point,
lead = a + b x families, with the standard error of b: the trend, and how sure it is. The
members' diversity (their mean valid bpb less their consensus's) beside it, both arms: whether a
gain came with disagreement.
"""

from __future__ import annotations

from multitudes.study.rows import line_fit, spread

METRICS = {"mixture_gain_test_bpb": "the social mixture's lead over the ensemble",
           "best_gain_test_bpb": "the social best member's lead over the isolated best"}
DIVERSITY = ("social_diversity_valid_bpb", "isolated_diversity_valid_bpb")


def variety_of(families: list[str], K: int) -> int:
    """Distinct families among K members that cycle through `families`."""
    return len({families[i % len(families)] for i in range(K)})


def _per_family(fit: dict) -> dict:
    return {"intercept": fit["intercept"], "slope_per_family": fit["slope"],
            "slope_stderr": fit["slope_stderr"]}


def variety(rows: list[dict], mixes: dict) -> list[dict]:
    populations = [r for r in rows if r["kind"] == "population" and r["K"] > 1]
    out = []
    for size, channel, K in sorted({(r["size"], r["channel"], r["K"]) for r in populations}):
        here = [r for r in populations if (r["size"], r["channel"], r["K"]) == (size, channel, K)
                and r["mix"] in mixes]
        level = {r["cell"]: variety_of(mixes[r["mix"]], K) for r in here}
        for metric in METRICS:
            cells = [r for r in here if r.get(metric) is not None]
            counts = sorted({level[r["cell"]] for r in cells})
            if len(counts) < 3:
                continue
            levels = []
            for n in counts:
                at = [r for r in cells if level[r["cell"]] == n]
                levels.append({"families": n, "mixes": sorted({r["mix"] for r in at}),
                               metric: spread([r[metric] for r in at]),
                               "per_seed": {str(r["seed"]): r[metric] for r in at},
                               **{key: spread([r[key] for r in at]) for key in DIVERSITY
                                  if all(r.get(key) is not None for r in at)}})
            out.append({"size": size, "channel": channel, "K": K, "metric": metric,
                        "levels": levels, "cells": len(cells),
                        **_per_family(line_fit([(level[r["cell"]], r[metric]) for r in cells]))})
    return out


def text_lines(entries: list[dict]) -> list[str]:
    lines = []
    for e in entries:
        lines.append(f"variety {e['size']} {e['channel']} K={e['K']}: {METRICS[e['metric']]} "
                     f"= {e['intercept']:+.4f} {e['slope_per_family']:+.4f} (± "
                     f"{e['slope_stderr']:.4f}) per distinct family, {e['cells']} cells")
        for lv in e["levels"]:
            lead, seeds = lv[e["metric"]], lv["per_seed"]
            div = "".join(f", {key.split('_')[0]} diversity {lv[key]['mean']:.4f}"
                          for key in DIVERSITY if key in lv)
            kinds = "family" if lv["families"] == 1 else "families"
            lines.append(f"  {lv['families']} {kinds} ({', '.join(lv['mixes'])}): "
                         f"{lead['mean']:+.4f} ± {lead['std']:.4f} (per seed "
                         f"{', '.join(f'{v:+.4f}' for v in seeds.values())}){div}")
    return lines
