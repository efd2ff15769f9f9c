"""Channels by which members learn from each other's thoughts, as pure functions.

Logit channel: member j's thought is p_j = softmax(z_j / tau_j) at every position. A listener m
trains towards the detached consensus of its peers, q_m = sum_{j != m} w_mj p_j, with the loss
alpha_m * tau_m^2 * CE(q_m, softmax(z_m / tau_m)) (the gradient of KL(q_m || p_m); tau^2 keeps
its scale independent of the temperature, as in Hinton et al. 2015).

Trust policies give the weights w (rows sum to one, zero on the diagonal):
  uniform      w_mj = 1/(K-1); computed as (S - p_m)/(K-1) with S = sum_j p_j: O(K), not O(K^2)
  fitness      w_mj proportional to exp(-dev_bpb_j / temperature) over the peers
  topk         uniform over the k fittest peers (lowest dev bpb)
  random_peer  one peer a step, drawn per listener from the population's generator

Language channel: speakers sample text from prompts cut from the real batch (see `speak`); the
texts wait in a bounded culture buffer that outlives its speakers.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def thoughts(logits: list[torch.Tensor], taus: list[float]) -> list[torch.Tensor]:
    """Each member's tempered distribution over the next byte, detached, in float32."""
    return [F.softmax(z.detach().float() / tau, dim=-1) for z, tau in zip(logits, taus)]


def trust_weights(policy: str, fitness: list[float | None], top_k: int, temperature: float,
                  generator: torch.Generator) -> torch.Tensor | None:
    """The K x K listener-by-speaker weights, or None for `uniform` (handled in O(K))."""
    K = len(fitness)
    if policy == "uniform":
        return None
    eye = torch.eye(K, dtype=torch.bool)
    if policy == "random_peer":
        # Draw an offset in 1..K-1 per listener: peer (m + offset) mod K is never m itself.
        offsets = torch.randint(1, K, (K,), generator=generator)
        w = torch.zeros(K, K)
        w[torch.arange(K), (torch.arange(K) + offsets) % K] = 1.0
        return w
    # Members not yet evaluated (all at the start, a newborn later) count as the least fit
    # of those that were: a newcomer is not trusted above proven peers.
    known = [f for f in fitness if f is not None]
    unknown = max(known) if known else 0.0
    bpb = torch.tensor([f if f is not None else unknown for f in fitness], dtype=torch.float64)
    if policy == "fitness":
        scores = (-bpb / temperature).expand(K, K).masked_fill(eye, float("-inf"))
        return torch.softmax(scores, dim=1).float()
    if policy == "topk":
        k = min(top_k, K - 1)
        w = torch.zeros(K, K)
        for m in range(K):
            peers = sorted((j for j in range(K) if j != m), key=lambda j: (bpb[j].item(), j))
            w[m, peers[:k]] = 1.0 / k
        return w
    raise ValueError(f"unknown trust policy {policy!r}")


def consensus(probs: list[torch.Tensor], weights: torch.Tensor | None,
              healthy: list[bool] | None = None,
              listeners: list[int] | None = None) -> list[torch.Tensor | None]:
    """q_m for every listener m: its peers' distributions mixed by `weights` (None: uniform).

    Members not `healthy` (non-finite logits) are left out: their weights go to zero, the rows
    are renormalised over the healthy peers, and a listener with no healthy peer hears nothing
    (None). Their distributions are never touched, so a NaN cannot leak (0 * NaN is NaN).
    `listeners`: compute q only for these members (a rank's own), None for the others.
    """
    K = len(probs)
    wanted = range(K) if listeners is None else listeners
    out: list[torch.Tensor | None] = [None] * K
    if healthy is None or all(healthy):
        if weights is None:
            total = torch.stack(probs).sum(0)
            for m in wanted:
                out[m] = (total - probs[m]) / (K - 1)
            return out
        stacked = torch.stack(probs)  # (K, B, T, V)
        for m in wanted:
            out[m] = torch.einsum("j,j...->...", weights[m].to(stacked), stacked)
        return out
    if weights is None:
        weights = (1 - torch.eye(K)) / (K - 1)
    alive = [j for j in range(K) if healthy[j]]
    stacked = torch.stack([probs[j] for j in alive])
    for m in wanted:
        w = weights[m, alive].double()
        total = w.sum()
        out[m] = (None if total <= 0 else
                  torch.einsum("j,j...->...", (w / total).to(stacked), stacked))
    return out


