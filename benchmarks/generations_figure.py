"""Issue 42's generations table: where the gain of generation g over g - 1 stops.

Reads a set of seeds of benchmarks/data_limited.py run with `compare.generations = G` (or one
run): generation 1 is the social arm, each next one born from scratch, bred from the last and
taught by it. Prints, per generation, its genomes' families, its consensus and dev-fit mixture
test bpb (mean ± std over seeds), its compute (training FLOPs, teachers' forwards included,
x the independent ensemble's) and its paired lead over its parent and over the independent
ensemble (positive: fewer bits; each seed's sign counted); then the controls the set holds,
each paired with the last generation: its genomes trained apart (selection without teaching),
every generation mixed (`lineage`), and the ensemble given more compute. With --png, the figure:
each seed's mixture against the generation, their mean bold, the ensemble the line to beat.

    python benchmarks/generations_figure.py docs/horizons/generations-16 \\
        --png docs/horizons/generations.png
"""

from __future__ import annotations

import argparse
import statistics
from collections import Counter
from pathlib import Path

from data_limited import mean_std
from horizons_figure import check_outputs, ensemble_of, refuse, runs_in
from multitudes.errors import UserError
from multitudes.report.figures import png_bytes
from multitudes.runs.checkpoint import write_bytes_atomic


def chain(run: dict) -> list[str]:
    """The generations' arms in order: generation 1 (the arm generation 2 was taught by, as
    its record says: the social arm), then generation-2..G."""
    gens = sorted((a["arm"]["g"], name) for name, a in run["arms"].items()
                  if a["arm"]["kind"] == "generation")
    if not gens:
        raise UserError("no generation arms: run the set with compare.generations >= 2")
    return [run["arms"][gens[0][1]]["arm"]["parent"]] + [name for _, name in gens]


def lead(runs: list[dict], base: str, arm: str, split: str = "test") -> str:
    """arm's paired lead over base in mixture bpb (positive: fewer bits), with its seeds."""
    d = [r["arms"][base][f"mixture_{split}_bpb"] - r["arms"][arm][f"mixture_{split}_bpb"]
         for r in runs]
    return f"{statistics.mean(d):+.4f} ({sum(x > 0 for x in d)}/{len(d)})"


def families(runs: list[dict], arm: str) -> str:
    """The families of the arm's members, per seed: 'gpt+gru+2 lstm / 4 gru / ...'."""
    return " / ".join("+".join(f"{n} {f}" if n > 1 else f for f, n in sorted(Counter(
        m["family"] for m in r["arms"][arm]["members"]).items())) for r in runs)


def compute(runs: list[dict], arms: list[str], ensemble: str) -> float:
    """The arms' training FLOPs, teachers' forwards included, x the ensemble's (mean)."""
    return statistics.mean(
        sum(r["arms"][a]["train_flops"] + r["arms"][a].get("teacher_flops", 0) for a in arms)
        / r["arms"][ensemble]["train_flops"] for r in runs)


