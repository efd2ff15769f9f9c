"""Issue 42's figure: every data-limited arm's test bpb against the epochs of U it read.

Reads data-limited compares run at several horizons (each DIR a run, `results.json` in it, or a
set of seeds of benchmarks/data_limited.py, `seed-*/results.json`), and draws, per arm, the
dev-fit mixture's test bpb (mean over seeds, the seeds' range as a bar) against the epochs read
(log scale): the independent ensemble (the isolated members mixed) is the line to beat, drawn
bold; the data-scaling reference's points beyond U are left out (they read other data); the
classical compressors given the same U bytes are the dotted lines. Prints the numbers it draws.

    python benchmarks/horizons_figure.py docs/horizons/h16 docs/horizons/h64 \\
        --png docs/horizons/horizons.png
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
from pathlib import Path

from multitudes.errors import UserError
from multitudes.runs.checkpoint import write_bytes_atomic
from multitudes.runs.results import arms_of_kind, read as read_results

YARDSTICKS = ("ppmd", "xz")  # the two strongest classical coders, given the same U bytes


def refuse(why: str) -> None:
    """Bad input: one line on stderr, exit 2."""
    print(f"horizons_figure.py: error: {why}", file=sys.stderr)
    sys.exit(2)


def runs_in(path: Path) -> list[dict]:
    """The results of one horizon: a run, or every finished seed of a set."""
    files = [path / "results.json"] if (path / "results.json").is_file() else sorted(
        path.glob("seed-*/results.json"))
    if not files:
        raise UserError(f"{path}: no results.json, and no seed-*/results.json in it")
    runs = [read_results(f) for f in files]
    for f, r in zip(files, runs):
        if r.get("regime") != "data-limited" or r.get("command") != "compare":
            raise UserError(f"{f}: not a data-limited compare")
    return runs


def ensemble_of(run: dict) -> str:
    """The independent ensemble's arm: the reference on U itself (k = 1)."""
    return next(name for name in arms_of_kind(run, "reference")
                if run["arms"][name]["arm"]["k"] == 1)


def epochs_of(run: dict) -> float:
    """The epochs of U every arm on U read (the ensemble's, as recorded)."""
    return run["arms"][ensemble_of(run)]["epochs"]


def table(horizons: list[list[dict]]) -> dict[str, list[tuple[float, list[float]]]]:
    """arm -> [(epochs, the seeds' mixture test bpb)] over the horizons, arms on U only."""
    out: dict[str, list[tuple[float, list[float]]]] = {}
    for runs in horizons:
        epochs = statistics.mean(epochs_of(r) for r in runs)
        arms = [name for name, a in runs[0]["arms"].items()  # the reference's points
                if a["arm"]["kind"] != "reference" or a["arm"]["k"] == 1]  # beyond U: other data
        for arm in arms:
            values = [r["arms"][arm]["mixture_test_bpb"] for r in runs if arm in r["arms"]]
            out.setdefault(arm, []).append((epochs, values))
    return out


def draw(points: dict, ensemble: str, yard: dict[str, float], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for arm, series in points.items():
        xs = [e for e, _ in series]
        ys = [statistics.mean(v) for _, v in series]
        low = [y - min(v) for y, (_, v) in zip(ys, series)]
        high = [max(v) - y for y, (_, v) in zip(ys, series)]
        bold = arm == ensemble
        ax.errorbar(xs, ys, yerr=[low, high], marker="o", capsize=3,
                    linewidth=2.5 if bold else 1.2, color="black" if bold else None,
                    label=f"independent ensemble ({arm}, mixed)" if bold else arm)
    ax.set_xscale("log", base=2)
    for name, value in yard.items():
        ax.axhline(value, linestyle=":", color="grey")
        ax.text(0.01, value, f"{name} given the same U bytes", fontsize=8, color="grey",
                va="bottom", transform=ax.get_yaxis_transform())
    ax.set_xlabel("epochs of U read (log scale)")
    ax.set_ylabel("test bpb of the dev-fit mixture")
    ax.set_title("Where populations pay: each arm against the horizon")
    ax.legend(fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    write_bytes_atomic(png, buf.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="one directory per horizon")
    parser.add_argument("--png", type=Path, help="write the figure here")
    args = parser.parse_args()
    if args.png and (args.png.is_symlink() or args.png.is_dir() or
                     args.png.suffix != ".png" or not args.png.parent.is_dir()):
        refuse(f"--png {args.png}: expected a .png file in an existing folder, not a link")
    try:
        horizons = [runs_in(p) for p in args.runs]
    except UserError as e:
        refuse(str(e))
    points, ensemble = table(horizons), ensemble_of(horizons[0][0])
    first = horizons[0][0]["yardsticks"]["test"]
    yard = {name: first[name]["given"] for name in YARDSTICKS if name in first}
    print(f"{'arm':>20} " + " ".join(f"{e:>14.1f}" for e, _ in points[ensemble]) +
          "   (epochs; test bpb of the dev-fit mixture, mean over seeds)")
    for arm, series in points.items():
        cells = {round(e, 1): v for e, v in series}
        print(f"{arm:>20} " + " ".join(
            f"{statistics.mean(cells[round(e, 1)]):>9.4f} (n={len(cells[round(e, 1)])})"
            if round(e, 1) in cells else f"{'-':>14}" for e, _ in points[ensemble]))
    print("yardsticks given U: " + ", ".join(f"{k} {v:.4f}" for k, v in yard.items()))
    if args.png:
        draw(points, ensemble, yard, args.png)
        print(f"figure: {args.png}")


if __name__ == "__main__":
    main()
