"""Checkpoints: safetensors + JSON, written atomically, verified on load, never unpickled.

A checkpoint is a directory: tensor files (`*.safetensors`), a `state.json` for everything that
is not a tensor, and `manifest.json` naming the format version and the sha256 of every file.
It is written into a temporary sibling directory, flushed, and renamed into place, so a reader
(or a resume after kill -9) sees either the previous checkpoint or the whole new one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from multitudes import __version__
from multitudes.errors import UserError

FORMAT = "multitudes-checkpoint-1"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def json_digest(doc) -> str:
    """sha256 of a JSON document, independent of its key order."""
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def read_json(path: Path, what: str):
    """A JSON file, or a UserError naming it as `what` (missing, unreadable, not JSON)."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise UserError(f"{what} {path} is unreadable: {e}") from None
    except RecursionError:
        raise UserError(f"{what} {path} is unreadable: nested too deeply") from None


def _readable(path: Path, directory: bool = False) -> None:
    """mkstemp and mkdtemp create private files (0600, 0700); a run's files take the modes
    the user's umask gives any other file, so that a shared run directory is readable."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if directory else 0o666) & ~umask)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same directory, then rename it over `path`: a reader
    (or a run killed meanwhile) sees the old file or the whole new one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        _readable(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_output(out: Path, force: bool, inputs: list[Path] = ()) -> None:
    """An output file a command is about to write (`-o`): never a link, a device or a folder,
    never one of its inputs nor inside a folder among them, and an existing file only with
    --force, which never makes an input an output. One line, before any
    work, so that a refusal costs nothing."""
    out = Path(out)
    if out.is_symlink():
        raise UserError(f"{out} is a symbolic link: an output is written as a file of its own, "
                        f"never through a link (remove it or choose another path)")
    where = Path(os.path.realpath(out.parent)) / out.name
    for source in inputs:  # a folder the command reads whole (a member checkpoint)
        if Path(source).is_dir() and Path(os.path.realpath(source)) in where.parents:
            raise UserError(f"{out} is inside {source}, which this command reads: the output "
                            f"would change its input (choose another path)")
    if not out.exists():
        return
    if not out.is_file():
        raise UserError(f"{out} is not a regular file (a device or a folder): choose a file path")
    for source in inputs:
        if Path(source).exists() and os.path.samefile(out, source):
            raise UserError(f"{out} is the input: the output would replace what it is made "
                            f"from (choose another path)")
    if not force:
        raise UserError(f"{out} exists; --force replaces it")


def write_json_atomic(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, json.dumps(data, indent=1).encode())


def save(path: Path, tensors: dict[str, dict[str, torch.Tensor]], state: dict) -> None:
    """Write checkpoint `path` atomically: `tensors` maps file stem -> {name: tensor}."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
    try:
        _readable(tmp, directory=True)
        for stem, named in tensors.items():
            try:
                save_file({k: v.detach().contiguous().cpu() for k, v in named.items()},
                          tmp / f"{stem}.safetensors")
            except SafetensorError as e:  # safetensors' form of a failed write (disk full)
                raise OSError(f"could not write {stem}.safetensors: {e}") from None
        (tmp / "state.json").write_text(json.dumps(state))
        files = sorted(p.name for p in tmp.iterdir())
        manifest = {"format": FORMAT, "version": __version__,
                    "files": {name: _sha256(tmp / name) for name in files}}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        for p in tmp.iterdir():
            _readable(p)  # safetensors writes its files 0600
            with open(p, "rb") as f:
                os.fsync(f.fileno())
        _fsync_dir(tmp)
        old = None
        if path.exists():  # keep the old one until the new one is in place
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def recover(path: Path) -> None:
    """Undo what a kill in the middle of `save` left behind.

    `save` moves the previous checkpoint aside before renaming the new one into place; a kill
    between the two renames leaves only the aside copy, which is moved back here. Half-written
    temporary directories are removed.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return
    if not path.exists():
        aside = sorted(path.parent.glob(f".{path.name}.old-*"), key=lambda p: p.stat().st_mtime)
        if aside:
            os.replace(aside[-1], path)
    for stale in list(path.parent.glob(f".{path.name}.old-*")) + list(
            path.parent.glob(f".{path.name}.tmp-*")):
        shutil.rmtree(stale, ignore_errors=True)


def load(path: Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict]:
    """Read and verify a checkpoint; any problem is a UserError naming the checkpoint."""
    path = Path(path)
    manifest_path = path / "manifest.json"
    if not path.is_dir():
        raise UserError(f"checkpoint {path} does not exist")
    if not manifest_path.is_file():
        raise UserError(f"checkpoint {path} has no manifest.json: not a multitudes checkpoint")
    manifest = read_json(manifest_path, "checkpoint manifest")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise UserError(f"checkpoint {path} has format {found!r}, this version reads {FORMAT!r}")
    files = manifest.get("files")
    if not isinstance(files, dict) or "state.json" not in files or not all(
            isinstance(n, str) and isinstance(d, str) and "/" not in n and n not in ("", ".", "..")
            for n, d in files.items()):
        raise UserError(f"checkpoint {path} is damaged: its manifest lists no files, or not "
                        f"as names and digests")
    for name, digest in files.items():
        file = path / name
        if not file.is_file():
            raise UserError(f"checkpoint {path} is incomplete: {name} is missing")
        if _sha256(file) != digest:
            raise UserError(f"checkpoint {path} is corrupt: {name} fails its sha256")
    tensors = {}
    try:
        for name in files:
            if name.endswith(".safetensors"):
                tensors[name[: -len(".safetensors")]] = load_file(path / name)
        state = json.loads((path / "state.json").read_text())
    except (SafetensorError, OSError, ValueError, RecursionError) as e:
        raise UserError(f"checkpoint {path} cannot be read: {e}") from None
    if not isinstance(state, dict):
        raise UserError(f"checkpoint {path} is damaged: state.json is not a table")
    return tensors, state


@contextmanager
def damaged(path: Path, what: str = "checkpoint"):
    """Where a file's contents are read (a checkpoint into a model, a cell's results into a
    table): a key missing, a value of the wrong type or shape (a file damaged, or crafted with
    its digest matching) is one line naming it."""
    try:
        yield
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError) as e:
        raise UserError(f"{what} {path} is damaged: {type(e).__name__} "
                        f"{str(e).strip().splitlines()[0][:120] if str(e).strip() else ''}"
                        ) from None


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer's state_dict into flat tensors (safetensors) and JSON-able rest."""
    sd = optimizer.state_dict()
    tensors = {f"{idx}.{key}": value for idx, per_param in sd["state"].items()
               for key, value in per_param.items() if torch.is_tensor(value)}
    return tensors, {"param_groups": sd["param_groups"]}


def load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                   rest: dict) -> None:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": rest["param_groups"]})
