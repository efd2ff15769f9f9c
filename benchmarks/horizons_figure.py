"""Issue 42's figure: every data-limited arm's test bpb against the epochs of U it read.

Reads data-limited compares run at several horizons (each DIR a run, `results.json` in it, or a
set of seeds of benchmarks/data_limited.py, `seed-*/results.json`), and draws, per arm, the
dev-fit mixture's test bpb (mean over seeds, the seeds' range as a bar) against the epochs read
(log scale): the independent ensemble (the isolated members mixed) is the line to beat, drawn
bold; the data-scaling reference's points beyond U are left out (they read other data); the
ensemble given more compute as epochs (`compare.ensemble_compute`) is a point of the
ensemble's line at the epochs it read, so the line shows the ensemble's best horizon; the
classical compressors given the same U bytes are the dotted lines. Prints the numbers it draws,
then the ensemble at its own best horizon (chosen on the dev slice among its runs at every
horizon, given more epochs, and with its recipes re-tuned at a horizon: `compare.retuned`) and
every arm's paired lead over it, on test and on valid.

    python benchmarks/horizons_figure.py docs/horizons/h16 docs/horizons/h64 \\
        --png docs/horizons/horizons.png --html docs/horizons/horizons.html

`--html` writes a page a reader opens first: the figure, the numbers it draws, and each
horizon's table of every arm (benchmarks/data_limited.py's, for a set of seeds).
"""

from __future__ import annotations

import argparse
import base64
import html
import statistics
import sys
from pathlib import Path

from multitudes.errors import UserError
from multitudes.report.html_page import document, figure
from multitudes.report.figures import png_bytes
from multitudes.runs.checkpoint import write_bytes_atomic
from multitudes.runs.results import arms_of_kind, read as read_results

YARDSTICKS = ("ppmd", "xz")  # the two strongest classical coders, given the same U bytes
CAPTION = ("The test bpb of each arm's dev-fit mixture against the epochs of U it read (log "
           "scale): mean over seeds, the bar the seeds' range; the independent ensemble (the "
           "isolated members mixed, read for every horizon it was given) is the line to beat, "
           "bold; dotted, the classical "
           "compressors given the same U bytes.")


def refuse(why: str) -> None:
    """Bad input: one line on stderr, exit 2."""
    print(f"{Path(sys.argv[0]).name}: error: {why}", file=sys.stderr)
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
        r["seed_dir"] = "run" if f.parent == path else f.parent.name  # pairs seeds across
        r["set_name"] = path.name
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
            # the ensemble given more compute as epochs is the ensemble read longer: a point of
            # the ensemble's own line, at the epochs it read
            if runs[0]["arms"][arm]["arm"]["kind"] == "longer":
                own = statistics.mean(r["arms"][arm]["epochs"] for r in runs if arm in r["arms"])
                out.setdefault(ensemble_of(runs[0]), []).append((own, values))
            else:
                out.setdefault(arm, []).append((epochs, values))
    return {arm: sorted(series, key=lambda p: p[0]) for arm, series in out.items()}


def best_ensemble(horizons: list[list[dict]]) -> tuple[int, str, list[str]]:
    """The independent ensemble at its own best horizon: of its runs at every horizon (the
    reference on U, the ensemble given more epochs, and the ensemble with its recipes re-tuned
    at that horizon), the one whose dev-fit mixture codes the dev slice best, mean over seeds
    (chosen on dev, never on test). Its horizon's index, its arm, and a line per candidate."""
    candidates = []
    for i, runs in enumerate(horizons):
        for arm, a in runs[0]["arms"].items():
            if a["arm"]["kind"] in ("longer", "retuned") or arm == ensemble_of(runs[0]):
                dev = statistics.mean(r["arms"][arm]["mixture_dev_bpb"] for r in runs)
                epochs = statistics.mean(r["arms"][arm]["epochs"] for r in runs)
                candidates.append((dev, i, arm, epochs))
    dev, i, arm, _ = min(candidates)
    return i, arm, [f"  {a} at {e:.1f} epochs: dev {d:.4f}" + (" (best)" if a == arm and j == i
                                                               else "")
                    for d, j, a, e in sorted(candidates, key=lambda c: c[3])]


def leads_over(horizons: list[list[dict]], at: int, ensemble: str) -> list[str]:
    """Every arm on U at every horizon against the ensemble at its best horizon: the paired
    lead of its mixture (positive: fewer bits), on test and on valid beyond the dev slice,
    over the seeds both have."""
    base = {r["seed_dir"]: r["arms"][ensemble] for r in horizons[at]}
    lines = []
    read = [round(epochs_of(runs[0]), 1) for runs in horizons]
    for runs, epochs_read in zip(horizons, read):
        # two sets at one horizon (say the 16-epoch arms and the generations to 8): each line
        # says its set, since both may hold an arm of the same name
        where = f"{runs[0]['set_name']}: " if read.count(epochs_read) > 1 else ""
        for arm, a in runs[0]["arms"].items():
            beyond_u = a["arm"]["kind"] == "reference" and a["arm"]["k"] != 1
            seeds = [r for r in runs if r["seed_dir"] in base and arm in r["arms"]]
            if beyond_u or (runs is horizons[at] and arm == ensemble) or not seeds:
                continue
            cells = []
            for split in ("test", "valid"):
                key = f"mixture_{split}_bpb"
                d = [base[r["seed_dir"]][key] - r["arms"][arm][key] for r in seeds]
                cells.append(f"{split} {statistics.mean(d):+.4f} ("
                             + ", ".join(f"{x:+.4f}" for x in d)
                             + f"; better in {sum(x > 0 for x in d)}/{len(d)})")
            epochs = statistics.mean(r["arms"][arm]["epochs"] for r in seeds)
            lines.append(f"  {where}{arm} at {epochs:.1f} epochs: " + ", ".join(cells))
    return lines


