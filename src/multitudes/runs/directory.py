"""Run directories: create one, check it, reopen it for a resume (or a longer run), read a
finished one back.

A run directory holds `config.json` (the command, the config, its sha256 and the thread count),
and what the run writes (RUN_FILES). A resume reopens it with the recorded config: an edited
record is refused, a different thread count is announced; `--set` on a resume reads a `train`
run on to more bytes, or adds arms to a `compare`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path

import torch

from multitudes.runs.checkpoint import json_digest, read_json, write_json_atomic
from multitudes.runs.results import read as read_results
from multitudes.config.schema import RunConfig
from multitudes.config.files import from_dict
from multitudes.errors import UserError

RUN_FILES = ("config.json", "metrics.jsonl", "lineage.jsonl", "results.json", "report.html",
             "checkpoints", "members", "milestones", "tb", "shorter")

# A run read on to more bytes sets its shorter run's results, milestones and checkpoints aside
# here until the longer run finishes: a typo in the new length (and a kill after it) loses
# nothing, and can be taken back.
SHORTER = "shorter"
ASIDE = ("milestones", "results.json", "checkpoints")


# What a resume may change: a `train` run read on to more bytes (nanoGPT's "train longer"), and
# how often it checkpoints. Anything else (shapes, batch, data, members) would make the saved
# state describe another run.
EXTENSIBLE = ("train.real_bytes", "train.checkpoint_every")

# What a resume of a `compare` may change: arms added beside the ones it has (a control, more
# generations). Arms are independent given their teachers: the new ones train, the finished ones
# are read back from their milestones, and every number is what one run with them all gives.
ARM_ADDING = ("compare.snapshot_social", "compare.apart", "compare.lineage",
              "compare.generations", "compare.distill", "compare.ensemble_compute",
              "compare.ensemble_members", "compare.retuned")


def prepare_run_dir(out: Path, command: str, cfg: RunConfig | None, resume: bool,
                    force: bool, extend: list[str] = ()) -> RunConfig:
    """Create, check or reopen a run directory; returns the config the run uses. `extend`:
    `--set` overrides a resume may apply (EXTENSIBLE keys for `train`, ARM_ADDING for
    `compare`)."""
    out = Path(out)
    record_path = out / "config.json"
    if resume:
        if not record_path.is_file():
            raise UserError(f"--resume {out}: no run there (no config.json)")
        record = read_json(record_path, "--resume: the run's config")
        if record.get("command") != command:
            raise UserError(f"--resume {out}: that run was made by `{record.get('command')}`, "
                            f"not `{command}`")
        if not isinstance(record.get("config"), dict):
            raise UserError(f"--resume {out}: config.json holds no config")
        digest = json_digest(record["config"])
        if record.get("config_sha256", digest) != digest:
            raise UserError(f"--resume {out}: config.json was edited after the run started; a "
                            f"resume continues the run as it was configured (start a new run "
                            f"for a new config)")
        threads = torch.get_num_threads()
        if record.get("threads", threads) != threads:
            print(f"multitudes: warning: {out} started with {record['threads']} CPU thread(s), "
                  f"it resumes with {threads}: on the CPU its numbers will differ from an "
                  f"uninterrupted run's in the last digits (set OMP_NUM_THREADS="
                  f"{record['threads']} for bit-identical ones)", file=sys.stderr)
        if extend:
            return _extend(out, record, command, list(extend))
        return from_dict(record["config"])
    if out.exists() and any(out.iterdir()):
        check_new_run_dir(out, force)
        for name in RUN_FILES:  # replace only what a run writes, nothing else of the user's
            path = out / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    config = cfg.to_dict()
    write_json_atomic(record_path, {"command": command, "config": config,
                                    "config_sha256": json_digest(config),
                                    # CPU results are bit-identical at the same thread count
                                    "threads": torch.get_num_threads()})
    return cfg


def check_new_run_dir(out: Path, force: bool) -> None:
    """Refuse, before anything is written there (a lock included), a directory that holds a
    run's finished work or files that are not a run's, unless --force."""
    if force or not out.is_dir() or not _holds_work(out):
        return
    what = "a run" if (out / "config.json").exists() else "files"
    raise UserError(f"{out} already holds {what}; use --resume to continue it or --force to "
                    f"replace it")


def _extend(out: Path, record: dict, command: str, overrides: list[str]) -> RunConfig:
    """A finished or stopped `train` run, resumed with more bytes (or another checkpoint
    interval), or a `compare` with more arms; `record_extension` then writes the new config."""
    from multitudes.config.files import apply_overrides

    if command == "compare":
        return _more_arms(record, overrides)
    if command != "train":
        raise UserError("--resume --set extends `train` and `compare` runs only")
    if key := _key_outside(overrides, EXTENSIBLE):
        raise UserError(f"--resume --set {key}: a resume may change only "
                        f"{' and '.join(EXTENSIBLE)}")
    before = from_dict(record["config"])
    config = apply_overrides(record["config"], overrides)
    cfg = from_dict(config)
    if cfg.train.real_bytes < before.train.real_bytes and \
            cfg.train.real_bytes != _shorter_length(out, record):
        raise UserError(f"--resume --set train.real_bytes={cfg.train.real_bytes}: the run is set "
                        f"to read {before.train.real_bytes:,} real bytes"
                        + ("" if (out / "results.json").is_file() and not (out / SHORTER).is_dir()
                           else " and is not finished")
                        + "; a resume reads on, not back (a shorter run is a new run)")
    return cfg


def _key_outside(overrides: list[str], allowed: tuple[str, ...]) -> str | None:
    """The first key of the `--set` overrides a resume may not change, or None (a key inside an
    allowed table, e.g. `compare.retuned.gru.dropout`, is allowed)."""
    from multitudes.config.files import parse_override

    keys = (".".join(parse_override(text)[0]) for text in overrides)
    return next((key for key in keys
                 if not any(key == a or key.startswith(a + ".") for a in allowed)), None)


def _more_arms(record: dict, overrides: list[str]) -> RunConfig:
    """A `compare` run resumed with more arms: every arm it planned is planned again, the same."""
    from multitudes.config.files import apply_overrides
    from multitudes.training.protocols import check_runnable, plan

    if key := _key_outside(overrides, ARM_ADDING):
        raise UserError(f"--resume --set {key}: a compare's resume may only add arms, with "
                        f"{', '.join(ARM_ADDING)}")
    before = from_dict(record["config"])
    cfg = from_dict(apply_overrides(record["config"], overrides))
    check_runnable(cfg, "compare")
    old = {a.name: a.describe() for a in plan("compare", before)}
    new = {a.name: a.describe() for a in plan("compare", cfg)}
    changed = [name for name in old if new.get(name) != old[name]]
    if changed:
        raise UserError(f"--resume --set: the arms {', '.join(changed)} would change or go; a "
                        f"resume may only add arms (a new run for other arms)")
    if new.keys() == old.keys():
        raise UserError("--resume --set: adds no arm to this run")
    return cfg


def _shorter_length(out: Path, record: dict) -> int | None:
    """The length of the finished shorter run set aside by an extension, if it is still there
    (the longer run has not finished): going back to it is allowed. Its results are checked
    against the digest config.json took when they were set aside."""
    path = Path(out) / SHORTER / "results.json"
    if not path.is_file():
        return None
    if hashlib.sha256(path.read_bytes()).hexdigest() != record.get("shorter_sha256"):
        raise UserError(f"{path} is not the results that were set aside (edited, or not "
                        f"this run's); going back to it is refused")
    length = read_results(path, "the shorter run's results").get("real_bytes")
    return length if isinstance(length, int) else None


def record_extension(out: Path, cfg: RunConfig) -> None:
    """config.json holds the extended run's config from now on (the lock is held). The shorter
    run's results, milestones and checkpoints are set aside (DIR/shorter/; the checkpoints as
    hard links, no second copy on disk), so the longer run is scored anew; they come back,
    whole, when the run goes back to their length before the longer run finishes, and go for
    good when it does (`drop_shorter`)."""
    out = Path(out)
    aside = out / SHORTER
    record = read_json(out / "config.json", "the run's config")
    if record.get("command") == "compare":  # arms added: the finished ones stay as they are
        pass
    elif cfg.train.real_bytes == _shorter_length(out, record):  # the extension taken back
        for name in ASIDE:
            path = out / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
            if (aside / name).exists():
                os.replace(aside / name, path)
        shutil.rmtree(aside)
        record.pop("shorter_sha256", None)
    elif (out / "results.json").is_file():  # a finished run: kept until the longer one ends
        shutil.rmtree(aside, ignore_errors=True)
        aside.mkdir()
        for name in ("milestones", "results.json"):
            if (out / name).exists():
                os.replace(out / name, aside / name)
        if (out / "checkpoints").is_dir():
            shutil.copytree(out / "checkpoints", aside / "checkpoints", copy_function=_link)
        record["shorter_sha256"] = hashlib.sha256((aside / "results.json").read_bytes()
                                                  ).hexdigest()
    write_json_atomic(out / "config.json", {**record, "config": cfg.to_dict(),
                                            "config_sha256": json_digest(cfg.to_dict())})


def _link(src: str, dst: str) -> None:
    """A checkpoint file set aside: a hard link (a checkpoint is replaced by a rename, never
    written in place), or a copy where the filesystem has no links."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def drop_shorter(out: Path) -> None:
    """The longer run has finished: the shorter run cannot be gone back to."""
    aside = Path(out) / SHORTER
    if aside.is_dir():
        shutil.rmtree(aside)


def _holds_work(out: Path) -> bool:
    """Whether `out` holds anything worth keeping: files not a run's, or a run's finished work
    (a checkpoint, a milestone, results). A run that failed before its first checkpoint holds
    none, and its directory is reused without --force."""
    names = {p.name for p in out.iterdir()} - {".lock"}
    if names - set(RUN_FILES):
        return True
    return any((out / name).exists() and (not (out / name).is_dir() or any((out / name).iterdir()))
               for name in ("checkpoints", "milestones", "members", "results.json"))


def read_finished_run(run_dir: Path) -> tuple[dict, dict]:
    """A finished run's command and config ({"command", "cfg"}) and its results.json."""
    run_dir = Path(run_dir)
    for name in ("config.json", "results.json"):
        if not (run_dir / name).is_file():
            raise UserError(f"{run_dir} is not a finished run: {name} is missing")
    record = read_json(run_dir / "config.json", "the run's config")
    results = read_results(run_dir / "results.json", "the run's results")
    if "config" not in record or "command" not in record:
        raise UserError(f"{run_dir}/config.json is not a run's config record")
    cfg = from_dict(record["config"])
    return {"command": record["command"], "cfg": cfg}, results
