"""The roster of a population: which rank owns which member, and what crosses ranks.

Under torchrun a rank holds the weights of the members it owns (`Member.rank`) and the
bookkeeping of all of them; a newborn is placed on the rank that keeps the ranks' FLOPs even,
and a parent's weights are sent to it when it lives elsewhere; the counters and resets of the
others reach every rank through `sync`. In one process the group is the identity and every
member is this rank's. The step itself is population.py's.
"""

from __future__ import annotations

import torch

from multitudes.config.genome import Genome
from multitudes.population import side_by_side
from multitudes.population.member import Member
from multitudes.runs import distributed


def _cpu(obj):
    """Tensors anywhere in nested dicts, lists and tuples, moved to the CPU."""
    if torch.is_tensor(obj):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu(v) for v in obj)
    return obj


class Roster:
    """The rank bookkeeping `Population` inherits: it reads the population's `members`,
    `group`, `device`, `events`, `real_bytes` and `train`."""

    def owns(self, m: Member) -> bool:
        return m.rank == self.group.rank

    def member(self, member_id: str) -> Member:
        return next(m for m in self.members if m.id == member_id)

    def give_birth(self, dead_id: str, member_id: str, genome: Genome, dev_bpb,
                   parent_id: str | None = None) -> Member:
        """A newborn in the dead member's place, on the rank that keeps the ranks' FLOPs most
        even. `parent_id`: it starts from that member's weights and optimizer moments (sent
        from the parent's rank when it lives elsewhere). `dev_bpb(model)`: its first fitness,
        scored where it lives and shared."""
        index = next(i for i, m in enumerate(self.members) if m.id == dead_id)
        costs = [m.flops_per_byte for m in self.members]
        costs[index] = genome.flops_per_byte
        rank = distributed.place(costs, self.owners, index, self.group.world)
        child = Member.create(member_id, genome, self.device, rank,
                              build=rank == self.group.rank)
        if parent_id is not None:
            parent = self.member(parent_id)
            inherited = (None, None)
            if self.owns(parent):  # on the CPU: a pickled GPU tensor would land on ours
                inherited = _cpu((parent.model.state_dict(), parent.optimizer.state_dict()))
            if parent.rank != rank:
                inherited = self.group.broadcast(inherited, src=parent.rank)
            child.inherit(*inherited, steps=parent.steps)
        child.birth_bytes = self.real_bytes
        child.fitness = self.group.broadcast(
            dev_bpb(child.model) if self.owns(child) else None, src=rank)
        self.members[index] = child
        return child

    @property
    def owners(self) -> list[int]:
        return [m.rank for m in self.members]

    def sync(self, extra: dict[int, object] | None = None) -> dict[int, object]:
        """Bring every rank's copy of the members' counters up to date from their owners, and
        collect the owners' resets; returns the union of the ranks' `extra` (index -> object).

        Every rank must call it at the same point. In one process it changes nothing.
        """
        extra = extra or {}
        if not self.group.distributed:
            return dict(extra)
        mine = {i: m.counters() for i, m in enumerate(self.members) if self.owns(m)}
        counters, events, merged = {}, [], {}
        for part in self.group.gather({"counters": mine, "events": self.events, "extra": extra}):
            counters.update(part["counters"])
            events.extend(part["events"])
            merged.update(part["extra"])
        for i, values in counters.items():
            self.members[i].load_counters(values)
        index = {m.id: i for i, m in enumerate(self.members)}
        self.events = sorted(events, key=lambda e: (e["step"], index.get(e["member"], -1)))
        return merged

    def each_owned(self, fn, inputs: tuple = ()) -> dict[int, object]:
        """{index: fn(member)} for every member this rank owns, side by side where allowed
        (one thread per member gives the same numbers as one thread for all)."""
        mine = self.mine()
        return dict(zip(mine, self.each(lambda i: fn(self.members[i]), mine, inputs)))

    def each(self, fn, items: list[int], inputs: tuple = ()) -> list:
        """[fn(i) for i in items] (member indices): side by side on CPU threads, or on a GPU
        each member's kernels on a CUDA stream of its own (side_by_side.py); `inputs`: the
        tensors on the device the members read."""
        if self.device.type == "cuda" and self.train.side_by_side and len(items) > 1:
            streams = self.__dict__.setdefault("_streams", {})  # one per member slot, kept
            for i in items:
                if i not in streams:
                    streams[i] = torch.cuda.Stream(self.device)
            return side_by_side.on_streams(fn, items, [streams[i] for i in items], inputs)
        return side_by_side.each(fn, items, self.workers(len(items)))

    def mine(self) -> list[int]:
        """The indices of the members this rank owns (all of them in one process)."""
        return [i for i, m in enumerate(self.members) if self.owns(m)]

    def workers(self, members: int) -> int:
        """Threads to step or score `members` members on: side by side (side_by_side.py) where
        allowed."""
        return side_by_side.workers_for(members, self.device, self.train.side_by_side)

    @property
    def events_ready(self) -> bool:
        """Resets to report now: in one process at once; under torchrun they are gathered
        from their ranks by the next `sync`."""
        return bool(self.events) and not self.group.distributed
