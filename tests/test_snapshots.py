"""The snapshot arm (training/snapshots.py): q0's cyclic recipe on each member's own lineage."""

import json
import math
import subprocess
import sys

import pytest
import torch

from multitudes.config import files as config_files
from multitudes.config.schema import TrainConfig
from multitudes.errors import UserError
from multitudes.data.corpora import resolve
from multitudes.data.splits import load_splits
from multitudes.population.schedule import lr_at
from multitudes.runs import checkpoint
from multitudes.runs.files import RunFiles
from multitudes.training.arms import ArmContext
from multitudes.training.protocols import numbers, plan
from multitudes.training.snapshots import Snapshots
from test_cli import ENV, cli, kill_at_a_random_moment

LIMITED = ["regime='data-limited'", "data.unique_bytes=4096", "evolution.every=0",
           "train.real_bytes=16384", "train.schedule='cosine'", "compare.snapshot_cycles=3",
           "compare.snapshot_shrink=0.9", "compare.snapshot_noise=0.1"]


def config(*more):
    return config_files.load("debug", None, LIMITED + list(more))


def test_each_cycle_is_a_cosine_of_its_own_and_the_last_runs_to_the_end():
    cfg = config()
    genome, train = cfg.members[0].replace(warmup=4), TrainConfig(schedule="cosine", min_lr_ratio=0.1)
    lrs = [lr_at(s, genome, 100, train, s, cycles=3) for s in range(100)]
    assert lrs[3] == pytest.approx(genome.lr)  # the first cycle: after its warm-up
    assert lrs[33] == pytest.approx(genome.lr) and lrs[66] == pytest.approx(genome.lr)
    assert lrs[32] < 0.2 * genome.lr and lrs[65] < 0.2 * genome.lr and lrs[99] < 0.2 * genome.lr
    assert all(b <= a for a, b in zip(lrs[66:], lrs[67:]))  # 34 steps, one cosine down
    assert lr_at(50, genome, 100, train, 50) == lr_at(50, genome, 100, train, 50, cycles=0)


def test_the_snapshot_arm_mixes_every_snapshot_of_every_member(tmp_path):
    """The arm's members are its C x K snapshots, each scored and on disk at the weights it was
    kept at; from the second cycle on a member listens to its own previous snapshot."""
    cfg = config()
    arm = next(a for a in plan("compare", cfg) if isinstance(a, Snapshots))
    assert arm.name == "snapshots" and arm.cycles == 3 and arm.social.channel == "none"
    ctx = ArmContext(cfg, load_splits(resolve("sample")), RunFiles(tmp_path, progress=False))
    runner = arm.build(ctx, {})
    runner.run_until(runner.boundary(1) * runner.stream.bytes_per_batch)
    assert runner.cycles_done == 1 and runner.pop.own_elders is not None
    teacher = runner.pop.own_elders[1].models[0].state_dict()
    kept = checkpoint.load(runner.snapshot_path(runner.pop.members[1].id, 1))[0]["model"]
    assert all(torch.equal(teacher[k], kept[k]) for k in kept)
    assert runner.pop.members[0].genome.alpha == cfg.compare.snapshot_alpha
    runner.run_until(arm.total_bytes)
    result = runner.milestone()
    ids = [m["id"] for m in result["members"]]
    assert ids == [f"{m.id}-c{c}" for c in (1, 2, 3) for m in runner.pop.members]
    assert set(result["mixture_weights"]) == set(ids) and result["cycles"] == 3
    assert math.isclose(sum(result["mixture_weights"].values()), 1, abs_tol=1e-5)
    assert result["mixture_test_bpb"] <= max(m["test_bpb"] for m in result["members"])
    for m in result["members"]:
        assert (tmp_path / m["checkpoint"] / "model.safetensors").is_file() and m["best_dev_bpb"] > 0
    # hearing its snapshot costs a forward of it (a third of a training step) from cycle 2 on:
    # counted apart from the members' own training FLOPs
    later = arm.total_bytes - runner.boundary(1) * runner.stream.bytes_per_batch
    assert result["teacher_flops"] == pytest.approx(
        sum(m.flops_per_byte for m in runner.pop.members) / 3 * later)


def test_a_resumed_snapshot_arm_ends_bit_for_bit_as_an_uninterrupted_one(tmp_path):
    """Stopped in its second cycle (its teacher's carried state in the checkpoint) and resumed
    by a fresh runner: the same numbers as one run straight through."""
    cfg = config("train.checkpoint_every=4")
    arm = next(a for a in plan("compare", cfg) if isinstance(a, Snapshots))
    splits = load_splits(resolve("sample"))

    def runner(out):
        return arm.build(ArmContext(cfg, splits, RunFiles(out, progress=False)), {})
    whole = runner(tmp_path / "whole")
    whole.run_until(arm.total_bytes)
    stopped = runner(tmp_path / "stopped")
    stopped.run_until((stopped.boundary(1) + 6) * stopped.stream.bytes_per_batch)
    resumed = runner(tmp_path / "stopped")
    assert resumed.try_resume() and resumed.cycles_done == 1
    resumed.run_until(arm.total_bytes)
    a, b = whole.milestone(), resumed.milestone()
    assert [(m["valid_bpb"], m["test_bpb"]) for m in a["members"]] == \
        [(m["valid_bpb"], m["test_bpb"]) for m in b["members"]]
    assert a["mixture_test_bpb"] == b["mixture_test_bpb"]


