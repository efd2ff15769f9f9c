"""`multitudes compress` / `decompress`: a file coded with a population's predictions, and back.

Offline, a trained run's member (or the consensus of an arm) codes the file; online
(online.py), a population of a preset codes each batch with what it knows, then trains on it.

The archive (`.mtz`, its bytes in mtz.py) is a proof of a bits-per-byte figure: `MTZ1`, a 4-byte
header length, a zlib-compressed JSON header, then the range coder's 32-bit words. The header
records what decoding needs and what must match for the decoder's probabilities to be the
encoder's bit for bit: the member checkpoints (by path and sha256) or the online config, the lanes, the torch
build, the device, the thread count and the GPU's model (on CUDA, coded with deterministic
kernels); and the original's length and sha256, checked after decoding. A mismatch is refused
up front in one line rather than discovered as garbage.
"""

from __future__ import annotations

import hashlib
import lzma
import os
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from multitudes.runs import checkpoint
from multitudes.coding import range_coder
from multitudes.coding import mtz, online
from multitudes.config.schema import RunConfig
from multitudes.config.files import from_dict
from multitudes.runs.device import resolve_device
from multitudes.errors import UserError
from multitudes.evaluation.target import load_member
from multitudes.runs.results import read as read_results

def members_of(run: Path, arm: str | None, member: str | None) -> list[Path]:
    """The member checkpoints that code: one member, or every member of an arm (the consensus).
    `run` is a finished run directory or one member checkpoint."""
    run = Path(run)
    if (run / "manifest.json").is_file():
        return [run]
    results = read_results(run / "results.json")
    arms = results.get("arms") or {}
    kinds = {name: a.get("arm") if isinstance(a, dict) else None for name, a in arms.items()}
    listening = [name for name, k in kinds.items() if isinstance(k, dict)  # by default the
                 and k.get("kind") == "measured" and k.get("listens")]  # social arm's members
    arm = arm or next(iter(listening or arms), None)
    if arm not in arms:
        raise UserError(f"--arm {arm}: {run} has the arms {', '.join(arms) or 'none'}")
    if arms[arm].get("from_record"):
        raise UserError(f"--arm {arm}: {run} read that arm from the reference record "
                        f"{arms[arm]['from_record']}; its members are in the run that trained it")
    entries = arms[arm]["members"]
    if member is not None:
        entries = [m for m in entries if m["id"] == member]
        if not entries:
            raise UserError(f"--member {member}: the {arm} arm of {run} has "
                            f"{', '.join(m['id'] for m in arms[arm]['members'])}")
    return [run / m["checkpoint"] for m in entries]


def inputs_of(run: Path, arm: str | None, member: str | None) -> list[Path]:
    """What offline coding with `run` reads, which no output may replace: the run's results.json
    and config.json, and the member checkpoint folders that code."""
    run = Path(run)
    return [run / "results.json", run / "config.json", *members_of(run, arm, member)]


def archive_inputs(src: Path, run: Path | None) -> list[Path]:
    """What decoding `src` reads besides it: the member checkpoint folders its header names
    (none for an online archive)."""
    header, _ = mtz.read(src)
    if header["mode"] == "online":
        return []
    base = Path(run) if run is not None else Path(header["run"])
    return [base / m["checkpoint"] for m in header["members"]]


