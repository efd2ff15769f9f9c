"""The population: members (member.py) trained together on one stream of real bytes.

Under torchrun a rank holds the members it owns and the bookkeeping of all (roster.py); the
others' thoughts reach it through the `distributed.Group`. No parameter and no gradient crosses
members: each has its own model, optimizer and random state; what it hears is detached.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import torch

from multitudes.runs import distributed
from multitudes.population import social
from multitudes.population.channels import LOGIT, channel_for
from multitudes.config.schema import SocialConfig, TrainConfig
from multitudes.runs.distributed import Group
from multitudes.runs.device import autocast_for
from multitudes.errors import UserError
from multitudes.config.genome import Genome, member_id
from multitudes.models import detach_state
from multitudes.population.elders import Elders
from multitudes.population.member import Member
from multitudes.population.roster import Roster
from multitudes.population.transfers import host_values, to_device
from multitudes.population.schedule import lr_at, set_lr


def _nan_if_none(value: float | None) -> float:
    return float("nan") if value is None else value


@dataclass
class StepStats:
    data_loss: list[float]
    listen_loss: list[float]
    language_loss: list[float]
    generated_bytes: int = 0


@dataclass
class Population(Roster):
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
    elders: Elders | None = None  # a frozen earlier population this one also learns from
    elder_weight: float = 0.5  # the elders' share of a listener's target beside its peers
    # member i's own teacher (its previous snapshot, training/snapshots.py), or None
    own_elders: list[Elders | None] | None = None
    cycles: int = 0  # a cosine schedule restarted this many times (the snapshot arm)

    def __post_init__(self) -> None:
        if self.culture is None:
            self.culture = social.CultureBuffer(self.social.culture_size)
        if self.group.distributed and self.social.language_every:
            raise UserError("the language channel (social.language_every > 0) runs in one "
                            "process only; start the run without torchrun")

    @classmethod
    def found(cls, genomes: list[Genome], social: SocialConfig, train: TrainConfig,
              total_steps: int, device: torch.device, group: Group) -> "Population":
        """The founders (members `m0-...`, `m1-...`), spread over the ranks by FLOPs; each rank
        builds the weights of the members it owns."""
        owners = distributed.assign([g.flops_per_byte for g in genomes], group.world)
        members = [Member.create(member_id(i, g.family), g, device, rank,
                                 build=rank == group.rank)
                   for i, (g, rank) in enumerate(zip(genomes, owners))]
        return cls(members, social, train, total_steps, device,
                   torch.Generator().manual_seed(train.seed), group=group)

    @property
    def listening(self) -> bool:
        return (channel_for(self.social.channel) is not None and len(self.members) > 1
                and self.real_bytes >= self.social.listen_after)

    def autocast(self):
        return autocast_for(self.device, self.train.precision)

    def step(self, batch: torch.Tensor, continues: bool = False) -> StepStats:
        """One training step of every member on the same batch (B, T+1) of real bytes;
        `continues`: row b follows row b of the last batch (a stateful member goes on)."""
        batch = to_device(batch, self.device)
        x, y = batch[:, :-1], batch[:, 1:]
        stats = StepStats([], [], [])
        if self.social.language_every and self.steps % self.social.language_every == 0:
            stats.generated_bytes = self._speak(x)
        mine = self.mine()
        reads_texts = bool(self.social.language_every and self.social.beta > 0)
        if self.listening or self.elders is not None or self.own_elders or reads_texts:
            logits = self._perceive(batch, x, continues)
            # A sick member (non-finite thoughts) is heard by no one and reborn below. Every
            # member's health crosses to the host in one transfer (one wait on a GPU).
            flags = host_values([[torch.isfinite(z).all()] for z in logits.values()], 1)
            healthy = {i: ok == 1 for i, (ok,) in zip(logits, flags)}
            targets = self._consensus(logits, healthy) if self.listening else {}
            if self.elders is not None:  # one frozen population every member hears
                targets = self._with_elders(targets, x, continues,
                                            [self.elders] * len(self.members), mine)
            if self.own_elders:  # each member its own teacher (the snapshot arm)
                targets = self._with_elders(targets, x, continues, self.own_elders, mine)
            # The peers' texts each healthy member reads, drawn here from the one shared
            # generator in the members' order, so that the members may then learn side by side.
            texts = {i: self.culture.sample(self.members[i].id, self.social.language_batch,
                                            self.generator) if reads_texts and healthy[i]
                     else [] for i in mine}
            # Each member learns on its own (side by side when it may); what it reports is
            # gathered in the members' order, so the stats and resets read the same either way.
            heard = tuple(t for t in targets.values() if t is not None)
            learned = self.each(
                lambda i: self._learn(self.members[i], logits[i], y, targets.get(i),
                                      healthy[i], texts[i]), mine, (batch, *heard))
        else:  # nobody to hear or read: each member reads and learns in one go, one wait a step
            learned = self.each(lambda i: self._alone(i, x, y, continues), mine, (batch,))
        self._settle(mine, learned, y.numel(), stats)
        self.steps += 1
        self.real_bytes += x.numel()
        self.generated_bytes += stats.generated_bytes
        return stats

    def _settle(self, mine: list[int], learned: list, predicted: int, stats: StepStats
                ) -> None:
        """Every loss of the step and whether each member's logits (alone), loss and gradients
        were finite, read back in one transfer (one wait on a GPU); a sick member is reborn."""
        read = host_values([[losses.listen, losses.language, losses.data, *finite]
                            if losses is not None else [] for losses, _, finite in learned], 6)
        for i, (_, problem, _), (listen, language, data, logits_ok, loss_ok, grads_ok) in zip(
                mine, learned, read):
            m = self.members[i]
            problem = problem or ("non-finite logits" if logits_ok == 0 else
                                  "non-finite loss" if loss_ok == 0 else
                                  "non-finite gradients" if grads_ok == 0 else None)
            if problem != "non-finite logits":  # a step that learned from its bytes
                m.flops += m.flops_per_byte * predicted
            stats.listen_loss += [listen] if listen is not None else []
            stats.language_loss += [language] if language is not None else []
            if problem:
                self._reset(m, problem)
                stats.data_loss.append(float("nan"))
                continue
            m.last_loss = data
            m.childhood_left = max(0, m.childhood_left - 1)
            stats.data_loss.append(m.last_loss)

    def _perceive(self, batch: torch.Tensor, x: torch.Tensor, continues: bool
                  ) -> dict[int, torch.Tensor]:
        """Every member this rank owns reads the real bytes x (of `batch`) on its own: its
        logits (B, T, 256)."""
        return self.each_owned(lambda m: self._read(m, x, continues), (batch,))

    def _read(self, m: Member, x: torch.Tensor, continues: bool) -> torch.Tensor:
        """Member m's logits (B, T, 256) of the real bytes x."""
        m.model.train()
        if self.train.compile:
            m.compile()
        # Its dropout from its own stream, without racing the members beside it on torch's
        # global generator (Member.draws).
        with m.draws(), self.autocast():
            if m.stateful:  # truncated BPTT: the state flows in, no gradient flows back
                z, state = m.model.decode(x, m.state if continues else None)
                m.state = detach_state(state)
                return z
            return m.model(x)

    def _alone(self, i: int, x: torch.Tensor, y: torch.Tensor, continues: bool
               ) -> tuple[social.MemberLoss | None, str | None, tuple]:
        """Member i's whole step when it hears no one: `_perceive` and `_learn` for one member."""
        m = self.members[i]
        z = self._read(m, x, continues)
        # its logits' health is read with the step's losses (no wait here); a member whose
        # logits were not finite is then rebuilt, and what this step did is discarded with it
        losses = self._losses(m, z, y, None, [])
        return losses, None, (torch.isfinite(z).all(),
                              *self._update(m, losses.total(m.alpha, self.social.beta)))

    def _learn(self, m: Member, z: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None,
               healthy: bool, texts: list
               ) -> tuple[social.MemberLoss | None, str | None, tuple]:
        """Member m's losses and optimizer step: (losses, the problem known on the host that
        makes it sick, the device flags of finite logits (None: known), loss and gradients)."""
        if not healthy:
            return None, "non-finite logits", ()
        losses = self._losses(m, z, y, target, texts)
        return losses, None, (None, *self._update(m, losses.total(m.alpha, self.social.beta)))

    def _losses(self, m: Member, z: torch.Tensor, y: torch.Tensor,
                target: torch.Tensor | None, texts: list) -> social.MemberLoss:
        """What member m learns from this step: the bytes, the consensus it hears (when it
        listens), and the peers' `texts` it reads (language channel); social.py's losses."""
        losses = social.MemberLoss(social.data_loss(z, y))
        if target is not None and m.alpha > 0:  # its peers (or elders, always by logits)
            channel = channel_for(self.social.channel) or LOGIT
            losses.listen = channel.loss(z, target, y, m.genome.tau, len(self.members))
        if texts:
            # its dropout from its own stream, as in its forward on the bytes (Member.draws)
            with m.draws(), self.autocast():
                losses.language = social.language_loss(m.model, texts, self.device)
            m.flops += m.flops_per_byte * sum(len(t.tokens) - 1 for t in texts)
        return losses

    def _consensus(self, logits: dict[int, torch.Tensor], healthy: dict[int, bool]
                   ) -> dict[int, torch.Tensor | None]:
        """The target of each member this rank owns: its trusted peers' thoughts, mixed.

        The thoughts of every member (and its health and fitness, which the trust weights read)
        are shared across ranks first, so every rank mixes the same consensus.
        """
        mine = sorted(logits)
        channel = channel_for(self.social.channel)
        probs = dict(zip(mine, social.thoughts(
            [logits[i] for i in mine], [channel.tau(self.members[i].genome.tau) for i in mine])))
        status = {i: [float(healthy[i]), _nan_if_none(self.members[i].fitness)] for i in mine}
        heard, rows = self.group.share_thoughts(probs, status, self.owners)
        for m, (_, fitness) in zip(self.members, rows):  # a reset elsewhere shows here
            m.fitness = None if math.isnan(fitness) else fitness
        weights = social.trust_weights(self.social.trust, [m.fitness for m in self.members],
                                       self.social.top_k, self.social.fitness_temperature,
                                       self.generator)
        mixed = social.consensus(heard, weights, [bool(ok) for ok, _ in rows], listeners=mine)
        return {i: mixed[i] for i in mine}

    def _with_elders(self, targets: dict, x: torch.Tensor, continues: bool,
                     teachers: list[Elders | None], mine: list[int]
                     ) -> dict[int, torch.Tensor | None]:
        """Each of my listeners' target with its elders' mixture blended in (their share
        `elder_weight`); a member that hears no peer (alone, or the channel closed) hears its
        elders alone, one with none (`teachers[i]` None) its peers alone. Elders heard by
        several members think once a step. `teachers` is every member's, on every rank."""
        w, out, heard = self.elder_weight, dict(targets), {}
        for i in mine:
            elders = teachers[i]
            if elders is None:
                continue
            if id(elders) not in heard:
                heard[id(elders)] = elders.thoughts(x, continues, self.autocast())
            thought = heard[id(elders)]
            out[i] = thought if targets.get(i) is None else (1 - w) * targets[i] + w * thought
        # A teacher's forward is shared by all who hear it, across the ranks: the run's count
        # is one process's, whatever the rank count (under torchrun each rank that holds a
        # listener runs that forward itself; the duplicate is the launch's cost, not the arm's).
        hearers = Counter(id(e) for e in teachers if e is not None)
        for i in mine:
            if teachers[i] is not None:
                self.members[i].teacher_flops += \
                    teachers[i].forward_flops_per_byte * x.numel() / hearers[id(teachers[i])]
        return out

    def _update(self, m: Member, loss: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step; returns whether the loss and the gradients were finite, as
        tensors on the device, read with the step's losses. The step is taken either way: a
        member whose loss or gradients were not finite is then rebuilt from its genome (fresh
        weights from its own stream, a fresh optimizer, its step count back to zero), so what
        the step did is discarded, and no check waits for the device here."""
        set_lr(m.optimizer,
               lr_at(m.steps, m.genome, self.total_steps, self.train, self.steps, self.horizon,
                     self.cycles))
        m.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        # Clipping to infinity scales by exactly 1.0: the norm is checked either way.
        norm = torch.nn.utils.clip_grad_norm_(m.model.parameters(),
                                              self.train.grad_clip or float("inf"))
        m.optimizer.step()
        m.steps += 1
        return torch.isfinite(loss.detach()), torch.isfinite(norm)

    def _reset(self, m: Member, reason: str) -> None:
        """Rebuild a sick member from its genome (fresh weights and optimizer, warm-up again).

        Its new weights are drawn from its own random stream, so the rebirth is reproducible;
        the other members are untouched.
        """
        m.reborn(self.device, self.real_bytes)
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
