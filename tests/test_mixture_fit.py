"""`compare.mixture_fit = "unique"`: the mixtures' weights fit on bytes held out of U (Slowrun's
rule), never trained on; the default, the dev slice, unchanged."""

import json
import subprocess
import sys

import numpy as np
import pytest

from multitudes.data.splits import unique_sample, unique_with_held_out


def test_the_held_out_slice_is_the_tail_of_every_piece_of_u():
    train = np.arange(100_000, dtype=np.int64)
    U = 4096 + 5  # pieces of 257 and 256 bytes
    kept, held = unique_with_held_out(train, U, 1 / 16)
    assert len(kept) + len(held) == U and len(held) == 16 * 16
    whole = unique_sample(train, U)
    assert not set(kept) & set(held) and set(kept) | set(held) == set(whole)
    stride = len(train) // 16  # 16 tails, one per piece, spread over the split like U
    assert sorted({int(x) // stride for x in held}) == list(range(16))
    assert all(x in whole for x in held[:16]) and held[15] + 1 not in set(kept)
    assert len(unique_with_held_out(train, len(train), 0.5)[1]) == len(train) // 2


def run(*args):
    return subprocess.run([sys.executable, "-m", "multitudes", "compare", "--preset", "debug",
                           "--quiet", "--set", "regime='data-limited'", "--set",
                           "data.unique_bytes=4096", "--set", "evolution.every=0", "--set",
                           "train.real_bytes=8192", *args], capture_output=True, text=True,
                          timeout=600)


def test_a_compare_fits_every_mixture_on_bytes_held_out_of_its_own_unique_bytes(tmp_path):
    done = run("--set", "compare.mixture_fit='unique'", "--out", str(tmp_path / "run"))
    assert done.returncode == 0, done.stderr
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    held = {"social": 256, "isolated": 256, "isolated-2U": 512, "isolated-4U": 1024}
    assert {a: r["mixture_fit_bytes"] for a, r in results["arms"].items()} == held
    assert all(r["mixture_fit"] == "unique" and np.isfinite(r["mixture_fit_bpb"])
               for r in results["arms"].values())
    # the members trained on U less its held-out slice: more passes over fewer bytes
    iso = results["arms"]["isolated"]
    assert iso["epochs"] == pytest.approx(results["real_bytes"] / (4096 - 256), rel=0.01)
    assert "held out of each arm's unique bytes" in done.stdout


@pytest.mark.parametrize("setting, says", [
    ("compare.mixture_fraction=0.6", "compare.mixture_fraction=0.6: must be in (0, 0.5]"),
    ("compare.mixture_fraction=0.0001", "holds 0 of the 4,096 unique bytes out"),
    ("compare.mixture_fit='valid'", "expected one of dev, unique")])
def test_a_bad_held_out_slice_is_one_line_before_training(setting, says, tmp_path):
    done = run("--set", "compare.mixture_fit='unique'", "--set", setting,
               "--out", str(tmp_path / "run"))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and says in done.stderr, done.stderr
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
