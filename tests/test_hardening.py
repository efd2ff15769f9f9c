"""The third round of bad input (issue 45): the reference record, the data-limited tools, the
extension flow and the device check. Each case names its item; the data-loss ones check the
finished run's files byte for byte after the refused command."""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from multitudes.errors import UserError

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}

# A small corpus of real text (the sample's head: 90% train, 5% valid, 5% test), so that
# scoring the held-out splits, most of a debug run's time, takes a second
CORPUS = Path(__file__).parent.parent / "src/multitudes/data/corpus/enwik8-head-3636038.bytes"
SMALL: list[Path] = []


@pytest.fixture(scope="module", autouse=True)
def small_corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "head.txt"
    path.write_bytes(CORPUS.read_bytes()[:200_000])
    SMALL[:] = [path]


def limited() -> list[str]:
    """A debug-sized data-limited compare on the small corpus."""
    return ["--preset", "debug", "--set", "regime='data-limited'", "--set",
            "data.unique_bytes=4096", "--set", "evolution.every=0", "--set",
            "train.real_bytes=8192", "--set", "compare.unique_multiples=[1, 2]", "--set",
            f"data.corpus='file:{SMALL[0]}'", "--quiet"]


def cli(*args, cwd=None, check=True, timeout=600):
    result = subprocess.run([sys.executable, "-m", "multitudes", *map(str, args)],
                            capture_output=True, text=True, env=ENV, cwd=cwd, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def one_line_error(result, needle, prefix="multitudes: error:"):
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith(prefix) and needle in lines[0], lines[0]


def files_of(folder: Path) -> dict:
    """Every file under `folder` and its bytes (the lock file aside)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A finished data-limited compare whose reference point on 2U went into a record,
    started from its folder with the record named relatively."""
    base = tmp_path_factory.mktemp("recorded")
    cli("compare", *limited(), "--set", "compare.reference_record='rel.json'", "--out", "done",
        cwd=base)
    return base


def test_force_with_a_bad_record_is_refused_before_the_finished_run_is_touched(recorded,
                                                                              tmp_path):
    """Items 1, 2, 7: the record is checked before --force wipes anything; a record inside the
    run (its own results.json) is refused; a refused new --out is not even made."""
    done = tmp_path / "done"
    shutil.copytree(recorded / "done", done, ignore=shutil.ignore_patterns(".lock"))
    before = files_of(done)
    (tmp_path / "trunc.json").write_text('{"format": "multitudes reference record", "poi')
    (tmp_path / "a-file").write_text("x")
    for record, needle in ((tmp_path / "trunc.json", "is unreadable"),
                           (done / "results.json", "inside the run directory"),
                           (done / "sub" / "rec.json", "inside the run directory"),
                           (tmp_path / "a-file" / "rec.json", "cannot make its folder")):
        one_line_error(cli("compare", *limited(), "--out", done, "--force", "--set",
                           f"compare.reference_record='{record}'", check=False), needle)
        assert files_of(done) == before
        if done in record.parents:
            continue
        fresh = tmp_path / "fresh"
        one_line_error(cli("compare", *limited(), "--out", fresh, "--set",
                           f"compare.reference_record='{record}'", check=False), needle)
        assert not fresh.exists()


def test_the_record_is_found_by_its_absolute_path_and_never_through_a_link(recorded, tmp_path):
    """Item 6: a relative record is resolved once, when the run starts, and config.json keeps
    the absolute path: a resume from another folder writes the same file. A record under a
    linked folder is refused before anything is written."""
    config = json.loads((recorded / "done" / "config.json").read_text())["config"]
    assert config["compare"]["reference_record"] == str(recorded / "rel.json")
    assert len(json.loads((recorded / "rel.json").read_text())["points"]) == 1
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cli("compare", "--resume", recorded / "done", "--quiet", cwd=elsewhere)
    assert not (elsewhere / "rel.json").exists()
    (tmp_path / "real").mkdir()
    (tmp_path / "linked").symlink_to(tmp_path / "real")
    one_line_error(cli("compare", *limited(), "--out", tmp_path / "run", "--set",
                       f"compare.reference_record='{tmp_path / 'linked' / 'rec.json'}'",
                       check=False), "is a symbolic link")
    assert not (tmp_path / "real" / "rec.json").exists() and not (tmp_path / "run").exists()


ADDER = """
import sys
from multitudes.training.reference_record import ReferenceRecord
result = {"epochs": 2.0, "best_test_bpb": 3.0, "consensus_test_bpb": 3.0,
          "mixture_test_bpb": 3.0, "best_valid_bpb": 3.0, "consensus_valid_bpb": 3.0,
          "best_member": "m0", "curve": [{"real_bytes": 1, "best_dev_bpb": 3.0}],
          "members": [{"id": "m0", "family": "gpt", "params": 1, "valid_bpb": 3.0,
                       "test_bpb": 3.0}]}
for i in range(int(sys.argv[3])):
    ReferenceRecord.open(sys.argv[1]).add({"who": sys.argv[2], "i": i}, result, "cpu")
"""


def test_two_processes_adding_to_one_record_keep_every_point(tmp_path):
    """Item 3: the read, merge and write of a record hold its lock."""
    record = tmp_path / "record.json"
    procs = [subprocess.Popen([sys.executable, "-c", ADDER, str(record), who, "100"], env=ENV)
             for who in ("a", "b", "c")]  # unlocked, 186 of the 300 were kept
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0]
    assert len(json.loads(record.read_text())["points"]) == 300
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]  # no lock file beside it