def rows(runs: list[dict]) -> tuple[list[str], dict[str, list[float]]]:
    """The table's lines, and each generation's seeds' mixture test bpb for the figure."""
    first, ensemble = runs[0], ensemble_of(runs[0])
    gens = chain(first)
    header = ("| g | arm | families (per seed) | consensus | mixture | compute: its own / the "
              "chain's to it | vs its parent "
              "| vs the ensemble | vs the ensemble, valid beyond dev |")
    lines = [header, "|" + "---|" * 9]
    drawn = {}
    for g, arm in enumerate(gens, start=1):
        parent = gens[g - 2] if g > 1 else None
        lines.append(
            f"| {g} | {arm} | {families(runs, arm)} "
            f"| {mean_std([r['arms'][arm]['consensus_test_bpb'] for r in runs])} "
            f"| {mean_std([r['arms'][arm]['mixture_test_bpb'] for r in runs])} "
            f"| {compute(runs, [arm], ensemble):.2f}x / {compute(runs, gens[:g], ensemble):.2f}x "
            f"| {lead(runs, parent, arm) if parent else '-'} "
            f"| {lead(runs, ensemble, arm)} | {lead(runs, ensemble, arm, 'valid')} |")
        drawn[arm] = [r["arms"][arm]["mixture_test_bpb"] for r in runs]
    last = gens[-1]
    controls = [ensemble] + [name for name, a in first["arms"].items()  # in every seed
                             if a["arm"]["kind"] in ("apart", "lineage", "longer", "enlarged")
                             and all(name in r["arms"] for r in runs)]
    lines += ["", f"the controls, each against {last} (positive: {last} codes fewer bits):",
              "| arm | kind | consensus | mixture | compute | test | valid beyond dev |",
              "|" + "---|" * 7]
    for arm in controls:
        lines.append(
            f"| {arm} | {first['arms'][arm]['arm']['kind']} "
            f"| {mean_std([r['arms'][arm]['consensus_test_bpb'] for r in runs])} "
            f"| {mean_std([r['arms'][arm]['mixture_test_bpb'] for r in runs])} "
            f"| {compute(runs, [arm], ensemble):.2f}x "
            f"| {lead(runs, arm, last)} | {lead(runs, arm, last, 'valid')} |")
        drawn[arm] = [r["arms"][arm]["mixture_test_bpb"] for r in runs]
    # the classical coders given the same U bytes, where every arm above still stands
    given = (first.get("yardsticks") or {}).get("test", {})
    if given:
        lines += ["", "yardsticks given the same U bytes (test): " + ", ".join(
            f"{name} {given[name]['given']:.4f}" for name in given)]
    return lines, drawn


def draw(gens: list[str], drawn: dict[str, list[float]], ensemble: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    xs = list(range(1, len(gens) + 1))
    seeds = len(drawn[gens[0]])
    for s in range(seeds):
        ax.plot(xs, [drawn[arm][s] for arm in gens], color="tab:blue", alpha=0.35,
                linewidth=1, marker=".")
    ax.plot(xs, [statistics.mean(drawn[arm]) for arm in gens], color="tab:blue", linewidth=2.5,
            marker="o", label=f"generations 1..{len(gens)}, " + (
                f"mean of {seeds} seeds (thin: each)" if seeds > 1 else "one seed"))
    ax.axhline(statistics.mean(drawn[ensemble]), color="black", linewidth=2,
               label=f"the independent ensemble ({ensemble}, mixed)")
    controls = [arm for arm in drawn if arm not in gens and arm != ensemble]
    colours = ("tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink")
    for j, (arm, marker, colour) in enumerate(zip(controls, "s^Dv<>", colours)):  # past G
        ax.scatter([len(gens) + 0.2 * (j + 1)] * len(drawn[arm]), drawn[arm], marker=marker,
                   color=colour, label=f"{arm} (each seed)")
    ax.set_xticks(xs)
    ax.set_xlabel("generation (1: the social arm)")
    ax.set_ylabel("test bpb of the dev-fit mixture")
    ax.set_title("Where the gain of a generation over its parent stops")
    ax.legend(fontsize=8)
    image = png_bytes(fig)
    plt.close(fig)
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, help="a set of seeds (or one run) with generations")
    parser.add_argument("--png", type=Path, help="write the figure here")
    args = parser.parse_args()
    args.html = None
    check_outputs(args)
    try:
        runs = runs_in(args.runs)
        gens = chain(runs[0])
        if any(chain(r) != gens for r in runs):
            raise UserError(f"{args.runs}: its seeds hold different generations")
        lines, drawn = rows(runs)
    except UserError as e:
        refuse(str(e))
    print("\n".join(lines))
    if args.png:
        write_bytes_atomic(args.png, draw(gens, drawn, ensemble_of(runs[0])))
        print(f"figure: {args.png}")


if __name__ == "__main__":
    main()
