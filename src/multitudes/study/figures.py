"""scale.html's figures: multiplier against K, bpb against training FLOPs, the inference-time
curves and the trend's residuals. Each is a base64 PNG (report/figures.py png)."""

from __future__ import annotations

from multitudes.report.figures import YARDSTICK_STYLES, png

MIX_COLOURS = {"hetero": "#d62728", "transformer": "#1f77b4", "rnn": "#2ca02c"}
SIZE_STYLES = ["-", "--", ":", "-."]
CHANNEL_MARKERS = {"logit": "o", "language": "s", "both": "^"}


def _style(e: dict, sizes: list[str]) -> dict:
    return {"color": MIX_COLOURS.get(e["mix"], "#555"),
            "ls": SIZE_STYLES[sizes.index(e["size"]) % len(SIZE_STYLES)]}


def _members_axis(ax) -> None:
    """A log2 axis of member counts labelled 1, 2, 4, 8."""
    from matplotlib.ticker import FuncFormatter

    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("members K")


def _lines(summary: dict) -> dict:
    out = {}
    for e in summary["lines"]:
        out.setdefault((e["mix"], e["size"], e["channel"]), []).append(e)
    return out


def figures(summary: dict) -> list[tuple[str, str]]:
    """(caption, base64 PNG) of each figure the study's numbers can draw so far."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not summary["lines"]:
        return []
    drawn = []
    for draw in (_multiplier_and_gain, _compute_matched, _inference_time, _residuals,
                 _variety):
        fig = plt.figure()
        caption = draw(fig, summary)
        if caption:
            drawn.append((caption, png(fig)))
        plt.close(fig)
    return drawn


def _multiplier_and_gain(fig, summary: dict) -> str:
    fig.set_size_inches(11, 4.2)
    ax, a2 = fig.subplots(1, 2)
    sizes = sorted({e["size"] for e in summary["lines"]})
    for (mix, size, channel), es in _lines(summary).items():
        marker = CHANNEL_MARKERS.get(channel, "o")
        ax.errorbar([e["K"] for e in es], [e["multiplier"]["mean"] for e in es],
                    yerr=[e["multiplier"]["std"] for e in es], marker=marker, capsize=3,
                    label=f"{mix} {size} {channel}", **_style(es[0], sizes))
        a2.errorbar([e["K"] for e in es], [e["best_gain_test_bpb"]["mean"] for e in es],
                    yerr=[e["best_gain_test_bpb"]["std"] for e in es], marker=marker, capsize=3,
                    label=f"{mix} {size} {channel}", **_style(es[0], sizes))
    for a, label, level in ((ax, "data-efficiency multiplier", 1.0),
                            (a2, "best member's test gain (bpb)", 0.0)):
        a.axhline(level, color="grey", lw=1)
        _members_axis(a)
        a.set_xlabel("members K")
        a.set_ylabel(label)
    ax.legend(fontsize=7)
    return ("Left: the social arm's data-efficiency multiplier against the number of members "
            "(read on the dev slice; a '>' cell counts as its bound). Right: how much lower the "
            "social arm's best member codes test than the isolated arm's. Mean and standard "
            "deviation over seeds; colour: mix, line: size, marker: channel (circle logit, "
            "square language, triangle both).")


def _compute_matched(fig, summary: dict) -> str:
    fig.set_size_inches(7, 4.2)
    ax = fig.subplots()
    sizes = sorted({e["size"] for e in summary["lines"]})
    for (mix, size, channel), es in _lines(summary).items():
        st = _style(es[0], sizes)
        ax.plot([e["social_train_flops"]["mean"] for e in es],
                [e["social_best_test_bpb"]["mean"] for e in es], marker="o",
                label=f"social best, {mix} {size} {channel}", **st)
        ax.plot([e["isolated_train_flops"]["mean"] for e in es],
                [e["isolated_best_test_bpb"]["mean"] for e in es], marker="x", alpha=.5,
                color=st["color"], ls=st["ls"])
        peers = [e for e in es if "peer_test_bpb" in e]
        ax.scatter([e["peer_train_flops"]["mean"] for e in peers],
                   [e["peer_test_bpb"]["mean"] for e in peers], marker="s",
                   facecolors="none", edgecolors=st["color"])
    sticks = next((r["yardsticks_test_given"] for r in summary["cells"]), {})
    for name, value in sticks.items():
        ax.axhline(value, color="grey", lw=1, ls=YARDSTICK_STYLES.get(name, ":"),
                   label=f"{name} given the same bytes ({value:.2f})")
    ax.set_xscale("log")
    ax.set_xlabel("training FLOPs of the arm (all its members)")
    ax.set_ylabel("best member's test bpb")
    ax.legend(fontsize=6)
    return ("Compute-matched view: best test bpb against the arm's training FLOPs. Circles: "
            "social arm; crosses: isolated arm (the same members alone, same bytes); open "
            "squares: one isolated member of about K x the parameters (the compute-matched "
            "peer). Grey: the classical compressors given the same real bytes.")


def _inference_time(fig, summary: dict) -> str | None:
    cells = [r for r in summary["cells"] if "inference" in r]
    if not cells:
        return None
    fig.set_size_inches(10, 4)
    a1, a2 = fig.subplots(1, 2)
    named = set()  # one legend entry per mix and size: seeds and arms share it
    for r in cells:
        for inf in r["inference"].values():
            ls = "-" if inf.get("listens") else "--"
            c = MIX_COLOURS.get(r["mix"], "#555")
            name = f"{r['mix']} {r['size']}"
            a1.plot([p["size"] for p in inf["consensus"]],
                    [p["test_bpb"] for p in inf["consensus"]], ls=ls, color=c, alpha=.6,
                    marker="o", label=None if name in named else name)
            named.add(name)
            for curve in inf["loops"]:
                a2.plot([p["n_loop"] for p in curve["curve"]],
                        [p["test_bpb"] for p in curve["curve"]], ls=ls, color=c, alpha=.6,
                        marker=".")
                a2.axvline(curve["trained_loops"], color="grey", lw=.5)
    _members_axis(a1)
    a1.set_xlabel("members in the consensus (best first, by valid bpb)")
    a1.set_ylabel("test bpb")
    a1.legend(fontsize=7)
    a2.set_xlabel("loops of the looped member at evaluation (grey: as trained)")
    a2.set_ylabel("test bpb")
    return ("The inference-time axis on the largest-K cells: the consensus of the best k "
            "members (left) and a looped member's loops at evaluation (right), one curve per "
            "seed. Solid: social arm; dashed: isolated.")


def _residuals(fig, summary: dict) -> str | None:
    gains = [t for t in summary["trends"] if t["metric"] == "best_gain_test_bpb"]
    if not gains:
        return None
    fig.set_size_inches(7, 3)
    ax = fig.subplots()
    for t in gains:
        ax.plot([p["K"] for p in t["residuals"]], [p["residual"] for p in t["residuals"]],
                marker="o", color=MIX_COLOURS.get(t["mix"], "#555"),
                label=f"{t['mix']} {t['size']} {t['channel']}: "
                      f"{t['slope_per_doubling']:+.3f}/doubling")
    ax.axhline(0, color="grey", lw=1)
    _members_axis(ax)
    ax.set_ylabel("residual of the fit (bpb)")
    ax.legend(fontsize=7)
    return ("Residuals of the fitted trend gain = a + b log2 K, the best member's test gain "
            "against the number of members (the slope b per doubling in the legend).")


def _variety(fig, summary: dict) -> str | None:
    """The leads against the number of distinct families (study/variety.py), one panel per
    lead, a line per (size, channel, K): mean ± std over seeds, every seed's point, the fit."""
    entries = summary.get("variety", [])
    if not entries:
        return None
    metrics = list(dict.fromkeys(e["metric"] for e in entries))
    fig.set_size_inches(5.5 * len(metrics), 4.2)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics):
        for i, e in enumerate(x for x in entries if x["metric"] == metric):
            colour = f"C{i}"
            xs = [lv["families"] for lv in e["levels"]]
            ax.errorbar(xs, [lv[metric]["mean"] for lv in e["levels"]],
                        yerr=[lv[metric]["std"] for lv in e["levels"]], marker="o", capsize=3,
                        ls="none", color=colour, label=f"{e['size']} {e['channel']} K={e['K']}")
            for lv in e["levels"]:
                ax.scatter([lv["families"]] * len(lv["per_seed"]), list(lv["per_seed"].values()),
                           s=10, color=colour, alpha=0.4)
            ends = [min(xs), max(xs)]
            ax.plot(ends, [e["intercept"] + e["slope_per_family"] * x for x in ends], color=colour,
                    lw=1, label=f"fit {e['slope_per_family']:+.4f} ± {e['slope_stderr']:.4f} "
                                f"per family")
        ax.axhline(0, color="grey", lw=1)
        ax.set_xlabel("distinct families among the K members")
        ax.set_ylabel({"mixture_gain_test_bpb": "social mixture's lead over the ensemble (bpb)",
                       "best_gain_test_bpb": "social best member's lead (bpb)"}[metric])
        ax.set_xticks(sorted({lv["families"] for e in entries for lv in e["levels"]}))
        ax.legend(fontsize=7)
    return ("Variety: how much lower the social arm codes test than the same members trained "
            "apart, against how many distinct families the K members have (mean ± standard "
            "deviation over seeds; small dots: each seed; line: least squares through every "
            "seed's point, its slope ± standard error). Positive: the social arm ahead.")
