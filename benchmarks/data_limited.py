"""Where data binds, over seeds: the data-limited compare run once per seed, and its table.

Each seed s is an ordinary `multitudes compare` run of the preset with train.seed = s and member
i's seed = 100 s + i (the scaling study's rule), in DIR/seed-s; a seed already finished is read,
a seed stopped halfway is resumed. `--jobs` seeds run at once, one thread each, each writing to
DIR/seed-s.log and drawing a bar of its member-steps, its rate and the time left on a terminal
(seed_progress.py). Then the table: every arm's test bpb (its best member, its consensus, its
dev-fit mixture) as mean ± std over the seeds, its data efficiency against the isolated
recipe's best member and against the ensemble of the isolated members, and the paired
differences the verdict reads.

    python benchmarks/data_limited.py --preset limited --seeds 1,2,3 --out runs/limited-seeds
    python benchmarks/data_limited.py --out runs/limited-seeds --table-only
    python benchmarks/data_limited.py --out runs/tuned --table-only --against runs/untuned
    python benchmarks/data_limited.py --out runs/limited-seeds --table-only --reference runs/longer

`--reference DIR` places every arm on the data-scaling reference of DIR, another set of the same
seeds (a reference read for more epochs, say) whose isolated arm on U is the same: the points
are the expensive part and need not be trained again for every set of arms.

`--default DIR` adds multiplier (a), Slowrun's: each arm on the *default* recipe's curve, the
unique data its best member needs when every byte is read once (the stream recipe: no weight
decay, no dropout), the better of its members' families and sizes at each point. DIR is the
same seeds of the same preset run as that curve (the sample corpus holds 32 x 64 KiB):

    sets=(); for i in 0 1 2 3; do
        sets+=(--set members.$i.weight_decay=0 --set members.$i.dropout=0); done
    python benchmarks/data_limited.py --preset horizons --seeds 1,2,3 --out runs/default-curve \\
        --set train.real_bytes=65536 --set "compare.unique_multiples=[1, 2, 4, 8, 16, 32]" \\
        --set "compare.reference_epochs=[1, 1, 1, 1, 1]" --set compare.generations=0 \\
        --set compare.apart=false --set compare.snapshot_cycles=0 "${sets[@]}"
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from multitudes.config.files import from_dict, load
from multitudes.config.schema import RunConfig
from multitudes.errors import UserError
from multitudes.evaluation.placement import WHATS, on_curve, place, reference_arm
from multitudes.runs.checkpoint import write_bytes_atomic
from multitudes.runs.results import diversity, mixture_source, read as read_results
from multitudes.study.plan import member_seed
from seed_progress import SeedBar


POLL_SECONDS = 5  # how often a seed's bar reads its run's metrics again
TAUGHT = ("student", "generation", "snapshots")  # the kinds of arm that hear frozen teachers


def seed_overrides(preset: str, seed: int) -> list[str]:
    members = len(load(preset=preset).members)
    return ["--set", f"train.seed={seed}"] + [
        arg for i in range(members)
        for arg in ("--set", f"members.{i}.seed={member_seed(seed, i)}")]


def run_seed(preset: str, seed: int, out: Path, extra: list[str], cfg: RunConfig,
             position: int = 0) -> Path:
    """Seed `seed`'s run of the set, `cfg` its config, its bar drawn at `position`."""
    run = out / f"seed-{seed}"
    if (run / "results.json").is_file():
        return run
    cmd = [sys.executable, "-m", "multitudes", "compare", "--quiet"]
    cmd += ["--resume", str(run)] if run.is_dir() else [
        "--preset", preset, "--out", str(run), *seed_overrides(preset, seed), *extra]
    log = out / f"seed-{seed}.log"
    bar = SeedBar(f"seed {seed}", run, cfg, position)
    with open(log, "a") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT,
                                env=os.environ | {"OMP_NUM_THREADS": "1"})
        while True:
            try:
                code = proc.wait(timeout=POLL_SECONDS)
                break
            except subprocess.TimeoutExpired:
                bar.update()
    bar.close(finished=code == 0)
    if code:
        raise UserError(f"seed {seed} failed (exit {code}); see {log}")
    return run


