"""`multitudes eval`: load member checkpoints (one, or all of a run) and score them on a split."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from multitudes.evaluation import adaptive
from multitudes.runs import checkpoint
from multitudes.evaluation import yardsticks
from multitudes.data.corpora import resolve
from multitudes.data.splits import load_splits
from multitudes.errors import UserError
from multitudes.evaluation.bpb import bpb, byte_log2probs, consensus_bpb
from multitudes.config.genome import Genome
from multitudes.models import build
from multitudes.runs.device import resolve_device


# AdamW moves each weight by about lr a step: beyond 1 an adaptive coder is noise, and beyond
# float32's range (1e39) the optimizer itself fails
MAX_ADAPTIVE_LR = 1.0


def member_checkpoints(target: Path) -> list[Path]:
    """The member checkpoints behind a run directory (its results.json) or a checkpoint path.
    An arm read from a reference record was trained elsewhere: its members have no checkpoint
    in this run, and are not scored."""
    if (target / "manifest.json").is_file():
        return [target]
    results = target / "results.json"
    if results.is_file():
        arms = checkpoint.read_json(results, "run results").get("arms")
        if not isinstance(arms, dict):
            raise UserError(f"{results} names no arms: not a run's results.json")
        with checkpoint.damaged(results):
            paths = [target / m["checkpoint"] for arm in arms.values()
                     if not arm.get("from_record") for m in arm["members"]]
        return list(dict.fromkeys(paths))
    if not target.exists():
        raise UserError(f"{target} does not exist")
    raise UserError(f"{target} is neither a member checkpoint nor a finished run "
                    f"(no manifest.json, no results.json)")


def load_member(path: Path):
    tensors, state = checkpoint.load(path)
    if state.get("kind") != "member" or "model" not in tensors:
        raise UserError(f"checkpoint {path} is not a member checkpoint")
    with checkpoint.damaged(path):
        genome = Genome.from_dict(state["genome"], where=f"{path}: genome")
    model = build(genome)
    try:
        model.load_state_dict(tensors["model"])
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise UserError(f"checkpoint {path} does not fit its genome: {first}") from None
    return genome, model, state


def member_log2probs(model, genome, state, data, device, stride: int = 0,
                    progress: bool = False):
    """A loaded member's log2 probability of every byte of `data`, scored as its run scored it:
    with its state carried through the data when it trained with carried state, else in windows
    of its context moved by `stride` (0: half the context). Returns (log2probs, stride, carry)."""
    stride_used = stride or max(1, genome.context // 2)
    carry = bool(state.get("carry_state")) and getattr(model, "stateful", False)
    lp = byte_log2probs(model.to(device), data, genome.context, stride_used,
                        device=device, progress=progress, carry_state=carry)
    return lp, stride_used, carry


def split_data(name: str, split: str) -> np.ndarray:
    """A split of a corpus, or `all` of it (a user's own file scored whole)."""
    corpus = resolve(name)
    if split == "all":
        return np.memmap(corpus.path, dtype=np.uint8, mode="r")
    return load_splits(corpus)[split]


def evaluate_target(target: Path, corpus: str | None, split: str, stride: int,
                    n_loop: int | None, adaptive: bool = False, adaptive_lr: float | None = None,
                    dev_bytes: int = 32768) -> tuple[list[dict], list[dict]]:
    """Every member's bpb on the split (and, `adaptive`, as an adaptive compressor codes it, at
    `adaptive_lr` or at the rate its first `dev_bytes` of valid choose), and each arm's
    consensus where it has more than one member."""
    if adaptive_lr is not None and not 0 <= adaptive_lr <= MAX_ADAPTIVE_LR:
        raise UserError(f"--adaptive-lr {adaptive_lr}: must be a number from 0 to "
                        f"{MAX_ADAPTIVE_LR:g} (an AdamW step moves each weight by about lr)")
    if dev_bytes < 2:
        raise UserError(f"--dev-bytes {dev_bytes}: must be at least 2")
    rows, splits_cache, scores = [], {}, []
    device = resolve_device("auto")
    for path in member_checkpoints(target):
        genome, model, state = load_member(path)
        if n_loop is not None:
            if genome.family != "looped":
                raise UserError(f"--n-loop applies to the looped family, not {genome.family}")
            if n_loop < 1:
                raise UserError("--n-loop must be a positive integer")
            model.n_loop = n_loop
        name = corpus or state.get("corpus", "sample")
        if name not in splits_cache:
            splits_cache[name] = split_data(name, split)
        data = splits_cache[name]
        if len(data) < 2:
            raise UserError(f"the {split} split of {name} holds {len(data)} byte(s): nothing "
                            f"to score (it needs at least 2)")
        if stride < 0 or stride > genome.context:
            raise UserError(f"--stride {stride}: must be between 1 and the context "
                            f"{genome.context} (0: half the context)")
        lp, stride_used, carry = member_log2probs(model, genome, state, data, device, stride,
                                                  progress=True)
        rows.append({"id": state["id"], "arm": state.get("arm"), "family": genome.family,
                     "checkpoint": str(path),
                     "data": name, "split": split, "bpb": bpb(lp), "bytes_scored": len(lp),
                     "context": genome.context, "stride": None if carry else stride_used,
                     "carry_state": carry,
                     "n_loop": model.n_loop if genome.family == "looped" else None})
        scores.append({"static": lp})
        if adaptive:
            rows[-1].update(_adaptive_row(model, genome, data, name, stride, carry, adaptive_lr,
                                          dev_bytes, device, scores[-1]))
    return rows, _consensus_rows(rows, scores)


def _adaptive_row(model, genome, data, corpus: str, stride: int, carry: bool,
                  lr: float | None, dev_bytes: int, device, scores: dict) -> dict:
    tried = None
    if lr is None:
        dev = load_splits(resolve(corpus))["valid"][:dev_bytes]
        lr, tried = adaptive.choose_lr(model, dev, genome.context, carry, stride, device)
    scores["adaptive"] = adaptive.adaptive_log2probs(model, data, genome.context, lr, carry,
                                                     stride, device, progress=True)
    return {"adaptive_bpb": bpb(scores["adaptive"]), "adaptive_lr": lr,
            "adaptive_dev_bpb": None if tried is None else {str(k): v for k, v in tried.items()}}


def _consensus_rows(rows: list[dict], scores: list[dict]) -> list[dict]:
    """The uniform mixture of each arm's members (static, and adaptive where scored)."""
    out = []
    for arm in dict.fromkeys(r.get("arm") for r in rows):
        mine = [s for r, s in zip(rows, scores) if r.get("arm") == arm]
        if len(mine) > 1:
            row = {"arm": arm, "bpb": consensus_bpb([s["static"] for s in mine])}
            if "adaptive" in mine[0]:
                row["adaptive_bpb"] = consensus_bpb([s["adaptive"] for s in mine])
            out.append(row)
    return out


def yardsticks_for(target: Path, corpus: str | None, split: str, rows: list[dict]) -> dict:
    """The classical compressors on the data just scored: alone, and (for a run scored on its
    own corpus's test split) given the bytes the run read, from its results.json."""
    name = rows[0]["data"]
    data = bytes(split_data(name, split))
    out = {"alone": {k: v["alone"] for k, v in yardsticks.cached(b"", data).items()}}
    results = target / "results.json"
    if split == "test" and results.is_file():
        run = checkpoint.read_json(results, "run results")
        if run.get("corpus") == name and run.get("yardsticks"):
            out["given"] = {k: v["given"] for k, v in run["yardsticks"]["test"].items()}
            out["read_bytes"] = run["yardsticks"]["read_bytes"]
    return out
