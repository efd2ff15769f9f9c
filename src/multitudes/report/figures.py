"""report.html's figures: the arms' dev curves against the classical compressors, the finished
runs, and (when the population evolved) its family tree and the newborns' learning. Each is a
matplotlib PNG, base64-encoded for a self-contained page.
"""

from __future__ import annotations

import base64
import io
import textwrap

from multitudes.evaluation.placement import reference_arm
from multitudes.runs.results import arms_of_kind, mixture_source

FAMILY_COLOURS = {"gpt": "#1f77b4", "looped": "#9467bd", "lstm": "#d62728", "gru": "#2ca02c"}
YARDSTICK_STYLES = {"gzip": ":", "bzip2": "-.", "xz": "--", "ppmd": (0, (6, 2, 1, 2, 1, 2))}


def efficiency_text(results: dict) -> str:
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


def gap_text(results: dict) -> str:
    """The headline: the social arm's lead at equal real bytes, measured on held-out bytes."""
    g = results["equal_bytes_gap"]

    def pm(d: dict) -> str:
        return f"{d['mean']:+.4f} ± {d['se']:.4f}"
    return (f"at equal real bytes the social arm's lead over the isolated arm is "
            f"{pm(g['consensus'])} bpb (consensus) and {pm(g['best_by_dev'])} (the member the "
            f"dev slice ranks first), "
            f"on the {g['bytes']:,} bytes of {g['split']} (± one standard error over "
            f"{g['consensus']['blocks']} blocks)")


def _draw_yardsticks(ax, results: dict, split: str = "dev") -> None:
    """Horizontal lines where each compressor stands, given the bytes the run read."""
    from multitudes.evaluation.yardsticks import LABELS

    y = (results.get("yardsticks") or {}).get(split)
    for name, label in LABELS.items():
        if y:
            ax.axhline(y[name]["given"], color="grey", lw=1, ls=YARDSTICK_STYLES[name],
                       label=f"{label} given the same bytes ({y[name]['given']:.2f})")


def png_bytes(fig) -> bytes:
    """A figure as PNG bytes, as every figure of the project is drawn (a file's, or a page's)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def png(fig) -> str:
    """A figure as a base64 PNG, as report.html and scale.html embed it."""
    return base64.b64encode(png_bytes(fig)).decode()


def figures(results: dict) -> list[tuple[str, str]]:
    """Every figure of a run's report: (caption, base64 PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from multitudes.report.evolution_figures import evolution_plots  # it draws with png()

    colour = _member_colours(results)
    figures = [_curves_figure(results, plt, colour), _compute_figure(results, plt, colour)]
    measured, reference = (arms_of_kind(results, k) for k in ("measured", "reference"))
    if results.get("regime") == "stream" and measured and reference:
        iso = results["arms"][reference[0]].get("curve") or []
        soc = results["arms"][measured[0]].get("curve") or []
        if iso and soc:
            figures.append(_multiplier_figure(results, plt, iso, soc, reference[0]))
    figures += evolution_plots(results, plt)
    if "data_limited" in results:
        figures += _data_limited_plots(results, plt)
    return figures


def _curves_figure(results: dict, plt, colour: dict) -> tuple[str, str]:
    """Dev bpb against real bytes, every member of every arm, and each arm's consensus."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for arm, res in results["arms"].items():
        style = _style(res)
        curve = res.get("curve") or []
        ids = list(dict.fromkeys(i for r in curve for i in r["members"]))  # newborns too
        for n, part in enumerate(_curve_parts(curve)):  # the trunk, then each cooldown branch
            xs = [r["real_bytes"] for r in part]
            for mid in ids:
                ys = [r["members"].get(mid, float("nan")) for r in part]
                ax.plot(xs, ys, style, color=colour[mid], marker=".", ms=3,
                        alpha=0.75, label=None if n else f"{arm} {mid}")  # a lone point shows
            ax.plot(xs, [r["consensus_dev_bpb"] for r in part], style,
                    color="black", lw=2, label=None if n else f"{arm} consensus")
    ax.axvline(results["real_bytes"], color="grey", lw=0.8)
    _draw_yardsticks(ax, results)
    ax.set(xlabel="real training bytes", ylabel="dev bpb", title="Learning curves (dev slice)")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    if len(results["arms"]) > 1:
        caption = ("Dev-slice bpb against real bytes, every member of every arm (solid: arms "
                   "whose members listen, dashed: arms whose members train alone, a reference's "
                   "cooldown branches leaving its stable trunk; the grey "
                   "vertical line marks equal real bytes; grey horizontal lines: the classical "
                   "compressors on the dev slice given the bytes the run read)")
    else:
        caption = ("Dev-slice bpb against real bytes, every member (grey horizontal lines: the "
                   "classical compressors on the dev slice given the bytes the run read)")
    encoded = png(fig)
    plt.close(fig)
    return caption, encoded


def _style(arm: dict) -> str:
    """An arm's line: solid where its members listen (to peers or elders), dashed alone."""
    return "-" if arm["arm"]["listens"] else "--"