def seed_config(preset: str, seed: int, run: Path, extra: list[str]) -> RunConfig:
    """The config a seed's run trains under (a resumed run's own), read before any run starts:
    a bad preset or `--set` is one line before anything is written."""
    if run.is_dir():
        try:
            return from_dict(json.loads((run / "config.json").read_text())["config"])
        except (OSError, ValueError, KeyError, TypeError, UserError):
            pass  # not a run compare wrote: compare itself says so, in the seed's log
    sets = seed_overrides(preset, seed)[1::2] + extra[1::2]
    return load(preset=preset, overrides=sets)


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def efficiency(cells: list[dict], vs: str) -> str:
    """Mean data efficiency over seeds; '>' or '<=' when any seed's is a bound."""
    values = [c[f"vs_{vs}"] for c in cells]
    flags = {c[f"vs_{vs}_flag"] for c in cells} - {""}
    return f"{''.join(sorted(flags))}{statistics.mean(values):.2f}x"


def table(runs: list[dict], defaults: list[list[tuple[float, float]]] | None = None) -> str:
    """The table of a set of seeds; `defaults`: each seed's default-recipe curve (--default),
    which adds the multiplier on it, (a), for every arm's best member and mixture."""
    arms = list(runs[0]["arms"])
    placed = runs[0]["data_limited"]["placed"]
    fit = mixture_source(runs[0]["arms"][arms[0]])
    lines = [f"| arm | test bpb: best member | consensus | {fit} mixture | epochs (to best) "
             "| U'/U best (vs single / vs ensemble) | U'/U mixture (vs single / vs ensemble) "
             + ("| U'/U on the default recipe's curve (a): best / mixture " if defaults else "")
             + "| its training FLOPs, teachers' forwards included (x the isolated arm's) "
             "| diversity (valid) |",
             "|---|---|---|---|---|---|---|---|---|" + ("---|" if defaults else "")]
    for arm in arms:
        res = [r["arms"][arm] for r in runs]
        row = [arm] + [mean_std([x[f"{w}_test_bpb"] for x in res]) for w in WHATS]
        # epochs read, and where its members' dev curves were best (a turned curve: fewer)
        turned = [m["epochs_to_best"] for x in res for m in x["members"] if "epochs_to_best" in m]
        row.append(f"{statistics.mean(x['epochs'] for x in res):.1f}"
                   + (f" ({statistics.mean(turned):.1f})" if turned else ""))
        if arm in placed:
            for w in ("best", "mixture"):
                cells = [r["data_limited"]["placed"][arm][w] for r in runs]
                row.append(f"{efficiency(cells, 'single')} / {efficiency(cells, 'ensemble')}")
        else:
            row += ["(reference)", "(reference)"]
        if defaults:
            row.append(" / ".join(on_default([x[f"{w}_test_bpb"] for x in res], defaults)
                                  for w in ("best", "mixture")))
        # compute beside bpb: a generation's own arm only (its lineage is the rows above it)
        flops = [(x["train_flops"] + x.get("teacher_flops", 0.0))
                 / r["arms"]["isolated"]["train_flops"] for x, r in zip(res, runs)]
        # a record from before the teachers' forwards were counted: say so, not 1.00x
        unrecorded = any(x.get("arm", {}).get("kind") in TAUGHT and "teacher_flops" not in x
                         for x in res)
        row.append(f"{statistics.mean(flops):.2f}x"
                   + (" + teachers' forwards (not recorded)" if unrecorded else ""))
        row.append(mean_std([diversity(x) for x in res]))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def on_default(values: list[float], curves: list[list[tuple[float, float]]]) -> str:
    """Multiplier (a), Slowrun's definition: the unique data the default recipe (each byte read
    once) needs to reach each seed's test bpb, over U, on that seed's curve; mean over seeds,
    '>' past the curve's largest point, '<=' at or above its first."""
    cells = [on_curve(curve, value) for value, curve in zip(values, curves)]
    flags = {flag for _, flag in cells} - {""}
    return f"{''.join(sorted(flags))}{statistics.mean(k for k, _ in cells):.2f}x"


