"""A member of the population: a genome, its weights and optimizer, its own random stream and
its counters.

The counters are declared once, below, with `counter(...)`: a rank learns them of the members it
does not own (`Population.sync`), a checkpoint saves them, and a rebirth resets those marked
`reborn=True` to their defaults. A new counter is one line here.

No parameter and no gradient crosses members. A member's random state is its own: model
initialisation runs inside `member.rng_scope()`, which swaps the member's generator state in
and out of torch's default generator, so nothing depends on ambient global state; a training
forward runs inside `member.draws()`, which hands a model that takes one (the RNNs) its own
generator instead, so members side by side need no lock to draw their dropout.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import dataclass, field, fields

import torch

from multitudes.config.genome import Genome
from multitudes.models import build
from multitudes.population import side_by_side
from multitudes.population.schedule import make_optimizer


def counter(default, reborn: bool = False):
    """A counter field; `reborn`: back to `default` when the member is rebuilt after a fault."""
    return field(default=default, metadata={"counter": True, "reborn": reborn})


@dataclass
class Member:
    id: str
    genome: Genome
    model: torch.nn.Module | None  # None on the ranks that do not own it
    optimizer: torch.optim.Optimizer | None
    rng_state: torch.Tensor  # this member's state of torch's CPU generator
    rank: int = 0  # the rank that owns (and trains) this member
    state: object = None  # a stateful model's state after the last window, detached (TBPTT)
    # its state of the GPU's generator, which draws its dropout there (None until it first does)
    device_rng_state: torch.Tensor | None = None
    steps: int = counter(0, reborn=True)  # its own optimizer steps (its warm-up reads them)
    fitness: float | None = counter(None, reborn=True)  # latest dev bpb
    last_loss: float = counter(float("nan"), reborn=True)
    birth_bytes: int = counter(0)  # the population's real bytes when it was born
    flops: float = counter(0.0)  # training FLOPs spent so far, the language channel's included
    teacher_flops: float = counter(0.0)  # its share of frozen teachers' forwards it heard
    resets: int = counter(0)  # times it fell sick (non-finite loss or gradients) and was reborn
    childhood_left: int = counter(0)  # steps it still listens with `childhood_alpha` (a newborn)
    childhood_alpha: float = counter(0.0)

    @classmethod
    def create(cls, member_id: str, genome: Genome, device: torch.device, rank: int = 0,
               build: bool = True) -> "Member":
        """A fresh member; `build=False` on the ranks that do not own it (no weights there)."""
        rng_state = torch.Generator().manual_seed(genome.seed).get_state()
        member = cls(member_id, genome, None, None, rng_state, rank=rank)
        if build:
            member.reinitialise(device)
        return member

    @property
    def flops_per_byte(self) -> int:
        return self.genome.flops_per_byte

    @property
    def alpha(self) -> float:
        """The listen weight now: raised during a newborn's childhood."""
        return self.childhood_alpha if self.childhood_left > 0 else self.genome.alpha

    @property
    def stateful(self) -> bool:
        return getattr(self.model, "stateful", False)

    def compile(self) -> None:
        """Its model compiled in place for training (`train.compile`), once per model (a
        reborn or newborn member's new model on its first step): its forward, and a stateful
        one's `decode`. nn.Module.compile keeps the module, its parameters and state_dict."""
        if getattr(self.model, "_compiled_call_impl", None) is None:
            self.model.compile()
            if self.stateful:
                self.model.decode = torch.compile(self.model.decode)

    def counters(self) -> dict:
        return {name: getattr(self, name) for name in COUNTERS}

    def load_counters(self, values: dict) -> None:
        for name in COUNTERS:
            if name in values:  # a checkpoint from before a counter was added lacks it
                setattr(self, name, values[name])

    def reinitialise(self, device: torch.device) -> None:
        """Fresh weights (drawn from this member's own random stream) and a fresh optimizer."""
        with self.rng_scope():
            self.model = build(self.genome).to(device)
        self.optimizer = make_optimizer(self.model, self.genome)
        self.state = None

    def reborn(self, device: torch.device, real_bytes: int) -> None:
        """Rebuilt from its genome after a fault: fresh weights and optimizer, warm-up again."""
        if self.model is not None:
            self.reinitialise(device)
        for f in fields(self):
            if f.metadata.get("reborn"):
                setattr(self, f.name, f.default)
        self.birth_bytes = real_bytes
        self.resets += 1

    def inherit(self, weights: dict, optimizer_state: dict, steps: int) -> None:
        """Start from a parent's weights and optimizer moments (population-based training). The
        moments are the parent's, so the child goes on with the parent's step count (its
        warm-up is behind it) rather than warming the copied moments up again; the weight
        decay stays the child's own."""
        self.steps = steps
        if self.model is None:  # another rank owns it
            return
        self.model.load_state_dict(weights)
        self.optimizer.load_state_dict(copy.deepcopy(optimizer_state))
        decay = self.optimizer.param_groups[0]  # make_optimizer's first group: the matrices
        decay["weight_decay"] = self.genome.weight_decay

    @contextmanager
    def rng_scope(self):
        """Run with this member's random state as torch's default CPU generator, then restore."""
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self.rng_state)
            yield
            self.rng_state = torch.get_rng_state()

    @contextmanager
    def draws(self):
        """Run a training forward with this member's random stream: nothing to do when it draws
        nothing (no dropout); its own generator handed to a model that takes one, on the CPU
        (no global state, no lock); else its state swapped into torch's global generator under
        `side_by_side.RNG_LOCK` (on a GPU, its state of the GPU's generator, which draws there).
        The draws are the same either way on the CPU (models/rnn.py)."""
        if self.genome.dropout == 0:
            yield
        elif getattr(self.model, "takes_generator", False) and self.device_type == "cpu":
            generator = torch.Generator()
            generator.set_state(self.rng_state)
            self.model.generator = generator
            try:
                yield
            finally:
                self.model.generator = None
            self.rng_state = generator.get_state()
        elif self.device_type == "cpu":
            with side_by_side.RNG_LOCK, self.rng_scope():
                yield
        else:
            with side_by_side.RNG_LOCK, self.device_rng_scope():
                yield

    @contextmanager
    def device_rng_scope(self):
        """Run with this member's own stream as the GPU's generator (dropout on a GPU draws
        there, not from the CPU's), then restore the generator: the member's stream goes into
        its checkpoint, so a resume draws what an uninterrupted run draws. Its first draw seeds
        the stream from its genome's seed."""
        device = next(self.model.parameters()).device
        gpu = torch.get_device_module(device.type)
        outer = gpu.get_rng_state(device)
        try:
            if self.device_rng_state is None:
                gpu.manual_seed(self.genome.seed)  # the current device's: the member's own
            else:
                gpu.set_rng_state(self.device_rng_state, device)
            yield
            self.device_rng_state = gpu.get_rng_state(device)
        finally:
            gpu.set_rng_state(outer, device)

    @property
    def device_type(self) -> str:
        return next(self.model.parameters()).device.type


COUNTERS = tuple(f.name for f in fields(Member) if f.metadata.get("counter"))
