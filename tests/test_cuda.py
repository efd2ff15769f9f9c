"""The CUDA path, on a machine that has one (`pytest -m cuda`; skipped elsewhere).

What the CPU suite cannot see: the device chosen automatically, bf16 autocast in training and
scoring, checkpoints written from GPU tensors and resumed onto the GPU, and a member checkpoint
scored back. `benchmarks/device_check.sh` runs these first when a GPU is lent.
"""

import json
import subprocess
import sys

import pytest
import torch

from conftest import tiny
from multitudes.population.member import Member
from multitudes.runs.device import autocast_for, resolve_device
from test_cli import ENV

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]


def cli(*args):
    result = subprocess.run([sys.executable, "-m", "multitudes", *map(str, args)],
                            capture_output=True, text=True, env=ENV, timeout=600)
    assert result.returncode == 0, result.stderr
    return result


def test_auto_is_the_gpu_and_the_forward_pass_runs_in_bf16():
    device = resolve_device("auto")
    assert device.type == "cuda"
    for family in ("gpt", "looped", "lstm", "gru", "ssm"):
        member = Member.create("m", tiny(family), device)
        x = torch.randint(0, 256, (4, 32), device=device)
        with autocast_for(device):
            logits = member.model(x)
        assert logits.is_cuda and torch.isfinite(logits.float()).all()
        if family in ("gpt", "looped", "ssm"):  # the blocks' matmuls run in bf16
            assert logits.dtype == torch.bfloat16
        if family == "ssm":  # and its scan and state in fp32 (models/ssm.py)
            with autocast_for(device):
                assert member.model.decode(x, None)[1].dtype == torch.float32


def test_a_run_on_the_gpu_trains_checkpoints_and_resumes(tmp_path):
    """A debug run on CUDA: a kill-free resume of a finished run reads it back; a longer run
    resumes from the GPU checkpoint; every member checkpoint scores again through `eval`."""
    out = tmp_path / "run"
    cli("train", "--preset", "debug", "--out", out, "--quiet")
    results = json.loads((out / "results.json").read_text())
    member = results["arms"]["social"]["members"][0]
    assert 1.0 < member["test_bpb"] < 8.5
    cli("train", "--resume", out, "--set", "train.real_bytes=32768", "--quiet")
    longer = json.loads((out / "results.json").read_text())
    assert longer["real_bytes"] == 32768
    scored = json.loads(cli("eval", out / member["checkpoint"], "--json").stdout)
    assert abs(scored["bpb"] - member["test_bpb"]) < 0.05  # bf16: close, not bit for bit


def test_a_data_limited_compare_with_every_arm_runs_on_the_gpu(tmp_path):
    out = tmp_path / "limited"
    cli("compare", "--preset", "debug", "--set", "regime='data-limited'", "--set",
        "data.unique_bytes=4096", "--set", "evolution.every=0", "--set", "compare.distill=true",
        "--out", out, "--quiet")
    results = json.loads((out / "results.json").read_text())
    assert {"social", "isolated", "distilled", "distilled-ensemble"} <= set(results["arms"])


def test_archives_coded_on_the_gpu_decode_to_the_original(tmp_path):
    """Offline (a trained member's predictions) and online (a population training as it codes):
    the decoder must reproduce the encoder's probabilities bit for bit, which on CUDA takes the
    deterministic kernels (coding/archive.py) and, online, a training replayed exactly."""
    run = tmp_path / "run"
    cli("train", "--preset", "debug", "--out", run, "--quiet")
    src = tmp_path / "page.txt"
    src.write_bytes(b"<page><title>Anarchism</title><text>Anarchism is a political philosophy "
                    b"that advocates self-governed societies. " * 40)
    for name, how in {"offline": ["--run", run],
                      "online": ["--online", "--preset", "debug", "--set", "train.batch_size=4",
                                 "--set", "members.*.context=16"]}.items():
        archive, back = tmp_path / f"{name}.mtz", tmp_path / f"{name}.txt"
        cli("compress", src, "-o", archive, *how, "--quiet")
        cli("decompress", archive, "-o", back, "--quiet")
        assert back.read_bytes() == src.read_bytes(), name


@pytest.mark.parametrize("channel", ["none", "logit"])
def test_members_on_streams_of_their_own_learn_what_one_stream_learns(channel):
    """The members' steps queued on one CUDA stream each (the default) against one after
    another on the current stream: the same losses, step by step (a member's arithmetic does
    not depend on its stream; cuBLAS may pick another kernel per stream, hence a tolerance)."""
    from dataclasses import replace

    from multitudes.config import files as config_files
    from multitudes.population.population import Population
    from multitudes.runs.distributed import Group

    cfg = config_files.load("debug", None, [f"social.channel='{channel}'"])
    g = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, 256, (cfg.train.batch_size, cfg.context + 1), generator=g)
               for _ in range(4)]
    losses = []
    for side_by_side in (True, False):
        train = replace(cfg.train, side_by_side=side_by_side)
        pop = Population.found(cfg.members, cfg.social, train, 10, torch.device("cuda"),
                               Group())
        losses.append([pop.step(b, continues=i > 0).data_loss for i, b in enumerate(batches)])
        assert bool(pop.__dict__.get("_streams")) == side_by_side
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)
