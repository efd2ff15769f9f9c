"""The command line as a user runs it: real subprocesses, real files."""

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from multitudes.errors import UserError
from multitudes.evaluation.target import load_member
from multitudes.training.protocols import numbers
from multitudes.training.reference_record import ReferenceRecord

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"

# benchmarks/seed_progress.py on runs: the member-steps planned and taken and the arm at work
# (the first of the plan not finished), then the bar as drawn, once for each run
SEED_BARS = """
import io, json, sys
from pathlib import Path
from seed_progress import SeedBar, planned, taken
from multitudes.config.files import from_dict
for run in map(Path, sys.argv[1:]):
    cfg = from_dict(json.loads((run / "config.json").read_text())["config"])
    arms = planned(cfg)
    print(sum(s * m for s, m in arms.values()), *taken(run / "metrics.jsonl", arms))
    drawn = io.StringIO()
    bar = SeedBar("seed 1", run, cfg, 0, file=drawn, disable=False)
    bar.update()
    bar.close(finished=(run / "results.json").exists())
    print(drawn.getvalue().split("\\r")[-1].strip())
"""

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def cli(*args, cwd=None, check=True):
    result = subprocess.run([sys.executable, "-m", "multitudes", *map(str, args)],
                            capture_output=True, text=True, env=ENV, cwd=cwd, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def debug_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "debug"
    cli("train", "--preset", "debug", "--out", out, "--quiet")
    return out


def test_train_then_eval(debug_run):
    results = json.loads((debug_run / "results.json").read_text())
    members = results["arms"]["social"]["members"]
    assert len(members) == 2
    rows = {r["step"]: r for r in map(json.loads, (debug_run / "metrics.jsonl").open())}
    deaths = [e for e in map(json.loads, (debug_run / "lineage.jsonl").open())
              if e["event"] == "death"]
    assert deaths
    for death in deaths:  # the best member never dies
        dev = {k: v["dev_bpb"] for k, v in rows[death["step"]]["members"].items()}
        assert dev[death["member"]] > min(dev.values())
    for m in members:
        assert 3.0 < m["test_bpb"] < 8.0 and m["params"] > 0
        assert (debug_run / m["checkpoint"] / "manifest.json").is_file()
    rows = [json.loads(line) for line in (debug_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [8, 16, 24, 32]
    assert list((debug_run / "tb").iterdir())  # TensorBoard event file
    out = cli("eval", debug_run / members[0]["checkpoint"], "--json")
    assert json.loads(out.stdout)["bpb"] == pytest.approx(members[0]["test_bpb"], abs=1e-9)
    text = cli("eval", debug_run, "--split", "test").stdout
    assert f"{members[1]['test_bpb']:.4f}" in text


def test_same_seed_same_numbers(debug_run, tmp_path):
    cli("train", "--preset", "debug", "--out", tmp_path / "again", "--quiet")
    a = json.loads((debug_run / "results.json").read_text())
    b = json.loads((tmp_path / "again" / "results.json").read_text())
    assert numbers(a) == numbers(b)


def kill_at_a_random_moment(args, manifest: Path, seed: int) -> float:
    """Start `multitudes ARGS`, SIGKILL it a random moment after its first checkpoint."""
    proc = subprocess.Popen([sys.executable, "-m", "multitudes", *map(str, args)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not manifest.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    delay = random.Random(seed).uniform(0.0, 0.6)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return delay


@pytest.mark.parametrize("seed", [0, 1])
def test_kill_and_resume_gives_the_same_numbers(tmp_path, seed):
    longer = ["--set", "train.real_bytes=32768"]
    reference, out = tmp_path / "reference", tmp_path / "killed"
    cli("train", "--preset", "debug", "--out", reference, "--quiet", *longer)
    delay = kill_at_a_random_moment(["train", "--preset", "debug", "--out", out, "--quiet",
                                     *longer], out / "checkpoints" / "social" / "manifest.json",
                                    seed)
    assert not (out / "results.json").exists(), f"finished before the kill at +{delay:.2f}s"
    cli("train", "--resume", out, "--quiet")
    a = json.loads((reference / "results.json").read_text())
    b = json.loads((out / "results.json").read_text())
    assert numbers(a) == numbers(b), f"killed at +{delay:.2f}s after the first checkpoint"
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))  # no duplicated rows after the resume


def test_sigterm_ends_in_one_line_and_the_run_resumes(tmp_path):
    """A scheduler's or torchrun's SIGTERM: the Ctrl-C treatment (one line, the checkpoint kept,
    no half-written file), with SIGTERM's exit status."""
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "multitudes", "train", "--preset", "debug",
                             "--out", str(out), "--quiet", "--set", "train.real_bytes=32768"],
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    manifest = out / "checkpoints" / "social" / "manifest.json"
    deadline = time.time() + 120
    while not manifest.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    stderr = proc.communicate(timeout=120)[1]
    assert not (out / "results.json").exists(), "finished before the SIGTERM"
    assert proc.returncode == 143, stderr
    assert stderr.strip().splitlines() == [
        f"multitudes: terminated (SIGTERM); the latest checkpoint is kept (multitudes train "
        f"--resume {out})"]
    temporary = [p for p in out.rglob(".*") if p.is_file() and p.name != ".lock"]
    assert not temporary  # an atomic write cut short removes its temporary file
    cli("train", "--resume", out, "--quiet")
    assert (out / "results.json").is_file()


SIGTERM_WHILE_IMPORTING = """
import os, signal, sys, time
class SignalOnImport:  # the SIGTERM arrives while the command line is being imported
    def find_spec(self, name, path, target=None):
        if name == "multitudes.cli":
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.5)  # the signal is noted; the import goes on
        return None
sys.meta_path.insert(0, SignalOnImport())
from multitudes.__main__ import run
run()
"""


def test_a_sigterm_while_starting_is_one_line():
    result = subprocess.run([sys.executable, "-c", SIGTERM_WHILE_IMPORTING, "models"], env=ENV,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 143, result.stderr
    assert result.stderr.strip().splitlines() == [
        "multitudes: terminated (SIGTERM) while starting; nothing was written"]


STARTS = [["train", "--preset", "debug", "--quiet"],
          ["scale", "--preset", "debug", "--quiet", "--members", "1"]]


@pytest.mark.parametrize("start", STARTS, ids=["train", "scale"])
def test_a_signal_at_any_moment_of_start_up_is_never_swallowed(start, tmp_path):
    """SIGINT or SIGTERM at random moments of the first 0.3 to 1.5 seconds: the one-line exit
    (130 or 143), never a traceback, never a run that goes on as if not signalled."""
    rng = random.Random(7)
    for trial in range(8):
        signum = rng.choice([signal.SIGINT, signal.SIGTERM])
        proc = subprocess.Popen([sys.executable, "-m", "multitudes", *start, "--out",
                                 str(tmp_path / f"r{trial}")], env=ENV,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(0.3, 1.5))
        proc.send_signal(signum)
        stderr = proc.communicate(timeout=120)[1]
        # After its one line, a process interrupted by SIGINT may end by SIGINT itself (Python
        # does so when it counts the interrupt unhandled): a shell reports both as 130.
        expected = (143,) if signum == signal.SIGTERM else (130, -signal.SIGINT)
        assert proc.returncode in expected, (proc.returncode, stderr)
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in stderr, stderr
        assert lines[0].startswith(("multitudes: interrupted", "multitudes: terminated")), lines


def test_a_killed_compare_resumes_to_the_same_numbers(tmp_path):
    reference, out = tmp_path / "reference", tmp_path / "killed"
    cli("compare", "--preset", "debug", "--out", reference, "--quiet")
    delay = kill_at_a_random_moment(["compare", "--preset", "debug", "--out", out, "--quiet"],
                                    out / "checkpoints" / "isolated" / "manifest.json", 2)
    assert not (out / "results.json").exists(), f"finished before the kill at +{delay:.2f}s"
    printed = cli("compare", "--resume", out, "--quiet").stdout
    a = json.loads((reference / "results.json").read_text())
    b = json.loads((out / "results.json").read_text())
    assert numbers(a) == numbers(b) and a["data_efficiency"] == b["data_efficiency"]
    assert (out / "report.html").is_file()
    # where the time went: the uninterrupted run's every phase, the resumed run's own share
    whole, resumed = (json.loads((d / "timings.json").read_text()) for d in (reference, out))
    assert not whole["resumed"] and resumed["resumed"]
    for phase in ("training steps", "dev scoring", "held-out scoring", "checkpoints"):
        assert whole["arms"]["social"][phase] > 0 and whole["arms"]["isolated"][phase] > 0
    assert whole["other_seconds"] >= 0 and sum(whole["phases"].values()) <= whole["total_seconds"]
    assert "social" not in resumed["arms"] or "training steps" not in resumed["arms"]["social"]
    assert re.search(r"^time: \d+m\d\ds \(training steps \d+%, .*other \d+%; timings\.json\)$",
                     printed, re.M), printed


def test_taught_arms_learn_from_their_teachers_and_resume_bit_for_bit(tmp_path):
    """Data-limited with compare.distill and compare.generations: one member (the genome of
    the isolated member the dev slice ranks first) taught by the social arm's dev-fit mixture,
    its control taught by the isolated ensemble, and a second generation bred from the social
    arm and taught by it; a kill while a student trains resumes to the same numbers (its
    teachers' carried states are part of its checkpoint); each sits on the curve."""
    args = ["--preset", "debug", "--set", "regime='data-limited'", "--set",
            "data.unique_bytes=4096", "--set", "evolution.every=0", "--set",
            "compare.distill=true", "--set", "compare.generations=2", "--set",
            "train.real_bytes=8192", "--set", "compare.student_alpha=0.75", "--quiet"]
    reference, out = tmp_path / "reference", tmp_path / "killed"
    cli("compare", *args, "--out", reference)
    a = json.loads((reference / "results.json").read_text())
    assert list(a["arms"])[-3:] == ["distilled", "distilled-ensemble", "generation-2"]
    born = a["arms"]["generation-2"]["members"]
    assert len(born) == len(a["arms"]["social"]["members"])
    assert "generation-2" in a["data_limited"]["placed"]
    # every student listens with compare.student_alpha, the social arm with its genomes' own
    alpha = {arm: {load_member(reference / m["checkpoint"])[0].alpha
                   for m in a["arms"][arm]["members"]}
             for arm in ("social", "distilled", "distilled-ensemble", "generation-2")}
    assert alpha["distilled"] == alpha["distilled-ensemble"] == alpha["generation-2"] == {0.75}
    assert 0.75 not in alpha["social"]
    isolated = a["arms"]["isolated"]["members"]
    ranked = min(isolated, key=lambda m: m["best_dev_bpb"])
    for student in ("distilled", "distilled-ensemble"):
        [member] = a["arms"][student]["members"]
        assert member["family"] == ranked["family"] and member["params"] == ranked["params"]
        assert student in a["data_limited"]["placed"]
        # the teachers' forwards, counted apart: each a third of its training FLOPs per byte,
        # over every byte the student read (its own training FLOPs are one member's)
        teachers = a["arms"]["social" if student == "distilled" else "isolated"]["members"]
        assert a["arms"][student]["teacher_flops"] == pytest.approx(
            sum(t["flops_per_byte"] for t in teachers) / 3
            * member["train_flops"] / member["flops_per_byte"])
    assert "teacher_flops" not in a["arms"]["social"]  # no frozen teacher heard
    # benchmarks/sweep_students.py trains the students again from the run's frozen teachers: at
    # the run's own listen weight it reproduces the run's student exactly, at another it differs
    rows = tmp_path / "students.jsonl"
    subprocess.run([sys.executable, BENCHMARKS / "sweep_students.py", "--run", reference,
                    "--alpha", "0.75,0", "--out", rows], capture_output=True, text=True,
                   check=True)
    swept = {r["student_alpha"]: r for r in map(json.loads, rows.read_text().splitlines())}
    in_run = a["arms"]["distilled"]["members"][0]["best_dev_bpb"]
    assert swept[0.75]["best"] == in_run and swept[0.0]["best"] != in_run
    (tmp_path / "link").symlink_to(rows)  # --out through a link: refused, rows untouched
    (tmp_path / "truncated").mkdir()
    (tmp_path / "truncated" / "results.json").write_text('{"arms": ')
    for bad, says in ((["--run", reference, "--alpha", "1", "--arm", "social-2"], "social-2"),
                      (["--run", tmp_path / "nowhere", "--alpha", "1"], "nowhere"),
                      (["--run", reference, "--alpha", "-1"], "--alpha"),
                      (["--run", reference, "--alpha", "0.5,x"], "--alpha"),
                      (["--run", reference, "--alpha", "1", "--out", tmp_path / "link"], "--out"),
                      (["--run", tmp_path / "truncated", "--alpha", "1"], "truncated")):
        refused = subprocess.run([sys.executable, BENCHMARKS / "sweep_students.py", *bad],
                                 capture_output=True, text=True)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
        assert says in refused.stderr.strip().splitlines()[-1]
    assert len(rows.read_text().splitlines()) == 2  # the finished rows, as they were
    # killed while a student trains: the reference points, finished before it, are in the
    # record already (each is written as it finishes), and the resumed run knows them as its
    # own (their milestones), so its results are the uninterrupted run's, byte for byte
    kept = tmp_path / "kept.json"
    recording = ["--set", f"compare.reference_record='{kept}'"]
    delay = kill_at_a_random_moment(["compare", *args, *recording, "--out", out],
                                    out / "checkpoints" / "distilled" / "manifest.json", 1)
    assert not (out / "results.json").exists(), f"finished before the kill at +{delay:.2f}s"
    points = json.loads(kept.read_text())["points"].values()
    assert sorted(p["config"]["unique_multiple"] for p in points) == [2, 4]
    assert [p["result"]["members"] for p in points] == [
        a["arms"][arm]["members"] for arm in ("isolated-2U", "isolated-4U")]
    # data_limited.py's bar for a seed (seed_progress.py) reads the killed run part way, in
    # member-steps, and the finished one whole: every arm's steps x its members, as it reports
    bars = subprocess.run([sys.executable, "-c", SEED_BARS, reference, out], cwd=BENCHMARKS,
                          capture_output=True, text=True, check=True).stdout.splitlines()
    whole = sum(x["steps"] * len(x["members"]) for x in a["arms"].values())
    assert bars[0].split()[:3] == [str(whole), str(whole), "generation-2"], bars
    assert bars[1].startswith("seed 1: 100%|") and "generation-2" in bars[1], bars
    planned, part, arm = bars[2].split()[:3]
    assert int(planned) == whole and 0 < int(part) < whole and arm == "distilled", bars
    assert "distilled" in bars[3] and "100%" not in bars[3], bars
    cli("compare", "--resume", out, "--quiet")
    b = json.loads((out / "results.json").read_text())
    assert numbers(a) == numbers(b) and a["data_limited"] == b["data_limited"]
    assert (out / "results.json").read_bytes() == (reference / "results.json").read_bytes()
    # benchmarks/data_limited.py tables finished seeds: two copies of this run give its
    # numbers with a spread of zero, and the paired differences the verdict reads
    for seed in (1, 2):
        (tmp_path / "seeds" / f"seed-{seed}").mkdir(parents=True)
        (tmp_path / "seeds" / f"seed-{seed}" / "results.json").write_text(json.dumps(a))
    table = subprocess.run([sys.executable, BENCHMARKS / "data_limited.py", "--out",
                            tmp_path / "seeds", "--table-only"], capture_output=True, text=True,
                           check=True).stdout
    social = a["arms"]["social"]
    assert (f"| social | {social['best_test_bpb']:.4f} ± 0.0000 | "
            f"{social['consensus_test_bpb']:.4f} ± 0.0000 | "
            f"{social['mixture_test_bpb']:.4f} ± 0.0000 |") in table
    lead = a["arms"]["isolated"]["mixture_test_bpb"] - social["mixture_test_bpb"]
    assert f"social mixture vs isolated mixture: {lead:+.4f} bpb" in table
    spread = (sum(m["valid_bpb"] for m in social["members"]) / len(social["members"])
              - social["consensus_valid_bpb"])  # the members' diversity, last column
    assert [line for line in table.splitlines() if line.startswith("| social |")][0].endswith(
        f"| {spread:.4f} ± 0.0000 |")
    # --against: the same seeds of another set (before a tuning), each changed arm's lead
    before = json.loads(json.dumps(a))
    before["arms"]["social"]["mixture_test_bpb"] += 0.01
    for seed in (1, 2):
        (tmp_path / "before" / f"seed-{seed}").mkdir(parents=True)
        (tmp_path / "before" / f"seed-{seed}" / "results.json").write_text(json.dumps(before))
    against = subprocess.run([sys.executable, BENCHMARKS / "data_limited.py", "--out",
                              tmp_path / "seeds", "--table-only", "--against",
                              tmp_path / "before"], capture_output=True, text=True,
                             check=True).stdout
    changed = [x for x in against.splitlines() if f"vs {tmp_path / 'before'}" in x]
    assert changed == [f"social mixture vs {tmp_path / 'before'}: +0.0100 bpb (per seed "
                       f"+0.0100, +0.0100; better in 2/2)"], changed
    # --reference: the arms placed on another set's curve. On its own, the table it gives;
    # on a curve whose points beyond U code lower, every arm placed there needs less data
    def placed_on(reference: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, BENCHMARKS / "data_limited.py", "--out",
                               tmp_path / "seeds", "--table-only", "--reference", reference],
                              capture_output=True, text=True)
    body = table.split("\n", 1)[1]
    assert placed_on(tmp_path / "seeds").stdout.split("\n", 1)[1] == body
    assert (tmp_path / "seeds" / "table-on-seeds.md").is_file()
    longer = json.loads(json.dumps(a))
    for q, name in zip(longer["data_limited"]["reference"][1:], ("isolated-2U", "isolated-4U")):
        for what in ("best", "consensus", "mixture"):
            q[f"{what}_test_bpb"] -= 0.05
            longer["arms"][name][f"{what}_test_bpb"] -= 0.05
    for seed in (1, 2):
        (tmp_path / "longer" / f"seed-{seed}").mkdir(parents=True)
        (tmp_path / "longer" / f"seed-{seed}" / "results.json").write_text(json.dumps(longer))
    lower = placed_on(tmp_path / "longer")
    assert lower.returncode == 0, lower.stderr
    row = next(x for x in lower.stdout.splitlines() if x.startswith("| isolated-2U |"))
    assert f"| {a['arms']['isolated-2U']['best_test_bpb'] - 0.05:.4f} ± 0.0000 |" in row
    ours = {arm: a["data_limited"]["placed"][arm]["mixture"]["vs_single"]
            for arm in ("social", "generation-2")}
    there = {}
    header = next(x for x in lower.stdout.splitlines() if x.startswith("| arm |")).split("|")
    mixture = next(i for i, h in enumerate(header) if h.strip().startswith("U'/U mixture"))
    for arm in ours:  # the mixture's U'/U vs the single member, found by its header
        cells = next(x for x in lower.stdout.splitlines() if x.startswith(f"| {arm} |"))
        there[arm] = float(cells.split("|")[mixture].split("x")[0].strip().lstrip("<=>"))
    # the lower curve: never more data, and less for an arm placed between its points
    assert all(there[arm] <= round(k, 2) for arm, k in ours.items()), (ours, there)
    assert any(there[arm] < round(k, 2) for arm, k in ours.items()), (ours, there)
    other = json.loads(json.dumps(a))
    other["arms"]["isolated"]["mixture_test_bpb"] += 0.01  # another seed's isolated arm on U
    (tmp_path / "other" / "seed-1").mkdir(parents=True)
    (tmp_path / "other" / "seed-1" / "results.json").write_text(json.dumps(other))
    (tmp_path / "cut" / "seed-1").mkdir(parents=True)  # a truncated results.json there
    (tmp_path / "cut" / "seed-1" / "results.json").write_text('{"arms": ')
    armless = json.loads(json.dumps(a))
    del armless["arms"]["isolated"]  # hand-edited: no isolated arm to compare on U
    (tmp_path / "armless" / "seed-1").mkdir(parents=True)
    (tmp_path / "armless" / "seed-1" / "results.json").write_text(json.dumps(armless))
    for where, says in ((tmp_path / "other", "isolated arm on U is not this set's"),
                        (tmp_path / "nowhere", "nowhere"), (tmp_path / "cut", "cut"),
                        (tmp_path / "armless", "without the isolated arm")):
        refused = placed_on(where)
        assert refused.returncode != 0 and refused.stderr.count("\n") == 1, refused.stderr
        assert says in refused.stderr and "Traceback" not in refused.stderr
    # --default: multiplier (a) on the default recipe's curve (each k x U read once); the
    # social mixture halfway in log k between a point at 1 and one at 2: sqrt(2) = 1.41x
    m = social["mixture_test_bpb"]
    default = json.loads(json.dumps(a))
    for q, bpb in zip(default["data_limited"]["reference"], (m + 0.1, m - 0.1, m - 0.3)):
        q["epochs"], q["best_test_bpb"] = 1.0, bpb
    for seed in (1, 2):
        (tmp_path / "default" / f"seed-{seed}").mkdir(parents=True)
        (tmp_path / "default" / f"seed-{seed}" / "results.json").write_text(json.dumps(default))

    def on_default(where: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, BENCHMARKS / "data_limited.py", "--out",
                               tmp_path / "seeds", "--table-only", "--default", where],
                              capture_output=True, text=True)
    done = on_default(tmp_path / "default")
    assert done.returncode == 0, done.stderr
    header = next(x for x in done.stdout.splitlines() if x.startswith("| arm |")).split("|")
    column = next(i for i, h in enumerate(header) if "default recipe's curve (a)" in h)
    cells = next(x for x in done.stdout.splitlines() if x.startswith("| social |")).split("|")
    assert cells[column].strip().endswith("/ 1.41x"), cells[column]
    refused = on_default(tmp_path / "seeds")  # its points read U many times: not the default
    assert refused.returncode == 2 and "not a default recipe's curve" in refused.stderr
    assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
    missing = subprocess.run([sys.executable, BENCHMARKS / "data_limited.py", "--out",
                              tmp_path / "seeds", "--table-only", "--against",
                              tmp_path / "nowhere"], capture_output=True, text=True)
    assert missing.returncode != 0 and missing.stderr.count("\n") == 1, missing.stderr
    assert "Traceback" not in missing.stderr
    (tmp_path / "seeds" / "seed-2" / "results.json").write_text('{"arms": ')  # truncated
    damaged = subprocess.run([sys.executable, BENCHMARKS / "data_limited.py", "--out",
                              tmp_path / "seeds", "--table-only"], capture_output=True, text=True)
    assert damaged.returncode != 0 and damaged.stderr.count("\n") == 1, damaged.stderr
    assert "seed-2's results" in damaged.stderr and "Traceback" not in damaged.stderr
    one_line_error(cli("compare", "--preset", "debug", "--set", "compare.distill=true",
                       "--out", tmp_path / "stream", check=False), "data-limited regime")
    one_line_error(cli("compare", "--preset", "debug", "--set", "compare.generations=1",
                       "--out", tmp_path / "stream", check=False), "at least 2")


def test_a_reference_record_in_a_new_folder_has_it_made_before_any_training(tmp_path):
    """The record's folder is made when the record opens, not when the first point is written
    hours later; a folder that cannot be made is one line, up front."""
    record = ReferenceRecord.open(str(tmp_path / "refs" / "deeper" / "limited.json"))
    assert (tmp_path / "refs" / "deeper").is_dir() and record.points == {}
    result = {"epochs": 2.0, "best_test_bpb": 3.0, "consensus_test_bpb": 3.0,
              "mixture_test_bpb": 3.0, "best_valid_bpb": 3.0, "consensus_valid_bpb": 3.0,
              "best_member": "m0", "curve": [], "members": [
                  {"id": "m0", "family": "gpt", "params": 1, "valid_bpb": 3.0, "test_bpb": 3.0}]}
    record.add({"k": 2}, result, "cpu")
    assert ReferenceRecord.open(str(record.path)).find({"k": 2}) == result
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(UserError, match="cannot make its folder"):
        ReferenceRecord.open(str(tmp_path / "a-file" / "limited.json"))


def test_the_reference_record_keeps_the_points_beyond_U_and_a_second_run_reads_them(tmp_path):
    """compare.reference_record: the first data-limited compare trains the reference on 2U and
    4U and records them; a second one reads them (same numbers, same placement, no training);
    another recipe's points are trained and added beside them; a damaged record, a folder and
    the stream regime are one line each."""
    record = tmp_path / "reference.json"
    args = ["--preset", "debug", "--set", "regime='data-limited'", "--set",
            "data.unique_bytes=4096", "--set", "evolution.every=0", "--set",
            "train.real_bytes=8192", "--set", f"compare.reference_record='{record}'", "--quiet"]
    cli("compare", *args, "--out", tmp_path / "first")
    first = json.loads((tmp_path / "first" / "results.json").read_text())
    points = json.loads(record.read_text())["points"]
    assert sorted(p["config"]["unique_multiple"] for p in points.values()) == [2, 4]
    assert not any("from_record" in a for a in first["arms"].values())
    second_run = cli("compare", *args, "--out", tmp_path / "second")
    second = json.loads((tmp_path / "second" / "results.json").read_text())
    assert "isolated-2U: read from the reference record" in second_run.stdout
    assert (f"read from the reference record {record}, not trained here: isolated-2U, "
            f"isolated-4U") in second_run.stdout  # the result table says so too
    assert second["data_limited"] == first["data_limited"]
    for arm in ("isolated-2U", "isolated-4U"):  # their checkpoints are in the first run
        assert second["arms"][arm]["from_record"] == str(record)
        assert second["arms"][arm]["members"] == [
            {k: v for k, v in m.items() if k != "checkpoint"}
            for m in first["arms"][arm]["members"]]
        assert not (tmp_path / "second" / "checkpoints" / arm).exists()  # not trained
    assert numbers(second)["social"] == numbers(first)["social"]
    # a point's numbers are its own config's, not its grid's (why the key leaves the grid out):
    # 4U trained in a grid without 2U, and without the record, is the same arm
    alone = args[:args.index(f"compare.reference_record='{record}'") - 1] + ["--quiet"]
    cli("compare", *alone, "--set", "compare.unique_multiples=[1, 4]", "--out", tmp_path / "grid")
    grid = json.loads((tmp_path / "grid" / "results.json").read_text())
    assert list(grid["arms"]) == ["social", "isolated", "isolated-4U"]
    assert grid["arms"]["isolated-4U"]["members"] == first["arms"]["isolated-4U"]["members"]
    # the social arm's alpha and tau tuned against the same reference: read, not trained
    tuned = cli("compare", *args, "--set", "members.*.alpha=0.9", "--set", "members.*.tau=2.0",
                "--out", tmp_path / "tuned")
    assert "isolated-4U: read from the reference record" in tuned.stdout
    assert len(json.loads(record.read_text())["points"]) == 2
    cli("compare", *args, "--set", "members.0.lr=0.02", "--out", tmp_path / "other")
    assert len(json.loads(record.read_text())["points"]) == 4
    record.write_text('{"format": "multitudes reference record", "version": 1, "points": 3}')
    one_line_error(cli("compare", *args, "--out", tmp_path / "damaged", check=False),
                   "is damaged or not a reference record")
    link = tmp_path / "link.json"  # never written through: the record is refused up front
    link.symlink_to(tmp_path / "elsewhere.json")
    one_line_error(cli("compare", *args, "--set", f"compare.reference_record='{link}'",
                       "--out", tmp_path / "linked", check=False), "is a symbolic link")
    assert not (tmp_path / "elsewhere.json").exists()
    folder = ["--set", f"compare.reference_record='{tmp_path}'"]
    one_line_error(cli("compare", *args, *folder, "--out", tmp_path / "folder", check=False),
                   "not a regular file")
    one_line_error(cli("compare", "--preset", "debug", *folder, "--out", tmp_path / "stream",
                       check=False), "data-limited regime")


DISK_FULL = """
import errno, os, sys
from multitudes.runs import checkpoint as checkpoint
from multitudes.cli.main import main
real_save, calls = checkpoint.save_file, [0]
def save_file(tensors, filename, *args, **kwargs):
    if "checkpoints" in str(filename):
        calls[0] += 1
        if calls[0] > int(os.environ["FILES_BEFORE_FULL"]):  # the disk fills up mid-file
            with open(filename, "wb") as f:
                f.write(b"half a tensor")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(filename))
    return real_save(tensors, filename, *args, **kwargs)
checkpoint.save_file = save_file
main(sys.argv[1:])
"""


def test_disk_full_while_checkpointing_keeps_the_previous_checkpoint(debug_run, tmp_path):
    out = tmp_path / "full"
    files_per_checkpoint = 7  # 2 members x (model, optimizer, rng) + the population
    env = {**ENV, "FILES_BEFORE_FULL": str(files_per_checkpoint + 3)}
    result = subprocess.run([sys.executable, "-c", DISK_FULL, "train", "--preset", "debug",
                             "--out", str(out), "--quiet"], capture_output=True, text=True,
                            env=env, timeout=600)
    one_line_error(result, "No space left on device")
    assert "previous checkpoint is kept" in result.stderr
    from multitudes.runs import checkpoint
    _, state = checkpoint.load(out / "checkpoints" / "social")
    assert state["steps"] == 4  # the first checkpoint, intact
    cli("train", "--resume", out, "--quiet")  # space freed: the run goes on and ends the same
    a = json.loads((debug_run / "results.json").read_text())
    b = json.loads((out / "results.json").read_text())
    assert numbers(a) == numbers(b)


def test_compare_writes_results_and_report(tmp_path):
    out = tmp_path / "cmp"
    result = cli("compare", "--preset", "debug", "--out", out, "--quiet")
    assert "data efficiency of the social arm" in result.stdout
    results = json.loads((out / "results.json").read_text())
    assert set(results["arms"]) == {"isolated", "social"}
    assert results["real_bytes"] == 16384
    for arm in results["arms"].values():
        assert {"members", "best_test_bpb", "consensus_test_bpb", "train_flops",
                "curve"} <= set(arm)
        for m in arm["members"]:
            assert {"id", "family", "params", "valid_bpb", "test_bpb", "checkpoint"} <= set(m)
    # wsd: the isolated arm reads on through finished runs (cooldowns off its trunk) until one
    # reaches the social arm's dev bpb, M x N at most
    finished = results["arms"]["isolated"]["finished"]
    social_bpb, N = results["arms"]["social"]["curve"][-1]["best_dev_bpb"], 16384
    assert finished[0]["real_bytes"] == N
    assert [p["best_dev_bpb"] <= social_bpb for p in finished[:-1]] == [False] * (len(finished) - 1)
    assert finished[-1]["best_dev_bpb"] <= social_bpb or finished[-1]["real_bytes"] == 2 * N
    assert isinstance(results["data_efficiency"], float) or results["data_efficiency"] is None
    # the headline: the equal-bytes gap on valid beyond the dev slice, over paired blocks whose
    # mean is (up to the blocks' unequal sizes) the difference of the arms' valid bpb
    gap, arms = results["equal_bytes_gap"], results["arms"]
    assert gap["consensus"]["blocks"] == 32 and gap["consensus"]["se"] > 0
    assert gap["consensus"]["mean"] == pytest.approx(
        arms["isolated"]["consensus_valid_bpb"] - arms["social"]["consensus_valid_bpb"], abs=1e-3)
    ranked = {a: arms[a]["valid_blocks"]["best_by_dev_member"] for a in ("social", "isolated")}
    assert gap["best_by_dev"]["mean"] == pytest.approx(
        next(m["valid_bpb"] for m in arms["isolated"]["members"] if m["id"] == ranked["isolated"])
        - next(m["valid_bpb"] for m in arms["social"]["members"] if m["id"] == ranked["social"]),
        abs=1e-3)
    assert "the social arm's lead over the isolated arm is" in result.stdout
    # the yardsticks: every compressor, given the bytes the arms read, on dev, valid and test
    ys = results["yardsticks"]
    assert ys["read_bytes"] == N and set(ys) == {"read_bytes", "dev", "valid", "test"}
    for split in ("dev", "valid", "test"):
        assert set(ys[split]) == {"gzip", "bzip2", "xz", "ppmd"}
        assert all(1.0 < v["given"] <= v["alone"] + 0.01 for v in ys[split].values())
    assert "PPMd order 8" in result.stdout and "given the same 16,384 bytes" in result.stdout
    # a finished isolated run at N is what a run of N bytes alone would be, bit for bit
    alone = tmp_path / "alone"
    cli("train", "--preset", "debug", "--set", "social.channel='none'", "--set",
        "evolution.every=0", "--out", alone, "--quiet")
    alone_results = json.loads((alone / "results.json").read_text())
    assert numbers(alone_results)["isolated"] == numbers(results)["isolated"]
    page = (out / "report.html").read_text()
    # curves, compute, multiplier, then the social arm's family tree and newborns' curves
    assert page.count("data:image/png;base64,") == 5 and "consensus" in page
    assert "Family tree of the social arm" in page and "Newborns of the social arm" in page
    assert "culture" in results["arms"]["social"] and "culture" not in results["arms"]["isolated"]
    (out / "report.html").unlink()
    cli("report", out)
    assert (out / "report.html").is_file()
    # results.json speaks the run loop's vocabulary (schema 3: every arm says its kind); a
    # schema-1 file (its curve's best_bpb and consensus_bpb, no kinds) is read as schema 3,
    # a newer one refused in one line
    assert results["schema"] == 3
    assert results["arms"]["social"]["arm"] == {"kind": "measured", "listens": True}
    assert results["arms"]["isolated"]["arm"] == {"kind": "reference", "listens": False, "k": 1}
    assert results["arms"]["social"]["curve"][-1]["best_dev_bpb"] == min(
        r["best_dev_bpb"] for r in map(json.loads, (out / "metrics.jsonl").open())
        if r["arm"] == "social" and r["real_bytes"] == N)
    old = json.loads(json.dumps({k: v for k, v in results.items() if k != "schema"}))
    for arm in old["arms"].values():
        del arm["arm"]
        arm["curve"] = [{{"best_dev_bpb": "best_bpb", "consensus_dev_bpb": "consensus_bpb"}
                         .get(k, k): v for k, v in point.items()} for point in arm["curve"]]
    (out / "results.json").write_text(json.dumps(old))
    from multitudes.runs.results import read
    assert read(out / "results.json") == results
    page = (out / "report.html").read_text()
    cli("report", out)
    assert (out / "report.html").read_text() == page
    # where the time went (timings.json): each arm's seconds per phase; a run from before
    # timings were kept has no such section, a damaged file is one line
    assert "Where the time went" in page
    assert "<td>social</td>" in page and "<td>isolated</td>" in page
    timings = (out / "timings.json").read_text()
    (out / "timings.json").unlink()
    cli("report", out)
    assert "Where the time went" not in (out / "report.html").read_text()
    for damaged, says in (('{"arms": ', "unreadable"), ('{"arms": {"social": {}}}', "damaged"),
                          (timings.replace('"training steps": ', '"training steps": "x", "y": '),
                           "damaged")):
        (out / "timings.json").write_text(damaged)
        one_line_error(cli("report", out, check=False), says)
    (out / "results.json").write_text(json.dumps({**results, "schema": 4}))
    one_line_error(cli("report", out, check=False), "schema 4")


def one_line_error(result, needle):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("multitudes: error:") and needle in lines[0], lines[0]


@pytest.mark.parametrize("args, needle", [
    (["train", "--preset", "nope"], "unknown preset 'nope'"),
    (["train", "--preset", "debug", "--set", "train.batch_sise=2"], "unknown key train.batch_sise"),
    (["train", "--preset", "debug", "--set", "train.batch_size=x"], "expected int"),
    (["train", "--preset", "debug", "--set", "members.0.d_model=33"], "divisible by n_head"),
    (["train", "--preset", "debug", "--set", "members.0.alpha=-1"], "must be non-negative"),
    (["train", "--preset", "debug", "--set", "data.corpus='enwik7'"], "unknown corpus"),
    (["train", "--preset", "debug", "--set", "data.corpus='file:/nonexistent'"], "does not exist"),
    (["train", "--preset", "debug", "--set", "data.corpus='file:/'"], "is not a regular file"),
    (["train", "--preset", "debug", "--set", "train.real_bytes=-5"], "must be positive"),
    (["train", "--preset", "debug", "--set", "evolution.inherit='aunt'"], "evolution.inherit"),
    (["train", "--preset", "debug", "--set", "train.side_by_side='yes'"], "expected bool"),
    (["train", "--preset", "debug", "--set", "evolution.families=['gru', 'mamba']"],
     "evolution.families=['gru', 'mamba']: expected a list of at least two distinct families"),
    (["train", "--preset", "debug", "--set", "evolution.families=['gru', 'ssm']", "--set",
      "evolution.budget=30000"], "evolution.budget=30,000 parameters is below the smallest ssm"),
    (["train", "--preset", "debug", "--set", "members.0.family='ssm'", "--set",
      "members.0.n_loop=2"], "only the looped family loops; ssm needs n_loop=1"),
    (["compare", "--preset", "debug", "--set", "train.compile='yes'"], "expected bool"),
    (["compare", "--preset", "debug", "--set", "regime='data-limited'", "--set",
      "data.unique_bytes=4096", "--set", "compare.generations=2", "--set",
      "social.channel='complement'"], "complement' with compare.generations"),
    (["train", "--preset", "debug", "--set", "social.channel='anticonsensus'"],
     "expected one of none, logit, complement"),
    (["train", "--preset", "debug", "--set", "train.precision='half'"], "train.precision"),
    (["train", "--config", "/nonexistent.toml"], "does not exist"),
    (["train", "--preset", "debug", "--set", "train.device='cuda'"], "no CUDA"),
    (["train", "--preset", "../../some/file"], "a preset is a name"),
    (["train", "--preset", "debug", "--set", "name='x/../../elsewhere'"], "a name is"),
    (["train", "--resume", "/nonexistent-run"], "no run there"),
    (["eval", "/nonexistent"], "does not exist"),
    (["train", "--bogus"], "No such option"),
    (["train", "--preset", "debug", "--set", "train.eval_stride=100000"], "at most the context"),
    (["train", "--preset", "debug", "--set", "social.language_every=4", "--set",
      "social.language_length=64"], "must be less than the context 64"),
    (["train", "--preset", "debug", "--set", 'regime="data-limited"', "--set",
      "data.unique_bytes=1000000000"], "is more than the 3,272,434 bytes"),
    (["compare", "--preset", "debug", "--set", 'regime="data-limited"', "--set",
      "data.unique_bytes=1000000"],
     "largest point, 4 x data.unique_bytes = 4,000,000 bytes, is more than"),
    (["compare", "--preset", "debug", "--set", 'regime="data-limited"', "--set",
      "data.unique_bytes=4096", "--set", "compare.unique_multiples=[2, 4]"], "starting at 1"),
    (["compare", "--preset", "debug", "--set", 'regime="data-limited"', "--set",
      "data.unique_bytes=4096", "--set", "compare.unique_multiples=[1, 4, 2]"], "increasing"),
    (["compare", "--preset", "debug", "--set", "compare.reference_min_epochs=-1"],
     "compare.reference_min_epochs=-1"),
    (["compare", "--preset", "limited", "--set", "compare.reference_epochs=[16, 8]"],
     "one positive number of epochs per reference point beyond U (3 for"),
    (["compare", "--preset", "limited", "--set", "compare.elder_weight=2"],
     "compare.elder_weight=2"),
    (["compare", "--preset", "limited", "--set", "compare.student_alpha=-1"],
     "compare.student_alpha=-1"),
    (["compare", "--preset", "limited", "--set", "compare.generations=-3"],
     "compare.generations=-3"),
    (["compare", "--preset", "limited", "--set", "compare.evolution_ablation=true"],
     "one at a time"),
    (["compare", "--preset", "limited", "--set", "compare.teachers='some'"],
     "compare.teachers='some': expected one of parent, all"),
    (["compare", "--preset", "debug", "--set", "compare.mixture_fit='unique'"],
     "compare.mixture_fit='unique' carves the mixture's slice out of the data-limited"),
    (["compare", "--preset", "debug", "--set", "compare.apart=true"],
     "need compare.generations >= 2"),
    (["compare", "--preset", "limited", "--set", "compare.snapshot_social=true"],
     "compare.snapshot_social needs compare.snapshot_cycles >= 2"),
    (["compare", "--preset", "limited", "--set", "compare.ensemble_compute=[1]"],
     "compare.ensemble_compute=[1]: expected increasing numbers in (1, 100]"),
    (["compare", "--preset", "limited", "--set", "compare.ensemble_compute=[2, 1.5]"],
     "compare.ensemble_compute=[2, 1.5]"),
    (["compare", "--preset", "limited", "--set", "compare.ensemble_compute=[1e9]"],
     "compare.ensemble_compute=[1000000000.0]"),
    (["compare", "--preset", "limited", "--set", "compare.ensemble_compute=[true]"],
     "compare.ensemble_compute=[True]"),
    (["compare", "--preset", "limited", "--set", "compare.ensemble_compute=1.5"],
     "compare.ensemble_compute"),
    (["compare", "--preset", "debug", "--set", "compare.ensemble_compute=[1.5]"],
     "compare.ensemble_compute is an arm of the data-limited regime"),
    (["compare", "--preset", "debug", "--set", "compare.snapshot_cycles=2"],
     "compare.snapshot_cycles is an arm of the data-limited regime"),
    (["compare", "--preset", "limited", "--set", "compare.ensemble_members=[4]"],
     "compare.ensemble_members=[4]: each must be more than the config's 4 members"),
    (["compare", "--preset", "limited", "--set", "compare.ensemble_members=[8, 6]"],
     "compare.ensemble_members=[8, 6]: expected increasing integers in [2, 256]"),
    (["compare", "--preset", "limited", "--set", "compare.ensemble_members=[5.5]"],
     "compare.ensemble_members=[5.5]"),
    (["compare", "--preset", "limited", "--set", "compare.ensemble_members=[100000]"],
     "compare.ensemble_members=[100000]"),
    (["compare", "--preset", "limited", "--set", "compare.ensemble_members=[true]"],
     "compare.ensemble_members=[True]"),
    (["compare", "--preset", "limited", "--set", "compare.ensemble_members=5"],
     "compare.ensemble_members=5"),
    (["compare", "--preset", "limited", "--set", "compare.retuned.gru.lr=inf"],
     "compare.retuned.gru: genome field lr=inf: must be finite"),
    (["train", "--preset", "debug", "--set", "members.0.weight_decay=nan"],
     "genome field weight_decay=nan: must be non-negative"),
    (["train", "--preset", "debug", "--set", "train.grad_clip=inf"],
     "train.grad_clip=inf: must be finite"),
    (["compare", "--preset", "limited", "--set", "compare.retuned.ssm.dropout=0.2"],
     "compare.retuned.ssm: the config has no ssm member"),
    (["compare", "--preset", "limited", "--set", "compare.retuned.gru.d_model=256"],
     "compare.retuned.gru.d_model: not a recipe field"),
    (["compare", "--preset", "limited", "--set", "compare.retuned.gru.dropout=1.5"],
     "compare.retuned.gru: genome field dropout=1.5: must be in [0, 1)"),
    (["compare", "--preset", "limited", "--set", "compare.retuned.gru.dropout=true"],
     "compare.retuned.gru.dropout=True: expected a number"),
    (["compare", "--preset", "limited", "--set", "compare.retuned.gru=0.2"],
     "compare.retuned.gru=0.2: expected a table of recipe fields"),
    (["compare", "--preset", "limited", "--set", "compare.retuned=1"],
     "compare.retuned=1: expected a table of families"),
    (["compare", "--preset", "debug", "--set", "compare.retuned.gpt.dropout=0.1"],
     "compare.retuned is an arm of the data-limited regime"),
    (["compare", "--preset", "limited", "--set", "compare.lineage=1"],
     "compare.lineage"),
    (["compare", "--preset", "debug", "--set", "compare.lineage=true"],
     "compare.apart, compare.lineage, compare.teachers and compare.breed shape the generations"),
    (["compare", "--preset", "debug", "--set", "compare.ensemble_members=[5]"],
     "compare.ensemble_members is an arm of the data-limited regime"),
])
def test_bad_input_is_one_line_and_exit_2(args, needle, tmp_path):
    one_line_error(cli(*args, "--out", tmp_path / "o", check=False)
                   if args[0] in ("train", "compare") and "--resume" not in args
                   and "--bogus" not in args else cli(*args, check=False), needle)


def test_empty_data_file(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    one_line_error(cli("train", "--preset", "debug", "--out", tmp_path / "o", "--set",
                       f"data.corpus='file:{empty}'", check=False), "is empty")


def test_damaged_member_checkpoint(debug_run, tmp_path):
    import shutil
    ck = tmp_path / "ck"
    first = json.loads((debug_run / "results.json").read_text())["arms"]["social"]["members"][0]
    shutil.copytree(debug_run / first["checkpoint"], ck)
    raw = bytearray((ck / "model.safetensors").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (ck / "model.safetensors").write_bytes(bytes(raw))
    one_line_error(cli("eval", ck, check=False), "fails its sha256")
    (ck / "model.safetensors").write_bytes(bytes(raw[:100]))
    one_line_error(cli("eval", ck, check=False), "fails its sha256")


def test_an_existing_run_is_not_overwritten(debug_run):
    before = (debug_run / "results.json").read_bytes()
    one_line_error(cli("train", "--preset", "debug", "--out", debug_run, check=False),
                   "already holds a run")
    assert (debug_run / "results.json").read_bytes() == before


def test_listings():
    assert {"gpt", "looped", "lstm", "gru"} <= set(cli("models").stdout.split())
    assert "quick" in cli("presets").stdout


def test_lineage_is_recorded_drawn_and_replayed(debug_run, tmp_path):
    rows = [json.loads(x) for x in (debug_run / "lineage.jsonl").read_text().splitlines()]
    births = [r for r in rows if r["event"] == "birth"]
    deaths = [r for r in rows if r["event"] == "death"]
    assert [b["member"] for b in births[:2]] == ["m0-gpt", "m1-lstm"]  # the founders
    assert len(births) - 2 == len(deaths) == 3  # generations at steps 8, 16, 24
    for b in births[2:]:
        assert b["parents"] and b["ops"] and b["fitness"] > 0 and b["real_bytes"] > 0
    tree = cli("lineage", debug_run).stdout
    assert "social: 5 births, 3 deaths" in tree and "founder" in tree
    for b in births[2:]:
        assert f"{b['member']}" in tree and f"born at step {b['step']}" in tree
    result = cli("replay", debug_run, "--out", tmp_path / "replayed", "--quiet")
    assert "the same numbers, bit for bit" in result.stdout
    one_line_error(cli("lineage", tmp_path, check=False), "no lineage.jsonl")


def test_the_evolution_ablation_runs_three_arms_at_equal_bytes(tmp_path):
    out = tmp_path / "ablation"
    result = cli("compare", "--preset", "debug", "--set", "compare.evolution_ablation=true",
                 "--out", out, "--quiet")
    assert "data efficiency of the social+evolution arm" in result.stdout
    results = json.loads((out / "results.json").read_text())
    assert list(results["arms"]) == ["social", "social+evolution", "isolated"]
    assert {a["real_bytes"] for a in results["arms"].values()} == {16384}
    rows = [json.loads(x) for x in (out / "lineage.jsonl").read_text().splitlines()]
    assert {r["arm"] for r in rows} == {"social+evolution"}  # only that arm has generations
    assert "reached" in " ".join(results["evolution_data_efficiency"])


def test_the_data_limited_regime_end_to_end(tmp_path):
    out = tmp_path / "limited"
    result = cli("compare", "--preset", "debug", "--set", "regime='data-limited'", "--set",
                 "data.unique_bytes=4096", "--set", "evolution.every=0", "--set",
                 "compare.reference_min_epochs=2", "--out", out, "--quiet")
    assert "data efficiency of the social arm" in result.stdout
    assert "data-scaling reference" in result.stdout
    results = json.loads((out / "results.json").read_text())
    assert list(results["arms"]) == ["social", "isolated", "isolated-2U", "isolated-4U"]
    assert results["data_efficiency_bound"] == 4
    for name, arm in results["arms"].items():
        # every arm reads N real bytes, but a reference point that would read fewer than
        # reference_min_epochs passes over its k x U reads on to them
        unique = {"isolated-2U": 8192, "isolated-4U": 16384}.get(name, 4096)
        assert arm["real_bytes"] == max(16384, 2 * unique)
        assert arm["epochs"] == pytest.approx(arm["real_bytes"] / unique, rel=0.05)
        # the ensemble with a held-out prior: weights fit on the dev slice, a distribution
        assert sum(arm["mixture_weights"].values()) == pytest.approx(1, abs=1e-4)
        assert arm["mixture_valid_bpb"] <= arm["consensus_valid_bpb"] + 0.05
        # on the dev slice it was fit to, EM from uniform weights can only do better than them
        assert arm["mixture_dev_bpb"] <= arm["consensus_dev_bpb"] + 1e-9
        for m in arm["members"]:  # each member scored with its best dev weights
            assert m["best_step"] <= arm["steps"] and m["epochs_to_best"] <= arm["epochs"]
    limited = results["data_limited"]
    assert [q["k"] for q in limited["reference"]] == [1, 2, 4]
    assert set(limited["placed"]) == {"social"}
    assert set(limited["ensemble"]) == {"consensus", "mixture"}
    assert [a["arm"].get("k") for a in results["arms"].values()] == [None, 1, 2, 4]
    best = limited["placed"]["social"]["best"]
    assert best["test_bpb"] == results["arms"]["social"]["best_test_bpb"]
    assert best["vs_single_flag"] in ("", "<=", ">") and 1 <= best["vs_single"] <= 4
    assert "epochs to best" in (out / "report.html").read_text()
    social, alone = results["arms"]["social"], results["arms"]["isolated"]
    if alone["best_valid_bpb"] < social["best_valid_bpb"]:
        assert results["data_efficiency_at_most"] and "<= 1.00x" in result.stdout


@pytest.mark.parametrize("size", [1, 5, 80])
def test_a_data_file_too_small_is_one_line_and_writes_nothing(size, tmp_path):
    data, out = tmp_path / "small.bin", tmp_path / "run"
    data.write_bytes(b"x" * size)
    one_line_error(cli("train", "--preset", "debug", "--set", f"data.corpus='file:{data}'",
                       "--out", out, check=False), "too few for this config")
    assert not out.exists()


@pytest.mark.parametrize("stride", [-5, 100000])
def test_eval_refuses_a_stride_outside_the_context(debug_run, stride):
    one_line_error(cli("eval", debug_run, "--stride", stride, check=False), "--stride")


def test_no_place_for_the_run_is_one_line(tmp_path):
    one_line_error(cli("train", "--preset", "debug", "--out", "/dev/null", check=False),
                   "cannot write a run there")


def test_a_malformed_mirror_url_is_one_line(tmp_path):
    env = {**ENV, "MULTITUDES_DATA_URL": "not a url", "MULTITUDES_CACHE": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "multitudes", "train", "--preset", "debug",
                             "--set", "data.corpus='enwik8'", "--out", str(tmp_path / "o")],
                            capture_output=True, text=True, env=env, timeout=600)
    one_line_error(result, "MULTITUDES_DATA_URL")


def test_out_of_memory_is_one_line_and_leaves_the_directory_reusable(tmp_path):
    out = tmp_path / "o"
    one_line_error(cli("train", "--preset", "debug", "--out", out, "--set",
                       "members.0.d_model=1048576", check=False), "out of memory")
    assert not (out / "checkpoints").exists()
    # nothing was finished there: the same --out takes a new run without --force
    cli("train", "--preset", "debug", "--out", out, "--quiet", "--set", "train.real_bytes=4096")
    assert (out / "results.json").is_file()


def test_a_run_directory_has_one_writer(debug_run):
    from multitudes.runs import files as run_files
    run_files.lock_run_dir(debug_run)  # as a running `multitudes` holds it
    try:
        one_line_error(cli("train", "--resume", debug_run, check=False),
                       "in use by another multitudes process")
    finally:
        run_files.release(debug_run)


def test_an_edited_config_is_not_resumed(debug_run, tmp_path):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(debug_run, copy)
    record = json.loads((copy / "config.json").read_text())
    record["config"]["train"]["batch_size"] = 4
    (copy / "config.json").write_text(json.dumps(record))
    one_line_error(cli("train", "--resume", copy, check=False), "config.json was edited")


@pytest.mark.parametrize("stride", ["-5", "100000"])
def test_an_eval_stride_outside_the_context_is_one_line(debug_run, stride):
    one_line_error(cli("eval", debug_run, "--stride", stride, check=False), f"--stride {stride}")


def test_eval_adaptive_codes_a_file_as_a_compressor_does(debug_run, tmp_path):
    from conftest import write_text_corpus
    from multitudes.evaluation.adaptive import LEARNING_RATES
    corpus = f"file:{write_text_corpus(tmp_path / 'text.txt')}"
    member = debug_run / json.loads((debug_run / "results.json").read_text())[
        "arms"]["social"]["members"][0]["checkpoint"]
    row = json.loads(cli("eval", member, "--data", corpus, "--adaptive", "--dev-bytes", 4096,
                         "--json").stdout)
    tried = {float(k): v for k, v in row["adaptive_dev_bpb"].items()}
    assert set(tried) == set(LEARNING_RATES)
    assert row["adaptive_lr"] == min(tried, key=tried.get)  # the dev slice chose it
    assert row["adaptive_lr"] > 0 and row["adaptive_bpb"] < row["bpb"] - 0.5  # a new text: it adapts
    fixed = json.loads(cli("eval", member, "--data", corpus, "--adaptive-lr", 0, "--json").stdout)
    assert fixed["adaptive_dev_bpb"] is None
    assert fixed["adaptive_bpb"] == pytest.approx(fixed["bpb"], abs=1e-4)  # rate 0: static
    text = cli("eval", debug_run, "--data", corpus, "--adaptive-lr", 1e-3).stdout
    scored = [line for line in text.splitlines() if "test bpb" in line]
    assert len(scored) == 3  # the debug run's two members and their consensus
    assert all(re.search(r"adaptive \d+\.\d{4}", line) for line in scored)
    one_line_error(cli("eval", member, "--adaptive-lr", -1, check=False), "--adaptive-lr -1")


@pytest.mark.parametrize("rate", ["nan", "inf", "-1"])
def test_a_non_finite_adaptive_rate_is_one_line(debug_run, rate):
    one_line_error(cli("eval", debug_run, f"--adaptive-lr={rate}", check=False),
                   "must be a number from 0 to 1")


def test_eval_on_a_tiny_file_is_one_line(debug_run, tmp_path):
    tiny = tmp_path / "one.txt"
    tiny.write_bytes(b"a")
    one_line_error(cli("eval", debug_run, "--data", f"file:{tiny}", check=False),
                   "nothing to score")


def test_a_resume_with_another_thread_count_says_so(debug_run, tmp_path):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(debug_run, copy)
    record = json.loads((copy / "config.json").read_text())
    record["threads"] += 1
    (copy / "config.json").write_text(json.dumps(record))
    result = cli("train", "--resume", copy, "--quiet")
    assert f"started with {record['threads']} CPU thread(s)" in result.stderr


def test_eval_scores_a_whole_file_with_split_all(debug_run, tmp_path):
    text = tmp_path / "mine.txt"
    text.write_bytes(b"I am large, I contain multitudes. " * 30)
    result = cli("eval", debug_run, "--data", f"file:{text}", "--split", "all", "--json")
    rows = json.loads(result.stdout)["members"]
    assert {r["bytes_scored"] for r in rows} == {len(text.read_bytes()) - 1}


def test_a_very_slow_config_is_announced(capsys):
    from multitudes.config import files as config_files
    from multitudes.cli.main import _warn_if_slow
    _warn_if_slow(config_files.load("quick", None, []))
    assert capsys.readouterr().err == ""
    _warn_if_slow(config_files.load("debug", None, ["members.*.context=1",
                                                    "train.real_bytes=1000000000"]))
    assert "member-steps per arm" in capsys.readouterr().err


def test_a_run_killed_while_starting_blocks_nothing(tmp_path):
    """SIGKILL while it starts: once during the imports, once as soon as config.json is written
    (before any checkpoint). The same command then runs in the same directory, without --force,
    and finishes."""
    out = tmp_path / "o"
    args = ["train", "--preset", "debug", "--out", out, "--quiet"]
    for started in (lambda: True, lambda: (out / "config.json").exists()):
        proc = subprocess.Popen([sys.executable, "-m", "multitudes", *map(str, args)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
        deadline = time.time() + 120
        while not started() and time.time() < deadline:
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not (out / "checkpoints").exists()
    assert (out / "config.json").exists()  # the second kill came after the run had begun
    cli(*args)  # the kills left nothing that blocks: no "already holds a run", no stale lock
    assert (out / "results.json").is_file()


def test_a_finished_train_run_reads_on_when_resumed_with_more_bytes(debug_run, tmp_path):
    """`--resume DIR --set train.real_bytes=...`: the run goes on from its last checkpoint and
    is scored anew at the new length; unsafe keys are refused in one line."""
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(debug_run, copy)
    before = json.loads((copy / "results.json").read_text())
    one_line_error(cli("train", "--resume", copy, "--set", "train.batch_size=4", check=False),
                   "may change only")
    one_line_error(cli("train", "--resume", copy, "--set", "train.real_bytes=4096",
                       check=False), "reads on, not back")
    cli("train", "--resume", copy, "--quiet", "--set", "train.real_bytes=24576")
    after = json.loads((copy / "results.json").read_text())
    assert before["real_bytes"] == 16384 and after["real_bytes"] == 24576
    assert after["arms"]["social"]["steps"] == 48
    record = json.loads((copy / "config.json").read_text())
    assert record["config"]["train"]["real_bytes"] == 24576
    cli("train", "--resume", copy, "--quiet")  # the extended record resumes as it is


@pytest.mark.parametrize("link", ["report.html", "tb", "checkpoints", "members", ".lock"])
def test_nothing_is_written_through_a_link_in_a_run_directory(debug_run, link, tmp_path):
    """A link in a run directory, to a file or folder outside: `report` replaces a linked
    report.html (the target untouched); a resume, a longer run or --force refuses the
    directory in one line before writing anything (nothing created or deleted)."""
    import shutil
    run = tmp_path / "run"
    shutil.copytree(debug_run, run, ignore=shutil.ignore_patterns(".lock"))
    outside = tmp_path / "outside"
    if link == "report.html":
        outside.write_text("mine")
        (run / link).unlink(missing_ok=True)
        (run / link).symlink_to(outside)
        cli("report", run)
        assert outside.read_text() == "mine" and not (run / link).is_symlink()
        return
    if link != ".lock":
        shutil.move(run / link, outside)
    (run / link).symlink_to(outside)
    def listing():
        return sorted(p.name for p in run.iterdir() if p.name != ".lock")
    before = listing()
    for args in (["train", "--resume", run, "--set", "train.real_bytes=32768"],
                 ["train", "--preset", "debug", "--out", run, "--force"]):
        one_line_error(cli(*args, check=False), "is a symbolic link")
        assert listing() == before
    assert link != ".lock" or not outside.exists()


def test_a_refused_directory_is_left_as_it_was(debug_run, tmp_path):
    """`train --out DIR` of a user's folder leaves no lock file in it; `scale --out DIR` of a
    finished run or a user's folder is refused, --force or not, and writes nothing there."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("x")
    one_line_error(cli("train", "--preset", "debug", "--out", mine, check=False),
                   "already holds files")
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    for target, needle in ((mine, "holds files, not a study"), (debug_run, "holds a run")):
        before = sorted(p.name for p in target.iterdir())
        for force in ([], ["--force"]):
            one_line_error(cli("scale", "--preset", "debug", "--out", target, *force,
                               check=False), needle)
        assert sorted(p.name for p in target.iterdir()) == before


@pytest.mark.parametrize("case, needle", [
    ("no files", "its manifest lists no files"), ("state a list", "state.json is not a table"),
    ("state without keys", "is damaged: KeyError"), ("a genome of the wrong type", "")])
@pytest.mark.parametrize("kind", ["run", "member"])
def test_a_crafted_checkpoint_with_matching_digests_is_one_line(debug_run, case, needle, kind,
                                                                 tmp_path):
    """Damage that a digest does not catch (the manifest and state.json rewritten together):
    a resume and an eval each stop in one line."""
    import hashlib
    import shutil
    results = json.loads((debug_run / "results.json").read_text())
    member = results["arms"]["social"]["members"][0]["checkpoint"]
    copy = tmp_path / kind
    shutil.copytree(debug_run if kind == "run" else debug_run / member, copy,
                    ignore=shutil.ignore_patterns(".lock"))
    ck = copy / "checkpoints" / "social" if kind == "run" else copy
    manifest = json.loads((ck / "manifest.json").read_text())
    if case == "no files":
        del manifest["files"]
    else:
        state = json.loads((ck / "state.json").read_text())
        state = {"state a list": [], "state without keys": {"kind": state["kind"],
                                                             "founders": state.get("founders")},
                 "a genome of the wrong type": {**state, "members": [{"genome": 5}]}
                 if kind == "run" else {**state, "genome": 5}}[case]
        (ck / "state.json").write_text(json.dumps(state))
        manifest["files"]["state.json"] = hashlib.sha256((ck / "state.json").read_bytes()
                                                         ).hexdigest()
    (ck / "manifest.json").write_text(json.dumps(manifest))
    args = ["train", "--resume", copy] if kind == "run" else ["eval", copy]
    one_line_error(cli(*args, check=False), needle)