def _environment() -> dict:
    """What the decoder's arithmetic must share with the encoder's (on a GPU, its model too:
    another chip may run other kernels)."""
    device = resolve_device("auto")
    return {"torch": torch.__version__, "device": device.type,
            "threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}


@contextmanager
def _same_kernels(device_type: str):
    """On CUDA, the deterministic kernels, for the coding within: several of CUDA's defaults
    (atomic adds in a backward pass, cuBLAS's split reductions) differ from run to run, and the
    decoder must compute the encoder's probabilities bit for bit, after the same training when
    online. cuBLAS reads its workspace setting when it starts, so it is set before the first
    matrix product of the process (a `compress` or `decompress` is one). The CPU's kernels are
    deterministic already: nothing changes there."""
    if device_type != "cuda":
        yield
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def steppers(paths: list[Path], device) -> list[range_coder.ModelStepper]:
    """The member checkpoints at `paths`, each ready to step the lanes (stride: half the
    context, as the evaluation's default)."""
    out = []
    for path in paths:
        _, model, _ = load_member(path)
        out.append(range_coder.ModelStepper(model.to(device), max(1, model.context // 2), device))
    return out


def _digest(path: Path) -> str:
    manifest = checkpoint.read_json(path / "manifest.json", "checkpoint manifest")
    return manifest["files"]["model.safetensors"]


def compress_file(src: Path, out: Path, run: Path, arm: str | None = None,
                  member: str | None = None, lanes: int = 64, progress: bool = True) -> dict:
    data = mtz.read_file(src)
    if lanes < 1:
        raise UserError(f"--lanes {lanes}: must be at least 1")
    paths = members_of(run, arm, member)
    env = _environment()
    with _same_kernels(env["device"]):
        words, bits = range_coder.encode(data, steppers(paths, torch.device(env["device"])), lanes,
                                    progress)
    run = Path(run).resolve()
    header = {"format": mtz.FORMAT, "mode": "offline", "run": str(run),
              "members": [{"checkpoint": os.path.relpath(p.resolve(), run),
                           "sha256": _digest(p)} for p in paths],
              "lanes": lanes, "length": len(data),
              "sha256": hashlib.sha256(data).hexdigest(), **env}
    return _summary(data, mtz.write(out, header, words), words, bits)


def online_config(cfg: RunConfig, members: int | None = None, isolated: bool = False,
                  keep: list[int] | None = None) -> RunConfig:
    """The config an online run codes with: generations off (a file is read once), the first
    `members` members or those at the indices `keep`, channels closed when `isolated`."""
    chosen = cfg.members
    if keep is not None:
        if any(not 0 <= i < len(cfg.members) for i in keep) or not keep:
            raise UserError(f"--keep {','.join(map(str, keep))}: the config's members are "
                            f"0 to {len(cfg.members) - 1}")
        chosen = [cfg.members[i] for i in keep]
    if members is not None:
        if not 1 <= members <= len(chosen):
            raise UserError(f"--members {members}: the config has {len(chosen)} member(s)")
        chosen = chosen[:members]
    social = replace(cfg.social, channel="none", language_every=0) if isolated else cfg.social
    return replace(cfg, members=list(chosen), social=social,
                   evolution=replace(cfg.evolution, every=0))


def compress_online(src: Path, out: Path, cfg: RunConfig, progress: bool = True,
                    mixture: str = "bayes") -> dict:
    data = mtz.read_file(src)
    if mixture not in online.MIXTURES:
        raise UserError(f"--mixture {mixture}: one of {', '.join(online.MIXTURES)}")
    env = _environment()
    with _same_kernels(env["device"]):
        words, coder = online.encode(data, cfg, progress, mixture)
    header = {"format": mtz.FORMAT, "mode": "online", "config": cfg.to_dict(), "mixture": mixture,
              "length": len(data), "sha256": hashlib.sha256(data).hexdigest(), **env}
    return {**_summary(data, mtz.write(out, header, words), words, coder.bits),
            "seconds": coder.seconds}


def decompress_file(src: Path, out: Path, run: Path | None = None, progress: bool = True
                    ) -> dict:
    header, words = mtz.read(src)
    env = _environment()
    for key in ("torch", "device", "threads", "gpu"):
        if header.get(key) != env[key]:
            raise UserError(f"{src} was coded with {key} {header.get(key)}, this process has "
                            f"{env[key]}: decoding elsewhere would give garbage"
                            + (f" (set OMP_NUM_THREADS={header['threads']})"
                               if key == "threads" else ""))
    if header["mode"] == "online":
        return _decompress_online(src, out, header, words, progress)
    base = Path(run) if run is not None else Path(header["run"])
    paths = [base / m["checkpoint"] for m in header["members"]]
    for path, m in zip(paths, header["members"]):
        if not (path / "manifest.json").is_file():
            raise UserError(f"{src} needs the member checkpoint {path}, which is not there "
                            f"(name the run with --run DIR)")
        if _digest(path) != m["sha256"]:
            raise UserError(f"{src} was coded with other weights than {path} holds")
    n = header["length"]
    with _decoding(src, n), _same_kernels(env["device"]):
        data = range_coder.decode(words, n, steppers(paths, torch.device(env["device"])),
                             header["lanes"], progress)
    if hashlib.sha256(data).hexdigest() != header["sha256"]:
        raise UserError(f"{src} is damaged: the decoded bytes fail their sha256")
    mtz.atomic_write(Path(out), data)
    return {"bytes": n}


def _decompress_online(src: Path, out: Path, header: dict, words: np.ndarray,
                       progress: bool) -> dict:
    try:
        cfg = from_dict(header["config"])
    except (UserError, KeyError, TypeError) as e:
        raise UserError(f"{src} is damaged: its config cannot be read ({e})") from None
    mixture = header.get("mixture", "bayes")
    if mixture not in online.MIXTURES:
        raise UserError(f"{src} is damaged: unknown mixture {mixture!r}")
    with _decoding(src, header["length"]), _same_kernels(header["device"]):
        data = online.decode(words, header["length"], cfg, progress, mixture)
    if hashlib.sha256(data).hexdigest() != header["sha256"]:
        raise UserError(f"{src} is damaged: the decoded bytes fail their sha256")
    mtz.atomic_write(Path(out), data)
    return {"bytes": len(data)}


@contextmanager
def _decoding(src: Path, n: int):
    """Code that does not decode (damage the code's digest did not catch: an archive from
    before it was recorded), or a length no memory holds, is one line."""
    try:
        yield
    except MemoryError:
        raise UserError(f"{src}: its header's length of {n:,} bytes does not fit in this "
                        f"machine's memory (a damaged header, or decode it on a larger one)"
                        ) from None
    except (ValueError, RuntimeError, AssertionError) as e:
        if "can't allocate memory" in str(e) or "out of memory" in str(e).lower():
            raise UserError(f"{src}: its header's length of {n:,} bytes does not fit in this "
                            f"machine's memory") from None
        raise UserError(f"{src} is damaged: its code does not decode "
                        f"({str(e).strip()[:120]})") from None


def _summary(data: bytes, size: int, words: np.ndarray, bits: float) -> dict:
    """What the command prints: sizes, the archive's and the model's bpb, xz on the same bytes."""
    xz = len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))
    n = max(1, len(data))
    return {"bytes": len(data), "compressed": size, "bpb": 8 * size / n, "model_bpb": bits / n,
            "header_bytes": size - words.nbytes, "xz_bpb": 8 * xz / n}
