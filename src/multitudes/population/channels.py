"""What a listener learns from its peers' thoughts: the channels, one class each, by name.

Both channels hear the same thing, each listener's peers mixed by its trust weights
(social.consensus), q_m = sum_{j != m} w_mj p_j; they differ in what the listener does with it.

logit       trains towards the peers: alpha * tau^2 * CE(q_m, softmax(z_m / tau)), the gradient
            of KL(q_m || p_m) (Hinton et al. 2015). It makes members alike, which is the one
            thing a mixture of them must not do (docs/results.md, "Where data binds").
complement  trains for the group: alpha * NLL of the mixture the member forms with its peers,
            (1/K) p_m + ((K-1)/K) q_m, at the real next byte, with q_m detached, so the
            gradient reaches the member through its own probabilities only (no shared
            parameters: isolation in perception is kept). Beside the member's own loss this is
            negative correlation learning for the log loss (Liu and Yao 1999): the mixture's
            loss is the members' mean loss less their diversity, so alpha = 0 is independent
            training and larger values reward a member for differing from its peers where that
            helps the mixture. Very large ones train the mixture alone, which is known to fail
            by learner collusion (Jeffares et al. 2023); alpha is tuned on the dev slice.
            Thoughts are the members' plain probabilities (tau is not used): the mixture is
            what a reader of the population's predictions would score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from multitudes.population import social


@dataclass(frozen=True)
class Channel:
    """A way to learn from the peers' consensus q (B, T, 256) at the real next bytes y."""

    def tau(self, genome_tau: float) -> float:
        """The temperature a member's thoughts are shared at."""
        return genome_tau

    def loss(self, logits: torch.Tensor, target: torch.Tensor, y: torch.Tensor, tau: float,
             members: int) -> torch.Tensor:
        raise NotImplementedError


@dataclass(frozen=True)
class Logit(Channel):
    def loss(self, logits, target, y, tau, members):
        return social.listen_loss(logits, target, tau)


@dataclass(frozen=True)
class Complement(Channel):
    def tau(self, genome_tau: float) -> float:
        return 1.0

    def loss(self, logits, target, y, tau, members):
        return complement_loss(logits, target, y, members)


def complement_loss(logits: torch.Tensor, target: torch.Tensor, y: torch.Tensor,
                    members: int) -> torch.Tensor:
    """-log((1/K) p_m(y) + ((K-1)/K) q_m(y)), averaged over positions, in nats; q_m detached."""
    K = members
    log_p = F.log_softmax(logits.float(), dim=-1).gather(-1, y.unsqueeze(-1)).squeeze(-1)
    heard = target.detach().gather(-1, y.unsqueeze(-1)).squeeze(-1) * ((K - 1) / K)
    return -torch.logaddexp(log_p - math.log(K), torch.log(heard)).mean()


LOGIT = Logit()  # also how elders (teachers, a member's own snapshot) are heard
CHANNELS: dict[str, Channel] = {"logit": LOGIT, "complement": Complement()}


def channel_for(name: str) -> Channel | None:
    """The channel `social.channel` names; None for "none" (members alone)."""
    return CHANNELS.get(name)
