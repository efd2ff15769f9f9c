"""A study's summary as text (the table `multitudes scale` prints) and as scale.html."""

from __future__ import annotations

import html

from multitudes.report.html_page import document, figure
from multitudes.study.variety import text_lines as variety_lines

SIZE_METRICS = {"best_gain_test_bpb": "test gain of the best",
                "mixture_gain_test_bpb": "test gain of the mixture over the ensemble"}


def page(summary: dict, doc: dict, planned: int, finished: int, others: dict | None) -> bytes:
    """scale.html: the table, then every figure of the study."""
    from multitudes.study.figures import figures

    parts = [f"<h1>multitudes scaling study <code>{html.escape(str(doc.get('name')))}</code></h1>",
             f"<p>{html.escape(doc.get('description', ''))}</p>",
             f"<p>{finished} of {planned} cells finished; {summary['wall_seconds'] / 3600:.2f} "
             f"hours of runs.</p>",
             *([f"<p>{summary['cells_merged']} more cells merged from "
                f"{html.escape(', '.join(sorted(others)))}.</p>"] if others else []),
             "<pre>" + html.escape(text_table(summary)) + "</pre>"]
    parts += [figure(caption, png) for caption, png in figures(summary)]
    return document("multitudes scale", parts, 1000)


def _pm(s: dict, digits: int = 4) -> str:
    return f"{s['mean']:.{digits}f}±{s['std']:.{digits}f}" if s["n"] > 1 else \
        f"{s['mean']:.{digits}f}"


def text_table(summary: dict) -> str:
    """The study's lines as text: one row per (mix, size, channel, K), means ± std over seeds;
    "gain" is the isolated arm's test bpb minus the social arm's (positive: social ahead)."""
    head = (f"{'mix':<12} {'size':<4} {'channel':<8} {'K':>2} {'seeds':>5} {'multiplier':>14} "
            f"{'social best':>15} {'isolated best':>15} {'gain best':>16} {'social cons.':>15} "
            f"{'isolated cons.':>15} {'gain cons.':>16} {'peer (K x params)':>17}")
    if any("mixture_gain_test_bpb" in e for e in summary["lines"]):  # data-limited
        head += f" {'social mixture':>15} {'ensemble':>15} {'gain vs ens.':>16}"
    lines = [head]
    for e in summary["lines"]:
        flags = "".join(f" {f}" for f in e["multiplier_flags"])
        peer = _pm(e["peer_test_bpb"]) if "peer_test_bpb" in e else ""
        ensemble = (f" {_pm(e['social_mixture_test_bpb']):>15} "
                    f"{_pm(e['isolated_mixture_test_bpb']):>15} "
                    f"{_pm(e['mixture_gain_test_bpb']):>16}"
                    if "mixture_gain_test_bpb" in e else "")
        lines.append(f"{e['mix']:<12} {e['size']:<4} {e['channel']:<8} {e['K']:>2} "
                     f"{len(e['seeds']):>5} {_pm(e['multiplier'], 2) + flags:>14} "
                     f"{_pm(e['social_best_test_bpb']):>15} {_pm(e['isolated_best_test_bpb']):>15} "
                     f"{_pm(e['best_gain_test_bpb']):>16} "
                     f"{_pm(e['social_consensus_test_bpb']):>15} "
                     f"{_pm(e['isolated_consensus_test_bpb']):>15} "
                     f"{_pm(e['consensus_gain_test_bpb']):>16} {peer:>17}{ensemble}")
    for t in summary["trends"]:
        what = {"multiplier": "multiplier", "best_gain_test_bpb": "test gain of the best",
                "mixture_gain_test_bpb": "test gain of the mixture over the ensemble"}[t["metric"]]
        lines.append(f"trend {t['mix']} {t['size']} {t['channel']}: {what} "
                     f"{t['intercept']:.4f} {t['slope_per_doubling']:+.4f} (±"
                     f"{t['slope_stderr']:.4f}) per doubling of K")
    for e in summary.get("size_effects", []):
        small, large, change = *e["sizes"], e["change"]
        spread = f" ± {change['std']:.4f}" if change["n"] > 1 else ""
        lines.append(f"size {small} -> {large} {e['mix']} {e['channel']} K={e['K']}: "
                     f"{SIZE_METRICS[e['metric']]} {e[small]['mean']:+.4f} -> "
                     f"{e[large]['mean']:+.4f}, change {change['mean']:+.4f}{spread} over "
                     f"{len(e['seeds'])} seed(s) paired")
    lines += variety_lines(summary.get("variety", []))
    sticks = next((r["yardsticks_test_given"] for r in summary["cells"]), None)
    if sticks:
        given = (f"the same {summary['unique_bytes']:,} unique bytes"
                 if summary.get("regime") == "data-limited" else "the same real bytes")
        lines.append(f"yardsticks, test bpb given {given}: " + ", ".join(
            f"{k} {v:.4f}" for k, v in sticks.items()))
    return "\n".join(lines)