def default_curve(run: dict, where: str) -> list[tuple[float, float]]:
    """The default recipe's curve of one seed: its reference points (k x U, each read once),
    the best member of each (the better of its members' families and sizes)."""
    points = run.get("data_limited", {}).get("reference", []) if run.get(
        "command") == "compare" else []
    if len(points) < 2 or any(abs(q["epochs"] - 1) > 0.01 for q in points):
        raise UserError(f"{where}: not a default recipe's curve (a data-limited compare whose "
                        f"every reference point reads its k x U once; see --help)")
    return [(q["k"], q["best_test_bpb"]) for q in points]


def paired(runs: list[dict], a: tuple[str, str], b: tuple[str, str], split: str = "test"
           ) -> str:
    """b's lead over a in test bpb (a - b, positive: b better), per seed and its mean; on
    `split` = "valid": the rest of valid beyond the dev slice, which no decision read either."""
    diffs = [r["arms"][a[0]][f"{a[1]}_{split}_bpb"] - r["arms"][b[0]][f"{b[1]}_{split}_bpb"]
             for r in runs]
    where = "" if split == "test" else " (valid beyond the dev slice)"
    return lead_line(f"{b[0]} {b[1]} vs {a[0]} {a[1]}{where}", diffs)


def lead_line(label: str, diffs: list[float]) -> str:
    """A paired lead: its mean, each seed's, and in how many seeds it is a lead."""
    wins = sum(d > 0 for d in diffs)
    return (f"{label}: {statistics.mean(diffs):+.4f} bpb (per seed "
            f"{', '.join(f'{d:+.4f}' for d in diffs)}; better in {wins}/{len(diffs)})")


def verdict_lines(runs: list[dict]) -> list[str]:
    arms = runs[0]["arms"]
    pairs = [(("isolated", "mixture"), ("social", "mixture")),
             (("isolated", "consensus"), ("social", "consensus")),
             (("isolated", "best"), ("social", "best"))]
    # each generation against its parent (generation 1 is the social arm): where the gain of
    # generation g over g - 1 stops
    pairs += [((a["arm"]["parent"], "mixture"), (name, "mixture")) for name, a in arms.items()
              if a["arm"]["kind"] == "generation" and a["arm"].get("parent") in arms]
    if "distilled" in arms:
        pairs += [(("isolated", "best"), ("distilled", "best")),
                  (("distilled-ensemble", "best"), ("distilled", "best"))]
    # the seed's method on q0's cycles against q0's recipe alone (the snapshot arm that
    # listens against the one that does not), on test and on valid beyond dev
    cyclic = {a["arm"]["listens"]: name for name, a in arms.items()
              if a["arm"]["kind"] == "snapshots"}
    versus = [((cyclic[False], "mixture"), (cyclic[True], "mixture"))] if len(cyclic) == 2 else []
    # what teaching adds beyond selection: the last generation against its genomes apart
    versus += [((name, "mixture"), (a["arm"]["source"], "mixture")) for name, a in arms.items()
               if a["arm"]["kind"] == "apart" and a["arm"]["source"] in arms]
    # and each arm that spends more (the cyclic arms, the lineage of every generation) against
    # the ensemble given more compute, as epochs (compare.ensemble_compute) or as members
    # (compare.ensemble_members): at equal compute when its F (or M / K) is the cycles'
    # 1 + (C - 1) / 3C, or the lineage's G
    spenders = list(cyclic.values()) + [name for name, a in arms.items()
                                        if a["arm"]["kind"] == "lineage"]
    versus += [((name, "mixture"), (c, "mixture")) for name, a in arms.items()
               if a["arm"]["kind"] in ("longer", "enlarged") for c in spenders]
    # every other arm on U against the independent ensemble, on test and on valid beyond dev,
    # and against the ensemble re-tuned at this horizon (compare.retuned) where there is one
    others = [a for a in runs[0]["data_limited"]["placed"] if a in arms and a != "social"]
    ensembles = ["isolated"] + [name for name, a in arms.items() if a["arm"]["kind"] == "retuned"]
    return [paired(runs, a, b) for a, b in pairs] + [
        paired(runs, a, b, split) for a, b in versus for split in ("test", "valid")] + [
        paired(runs, ("isolated", "mixture"), ("social", "mixture"), split="valid")] + [
        paired(runs, (ensemble, "mixture"), (arm, "mixture"), split=split)
        for ensemble in ensembles for arm in ["social"] * (ensemble != "isolated") + others
        if arm != ensemble for split in ("test", "valid")]


