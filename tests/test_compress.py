"""compress / decompress: exact round trips, a size that matches the model's bits, and damaged
archives refused in one line."""

import os
import random
import subprocess
import sys

import pytest

from multitudes.coding.archive import compress_file, decompress_file
from multitudes.coding.mtz import read as read_archive
from multitudes.errors import UserError

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def cli(*args):
    return subprocess.run([sys.executable, "-m", "multitudes", *map(str, args)],
                          capture_output=True, text=True, env=ENV, timeout=600)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "debug"
    result = cli("train", "--preset", "debug", "--out", out, "--quiet")
    assert result.returncode == 0, result.stderr
    return out


def round_trip(run, tmp_path, data: bytes, **kwargs) -> dict:
    src, mtz, back = tmp_path / "in", tmp_path / "in.mtz", tmp_path / "out"
    src.write_bytes(data)
    summary = compress_file(src, mtz, run, progress=False, **kwargs)
    decompress_file(mtz, back, progress=False)
    assert back.read_bytes() == data
    return summary


@pytest.mark.parametrize("data", [
    b"", b"a", bytes(random.Random(0).randrange(256) for _ in range(3001)),
    b"I am large, I contain multitudes. " * 40 + b"tail",  # not a multiple of the lanes
], ids=["empty", "one-byte", "random", "text"])
def test_round_trip_is_exact(run, tmp_path, data):
    round_trip(run, tmp_path, data, lanes=7)


@pytest.mark.parametrize("member", [None, "m1-lstm"])  # the consensus, and one member
def test_the_size_is_the_models_bits_plus_the_header(run, tmp_path, member):
    text = (b"<page><title>Anarchism</title><text>Anarchism is a political philosophy. "
            * 60)
    s = round_trip(run, tmp_path, text, member=member, lanes=16)
    body = s["compressed"] - s["header_bytes"]
    assert abs(body - s["model_bpb"] * s["bytes"] / 8) <= 0.005 * body + 8, s


def test_a_damaged_archive_is_one_line(run, tmp_path):
    src = tmp_path / "in"
    src.write_bytes(b"I am large, I contain multitudes. " * 20)
    mtz = tmp_path / "in.mtz"
    compress_file(src, mtz, run, progress=False, lanes=4)
    blob = bytearray(mtz.read_bytes())
    cases = {"truncated": bytes(blob[:-3]), "not-mtz": b"PK\x03\x04" + bytes(blob[4:]),
             "header": bytes(blob[:12]) + b"\xff" + bytes(blob[13:])}
    flipped = bytearray(blob)
    flipped[-5] ^= 0x55  # a bit of the code: decodes to other bytes, caught by the sha256
    cases["code"] = bytes(flipped)
    for name, damaged in cases.items():
        path = tmp_path / f"{name}.mtz"
        path.write_bytes(damaged)
        result = cli("decompress", path, "-o", tmp_path / "x", "--quiet")
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1, (name, result.stderr)
        assert lines[0].startswith("multitudes: error:") and "Traceback" not in result.stderr
    assert not (tmp_path / "x").exists()  # nothing half-written


def test_other_weights_are_refused(run, tmp_path):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    src = tmp_path / "in"
    src.write_bytes(b"multitudes " * 30)
    compress_file(src, tmp_path / "in.mtz", copy, progress=False, member="m1-lstm")
    other = copy / "members" / "social" / "m4-lstm"
    target = copy / "members" / "social" / "m1-lstm"
    shutil.rmtree(target)
    shutil.copytree(other, target)
    with pytest.raises(UserError, match="other weights"):
        decompress_file(tmp_path / "in.mtz", tmp_path / "out", progress=False)


def test_the_cli_round_trip(run, tmp_path):
    src = tmp_path / "page.txt"
    src.write_bytes(b"The quick brown fox jumps over the lazy dog. " * 50)
    result = cli("compress", src, "--run", run, "--quiet")
    assert result.returncode == 0, result.stderr
    assert "bpb" in result.stdout and "xz -9e" in result.stdout
    result = cli("decompress", f"{src}.mtz", "-o", tmp_path / "back.txt", "--quiet")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "back.txt").read_bytes() == src.read_bytes()


ONLINE = ["train.batch_size=4", "members.*.context=16"]  # the debug pair, small windows


