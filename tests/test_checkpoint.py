import json

import pytest
import torch

from multitudes.runs import checkpoint
from multitudes.errors import UserError


def write(tmp_path):
    path = tmp_path / "ck"
    checkpoint.save(path, {"model": {"w": torch.arange(6.0).reshape(2, 3)}}, {"kind": "x", "n": 1})
    return path


def test_round_trip_and_overwrite(tmp_path):
    path = write(tmp_path)
    tensors, state = checkpoint.load(path)
    assert torch.equal(tensors["model"]["w"], torch.arange(6.0).reshape(2, 3)) and state["n"] == 1
    checkpoint.save(path, {"model": {"w": torch.ones(1)}}, {"kind": "x", "n": 2})
    assert checkpoint.load(path)[1]["n"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]  # no temporaries left


def test_optimizer_round_trip():
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    tensors, rest = checkpoint.optimizer_tensors(opt)
    other = torch.optim.AdamW(model.parameters())
    checkpoint.load_optimizer(other, tensors, json.loads(json.dumps(rest)))
    for a, b in zip(opt.state.values(), other.state.values()):
        assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("damage, message", [
    ("missing", "does not exist"),
    ("no_manifest", "no manifest.json"),
    ("truncated", "fails its sha256"),
    ("tampered", "fails its sha256"),
    ("foreign", "has format 'other-1'"),
    ("lost_file", "model.safetensors is missing"),
])
def test_damaged_checkpoints_are_refused(tmp_path, damage, message):
    path = write(tmp_path)
    tensor_file = path / "model.safetensors"
    if damage == "missing":
        path = tmp_path / "elsewhere"
    elif damage == "no_manifest":
        (path / "manifest.json").unlink()
    elif damage == "truncated":
        tensor_file.write_bytes(tensor_file.read_bytes()[:20])
    elif damage == "tampered":
        raw = bytearray(tensor_file.read_bytes())
        raw[-1] ^= 1
        tensor_file.write_bytes(bytes(raw))
    elif damage == "foreign":
        manifest = json.loads((path / "manifest.json").read_text())
        (path / "manifest.json").write_text(json.dumps({**manifest, "format": "other-1"}))
    elif damage == "lost_file":
        tensor_file.unlink()
    with pytest.raises(UserError, match=message):
        checkpoint.load(path)


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path):
    path = write(tmp_path)
    with pytest.raises(AttributeError):
        checkpoint.save(path, {"model": {"w": "not a tensor"}}, {"kind": "x"})
    assert checkpoint.load(path)[1]["n"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_a_kill_between_the_two_renames_is_recovered(tmp_path):
    path = write(tmp_path)
    aside = tmp_path / f".{path.name}.old-12345"
    path.rename(aside)  # what a kill after the first rename of `save` leaves
    (tmp_path / f".{path.name}.tmp-abc").mkdir()  # and a half-written newer one
    checkpoint.recover(path)
    assert checkpoint.load(path)[1]["n"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_a_full_disk_while_saving_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    """safetensors reports a failed write as its own error: it reaches the caller as an
    OSError (one line in the CLI), the previous checkpoint stays whole, no temporary is left."""
    from safetensors import SafetensorError
    from multitudes.runs import checkpoint
    path = tmp_path / "ck"
    checkpoint.save(path, {"m": {"w": torch.ones(3)}}, {"step": 1})

    def full(*_args, **_kwargs):
        raise SafetensorError("No space left on device (os error 28)")
    monkeypatch.setattr(checkpoint, "save_file", full)
    with pytest.raises(OSError, match="No space left"):
        checkpoint.save(path, {"m": {"w": torch.zeros(3)}}, {"step": 2})
    tensors, state = checkpoint.load(path)
    assert state == {"step": 1} and torch.equal(tensors["m"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]


def test_checkpoint_files_take_the_users_umask(tmp_path):
    """A shared run directory: no file of a checkpoint is private when the umask is not."""
    import os
    old = os.umask(0o022)
    try:
        checkpoint.save(tmp_path / "ck", {"m": {"w": torch.ones(3)}}, {"step": 1})
        checkpoint.write_json_atomic(tmp_path / "r.json", {"a": 1})
    finally:
        os.umask(old)
    paths = [tmp_path / "ck", *(tmp_path / "ck").iterdir(), tmp_path / "r.json"]
    assert all(p.stat().st_mode & 0o044 == 0o044 for p in paths), [
        (p.name, oct(p.stat().st_mode)) for p in paths]