def draw(points: dict, ensemble: str, yard: dict[str, float]) -> bytes:
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
    image = png_bytes(fig)
    plt.close(fig)
    return image


def page(lines: list[str], image: bytes, paths: list[Path]) -> bytes:
    """The HTML page: the figure, its numbers, and each horizon's own table where one is kept
    (a set of seeds' table.md, as benchmarks/data_limited.py writes it)."""
    parts = ["<h1>Where populations pay: every arm against the horizon</h1>",
             figure(CAPTION, base64.b64encode(image).decode()),
             "<pre>" + html.escape("\n".join(lines)) + "</pre>"]
    for path in paths:
        if (path / "table.md").is_file():
            parts += [f"<h2>{html.escape(str(path))}</h2>",
                      "<pre>" + html.escape((path / "table.md").read_text()) + "</pre>"]
    return document("multitudes horizons", parts, 1100)


def named(spec: str, horizons: list[list[dict]]) -> tuple[str, int]:
    """--against ARM@EPOCHS: the arm, and the index of the horizon whose ensemble read EPOCHS."""
    arm, sep, epochs = spec.rpartition("@")
    try:
        wanted = float(epochs)
    except ValueError:
        wanted = None
    if not sep or not arm or wanted is None:
        raise UserError(f"--against {spec!r}: expected ARM@EPOCHS, e.g. isolated-16-members@16")
    found = [i for i, runs in enumerate(horizons) if round(epochs_of(runs[0]), 1) == wanted]
    if not found:
        raise UserError(f"--against {spec!r}: no horizon at {epochs} epochs (the runs have "
                        + ", ".join(f"{epochs_of(r[0]):.1f}" for r in horizons) + ")")
    if not all(arm in r["arms"] for r in horizons[found[0]]):
        raise UserError(f"--against {spec!r}: not every seed at {epochs} epochs has {arm}")
    return arm, found[0]


def check_outputs(args: argparse.Namespace) -> None:
    """--png and --html, before any work: a file of that kind in an existing folder, never
    written through a link."""
    for option, path, suffix in (("--png", args.png, ".png"), ("--html", args.html, ".html")):
        if path and (path.is_symlink() or path.is_dir() or path.suffix != suffix
                     or not path.parent.is_dir()):
            refuse(f"{option} {path}: expected a {suffix} file in an existing folder, not a "
                   f"link")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="one directory per horizon")
    parser.add_argument("--png", type=Path, help="write the figure here")
    parser.add_argument("--html", type=Path, help="write a page with the figure and tables here")
    parser.add_argument("--against", action="append", default=[], metavar="ARM@EPOCHS",
                        help="also pair every arm with this one, e.g. isolated-16-members@16 "
                             "(the horizon given by the epochs the ensemble read there)")
    args = parser.parse_args()
    check_outputs(args)
    try:
        horizons = [runs_in(p) for p in args.runs]
        against = [named(spec, horizons) for spec in args.against]
    except UserError as e:
        refuse(str(e))
    points, ensemble = table(horizons), ensemble_of(horizons[0][0])
    first = horizons[0][0]["yardsticks"]["test"]
    yard = {name: first[name]["given"] for name in YARDSTICKS if name in first}
    lines = [f"{'arm':>20} " + " ".join(f"{e:>14.1f}" for e, _ in points[ensemble]) +
             "   (epochs; test bpb of the dev-fit mixture, mean over seeds)"]
    columns = {round(e, 1) for e, _ in points[ensemble]}
    for arm, series in points.items():
        cells = {round(e, 1): v for e, v in series}
        lines.append(f"{arm:>20} " + " ".join(
            f"{statistics.mean(cells[round(e, 1)]):>9.4f} (n={len(cells[round(e, 1)])})"
            if round(e, 1) in cells else f"{'-':>14}" for e, _ in points[ensemble])
            + "".join(f"   at {e:.1f} epochs: {statistics.mean(v):.4f} (n={len(v)})"
                      for e, v in cells.items() if e not in columns))
    lines.append("yardsticks given U: " + ", ".join(f"{k} {v:.4f}" for k, v in yard.items()))
    at, best, candidates = best_ensemble(horizons)
    lines += ["the independent ensemble's own best horizon, on the dev slice (its dev-fit "
              "mixture, mean over seeds):", *candidates,
              f"every arm's mixture against {best} at its best horizon (paired by seed; "
              f"positive: fewer bits):", *leads_over(horizons, at, best)]
    for arm, i in against:
        lines += [f"every arm's mixture against {arm} at {epochs_of(horizons[i][0]):.1f} epochs "
                  f"(paired by seed; positive: fewer bits):", *leads_over(horizons, i, arm)]
    print("\n".join(lines))
    if args.png or args.html:
        image = draw(points, ensemble, yard)
        if args.png:
            write_bytes_atomic(args.png, image)
            print(f"figure: {args.png}")
        if args.html:
            write_bytes_atomic(args.html, page(lines, image, args.runs))
            print(f"page: {args.html}")


if __name__ == "__main__":
    main()
