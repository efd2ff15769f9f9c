"""The figures of a run that evolved: its family tree and its newborns against the founders."""

from __future__ import annotations

from multitudes.config.genome import family_of
from multitudes.report.figures import FAMILY_COLOURS, png


def evolution_plots(results: dict, plt) -> list[tuple[str, str]]:
    """The family tree of every arm that evolved, and the newborns' learning against the
    founders'."""
    rows = results.get("lineage") or []
    figures = [_family_tree(results, plt, rows, arm) for arm in dict.fromkeys(
        r["arm"] for r in rows if r["event"] == "birth" and r["parents"])]
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
                        "age, beside the founders' curve", png(fig)))
        plt.close(fig)
    return figures


def _family_tree(results: dict, plt, rows: list[dict], arm: str) -> tuple[str, str]:
    """Slots over time: each bar a life, arrows from parents to newborns."""
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
    curve = results["arms"].get(arm, {}).get("curve") or [{"members": {}}]
    final = curve[-1]["members"]  # dev bpb at the end, as the fitness at death is
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(set(slot.values())) + 1.5))
    for mid, y in slot.items():
        x0, x1 = start[mid], ended.get(mid, last)
        colour = FAMILY_COLOURS.get(family_of(mid))
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
    encoded = png(fig)
    plt.close(fig)
    return (f"Family tree of the {arm} arm: each bar is a life, arrows go from parents to "
            "newborns", encoded)