@pytest.mark.parametrize("damage", ["emptied", "bpb a string", "members a string",
                                    "curve a number", "bpb NaN"])
def test_a_crafted_record_with_matching_digests_is_one_line_before_training(recorded,
                                                                           tmp_path, damage):
    """Item 8: a point's result is checked when the record is opened, before any arm trains."""
    doc = json.loads((recorded / "rel.json").read_text())
    [point] = doc["points"].values()
    result = point["result"]
    if damage == "emptied":
        point["result"] = {}
    else:
        key, value = {"bpb a string": ("best_test_bpb", "x"), "members a string": (
            "members", "x"), "curve a number": ("curve", 5), "bpb NaN": (
            "best_test_bpb", math.nan)}[damage]
        result[key] = value
    record = tmp_path / "crafted.json"
    record.write_text(json.dumps(doc))
    one_line_error(cli("compare", *limited(), "--out", tmp_path / "run", "--set",
                       f"compare.reference_record='{record}'", check=False),
                   "is damaged or not a reference record")
    assert not (tmp_path / "run").exists()


def test_a_point_read_from_the_record_lists_no_checkpoint_and_eval_skips_it(recorded,
                                                                           tmp_path):
    """Item 13: the members of a point read from the record were trained in another run."""
    cli("compare", *limited(), "--set", f"compare.reference_record='{recorded / 'rel.json'}'",
        "--out", tmp_path / "reader")
    results = json.loads((tmp_path / "reader" / "results.json").read_text())
    arm = results["arms"]["isolated-2U"]
    assert arm["from_record"] == str(recorded / "rel.json")
    assert all("checkpoint" not in m for m in arm["members"])
    scored = cli("eval", tmp_path / "reader", "--json").stdout
    assert "isolated-2U" not in scored and '"social"' in scored
    one_line_error(cli("compress", recorded / "rel.json", "--run", tmp_path / "reader", "--arm",
                       "isolated-2U", "-o", tmp_path / "x.mtz", check=False),
                   "read that arm from the reference record")


def test_a_killed_run_that_recorded_its_own_point_resumes_as_if_never_stopped(recorded,
                                                                             tmp_path):
    """Item 18: a resume reads its own points back from its milestones, not from the record:
    results.json is byte for byte the uninterrupted run's, and it says nothing of a record."""
    record, out = tmp_path / "mine.json", tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "multitudes", "compare", *limited(), "--set",
                             f"compare.reference_record='{record}'", "--out", str(out)],
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not record.is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert record.is_file()
    resumed = cli("compare", "--resume", out, "--quiet")
    assert "reference record" not in resumed.stdout
    assert ((out / "results.json").read_bytes()
            == (recorded / "done" / "results.json").read_bytes())


def test_a_file_the_coder_reads_is_never_its_output(recorded, tmp_path):
    """Item 4: -o onto a member's weights or the run's results, --force or not, is refused and
    leaves them as they were; so is decoding onto a model the archive needs."""
    run = recorded / "done"
    member = run / json.loads((run / "results.json").read_text()
                              )["arms"]["social"]["members"][0]["checkpoint"]
    page = tmp_path / "page.txt"
    page.write_bytes(b"the cat sat on the mat. " * 8)
    before = files_of(run)
    for target in (member / "model.safetensors", run / "results.json", member / "new.mtz"):
        one_line_error(cli("compress", page, "--run", run, "-o", target, "--force",
                           check=False), "input")
    cli("compress", page, "--run", run, "--member", member.name, "-o", tmp_path / "a.mtz")
    one_line_error(cli("decompress", tmp_path / "a.mtz", "-o", member / "model.safetensors",
                       "--force", check=False), "input")
    assert files_of(run) == before


