"""`multitudes scale`: the grid runs, resumes after a kill at the cell it was in, and refuses bad
grid values in one line. Every study here runs on a small text file (tiny splits) so the suite
pays seconds per cell."""

import json
import shutil
import signal
import subprocess
import sys
import time

import pytest

from multitudes.errors import UserError

from conftest import write_text_corpus
from test_cli import ENV, cli, one_line_error


def tiny_corpus(text_file) -> list[str]:
    return ["--set", f"base.data.corpus=file:{text_file}", "--set", "base.train.dev_bytes=512"]


@pytest.fixture(scope="module")
def debug_study(tmp_path_factory):
    """The debug study's 2 x 2 grid (K = 1, 2 x mixes hetero, transformer), run once."""
    root = tmp_path_factory.mktemp("scale")
    corpus = write_text_corpus(root / "corpus.txt")
    out = root / "study"
    result = cli("scale", "--preset", "debug", "--out", out, "--quiet", *tiny_corpus(corpus))
    return out, corpus, result


def test_a_debug_grid_runs_every_cell_and_writes_the_study(debug_study):
    out, _, result = debug_study
    summary = json.loads((out / "scale.json").read_text())
    names = sorted(c["cell"] for c in summary["cells"])
    assert names == sorted(["gru-T-K1-s1", "hetero-T-K2-logit-s1", "hetero-T-K2-peer-s1",
                            "gpt-T-K1-s1", "transformer-T-K2-logit-s1",
                            "transformer-T-K2-peer-s1"])
    assert summary["cells_finished"] == summary["cells_planned"] == 6
    for name in names:  # every cell is an ordinary run directory
        results = json.loads((out / "cells" / name / "results.json").read_text())
        assert results["command"] == ("compare" if "logit" in name else "train")
    lines = {(e["mix"], e["K"]): e for e in summary["lines"]}
    assert set(lines) == {("hetero", 1), ("hetero", 2), ("transformer", 1), ("transformer", 2)}
    assert lines[("hetero", 1)]["multiplier"]["mean"] == 1.0
    pop = next(c for c in summary["cells"] if c["cell"] == "hetero-T-K2-logit-s1")
    compare = json.loads((out / "cells" / "hetero-T-K2-logit-s1" / "results.json").read_text())
    assert pop["social_best_test_bpb"] == compare["arms"]["social"]["best_test_bpb"]
    assert pop["social_train_flops"] > 0 and pop["isolated_train_flops"] > 0
    # the compute-matched peer: one member of about K x the population's mean parameters
    peer = next(c for c in summary["cells"] if c["cell"] == "hetero-T-K2-peer-s1")
    assert 1.5 * pop["params"] / 2 < peer["params"] < 2.5 * pop["params"] / 2
    assert "peer_test_bpb" in lines[("hetero", 2)]
    # the inference-time axis on the largest K: consensus sizes 1, 2 and the looped member's loops
    inference = pop["inference"]["social"]
    assert [p["size"] for p in inference["consensus"]] == [1, 2]
    assert inference["consensus"][0]["test_bpb"] == pytest.approx(
        min(m["test_bpb"] for m in compare["arms"]["social"]["members"]
            if m["id"] == inference["order"][0]), abs=1e-9)
    loops = inference["loops"][0]
    assert loops["trained_loops"] == 2 and [p["n_loop"] for p in loops["curve"]] == [1, 2, 3, 4]
    at_trained = loops["curve"][1]["test_bpb"]
    looped = next(m for m in compare["arms"]["social"]["members"] if m["family"] == "looped")
    assert at_trained == pytest.approx(looped["test_bpb"], abs=1e-9)
    html = (out / "scale.html").read_text()
    assert html.count("<img") >= 3 and "multiplier" in html
    assert "multiplier" in result.stdout and "yardsticks" in result.stdout


