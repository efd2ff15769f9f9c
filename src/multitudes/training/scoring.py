"""How an arm is scored: every member on the dev slice during training, and on the held-out
splits at a milestone.

Fitness, tuning and curves read the dev slice (the head of valid); a milestone scores what no
decision has seen: the rest of valid, and test. In the data-limited regime (`keep_best`) each
member's best dev weights are kept and the milestone scores those (early stopping).
"""

from __future__ import annotations

import math

import torch

from multitudes.training import state
from multitudes.config.schema import RunConfig
from multitudes.errors import UserError
from multitudes.runs.device import scoring_precision
from multitudes.evaluation.bpb import (block_bpb, bpb, byte_log2probs, consensus_bpb,
                                       consensus_log2probs, fit_mixture, mixture_bpb)
from multitudes.population.member import Member
from multitudes.population.population import Population
from multitudes.runs.files import RunFiles

LN2 = math.log(2)


class Scoring:
    def __init__(self, cfg: RunConfig, splits: dict, device: torch.device, keep_best: bool,
                 progress: bool = False, mixture_slice=None):
        """`mixture_slice`: bytes held out of the arm's unique bytes to fit the mixture's
        weights on (`compare.mixture_fit = "unique"`); None: the dev slice."""
        self.cfg, self.device, self.keep_best, self.progress = cfg, device, keep_best, progress
        self.mixture_slice = mixture_slice
        self.dev = splits["valid"][: cfg.train.dev_bytes]
        self.held_out = {"valid": splits["valid"][cfg.train.dev_bytes:], "test": splits["test"]}
        if len(self.held_out["valid"]) < 2:
            raise UserError(f"train.dev_bytes={cfg.train.dev_bytes} leaves nothing of the "
                            f"{len(splits['valid']):,}-byte valid split to score beyond the dev "
                            f"slice; use a smaller dev slice")
        self.carry_state = cfg.train.sampling == "contiguous"
        self.best: dict[str, dict] = {}  # member id -> its best dev bpb, step and weights

    def log2probs(self, model, data, progress: bool = False) -> torch.Tensor:
        return byte_log2probs(model, data, self.cfg.context, self.cfg.train.eval_stride,
                              device=self.device, progress=progress,
                              carry_state=self.carry_state,
                              precision=scoring_precision(self.cfg.train.precision))

    def dev_bpb(self, model) -> float:
        return bpb(self.log2probs(model, self.dev))

    def dev_row(self, pop: Population, row: dict) -> dict:
        """Score every member on the dev slice (each rank its own, then shared) into `row`;
        sets each member's fitness and keeps its best weights when asked to."""
        scored = pop.sync(pop.each_owned(lambda m: self.log2probs(m.model, self.dev)))
        logps = [scored[i] for i in range(len(pop.members))]
        row["members"] = {}
        for m, lp in zip(pop.members, logps):
            m.fitness = bpb(lp)
            row["members"][m.id] = {"family": m.genome.family, "dev_bpb": m.fitness,
                                    "train_bpb": m.last_loss / LN2, "flops": m.flops}
            if self.keep_best and pop.owns(m) and \
                    m.fitness < self.best.get(m.id, {}).get("dev_bpb", math.inf):
                self.best[m.id] = {"dev_bpb": m.fitness, "step": pop.steps,
                                   "real_bytes": pop.real_bytes, "epochs": row["epochs"],
                                   "weights": {k: v.detach().clone()
                                               for k, v in m.model.state_dict().items()}}
        row["best_dev_bpb"] = min(v["dev_bpb"] for v in row["members"].values())
        row["consensus_dev_bpb"] = consensus_bpb(logps)
        return row

    def milestone(self, pop: Population, arm: str, label: str, files: RunFiles,
                  epochs: float) -> dict:
        """Score every member on valid (beyond the dev slice) and test and save its weights.

        Each rank scores and saves the members it owns; the scores are then shared.
        """
        # One sync brings both the scores and every member's counters (train FLOPs). Members
        # scored side by side draw no progress bars (they would overwrite each other's).
        bars = self.progress and pop.workers(len(pop.mine())) == 1
        scored = pop.sync(pop.each_owned(
            lambda m: self._score(m, arm, label, files, pop.real_bytes, bars)))
        members = [scored[i][0] for i in range(len(pop.members))]
        logps = {split: [scored[i][1][split] for i in range(len(pop.members))]
                 for split in scored[0][1]}
        best = min(members, key=lambda e: e["valid_bpb"])  # chosen on valid, reported on test
        # The read-out of an equal-bytes gap: valid beyond the dev slice in blocks, for the
        # consensus and for the member the dev slice ranks first (no choice made on valid),
        # read from the shared entries: a rank keeps the best weights of its own members only
        by_dev = min(range(len(pop.members)), key=lambda i: members[i].get(
            "best_dev_bpb", pop.members[i].fitness or math.inf))
        blocks = {"consensus": block_bpb(consensus_log2probs(logps["valid"])),
                  "best_by_dev": block_bpb(logps["valid"][by_dev]),
                  "best_by_dev_member": members[by_dev]["id"]}
        return {
            "real_bytes": pop.real_bytes, "steps": pop.steps,
            "generated_bytes": pop.generated_bytes, "epochs": round(epochs, 4),
            "train_flops": sum(m.flops for m in pop.members),
            # frozen teachers' forwards (taught arms, snapshots): absent where none was heard
            **({"teacher_flops": t} if (t := sum(m.teacher_flops for m in pop.members)) else {}),
            "members": members, "best_member": best["id"],
            "best_valid_bpb": best["valid_bpb"], "best_test_bpb": best["test_bpb"],
            "consensus_valid_bpb": consensus_bpb(logps["valid"]),
            "consensus_test_bpb": consensus_bpb(logps["test"]),
            "valid_blocks": blocks,
            **self._mixture(logps, [m["id"] for m in members]),
        }

    def _mixture(self, logps: dict, ids: list[str]) -> dict:
        """Data-limited: the members mixed with weights fit on the dev slice (by their kept
        best weights), scored on valid beyond it and on test: the ensemble with a held-out
        prior (Slowrun, q0), beside the uniform consensus."""
        if "dev" not in logps:
            return {}
        held_out = "fit" in logps  # carved out of U: the weights saw no byte beyond it
        weights = fit_mixture(logps["fit" if held_out else "dev"])
        where = {"mixture_fit": "unique", "mixture_fit_bytes": len(self.mixture_slice),
                 "mixture_fit_bpb": mixture_bpb(logps["fit"], weights)} if held_out else {}
        # On the dev slice itself (what a sweep of the social arm selects by): the uniform
        # consensus of the kept weights, and the mixture scored on the bytes its weights were
        # fit to (in-sample: K weights on the whole slice, the same optimism for every arm).
        return {"consensus_dev_bpb": consensus_bpb(logps["dev"]),
                "mixture_dev_bpb": mixture_bpb(logps["dev"], weights),
                "mixture_weights": dict(zip(ids, [round(float(w), 6) for w in weights])),
                "mixture_valid_bpb": mixture_bpb(logps["valid"], weights),
                "mixture_test_bpb": mixture_bpb(logps["test"], weights), **where}

    def _score(self, m: Member, arm: str, label: str, files: RunFiles, real_bytes: int,
               progress: bool) -> tuple[dict, dict]:
        """One member's entry of a milestone and its per-byte log2 probabilities per split."""
        weights = self.best[m.id]["weights"] if m.id in self.best else m.model.state_dict()
        current = {k: v.detach().clone() for k, v in m.model.state_dict().items()}
        m.model.load_state_dict(weights)
        entry = {"id": m.id, "family": m.genome.family, "params": m.genome.n_params,
                 "flops_per_byte": m.genome.flops_per_byte, "train_flops": m.flops}
        logps = {}
        for split in ("valid", "test"):
            logps[split] = self.log2probs(m.model, self.held_out[split], progress)
            entry[f"{split}_bpb"] = bpb(logps[split])
        path = files.member_dir(label, m.id)
        info = {"arm": arm, "label": label, "real_bytes": real_bytes,
                "valid_bpb": entry["valid_bpb"], "test_bpb": entry["test_bpb"],
                "corpus": self.cfg.data.corpus, "carry_state": self.carry_state}
        if self.keep_best:  # the dev bytes too, for the mixture's weights
            logps["dev"] = self.log2probs(m.model, self.dev)
            if self.mixture_slice is not None:  # or the bytes held out of U for them
                logps["fit"] = self.log2probs(m.model, self.mixture_slice)
        if m.id in self.best:
            entry["best_dev_bpb"] = self.best[m.id]["dev_bpb"]
            entry["best_step"] = self.best[m.id]["step"]
            entry["epochs_to_best"] = self.best[m.id]["epochs"]
        state.save_member(path, m.id, m.genome, weights, info)
        entry["checkpoint"] = str(path.relative_to(files.out))
        m.model.load_state_dict(current)
        return entry, logps
