"""benchmarks/device_check.sh, as far as a CPU allows: it runs, says what it skips, and the
enwik8-shaped compare it would start on a GPU is a valid, runnable config."""

import os
import re
import subprocess
from pathlib import Path

import pytest
import torch

from multitudes.config import files as config_files
from multitudes.training.protocols import check_runnable, plan

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "device_check.sh"


def test_the_device_check_runs_and_skips_the_gpu_parts_cleanly(tmp_path):
    result = subprocess.run(["bash", str(SCRIPT), str(tmp_path)], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    summary = (tmp_path / "summary.txt").read_text()
    assert "machine: exit 0" in summary
    assert "dependencies: every one imports" in summary
    if not torch.cuda.is_available():
        assert "the GPU parts (tests, throughput, compare) are skipped" in summary


@pytest.mark.parametrize("missing", ["constriction", "pytest"])
def test_the_device_check_names_a_missing_dependency_in_one_line_and_stops(tmp_path, missing):
    """A machine whose image lacks a dependency (pytest too: part 2 runs under it) and was
    brought no wheel for it: one line that names it and the script that brings wheels, exit 1,
    before any part runs."""
    shadow = tmp_path / "shadow" / missing
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('not on this machine')\n")
    env = {**os.environ, "PYTHONPATH": str(shadow.parent), "WHEELS": str(tmp_path / "none")}
    result = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "out")], capture_output=True,
                            text=True, timeout=300, env=env)
    assert result.returncode == 1
    line = f"dependencies: missing {missing} (bring their wheels: " \
           "bash benchmarks/device_wheels.sh)"
    assert result.stderr.strip() == line
    assert (tmp_path / "out" / "summary.txt").read_text().strip() == line
    assert not (tmp_path / "out" / "machine.txt").exists()


def test_the_device_checks_compare_is_a_valid_enwik8_shaped_config():
    """Part 6 on a GPU: the enwik8 preset's members, batch and context on the sample, social
    against the channel closed, 100 steps an arm."""
    text = SCRIPT.read_text()
    gpu = re.search(r"sized --preset enwik8(.*?) -- --preset debug", text, re.S).group(1)
    common = re.search(r'part compare 170 .*?\n(.*?)\n\S', text, re.S).group(0)
    overrides = [o.strip("'") for o in re.findall(r"--set (\S+)", gpu + common)]
    cfg = config_files.load("enwik8", None, overrides)
    assert cfg.data.corpus == "sample" and cfg.regime == "stream"
    assert cfg.train.batch_size == 64 and cfg.context == 512  # enwik8's shapes
    assert cfg.train.real_bytes // (64 * 512) == 100
    check_runnable(cfg, "compare")
    assert [p.name for p in plan("compare", cfg)] == ["social", "isolated"]


def test_the_device_checks_parts_fit_one_call_and_run_end_to_end_on_a_cpu(tmp_path):
    """Every part's limit adds up to at most 9 minutes; with DEVICE_CHECK_CPU=1 every part runs
    here at debug sizes, each to its own file, and the compare prints both dev curves."""
    text = SCRIPT.read_text()
    limits = {name: int(s) for name, s in re.findall(r"^part (\S+) (\d+) ", text, re.M)}
    assert set(limits) == {"machine", "precision", "rnn-lanes", "cuda-tests", "throughput",
                           "compare"}
    assert sum(limits.values()) <= 540
    env = {**os.environ, "DEVICE_CHECK_CPU": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(["bash", str(SCRIPT), str(tmp_path)], capture_output=True,
                            text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr
    summary = (tmp_path / "summary.txt").read_text()
    for name in limits:
        assert re.search(rf"^{name}: exit 0 in \d+ s$", summary, re.M), summary
        assert (tmp_path / f"{name}.txt").read_text().strip()
    probe = (tmp_path / "precision.txt").read_text()
    assert re.search(r"^m1 lstm: loss [\d.]+ vs fp32 [\d.]+ .*recurrent-weight gradients", probe,
                     re.M), probe
    assert "1.00x the 2-lane row" in (tmp_path / "rnn-lanes.txt").read_text()
    compare = (tmp_path / "compare.txt").read_text()
    for arm in ("social", "isolated"):
        assert re.search(rf"^{arm} dev curve \(real bytes: best, consensus\): 2,048: ", compare,
                         re.M), compare


def test_the_wheels_script_refuses_a_package_not_installed_here(tmp_path):
    wheels = Path(__file__).parent.parent / "benchmarks" / "device_wheels.sh"
    result = subprocess.run(["bash", str(wheels), "3.12", str(tmp_path / "w"), "no-such-pkg"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == ("device_wheels.sh: no-such-pkg is not installed here "
                                     "(activate the project venv)")
    assert not (tmp_path / "w").exists()
