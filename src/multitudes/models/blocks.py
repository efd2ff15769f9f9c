"""The pre-LN transformer block shared by the `gpt` and `looped` families.

Attention is causal `scaled_dot_product_attention`. For incremental decoding a block takes and
returns a KV cache: the keys and values of every position seen so far.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

KVCache = tuple[torch.Tensor, torch.Tensor]  # keys, values: (B, n_head, T_seen, d_head)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kwargs) -> torch.Tensor:
    """`scaled_dot_product_attention`, kept in fp32 under the CPU's bf16 autocast: there the
    CPU's bf16 attention backward took 3-4x the fp32 one at these short contexts and ate most
    of what bf16 matmuls save (BENCHMARKS.md, "The ceiling"). In fp32, and on CUDA, it is the
    plain call."""
    if q.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        with torch.autocast("cpu", enabled=False):
            return F.scaled_dot_product_attention(q.float(), k.float(), v.float(), **kwargs)
    return F.scaled_dot_product_attention(q, k, v, **kwargs)


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, n_head: int, dropout: float):
        super().__init__()
        self.n_head, self.dropout = n_head, dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if cache is not None:  # decoding: attend to the cached past as well
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
        # With a cache, new queries sit at the end of k/v; a causal mask aligned at the top-left
        # would be wrong, so build the bottom-right aligned mask when T > 1.
        if cache is None or T == 1:
            mask, causal = None, cache is None
        else:
            past = k.shape[2] - T
            mask = torch.ones(T, k.shape[2], dtype=torch.bool, device=x.device).tril(past)
            causal = False
        y = attend(q, k, v, attn_mask=mask, is_causal=causal,
                   dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C)
        return self.proj(y), (k, v)


class Block(nn.Module):
    def __init__(self, d_model: int, n_head: int, d_ff: int, dropout: float):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_head, dropout)
        self.ln_2 = nn.LayerNorm(d_model)
        self.fc = nn.Linear(d_model, d_ff)
        self.proj = nn.Linear(d_ff, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None):
        a, cache = self.attn(self.ln_1(x), cache)
        x = x + self.drop(a)
        x = x + self.drop(self.proj(F.gelu(self.fc(self.ln_2(x)))))
        return x, cache


class TransformerLM(nn.Module):
    """Embeddings, a stack of blocks applied `n_loop` times with shared weights, and a head.

    With n_loop=1 this is a GPT; with n_loop>1 it is a looped (recurrent-depth) transformer
    whose depth can be raised at evaluation (`self.n_loop = ...`) for more inference compute.
    """

    def __init__(self, genome):
        super().__init__()
        g = genome
        self.context, self.n_loop = g.context, g.n_loop
        self.wte = nn.Embedding(256, g.d_model)
        self.wpe = nn.Embedding(g.context, g.d_model)
        self.drop = nn.Dropout(g.dropout)
        self.blocks = nn.ModuleList(Block(g.d_model, g.n_head, g.d_ff, g.dropout)
                                    for _ in range(g.n_layer))
        self.ln_f = nn.LayerNorm(g.d_model)
        self.head = nn.Linear(g.d_model, 256, bias=False)
        # PyTorch's default initialisation (embeddings N(0, 1), Linear uniform in 1/sqrt(fan_in)),
        # as a plain nn.TransformerEncoder loop would have it. GPT-2's N(0, 0.02) with
        # depth-scaled projections trained 0.18 bpb worse per byte at these small widths
        # (benchmarks/parity.py, docs/results.md).

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.decode(idx, None)[0]

    def decode(self, idx: torch.Tensor, state):
        """Logits for `idx` (B, T) continuing `state` (None, or what the last call returned)."""
        caches, pos = state if state is not None else (None, 0)
        T = idx.shape[1]
        if pos + T > self.context:
            raise ValueError(f"decoding past the context of {self.context} bytes")
        x = self.wte(idx) + self.wpe(torch.arange(pos, pos + T, device=idx.device))
        x = self.drop(x)  # (B, T, d_model)
        new_caches = []
        for loop in range(self.n_loop):
            for i, block in enumerate(self.blocks):
                cache = caches[loop * len(self.blocks) + i] if caches else None
                x, cache = block(x, cache)
                new_caches.append(cache)
        return self.head(self.ln_f(x)), (new_caches, pos + T)
