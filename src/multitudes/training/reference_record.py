"""The data-scaling reference, computed once and reused: a record of its points beyond U.

In the data-limited regime every arm is placed on the isolated recipe's curve over k x U unique
bytes (protocols.plan_compare). The points beyond U (k > 1) are the expensive part of a
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
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from multitudes.config.schema import RunConfig
from multitudes.errors import UserError
from multitudes.runs.checkpoint import json_digest, read_json, write_json_atomic

FORMAT = "multitudes reference record"
VERSION = 1


def corpus_digest(splits: dict) -> str:
    """sha256 of the train, valid and test splits as the run cut them."""
    h = hashlib.sha256()
    for name in ("train", "valid", "test"):
        h.update(name.encode())
        h.update(memoryview(splits[name]).tobytes())
    return h.hexdigest()


def point_config(cfg: RunConfig, corpus: str, k: int) -> dict:
    """What sets the numbers of the reference's point on k x U (its key is their digest)."""
    train = {key: v for key, v in cfg.to_dict()["train"].items() if key != "checkpoint_every"}
    # A member alone hears no one: alpha (how much it listens) and tau (the temperature of
    # what it hears) do not touch its numbers, so the social arm's alpha and tau can be tuned
    # against one recorded reference.
    members = [{key: v for key, v in m.items() if key not in ("alpha", "tau")}
               for m in cfg.to_dict()["members"]]
    return {"corpus_sha256": corpus, "members": members, "train": train,
            "data": cfg.to_dict()["data"], "regime": cfg.regime, "unique_multiple": k,
            "reference_min_epochs": cfg.compare.reference_min_epochs,
            # its own budget, when it has one (absent otherwise: older records still match)
            **({"epochs": cfg.compare.own_epochs(k)} if cfg.compare.own_epochs(k) else {})}


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
                or not all(isinstance(v, dict) and isinstance(v.get("result"), dict)
                           and isinstance(v.get("config"), dict) and json_digest(v["config"]) == key
                           for key, v in points.items())):
            raise UserError(f"the reference record {path} is damaged or not a reference record "
                            f"(format {FORMAT!r} version {VERSION}); move it away to record anew")
        return cls(p, points)

    def find(self, config: dict) -> dict | None:
        """The recorded result of the point with this config, or None."""
        point = self.points.get(json_digest(config))
        return None if point is None else point["result"]

    def add(self, config: dict, result: dict, device: str) -> None:
        """Keep a trained point and write the record atomically (the same key again: the
        same cause, so the newer numbers replace the older). The points another run wrote
        since this one opened the record (a study's other worker) are kept too."""
        if self.path.is_file():
            self.points = {**ReferenceRecord.open(str(self.path)).points, **self.points}
        self.points[json_digest(config)] = {
            "config": config, "result": result,
            "provenance": {"torch": torch.__version__, "device": device,
                           "threads": torch.get_num_threads(),
                           "written": datetime.datetime.now(datetime.timezone.utc)
                           .isoformat(timespec="seconds")}}
        write_json_atomic(self.path, {"format": FORMAT, "version": VERSION,
                                      "points": self.points})
