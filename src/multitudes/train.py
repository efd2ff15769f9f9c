"""The run loop of one arm: a population reading real bytes, evaluated on a schedule.

Phases of a run, in order: build the population and its batch stream (or restore them from the
latest checkpoint), then step; every `eval_every` steps score each member on the dev slice
(curves, fitness, early stopping), append a row to metrics.jsonl and TensorBoard; every
`checkpoint_every` steps save the whole state atomically; at a milestone, score every member on
valid beyond the dev slice and the full test split and save its weights for `multitudes eval`.

Under torchrun (see distributed.py) every rank runs this loop in step: each trains and scores
the members it owns, the scores are shared, and rank 0 alone writes the run's files.
"""

from __future__ import annotations

import copy
import json
import math
import random
import shutil
from dataclasses import replace
from pathlib import Path

import torch
from tqdm import tqdm

from multitudes import checkpoint, distributed, generations, runstate
from multitudes import evolution as evolution_ops
from multitudes.config import EvolutionConfig, RunConfig, SocialConfig
from multitudes.data import make_stream
from multitudes.errors import UserError
from multitudes.evaluate import bpb, byte_log2probs, consensus_bpb
from multitudes.genome import Genome
from multitudes.population import Member, Population

LN2 = math.log(2)


def resolve_device(name: str) -> torch.device:
    name = distributed.device_for_rank(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"train.device={name!r}: this torch build or machine has no CUDA "
                        f"(torch {torch.__version__}); use \"auto\" or \"cpu\"")
    return torch.device(name)


def member_ids(cfg: RunConfig) -> list[str]:
    return [f"m{i}-{g.family}" for i, g in enumerate(cfg.members)]