def test_a_compare_killed_in_the_snapshot_arm_resumes_to_the_same_numbers(tmp_path):
    args = ["compare", "--preset", "debug", "--quiet"] + [a for s in LIMITED for a in ("--set", s)]
    reference, out = tmp_path / "reference", tmp_path / "killed"
    cli(*args, "--out", reference)
    kill_at_a_random_moment(args + ["--out", out], out / "checkpoints" / "snapshots" /
                            "manifest.json", 5)
    cli("compare", "--resume", out, "--quiet")
    a, b = (json.loads((d / "results.json").read_text()) for d in (reference, out))
    assert numbers(a) == numbers(b) and "snapshots" in a["data_limited"]["placed"]


@pytest.mark.parametrize("override, words", [
    ("compare.snapshot_cycles=1", "compare.snapshot_cycles=1"),
    ("compare.snapshot_cycles=-2", "compare.snapshot_cycles=-2"),
    ("compare.snapshot_cycles=5000", "at most 1000"),
    ("compare.snapshot_alpha=1.5", "compare.snapshot_alpha=1.5"),
    ("compare.snapshot_tau=0", "compare.snapshot_tau=0"),
    ("compare.snapshot_shrink=nan", "compare.snapshot_shrink=nan"),
    ("compare.snapshot_noise=-0.1", "compare.snapshot_noise=-0.1"),
    ("compare.snapshot_cycles=200", "no longer than the members' warm-up"),
    ("train.schedule='constant'", "needs train.schedule"),
])
def test_a_bad_snapshot_setting_is_one_line_before_anything_is_written(override, words,
                                                                      tmp_path):
    out = tmp_path / "run"
    sets = [a for s in LIMITED + [override] for a in ("--set", s)]
    result = subprocess.run([sys.executable, "-m", "multitudes", "compare", "--preset", "debug",
                             "--quiet", *sets, "--out", str(out)], capture_output=True,
                            text=True, env=ENV, timeout=300)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and words in result.stderr
    assert not out.exists()


def test_a_damaged_snapshot_on_resume_is_refused_in_one_line(tmp_path):
    """The teacher a resumed cycle reads back from its file: damaged, a UserError naming it
    (the command line's one line and exit 2), not a traceback."""
    cfg = config("train.checkpoint_every=4")
    arm = next(a for a in plan("compare", cfg) if isinstance(a, Snapshots))
    splits = load_splits(resolve("sample"))
    first = arm.build(ArmContext(cfg, splits, RunFiles(tmp_path, progress=False)), {})
    first.run_until((first.boundary(1) + 4) * first.stream.bytes_per_batch)
    weights = first.snapshot_path(first.pop.members[0].id, 1) / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    again = arm.build(ArmContext(cfg, splits, RunFiles(tmp_path, progress=False)), {})
    with pytest.raises(UserError) as refused:
        again.try_resume()
    assert "m0-gpt-c1" in str(refused.value) and "\n" not in str(refused.value)


def test_a_finished_compare_takes_more_arms_on_resume_bit_for_bit(tmp_path):
    """`compare --resume DIR --set compare.snapshot_social=true` trains the new arm only, reads
    the finished ones back, and ends with the results one run with every arm writes; a resume
    that would change or drop an arm, add none, or change anything else is one line."""
    sets = [arg for s in LIMITED + ["compare.unique_multiples=[1, 2]", "train.real_bytes=8192",
                                   "compare.snapshot_cycles=2"] for arg in ("--set", s)]
    whole, grown = tmp_path / "whole", tmp_path / "grown"
    cli("compare", "--preset", "debug", *sets, "--set", "compare.snapshot_social=true",
        "--out", whole, "--quiet")
    cli("compare", "--preset", "debug", *sets, "--out", grown, "--quiet")
    before = json.loads((grown / "results.json").read_text())
    assert "social+snapshots" not in before["arms"]
    from test_cli import one_line_error
    for bad, says in ((["--set", "train.batch_size=4"], "may only add arms"),
                      (["--set", "compare.snapshot_social=false"], "adds no arm"),
                      (["--set", "compare.snapshot_cycles=4"], "may only add arms")):
        one_line_error(cli("compare", "--resume", grown, *bad, check=False), says)
    assert json.loads((grown / "results.json").read_text()) == before  # nothing lost
    out = cli("compare", "--resume", grown, "--set", "compare.snapshot_social=true", "--quiet")
    after = json.loads((grown / "results.json").read_text())
    assert after == json.loads((whole / "results.json").read_text())
    assert all(after["arms"][name] == arm for name, arm in before["arms"].items())
    # the finished arms were read back, not trained again: only the new arm has training time
    trained = json.loads((grown / "timings.json").read_text())["arms"]
    assert [a for a in trained if trained[a].get("training steps")] == ["social+snapshots"], out
    for log in ("metrics.jsonl", "lineage.jsonl"):  # a resume writes them sorted by arm
        lines = [sorted((d / log).read_text().splitlines()) for d in (grown, whole)]
        assert lines[0] == lines[1] and (lines[0] or log == "lineage.jsonl")