def data_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the real next bytes (B, T) under a member's logits (B, T, 256)."""
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1))


@dataclass
class MemberLoss:
    """A member's objective at one step, by part: each a scalar tensor, None when not heard."""
    data: torch.Tensor  # the real bytes
    listen: torch.Tensor | None = None  # its peers' consensus (logit channel)
    language: torch.Tensor | None = None  # its peers' texts (language channel)

    def total(self, alpha: float, beta: float) -> torch.Tensor:
        """data + alpha * listen + beta * language, in that order."""
        loss = self.data
        if self.listen is not None:
            loss = loss + alpha * self.listen
        if self.language is not None:
            loss = loss + beta * self.language
        return loss


def listen_loss(logits: torch.Tensor, target: torch.Tensor, tau: float) -> torch.Tensor:
    """tau^2 * CE(target, softmax(logits / tau)), averaged over positions."""
    log_q = F.log_softmax(logits.float() / tau, dim=-1)
    return tau * tau * -(target * log_q).sum(-1).mean()


@dataclass
class CultureText:
    speaker: str
    tokens: torch.Tensor  # (prompt_length + L,) int64
    prompt_length: int


class CultureBuffer:
    """The texts members have spoken, oldest out; it outlives its speakers."""

    def __init__(self, capacity: int):
        self.texts: deque[CultureText] = deque(maxlen=capacity)

    def add(self, text: CultureText) -> None:
        self.texts.append(text)

    def sample(self, listener: str, n: int, generator: torch.Generator) -> list[CultureText]:
        """Up to n texts spoken by others than `listener`, drawn with replacement."""
        pool = [t for t in self.texts if t.speaker != listener]
        if not pool:
            return []
        picks = torch.randint(len(pool), (n,), generator=generator).tolist()
        return [pool[i] for i in picks]

    def state(self) -> dict:
        return {"capacity": self.texts.maxlen,
                "texts": [{"speaker": t.speaker, "prompt_length": t.prompt_length,
                           "tokens": t.tokens.tolist()} for t in self.texts]}

    def load_state(self, state: dict) -> None:
        self.texts = deque((CultureText(t["speaker"], torch.tensor(t["tokens"], dtype=torch.long),
                                        t["prompt_length"]) for t in state["texts"]),
                           maxlen=state["capacity"])


@torch.no_grad()
def speak(model, prompts: torch.Tensor, length: int, temperature: float,
          generator: torch.Generator) -> torch.Tensor | None:
    """Sample `length` bytes after each prompt (B, P) by incremental decoding: (B, L).

    Returns None when the speaker's distribution is not finite (it is sick; see population).
    """
    was_training = model.training
    model.eval()
    logits, state = model.decode(prompts, None)
    out = []
    for _ in range(length):
        if not torch.isfinite(logits[:, -1]).all():  # a sick speaker says nothing
            model.train(was_training)
            return None
        probs = F.softmax(logits[:, -1].float() / temperature, dim=-1)
        nxt = torch.multinomial(probs.cpu(), 1, generator=generator).to(prompts.device)  # (B, 1)
        out.append(nxt)
        logits, state = model.decode(nxt, state)
    model.train(was_training)
    return torch.cat(out, dim=1)


def language_loss(model, texts: list[CultureText], device) -> torch.Tensor:
    """CE of the listener on its peers' generated bytes (the prompt is context, not target)."""
    tokens = torch.stack([t.tokens for t in texts]).to(device)  # (n, P + L)
    logits = model(tokens[:, :-1])
    start = texts[0].prompt_length - 1  # first position whose target is a generated byte
    return F.cross_entropy(logits[:, start:].reshape(-1, logits.shape[-1]).float(),
                           tokens[:, start + 1:].reshape(-1))
