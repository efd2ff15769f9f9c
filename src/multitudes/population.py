"""Members and the population that trains them together on one stream of real bytes.

Under torchrun a rank holds the weights of the members it owns (`Member.rank`) and the
bookkeeping of all of them; the thoughts and counters of the others reach it through the
`distributed.Group` (see distributed.py). In one process the group is the identity.

No parameter and no gradient crosses members: each has its own model, optimizer and random
state, and what it hears from its peers is detached. A member's random state is its own: model
initialisation and dropout run inside `member.rng_scope()`, which swaps the member's generator
state in and out of torch's default generator, so nothing depends on ambient global state.
"""

from __future__ import annotations

import math
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from multitudes import social
from multitudes.config import SocialConfig, TrainConfig
from multitudes.distributed import Group
from multitudes.errors import UserError
from multitudes.genome import Genome
from multitudes.models import build


def _detach(state):
    """A recurrent state (a tensor, or a tuple of them for an LSTM) cut from its graph."""
    if isinstance(state, tuple):
        return tuple(t.detach() for t in state)
    return state.detach()


def _nan_if_none(value: float | None) -> float:
    return float("nan") if value is None else value


def cooldown_factor(step: int, horizon: int | None, fraction: float) -> float:
    """`wsd`: 1 in the stable phase, then 1 - sqrt(progress) over the last `fraction` of the
    `horizon` steps (Hägele et al. 2024). No horizon: a stable trunk, branched off later."""
    if horizon is None:
        return 1.0
    length = max(1, round(fraction * horizon))
    progress = (step - (horizon - length)) / length
    return 1.0 if progress < 0 else max(0.0, 1.0 - math.sqrt(min(1.0, progress)))


def lr_at(step: int, genome: Genome, total_steps: int, train: TrainConfig,
          pop_step: int = 0, horizon: int | None = None) -> float:
    """Linear warmup to genome.lr over the member's own steps, then flat (`constant`), flat and
    cooled down at the population's `horizon` (`wsd`), or a cosine down to the floor."""
    if step < genome.warmup:
        warm = genome.lr * (step + 1) / genome.warmup
        return warm * cooldown_factor(pop_step, horizon, train.cooldown) \
            if train.schedule == "wsd" else warm
    if train.schedule == "constant":
        return genome.lr
    if train.schedule == "wsd":
        return genome.lr * cooldown_factor(pop_step, horizon, train.cooldown)
    progress = min(1.0, (step - genome.warmup) / max(1, total_steps - genome.warmup))
    floor = train.min_lr_ratio
    return genome.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def make_optimizer(model: torch.nn.Module, genome: Genome) -> torch.optim.AdamW:
    """AdamW; matrices decay, biases, norms and embeddings' 1-d parts do not."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": genome.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=genome.lr, betas=(0.9, 0.99))


@dataclass
class Member:
    id: str
    genome: Genome
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    rng_state: torch.Tensor  # this member's state of torch's CPU generator
    steps: int = 0
    fitness: float | None = None  # latest dev bpb
    last_loss: float = float("nan")
    birth_bytes: int = 0
    flops: float = 0.0  # training FLOPs spent so far, the language channel's included
    flops_per_byte: int = 0
    resets: int = 0  # times it fell sick (non-finite loss or gradients) and was reborn
    childhood_left: int = 0  # steps it still listens with `childhood_alpha` (a newborn)
    childhood_alpha: float = 0.0
    rank: int = 0  # the rank that owns (and trains) this member; elsewhere model is None
    state: object = None  # a stateful model's state after the last window, detached (TBPTT)

    # What a rank learns of the members it does not own (see Population.sync).
    COUNTERS = ("steps", "fitness", "last_loss", "birth_bytes", "flops", "resets",
                "childhood_left", "childhood_alpha")

    @property
    def alpha(self) -> float:
        """The listen weight now: raised during a newborn's childhood."""
        return self.childhood_alpha if self.childhood_left > 0 else self.genome.alpha

    @classmethod
    def create(cls, member_id: str, genome: Genome, device: torch.device, rank: int = 0,
               build: bool = True) -> "Member":
        """A fresh member; `build=False` on the ranks that do not own it (no weights there)."""
        rng_state = torch.Generator().manual_seed(genome.seed).get_state()
        member = cls(member_id, genome, None, None, rng_state, rank=rank)
        if build:
            member.reinitialise(device)
        member.flops_per_byte = genome.flops_per_byte
        return member

    def counters(self) -> dict:
        return {name: getattr(self, name) for name in self.COUNTERS}

    def reinitialise(self, device: torch.device) -> None:
        """Fresh weights (drawn from this member's own random stream) and a fresh optimizer."""
        with self.rng_scope():
            self.model = build(self.genome).to(device)
        self.optimizer = make_optimizer(self.model, self.genome)
        self.state = None

    @property
    def stateful(self) -> bool:
        return getattr(self.model, "stateful", False)

    @contextmanager
    def rng_scope(self):
        """Run with this member's random state as torch's default CPU generator, then restore."""
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self.rng_state)
            yield
            self.rng_state = torch.get_rng_state()