def against_lines(runs: list[dict], before: list[dict], label: str) -> list[str]:
    """The same seeds of another set (`--against`, e.g. before a tuning): each arm's lead here
    over there, paired by seed (positive: this set codes test in fewer bits); the mixture's on
    valid beyond the dev slice too, and on the dev slice, which chooses between the two sets
    (an arm's recipe is chosen on dev, never on test). Not between sets whose mixtures were
    fit in different places: dev-fit weights were fit on that slice, and would win there."""
    first = next(iter(runs[0]["arms"]))
    same_fit = mixture_source(runs[0]["arms"][first]) == mixture_source(before[0]["arms"][first])
    cells = [(what, "test", "") for what in WHATS] + [
        ("mixture", "valid", " (valid beyond the dev slice)")] + [
        ("mixture", "dev", " (the dev slice, which chooses)")] * same_fit
    lines = []
    for arm in runs[0]["arms"]:
        if arm not in before[0]["arms"]:
            continue
        for what, split, where in cells:
            key = f"{what}_{split}_bpb"
            if not all(key in x["arms"][arm] for x in runs + before):
                continue
            diffs = [b["arms"][arm][key] - r["arms"][arm][key] for r, b in zip(runs, before)]
            if any(diffs):  # an arm that did not change (the isolated ones) says nothing
                lines.append(lead_line(f"{arm} {what} vs {label}{where}", diffs))
    return lines


def reference_names(run: dict) -> list[str]:
    """The arms of a run's data-scaling reference, U's first."""
    return [reference_arm(q["k"]) for q in run["data_limited"]["reference"]]


def on_reference(run: dict, ref: dict, where: str) -> dict:
    """`run` with its arms placed on `ref`'s reference (the same seed's run of another set):
    its own points beyond U give way to ref's. Refused unless both trained the same isolated
    arm on U, which only the same seed, U and recipe do."""
    if "data_limited" not in run or "data_limited" not in ref:
        raise UserError(f"{where}: not a data-limited run (no data-scaling reference)")
    try:
        differs = any(run["arms"]["isolated"][f"{w}_test_bpb"]
                      != ref["arms"]["isolated"][f"{w}_test_bpb"] for w in WHATS)
    except (KeyError, TypeError) as e:  # hand-edited, or not compare's
        raise UserError(f"{where}: a results.json without the isolated arm's test scores "
                        f"(missing {e}); not one that compare wrote") from None
    if differs:
        raise UserError(f"{where}: its isolated arm on U is not this set's (another seed, U or "
                        f"recipe), so its curve cannot place these arms")
    own, theirs = reference_names(run), reference_names(ref)
    arms = {}
    for name, arm in run["arms"].items():
        if name == "isolated":
            arms.update({n: ref["arms"][n] for n in theirs})
        elif name not in own:
            arms[name] = arm
    return {**run, "arms": arms, "data_limited": place(ref["data_limited"]["reference"], arms,
                                                      theirs)}


def check_set(runs: list[dict], names: list[str], where: str) -> None:
    """Every seed's results a data-limited compare's, with the same arms and the scores the
    table reads: a set of another regime or command, or seeds of different configs, is one
    line, not a KeyError halfway through the table."""
    arms = None
    for run, name in zip(runs, names):
        if run.get("command") != "compare" or "data_limited" not in run or not isinstance(
                run.get("arms"), dict):
            raise UserError(f"{where}/{name}: not a data-limited compare's results (stream or "
                            f"train results have no data-scaling reference)")
        if arms is not None and list(run["arms"]) != arms:
            raise UserError(f"{where}: {name} has the arms {', '.join(run['arms'])}, "
                            f"{names[0]} has {', '.join(arms)}: seeds of one set share a config")
        arms = list(run["arms"])
        for arm, res in run["arms"].items():
            missing = [f"{w}_test_bpb" for w in WHATS if not isinstance(
                res.get(f"{w}_test_bpb") if isinstance(res, dict) else None, (int, float))]
            if missing:
                raise UserError(f"{where}/{name}: its arm {arm} lacks {', '.join(missing)}; "
                                f"not one that compare wrote")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def seed_list(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 1 or len(set(seeds)) < len(seeds):
        raise argparse.ArgumentTypeError(f"expected distinct positive integers, e.g. 1,2,3, "
                                         f"got {text!r}")
    return seeds


def main() -> None:
    try:
        report(parse())
    except UserError as e:  # bad input: one line and exit 2, as the command line says it
        print(f"data_limited.py: error: {e}", file=sys.stderr)
        sys.exit(2)


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="limited")
    parser.add_argument("--seeds", type=seed_list, default=[1, 2, 3])
    parser.add_argument("--out", type=Path, default=Path("runs/limited-seeds"))
    parser.add_argument("--jobs", type=positive_int, default=2)
    parser.add_argument("--set", action="append", default=[], help="passed to every seed's run")
    parser.add_argument("--table-only", action="store_true", help="read the finished seeds")
    parser.add_argument("--against", type=Path, help="another set of the same seeds (e.g. "
                        "before a tuning): each arm's paired lead over it")
    parser.add_argument("--reference", type=Path, help="another set of the same seeds whose "
                        "data-scaling reference places the arms (written to "
                        "table-on-NAME.md)")
    parser.add_argument("--default", type=Path, help="a set of the same seeds that is the "
                        "default recipe's curve (each point's k x U read once): adds the "
                        "multiplier on it, (a)")
    return parser.parse_args()


