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
YARDSTICK_STYLES = {"gzip": ":", "bzip2": "-.", "xz": "--", "ppmd": (0, (6, 2, 1, 2, 1, 2))}


def _yardstick_rows(results: dict) -> list[tuple[str, float, float]]:
    """(label, valid bpb, test bpb) of each classical compressor given the bytes the run read."""
    from multitudes.yardsticks import LABELS

    y = results.get("yardsticks")
    if not y:
        return []
    return [(LABELS[name], y["valid"][name]["given"], y["test"][name]["given"])
            for name in LABELS]


def _draw_yardsticks(ax, results: dict, split: str = "dev") -> None:
    """Horizontal lines where each compressor stands, given the bytes the run read."""
    from multitudes.yardsticks import LABELS

    y = (results.get("yardsticks") or {}).get(split)
    for name, label in LABELS.items():
        if y:
            ax.axhline(y[name]["given"], color="grey", lw=1, ls=YARDSTICK_STYLES[name],
                       label=f"{label} given the same bytes ({y[name]['given']:.2f})")


def _fmt_efficiency(results: dict) -> str:
    if "data_efficiency" not in results:
        return ""
    value, bound = results["data_efficiency"], results["data_efficiency_bound"]
    if results.get("data_efficiency_at_most"):
        what = ("on U unique bytes" if results.get("regime") == "data-limited"
                else "at equal real bytes")
        return f"<= {value:.2f}x (the isolated arm {what} is already as good or better)"
    if results.get("data_efficiency_unresolved"):
        points = ", ".join(f"{k:.2f}N {bpb:.4f}" for k, bpb in results["data_efficiency_points"])
        return (f"unresolved: the isolated arm's finished runs do not improve monotonically on "
                f"the dev slice ({points}); at equal bytes the social arm leads by "
                f"{results['data_efficiency_dev_gap']:.4f} dev bpb (first crossing: "
                + (f"{value:.2f}x)" if results["data_efficiency_reached"] else f"> {bound:g}x)"))
    if results["data_efficiency_reached"]:
        return f"{value:.2f}x"
    return f"> {bound:g}x (the isolated arm never reached the social arm)"


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
    if "data_efficiency" in results:
        lines.append(f"data efficiency of the social arm: {_fmt_efficiency(results)}")
    if "evolution_data_efficiency" in results:
        lines.append(f"data efficiency of the social+evolution arm: "
                     f"{_fmt_efficiency(results['evolution_data_efficiency'])}")
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
        ids = list(dict.fromkeys(i for r in curve for i in r["members"]))  # newborns too
        for n, part in enumerate(_curve_parts(curve)):  # the trunk, then each cooldown branch
            xs = [r["real_bytes"] for r in part]
            for mid in ids:
                ys = [r["members"].get(mid, float("nan")) for r in part]
                ax.plot(xs, ys, styles.get(arm, ":"), color=FAMILY_COLOURS.get(_family(mid)),
                        alpha=0.75, label=None if n else f"{arm} {mid}")
            ax.plot(xs, [r["consensus_bpb"] for r in part], styles.get(arm, ":"),
                    color="black", lw=2, label=None if n else f"{arm} consensus")
    ax.axvline(results["real_bytes"], color="grey", lw=0.8)
    _draw_yardsticks(ax, results)
    ax.set(xlabel="real training bytes", ylabel="dev bpb", title="Learning curves (dev slice)")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    figures.append(("Dev-slice bpb against real bytes, every member of every arm "
                    "(solid: social, dashed: isolated, whose cooldown branches leave its stable "
                    "trunk; the grey vertical line marks equal real bytes; grey horizontal "
                    "lines: the classical compressors on the dev slice given the bytes the "
                    "run read)",
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
            trunk = [r for r in iso if "branch" not in r]
            ax.plot([r["real_bytes"] for r in trunk], [r["best_bpb"] for r in trunk], "--",
                    color="grey", label="isolated, best member"
                    + (" (stable trunk)" if len(trunk) < len(iso) else ""))
            finished = results["arms"]["isolated"].get("finished") or []
            if finished:
                ax.plot([p["real_bytes"] for p in finished],
                        [p["best_dev_bpb"] for p in finished], "o-", color="tab:blue",
                        label="isolated, finished runs (cooldowns off the trunk)")
            ax.plot([r["real_bytes"] for r in soc], [r["best_bpb"] for r in soc], "-",
                    color="black", label="social, best member")
            target = next(r["best_bpb"] for r in soc if r["real_bytes"] >= results["real_bytes"])
            ax.axhline(target, color="black", lw=0.6)
            _draw_yardsticks(ax, results)
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
    figures += _evolution_plots(results, plt)
    return figures


def _curve_parts(curve: list[dict]) -> list[list[dict]]:
    """A dev curve as lines to draw: the trunk (or the whole run), then each `wsd` cooldown
    branch joined to the trunk point it left from."""
    trunk = [r for r in curve if "branch" not in r]
    parts = [trunk] if trunk else []
    for branch in dict.fromkeys(r["branch"] for r in curve if "branch" in r):
        rows = [r for r in curve if r.get("branch") == branch]
        root = [r for r in trunk if r["real_bytes"] < rows[0]["real_bytes"]][-1:]
        parts.append(root + rows)
    return parts


def _family(member_id: str) -> str:
    return member_id.split("-", 1)[-1]


def _evolution_plots(results: dict, plt) -> list[tuple[str, str]]:
    """The family tree (slots over time) and the newborns' learning against the founders'."""
    figures = []
    rows = results.get("lineage") or []
    for arm in dict.fromkeys(r["arm"] for r in rows if r["event"] == "birth" and r["parents"]):
        mine = [r for r in rows if r["arm"] == arm and r["event"] in ("birth", "death")]
        slot, start, end_fitness, lines, pending = {}, {}, {}, [], None
        for r in mine:
            if r["event"] == "death":
                pending = slot[r["member"]]
                lines.append((r["member"], r["step"]))
                end_fitness[r["member"]] = r["fitness"]
            elif not r["parents"]:
                slot[r["member"]], start[r["member"]] = len(slot), 0
            else:
                slot[r["member"]], start[r["member"]] = pending, r["step"]
        ended = dict(lines)
        last = max([r["step"] for r in mine] + [results.get("arms", {}).get(arm, {})
                                                 .get("steps", 0)])
        final = {m["id"]: m["valid_bpb"] for m in results["arms"].get(arm, {}).get("members", [])}
        fig, ax = plt.subplots(figsize=(8, 0.6 * len(set(slot.values())) + 1.5))
        for mid, y in slot.items():
            x0, x1 = start[mid], ended.get(mid, last)
            colour = FAMILY_COLOURS.get(_family(mid))
            ax.plot([x0, x1], [y, y], color=colour, lw=3, alpha=0.7)
            bpb = end_fitness.get(mid, final.get(mid))
            size = 30 + 400 * max(0.0, 8.0 - bpb) / 8.0 if bpb else 30
            ax.scatter([x1], [y], s=size, color=colour, zorder=3)
            ax.annotate(mid, (x0, y), textcoords="offset points", xytext=(2, 5), fontsize=7)
        for r in mine:
            if r["event"] == "birth" and r["parents"]:
                for parent in r["parents"]:
                    ax.annotate("", (r["step"], slot[r["member"]]), (r["step"], slot[parent]),
                                arrowprops=dict(arrowstyle="->", color="grey", lw=0.8))
        ax.set(xlabel="step", ylabel="slot in the population", title=f"Lineage of the {arm} arm "
               "(colour: family; dot size: lower bpb at death or end is bigger)")
        ax.set_yticks(sorted(set(slot.values())))
        ax.grid(alpha=0.3)
        figures.append((f"Family tree of the {arm} arm: each bar is a life, arrows go from "
                        "parents to newborns", _png(fig)))
        plt.close(fig)
    for arm, res in results["arms"].items():
        culture = res.get("culture")
        if not culture or not culture["newborns"]:
            continue
        fig, ax = plt.subplots(figsize=(8, 4.5))
        xs, ys = zip(*culture["founder_curve"])
        ax.plot(xs, ys, color="black", lw=2, label="founders (mean), age = bytes of the run")
        for n in culture["newborns"]:
            ax.plot(*zip(*n["curve"]), "-o", ms=3, color=FAMILY_COLOURS.get(n["family"]),
                    label=f"newborn {n['member']}")
        speed = culture["median_speedup"]
        ax.set(xlabel="age: real bytes seen since birth", ylabel="dev bpb",
               title="Cultural transmission: newborns against the founders at the same age"
               + (f" (median {speed:.2f}x faster)" if speed else ""))
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        figures.append((f"Newborns of the {arm} arm learn from their elders: dev bpb against "
                        "age, beside the founders' curve", _png(fig)))
        plt.close(fig)
    return figures


def write_html(run_dir: Path, figures_dir: Path | None = None) -> Path:
    """Write run_dir/report.html; with `figures_dir`, each plot also as figure-N.png there."""
    run_dir = Path(run_dir)
    path = run_dir / "results.json"
    if not path.is_file():
        raise UserError(f"{run_dir} holds no results.json: the run has not finished")
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{path} is unreadable: {e}") from None
    lineage_file = run_dir / "lineage.jsonl"
    if lineage_file.is_file():
        results["lineage"] = [json.loads(x) for x in lineage_file.read_text().splitlines()]
    parts = [f"<h1>multitudes: {html.escape(results['command'])} "
             f"<code>{html.escape(str(results.get('preset')))}</code></h1>",
             f"<p>Corpus <b>{html.escape(results['corpus'])}</b>, {results['regime']} regime, "
             f"{results['real_bytes']:,} real training bytes per arm.</p>"]
    if "data_efficiency" in results:
        parts.append(f"<p class=big>Data efficiency of the social arm: "
                     f"<b>{html.escape(_fmt_efficiency(results))}</b><br><small>"
                     f"{html.escape(results['data_efficiency_basis'])}</small></p>")
    parts.append(_html_table(results))
    for number, (caption, png) in enumerate(_plots(results), 1):
        if figures_dir is not None:
            Path(figures_dir).mkdir(parents=True, exist_ok=True)
            (Path(figures_dir) / f"figure-{number}.png").write_bytes(base64.b64decode(png))
        parts.append(f"<figure><img src='data:image/png;base64,{png}'>"
                     f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    parts.append("<h2>Text summary</h2><pre>" + html.escape(table(results)) + "</pre>")
    if results.get("lineage"):
        from multitudes.lineage import tree
        parts.append("<h2>Lineage</h2><pre>" + html.escape(tree(results["lineage"])) + "</pre>")
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
    for label, valid, test in _yardstick_rows(results):
        rows.append(f"<tr style='color:#666'><td>yardstick</td><td colspan=3>{label} given the "
                    f"same {results['yardsticks']['read_bytes']:,} bytes</td><td></td>"
                    f"<td>{valid:.4f}</td><td>{test:.4f}</td></tr>")
    return head + "".join(rows) + "</table>"
