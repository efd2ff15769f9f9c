"""The inference-time axis of a study cell: what more compute at evaluation buys, on test.

- consensus size: each arm's members ordered by their valid bpb (beyond the dev slice; test
  chooses nothing), and the test bpb of the uniform mixture of the best 1, 2, 4, ... of them;
- loops: every `looped` member of each arm scored on test with 1 to 2 x its training loops.

Written to the cell's inference.json once, so a resumed study does not pay for it twice.
"""

from __future__ import annotations

from pathlib import Path

from multitudes.runs.checkpoint import read_json, write_json_atomic
from multitudes.data.corpora import resolve
from multitudes.data.splits import load_splits
from multitudes.runs.device import resolve_device
from multitudes.evaluation.target import load_member, member_log2probs
from multitudes.evaluation.bpb import bpb, consensus_bpb


def _log2probs(model, genome, state, data, device, n_loop: int | None = None):
    if n_loop is not None:
        model.n_loop = n_loop
    return member_log2probs(model, genome, state, data, device)[0]


def sizes_up_to(K: int) -> list[int]:
    """1, 2, 4, ... and K itself."""
    out, k = [], 1
    while k < K:
        out.append(k)
        k *= 2
    return out + [K]


def measure(cell_dir: Path, results: dict) -> dict:
    device = resolve_device("auto")
    test = load_splits(resolve(results["corpus"]))["test"]
    out = {}
    for arm, res in results["arms"].items():
        ranked = sorted(res["members"], key=lambda m: m["valid_bpb"])
        logps, loops = [], []
        for m in ranked:
            genome, model, state = load_member(cell_dir / m["checkpoint"])
            logps.append(_log2probs(model, genome, state, test, device))
            if genome.family == "looped":
                trained = genome.n_loop
                curve = [{"n_loop": n, "test_bpb": bpb(_log2probs(model, genome, state, test,
                                                                  device, n))}
                         for n in range(1, 2 * trained + 1)]
                loops.append({"id": m["id"], "trained_loops": trained, "curve": curve})
        out[arm] = {"order": [m["id"] for m in ranked],
                    "consensus": [{"size": k, "test_bpb": consensus_bpb(logps[:k])}
                                  for k in sizes_up_to(len(ranked))],
                    "loops": loops}
    return out


def ensure(cell_dir: Path, results: dict, progress: bool = False) -> dict:
    path = cell_dir / "inference.json"
    if path.is_file():
        return read_json(path, "a cell's inference axis")
    out = measure(cell_dir, results)
    write_json_atomic(path, out)
    return out
