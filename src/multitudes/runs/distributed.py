"""Members across torch.distributed ranks: who owns which member, and what travels between ranks.

One process holds the whole population by default (a `Group` of world size 1, where every
method below is a no-op or the identity), so one process and many take the same code path.
Under `torchrun` each rank owns some of the members (balanced by FLOPs per byte, not by count)
and keeps the population's bookkeeping (ids, genomes, fitness, counters) for all of them; only
the owner holds a member's weights and optimizer. Every rank draws the same batch; per step the
peers' thoughts travel by all-gather in member order, so every rank mixes the same consensus;
evolution is decided on rank 0 and broadcast; only rank 0 writes the run's files.

Thoughts are encoded the same way on one rank as on many (`encode` / `decode`), so the numbers
of a run do not depend on how many ranks it has: `float32` is exact, `bfloat16` halves the
bytes, `topk` keeps the k likeliest bytes per position and spreads the rest of the mass evenly.

A peer that dies or stops answering ends the run on every rank with one line (`PeerLost`)
instead of a hang: gloo notices a closed connection at once, and every collective has the
configured timeout.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from multitudes.errors import UserError


class PeerLost(UserError):
    """A collective failed: a peer rank died, hung past the timeout, or lost its connection."""


def world_size_from_env() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def assign(costs: list[float], world: int) -> list[int]:
    """The rank of each member: the largest first, each onto the least-loaded rank (LPT).

    Deterministic (ties go to the lower member index and the lower rank), so every rank computes
    the same assignment without talking.
    """
    if world > len(costs):
        raise UserError(f"{world} ranks for {len(costs)} members: every rank needs at least one "
                        f"member (use --nproc-per-node {len(costs)} or fewer)")
    load = [0.0] * world
    owners = [0] * len(costs)
    for i in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        rank = min(range(world), key=lambda r: (load[r], r))
        owners[i] = rank
        load[rank] += costs[i]
    return owners


def place(costs: list[float], owners: list[int], index: int, world: int) -> int:
    """The rank for a newborn in slot `index`: the least-loaded one once the dead has left.

    Ties go to the dead member's own rank (nothing moves when the load allows), then the lowest.
    """
    load = [0.0] * world
    for i, (cost, rank) in enumerate(zip(costs, owners)):
        if i != index:
            load[rank] += cost
    return min(range(world), key=lambda r: (load[r], r != owners[index], r))


def encode(p: torch.Tensor, how: str, k: int) -> tuple[torch.Tensor, ...]:
    """A member's thought (..., V) as the tensors that travel."""
    if how == "float32":
        return (p,)
    if how == "bfloat16":
        return (p.to(torch.bfloat16),)
    values, index = p.topk(k, dim=-1)
    return values, index.to(torch.uint8)  # byte-level: V = 256 fits in a byte


def decode(parts: tuple[torch.Tensor, ...], how: str, vocab: int) -> torch.Tensor:
    """The distribution a listener hears, from what travelled: float32, sums to one up to
    rounding; for `topk`, the mass outside the k kept bytes is spread evenly over the rest."""
    if how == "float32":
        return parts[0]
    if how == "bfloat16":
        return parts[0].float()
    values, index = parts
    values = values.float()
    rest = (1 - values.sum(-1, keepdim=True)).clamp_min(0) / (vocab - values.shape[-1])
    full = rest.expand(*values.shape[:-1], vocab).clone()
    return full.scatter_(-1, index.long(), values)


