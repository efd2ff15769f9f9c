"""Learning-curve parity: the project's isolated member against a plain PyTorch loop.

For each family of a preset, one model is trained alone twice on the same real bytes with the same
hyperparameters: once by `multitudes train` (one member, channels closed) and once by the plain
loop below, which shares nothing with the package but the data file: its own models (PyTorch's
stock modules and default initialisation), its own lanes, schedule and evaluation. Both are
scored on the dev slice of valid. A project member that learns worse than the plain loop has a
defect (as the N(0, 0.1) RNN embedding was); the gap is printed beside the seed-to-seed spread.

    python benchmarks/parity.py [--preset quick] [--seeds 2] [--real-bytes N] [--out FILE.json]
    python benchmarks/parity.py --family gpt --seeds 1 --real-bytes 262144 --project-models
    python benchmarks/parity.py --real-bytes 262144 --set "train.precision='bf16'"  # ours in bf16
    python benchmarks/parity.py --family ssm --set "members.0.family='ssm'"  # gpt's shape
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from common import alone_dev_bpb, load_or_refuse, refuse, refuse_missing_families
from multitudes.data.corpora import resolve
from multitudes.data.splits import load_splits
from multitudes.models import build


# -- the plain side: stock PyTorch modules, default initialisation --------------------------
class PlainRNN(nn.Module):
    def __init__(self, cell, d: int, layers: int):
        super().__init__()
        self.emb, self.head = nn.Embedding(256, d), nn.Linear(d, 256)
        self.rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[cell](d, d, layers, batch_first=True)

    def forward(self, x, state=None):
        h, state = self.rnn(self.emb(x), state)
        return self.head(h), state


class PlainTransformer(nn.Module):
    """nn.TransformerEncoderLayer (pre-LN, GELU) with a causal mask; `loops` reuses the stack."""

    def __init__(self, d: int, layers: int, heads: int, d_ff: int, context: int, loops: int):
        super().__init__()
        self.emb, self.pos = nn.Embedding(256, d), nn.Embedding(context, d)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(d, heads, d_ff, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=True) for _ in range(layers))
        self.norm, self.head, self.loops = nn.LayerNorm(d), nn.Linear(d, 256, bias=False), loops

    def forward(self, x, state=None):
        T = x.shape[1]
        h = self.emb(x) + self.pos(torch.arange(T, device=x.device))
        mask = nn.Transformer.generate_square_subsequent_mask(T, device=x.device)
        for _ in range(self.loops):
            for layer in self.layers:
                h = layer(h, src_mask=mask, is_causal=True)
        return self.head(self.norm(h)), None


class PlainSSM(nn.Module):
    """The `ssm` as its recurrence reads, one byte at a time in a Python loop (no chunked scan),
    from stock modules: h = a h + (1 - a) v with a = sigmoid(d), out W_o (h silu(g)), pre-LN
    residual layers with a GELU MLP; the decay logits' bias spread as the project's (a design
    choice, not a shared line)."""

    def __init__(self, d: int, layers: int, d_ff: int):
        super().__init__()
        self.emb = nn.Embedding(256, d)
        self.layers = nn.ModuleList(nn.ModuleDict({
            "ln_1": nn.LayerNorm(d), "inp": nn.Linear(d, 3 * d), "out": nn.Linear(d, d),
            "ln_2": nn.LayerNorm(d), "fc": nn.Linear(d, d_ff), "proj": nn.Linear(d_ff, d)})
            for _ in range(layers))
        for layer in self.layers:
            with torch.no_grad():
                layer["inp"].bias[d:2 * d] = torch.linspace(-1.0, 5.0, d)
        self.norm, self.head = nn.LayerNorm(d), nn.Linear(d, 256, bias=False)

    def forward(self, x, state=None):
        h, states = self.emb(x), []
        for i, layer in enumerate(self.layers):
            v, d, g = layer["inp"](layer["ln_1"](h)).chunk(3, dim=-1)
            a = torch.sigmoid(d)
            s = state[i] if state is not None else torch.zeros_like(v[:, 0])
            ys = []
            for t in range(x.shape[1]):
                s = a[:, t] * s + (1 - a[:, t]) * v[:, t]
                ys.append(s)
            h = h + layer["out"](torch.stack(ys, 1) * F.silu(g))
            h = h + layer["proj"](F.gelu(layer["fc"](layer["ln_2"](h))))
            states.append(s)
        return self.head(self.norm(h)), torch.stack(states)


class ProjectModel(nn.Module):
    """The project's own model (`models.build`) behind the plain loop's interface: with
    `--project-models` a gap that remains is in the model, one that closes is in the loop."""

    def __init__(self, g):
        super().__init__()
        self.model = build(g)

    def forward(self, x, state=None):
        if getattr(self.model, "stateful", False):
            return self.model.decode(x, state)
        return self.model(x), None


def plain_model(g, project_models: bool = False):
    if project_models:
        return ProjectModel(g)
    if g.family in ("lstm", "gru"):
        return PlainRNN(g.family, g.d_model, g.n_layer)
    if g.family == "ssm":
        return PlainSSM(g.d_model, g.n_layer, g.d_ff)
    return PlainTransformer(g.d_model, g.n_layer, g.n_head, g.d_ff, g.context, g.n_loop)


def plain_run(g, train_cfg, train: np.ndarray, dev: np.ndarray, real_bytes: int,
              project_models: bool = False) -> float:
    """Train one model alone with a plain loop; its dev bpb."""
    torch.manual_seed(g.seed)
    model = plain_model(g, project_models)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": g.weight_decay},
                             {"params": rest, "weight_decay": 0.0}], lr=g.lr, betas=(0.9, 0.99))
    B, T = train_cfg.batch_size, g.context
    contiguous = train_cfg.sampling == "contiguous"
    lane = (len(train) - 1) // B
    steps = math.ceil(real_bytes / (B * T))
    cool = max(1, round(train_cfg.cooldown * steps))
    rng = np.random.default_rng(train_cfg.seed)
    state = None
    for step in range(steps):
        lr = g.lr * min(1.0, (step + 1) / g.warmup) if g.warmup else g.lr
        if train_cfg.schedule == "wsd" and step >= steps - cool:
            lr *= 1 - math.sqrt((step - (steps - cool)) / cool)
        for group in opt.param_groups:
            group["lr"] = lr
        if contiguous:
            starts = np.arange(B) * lane + step * T
        else:
            starts = rng.integers(0, len(train) - T - 1, B)
            state = None
        batch = torch.from_numpy(np.stack([train[s:s + T + 1] for s in starts]).astype(np.int64))
        logits, state = model(batch[:, :-1], state)
        if state is not None:
            state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
        loss = F.cross_entropy(logits.reshape(-1, 256), batch[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.grad_clip)
        opt.step()
    return plain_dev_bpb(model, dev, T, stateful=contiguous and g.family in ("lstm", "gru", "ssm"))


@torch.no_grad()
def plain_dev_bpb(model, dev: np.ndarray, T: int, stateful: bool) -> float:
    """RNN with state: one lane through the slice. Transformer: windows of T, stride T/2."""
    model.eval()
    data = torch.from_numpy(dev.astype(np.int64))
    total, count = 0.0, 0
    if stateful:
        logits, _ = model(data[None, :-1])
        return F.cross_entropy(logits[0], data[1:]).item() / math.log(2)
    start, scored = 0, 0  # every target once: first window whole, then the last T/2 of each
    while scored < len(dev) - 1:
        end = min(start + T, len(dev) - 1)
        logits, _ = model(data[None, start:end])
        first = scored - start
        nll = F.cross_entropy(logits[0, first:], data[start + 1 + first:end + 1], reduction="sum")
        total, count, scored = total + nll.item(), count + end - start - first, end
        start = end - T // 2 if end - T // 2 > start else end
    return total / count / math.log(2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--real-bytes", type=int, default=0, help="0: the preset's")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--family", action="append", help="only these families")
    parser.add_argument("--project-models", action="store_true",
                        help="the plain loop trains the project's models (locates a gap)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a preset override, e.g. train.precision='bf16' "
                             "(the plain loop stays fp32)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = load_or_refuse(args.preset, args.set)
    refuse_missing_families(cfg, args.preset, args.family or [])
    if args.seeds < 1 or args.real_bytes < 0:
        refuse("--seeds must be at least 1 and --real-bytes at least 0")
    N = args.real_bytes or cfg.train.real_bytes
    splits = load_splits(resolve(cfg.data.corpus))
    dev = np.asarray(splits["valid"][: cfg.train.dev_bytes])
    print(f"preset {args.preset}: {N:,} real bytes, batch {cfg.train.batch_size} x "
          f"{cfg.context}, {cfg.train.sampling}, {cfg.train.schedule}; dev slice "
          f"{len(dev):,} bytes; torch {torch.__version__}, 1 thread"
          + (f"; ours with {', '.join(args.set)}" if args.set else ""), flush=True)
    print(f"{'family':>7} {'seed':>5} {'plain dev':>10} {'ours dev':>9} {'ours-plain':>11}",
          flush=True)
    rows = []
    for member in cfg.members:
        if args.family and member.family not in args.family:
            continue
        for k in range(args.seeds):
            g = replace(member, seed=member.seed + 1000 * k)
            plain = plain_run(g, cfg.train, np.asarray(splits["train"]), dev, N,
                              args.project_models)
            ours = alone_dev_bpb(cfg, g, N)
            rows.append({"family": g.family, "seed": g.seed, "plain": plain, "ours": ours})
            print(f"{g.family:>7} {g.seed:>5} {plain:>10.4f} {ours:>9.4f} {ours - plain:>+11.4f}",
                  flush=True)
    print("family  mean(ours-plain)  spread between seeds (plain, max-min)")
    for family in dict.fromkeys(r["family"] for r in rows):
        mine = [r for r in rows if r["family"] == family]
        gap = np.mean([r["ours"] - r["plain"] for r in mine])
        spread = max(r["plain"] for r in mine) - min(r["plain"] for r in mine)
        print(f"{family:>7} {gap:>+17.4f} {spread:>18.4f}")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    sys.exit(main())
