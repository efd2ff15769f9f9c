"""The run loop of one arm: a population reading real bytes, evaluated on a schedule.

Phases of a run, in order: build the population and its batch stream (or restore them from the
latest checkpoint), then step; every `eval_every` steps score each member on the dev slice
(curves, fitness, early stopping), append a row to metrics.jsonl and TensorBoard; every
`checkpoint_every` steps save the whole state atomically; at a milestone, score every member on
the full valid and test splits and save its weights for `multitudes eval`.
"""

from __future__ import annotations

import copy
import json
import math
import random
from dataclasses import replace
from pathlib import Path

import torch
from tqdm import tqdm

from multitudes import checkpoint, generations, runstate
from multitudes import evolution as evolution_ops
from multitudes.config import EvolutionConfig, RunConfig, SocialConfig
from multitudes.data import BatchStream
from multitudes.errors import UserError
from multitudes.evaluate import bpb, byte_log2probs, consensus_bpb
from multitudes.genome import Genome
from multitudes.population import Member, Population

LN2 = math.log(2)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def member_ids(cfg: RunConfig) -> list[str]:
    return [f"m{i}-{g.family}" for i, g in enumerate(cfg.members)]


class ArmRunner:
    """One arm (`isolated`, `social`, ...) of a run, steppable to successive byte targets."""

    def __init__(self, cfg: RunConfig, name: str, social: SocialConfig, splits: dict,
                 run_dir: Path, total_bytes: int, unique_bytes: int = 0, progress: bool = True,
                 evolution: EvolutionConfig | None = None, replay: list[dict] | None = None):
        """`evolution`: run generations with these settings (None or every=0: no evolution);
        `replay`: take the births and deaths from these lineage rows instead of deciding."""
        self.cfg, self.name, self.run_dir, self.progress = cfg, name, Path(run_dir), progress
        self.evolution = evolution if evolution is not None and evolution.every else None
        self.replay = replay
        self.evo_rng = random.Random(evolution.seed if evolution else 0)
        self.next_number = len(cfg.members)
        self.budget = (evolution.budget if evolution and evolution.budget
                       else 2 * max(g.n_params for g in cfg.members))
        self.device = resolve_device(cfg.train.device)
        train = splits["train"][:unique_bytes] if unique_bytes else splits["train"]
        self.splits = splits
        self.dev = splits["valid"][: cfg.train.dev_bytes]
        self.stream = BatchStream(train, cfg.train.batch_size, cfg.context, cfg.train.seed)
        total_steps = math.ceil(total_bytes / self.stream.bytes_per_batch)
        members = [Member.create(mid, g, self.device) for mid, g in zip(member_ids(cfg),
                                                                          cfg.members)]
        generator = torch.Generator().manual_seed(cfg.train.seed)
        self.pop = Population(members, social, cfg.train, total_steps, self.device, generator)
        self.history: list[dict] = []
        self.events: list[dict] = []  # births and deaths (so far: resets of sick members)
        self.best: dict[str, dict] = {}  # data-limited regime: each member's best dev weights
        self.keep_best = unique_bytes > 0
        if self.evolution:  # the founders open the lineage
            self.events = [{"arm": name, "event": "birth", "member": m.id, "parents": [],
                            "genome": m.genome.to_dict(), "ops": [], "step": 0,
                            "real_bytes": 0, "fitness": None} for m in members]

    # -- paths -------------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.run_dir / "checkpoints" / self.name

    def member_path(self, member_id: str, label: str) -> Path:
        return self.run_dir / "members" / label / member_id

    # -- state -------------------------------------------------------------------------------
    def save(self) -> None:
        try:
            runstate.save_arm(self.state_path, self.pop, self.stream, self.history, self.best,
                              self.events, self.cfg.members,
                              {"evolution_rng": _jsonable(self.evo_rng.getstate()),
                               "next_number": self.next_number})
        except OSError as e:  # disk full, quota, permissions: the previous checkpoint is intact
            raise UserError(f"could not write the checkpoint {self.state_path}: "
                            f"{e.strerror or e}; the previous checkpoint is kept, free space "
                            f"and go on with --resume {self.run_dir}") from None

    def try_resume(self) -> bool:
        checkpoint.recover(self.state_path)
        if not (self.state_path / "manifest.json").exists():
            return False
        self.history, self.best, self.events, extra = runstate.restore_arm(
            self.state_path, self.pop, self.stream, self.cfg.members)
        self.evo_rng.setstate(_tuples(extra["evolution_rng"]))
        self.next_number = extra["next_number"]
        return True

    # -- training ----------------------------------------------------------------------------
    def steps_for(self, real_bytes: int) -> int:
        return math.ceil(real_bytes / self.stream.bytes_per_batch)

    def run_until(self, real_bytes: int, metrics_file: Path, writer=None,
                  stop_below: float | None = None) -> None:
        """Train to `real_bytes`, or until the best dev bpb falls to `stop_below`."""
        target = self.steps_for(real_bytes)
        train = self.cfg.train
        if stop_below is not None and self.history and \
                self.history[-1]["best_dev_bpb"] <= stop_below:
            return  # reached before a kill: a resumed run does not read on
        bar = tqdm(total=target, initial=self.pop.steps, desc=f"{self.name:>9}", unit="step",
                   disable=None if self.progress else True, dynamic_ncols=True)
        while self.pop.steps < target:
            stats = self.pop.step(self.stream.next())
            bar.update(1)
            if self.pop.events:
                self._record_events(bar)
            bar.set_postfix(loss=f"{min(stats.data_loss) / LN2:.3f}bpb")
            if self.pop.steps % train.eval_every == 0 or self.pop.steps == target:
                row = self.evaluate_dev()
                with open(metrics_file, "a") as f:
                    f.write(json.dumps(row) + "\n")
                if writer is not None:
                    for mid, vals in row["members"].items():
                        writer.add_scalar(f"{self.name}/{mid}/dev_bpb", vals["dev_bpb"],
                                          row["real_bytes"])
                    writer.add_scalar(f"{self.name}/consensus_dev_bpb", row["consensus_dev_bpb"],
                                      row["real_bytes"])
                    writer.flush()
                bar.set_postfix(dev=f"{row['best_dev_bpb']:.3f}bpb")
                if stop_below is not None and row["best_dev_bpb"] <= stop_below:
                    break
                if self.evolution and self.pop.steps % self.evolution.every == 0 \
                        and self.pop.steps < target:
                    self.generation(bar)
            if train.checkpoint_every and self.pop.steps % train.checkpoint_every == 0:
                self.save()
        bar.close()
        self.save()

    def generation(self, bar) -> None:
        """The worst die and newborns take their places (decided, or replayed from a lineage)."""
        evo = self.evolution
        if self.replay is not None:
            deaths, births = generations.from_lineage(self.replay, self.name, self.pop.steps)
        else:
            deaths, births = generations.plan(self.pop.members, evo, self.evo_rng, self.budget,
                                              self.next_number)
        self.next_number += len(births)
        for dead_id, birth in zip(deaths, births):
            index = next(i for i, m in enumerate(self.pop.members) if m.id == dead_id)
            dead, newborn = self.pop.members[index], self._newborn(birth)
            self.pop.members[index] = newborn
            self._log([{"event": "death", "member": dead.id, "step": self.pop.steps,
                        "real_bytes": self.pop.real_bytes, "fitness": dead.fitness,
                        "age_bytes": self.pop.real_bytes - dead.birth_bytes},
                       {"event": "birth", **birth, "step": self.pop.steps,
                        "real_bytes": self.pop.real_bytes, "fitness": newborn.fitness,
                        "inherit": evo.inherit}])
            bar.write(f"{self.name} generation at step {self.pop.steps}: {dead.id} "
                      f"({dead.fitness:.3f} bpb) dies, {newborn.id} is born of "
                      f"{' x '.join(birth['parents'])} ({', '.join(birth['ops']) or 'clone'})")

    def _newborn(self, birth: dict) -> Member:
        """A member from a birth record: from scratch, or with its first parent's weights."""
        evo = self.evolution
        genome = Genome.from_dict(birth["genome"])
        child = Member.create(birth["member"], genome, self.device)
        parent = next(m for m in self.pop.members if m.id == birth["parents"][0])
        same_shape = all(getattr(genome, k) == getattr(parent.genome, k)
                         for k in evolution_ops.ARCHITECTURE)
        if evo.inherit == "parent" and same_shape:  # as in population-based training
            child.model.load_state_dict(parent.model.state_dict())
            child.optimizer.load_state_dict(copy.deepcopy(parent.optimizer.state_dict()))
            child.optimizer.param_groups[0]["weight_decay"] = genome.weight_decay  # its own
            child.steps = parent.steps
        child.birth_bytes = self.pop.real_bytes
        child.childhood_left, child.childhood_alpha = evo.childhood_steps, evo.childhood_alpha
        child.fitness = bpb(self._dev_log2probs(child.model))
        return child

    def _record_events(self, bar) -> None:
        """Print the population's resets and append them to the lineage."""
        for event in self.pop.events:
            bar.write(f"{self.name}: {event['member']} reset at step {event['step']} "
                      f"({event['reason']}); the others go on")
        self._log(self.pop.events)
        self.pop.events.clear()

    def _log(self, rows: list[dict]) -> None:
        """Births, deaths and resets of this arm: kept in its state, appended to lineage.jsonl."""
        rows = [{"arm": self.name, **row} for row in rows]
        self.events.extend(rows)
        with open(self.run_dir / "lineage.jsonl", "a") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)

    def _dev_log2probs(self, model) -> torch.Tensor:
        return byte_log2probs(model, self.dev, self.cfg.context, self.cfg.train.eval_stride,
                              device=self.device)

    def evaluate_dev(self) -> dict:
        logps = [self._dev_log2probs(m.model) for m in self.pop.members]
        row = {"arm": self.name, "step": self.pop.steps, "real_bytes": self.pop.real_bytes,
               "generated_bytes": self.pop.generated_bytes,
               "epochs": round(self.stream.epochs_done, 4), "members": {}}
        for m, lp in zip(self.pop.members, logps):
            m.fitness = bpb(lp)
            row["members"][m.id] = {"family": m.genome.family, "dev_bpb": m.fitness,
                                    "train_bpb": m.last_loss / LN2, "flops": m.flops}
            if self.keep_best and m.fitness < self.best.get(m.id, {}).get("dev_bpb", math.inf):
                self.best[m.id] = {"dev_bpb": m.fitness, "step": self.pop.steps,
                                   "real_bytes": self.pop.real_bytes,
                                   "epochs": row["epochs"],
                                   "weights": {k: v.detach().clone()
                                               for k, v in m.model.state_dict().items()}}
        row["best_dev_bpb"] = min(v["dev_bpb"] for v in row["members"].values())
        row["consensus_dev_bpb"] = consensus_bpb(logps)
        self.history.append(row)
        return row

    # -- results -----------------------------------------------------------------------------
    def milestone(self, label: str) -> dict:
        """Score every member on the full valid and test splits and save its weights.

        In the data-limited regime each member is scored with its best dev weights so far.
        """
        T, stride = self.cfg.context, self.cfg.train.eval_stride
        members, logps = [], {"valid": [], "test": []}
        for m in self.pop.members:
            weights = self.best[m.id]["weights"] if m.id in self.best else m.model.state_dict()
            current = {k: v.detach().clone() for k, v in m.model.state_dict().items()}
            m.model.load_state_dict(weights)
            entry = {"id": m.id, "family": m.genome.family, "params": m.genome.n_params,
                     "flops_per_byte": m.genome.flops_per_byte, "train_flops": m.flops}
            for split in ("valid", "test"):
                lp = byte_log2probs(m.model, self.splits[split], T, stride, device=self.device,
                                    progress=self.progress)
                logps[split].append(lp)
                entry[f"{split}_bpb"] = bpb(lp)
            path = self.member_path(m.id, label)
            info = {"arm": self.name, "label": label, "real_bytes": self.pop.real_bytes,
                    "valid_bpb": entry["valid_bpb"], "test_bpb": entry["test_bpb"],
                    "corpus": self.cfg.data.corpus}
            if m.id in self.best:
                entry["best_step"] = self.best[m.id]["step"]
                entry["epochs_to_best"] = self.best[m.id]["epochs"]
            runstate.save_member(path, m.id, m.genome, weights, info)
            entry["checkpoint"] = str(path.relative_to(self.run_dir))
            m.model.load_state_dict(current)
            members.append(entry)
        best = min(members, key=lambda e: e["valid_bpb"])  # chosen on valid, reported on test
        return {
            "real_bytes": self.pop.real_bytes, "steps": self.pop.steps,
            "generated_bytes": self.pop.generated_bytes,
            "epochs": round(self.stream.epochs_done, 4),
            "train_flops": sum(m.flops for m in self.pop.members),
            "members": members, "best_member": best["id"],
            "best_valid_bpb": best["valid_bpb"], "best_test_bpb": best["test_bpb"],
            "consensus_valid_bpb": consensus_bpb(logps["valid"]),
            "consensus_test_bpb": consensus_bpb(logps["test"]),
        }

    def curve(self) -> list[dict]:
        return [{"real_bytes": r["real_bytes"], "best_bpb": r["best_dev_bpb"],
                 "consensus_bpb": r["consensus_dev_bpb"],
                 "members": {k: v["dev_bpb"] for k, v in r["members"].items()}}
                for r in self.history]


def _jsonable(state):
    """random.Random's state (nested tuples) as JSON lists."""
    return [_jsonable(x) for x in state] if isinstance(state, tuple) else state


def _tuples(state):
    return tuple(_tuples(x) for x in state) if isinstance(state, list) else state


def isolated(social: SocialConfig) -> SocialConfig:
    """The same settings with every channel closed: members train alone."""
    return replace(social, channel="none", language_every=0)

