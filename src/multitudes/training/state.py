"""Save and restore the whole state of a training arm, for exact resume.

The state is everything the next step depends on: each member's weights, optimizer moments,
random state and counters (resets included); the population's generator, counters and culture
buffer; the batch stream's position; the evaluation history; the births and deaths so far; in
the data-limited regime each member's best weights so far. Restoring it and going on gives the
same numbers, bit for bit on CPU, as never having stopped.

Under torchrun each rank saves its own checkpoint: the tensors of the members it owns and the
bookkeeping of all (which is the same on every rank); a resume needs the same number of ranks.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from multitudes.runs import checkpoint
from multitudes.data.splits import Stream
from multitudes.runs.distributed import Group
from multitudes.errors import UserError
from multitudes.config.genome import Genome
from multitudes.population.member import Member
from multitudes.population.population import Population


def save_arm(path: Path, pop: Population, stream: Stream, history: list[dict],
             best: dict[str, dict], events: list[dict], founders: list[Genome],
             extra: dict | None = None) -> None:
    """`founders`: the config's genomes (a resume checks them); `extra`: the runner's own state
    (the evolution's generator, the next member number)."""
    tensors, members = {}, []
    for i, m in enumerate(pop.members):
        opt_rest = None
        if pop.owns(m):
            tensors[f"m{i}.model"] = m.model.state_dict()
            opt_tensors, opt_rest = checkpoint.optimizer_tensors(m.optimizer)
            tensors[f"m{i}.optim"] = opt_tensors
            tensors[f"m{i}.rng"] = {"cpu": m.rng_state, **(
                {"device": m.device_rng_state} if m.device_rng_state is not None else {})}
            if m.state is not None:  # the carried recurrent state (a tensor or a tuple)
                parts = m.state if isinstance(m.state, tuple) else (m.state,)
                tensors[f"m{i}.state"] = {str(k): t for k, t in enumerate(parts)}
            if m.id in best:
                tensors[f"m{i}.best"] = best[m.id]["weights"]
        members.append({"id": m.id, "genome": m.genome.to_dict(), **m.counters(),
                        "rank": m.rank, "optim": opt_rest,
                        "state_tuple": isinstance(m.state, tuple),
                        "best": {k: v for k, v in best.get(m.id, {}).items() if k != "weights"}})
    tensors["population"] = {"generator": pop.generator.get_state()}
    if pop.elders is not None:  # their carried recurrent states
        tensors.update(pop.elders.state_tensors())
    own = {i: e for i, e in enumerate(pop.own_elders or []) if e is not None and pop.owns(
        pop.members[i])}
    for i, elders in own.items():  # each member's own teacher's (the snapshot arm)
        tensors.update(elders.state_tensors(prefix=f"o{i}.e"))
    state = {"kind": "arm", "world": pop.group.world, "members": members, "steps": pop.steps,
             "horizon": pop.horizon,
             "real_bytes": pop.real_bytes, "generated_bytes": pop.generated_bytes,
             "stream": stream.state_dict(), "culture": pop.culture.state(), "history": history,
             "events": events,
             **({"elder_state_tuples": [isinstance(s, tuple) for s in pop.elders.states]}
                if pop.elders is not None else {}),
             **({"own_elder_state_tuples": {str(i): [isinstance(s, tuple) for s in e.states]
                                            for i, e in own.items()}} if own else {}),
             "founders": [g.to_dict() for g in founders], "extra": extra or {}}
    checkpoint.save(path, tensors, state)


def restore_arm(path: Path, pop: Population, stream: Stream, founders: list[Genome],
                prepare=None) -> tuple[list[dict], dict, list[dict], dict]:
    """Load `path` into a freshly built population; returns (history, best, events, extra).

    With evolution the members may no longer be the founders: each is rebuilt from its saved
    genome (reusing the freshly built founder when it is still alive). `prepare(extra)` is
    called with the runner's own state before the elders' carried states are loaded, so that a
    runner can build the elders the checkpoint names (the snapshot arm's teachers).
    """
    tensors, state = checkpoint.load(path)
    with checkpoint.damaged(path):
        return _restore(path, tensors, state, pop, stream, founders, prepare)


def _restore(path: Path, tensors: dict, state: dict, pop: Population, stream: Stream,
             founders: list[Genome], prepare=None) -> tuple[list[dict], dict, list[dict], dict]:
    if state.get("kind") != "arm":
        raise UserError(f"checkpoint {path} is not a training-state checkpoint")
    if state.get("founders") != [g.to_dict() for g in founders]:
        raise UserError(f"checkpoint {path} holds a different population than the config")
    if state.get("world", 1) != pop.group.world:
        raise UserError(f"checkpoint {path} was written by {state.get('world', 1)} rank(s); "
                        f"resume it on the same number (now {pop.group.world})")
    built = {(m.id, m.genome, m.rank): m for m in pop.members}
    members, best = [], {}
    for i, saved in enumerate(state["members"]):
        genome, rank = Genome.from_dict(saved["genome"]), saved.get("rank", 0)
        m = built.get((saved["id"], genome, rank)) or Member.create(
            saved["id"], genome, pop.device, rank, build=rank == pop.group.rank)
        if pop.owns(m):
            m.model.load_state_dict(tensors[f"m{i}.model"])
            checkpoint.load_optimizer(m.optimizer, tensors[f"m{i}.optim"], saved["optim"])
            m.rng_state = tensors[f"m{i}.rng"]["cpu"]
            m.device_rng_state = tensors[f"m{i}.rng"].get("device")  # its dropout on a GPU
            m.state = None
            if f"m{i}.state" in tensors:
                named = tensors[f"m{i}.state"]
                parts = tuple(named[str(k)].to(pop.device) for k in range(len(named)))
                m.state = parts if saved.get("state_tuple") else parts[0]
        m.load_counters(saved)
        if f"m{i}.best" in tensors:
            best[m.id] = {**saved["best"], "weights": tensors[f"m{i}.best"]}
        members.append(m)
    pop.members = members
    pop.generator.set_state(tensors["population"]["generator"])
    pop.steps, pop.real_bytes = state["steps"], state["real_bytes"]
    pop.horizon = state.get("horizon")
    pop.generated_bytes = state["generated_bytes"]
    pop.culture.load_state(state["culture"])
    stream.load_state_dict(state["stream"])
    if prepare is not None:
        prepare(state["extra"])
    if pop.elders is not None:
        pop.elders.load_state_tensors(tensors, state.get("elder_state_tuples", []), pop.device)
    for i, elders in enumerate(pop.own_elders or []):
        if elders is not None and pop.owns(pop.members[i]):
            tuples = state.get("own_elder_state_tuples", {}).get(str(i), [])
            elders.load_state_tensors(tensors, tuples, pop.device, prefix=f"o{i}.e")
    return state["history"], best, state["events"], state["extra"]


def save_member(path: Path, member_id: str, genome, weights: dict[str, torch.Tensor],
                info: dict) -> None:
    """A member's weights and genome alone: what `multitudes eval` loads."""
    checkpoint.save(path, {"model": weights},
                    {"kind": "member", "id": member_id, "genome": genome.to_dict(), **info})


class ArmCheckpoints:
    """Where an arm's checkpoints live, and which one a resume reads.

    One process: checkpoints/ARM. Under torchrun: checkpoints/ARM/rankR/stepN, every rank its
    own; the latest complete step of every rank is kept until all ranks have the next one.
    """

    def __init__(self, run_dir: Path, arm: str, group: Group):
        self.run_dir, self.group = Path(run_dir), group
        self.base = self.run_dir / "checkpoints" / arm
        self.rank_dir = self.base / f"rank{group.rank}"

    def path(self, step: int) -> Path:
        return self.rank_dir / f"step{step:09d}" if self.group.distributed else self.base

    def save(self, step: int, write) -> None:
        """`write(path)` writes the checkpoint of `step`; older steps go once every rank has
        this one."""
        path = self.path(step)
        try:
            write(path)
        except OSError as e:  # disk full, quota, permissions: the previous checkpoint is intact
            # (a failed save leaves the one before whole, so it is looked for after the failure,
            # not before every save)
            kept = ("the previous checkpoint is kept" if any(self.base.glob("**/manifest.json"))
                    else "no checkpoint was kept yet")
            raise UserError(f"could not write the checkpoint {path}: {e.strerror or e}; {kept}, "
                            f"free space and go on with --resume {self.run_dir}") from None
        if self.group.distributed:
            self.group.barrier()
            for old in self.rank_dir.glob("step*"):
                if old != path:
                    shutil.rmtree(old, ignore_errors=True)

    def latest(self) -> Path | None:
        """The checkpoint to resume from (every rank's of the same step), or None."""
        ranks = len(list(self.base.glob("rank*"))) if self.base.is_dir() else 0
        if ranks and ranks != self.group.world or not ranks and self.group.distributed and (
                self.base / "manifest.json").is_file():
            raise UserError(f"the checkpoints in {self.base} were written by {ranks or 1} "
                            f"rank(s); resume on the same number (now {self.group.world})")
        path = self._common_step() if self.group.distributed else self.base
        if path is None:
            return None
        checkpoint.recover(path)
        return path if (path / "manifest.json").exists() else None

    def _common_step(self) -> Path | None:
        """The latest step every rank has a complete checkpoint of (a kill may have caught
        some ranks before their newest save), or None."""
        mine = {int(p.name[4:]) for p in self.rank_dir.glob("step*")
                if (p / "manifest.json").is_file()} if self.rank_dir.is_dir() else set()
        common = set.intersection(*map(set, self.group.gather(sorted(mine))))
        return self.path(max(common)) if common else None