@dataclass
class Group:
    """This process's place among the ranks, and the collectives the population uses."""

    rank: int = 0
    world: int = 1
    thoughts: str = "float32"
    top_k: int = 32
    comm_seconds: float = 0.0  # time spent in collectives, for benchmarks/scaling.py
    comm_bytes: int = 0  # bytes this rank sent in thought all-gathers

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    # -- thoughts ----------------------------------------------------------------------------
    def share_thoughts(self, probs: dict[int, torch.Tensor], status: dict[int, list[float]],
                       owners: list[int]) -> tuple[list[torch.Tensor], list[list[float]]]:
        """Every member's thought, as heard after encoding, and its status row, in member order.

        `probs` and `status` hold this rank's members (index -> tensor, index -> floats).
        """
        vocab = next(iter(probs.values())).shape[-1]
        if not self.distributed:
            heard = [decode(encode(probs[i], self.thoughts, self.top_k), self.thoughts, vocab)
                     for i in range(len(owners))]
            return heard, [status[i] for i in range(len(owners))]
        mine = sorted(probs)
        slots = max(owners.count(r) for r in range(self.world))
        encoded = [encode(probs[i], self.thoughts, self.top_k) for i in mine]
        gathered = []
        for part in range(len(encoded[0])):
            local = torch.stack([e[part] for e in encoded])
            if len(mine) < slots:  # every rank sends the same shape
                local = torch.cat([local, local.new_zeros((slots - len(mine),
                                                           *local.shape[1:]))])
            gathered.append(self._all_gather(local))
            self.comm_bytes += local.numel() * local.element_size()
        table = torch.tensor([status[i] for i in mine] + [[0.0] * len(status[mine[0]])] *
                             (slots - len(mine)), dtype=torch.float64, device=local.device)
        table = self._all_gather(table)
        heard, rows = [], []
        for i, rank in enumerate(owners):
            slot = owners[:i].count(rank)  # position among the members rank `rank` owns
            heard.append(decode(tuple(g[rank][slot] for g in gathered), self.thoughts, vocab))
            rows.append(table[rank][slot].tolist())
        return heard, rows

    # -- objects -----------------------------------------------------------------------------
    def gather(self, obj) -> list:
        """Every rank's `obj`, in rank order."""
        return [obj] if not self.distributed else self._collective(self._gather_objects, obj)

    def broadcast(self, obj, src: int = 0):
        """`obj` from rank `src` on every rank."""
        if not self.distributed:
            return obj
        box = [obj if self.rank == src else None]
        self._collective(dist.broadcast_object_list, box, src=src)
        return box[0]

    def barrier(self) -> None:
        if self.distributed:
            self._collective(dist.barrier)

    def on_main(self, fn):
        """Run `fn` on rank 0 only (it writes files); its UserError stops every rank."""
        result, error = None, None
        if self.main:
            try:
                result = fn()
            except UserError as e:
                error = str(e)
        error = self.broadcast(error)
        if error is not None:
            if self.main:
                raise UserError(error)
            raise SystemExit(2)  # rank 0 says it; the others leave quietly
        return self.broadcast(result)

    # -- plumbing ----------------------------------------------------------------------------
    def _all_gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        out = [torch.empty_like(tensor) for _ in range(self.world)]
        self._collective(dist.all_gather, out, tensor)
        return out

    def _gather_objects(self, obj) -> list:
        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def _collective(self, fn, *args, **kwargs):
        start = time.perf_counter()
        try:
            out = fn(*args, **kwargs)
            if dist.is_initialized() and dist.get_backend() == "nccl":
                # the collective is queued on the GPU: its failure and its time arrive here
                torch.cuda.synchronize()
            return out
        except RuntimeError as e:  # gloo / NCCL: a peer closed its connection or timed out
            raise PeerLost(f"rank {self.rank}: lost a peer rank ({_reason(e)}); every rank "
                           f"stops, the latest checkpoint is kept: resume with --resume DIR on "
                           f"the same number of ranks") from None
        finally:
            self.comm_seconds += time.perf_counter() - start


def _reason(error: Exception) -> str:
    """The gist of a gloo / NCCL error: its first sentence, without the source location."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    text = re.sub(r"^\[[^\]]*\]\s*", "", text)  # "[/path/pair.cc:537] Read error ..."
    return text.split(". ")[0][:160]


def connect(thoughts: str = "float32", top_k: int = 32, timeout: float = 300.0,
            device: str = "auto") -> Group:
    """Join the ranks `torchrun` started, or stand alone. The backend follows the device the
    run trains on (`train.device`), not whether the machine has a GPU: NCCL for CUDA tensors
    (each rank on its own GPU), gloo for CPU ones (a CPU run on a GPU machine included)."""
    world = world_size_from_env()
    if world == 1:
        return Group(0, 1, thoughts, top_k)
    if not dist.is_initialized():
        backend = backend_for(device)
        if backend == "nccl":
            local = int(os.environ.get("LOCAL_RANK", "0"))
            if local >= torch.cuda.device_count():
                raise UserError(f"LOCAL_RANK {local}: this machine has "
                                f"{torch.cuda.device_count()} GPU(s); start at most that many "
                                f"ranks per node (--nproc-per-node), or set train.device=\"cpu\"")
            torch.cuda.set_device(local)
            # NCCL reports a failed or timed-out collective asynchronously, on a watchdog
            # thread, by default; blocking waits raise it in the collective itself, where
            # `_collective` turns it into PeerLost, and make its timing the transfer's
            os.environ.setdefault("TORCH_NCCL_BLOCKING_WAIT", "1")
        try:
            dist.init_process_group(backend, timeout=timedelta(seconds=timeout))
        except (RuntimeError, ValueError) as e:
            raise UserError(f"could not join the other ranks: {str(e).splitlines()[0]}") from None
    return Group(dist.get_rank(), dist.get_world_size(), thoughts, top_k)


def backend_for(device: str) -> str:
    """NCCL when the run's tensors are on CUDA (`auto` on a machine with a GPU, or `cuda`),
    else gloo."""
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    return "nccl" if cuda else "gloo"


def disconnect(wait_for_peers: bool = True) -> None:
    """Leave the ranks. After a run, first wait for every peer to finish its last collective:
    a rank that exits while a peer still reads from it makes that peer abort (gloo)."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    if wait_for_peers:
        try:
            dist.barrier()
        except RuntimeError:
            pass  # a peer is gone already: nothing left to wait for
    dist.destroy_process_group()
