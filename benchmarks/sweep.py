"""Tune one member alone on the dev slice: the isolated baseline gets the same care as the method.

Each value of each swept field trains the preset's member of that family alone (the project's own
loop, the preset's bytes, batches and schedule, channels closed) and prints its dev-slice bpb.
The dev slice is the head of valid: the test split is never read here.

    python benchmarks/sweep.py --preset quick --family gru --set lr=1e-3,2e-3,4e-3
    python benchmarks/sweep.py --preset quick --family lstm --set lr=2e-3,4e-3 --set d_model=192,256
    python benchmarks/sweep.py --preset quick --family gru --train batch_size=8,16
    python benchmarks/sweep.py --preset limited --family gru --set weight_decay=0.1,1.0 \
        --set dropout=0,0.1 --train real_bytes=524288,1048576

In the data-limited regime a row also says at which epoch of U the dev bpb was best (the member's
kept weights) and where it ended: a best epoch before the end means the curve has turned.

`--set` sweeps genome fields, `--train` fields of [train] (batch size, cooldown), `--data` fields
of [data] (a data-limited reference point's k x U, to find its own epoch budget for
`compare.reference_epochs`): every combination is run (a grid), `--jobs` at a time, one thread
each.

    python benchmarks/sweep.py --preset limited --family gru --data unique_bytes=524288 \
        --epochs 4,8

`--epochs` (data-limited) sets the real bytes to that many passes over the point's unique bytes.

`--base` starts a family the preset lacks from the genome of one it has (its shape and recipe,
the family changed): a new family tuned where the others were, e.g. the `ssm` in a transformer's
shape (the same matmul FLOPs per byte):

    python benchmarks/sweep.py --preset limited --family ssm --base gpt --set lr=1e-3,2e-3,4e-3
"""

from __future__ import annotations

import argparse
import itertools
import json
import tomllib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import fields, replace

import torch

from common import alone_dev_curve, load_or_refuse, numbers, refuse, refuse_missing_families
from multitudes.config import files as config_files
from multitudes.errors import UserError


def _values(specs: list[str], option: str) -> dict[str, list]:
    out = {}
    for spec in specs:
        key, sep, raw = spec.partition("=")
        if not sep or not key or not raw:
            refuse(f"{option} {spec!r}: expected FIELD=V1,V2,...")
        try:
            out[key] = [tomllib.loads(f"v = {v}")["v"] for v in raw.split(",")]
        except tomllib.TOMLDecodeError:
            refuse(f"{option} {spec!r}: each value must be a TOML value (strings quoted)")
    return out


def point(preset: str, family: str, genome_changes: dict, train_changes: dict,
          data_changes: dict, base: str | None = None):
    """The config and the member one grid point trains: the preset's member of `family`, or
    of `base` turned into `family`."""
    cfg = config_files.load(preset=preset)
    cfg = replace(cfg, train=replace(cfg.train, **train_changes),
                  data=replace(cfg.data, **data_changes))
    member = next(g for g in cfg.members if g.family == (base or family))
    return cfg, member.replace(family=family, **genome_changes)


def check(grid: list[tuple]) -> None:
    """Every point of the grid built before any is trained: a family the preset lacks, an
    unknown field or a bad value is one line and exit 2."""
    cfg = load_or_refuse(grid[0][0])
    base = grid[0][-1]
    if base is not None and base not in {g.family for g in cfg.members}:
        refuse(f"--base {base}: the preset {grid[0][0]} has "
               f"{', '.join(sorted({g.family for g in cfg.members}))}")
    refuse_missing_families(cfg, grid[0][0], dict.fromkeys(point[1] for point in grid
                                                            if base is None))
    for preset, family, genome_changes, train_changes, data_changes, _, _, base in grid:
        for option, changes, section in (("--set", genome_changes, cfg.members[0]),
                                         ("--train", train_changes, cfg.train),
                                         ("--data", data_changes, cfg.data)):
            known = {f.name for f in fields(section)}
            for key in changes:
                if key not in known:
                    refuse(f"{option} {key}: no such field (known: {', '.join(sorted(known))})")
        try:
            point(preset, family, genome_changes, train_changes, data_changes, base)
        except UserError as e:
            refuse(str(e))


def one(args: tuple) -> dict:
    preset, family, genome_changes, train_changes, data_changes, real_bytes, epochs, base = args
    torch.set_num_threads(1)
    cfg, member = point(preset, family, genome_changes, train_changes, data_changes, base)
    if epochs:
        real_bytes = round(epochs * cfg.data.unique_bytes)
    curve = alone_dev_curve(cfg, member, real_bytes or cfg.train.real_bytes)
    row = {"family": family, **({"base": base} if base else {}), **genome_changes, **train_changes, **data_changes,
           **({"epochs": epochs} if epochs else {})}
    if cfg.regime != "data-limited":
        return row | {"dev_bpb": curve[-1][1]}
    # Data-limited: the arm keeps the member's best dev weights, so its score is the curve's
    # minimum; where it lies (in epochs of U) and the end say whether the curve has turned.
    at, best = min(curve, key=lambda point: point[1])
    return row | {"dev_bpb": best, "best_epoch": round(at / cfg.data.unique_bytes, 2),
                  "last_dev_bpb": curve[-1][1]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--family", required=True, action="append")
    parser.add_argument("--base", help="the preset's family whose member a family it lacks "
                                       "starts from (its shape and recipe)")
    parser.add_argument("--set", dest="genome", action="append", default=[])
    parser.add_argument("--train", action="append", default=[])
    parser.add_argument("--data", action="append", default=[])
    parser.add_argument("--real-bytes", type=int, default=0)
    parser.add_argument("--epochs", type=numbers,
                        default=[0.0], help="data-limited: passes over the unique bytes")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    genome, train, data = (_values(args.genome, "--set"), _values(args.train, "--train"),
                           _values(args.data, "--data"))
    grid = [(args.preset, family, dict(zip(genome, g)), dict(zip(train, t)),
             dict(zip(data, d)), args.real_bytes, e, args.base)
            for family in args.family
            for g in itertools.product(*genome.values())
            for t in itertools.product(*train.values())
            for d in itertools.product(*data.values())
            for e in args.epochs]
    if args.jobs < 1:
        refuse(f"--jobs {args.jobs}: at least 1")
    check(grid)
    with ProcessPoolExecutor(args.jobs) as pool:
        for row in pool.map(one, grid):
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