@pytest.mark.parametrize("data", [
    b"", b"a", bytes(random.Random(1).randrange(256) for _ in range(700)),
    b"I am large, I contain multitudes. " * 50 + b"!",
], ids=["empty", "one-byte", "random", "text"])
@pytest.mark.parametrize("mixture", ["bayes", "uniform"])
def test_online_round_trip_is_exact(tmp_path, data, mixture):
    """The decoder trains the same population on the bytes it decodes, bit for bit."""
    from multitudes.config import files as config_files
    from multitudes.coding.archive import compress_online, online_config
    cfg = online_config(config_files.load("debug", None, ONLINE))
    src, mtz, back = tmp_path / "in", tmp_path / "in.mtz", tmp_path / "out"
    src.write_bytes(data)
    s = compress_online(src, mtz, cfg, progress=False, mixture=mixture)
    decompress_file(mtz, back, progress=False)
    assert back.read_bytes() == data
    body = s["compressed"] - s["header_bytes"]
    assert abs(body - s["model_bpb"] * s["bytes"] / 8) <= 0.005 * body + 8, s


def test_online_cli_single_member_and_isolated(tmp_path):
    src = tmp_path / "page.txt"
    src.write_bytes(b"The quick brown fox jumps over the lazy dog. " * 40)
    for flags in (["--members", "1"], ["--isolated"], ["--keep", "1"]):
        mtz = tmp_path / f"{flags[0]}.mtz"
        result = cli("compress", src, "--online", "--preset", "debug", "-o", mtz, "--quiet",
                     *[a for o in ONLINE for a in ("--set", o)], *flags)
        assert result.returncode == 0, result.stderr
        assert "B/s" in result.stdout
        result = cli("decompress", mtz, "-o", tmp_path / "back", "--quiet", "--force")
        assert result.returncode == 0, result.stderr
        assert (tmp_path / "back").read_bytes() == src.read_bytes()
    bad = cli("compress", src, "--online", "--preset", "debug", "--members", "3")
    assert bad.returncode == 2 and "--members 3" in bad.stderr
    bad = cli("compress", src, "--online", "--preset", "debug", "--keep", "1,5")
    assert bad.returncode == 2 and "--keep 1,5" in bad.stderr


def test_the_bayes_mixture_follows_the_better_member_and_keeps_a_share():
    """Posterior weights after bytes that member 0 predicts far better: nearly all on member 0,
    never below the fixed share on the other."""
    import numpy as np
    from multitudes.config import files as config_files
    from multitudes.coding import online
    coder = online.OnlineCoder(online_config_debug(config_files), progress=False)
    for _ in range(20):
        coder._update_weights(np.array([-1.0, -9.0]))
    w = coder._weights()
    assert w[0] > 0.98 and w[1] >= online.FIXED_SHARE / 2 * 0.999
    for _ in range(200):  # the other member becomes the better one: the weight moves over
        coder._update_weights(np.array([-9.0, -1.0]))
    assert coder._weights()[1] > 0.98


def online_config_debug(config_files):
    from multitudes.coding.archive import online_config
    return online_config(config_files.load("debug", None, ONLINE))


def test_an_output_is_never_the_input_a_link_or_a_device(run, tmp_path):
    """`-o` is checked before any work: the input itself, a link (written through it would
    land elsewhere), a FIFO or folder (an atomic rename would replace the node), and an
    existing file without --force are each one line, and nothing is changed."""
    src = tmp_path / "page.txt"
    src.write_bytes(b"the cat sat on the mat. " * 50)
    original = src.read_bytes()
    outside = tmp_path / "outside"
    (tmp_path / "link").symlink_to(outside)
    os.mkfifo(tmp_path / "fifo")
    for out, needle in ((src, "is the input"), (tmp_path / "link", "is a symbolic link"),
                        (tmp_path / "fifo", "is not a regular file"),
                        (tmp_path, "is a directory")):
        result = cli("compress", src, "-o", out, "--run", run, "--quiet")
        assert result.returncode == 2 and needle in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert src.read_bytes() == original and not outside.exists()
    assert (tmp_path / "fifo").is_fifo()
    mtz = tmp_path / "page.mtz"
    assert cli("compress", src, "-o", mtz, "--run", run, "--quiet").returncode == 0
    again = cli("compress", src, "-o", mtz, "--run", run, "--quiet")
    assert again.returncode == 2 and "exists; --force replaces it" in again.stderr
    assert cli("compress", src, "-o", mtz, "--run", run, "--quiet", "--force").returncode == 0
    back = tmp_path / "back.txt"
    for out, needle in ((mtz, "is the input"), (tmp_path / "link", "symbolic link")):
        result = cli("decompress", mtz, "-o", out, "--quiet")
        assert result.returncode == 2 and needle in result.stderr, result.stderr
    assert cli("decompress", mtz, "-o", back, "--quiet").returncode == 0
    assert back.read_bytes() == original
    assert "--force" in cli("decompress", mtz, "-o", back, "--quiet").stderr