def _compute_figure(results: dict, plt, colour: dict) -> tuple[str, str]:
    """Each member's test bpb against its training FLOPs."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for arm, res in results["arms"].items():
        for m in res["members"]:
            ax.scatter(m["train_flops"], m["test_bpb"], color=colour[m["id"]],
                       marker="o" if res["arm"]["listens"] else "x", s=40,
                       label=f"{arm} {m['id']}")
    ax.set(xscale="log", xlabel="training FLOPs (member, incl. channels)", ylabel="test bpb",
           title="Test bpb against training compute (o listening, x alone)")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    encoded = png(fig)
    plt.close(fig)
    return "Compute-matched view: each member's test bpb against its training FLOPs", encoded


def _multiplier_figure(results: dict, plt, iso: list, soc: list, reference: str
                       ) -> tuple[str, str]:
    """The stream multiplier: the isolated arm's best dev bpb read on until it reaches the
    social arm's at equal bytes."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    trunk = [r for r in iso if "branch" not in r]
    ax.plot([r["real_bytes"] for r in trunk], [r["best_dev_bpb"] for r in trunk], "--",
            color="grey", label="isolated, best member"
            + (" (stable trunk)" if len(trunk) < len(iso) else ""))
    finished = results["arms"][reference].get("finished") or []
    if finished:
        ax.plot([p["real_bytes"] for p in finished],
                [p["best_dev_bpb"] for p in finished], "o-", color="tab:blue",
                label="isolated, finished runs (cooldowns off the trunk)")
    ax.plot([r["real_bytes"] for r in soc], [r["best_dev_bpb"] for r in soc], "-",
            color="black", label="social, best member")
    target = next(r["best_dev_bpb"] for r in soc if r["real_bytes"] >= results["real_bytes"])
    ax.axhline(target, color="black", lw=0.6)
    _draw_yardsticks(ax, results)
    if results.get("data_efficiency_reached"):
        x = results["data_efficiency"] * results["real_bytes"]
        ax.axvline(x, color="tab:orange", lw=1,
                   label=f"isolated reaches it: {results['data_efficiency']:.2f}x bytes")
    # wrapped: an unresolved multiplier's sentence on one line stretched the figure
    title = textwrap.fill(f"Data efficiency: {efficiency_text(results)}", 90)
    ax.set(xlabel="real training bytes", ylabel="best dev bpb")
    ax.set_title(title, fontsize=9 if "\n" in title else None)
    ax.legend()
    ax.grid(alpha=0.3)
    encoded = png(fig)
    plt.close(fig)
    return ("The multiplier: real bytes the isolated arm needs to reach the social "
            "arm's best dev bpb", encoded)


def _data_limited_plots(results: dict, plt) -> list[tuple[str, str]]:
    """Dev bpb against epochs for every arm, and the data-scaling curve with every arm on it."""
    d = results["data_limited"]
    U = d["reference"][0]["unique_bytes"]
    unique = {reference_arm(q["k"]): q["unique_bytes"] for q in d["reference"]}
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for n, (arm, res) in enumerate(results["arms"].items()):
        trunk = [r for r in res.get("curve") or [] if "branch" not in r]
        ax.plot([r["real_bytes"] / unique.get(arm, U) for r in trunk],
                [r["best_dev_bpb"] for r in trunk], _style(res),
                color=f"C{n}", marker=".", ms=3, label=f"{arm}, best member")
    ax.set(xlabel="epochs over the arm's unique bytes", ylabel="best dev bpb",
           title="Dev bpb against epochs (each member scored with its best weights so far)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    out = [("Data-limited: the best member's dev bpb of every arm against the passes it has made "
            "over its unique bytes (U, or k x U for the reference)", png(fig))]
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 4.5))
    ks = [q["k"] for q in d["reference"]]
    fit = mixture_source(results["arms"][arms_of_kind(results, "reference")[0]])
    for key, label, marker in (("best_test_bpb", "isolated, best member", "o"),
                               ("mixture_test_bpb", f"isolated, ensemble ({fit} mixture)", "s")):
        ax.plot(ks, [q[key] for q in d["reference"]], marker=marker, color="black",
                ls="-" if marker == "o" else "--", label=label)
    for name, fit in d["fits"].items():
        if fit:
            grid = [ks[0] * (ks[-1] / ks[0]) ** (i / 50) for i in range(51)]
            ax.plot(grid, [fit["E"] + fit["A"] * k ** -fit["a"] for k in grid], color="grey",
                    lw=0.8, ls=":", label=f"fit ({name}): {fit['E']:.3f} + {fit['A']:.3f} "
                                          f"k^-{fit['a']:.2f}")
    placed_arms = {**d["placed"], "ensemble (isolated on U)": d["ensemble"]}
    for n, (arm, placed) in enumerate(placed_arms.items()):
        p = placed.get("best") or placed["mixture"]
        ax.axhline(p["test_bpb"], color=f"C{n}", lw=1,
                   label=f"{arm} ({'best' if 'best' in placed else 'mixture'}): "
                         f"{p['vs_single_flag']}{p['vs_single']:.2f}x")
    _draw_yardsticks(ax, results, "test")
    ax.set(xscale="log", xlabel="unique bytes / U", ylabel="test bpb",
           title="The data-scaling reference, each arm placed on it")
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.minorticks_off()
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    out.append(("Data efficiency (Slowrun's definition): the isolated recipe's test bpb at k x U "
                "unique bytes; a horizontal line per arm at its test bpb, labelled with the U'/U "
                "where the best-member curve reaches it", png(fig)))
    plt.close(fig)
    return out


def _member_colours(results: dict) -> dict[str, str]:
    """One colour per member id (the same in every arm), so two members of a family differ."""
    import matplotlib

    ids = list(dict.fromkeys(
        [m["id"] for res in results["arms"].values() for m in res["members"]]
        + [i for res in results["arms"].values() for r in res.get("curve") or []
           for i in r["members"]]))
    palette = matplotlib.colormaps["tab20"].colors
    return {mid: matplotlib.colors.to_hex(palette[(2 * n) % 20 + (2 * n) // 20 % 2])
            for n, mid in enumerate(ids)}


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
