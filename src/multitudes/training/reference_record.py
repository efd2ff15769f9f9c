"""The data-scaling reference, computed once and reused: a record of its points beyond U.

In the data-limited regime every arm is placed on the isolated recipe's curve over k x U unique
bytes (training/limited_compare.py). The points beyond U (k > 1) are the expensive part of a
comparison and do not depend on anything the other arms do, so `compare.reference_record` names
a JSON file that keeps them: a point found there (same corpus, members, recipe, U, k and epoch
floor) is read instead of trained, and a point trained is added to it as soon as it
finishes (a comparison stopped later, in its students, keeps it). The isolated arm on U
itself is always trained: it is the ensemble control and the equal-bytes baseline.

A point's key is a digest of everything that sets its numbers: the corpus's bytes, the
members' genomes, the training recipe (`train`, including the thread-sensitive switches
`side_by_side` and `precision`), the data section, k and the epoch floor. The torch build,
device and thread count a point was trained with are kept beside it as provenance: a record
read on another machine gives that machine's comparison with the recording machine's curve.
"""

from __future__ import annotations

import datetime
import fcntl
import hashlib
import math
import os
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from multitudes.config.schema import RunConfig
from multitudes.errors import UserError
from multitudes.runs.checkpoint import json_digest, read_json, write_json_atomic

FORMAT = "multitudes reference record"
VERSION = 1


def checked_before_run(cfg: RunConfig, out: Path) -> RunConfig:
    """The record a run will read and add to, checked before the run writes anything (its
    directory, a lock, a `--force` wipe): found by its absolute path, resolved once here so
    that a resume from another working directory writes the same file; no symbolic link on
    the way; not inside the run directory, whose files a run replaces; and readable as a
    record (or absent). Returns the config with the absolute path, which config.json keeps."""
    if not cfg.compare.reference_record:
        return cfg
    path = absolute(cfg.compare.reference_record)
    run = Path(os.path.abspath(out))
    if path == run or run in path.parents:
        raise UserError(f"compare.reference_record={cfg.compare.reference_record!r}: it is "
                        f"inside the run directory {out}, whose files a run writes and "
                        f"--force replaces; keep the record outside it")
    ReferenceRecord.open(str(path))
    return replace(cfg, compare=replace(cfg.compare, reference_record=str(path)))


def absolute(text: str) -> Path:
    """`text` as an absolute path (against this process's working directory), refused when a
    folder on the way, or the file itself, is a symbolic link: the record is written where it
    is named, never where a link points."""
    path = Path(os.path.abspath(text))
    for part in [path, *path.parents]:
        if part.is_symlink():
            raise UserError(f"compare.reference_record={text!r}: {part} is a symbolic link; "
                            f"name the record by a path without links")
    return path


def corpus_digest(splits: dict) -> str:
    """sha256 of the train, valid and test splits as the run cut them."""
    h = hashlib.sha256()
    for name in ("train", "valid", "test"):
        h.update(name.encode())
        h.update(memoryview(splits[name]).tobytes())
    return h.hexdigest()


def point_config(cfg: RunConfig, corpus: str, k: int) -> dict:
    """What sets the numbers of the reference's point on k x U (its key is their digest)."""
    train = {key: v for key, v in cfg.to_dict()["train"].items() if key != "checkpoint_every"
             and not (key == "compile" and not v)}  # absent when off: older records match
    # A member alone hears no one: alpha (how much it listens) and tau (the temperature of
    # what it hears) do not touch its numbers, so the social arm's alpha and tau can be tuned
    # against one recorded reference.
    members = [{key: v for key, v in m.items() if key not in ("alpha", "tau")}
               for m in cfg.to_dict()["members"]]
    return {"corpus_sha256": corpus, "members": members, "train": train,
            "data": cfg.to_dict()["data"], "regime": cfg.regime, "unique_multiple": k,
            "reference_min_epochs": cfg.compare.reference_min_epochs,
            # its own budget, when it has one (absent otherwise: older records still match)
            **({"epochs": cfg.compare.own_epochs(k)} if cfg.compare.own_epochs(k) else {}),
            # a slice of its unique bytes held out for the mixture: other training bytes
            **({"mixture_fraction": cfg.compare.mixture_fraction}
               if cfg.compare.mixture_fit == "unique" else {})}


