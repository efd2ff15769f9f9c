"""`ssm`: a selective state-space model: a gated diagonal linear recurrence in each layer.

A pre-LN residual stack like the transformer's, with attention replaced by a recurrence (the
Hawk / Griffin layout; the recurrence in the minGRU / RG-LRU form of Mamba's selective scan):
each layer projects its input x_t to a value v_t, a decay logit d_t and an output gate g_t, and
keeps one state per channel,

    h_t = a_t * h_{t-1} + (1 - a_t) * v_t,    a_t = sigmoid(d_t) in (0, 1),
    y_t = W_o (h_t * silu(g_t)),

so how long a channel remembers depends on the byte it reads (selective), while the recurrence
stays linear in h. That linearity is what makes it fast without compiled kernels: a window is
computed in chunks of CHUNK bytes, each chunk in closed form from its cumulative log decays
(`linear_scan`), the chunks in sequence; the same code on the CPU and on CUDA, in fp32 under any
autocast (the decays' products are where half precision would lose the memory).

Like the RNNs it carries its state between consecutive training windows of a lane (`stateful`:
truncated BPTT) and between decoding calls (O(1) per byte), so it has no positional embedding and
no context limit when decoding. The matmul weights per layer are a transformer block's (3d x d
in, d x d out, the MLP), so an `ssm` and a `gpt` genome of one shape cost the same FLOPs but the
scan's. Dropout draws from the member's own generator, as the RNNs' (models/rnn.py).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from multitudes.config.genome import SCAN_CHUNK as CHUNK  # bytes per closed-form chunk
from multitudes.models.rnn import dropout


def linear_scan(log_a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor, chunk: int = CHUNK
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """h_t = exp(log_a_t) * h_{t-1} + b_t for t = 1..T from h0; log_a, b (B, T, D), h0 (B, D).
    Returns every h_t (B, T, D) and the last (B, D). `chunk`: bytes per closed-form chunk (the
    model's CHUNK; benchmarks/scan.py times others).

    In a chunk, h_t = A_t h_0 + sum_{s <= t} (A_t / A_s) b_s with log A_t the cumulative sum of
    log a: only differences log A_t - log A_s <= 0 are exponentiated, so nothing underflows
    or overflows however long the memory (a plain product of decays would)."""
    outs = []
    # split, unsqueeze and select rather than indexing: the same ops, and the ones a fake CUDA
    # tensor takes on a CPU build (tests/test_gpu_path.py)
    for la, bc in zip(log_a.split(chunk, 1), b.split(chunk, 1)):
        cum = la.cumsum(1)  # (B, c, D)
        c = cum.shape[1]
        # (B, t, s, D): exp(log A_t - log A_s) where s <= t, else 0 (masked before exp: the
        # entries above the diagonal are positive and would overflow)
        future = torch.ones(c, c, dtype=torch.bool, device=b.device).triu(1)
        decay = (cum.unsqueeze(2) - cum.unsqueeze(1)).masked_fill(
            future.unsqueeze(0).unsqueeze(-1), float("-inf")).exp()
        h = (decay * bc.unsqueeze(1)).sum(2) + cum.exp() * h0.unsqueeze(1)
        h0 = h.select(1, -1)
        outs.append(h)
    return torch.cat(outs, 1), h0


class Recurrence(nn.Module):
    """The selective recurrence of one layer: the time-mixing half of a block."""

    def __init__(self, d_model: int):
        super().__init__()
        self.inp = nn.Linear(d_model, 3 * d_model)  # value, decay logit, output gate
        self.proj = nn.Linear(d_model, d_model)
        with torch.no_grad():  # decays spread from fast (a ~ 0.27) to slow (~ 0.99) channels,
            # as Mamba spreads its step sizes: some channels hold a byte, some a paragraph
            self.inp.bias[d_model:2 * d_model] = torch.linspace(-1.0, 5.0, d_model)

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None):
        v, d, g = self.inp(x).chunk(3, dim=-1)
        d = d.float()
        if h0 is None:
            h0 = d.new_zeros(d.shape[0], d.shape[2])
        # 1 - a = sigmoid(-d): the value enters with the weight the state lets go of
        h, last = linear_scan(F.logsigmoid(d), torch.sigmoid(-d) * v.float(), h0.float())
        return self.proj(h * F.silu(g.float())), last


class SSMBlock(nn.Module):
    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d_model)
        self.mix = Recurrence(d_model)
        self.ln_2 = nn.LayerNorm(d_model)
        self.fc = nn.Linear(d_model, d_ff)
        self.proj = nn.Linear(d_ff, d_model)

    def forward(self, x, h0, p: float, training: bool, generator):
        y, h = self.mix(self.ln_1(x), h0)
        x = x + dropout(y, p, training, generator)
        x = x + dropout(self.proj(F.gelu(self.fc(self.ln_2(x)))), p, training, generator)
        return x, h


class SelectiveSSM(nn.Module):
    stateful = True
    takes_generator = True  # Member.draws hands its generator here, no global state swapped

    def __init__(self, genome):
        super().__init__()
        g = genome
        self.context, self.p = g.context, g.dropout
        self.wte = nn.Embedding(256, g.d_model)
        self.blocks = nn.ModuleList(SSMBlock(g.d_model, g.d_ff) for _ in range(g.n_layer))
        self.ln_f = nn.LayerNorm(g.d_model)
        self.head = nn.Linear(g.d_model, 256, bias=False)
        self.generator: torch.Generator | None = None

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.decode(idx, None)[0]

    def decode(self, idx: torch.Tensor, state):
        """Logits for `idx` (B, T) continuing `state` (n_layer, B, d_model), None at the start."""
        x = dropout(self.wte(idx), self.p, self.training, self.generator)
        states = []
        for block, h0 in zip(self.blocks, [None] * len(self.blocks) if state is None
                             else state.unbind(0)):
            x, h = block(x, h0, self.p, self.training, self.generator)
            states.append(h)
        return self.head(self.ln_f(x)), torch.stack(states)


def build(genome) -> SelectiveSSM:
    return SelectiveSSM(genome)