def report(args: argparse.Namespace) -> None:
    if args.out.exists() and not args.out.is_dir() or args.out.is_symlink():
        raise UserError(f"--out {args.out}: not a folder (a set of seeds is a folder of runs)")
    if args.table_only and not args.out.is_dir():
        raise UserError(f"--out {args.out}: no such folder to read")
    extra = [a for s in args.set for a in ("--set", s)]
    configs = [] if args.table_only else [
        seed_config(args.preset, s, args.out / f"seed-{s}", extra) for s in args.seeds]
    args.out.mkdir(parents=True, exist_ok=True)
    if args.table_only:
        dirs = sorted(p.parent for p in args.out.glob("seed-*/results.json"))
    else:
        with ThreadPoolExecutor(args.jobs) as pool:
            dirs = list(pool.map(lambda i: run_seed(args.preset, args.seeds[i], args.out,
                                                    extra, configs[i], position=i),
                                 range(len(args.seeds))))
    if not dirs:
        raise UserError(f"no finished seed in {args.out}")
    runs = [read_results(d / "results.json", f"{d.name}'s results") for d in dirs]
    check_set(runs, [d.name for d in dirs], str(args.out))
    placed_on = ""
    if args.reference:
        runs = [on_reference(run, read_results(args.reference / d.name / "results.json",
                                               f"{args.reference / d.name}'s results"),
                             str(args.reference / d.name)) for run, d in zip(runs, dirs)]
        placed_on = f"; placed on the reference of {args.reference}"
    defaults = None
    if args.default:
        curve_runs = [read_results(args.default / d.name / "results.json",
                                   f"{args.default / d.name}'s results") for d in dirs]
        defaults = [default_curve(theirs, str(args.default / d.name))
                    for theirs, d in zip(curve_runs, dirs)]
        for run, d, theirs in zip(runs, dirs, curve_runs):
            U = run["data_limited"]["reference"][0]["unique_bytes"]
            if theirs["data_limited"]["reference"][0]["unique_bytes"] != U or theirs.get(
                    "corpus") != run.get("corpus"):
                raise UserError(f"{args.default / d.name}: its U or corpus is not this set's "
                                f"({U:,} bytes of {run.get('corpus')})")
        placed_on += f"; (a) on the default recipe's curve of {args.default}"
    text = "\n".join([f"{len(runs)} seeds ({', '.join(d.name for d in dirs)}), test bpb mean ± "
                      f"std; U'/U a mean over seeds ('>' or '<=': a bound in some seed)"
                      f"{placed_on}", "", table(runs, defaults), "", *verdict_lines(runs)])
    if args.against:
        before = [read_results(args.against / d.name / "results.json",
                               f"{args.against / d.name}'s results") for d in dirs]
        check_set(before, [d.name for d in dirs], str(args.against))
        text += "\n\n" + "\n".join(against_lines(runs, before, str(args.against)))
    name = f"table-on-{args.reference.resolve().name}.md" if args.reference else "table.md"
    write_bytes_atomic(args.out / name, (text + "\n").encode())
    print(text)


if __name__ == "__main__":
    main()