class ArmRunner:
    """One arm (`isolated`, `social`, ...) of a run, steppable to successive byte targets."""

    def __init__(self, cfg: RunConfig, name: str, social: SocialConfig, splits: dict,
                 run_dir: Path, total_bytes: int, unique_bytes: int = 0, progress: bool = True,
                 evolution: EvolutionConfig | None = None, replay: list[dict] | None = None,
                 group: distributed.Group | None = None, branching: bool = False):
        """`evolution`: run generations with these settings (None or every=0: no evolution);
        `replay`: take the births and deaths from these lineage rows instead of deciding;
        `group`: this process's place among the ranks (None: one process);
        `branching`: under `wsd`, train a stable trunk and finish runs of several lengths as
        cooldowns branched off it (`finish_branch`), instead of one run cooled at the end."""
        self.cfg, self.name, self.run_dir = cfg, name, Path(run_dir)
        self.group = group or distributed.Group()
        self.progress = progress and self.group.main
        self.evolution = evolution if evolution is not None and evolution.every else None
        self.replay = replay
        self.evo_rng = random.Random(evolution.seed if evolution else 0)
        self.next_number = len(cfg.members)
        self.budget = (evolution.budget if evolution and evolution.budget
                       else 2 * max(g.n_params for g in cfg.members))
        self.device = resolve_device(cfg.train.device)
        train = splits["train"][:unique_bytes] if unique_bytes else splits["train"]
        # Fitness, tuning and curves read the dev slice (the head of valid); the milestones
        # score what no decision has seen: the rest of valid, and test.
        self.dev = splits["valid"][: cfg.train.dev_bytes]
        self.held_out = {"valid": splits["valid"][cfg.train.dev_bytes:], "test": splits["test"]}
        if len(self.held_out["valid"]) < 2:
            raise UserError(f"train.dev_bytes={cfg.train.dev_bytes} leaves nothing of the "
                            f"{len(splits['valid']):,}-byte valid split to score beyond the dev "
                            f"slice; use a smaller dev slice")
        self.stream = make_stream(train, cfg.train.batch_size, cfg.context, cfg.train.seed,
                                  cfg.train.sampling)
        self.carry_state = cfg.train.sampling == "contiguous"
        total_steps = math.ceil(total_bytes / self.stream.bytes_per_batch)
        owners = distributed.assign([g.flops_per_byte for g in cfg.members], self.group.world)
        members = [Member.create(mid, g, self.device, rank, build=rank == self.group.rank)
                   for mid, g, rank in zip(member_ids(cfg), cfg.members, owners)]
        generator = torch.Generator().manual_seed(cfg.train.seed)
        self.pop = Population(members, social, cfg.train, total_steps, self.device, generator,
                              group=self.group)
        wsd = cfg.train.schedule == "wsd"
        self.branching = branching and wsd
        if wsd and not self.branching:  # one run, cooled down at its end
            self.pop.horizon = total_steps
        self.in_branch = False  # a cooldown branch is not checkpointed: a resume redoes it
        self.finished: list[dict] = []  # finished runs: {"real_bytes", "best_dev_bpb", ...}
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
        """One process: checkpoints/ARM. Under torchrun: checkpoints/ARM/rankR/stepN (the
        latest complete step of every rank is kept until all ranks have the next one)."""
        if not self.group.distributed:
            return self.run_dir / "checkpoints" / self.name
        return self._rank_dir / f"step{self.pop.steps:09d}"

    @property
    def _rank_dir(self) -> Path:
        return self.run_dir / "checkpoints" / self.name / f"rank{self.group.rank}"

    def member_path(self, member_id: str, label: str) -> Path:
        return self.run_dir / "members" / label / member_id

    # -- state -------------------------------------------------------------------------------
    def save(self) -> None:
        try:
            runstate.save_arm(self.state_path, self.pop, self.stream, self.history, self.best,
                              self.events, self.cfg.members,
                              {"evolution_rng": _jsonable(self.evo_rng.getstate()),
                               "next_number": self.next_number, "finished": self.finished})
        except OSError as e:  # disk full, quota, permissions: the previous checkpoint is intact
            raise UserError(f"could not write the checkpoint {self.state_path}: "
                            f"{e.strerror or e}; the previous checkpoint is kept, free space "
                            f"and go on with --resume {self.run_dir}") from None
        if self.group.distributed:  # every rank has this step now: older ones can go
            self.group.barrier()
            for old in self._rank_dir.glob("step*"):
                if old != self.state_path:
                    shutil.rmtree(old, ignore_errors=True)

    def try_resume(self) -> bool:
        base = self.run_dir / "checkpoints" / self.name
        ranks = len(list(base.glob("rank*"))) if base.is_dir() else 0
        if ranks and ranks != self.group.world or not ranks and self.group.distributed and (
                base / "manifest.json").is_file():
            raise UserError(f"the checkpoints in {base} were written by {ranks or 1} rank(s); "
                            f"resume on the same number (now {self.group.world})")
        path = self.state_path if not self.group.distributed else self._common_step()
        if path is None:
            return False
        checkpoint.recover(path)
        if not (path / "manifest.json").exists():
            return False
        self.history, self.best, self.events, extra = runstate.restore_arm(
            path, self.pop, self.stream, self.cfg.members)
        self.pop.sync()
        self.evo_rng.setstate(_tuples(extra["evolution_rng"]))
        self.next_number = extra["next_number"]
        self.finished = extra.get("finished", [])
        return True

    def _common_step(self) -> Path | None:
        """The latest step every rank has a complete checkpoint of (a kill may have caught
        some ranks before their newest save), or None."""
        mine = {int(p.name[4:]) for p in self._rank_dir.glob("step*")
                if (p / "manifest.json").is_file()} if self._rank_dir.is_dir() else set()
        common = set.intersection(*map(set, self.group.gather(sorted(mine))))
        return self._rank_dir / f"step{max(common):09d}" if common else None

    # -- training ----------------------------------------------------------------------------
    def steps_for(self, real_bytes: int) -> int:
        return math.ceil(real_bytes / self.stream.bytes_per_batch)

    def cooldown_start(self, real_bytes: int) -> int:
        """The step a `wsd` run of `real_bytes` starts its cooldown at."""
        horizon = self.steps_for(real_bytes)
        return horizon - max(1, round(self.cfg.train.cooldown * horizon))

    def finish_branch(self, real_bytes: int, metrics_file: Path, writer=None,
                      at_end=None) -> dict:
        """A finished `wsd` run of `real_bytes`, branched off the stable trunk.

        The trunk trains to the cooldown's start and is checkpointed there; the cooldown runs
        to `real_bytes`, is evaluated (and `at_end(self)` is called, e.g. to score a
        milestone), then the arm returns to the trunk checkpoint. The dev rows of the branch
        stay in the history; the finished point is kept in `self.finished`.
        """
        done = next((p for p in self.finished if p["target"] == real_bytes), None)
        if done is not None:  # finished before a kill
            return done
        start = self.cooldown_start(real_bytes)
        self.run_until(start * self.stream.bytes_per_batch, metrics_file, writer)
        self.pop.horizon, self.in_branch = self.steps_for(real_bytes), True
        self.run_until(real_bytes, metrics_file, writer)
        row = self.history[-1]
        point = {"target": real_bytes, "real_bytes": self.pop.real_bytes,
                 "best_dev_bpb": row["best_dev_bpb"],
                 "consensus_dev_bpb": row["consensus_dev_bpb"], "step": self.pop.steps,
                 "members": {k: v["dev_bpb"] for k, v in row["members"].items()}}
        if at_end is not None:
            at_end(self)
        history = self.history
        self.try_resume()  # back to the trunk at `start`
        self.history, self.in_branch, self.pop.horizon = history, False, None
        self.finished.append(point)
        self.save()
        return point

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
            batch = self.stream.next()
            stats = self.pop.step(batch, self.stream.continues)
            bar.update(1)
            if self.pop.events and not self.group.distributed:
                self._record_events(bar)  # under torchrun: at the next evaluation or save
            bar.set_postfix(loss=f"{min(stats.data_loss) / LN2:.3f}bpb")
            if self.pop.steps % train.eval_every == 0 or self.pop.steps == target:
                row = self.evaluate_dev()
                self._record_events(bar)
                if self.group.main:
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
                self._sync_and_save(bar)
        bar.close()
        self._sync_and_save(bar)

    def _sync_and_save(self, bar) -> None:
        self.pop.sync()
        self._record_events(bar)
        if not self.in_branch:
            self.save()

    def generation(self, bar) -> None:
        """The worst die and newborns take their places (decided, or replayed from a lineage)."""
        evo = self.evolution
        if self.replay is not None:
            deaths, births = generations.from_lineage(self.replay, self.name, self.pop.steps)
        else:  # decided on rank 0, broadcast to the others
            ages = {m.id: (self.pop.real_bytes - m.birth_bytes) // self.stream.bytes_per_batch
                    for m in self.pop.members}
            deaths, births = self.group.broadcast(
                generations.plan(self.pop.members, evo, self.evo_rng, self.budget,
                                 self.next_number, ages) if self.group.main else None)
        self.next_number += len(births)
        for dead_id, birth in zip(deaths, births):
            index = next(i for i, m in enumerate(self.pop.members) if m.id == dead_id)
            costs = [m.flops_per_byte for m in self.pop.members]
            costs[index] = Genome.from_dict(birth["genome"]).flops_per_byte
            rank = distributed.place(costs, self.pop.owners, index, self.group.world)
            dead, newborn = self.pop.members[index], self._newborn(birth, rank)
            self.pop.members[index] = newborn
            self._log([{"event": "death", "member": dead.id, "step": self.pop.steps,
                        "real_bytes": self.pop.real_bytes, "fitness": dead.fitness,
                        "age_bytes": self.pop.real_bytes - dead.birth_bytes},
                       {"event": "birth", **birth, "step": self.pop.steps,
                        "real_bytes": self.pop.real_bytes, "fitness": newborn.fitness,
                        "inherit": evo.inherit}])
            self._say(bar, f"{self.name} generation at step {self.pop.steps}: {dead.id} "
                      f"({dead.fitness:.3f} bpb) dies, {newborn.id} is born of "
                      f"{' x '.join(birth['parents'])} ({', '.join(birth['ops']) or 'clone'})")

    def _newborn(self, birth: dict, rank: int) -> Member:
        """A member from a birth record, on `rank`: from scratch, or with its first parent's
        weights (sent from the parent's rank when it lives elsewhere)."""
        evo = self.evolution
        genome = Genome.from_dict(birth["genome"])
        mine = rank == self.group.rank
        child = Member.create(birth["member"], genome, self.device, rank, build=mine)
        parent = next(m for m in self.pop.members if m.id == birth["parents"][0])
        same_shape = all(getattr(genome, k) == getattr(parent.genome, k)
                         for k in evolution_ops.ARCHITECTURE)
        if evo.inherit == "parent" and same_shape:  # as in population-based training
            inherited = None
            if self.pop.owns(parent):  # on the CPU: a pickled GPU tensor would land on ours
                inherited = _cpu((parent.model.state_dict(), parent.optimizer.state_dict()))
            if parent.rank != rank:
                inherited = self.group.broadcast(inherited, src=parent.rank)
            if mine:
                child.model.load_state_dict(inherited[0])
                child.optimizer.load_state_dict(copy.deepcopy(inherited[1]))
                child.optimizer.param_groups[0]["weight_decay"] = genome.weight_decay  # its own
            child.steps = parent.steps
        child.birth_bytes = self.pop.real_bytes
        child.childhood_left, child.childhood_alpha = evo.childhood_steps, evo.childhood_alpha
        child.fitness = self.group.broadcast(
            bpb(self._dev_log2probs(child.model)) if mine else None, src=rank)
        return child

    def _record_events(self, bar) -> None:
        """Print the population's resets and append them to the lineage."""
        if not self.pop.events:
            return
        for event in self.pop.events:
            self._say(bar, f"{self.name}: {event['member']} reset at step {event['step']} "
                           f"({event['reason']}); the others go on")
        self._log(self.pop.events)
        self.pop.events.clear()

    def _say(self, bar, text: str) -> None:
        if self.group.main:
            bar.write(text)

    def _log(self, rows: list[dict]) -> None:
        """Births, deaths and resets of this arm: kept in its state, appended to lineage.jsonl."""
        rows = [{"arm": self.name, **row} for row in rows]
        self.events.extend(rows)
        if self.group.main:
            with open(self.run_dir / "lineage.jsonl", "a") as f:
                f.writelines(json.dumps(row) + "\n" for row in rows)

    def _dev_log2probs(self, model) -> torch.Tensor:
        return byte_log2probs(model, self.dev, self.cfg.context, self.cfg.train.eval_stride,
                              device=self.device, carry_state=self.carry_state)

    def evaluate_dev(self) -> dict:
        """Score every member on the dev slice (each rank its own, then shared)."""
        scored = self.pop.sync({i: self._dev_log2probs(m.model)
                                for i, m in enumerate(self.pop.members) if self.pop.owns(m)})
        logps = [scored[i] for i in range(len(self.pop.members))]
        row = {"arm": self.name, "step": self.pop.steps, "real_bytes": self.pop.real_bytes,
               **({"branch": self.pop.horizon} if self.in_branch else {}),
               "generated_bytes": self.pop.generated_bytes,
               "epochs": round(self.stream.epochs_done, 4), "members": {}}
        for m, lp in zip(self.pop.members, logps):
            m.fitness = bpb(lp)
            row["members"][m.id] = {"family": m.genome.family, "dev_bpb": m.fitness,
                                    "train_bpb": m.last_loss / LN2, "flops": m.flops}
            if self.keep_best and self.pop.owns(m) and \
                    m.fitness < self.best.get(m.id, {}).get("dev_bpb", math.inf):
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
        """Score every member on valid (beyond the dev slice) and test and save its weights.

        In the data-limited regime each member is scored with its best dev weights so far.
        Each rank scores and saves the members it owns; the scores are then shared.
        """
        # One sync brings both the scores and every member's counters (train FLOPs).
        scored = self.pop.sync({i: self._score(m, label) for i, m in enumerate(self.pop.members)
                                if self.pop.owns(m)})
        members = [scored[i][0] for i in range(len(self.pop.members))]
        logps = {split: [scored[i][1][split] for i in range(len(self.pop.members))]
                 for split in ("valid", "test")}
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

    def _score(self, m: Member, label: str) -> tuple[dict, dict]:
        """One member's entry of a milestone and its per-byte log2 probabilities per split."""
        T, stride = self.cfg.context, self.cfg.train.eval_stride
        weights = self.best[m.id]["weights"] if m.id in self.best else m.model.state_dict()
        current = {k: v.detach().clone() for k, v in m.model.state_dict().items()}
        m.model.load_state_dict(weights)
        entry = {"id": m.id, "family": m.genome.family, "params": m.genome.n_params,
                 "flops_per_byte": m.genome.flops_per_byte, "train_flops": m.flops}
        logps = {}
        for split in ("valid", "test"):
            logps[split] = byte_log2probs(m.model, self.held_out[split], T, stride,
                                          device=self.device, progress=self.progress,
                                          carry_state=self.carry_state)
            entry[f"{split}_bpb"] = bpb(logps[split])
        path = self.member_path(m.id, label)
        info = {"arm": self.name, "label": label, "real_bytes": self.pop.real_bytes,
                "valid_bpb": entry["valid_bpb"], "test_bpb": entry["test_bpb"],
                "corpus": self.cfg.data.corpus, "carry_state": self.carry_state}
        if m.id in self.best:
            entry["best_step"] = self.best[m.id]["step"]
            entry["epochs_to_best"] = self.best[m.id]["epochs"]
        runstate.save_member(path, m.id, m.genome, weights, info)
        entry["checkpoint"] = str(path.relative_to(self.run_dir))
        m.model.load_state_dict(current)
        return entry, logps

    def curve(self) -> list[dict]:
        return [{"real_bytes": r["real_bytes"], "best_bpb": r["best_dev_bpb"],
                 "consensus_bpb": r["consensus_dev_bpb"],
                 "members": {k: v["dev_bpb"] for k, v in r["members"].items()},
                 **({"branch": r["branch"]} if "branch" in r else {})}
                for r in self.history]


def _cpu(obj):
    """Tensors anywhere in nested dicts, lists and tuples, moved to the CPU."""
    if torch.is_tensor(obj):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu(v) for v in obj)
    return obj


def _jsonable(state):
    """random.Random's state (nested tuples) as JSON lists."""
    return [_jsonable(x) for x in state] if isinstance(state, tuple) else state


def _tuples(state):
    return tuple(_tuples(x) for x in state) if isinstance(state, list) else state


def isolated(social: SocialConfig) -> SocialConfig:
    """The same settings with every channel closed: members train alone."""
    return replace(social, channel="none", language_every=0)

