"""Tune the social arm on the dev slice, as the isolated members were tuned before it.

Each point of the grid trains the preset's whole population with its channel open (`--channel`:
logit, or complement, population/channels.py), every
member's listen weight `alpha` and temperature `tau` and the population's `social.trust` set to
the point's values (the project's own
loop, the preset's bytes, batches, schedule and regularization), and prints what the dev slice
says of the weights the arm keeps (in the data-limited regime: each member's best):

- `best`: the best member's dev bpb;
- `consensus`: the members' probabilities averaged;
- `mixture`: the members mixed with weights fit on the dev slice, scored on it (in-sample: four
  weights on 32 KiB, the same small optimism for every row);
- `diversity`: the members' mean dev bpb less their consensus's (the ambiguity of the log loss:
  how much the members' disagreement is worth to their average; 0 for identical members).

The first row is the same members trained apart (the channel closed): the isolated arm and its
ensemble, the control the social arm must beat. The test split is never read here, and the
held-out rest of valid is not printed: choosing reads the dev slice only.

    python benchmarks/sweep_social.py --preset limited --alpha 0.125,0.25,0.5,1 --tau 1,2 --jobs 2
    python benchmarks/sweep_social.py --preset limited --alpha 0.25,0.5,1 --tau 1 --trust fitness \
        --no-control
"""

from __future__ import annotations

import argparse
import json
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import torch

from common import numbers
from multitudes.config import files as config_files
from multitudes.population.channels import CHANNELS
from multitudes.training import protocols


def one(args: tuple) -> dict:
    preset, alpha, tau, trust, channel = args
    torch.set_num_threads(1)
    cfg = config_files.load(preset=preset)
    if alpha is None:  # the control: the same members, the channel closed
        cfg = replace(cfg, social=replace(cfg.social, channel="none", language_every=0))
    else:
        cfg = replace(cfg, members=[g.replace(alpha=alpha, tau=tau) for g in cfg.members],
                      social=replace(cfg.social, trust=trust, channel=channel))
    cfg = replace(cfg, train=replace(cfg.train, checkpoint_every=0))
    with tempfile.TemporaryDirectory() as tmp:
        results = protocols.run("train", cfg, Path(tmp), progress=False)
    (name, arm), = results["arms"].items()
    row = {"arm": name, "channel": channel if alpha is not None else "none", "alpha": alpha,
           "tau": tau, "trust": trust}
    row["best"] = min(m["best_dev_bpb"] for m in arm["members"])
    row["consensus"] = arm["consensus_dev_bpb"]
    row["mixture"] = arm["mixture_dev_bpb"]
    row["diversity"] = (sum(m["best_dev_bpb"] for m in arm["members"]) / len(arm["members"])
                        - arm["consensus_dev_bpb"])
    row["members"] = {m["id"]: round(m["best_dev_bpb"], 4) for m in arm["members"]}
    row["epochs_to_best"] = {m["id"]: m["epochs_to_best"] for m in arm["members"]}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="limited")
    parser.add_argument("--alpha", type=numbers, default=[0.125, 0.25, 0.5, 1.0])
    parser.add_argument("--tau", type=numbers, default=[1.0, 2.0])
    parser.add_argument("--trust", type=lambda t: t.split(","), default=["uniform"],
                        help="how a listener weighs its peers (social.trust)")
    parser.add_argument("--channel", choices=sorted(CHANNELS), default="logit",
                        help="the channel the members listen through (social.channel)")
    parser.add_argument("--no-control", action="store_true", help="skip the channel-closed row")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    cfg = config_files.load(preset=args.preset)
    if cfg.regime != "data-limited":
        parser.error(f"--preset {args.preset}: a data-limited preset (its members keep their "
                     f"best dev weights, which is what this sweep scores)")
    grid = ([] if args.no_control else [(args.preset, None, None, None, None)]) + [
        (args.preset, a, t, trust, args.channel) for trust in args.trust for a in args.alpha
        for t in args.tau]
    with ProcessPoolExecutor(args.jobs) as pool:
        for row in pool.map(one, grid):
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