@dataclass
class StepStats:
    data_loss: list[float]
    listen_loss: list[float]
    language_loss: list[float]
    generated_bytes: int = 0


@dataclass
class Population:
    members: list[Member]
    social: SocialConfig
    train: TrainConfig
    total_steps: int
    device: torch.device
    generator: torch.Generator = field(default_factory=lambda: torch.Generator().manual_seed(0))
    horizon: int | None = None  # `wsd`: the step the cooldown ends at (None: the stable trunk)
    culture: social.CultureBuffer | None = None
    steps: int = 0
    real_bytes: int = 0  # real training bytes consumed so far (B * T per step)
    generated_bytes: int = 0  # bytes sampled by speakers: never counted as real bytes
    events: list[dict] = field(default_factory=list)  # resets since the runner last looked
    group: Group = field(default_factory=Group)

    def __post_init__(self) -> None:
        if self.culture is None:
            self.culture = social.CultureBuffer(self.social.culture_size)
        if self.group.distributed and self.social.language_every:
            raise UserError("the language channel (social.language_every > 0) runs in one "
                            "process only; start the run without torchrun")

    def owns(self, m: Member) -> bool:
        return m.rank == self.group.rank

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
            for name, value in values.items():
                setattr(self.members[i], name, value)
        index = {m.id: i for i, m in enumerate(self.members)}
        self.events = sorted(events, key=lambda e: (e["step"], index.get(e["member"], -1)))
        return merged

    @property
    def listening(self) -> bool:
        return (self.social.channel == "logit" and len(self.members) > 1
                and self.real_bytes >= self.social.listen_after)

    def autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def step(self, batch: torch.Tensor, continues: bool = False) -> StepStats:
        """One training step of every member on the same batch (B, T+1) of real bytes.

        `continues`: row b of this batch follows row b of the last one (contiguous lanes), so
        a stateful member goes on from its carried state; otherwise it starts afresh.
        """
        batch = batch.to(self.device)
        x, y = batch[:, :-1], batch[:, 1:]
        stats = StepStats([], [], [])
        if self.social.language_every and self.steps % self.social.language_every == 0:
            stats.generated_bytes = self._speak(x)

        mine = [i for i, m in enumerate(self.members) if self.owns(m)]
        logits = {}
        for i in mine:  # every member perceives the data on its own
            m = self.members[i]
            m.model.train()
            with m.rng_scope(), self.autocast():
                if m.stateful:  # truncated BPTT: the state flows in, no gradient flows back
                    logits[i], state = m.model.decode(x, m.state if continues else None)
                    m.state = _detach(state)
                else:
                    logits[i] = m.model(x)
        # A sick member (non-finite thoughts) is heard by no one and reborn below.
        healthy = {i: bool(torch.isfinite(z).all()) for i, z in logits.items()}
        targets = {}
        if self.listening:
            targets = self._consensus(logits, healthy)

        for i in mine:
            m, z, q, ok = self.members[i], logits[i], targets.get(i), healthy[i]
            if not ok:
                self._reset(m, "non-finite logits")
                stats.data_loss.append(float("nan"))
                continue
            data_loss = F.cross_entropy(z.float().reshape(-1, z.shape[-1]), y.reshape(-1))
            loss = data_loss
            if q is not None and m.alpha > 0:
                heard = social.listen_loss(z, q, m.genome.tau)
                loss = loss + m.alpha * heard
                stats.listen_loss.append(heard.item())
            texts = (self.culture.sample(m.id, self.social.language_batch, self.generator)
                     if self.social.language_every and self.social.beta > 0 else [])
            if texts:
                with m.rng_scope(), self.autocast():
                    read = social.language_loss(m.model, texts, self.device)
                loss = loss + self.social.beta * read
                stats.language_loss.append(read.item())
                m.flops += m.flops_per_byte * sum(len(t.tokens) - 1 for t in texts)
            m.flops += m.flops_per_byte * x.numel()
            problem = self._update(m, loss)
            if problem:
                self._reset(m, problem)
                stats.data_loss.append(float("nan"))
                continue
            m.last_loss = data_loss.item()
            m.childhood_left = max(0, m.childhood_left - 1)
            stats.data_loss.append(m.last_loss)
        self.steps += 1
        self.real_bytes += x.numel()
        self.generated_bytes += stats.generated_bytes
        return stats

    def _consensus(self, logits: dict[int, torch.Tensor], healthy: dict[int, bool]
                   ) -> dict[int, torch.Tensor | None]:
        """The target of each member this rank owns: its trusted peers' thoughts, mixed.

        The thoughts of every member (and its health and fitness, which the trust weights read)
        are shared across ranks first, so every rank mixes the same consensus.
        """
        mine = sorted(logits)
        probs = dict(zip(mine, social.thoughts([logits[i] for i in mine],
                                               [self.members[i].genome.tau for i in mine])))
        status = {i: [float(healthy[i]), _nan_if_none(self.members[i].fitness)] for i in mine}
        heard, rows = self.group.share_thoughts(probs, status, self.owners)
        for m, (_, fitness) in zip(self.members, rows):  # a reset elsewhere shows here
            m.fitness = None if math.isnan(fitness) else fitness
        weights = social.trust_weights(self.social.trust, [m.fitness for m in self.members],
                                       self.social.top_k, self.social.fitness_temperature,
                                       self.generator)
        mixed = social.consensus(heard, weights, [bool(ok) for ok, _ in rows], listeners=mine)
        return {i: mixed[i] for i in mine}

    def _update(self, m: Member, loss: torch.Tensor) -> str | None:
        """One optimizer step; a non-finite loss or gradient skips it and names the problem."""
        if not torch.isfinite(loss):
            return "non-finite loss"
        lr = lr_at(m.steps, m.genome, self.total_steps, self.train, self.steps, self.horizon)
        for group in m.optimizer.param_groups:
            group["lr"] = lr
        m.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        # Clipping to infinity scales by exactly 1.0: the norm is checked either way.
        norm = torch.nn.utils.clip_grad_norm_(m.model.parameters(),
                                              self.train.grad_clip or float("inf"))
        if not torch.isfinite(norm):
            return "non-finite gradients"
        m.optimizer.step()
        m.steps += 1
        return None

    def _reset(self, m: Member, reason: str) -> None:
        """Rebuild a sick member from its genome (fresh weights and optimizer, warm-up again).

        Its new weights are drawn from its own random stream, so the rebirth is reproducible;
        the other members are untouched.
        """
        m.reinitialise(self.device)
        m.steps, m.fitness, m.last_loss = 0, None, float("nan")
        m.birth_bytes = self.real_bytes
        m.resets += 1
        self.events.append({"event": "reset", "member": m.id, "family": m.genome.family,
                            "reason": reason, "step": self.steps, "real_bytes": self.real_bytes,
                            "resets": m.resets})

    def _speak(self, x: torch.Tensor) -> int:
        """Language channel: every member continues prompts cut from the real batch."""
        cfg = self.social
        n, plen = min(cfg.language_prompts, x.shape[0]), min(cfg.language_prompt_length,
                                                             x.shape[1] - cfg.language_length)
        if plen < 1:
            raise ValueError("language_prompt_length + language_length must fit in the context")
        spoken = 0
        for m in self.members:
            rows = torch.randperm(x.shape[0], generator=self.generator)[:n]
            prompts = x[rows, :plen]
            with self.autocast():
                cont = social.speak(m.model, prompts, cfg.language_length,
                                    cfg.language_temperature, self.generator)
            if cont is None:
                continue
            for row in torch.cat([prompts, cont], dim=1).cpu():
                self.culture.add(social.CultureText(m.id, row, plen))
            spoken += cont.numel()
            m.flops += m.flops_per_byte / 3 * (prompts.numel() + cont.numel())  # forward only
        return spoken
