"""The result table (terminal) and report.html: one self-contained page, readable offline.

Everything is rebuilt from the run's files (results.json), so `multitudes report DIR` redraws
a finished or resumed run at any time. Plots are matplotlib PNGs embedded as base64.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from multitudes.runs.results import read as read_results
from multitudes.errors import UserError
from multitudes.report.figures import efficiency_text, figures, gap_text
from multitudes.report.html_page import document, figure
from multitudes.runs.checkpoint import damaged, read_json, write_bytes_atomic
from multitudes.runs.stopwatch import PHASES, line as time_line

TABLE_CSS = ("table{border-collapse:collapse}td,th{padding:3px 10px;border-bottom:1px solid #ddd;"
             "text-align:right}th{background:#f4f4f4}.big{font-size:1.2em}")

def _yardstick_rows(results: dict) -> list[tuple[str, float, float]]:
    """(label, valid bpb, test bpb) of each classical compressor given the bytes the run read."""
    from multitudes.evaluation.yardsticks import LABELS

    y = results.get("yardsticks")
    if not y:
        return []
    return [(LABELS[name], y["valid"][name]["given"], y["test"][name]["given"])
            for name in LABELS]


def table(results: dict) -> str:
    """The comparison as text: every member of every arm, then best and consensus."""
    w = max([12] + [len(arm) for arm in results["arms"]])  # `social+evolution` is 16 wide
    lines = [f"{'arm':<{w}} {'member':<12} {'family':<7} {'params':>9} {'valid bpb':>10} "
             f"{'test bpb':>9}"]
    limited = results.get("regime") == "data-limited"
    if limited:  # each member is scored at its best dev point: say after how many epochs
        lines[0] += f" {'epochs to best':>15}"
    for arm, res in results["arms"].items():
        for m in res["members"]:
            lines.append(f"{arm:<{w}} {m['id']:<12} {m['family']:<7} {m['params']:>9,} "
                         f"{m['valid_bpb']:>10.4f} {m['test_bpb']:>9.4f}"
                         + (f" {m.get('epochs_to_best', float('nan')):>15.2f}" if limited
                            else ""))
        lines.append(f"{arm:<{w}} {'best':<12} {'':<7} {'':>9} {res['best_valid_bpb']:>10.4f} "
                     f"{res['best_test_bpb']:>9.4f}   ({res['best_member']})")
        lines.append(f"{arm:<{w}} {'consensus':<12} {'':<7} {'':>9} "
                     f"{res['consensus_valid_bpb']:>10.4f} {res['consensus_test_bpb']:>9.4f}")
    for label, valid, test in _yardstick_rows(results):
        lines.append(f"{'yardstick':<{w}} {label:<20} {'':>9} {valid:>10.4f} {test:>9.4f}"
                     f"   (given the same {results['yardsticks']['read_bytes']:,} bytes)")
    lines.append(f"real bytes per arm: {results['real_bytes']:,} ({results['corpus']}, "
                 f"{results['regime']} regime)")
    if limited:
        lines.append("epochs read per arm: " + ", ".join(
            f"{arm} {res['epochs']:.2f}" for arm, res in results["arms"].items()))
    held = {arm: res["mixture_fit_bytes"] for arm, res in results["arms"].items()
            if res.get("mixture_fit") == "unique"}
    if held:  # compare.mixture_fit = "unique": no byte beyond U chose the mixture
        lines.append("mixture weights fit on bytes held out of each arm's unique bytes, never "
                     "trained on: " + ", ".join(f"{arm} {n:,}" for arm, n in held.items()))
    recorded = [arm for arm, res in results["arms"].items() if res.get("from_record")]
    if recorded:
        lines.append(f"read from the reference record {results['arms'][recorded[0]]['from_record']}"
                     f", not trained here: {', '.join(recorded)}")
    if "data_limited" in results:
        lines += data_limited_lines(results["data_limited"])
    if "equal_bytes_gap" in results:
        lines.append(gap_text(results))
    if "data_efficiency" in results:
        lines.append(f"data efficiency of the social arm: {efficiency_text(results)}")
    if "evolution_data_efficiency" in results:
        lines.append(f"data efficiency of the social+evolution arm: "
                     f"{efficiency_text(results['evolution_data_efficiency'])}")
    return "\n".join(lines)


def data_limited_lines(d: dict) -> list[str]:
    """The data-scaling reference and each arm placed on it (see training/limited_compare.py)."""
    lines = ["data-scaling reference, the isolated recipe on k x U unique bytes (test bpb): "
             + "; ".join(f"k={q['k']} ({q['epochs']:.1f} epochs) best {q['best_test_bpb']:.4f}, "
                         f"ensemble {q['mixture_test_bpb']:.4f}" for q in d["reference"])]
    for name, fit in d["fits"].items():
        if fit:
            lines.append(f"  {name}: bpb = {fit['E']:.3f} + {fit['A']:.3f} k^-{fit['a']:.2f} "
                         f"(residuals {', '.join(f'{r:+.4f}' for r in fit['residuals'])})")
    lines.append("data efficiency U'/U on the reference's best member / its ensemble:")
    for arm, placed in {**d["placed"], "ensemble (isolated on U)": d["ensemble"]}.items():
        lines.append(f"  {arm:<26} " + "; ".join(
            f"{what} {p['test_bpb']:.4f}: {p['vs_single_flag']}{p['vs_single']:.2f}x / "
            f"{p['vs_ensemble_flag']}{p['vs_ensemble']:.2f}x" for what, p in placed.items()))
    return lines


def write_html(run_dir: Path, figures_dir: Path | None = None) -> Path:
    """Write run_dir/report.html; with `figures_dir`, each plot also as figure-N.png there."""
    run_dir = Path(run_dir)
    path = run_dir / "results.json"
    if not path.is_file():
        raise UserError(f"{run_dir} holds no results.json: the run has not finished")
    results = read_results(path)
    lineage_file = run_dir / "lineage.jsonl"
    if lineage_file.is_file():
        results["lineage"] = [json.loads(x) for x in lineage_file.read_text().splitlines()]
    parts = [f"<h1>multitudes: {html.escape(results['command'])} "
             f"<code>{html.escape(str(results.get('preset')))}</code></h1>",
             f"<p>Corpus <b>{html.escape(results['corpus'])}</b>, {results['regime']} regime, "
             f"{results['real_bytes']:,} real training bytes per arm.</p>"]
    if "equal_bytes_gap" in results:
        text = gap_text(results)
        parts.append(f"<p class=big>{html.escape(text[0].upper() + text[1:])}</p>")
    if "data_efficiency" in results:
        parts.append(f"<p class=big>Data efficiency of the social arm: "
                     f"<b>{html.escape(efficiency_text(results))}</b><br><small>"
                     f"{html.escape(results['data_efficiency_basis'])}</small></p>")
    parts.append(_html_table(results))
    for number, (caption, png) in enumerate(figures(results), 1):
        if figures_dir is not None:
            Path(figures_dir).mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(Path(figures_dir) / f"figure-{number}.png",
                               base64.b64decode(png))
        parts.append(figure(caption, png))
    parts.append("<h2>Text summary</h2><pre>" + html.escape(table(results)) + "</pre>")
    parts.append(_timings_html(run_dir))
    if results.get("lineage"):
        from multitudes.evolution.lineage import tree
        parts.append("<h2>Lineage</h2><pre>" + html.escape(tree(results["lineage"])) + "</pre>")
    page = document("multitudes report", parts, 960, TABLE_CSS)
    out = run_dir / "report.html"
    write_bytes_atomic(out, page)  # replaces a link there, never writes through it
    return out


def _timings_html(run_dir: Path) -> str:
    """Where the run's time went (timings.json), seconds per arm and phase; nothing for a run
    written before timings were kept."""
    path = run_dir / "timings.json"
    if not path.is_file():
        return ""
    timings = read_json(path, "the run's timings")
    with damaged(path, "the run's timings"):
        cells = lambda by: "".join(f"<td>{float(by.get(p, 0.0)):,.1f}</td>" for p in PHASES)
        rows = [f"<tr><td>{html.escape(str(arm))}</td>{cells(by)}</tr>"
                for arm, by in timings["arms"].items()]
        rows.append(f"<tr><th>total</th>{cells(timings['phases'])}</tr>")
        summary = time_line(timings)
    head = "".join(f"<th>{p}</th>" for p in PHASES)
    return (f"<h2>Where the time went</h2><p>{html.escape(summary)}<br><small>"
            f"{html.escape(str(timings.get('basis', '')))}; seconds:</small></p>"
            f"<table><tr><th>arm</th>{head}</tr>{''.join(rows)}</table>")


def _html_table(results: dict) -> str:
    head = ("<table><tr><th>arm</th><th>member</th><th>family</th><th>params</th>"
            "<th>train FLOPs</th><th>valid bpb</th><th>test bpb</th></tr>")
    rows = []
    for arm, res in results["arms"].items():
        for m in res["members"]:
            best = " style='font-weight:bold'" if m["id"] == res["best_member"] else ""
            rows.append(f"<tr{best}><td>{arm}</td><td>{m['id']}</td><td>{m['family']}</td>"
                        f"<td>{m['params']:,}</td><td>{m['train_flops']:.3g}</td>"
                        f"<td>{m['valid_bpb']:.4f}</td><td>{m['test_bpb']:.4f}</td></tr>")
        rows.append(f"<tr><td>{arm}</td><td>consensus</td><td></td><td></td>"
                    f"<td>{res['train_flops']:.3g}</td><td>{res['consensus_valid_bpb']:.4f}</td>"
                    f"<td>{res['consensus_test_bpb']:.4f}</td></tr>")
    for label, valid, test in _yardstick_rows(results):
        rows.append(f"<tr style='color:#666'><td>yardstick</td><td colspan=3>{label} given the "
                    f"same {results['yardsticks']['read_bytes']:,} bytes</td><td></td>"
                    f"<td>{valid:.4f}</td><td>{test:.4f}</td></tr>")
    return head + "".join(rows) + "</table>"