def _rewrite(path, header_change=None, body_change=None):
    """An archive's header (valid zlib and JSON) and code, changed and written back."""
    import json
    import struct
    import zlib
    blob = path.read_bytes()
    (n,) = struct.unpack("<I", blob[4:8])
    header, body = json.loads(zlib.decompress(blob[8:8 + n])), blob[8 + n:]
    if header_change:
        header = header_change(header)
    if body_change:
        body = body_change(body)
    head = zlib.compress(json.dumps(header).encode())
    return b"MTZ1" + struct.pack("<I", len(head)) + head + body


@pytest.mark.parametrize("mode", ["offline", "online"])
def test_a_crafted_or_extended_archive_is_one_line_before_decoding(run, tmp_path, mode):
    """Headers of the right form and the wrong types, 4,000 bytes appended, a byte of the code
    flipped (the code carries its own sha256, checked before anything is decoded), and a
    length no memory holds: each one line, nothing written."""
    from multitudes.config import files as config_files
    from multitudes.coding.archive import compress_online, online_config
    src, mtz = tmp_path / "in", tmp_path / "in.mtz"
    src.write_bytes(b"I am large, I contain multitudes. " * 40)
    if mode == "offline":
        compress_file(src, mtz, run, progress=False, lanes=4)
    else:
        compress_online(src, mtz, online_config(config_files.load("debug", None, ONLINE)),
                        progress=False)

    def flip(body):
        return body[:len(body) // 2] + bytes([body[len(body) // 2] ^ 0x10]) + body[
            len(body) // 2 + 1:]
    values = {"length": [-1, "x", 10 ** 12], "sha256": [5]}
    if mode == "offline":
        values.update(lanes=["x", 0], members=[5, [], [{"checkpoint": 3}]], run=[7])
    cases = {f"{key}={value!r}": _rewrite(mtz, lambda h, k=key, v=value: {**h, k: v})
             for key, vs in values.items() for value in vs}
    cases["appended"] = mtz.read_bytes() + bytes(4000)
    cases["flipped"] = _rewrite(mtz, body_change=flip)
    for name, blob in cases.items():
        path = tmp_path / "bad.mtz"
        path.write_bytes(blob)
        result = cli("decompress", path, "-o", tmp_path / "x", "--quiet")
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1, (name, result.stderr)
        assert lines[0].startswith("multitudes: error:") and "Traceback" not in result.stderr
        assert "checkpoint is kept" not in lines[0], name
    assert not (tmp_path / "x").exists()


def test_an_archive_from_another_build_device_thread_count_or_gpu_is_one_line(run, tmp_path):
    """What the decoder's arithmetic must share with the encoder's, refused up front: the torch
    build, the device, the thread count, the GPU's model (an archive from before the GPU's model
    was recorded has none, as a CPU's has)."""
    src, mtz = tmp_path / "in", tmp_path / "in.mtz"
    src.write_bytes(b"I am large, I contain multitudes. " * 10)
    compress_file(src, mtz, run, progress=False, lanes=4)
    header, _ = read_archive(mtz)
    assert header["gpu"] is None and header["device"] == "cpu"
    changes = {"torch": "0.0.1", "device": "cuda", "threads": header["threads"] + 1,
               "gpu": "NVIDIA H100 80GB HBM3"}
    for key, value in changes.items():
        path = tmp_path / f"{key}.mtz"
        path.write_bytes(_rewrite(mtz, lambda h, k=key, v=value: {**h, k: v}))
        result = cli("decompress", path, "-o", tmp_path / "x", "--quiet")
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1, (key, result.stderr)
        assert f"was coded with {key} {value}, this process has {header[key]}" in lines[0]
    assert not (tmp_path / "x").exists()
    without = tmp_path / "without.mtz"
    without.write_bytes(_rewrite(mtz, lambda h: {k: v for k, v in h.items() if k != "gpu"}))
    decompress_file(without, tmp_path / "back", progress=False)
    assert (tmp_path / "back").read_bytes() == src.read_bytes()


def test_coding_on_cuda_takes_the_deterministic_kernels_and_gives_them_back(monkeypatch):
    """What `_same_kernels` sets for CUDA (it needs no GPU to set it) and restores after; the
    CPU's coding runs as it did."""
    import torch
    from multitudes.coding.archive import _same_kernels
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    assert not torch.are_deterministic_algorithms_enabled()
    with _same_kernels("cpu"):
        assert not torch.are_deterministic_algorithms_enabled()
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    with pytest.raises(KeyError):
        with _same_kernels("cuda"):
            assert torch.are_deterministic_algorithms_enabled()
            assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
            raise KeyError("a failure inside gives the kernels back too")
    assert not torch.are_deterministic_algorithms_enabled()
