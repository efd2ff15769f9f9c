"""Tune the snapshot arm (training/snapshots.py) on the dev slice: its cycles and perturbation.

Trains only the snapshot arm of a data-limited compare, under a preset and `--set` overrides,
once per setting of the grid: the cycle counts times the (shrink, noise) pairs given. Each row
prints what the dev slice says of the kept snapshots: the best one, their uniform consensus and
their dev-fit mixture (in-sample, as every arm's sweep reads it). Test and the rest of valid are
never printed here: choosing reads the dev slice only. Resumable: with `--out`, settings already
in the file are not trained again.

    python benchmarks/sweep_snapshots.py --preset limited --cycles 2,4,8 \\
        --perturb 1:0,0.8:0.2 --jobs 2 --out runs/sweep_snapshots.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import torch

from multitudes.config import files as config_files
from multitudes.data.corpora import resolve
from multitudes.data.splits import check_trainable, load_splits
from multitudes.errors import UserError
from multitudes.runs.files import RunFiles
from multitudes.training import snapshots
from multitudes.training.arms import ArmContext
from multitudes.training.protocols import plan
from multitudes.training.snapshots import Snapshots


def one(args: tuple) -> dict:
    preset, sets, cycles, shrink, noise, threads = args
    torch.set_num_threads(threads)
    cfg = setting(preset, sets, cycles, shrink, noise)
    arm = next(a for a in plan("compare", cfg) if isinstance(a, Snapshots))
    with tempfile.TemporaryDirectory() as tmp:
        files = RunFiles(Path(tmp), progress=False)
        runner = arm.build(ArmContext(cfg, load_splits(resolve(cfg.data.corpus)), files), {})
        runner.run_until(arm.total_bytes)
        result = runner.milestone()
        files.close()
    return {"preset": preset, "set": sets, "cycles": cycles, "shrink": shrink, "noise": noise,
            "best": min(m["best_dev_bpb"] for m in result["members"]),
            "consensus": result["consensus_dev_bpb"], "mixture": result["mixture_dev_bpb"]}


def setting(preset: str, sets: list[str], cycles: int, shrink: float, noise: float):
    cfg = config_files.load(preset, None, sets)
    return replace(cfg, train=replace(cfg.train, checkpoint_every=0),
                   compare=replace(cfg.compare, snapshot_cycles=cycles, snapshot_shrink=shrink,
                                   snapshot_noise=noise))


def refuse(why: str) -> None:
    """Bad input: one line on stderr, exit 2."""
    print(f"sweep_snapshots.py: error: {why}", file=sys.stderr)
    sys.exit(2)


def parse(text: str, kind, what: str) -> list:
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values:
        refuse(f"{what} {text!r}: expected a comma-separated list")
    return values


def pair(text: str) -> tuple[float, float]:
    shrink, noise = text.split(":")
    return float(shrink), float(noise)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="limited")
    parser.add_argument("--set", action="append", default=[], dest="sets",
                        help="config overrides, as `multitudes compare --set`")
    parser.add_argument("--cycles", required=True, help="cycle counts, e.g. 2,4,8")
    parser.add_argument("--perturb", default="1:0", help="shrink:noise pairs, e.g. 1:0,0.8:0.2")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per job")
    parser.add_argument("--out", type=Path, help="append each row here as a JSON line")
    args = parser.parse_args()
    cycles = parse(args.cycles, int, "--cycles")
    perturb = parse(args.perturb, pair, "--perturb")
    if args.jobs < 1 or args.threads < 1:
        refuse(f"--jobs {args.jobs} --threads {args.threads}: both at least 1")
    if args.out and (args.out.is_symlink() or (args.out.exists() and not args.out.is_file())):
        refuse(f"--out {args.out}: not a regular file (rows are appended, never through a link)")
    grid = [(args.preset, args.sets, c, s, n, args.threads) for c in cycles for s, n in perturb]
    try:  # every setting checked before any trains
        for _, sets, c, s, n, _ in grid:
            cfg = setting(args.preset, sets, c, s, n)
            if cfg.regime != "data-limited":
                raise UserError(f"the snapshot arm is data-limited; {args.preset} is "
                                f"{cfg.regime}")
            snapshots.check(cfg)
            check_trainable(load_splits(resolve(cfg.data.corpus)), cfg.train.batch_size,
                            cfg.context, cfg.train.dev_bytes, cfg.data.corpus,
                            cfg.data.unique_bytes)
        done = [json.loads(line) for line in args.out.read_text().splitlines()] \
            if args.out and args.out.exists() else []
    except UserError as e:
        refuse(str(e))
    except (OSError, ValueError) as e:
        refuse(f"--out {args.out}: not a file of rows ({e})")
    seen = {(r["preset"], tuple(r["set"]), r["cycles"], r["shrink"], r["noise"]) for r in done}
    todo = [g for g in grid if (g[0], tuple(g[1]), *g[2:5]) not in seen]
    print(f"{'cycles':>6} {'shrink':>6} {'noise':>6} {'best':>8} {'consensus':>10} "
          f"{'mixture':>8}   (dev slice)")
    for row in done:
        print(f"{row['cycles']:>6} {row['shrink']:>6g} {row['noise']:>6g} {row['best']:>8.4f} "
              f"{row['consensus']:>10.4f} {row['mixture']:>8.4f}   (read from --out)")
    with ProcessPoolExecutor(args.jobs) as pool:
        for row in pool.map(one, todo):
            print(f"{row['cycles']:>6} {row['shrink']:>6g} {row['noise']:>6g} "
                  f"{row['best']:>8.4f} {row['consensus']:>10.4f} {row['mixture']:>8.4f}",
                  flush=True)
            if args.out:
                with args.out.open("a") as f:
                    f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
