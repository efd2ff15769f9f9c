"""Tune how hard the taught arms listen (`compare.student_alpha`) on the dev slice.

The students of a data-limited compare (the distilled members, a generation) hear frozen
teachers: the finished social arm's or the isolated ensemble's kept members, mixed with the
weights the dev slice fit. This trains only the students again, each at every listen weight
given, from one finished run's teachers (read from its directory, never changed): the same
genomes, seeds, bytes and schedule as in the run, through the project's own taught runner. Each
row prints what the dev slice says of the weights the student keeps: its best member, the
uniform consensus and (a generation) the dev-fit mixture, in-sample. Test and the rest of valid
are never printed here: choosing reads the dev slice only. `0` is the genome's own alpha.

    python benchmarks/sweep_students.py --run runs/limited --alpha 0,0.25,0.5,1 --jobs 2
    python benchmarks/sweep_students.py --run runs/limited --alpha 0.5 --arm generation-2
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import torch

from common import numbers
from multitudes.config.files import from_dict
from multitudes.data.corpora import resolve
from multitudes.data.splits import load_splits
from multitudes.errors import UserError
from multitudes.runs.files import RunFiles
from multitudes.runs.results import read as read_results
from multitudes.training import protocols
from multitudes.training.arms import ArmContext


def one(args: tuple) -> dict:
    run, arm, alpha = args
    record = json.loads((run / "config.json").read_text())
    torch.set_num_threads(record.get("threads", 1))  # the run's: its students reproduce at its alpha
    cfg = from_dict(record["config"])
    cfg = replace(cfg, compare=replace(cfg.compare, student_alpha=alpha),
                  train=replace(cfg.train, checkpoint_every=0))
    arms = read_results(run / "results.json")["arms"]
    plan = next(p for p in protocols.plan("compare", cfg) if p.name == arm)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for teacher in plan.waits_for():  # the teachers (and the ranked isolated member)
            shutil.copytree(run / "members" / teacher, out / "members" / teacher,
                            dirs_exist_ok=True)
        files = RunFiles(out, progress=False)
        splits = load_splits(resolve(cfg.data.corpus))
        runner = plan.build(ArmContext(cfg, splits, files), arms)
        runner.run_until(plan.total_bytes)
        result = runner.milestone()
        files.close()
    return {"run": str(run), "arm": arm, "student_alpha": alpha,
            "best": min(m["best_dev_bpb"] for m in result["members"]),
            "consensus": result["consensus_dev_bpb"], "mixture": result["mixture_dev_bpb"],
            "in_run": {"student_alpha": record["config"]["compare"].get("student_alpha", 0.0),
                       "best": min(m["best_dev_bpb"] for m in arms[arm]["members"]),
                       "mixture": arms[arm]["mixture_dev_bpb"]}}


def refuse(why: str) -> None:
    """Bad input: one line on stderr, exit 2."""
    print(f"sweep_students.py: error: {why}", file=sys.stderr)
    sys.exit(2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished data-limited compare")
    parser.add_argument("--alpha", type=numbers, required=True,
                        help="listen weights, comma-separated (0: the genome's)")
    parser.add_argument("--arm", action="append", help="distilled (default), distilled-ensemble, "
                        "generation-2, ...")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", type=Path, help="append each row here as a JSON line")
    args = parser.parse_args()
    try:
        results = read_results(args.run / "results.json")["arms"]
        json.loads((args.run / "config.json").read_text())["config"]
    except (UserError, OSError, ValueError, KeyError, TypeError) as e:
        refuse(f"--run {args.run}: not a finished compare ({e})")
    if args.out and (args.out.is_symlink() or (args.out.exists() and not args.out.is_file())):
        refuse(f"--out {args.out}: not a regular file (rows are appended, never through a link)")
    arms = args.arm or ["distilled"]
    missing = [a for a in arms if a not in results]
    if missing:
        refuse(f"--arm {', '.join(missing)}: not an arm of {args.run} "
               f"(it has {', '.join(results)})")
    grid = [(args.run, arm, alpha) for arm in arms for alpha in args.alpha]
    print(f"{'arm':>20} {'alpha':>7} {'best':>8} {'consensus':>10} {'mixture':>8}   (dev slice)")
    with ProcessPoolExecutor(args.jobs) as pool:
        for row in pool.map(one, grid):
            print(f"{row['arm']:>20} {row['student_alpha']:>7g} {row['best']:>8.4f} "
                  f"{row['consensus']:>10.4f} {row['mixture']:>8.4f}", flush=True)
            if args.out:
                with args.out.open("a") as f:
                    f.write(json.dumps(row) + "\n")
    for arm in arms:
        seen = results[arm]
        print(f"{arm} in the run itself: best {min(m['best_dev_bpb'] for m in seen['members']):.4f}"
              f", mixture {seen['mixture_dev_bpb']:.4f}")


if __name__ == "__main__":
    main()