@pytest.mark.parametrize("source", ["/dev/zero", "fifo"])
def test_compress_reads_only_a_regular_file(recorded, tmp_path, source):
    """Item 14: a device is never read without end, a pipe with no writer never waited on."""
    if source == "fifo":
        source = tmp_path / "fifo"
        os.mkfifo(source)
    one_line_error(cli("compress", source, "--run", recorded / "done", "-o",
                       tmp_path / "out.mtz", check=False, timeout=60), "not a regular file")


def test_eval_refuses_an_adaptive_rate_the_optimizer_cannot_take(recorded):
    """Item 10: before any member is loaded (1e39 crashed AdamW after scoring began)."""
    from multitudes.evaluation.target import evaluate_target
    for lr in (1e39, 2.0, -1.0, math.nan):
        with pytest.raises(UserError, match="--adaptive-lr"):
            evaluate_target(recorded / "done", None, "test", 0, None, True, lr)


def test_distilled_students_run_beside_an_evolving_social_arm(tmp_path):
    """Item 12: compare.distill with evolution on trains its one-member students (they never
    evolve) instead of stopping after the other arms with "evolution needs 2 members"."""
    args = [*limited()[:6], *limited()[8:]]  # evolution as the debug preset has it (every 8)
    assert "evolution.every=0" not in args
    cli("compare", *args, "--set", "compare.distill=true", "--out", tmp_path / "run")
    arms = json.loads((tmp_path / "run" / "results.json").read_text())["arms"]
    assert len(arms["distilled"]["members"]) == 1 and "distilled-ensemble" in arms