def test_a_study_rerun_reads_its_finished_cells_back(debug_study):
    out, corpus, _ = debug_study
    before = (out / "cells" / "gru-T-K1-s1" / "results.json").read_bytes()
    result = cli("scale", "--preset", "debug", "--out", out, "--quiet", *tiny_corpus(corpus))
    assert "(6 finished already)" in result.stdout
    assert (out / "cells" / "gru-T-K1-s1" / "results.json").read_bytes() == before
    one_line_error(cli("scale", "--preset", "debug", "--out", out, "--members", "2",
                       *tiny_corpus(corpus), check=False), "holds another study")


def test_a_killed_study_resumes_at_the_cell_it_was_in(debug_study, tmp_path):
    """SIGKILL once the second cell has checkpointed; `--resume` finishes the study, and every
    cell's numbers equal those of the study that was never interrupted."""
    reference, corpus, _ = debug_study
    out = tmp_path / "study"
    args = ["scale", "--preset", "debug", "--mixes", "hetero", "--out", str(out), "--quiet",
            *tiny_corpus(corpus)]
    proc = subprocess.Popen([sys.executable, "-m", "multitudes", *args], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    second = out / "cells" / "hetero-T-K2-logit-s1" / "checkpoints"
    deadline = time.time() + 300
    while not (second.is_dir() and any(second.iterdir())) and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (out / "cells" / "gru-T-K1-s1" / "results.json").is_file()
    assert not (out / "cells" / "hetero-T-K2-logit-s1" / "results.json").is_file()
    result = cli("scale", "--resume", out, "--quiet")
    assert "(1 finished already)" in result.stdout
    for name in ("gru-T-K1-s1", "hetero-T-K2-logit-s1", "hetero-T-K2-peer-s1"):
        got = json.loads((out / "cells" / name / "results.json").read_text())
        want = json.loads((reference / "cells" / name / "results.json").read_text())
        for arm in want["arms"]:
            assert [m["test_bpb"] for m in got["arms"][arm]["members"]] == \
                [m["test_bpb"] for m in want["arms"][arm]["members"]]


@pytest.mark.parametrize("args, needle", [
    (["--members", "0,2"], "--members '0,2': every value must be a positive integer"),
    (["--members", "two"], "expected comma-separated integers"),
    (["--mixes", "hetero,nope"], "'nope' is not defined"),
    (["--sizes", "XL"], "'XL' is not defined"),
    (["--channels", "telepathy"], "'telepathy' is not defined"),
    (["--seeds", "0"], "--seeds 0"),
    (["--set", "colour=red"], "unknown study key colour"),
    (["--set", "base.train.batch_size=-1"], "study cell"),
    (["--set", "size.T.gru.d_model=0"], "study cell"),
    (["--preset", "nope"], "unknown study preset 'nope'"),
    (["--set", "size=3"], "study size must be a table of tables"),
    (["--set", "size.T.gru=3"], "size.T has no gru member"),
    (["--set", "size.T.gru.colour=1"], "unknown key members.0.colour"),
    # the second round of hardening: each a traceback, a false error bar or a runaway before
    (["--set", "description=5"], "study description must be a string"),
    (["--members", "2,2", "--mixes", "hetero"], "a value is given twice"),
    (["--set", 'name="../../x/y"'], "study name='../../x/y': a name is"),
    (["--set", 'name="a\\u0000b"'], "a name is letters"),
    (["--set", "members.0.x=1"], "members is not an array of tables"),
    (["--set", "base=5"], "study base must be a table"),
    (["--set", "base.train=5"], "study base.train must be a table"),
    (["--members", "2,1000000000000"], "is more than 1,024"),
    (["--seeds", "100000"], "more than 10,000"),
    (["--set", "seeds=true"], "study seeds must be a positive integer"),
    (["--set", 'compute_matched="no"'], "compute_matched must be true or false"),
    (["--set", 'size.T.gru.family="lstm"'], "a size's table names its family"),
    (["--assume-flops", "nan"], "--assume-flops nan: must be a positive, finite rate"),
    (["--assume-flops", "inf"], "--assume-flops inf"),
])
def test_bad_grid_values_are_one_line(args, needle, tmp_path):
    preset = [] if "--preset" in args else ["--preset", "debug"]
    one_line_error(cli("scale", *preset, *args, "--out", tmp_path / "s", "--dry-run",
                       check=False), needle)


def test_the_gpu_study_plans_members_of_5_to_50m_parameters():
    result = cli("scale", "--preset", "gpu", "--dry-run")
    rows = [line.split() for line in result.stdout.splitlines()[1:-1]]
    singles = [int(r[-2].replace(",", "")) for r in rows if "-K1-" in r[0]]
    assert singles and min(singles) >= 5_000_000 and max(singles) <= 50_000_000
    assert "enwik8" not in result.stderr and result.stdout.splitlines()[-1].startswith("261 cells")


def test_the_gpu_study_runs_on_cpu_at_tiny_size(text_file, tmp_path):
    """The GPU preset's cell, shrunk: its recipe (lanes of 256 bytes, wsd, the `both` channel
    with generated text) runs end to end on a CPU."""
    shrink = [f"size.S.{f}.d_model=16" for f in ("gpt", "looped", "gru", "lstm")] + [
        "size.S.gpt.d_ff=32", "size.S.looped.d_ff=32", "size.S.gpt.n_head=2",
        "size.S.looped.n_head=2", "base.train.real_bytes=16384", "base.train.batch_size=2",
        f"base.data.corpus=file:{text_file}", "base.train.dev_bytes=512",
        "base.train.eval_every=8", "base.train.checkpoint_every=8", "base.train.device=cpu",
        "channel.both.language_every=4"]
    sets = [x for s in shrink for x in ("--set", s)]
    out = tmp_path / "gpu"
    cli("scale", "--preset", "gpu", "--members", "2", "--sizes", "S", "--mixes", "rnn",
        "--channels", "both", "--seeds", "1", "--out", out, "--quiet", *sets)
    results = json.loads((out / "cells" / "rnn-S-K2-both-s1" / "results.json").read_text())
    assert results["arms"]["social"]["generated_bytes"] > 0  # the language channel spoke


def test_a_study_report_is_rebuilt_from_its_cells(debug_study):
    out, _, _ = debug_study
    (out / "scale.json").unlink()
    result = cli("scale", "--resume", out, "--report")
    assert "6 of 6 cells finished" in result.stdout
    assert json.loads((out / "scale.json").read_text())["cells_finished"] == 6
    one_line_error(cli("scale", "--preset", "debug", "--report", check=False), "--resume DIR")


def _as_size(summary: dict, size: str) -> dict:
    """The study's summary as if its cells had been run at another size (another study run)."""
    other = json.loads(json.dumps(summary))
    for c in other["cells"]:
        c["cell"], c["size"] = c["cell"].replace("-T-", f"-{size}-"), size
    return other


def test_a_report_merges_another_run_of_the_same_study(debug_study, tmp_path):
    reference, _, _ = debug_study
    out = tmp_path / "study"
    shutil.copytree(reference, out)
    own = json.loads((out / "scale.json").read_text())
    other = tmp_path / "other.json"
    other.write_text(json.dumps(_as_size(own, "U")))
    again = tmp_path / "again.json"  # the same cells twice: this study's are kept
    again.write_text(json.dumps(own))
    result = cli("scale", "--resume", out, "--report", "--merge", other, "--merge", again)
    assert "6 of 6 cells finished, 6 more merged from 2 file(s)" in result.stdout
    assert "scale-merged.html" in result.stdout
    merged = json.loads((out / "scale-merged.json").read_text())
    assert len(merged["cells"]) == 12 and merged["cells_merged"] == 6
    assert merged["merged"] == sorted([str(other), str(again)])
    assert {(e["size"], e["mix"], e["K"]) for e in merged["lines"]} == {
        (size, mix, K) for size in "TU" for mix in ("hetero", "transformer") for K in (1, 2)}
    by_line = {(e["size"], e["mix"], e["K"]): e for e in merged["lines"]}
    for mix in ("hetero", "transformer"):  # the same numbers under both sizes, one seed each
        assert by_line[("U", mix, 2)]["social_best_test_bpb"] == \
            by_line[("T", mix, 2)]["social_best_test_bpb"]
        assert by_line[("T", mix, 2)]["seeds"] == [1]
    # does a gain grow with size: T -> U paired by seed, the same cells under both names
    effects = {(e["mix"], e["metric"]): e for e in merged["size_effects"]}
    assert set(effects) == {(mix, "best_gain_test_bpb") for mix in ("hetero", "transformer")}
    for e in effects.values():
        assert e["sizes"] == ["T", "U"] and e["seeds"] == [1] and e["K"] == 2
        assert e["change"]["mean"] == 0.0 and e["T"]["mean"] == e["U"]["mean"]
    assert "size T -> U hetero logit K=2: test gain of the best" in result.stdout
    assert json.loads((out / "scale.json").read_text()) == own  # the study's own untouched
    assert (out / "scale-merged.html").read_text().count("<img") >= 3


def test_a_bad_merge_is_one_line(debug_study, tmp_path):
    out, _, _ = debug_study
    own = json.loads((out / "scale.json").read_text())
    one_line_error(cli("scale", "--resume", out, "--report", "--merge", tmp_path / "no.json",
                       check=False), "no such file")
    for name, doc, needle in [
            ("bad.json", "{nope", "unreadable"),
            ("cells.json", json.dumps({**own, "cells": [{"cell": "x"}]}), "damaged"),
            ("name.json", json.dumps({**own, "study": "cpu"}), "not this study"),
            ("data.json", json.dumps({**_as_size(own, "U"), "cells": [
                {**c, "yardsticks_test_given": {"gzip": 9.0}} for c in own["cells"]]}),
             "other data")]:
        (tmp_path / name).write_text(doc)
        one_line_error(cli("scale", "--resume", out, "--report", "--merge", tmp_path / name,
                           check=False), needle)
    one_line_error(cli("scale", "--resume", out, "--merge", tmp_path / "data.json",
                       check=False), "--merge goes with --resume DIR --report")
    # rows of the right keys and the wrong values: a mix this study lacks, a text multiplier,
    # K of 0 or below
    cell = next(c for c in own["cells"] if c["kind"] == "population")
    for change, needle in (({"mix": "rnnx"}, "is not one of this study's"),
                           ({"multiplier": "x"}, "multiplier = 'x' is not a float"),
                           ({"K": 0}, "must be positive"), ({"K": -4}, "must be positive")):
        row = {**cell, "cell": "hetero-T-K4-logit-s1", **change}
        (tmp_path / "row.json").write_text(json.dumps({**own, "cells": [row]}))
        one_line_error(cli("scale", "--resume", out, "--report", "--merge",
                           tmp_path / "row.json", check=False), needle)


@pytest.mark.parametrize("name, text, needle", [
    ("study.json", "[]", "study.json was edited or damaged"),
    ("cells/gru-T-K1-s1/results.json", "{}", "is damaged: KeyError 'arms'"),
    ("cells/gru-T-K1-s1/results.json", "[]", "is not a run's results"),
    ("cells/hetero-T-K2-logit-s1/results.json", '{"arms": {}}', "is damaged: KeyError"),
    ("cells/gru-T-K1-s1/wall.json", "[]", "is damaged: TypeError"),
    ("cells/hetero-T-K2-logit-s1/inference.json", "[]", "inference axis"),
])
def test_a_damaged_study_file_is_one_line(debug_study, name, text, needle, tmp_path):
    """Files of a study a user (or a disk) damaged: a resume and a report each stop in one
    line naming the file or cell; nothing is deleted."""
    out = tmp_path / "study"
    shutil.copytree(debug_study[0], out, ignore=shutil.ignore_patterns(".lock"))
    (out / name).write_text(text)
    for args in (["--report"], ["--quiet"]):
        one_line_error(cli("scale", "--resume", out, *args, check=False), needle)
    assert (out / name).read_text() == text


def test_a_damaged_cell_config_is_not_a_traceback(debug_study, tmp_path):
    """A finished cell's config.json damaged: the study reads the cell's results back as
    before (the config is read only to resume an unfinished cell)."""
    out = tmp_path / "study"
    shutil.copytree(debug_study[0], out, ignore=shutil.ignore_patterns(".lock"))
    (out / "cells" / "gru-T-K1-s1" / "config.json").write_text("[]")
    assert "6 of 6 cells finished" in cli("scale", "--resume", out, "--report").stdout


def test_the_trend_recovers_a_known_slope_and_the_spread_over_seeds():
    from multitudes.study.summary import aggregate, trends

    def cell(K, seed, gain, kind="population"):
        return {"kind": kind, "mix": "hetero", "size": "S", "channel": "logit" if K > 1 else
                "none", "K": K, "seed": seed, "family": "gru" if K == 1 else None,
                "multiplier": 1 + 0.25 * (K.bit_length() - 1), "multiplier_flag": "",
                "best_gain_test_bpb": gain, "consensus_gain_test_bpb": 0.0,
                **{k: 3.0 for k in ("social_best_test_bpb", "social_consensus_test_bpb",
                                    "isolated_best_test_bpb", "isolated_consensus_test_bpb")},
                "social_train_flops": K, "isolated_train_flops": K}
    rows = [cell(1, s, 0.0, "single") for s in (1, 2)] + [
        cell(K, s, 0.01 * (K.bit_length() - 1) + (0.002 if s == 1 else -0.002))
        for K in (2, 4, 8) for s in (1, 2)]
    lines = aggregate(rows, {"hetero": ["gru", "gpt"]})
    assert [e["K"] for e in lines] == [1, 2, 4, 8]
    assert lines[2]["best_gain_test_bpb"]["mean"] == pytest.approx(0.02)
    assert lines[2]["best_gain_test_bpb"]["std"] == pytest.approx(0.004 / 2 ** 0.5)
    fits = {t["metric"]: t for t in trends(lines)}
    assert fits["multiplier"]["slope_per_doubling"] == pytest.approx(0.25)
    assert fits["best_gain_test_bpb"]["slope_per_doubling"] == pytest.approx(0.01)
    assert max(abs(r["residual"]) for r in fits["multiplier"]["residuals"]) < 1e-12


def test_the_variety_axis_recovers_a_known_slope_per_family_and_draws_it():
    """Four mixes of 1, 2, 3 and 5 distinct families among K = 5 (cycled: v2 is gru, gpt,
    gru, gpt, gru), leads of 0.01 per family beyond the first, +-0.002 by seed."""
    from multitudes.study.figures import figures
    from multitudes.study.render import text_table
    from multitudes.study.summary import aggregate
    from multitudes.study.variety import variety, variety_of

    mixes = {"v1": ["gru"], "v2": ["gru", "gpt"], "v3": ["gru", "gpt", "ssm"],
             "v5": ["gru", "gpt", "ssm", "lstm", "looped"], "twice": ["gru", "gru", "gpt"]}
    assert [variety_of(mixes[m], 5) for m in mixes] == [1, 2, 3, 5, 2]
    assert variety_of(mixes["v5"], 3) == 3

    def cell(mix, seed, lead):
        return {"cell": f"{mix}-s{seed}", "kind": "population", "mix": mix, "size": "S",
                "channel": "logit", "K": 5, "seed": seed, "family": None, "multiplier": 1.0,
                "multiplier_flag": "", "best_gain_test_bpb": lead / 2,
                "consensus_gain_test_bpb": 0.0, "mixture_gain_test_bpb": lead,
                "social_mixture_test_bpb": 3.0 - lead, "isolated_mixture_test_bpb": 3.0,
                "social_diversity_valid_bpb": 0.1, "isolated_diversity_valid_bpb": 0.2,
                **{k: 3.0 for k in ("social_best_test_bpb", "social_consensus_test_bpb",
                                    "isolated_best_test_bpb", "isolated_consensus_test_bpb")},
                "social_train_flops": 5, "isolated_train_flops": 5,
                "yardsticks_test_given": {}}
    rows = [cell(m, s, 0.01 * (variety_of(mixes[m], 5) - 1) + (0.002 if s == 1 else -0.002))
            for m in ("v1", "v2", "v3", "v5") for s in (1, 2)]
    fits = {e["metric"]: e for e in variety(rows, mixes)}
    mixture = fits["mixture_gain_test_bpb"]
    assert mixture["slope_per_family"] == pytest.approx(0.01)
    assert fits["best_gain_test_bpb"]["slope_per_family"] == pytest.approx(0.005)
    assert mixture["intercept"] == pytest.approx(-0.01) and mixture["cells"] == 8
    # the seeds' +-0.002 is all the scatter about the line: 8 points, 6 degrees of freedom
    sxx = 2 * sum((n - 2.75) ** 2 for n in (1, 2, 3, 5))
    assert mixture["slope_stderr"] == pytest.approx((8 * 0.002 ** 2 / 6 / sxx) ** 0.5)
    top = mixture["levels"][-1]
    assert (top["families"], top["mixes"], top["per_seed"]) == (5, ["v5"], {
        "1": pytest.approx(0.042), "2": pytest.approx(0.038)})
    assert top["social_diversity_valid_bpb"]["mean"] == pytest.approx(0.1)
    assert variety(rows[:4], mixes) == []  # two varieties (v1, v2) draw no line
    summary = {"lines": aggregate(rows, mixes), "trends": [], "cells": rows, "variety":
               list(fits.values())}
    assert "+0.0100 (± " in text_table(summary) and "5 families (v5): +0.0400" in \
        text_table(summary)
    captions = [c for c, _ in figures(summary)]
    assert any(c.startswith("Variety:") for c in captions)


def test_the_variety_study_plans_every_level_at_k5():
    result = cli("scale", "--preset", "variety", "--dry-run")
    assert result.stdout.splitlines()[-1].startswith("12 cells")
    assert "gru128,gpt64,ssm64,lstm128,looped64" in result.stdout


def test_size_effects_pair_the_seeds_a_gain_was_measured_at_both_sizes():
    from multitudes.study.summary import size_effects

    def cell(size, K, seed, gain, mixture=None):
        return {"kind": "population", "mix": "gru", "size": size, "channel": "logit", "K": K,
                "seed": seed, "best_gain_test_bpb": gain,
                **({"mixture_gain_test_bpb": mixture} if mixture is not None else {})}
    rows = [cell("S", 2, 1, 0.03, 0.01), cell("S", 2, 2, 0.05, 0.02), cell("S", 2, 3, 0.04, 0.0),
            cell("M", 2, 1, 0.01, 0.00), cell("M", 2, 2, 0.02, 0.01),  # seed 3 not run at M
            cell("M", 4, 1, 0.02, 0.01),  # no K = 4 at S: nothing to pair
            {**cell("S", 1, 1, 0.0), "kind": "single"}]
    effects = size_effects(rows, ["S", "M", "L"])
    assert [(e["K"], e["metric"]) for e in effects] == [(2, "best_gain_test_bpb"),
                                                        (2, "mixture_gain_test_bpb")]
    best, mixture = effects
    assert best["sizes"] == ["S", "M"] and best["seeds"] == [1, 2]
    assert best["S"]["mean"] == pytest.approx(0.04) and best["M"]["mean"] == pytest.approx(0.015)
    assert best["change"]["mean"] == pytest.approx(-0.025)
    assert best["change"]["std"] == pytest.approx(0.01 / 2 ** 0.5)  # changes -0.02 and -0.03
    assert mixture["change"]["mean"] == pytest.approx(-0.01) and mixture["change"]["std"] == 0
    assert size_effects(rows, ["M", "S"])[0]["sizes"] == ["M", "S"]  # the study's order rules
    assert size_effects([r for r in rows if r["size"] == "S"], ["S", "M"]) == []


def test_a_missing_or_damaged_study_is_one_line(tmp_path):
    one_line_error(cli("scale", "--resume", tmp_path / "nothing", check=False), "no study there")
    assert not (tmp_path / "nothing").exists()
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "study.json").write_text("{nope")
    one_line_error(cli("scale", "--resume", tmp_path / "s", check=False), "unreadable")
    (tmp_path / "s" / "study.json").write_text('{"study": {"seeds": 1}, "sha256": "0"}')
    one_line_error(cli("scale", "--resume", tmp_path / "s", check=False), "was edited")


