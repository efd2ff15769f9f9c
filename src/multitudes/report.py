"""The result table (terminal) and report.html: one self-contained page, readable offline.

Everything is rebuilt from the run's files (results.json), so `multitudes report DIR` redraws
a finished or resumed run at any time. Plots are matplotlib PNGs embedded as base64.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from multitudes.errors import UserError

FAMILY_COLOURS = {"gpt": "#1f77b4", "looped": "#9467bd", "lstm": "#d62728", "gru": "#2ca02c"}


def _fmt_efficiency(results: dict) -> str:
    if "data_efficiency" not in results:
        return ""
    value, bound = results["data_efficiency"], results["data_efficiency_bound"]
    if results["data_efficiency_reached"]:
        return f"{value:.2f}x"
    return f"> {bound:g}x (the isolated arm never reached the social arm)"


def table(results: dict) -> str:
    """The comparison as text: every member of every arm, then best and consensus."""
    lines = [f"{'arm':<12} {'member':<12} {'family':<7} {'params':>9} {'valid bpb':>10} "
             f"{'test bpb':>9}"]
    for arm, res in results["arms"].items():
        for m in res["members"]:
            lines.append(f"{arm:<12} {m['id']:<12} {m['family']:<7} {m['params']:>9,} "
                         f"{m['valid_bpb']:>10.4f} {m['test_bpb']:>9.4f}")
        lines.append(f"{arm:<12} {'best':<12} {'':<7} {'':>9} {res['best_valid_bpb']:>10.4f} "
                     f"{res['best_test_bpb']:>9.4f}   ({res['best_member']})")
        lines.append(f"{arm:<12} {'consensus':<12} {'':<7} {'':>9} "
                     f"{res['consensus_valid_bpb']:>10.4f} {res['consensus_test_bpb']:>9.4f}")
    lines.append(f"real bytes per arm: {results['real_bytes']:,} ({results['corpus']}, "
                 f"{results['regime']} regime)")
    if "data_efficiency" in results:
        lines.append(f"data efficiency of the social arm: {_fmt_efficiency(results)}")
    return "\n".join(lines)


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def _plots(results: dict) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = []
    styles = {"social": "-", "isolated": "--"}
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for arm, res in results["arms"].items():
        curve = res.get("curve") or []
        if not curve:
            continue
        xs = [r["real_bytes"] for r in curve]
        for m in res["members"]:
            ax.plot(xs, [r["members"][m["id"]] for r in curve], styles.get(arm, ":"),
                    color=FAMILY_COLOURS.get(m["family"]), alpha=0.75, label=f"{arm} {m['id']}")
        ax.plot(xs, [r["consensus_bpb"] for r in curve], styles.get(arm, ":"), color="black",
                lw=2, label=f"{arm} consensus")
    ax.axvline(results["real_bytes"], color="grey", lw=0.8)
    ax.set(xlabel="real training bytes", ylabel="dev bpb", title="Learning curves (dev slice)")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    figures.append(("Valid bpb against real bytes, every member of every arm "
                    "(solid: social, dashed: isolated; the grey line marks equal real bytes)",
                    _png(fig)))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for arm, res in results["arms"].items():
        for m in res["members"]:
            ax.scatter(m["train_flops"], m["test_bpb"], color=FAMILY_COLOURS.get(m["family"]),
                       marker="o" if arm == "social" else "x", s=40, label=f"{arm} {m['id']}")
    ax.set(xscale="log", xlabel="training FLOPs (member, incl. channels)", ylabel="test bpb",
           title="Test bpb against training compute (o social, x isolated)")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    figures.append(("Compute-matched view: each member's test bpb against its training FLOPs",
                    _png(fig)))
    plt.close(fig)

    if results.get("regime") == "stream" and "isolated" in results["arms"]:
        iso = results["arms"]["isolated"].get("curve") or []
        soc = results["arms"]["social"].get("curve") or []
        if iso and soc:
            fig, ax = plt.subplots(figsize=(8, 4.5))
            ax.plot([r["real_bytes"] for r in iso], [r["best_bpb"] for r in iso], "--",
                    color="grey", label="isolated, best member")
            ax.plot([r["real_bytes"] for r in soc], [r["best_bpb"] for r in soc], "-",
                    color="black", label="social, best member")
            target = next(r["best_bpb"] for r in soc if r["real_bytes"] >= results["real_bytes"])
            ax.axhline(target, color="black", lw=0.6)
            if results.get("data_efficiency_reached"):
                x = results["data_efficiency"] * results["real_bytes"]
                ax.axvline(x, color="tab:orange", lw=1,
                           label=f"isolated reaches it: {results['data_efficiency']:.2f}x bytes")
            ax.set(xlabel="real training bytes", ylabel="best dev bpb",
                   title=f"Data efficiency: {_fmt_efficiency(results)}")
            ax.legend()
            ax.grid(alpha=0.3)
            figures.append(("The multiplier: real bytes the isolated arm needs to reach the "
                            "social arm's best dev bpb", _png(fig)))
            plt.close(fig)
    return figures


def write_html(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    path = run_dir / "results.json"
    if not path.is_file():
        raise UserError(f"{run_dir} holds no results.json: the run has not finished")
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{path} is unreadable: {e}") from None
    parts = [f"<h1>multitudes: {html.escape(results['command'])} "
             f"<code>{html.escape(str(results.get('preset')))}</code></h1>",
             f"<p>Corpus <b>{html.escape(results['corpus'])}</b>, {results['regime']} regime, "
             f"{results['real_bytes']:,} real training bytes per arm.</p>"]
    if "data_efficiency" in results:
        parts.append(f"<p class=big>Data efficiency of the social arm: "
                     f"<b>{html.escape(_fmt_efficiency(results))}</b><br><small>"
                     f"{html.escape(results['data_efficiency_basis'])}</small></p>")
    parts.append(_html_table(results))
    for caption, png in _plots(results):
        parts.append(f"<figure><img src='data:image/png;base64,{png}'>"
                     f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    parts.append("<h2>Text summary</h2><pre>" + html.escape(table(results)) + "</pre>")
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>multitudes report</title>"
            "<style>body{font-family:sans-serif;max-width:960px;margin:2em auto;padding:0 1em}"
            "table{border-collapse:collapse}td,th{padding:3px 10px;border-bottom:1px solid #ddd;"
            "text-align:right}th{background:#f4f4f4}.big{font-size:1.2em}"
            "img{max-width:100%}figcaption{color:#555;font-size:.9em}</style></head><body>"
            + "\n".join(parts) + "</body></html>")
    out = run_dir / "report.html"
    out.write_text(page)
    return out


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
    return head + "".join(rows) + "</table>"