def test_a_typo_in_a_longer_run_then_a_kill_loses_nothing(tmp_path_factory, tmp_path):
    """Items 5 and 17: the shorter run's results, milestones and checkpoints stay aside until the
    longer run finishes, through its checkpoints and a SIGTERM; going back restores them byte
    for byte. A second extension meanwhile is "in use", and a hand-edited set-aside result is
    refused."""
    run = tmp_path / "run"
    cli("train", "--preset", "debug", "--set", f"data.corpus='file:{SMALL[0]}'", "--out", run,
        "--quiet")
    finished = files_of(run)
    kept = {k: v for k, v in finished.items() if k.split("/")[0] in (
        "results.json", "milestones", "checkpoints")}
    proc = subprocess.Popen([sys.executable, "-m", "multitudes", "train", "--resume", str(run),
                             "--set", "train.real_bytes=1638400000000", "--quiet"], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    manifest = run / "checkpoints" / "social" / "manifest.json"
    first = manifest.stat().st_mtime_ns
    deadline = time.time() + 120
    while (not (run / "shorter").is_dir() or manifest.stat().st_mtime_ns == first) and \
            time.time() < deadline:
        time.sleep(0.05)
    one_line_error(cli("train", "--resume", run, "--set", "train.real_bytes=32768",
                       check=False), "in use by another multitudes process")
    proc.send_signal(signal.SIGTERM)
    assert "latest checkpoint is kept" in proc.communicate(timeout=120)[1]
    assert (run / "shorter" / "results.json").read_bytes() == finished["results.json"]
    shutil.copytree(run, tmp_path / "edited", ignore=shutil.ignore_patterns(".lock"))
    edited = tmp_path / "edited" / "shorter" / "results.json"
    edited.write_text(edited.read_text().replace('"real_bytes": 16384', '"real_bytes": 8192'))
    one_line_error(cli("train", "--resume", tmp_path / "edited", "--set",
                       "train.real_bytes=8192", check=False), "set aside")
    cli("train", "--resume", run, "--set", "train.real_bytes=16384", "--quiet")
    after = files_of(run)
    assert {k: after[k] for k in kept} == kept and not (run / "shorter").exists()
    assert not [k for k in after if k.startswith("checkpoints") and k not in kept]
    # once the longer run finishes, going back is refused, in words that are true
    cli("train", "--resume", run, "--set", "train.real_bytes=24576", "--quiet")
    one_line_error(cli("train", "--resume", run, "--set", "train.real_bytes=16384",
                       check=False), "is set to read 24,576 real bytes; a resume reads on")


def test_nothing_is_said_kept_before_anything_was_saved(tmp_path, monkeypatch):
    """Item 16: the interruption's hint and a failed first checkpoint say a checkpoint is kept
    only when one is."""
    from multitudes.cli import resume_hint
    from multitudes.runs.distributed import Group
    from multitudes.training.state import ArmCheckpoints

    resume_hint.resumable("train", tmp_path)
    assert resume_hint.kept() == ""
    (tmp_path / "checkpoints" / "social").mkdir(parents=True)
    (tmp_path / "checkpoints" / "social" / "manifest.json").write_text("{}")
    assert "latest checkpoint is kept" in resume_hint.kept()
    resume_hint.clear()

    def full(path):
        raise OSError(28, "No space left on device")
    with pytest.raises(UserError, match="no checkpoint was kept yet"):
        ArmCheckpoints(tmp_path / "fresh", "social", Group()).save(4, full)
    with pytest.raises(UserError, match="the previous checkpoint is kept"):
        ArmCheckpoints(tmp_path, "social", Group()).save(4, full)


def test_sizes_that_are_typos_are_refused_or_announced(capsys):
    """Item 14: a generation count past any budget is one line; a reference that reads very many
    epochs, or many generations, is announced before it starts."""
    from multitudes.cli.main import _warn_if_slow
    from multitudes.config import files as config_files

    limited = ["regime='data-limited'", "data.unique_bytes=4096", "evolution.every=0"]
    with pytest.raises(UserError, match="compare.generations=1000000000"):
        config_files.load("debug", None, limited + ["compare.generations=1000000000"])
    _warn_if_slow(config_files.load("debug", None, limited), "compare")
    assert capsys.readouterr().err == ""
    longer = limited + ["train.real_bytes=1000000"]
    _warn_if_slow(config_files.load("debug", None, longer), "compare")
    assert capsys.readouterr().err == ""
    for typo in (limited + ["compare.reference_min_epochs=1e12"],
                 longer + ["compare.generations=1000"]):
        _warn_if_slow(config_files.load("debug", None, typo), "compare")
        assert "expect hours or days" in capsys.readouterr().err


def test_wrong_words_are_mended(tmp_path):
    """Item 17: a U too small names data.unique_bytes, not the split; item 15: a dry run checks
    its cells against the corpus."""
    one_line_error(cli("compare", "--preset", "debug", "--set", "regime='data-limited'", "--set",
                       "data.unique_bytes=3", "--out", tmp_path / "u", check=False),
                   "data.unique_bytes=3 is too few")
    one_line_error(cli("scale", "--preset", "limited", "--dry-run", "--set",
                       "base.data.unique_bytes=3000000", check=False), "study cell")


@pytest.fixture(scope="module")
def seed_sets(recorded, tmp_path_factory):
    """Sets of seeds for data_limited.py --table-only, made from one real results.json."""
    base = tmp_path_factory.mktemp("sets")
    results = json.loads((recorded / "done" / "results.json").read_text())
    stream = {k: v for k, v in results.items() if k != "data_limited"}
    fewer = {**results, "arms": {k: v for k, v in results["arms"].items() if k != "isolated-2U"}}
    for name, seeds in (("good", [results, results]), ("stream", [stream, stream]),
                        ("mixed", [results, fewer])):
        for i, doc in enumerate(seeds, 1):
            (base / name / f"seed-{i}").mkdir(parents=True)
            (base / name / f"seed-{i}" / "results.json").write_text(json.dumps(doc))
    (base / "a-file").write_text("x")
    return base


@pytest.mark.parametrize("args, needle", [
    (["--jobs", "0"], "--jobs"), (["--jobs", "-1"], "--jobs"),
    (["--out", "{base}/a-file"], "not a folder"),
    (["--out", "{base}/stream", "--table-only"], "not a data-limited compare"),
    (["--out", "{base}/mixed", "--table-only"], "share a config"),
    (["--out", "{base}/good", "--table-only", "--against", "{base}/stream"],
     "not a data-limited compare")])
def test_data_limited_py_bad_input_is_one_line_and_exit_2(seed_sets, args, needle):
    """Item 9."""
    args = [a.format(base=seed_sets) for a in args]
    result = subprocess.run([sys.executable, BENCHMARKS / "data_limited.py", *args],
                            capture_output=True, text=True, env=ENV, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert needle in result.stderr.strip().splitlines()[-1]


def test_data_limited_py_reads_a_good_set(seed_sets):
    result = subprocess.run([sys.executable, BENCHMARKS / "data_limited.py", "--out",
                             seed_sets / "good", "--table-only"], capture_output=True,
                            text=True, env=ENV, timeout=120, check=True)
    assert "| isolated-2U |" in result.stdout


@pytest.mark.parametrize("case", ["a file", "under /proc", "no python"])
def test_the_device_check_refuses_what_it_cannot_use(tmp_path, case):
    """Item 11: an output it cannot write, or a Python that does not run, is one line and exit 2
    before any part (it reported success for nothing)."""
    (tmp_path / "a-file").write_text("x")
    out = {"a file": tmp_path / "a-file", "under /proc": "/proc/multitudes-check",
           "no python": tmp_path / "out"}[case]
    env = {**ENV, "PYTHON": "/nonexistent"} if case == "no python" else ENV
    result = subprocess.run(["bash", BENCHMARKS / "device_check.sh", str(out)],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.startswith("device_check.sh: error:")
    assert len(result.stderr.strip().splitlines()) == 1
    assert (tmp_path / "a-file").read_text() == "x"