def test_two_workers_share_a_study_and_run_each_cell_once(debug_study, tmp_path):
    reference, corpus, _ = debug_study
    out = tmp_path / "study"
    args = ["scale", "--preset", "debug", "--mixes", "hetero", "--out", str(out), "--quiet",
            *tiny_corpus(corpus)]
    workers = [subprocess.Popen([sys.executable, "-m", "multitudes", *args], env=ENV,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    outputs = [w.communicate(timeout=600) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    text = "".join(o for o, _ in outputs)
    for name in ("gru-T-K1-s1", "hetero-T-K2-logit-s1", "hetero-T-K2-peer-s1"):
        assert text.count(f"{name}: train,") + text.count(f"{name}: compare,") == 1, text
        got = json.loads((out / "cells" / name / "results.json").read_text())
        want = json.loads((reference / "cells" / name / "results.json").read_text())
        assert got["arms"]["isolated"]["best_test_bpb"] == want["arms"]["isolated"]["best_test_bpb"]
    assert json.loads((out / "scale.json").read_text())["cells_finished"] == 3


def test_a_study_too_small_for_its_data_is_one_line_and_writes_nothing(tmp_path):
    """The data-limited regime in a study: U too small for a batch (and U larger than the
    split) refused before a cell trains, as `train` refuses it."""
    for unique, needle in (("100", "data.unique_bytes=100 is too few"),
                           ("1000000000", "is more than the")):
        one_line_error(cli("scale", "--preset", "debug", "--out", tmp_path / "s", "--set",
                           'base.regime="data-limited"', "--set",
                           f"base.data.unique_bytes={unique}", check=False), needle)
        assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("name", ["deep-tables", "deep-arrays", "deep-header"])
def test_a_deeply_nested_file_is_one_line(name, tmp_path):
    depth = 100_000
    text = {"deep-tables": "x = " + "{a = " * depth + "1" + "}" * depth,
            "deep-arrays": "x = " + "[" * depth + "1" + "]" * depth,
            "deep-header": "[" + ".".join(["a"] * 50_000) + "]"}[name]
    (tmp_path / "deep.toml").write_text(text + "\n")
    for command in (["train", "--out", tmp_path / "o"], ["scale", "--dry-run"],
                    ["compress", tmp_path / "deep.toml", "--online", "-o", tmp_path / "x.mtz"]):
        one_line_error(cli(*command, "--config", tmp_path / "deep.toml", check=False),
                       "nested too deeply")


def test_a_data_limited_study_reports_the_ensemble_control(text_file, tmp_path):
    """The data-limited regime in a study: each cell trains on U unique bytes, and its row
    carries both arms' dev-fit mixtures (the isolated one is the ensemble control), their gap,
    and a table column for it."""
    out = tmp_path / "limited"
    result = cli("scale", "--preset", "debug", "--mixes", "hetero", "--out", out, "--quiet",
                 "--set", "compute_matched=false", "--set", "inference=false",
                 "--set", 'base.regime="data-limited"', "--set", "base.data.unique_bytes=2048",
                 "--set", 'base.train.schedule="cosine"', *tiny_corpus(text_file))
    summary = json.loads((out / "scale.json").read_text())
    [row] = [r for r in summary["cells"] if r["K"] == 2]
    arms = json.loads((out / "cells" / row["cell"] / "results.json").read_text())["arms"]
    assert summary["regime"] == "data-limited" and summary["unique_bytes"] == 2048
    assert row["social_mixture_test_bpb"] == arms["social"]["mixture_test_bpb"]
    assert row["isolated_mixture_test_bpb"] == arms["isolated"]["mixture_test_bpb"]
    assert row["mixture_gain_test_bpb"] == (arms["isolated"]["mixture_test_bpb"]
                                            - arms["social"]["mixture_test_bpb"])
    [line] = [e for e in summary["lines"] if e["K"] == 2]
    assert line["mixture_gain_test_bpb"]["mean"] == row["mixture_gain_test_bpb"]
    for arm in ("social", "isolated"):  # the members' disagreement, for the variety axis
        members = arms[arm]["members"]
        assert row[f"{arm}_diversity_valid_bpb"] == pytest.approx(
            sum(m["valid_bpb"] for m in members) / len(members)
            - arms[arm]["consensus_valid_bpb"])
    assert "gain vs ens." in result.stdout and "given the same 2,048 unique bytes" in result.stdout


def test_the_limited_study_plans_the_data_limited_grid():
    """K = 1, 2, 4, 8 x sizes S, M x mixes hetero, gru x 3 seeds: 2 K = 1 cells (gru heads both
    mixes) and 6 compare cells per size and seed."""
    result = cli("scale", "--preset", "limited", "--dry-run")
    last = result.stdout.splitlines()[-1]
    assert last.startswith("42 cells") and "524,288 real bytes per arm" in last
    assert "hetero-S-K8-logit-s3" in result.stdout and "gru-M-K1-s1" in result.stdout


def test_a_study_being_created_by_another_worker_is_not_files(tmp_path):
    """Two workers started at once: the second may list the directory while the first's
    study.json is still its temporary file; that is a study on its way, not a user's files."""
    from multitudes.study.runner import _check_new_study_dir

    out = tmp_path / "study"
    out.mkdir()
    (out / ".lock").touch()
    (out / ".study.json.k3x9q1").write_text("{")
    _check_new_study_dir(out)  # no refusal
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="holds files, not a study"):
        _check_new_study_dir(out)


def test_a_relative_reference_record_is_resolved_where_the_study_starts(tmp_path, monkeypatch):
    """study.json keeps the record's absolute path: a resume from another folder, and each
    cell, read and add to the one file the user named; a link on the way is one line."""
    from multitudes.study.plan import load
    monkeypatch.chdir(tmp_path)
    doc = load("limited", None, ["base.compare.reference_record='refs/limited.json'"])
    assert doc["base"]["compare"]["reference_record"] == str(tmp_path / "refs" / "limited.json")
    (tmp_path / "linked").symlink_to(tmp_path / "refs")
    with pytest.raises(UserError, match="symbolic link"):
        load("limited", None, ["base.compare.reference_record='linked/limited.json'"])
    (tmp_path / "damaged.json").write_text("{not json")
    with pytest.raises(UserError, match="damaged.json"):
        load("limited", None, ["base.compare.reference_record='damaged.json'"])