@dataclass
class ReferenceRecord:
    path: Path
    points: dict = field(default_factory=dict)  # key -> {"config", "provenance", "result"}

    @classmethod
    def open(cls, path: str) -> "ReferenceRecord":
        """The record at `path`, or an empty one when there is none yet; a file that is not a
        record (or a damaged one) is one line."""
        p = Path(path)
        if p.is_symlink() or (p.exists() and not p.is_file()):
            raise UserError(f"compare.reference_record={path!r}: not a regular file")
        if not p.exists():
            # its folder now, not after hours of training when the first point is written
            try:
                p.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise UserError(f"compare.reference_record={path!r}: cannot make its folder "
                                f"({e.strerror or e})") from None
            return cls(p)
        doc = read_json(p, "the reference record")
        points = doc.get("points") if isinstance(doc, dict) else None
        if (not isinstance(doc, dict) or doc.get("format") != FORMAT
                or doc.get("version") != VERSION or not isinstance(points, dict)
                or not all(isinstance(v, dict) and _is_result(v.get("result"))
                           and isinstance(v.get("config"), dict) and json_digest(v["config"]) == key
                           for key, v in points.items())):
            raise UserError(f"the reference record {path} is damaged or not a reference record "
                            f"(format {FORMAT!r} version {VERSION}); move it away to record anew")
        return cls(p, points)

    def find(self, config: dict) -> dict | None:
        """The recorded result of the point with this config, or None."""
        point = self.points.get(json_digest(config))
        return None if point is None else point["result"]

    def add(self, config: dict, result: dict, device: str, run: Path | None = None) -> None:
        """Keep a trained point and write the record atomically (the same key again: the
        same cause, so the newer numbers replace the older). The read, the merge and the write
        hold the record's lock, so the points another process wrote since this one opened the
        record (a study's other worker, a second compare) are kept too. `run`: the directory
        of the run that trained it (a resume of that run knows the point as its own)."""
        with _locked(self.path):
            if self.path.is_file():
                self.points = {**ReferenceRecord.open(str(self.path)).points, **self.points}
            self.points[json_digest(config)] = {
                "config": config, "result": result,
                "provenance": {"torch": torch.__version__, "device": device,
                               "threads": torch.get_num_threads(),
                               **({"run": os.path.abspath(run)} if run is not None else {}),
                               "written": datetime.datetime.now(datetime.timezone.utc)
                               .isoformat(timespec="seconds")}}
            write_json_atomic(self.path, {"format": FORMAT, "version": VERSION,
                                          "points": self.points})

    def trained_by(self, config: dict) -> str | None:
        """The run directory that trained the point with this config, when it says so."""
        point = self.points.get(json_digest(config))
        return None if point is None else point.get("provenance", {}).get("run")


@contextmanager
def _locked(path: Path):
    """The record's folder locked for this process (flock, released when the block ends or the
    process dies): one writer at a time, and no file of its own beside the record."""
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _finite(value) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def _is_result(result) -> bool:
    """Whether a recorded point's result has what a comparison reads of it (the placement's
    test bpb and epochs, the table's members and its curve), each of its type and finite: a
    record edited by hand with its digests matching is refused up front, not after hours."""
    if not isinstance(result, dict):
        return False
    members, curve = result.get("members"), result.get("curve")
    return (all(_finite(result.get(key)) for key in
                ("epochs", "best_test_bpb", "consensus_test_bpb", "mixture_test_bpb",
                 "best_valid_bpb", "consensus_valid_bpb"))
            and isinstance(result.get("best_member"), str)
            and isinstance(members, list) and members and isinstance(curve, list)
            and all(isinstance(m, dict) and isinstance(m.get("id"), str)
                    and isinstance(m.get("family"), str) and type(m.get("params")) is int
                    and _finite(m.get("valid_bpb")) and _finite(m.get("test_bpb"))
                    for m in members)
            and all(isinstance(p, dict) and _finite(p.get("real_bytes"))
                    and _finite(p.get("best_dev_bpb")) for p in curve))
