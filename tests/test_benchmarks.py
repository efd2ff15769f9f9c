"""The cheaper benchmarks still run (one step each, no timing asserted: speed is measured in
`benchmarks/`, not tested), so that a change to the package cannot silently break them; the
compressors' bad input is one line and exit 2."""

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"
FAMILIES = ("gpt", "looped", "lstm", "gru")


def bench(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=BENCHMARKS, capture_output=True,
                          text=True, check=check, timeout=300)


def numbers_after(label: str, text: str) -> list[float]:
    """The numbers on the output line that starts with `label`."""
    [line] = [x for x in text.splitlines() if x.strip().startswith(label)]
    return [float(v) for v in re.findall(r"[-+]?\d+\.\d+", line[len(label) + 1:])]


def rows_by_arm(out: str) -> dict[str, str]:
    """generations_figure.py's table rows, by arm (its first column a generation's number, its
    controls' rows the arm itself), each with its cells as printed."""
    cells = [[c.strip() for c in line.split("|")] for line in out.splitlines()
             if line.startswith("| ")]
    return {c[2] if c[1].isdigit() else c[1]: " | ".join(c) for c in cells}


def record_copy(record: str, into: Path) -> Path:
    """A copy of docs/horizons/RECORD's seeds (their results.json) in `into`: `data_limited.py
    --table-only` writes table.md beside the seeds it reads, and a test never writes the
    committed records."""
    for results in sorted((BENCHMARKS.parent / "docs" / "horizons" / record).glob(
            "seed-*/results.json")):
        (into / results.parent.name).mkdir(parents=True)
        shutil.copy(results, into / results.parent.name / "results.json")
    return into


def table_against(record: str, against: str, into: Path) -> str:
    """`data_limited.py --table-only` on a copy of docs/horizons/RECORD, read against the
    committed set `against`: the table and its paired lines, as printed."""
    return bench("data_limited.py", "--table-only", "--out", str(record_copy(record, into)),
                 "--against", against).stdout


def test_the_concurrency_benchmark_times_every_family_and_the_ceiling():
    out = bench("concurrency.py", "--steps", "1").stdout
    for family in FAMILIES:
        seconds = numbers_after(family, out)
        assert len(seconds) == 4 and all(s > 0 and math.isfinite(s) for s in seconds), out
    assert re.search(r"side by side can gain at most \d+\.\d+x", out), out


def test_the_scoring_benchmark_scores_both_ways_alike_and_refuses_bad_counts():
    out = bench("scoring.py", "--bytes", "2048", "--repeats", "1").stdout
    assert numbers_after("one after another", out)[0] > 0, out
    assert "log2 probabilities identical both ways: True" in out
    for bad in (["--bytes", "0"], ["--bytes", "10"], ["--repeats", "0"]):
        refused = bench("scoring.py", *bad, check=False)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
        assert len(refused.stderr.strip().splitlines()) <= 2, refused.stderr


def test_the_social_overhead_benchmark_times_every_channel():
    out = bench("social_overhead.py", "--steps", "1", "--repeats", "1").stdout
    for arm in ("isolated (sum of members)", "logit channel, uniform",
                "logit channel, fitness", "logit + language"):
        assert numbers_after(arm, out)[0] > 0, out
    turn, per_step, reading, over = numbers_after("its language channel:", out)
    assert turn > 0 and abs(per_step - turn / 16) <= 0.06, out  # a turn every 16 steps
    assert abs(reading + per_step - over) <= 0.11, out  # the split adds up, to its rounding


def test_the_compressors_benchmark_codes_a_file_and_refuses_bad_ones_in_one_line(tmp_path):
    text = tmp_path / "text"
    text.write_bytes(b"the members learn from each other " * 200)
    out = bench("compressors.py", str(text)).stdout
    assert 0 < numbers_after("gzip -9", out)[0] < 8 and "PPMd order 8" in out
    (tmp_path / "empty").write_bytes(b"")
    for bad, says in ((tmp_path / "nowhere", "cannot read it"), (tmp_path / "empty", "empty"),
                      (tmp_path, "cannot read it")):
        refused = bench("compressors.py", str(text), str(bad), check=False)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
        assert says in refused.stderr.strip().splitlines()[-1] and not refused.stdout


def test_the_sweep_trains_a_point_and_refuses_a_bad_grid_before_any_work():
    out = bench("sweep.py", "--preset", "debug", "--family", "gpt", "--set", "lr=0.01",
                "--real-bytes", "4096", "--jobs", "1").stdout
    [row] = [json.loads(line) for line in out.splitlines()]
    assert row["family"] == "gpt" and row["lr"] == 0.01 and 0 < row["dev_bpb"] < 9
    out = bench("sweep.py", "--preset", "debug", "--family", "ssm", "--base", "gpt", "--set",
                "lr=0.01", "--real-bytes", "4096", "--jobs", "1").stdout  # a family it lacks
    [row] = [json.loads(line) for line in out.splitlines()]
    assert (row["family"], row["base"]) == ("ssm", "gpt") and 0 < row["dev_bpb"] < 9
    debug = ["sweep.py", "--preset", "debug"]
    for bad, says in ((["--family", "gru"], "--family gru"),
                      (["--family", "gpt", "--set", "lr"], "--set 'lr'"),
                      (["--family", "gpt", "--set", "lr=x"], "TOML value"),
                      (["--family", "gpt", "--set", "nope=1"], "--set nope: no such field"),
                      (["--family", "gpt", "--train", "batch_size=0"], "batch_size"),
                      (["--family", "gpt", "--set", "lr=-1"], "lr"),
                      (["--family", "gpt", "--jobs", "0"], "--jobs"),
                      (["--family", "ssm"], "--family ssm"),
                      (["--family", "ssm", "--base", "gru"], "--base gru: the preset debug has"),
                      (["--family", "ssm", "--base", "gpt", "--set", "n_loop=2"], "n_loop")):
        refused = bench(*debug, *bad, check=False)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
        assert says in refused.stderr.strip().splitlines()[-1] and not refused.stdout
    for bad, says in ((["--preset", "debug", "--family", "gru"], "--family gru"),
                      (["--preset", "nope"], "unknown preset"),
                      (["--preset", "debug", "--set", "train.nope=1"], "train.nope")):
        refused = bench("parity.py", *bad, check=False)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
        assert says in refused.stderr.strip().splitlines()[-1] and not refused.stdout


def test_the_scan_benchmark_times_every_chunk_size_against_the_loop_and_the_gpt():
    out = bench("scan.py", "--steps", "1", "--repeats", "1", "--chunks", "2,4").stdout
    assert re.search(r"a loop over bytes \d+\.\d+ ms", out), out
    for c in (2, 4):
        assert re.search(rf"chunks of +{c}: +\d+\.\d+ ms, \d+\.\d+x the loop's speed", out), out
    assert "(the model's)" in out and re.search(r"the ssm at \d+\.\d+x the gpt's rate", out)
    for bad in (["--chunks", "4,0"], ["--steps", "0"], ["--width", "x"]):
        refused = bench("scan.py", *bad, check=False)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr


def test_every_benchmark_refuses_a_bad_count_or_run_in_one_line(tmp_path):
    """A count of 0 used to divide by zero or time nothing; a run that is not there was a
    traceback."""
    for script, bad, says in (("throughput.py", ["--steps", "0"], "--steps"),
                              ("throughput.py", ["--only", "nothing-such"], "--only"),
                              ("ceiling.py", ["--repeats", "0"], "--repeats"),
                              ("concurrency.py", ["--steps", "-1"], "--steps"),
                              ("social_overhead.py", ["--repeats", "x"], "--repeats"),
                              ("scaling.py", ["--ranks", "0"], "--ranks"),
                              ("coding.py", ["--run", str(tmp_path / "nowhere")], "nowhere"),
                              ("soak.py", ["--kill-every", "0"], "--kill-every"),
                              ("sweep_social.py", ["--channel", "gossip"], "--channel"),
                              # a bad --set or preset before any seed's run (or folder) starts
                              ("data_limited.py", ["--preset", "horizons", "--set",
                                                   "compare.nope=1", "--out",
                                                   str(tmp_path / "set")], "compare.nope"),
                              ("data_limited.py", ["--preset", "nope", "--out",
                                                   str(tmp_path / "set")], "unknown preset")):
        refused = bench(script, *bad, check=False)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, (script, refused)
        assert says in refused.stderr.strip().splitlines()[-1] and not refused.stdout, script
    assert not any(tmp_path.iterdir())  # nothing written


def test_throughputs_rows_on_a_gpu_are_the_ways_that_differ_there():
    """On CUDA `side_by_side` gives each member a stream and `auto` is bf16, so throughput.py's
    rows there are one stream, a stream per member (channel open and closed) and compiled (it
    needs no GPU to say which), and its plain loop runs in the precision `auto` gives the
    device: fp32 on the CPU, bf16 on CUDA."""
    code = """
import torch
from throughput import ways_to_step
from multitudes.config.schema import SocialConfig
from multitudes.runs.device import uses_bf16
for device in ("cpu", "cuda"):
    rows = ways_to_step(SocialConfig(), torch.device(device), compiled=device == "cpu")
    print(device, "|".join(how for how, _, _ in rows),
          [s.get("side_by_side") for _, s, _ in rows], any(s.get("precision") for _, s, _ in rows),
          uses_bf16(device), uses_bf16(device, "bf16"), uses_bf16(device, "fp32"))
"""
    cpu, cuda = bench("-c", code).stdout.splitlines()
    assert cpu == ("cpu one after another|side by side|side by side, channel closed|"
                   "side by side, bf16|side by side, compiled "
                   "[False, True, True, True, True] True False True False")
    assert cuda == ("cuda one stream|a stream per member|a stream per member, channel closed "
                    "[False, True, True] False True True False")  # compiled: on request


def test_the_gpu_recipe_adds_up_and_refuses_bad_options():
    """benchmarks/gpu_recipe.py: each population row is the sum of its members' steps, each
    member's step the larger of its compute time and (an RNN's) recurrence floor; bad options
    are one line and exit 2."""
    out = bench("gpu_recipe.py", "--shape", "64x512", "--shape", "512x128").stdout
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in out.splitlines()
            if line.startswith("| 64 x") or line.startswith("| 512 x")]
    for lanes in ("64 x 512", "512 x 128"):
        members = [r for r in rows if r[0] == lanes and "population" not in r[1]]
        [population] = [r for r in rows if r[0] == lanes and "population" in r[1]]
        assert len(members) == 4
        for r in members:
            assert float(r[5]) == max(float(r[3]), float(r[4]))
        total = float(population[5].split("**")[1])
        assert abs(total - sum(float(r[5]) for r in members)) < 0.11
    floors = {r[0]: float(r[4]) for r in rows if "lstm" in r[1]}
    assert abs(floors["64 x 512"] - 4 * floors["512 x 128"]) < 0.25  # T timesteps in a row
    for bad in (["--shape", "0x5"], ["--shape", "64"], ["--mfu", "2"], ["--latency-us", "-1"],
                ["--preset", "nope"]):
        result = bench("gpu_recipe.py", *bad, check=False)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.startswith("gpu_recipe.py: error:")
        assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("script, args", [
    ("precision_probe.py", ["--preset", "nope"]), ("precision_probe.py", ["--lanes", "0"]),
    ("precision_probe.py", ["--precision", "fp16"]),
    ("rnn_lanes.py", ["--preset", "nope"]), ("rnn_lanes.py", ["--lanes", "0,4"]),
    ("rnn_lanes.py", ["--preset", "debug", "--family", "gru"]),
    ("rnn_lanes.py", ["--preset", "debug", "--lanes", "100000"])])
def test_the_device_checks_probes_refuse_bad_options(script, args):
    result = bench(script, *args, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert f"{script}: error:" in result.stderr.strip().splitlines()[-1]


def test_the_horizons_figure_draws_the_recorded_horizons_and_refuses_bad_input(tmp_path):
    docs = BENCHMARKS.parent / "docs" / "horizons"
    png, page = tmp_path / "h.png", tmp_path / "h.html"
    out = bench("horizons_figure.py", str(docs / "h16"), str(docs / "h64"), "--png",
                str(png), "--html", str(page)).stdout
    drawn = out.split("the independent ensemble's own best horizon")[0]  # the drawn numbers
    assert numbers_after("isolated", drawn)[:2] == [3.2760, 3.2468], out  # the records' mixtures
    assert png.read_bytes()[:4] == b"\x89PNG"
    text = page.read_text()  # the figure, its numbers and each horizon's table
    assert "data:image/png;base64," in text and "3.2468" in text and "| social |" in text
    # the three-seed record with the ensemble given 1.29x its compute as epochs: a point of the
    # ensemble's own line, at the 82.7 epochs it read
    seeds = bench("horizons_figure.py", str(docs / "horizons-64")).stdout
    assert "64.0           82.7" in seeds.splitlines()[0], seeds
    [row] = [x for x in seeds.splitlines() if x.split()[:1] == ["isolated"] and "(n=" in x]
    assert numbers_after("isolated", row) == [3.2274, 3.2434], seeds
    # the ensemble at its own best horizon and recipe, chosen on dev (the members' recipes
    # re-tuned at 64 epochs: compare.retuned), and every arm paired against it
    both = bench("horizons_figure.py", str(docs / "horizons-16"), str(docs / "horizons-64")).stdout
    assert "isolated-x1.63 at 26.1 epochs: dev 2.8732\n" in both, both
    assert "isolated-retuned at 64.0 epochs: dev 2.8498 (best)" in both, both
    assert "isolated at 64.0 epochs: test -0.0368 (-0.0538, -0.0223, -0.0342; better in 0/3)" \
        in both, both
    # any arm as the one to beat: the ensemble of 16 at 16 epochs (the lineage's compute)
    versus = bench("horizons_figure.py", str(docs / "horizons-16"), str(docs / "horizons-64"),
                   "--against", "isolated-16-members@16").stdout.split(
                       "against isolated-16-members at 16.0 epochs")[1]
    assert "social+snapshots at 64.0 epochs: test +0.0614 (+0.0705, +0.0575, +0.0562; better " \
        "in 3/3)" in versus, versus
    (tmp_path / "link.png").symlink_to(png)  # a figure is never written through a link
    for args in ([str(tmp_path)], [str(docs / "h16"), "--png", str(tmp_path / "h.txt")],
                 [str(docs / "h16"), "--against", "isolated@32"],
                 [str(docs / "h16"), "--against", "nope@16"],
                 [str(docs / "h16"), "--against", "isolated"],
                 [str(docs / "h16"), "--png", str(tmp_path / "no" / "h.png")],
                 [str(docs / "h16"), "--png", str(tmp_path / "link.png")],
                 [str(docs / "h16"), "--html", str(tmp_path / "h.png")]):
        bad = bench("horizons_figure.py", *args, check=False)
        assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr


def test_the_data_limited_table_pairs_every_arm_against_the_retuned_ensemble(tmp_path):
    """The 64-epoch record read back (on a copy): the re-tuned ensemble's row, and every arm on
    U paired against it as against the ensemble, with the numbers docs/results.md shows."""
    out = bench("data_limited.py", "--table-only", "--out",
                str(record_copy("horizons-64", tmp_path))).stdout
    [row] = [x for x in out.splitlines() if x.startswith("| isolated-retuned |")]
    assert "3.1907 ± 0.0026" in row, out
    for line in ("social mixture vs isolated-retuned mixture: +0.0019 bpb (per seed -0.0009, "
                 "+0.0028, +0.0037; better in 2/3)",
                 "social+snapshots mixture vs isolated-retuned mixture: +0.0583 bpb",
                 "isolated-retuned mixture vs isolated mixture: +0.0368 bpb"):
        assert line in out, out
    assert (tmp_path / "table.md").read_text().count("isolated-retuned") >= 5


def test_the_64_epoch_set_on_retuned_members_reads_each_arms_recipe_choice_on_dev(tmp_path):
    """The 64-epoch set run again with every arm's members on the recipes re-swept at 64 epochs
    (three seeds), read back against the set on the 16-epoch recipes: the dev slice prefers the
    new recipes for the social arm and the ensemble, the old for the cyclic arms and 2U; the
    numbers docs/results.md shows."""
    docs = BENCHMARKS.parent / "docs" / "horizons"
    old = str(docs / "horizons-64")
    out = table_against("horizons-64-retuned", old, tmp_path)
    assert out.startswith("3 seeds (seed-1, seed-2, seed-3)"), out
    [row] = [x for x in out.splitlines() if x.startswith("| isolated |")]
    assert "3.1907 ± 0.0026" in row, out  # horizons-64's re-tuned ensemble, bit for bit
    for line in ("social mixture vs isolated mixture: +0.0031 bpb (per seed +0.0043, +0.0054, "
                 "-0.0005; better in 2/3)",
                 "social+snapshots mixture vs isolated mixture: -0.0021 bpb",
                 "social+snapshots mixture vs snapshots mixture: +0.0118 bpb",
                 f"social mixture vs {old} (the dev slice, which chooses): +0.0110 bpb",
                 f"isolated mixture vs {old} (the dev slice, which chooses): +0.0279 bpb",
                 f"snapshots mixture vs {old}: -0.0593 bpb (per seed -0.0518, -0.0636, -0.0625; "
                 "better in 0/3)",
                 f"snapshots mixture vs {old} (the dev slice, which chooses): -0.0603 bpb",
                 f"social+snapshots mixture vs {old} (the dev slice, which chooses): -0.0529",
                 f"isolated-2U mixture vs {old} (the dev slice, which chooses): -0.0727"):
        assert line in out, (line, out)


def test_the_mixtures_fit_on_a_slice_of_u_read_back_against_the_dev_fit_set(tmp_path):
    """The 16-epoch arms with their mixtures fit on a slice held out of U (three seeds), read
    back against the same seeds fit on the dev slice: every mixture worse on test in every
    seed, the arms' order kept; the numbers docs/results.md shows."""
    docs = BENCHMARKS.parent / "docs" / "horizons"
    old = str(docs / "horizons-16")
    out = table_against("ufit-16", old, tmp_path)
    assert "| arm | test bpb: best member | consensus | U-fit mixture |" in out, out
    [row] = [x for x in out.splitlines() if x.startswith("| social |")]
    assert "| 3.2931 ± 0.0068 |" in row, out
    for line in ("social mixture vs isolated mixture: +0.0038 bpb (per seed +0.0257, -0.0045, "
                 "-0.0099; better in 1/3)",
                 "social mixture vs isolated mixture (valid beyond the dev slice): +0.0077 bpb",
                 "snapshots mixture vs isolated mixture: -0.0201 bpb",
                 f"social mixture vs {old}: -0.0291 bpb (per seed -0.0229, -0.0314, -0.0330; "
                 "better in 0/3)",
                 f"isolated mixture vs {old}: -0.0265 bpb",
                 f"isolated mixture vs {old} (valid beyond the dev slice): -0.0109 bpb",
                 f"snapshots mixture vs {old}: -0.0246 bpb"):
        assert line in out, (line, out)
    # the dev slice cannot choose between weights fit on it and weights fit elsewhere
    assert "(the dev slice, which chooses)" not in out, out


def test_the_chain_with_evolution_off_reads_back_flat_after_generation_two(tmp_path):
    """Generations to 8 with the founders' genomes in every generation (compare.breed = false,
    three seeds), read back: every generation keeps the four families, leads the ensemble by
    about 0.009 and its parent by nothing; evolution's chain is ahead of it in two seeds of
    three; the numbers docs/results.md shows."""
    docs = BENCHMARKS.parent / "docs" / "horizons"
    out = bench("generations_figure.py", str(docs / "chain-16")).stdout
    rows = rows_by_arm(out)
    assert "| gpt+gru+looped+lstm / gpt+gru+looped+lstm / gpt+gru+looped+lstm |" \
        in rows["generation-8"], out
    assert "| 3.2619 ± 0.0014 | 1.33x / 2.33x | +0.0021 (2/3) | +0.0085 (3/3) |" \
        in rows["generation-2"], out
    assert "| 3.2609 ± 0.0047 | 1.33x / 10.33x | +0.0012 (3/3) | +0.0095 (3/3) | +0.0034 (2/3) |" \
        in rows["generation-8"], out
    assert "| 3.2385 ± 0.0043 | 10.33x | -0.0224 (0/3) | -0.0229 (0/3) |" in rows["lineage"], out
    bred = str(docs / "generations-16")
    against = table_against("chain-16", bred, tmp_path)
    assert f"generation-8 mixture vs {bred}: -0.0675 bpb (per seed -0.1013, +0.0137, -0.1150; " \
        "better in 1/3)" in against, against


def test_teachers_all_reads_back_level_with_the_parent_chain_at_twice_its_compute(tmp_path):
    """Generations to 8, bred, each taught by every generation before it (compare.teachers =
    all, three seeds), read back: evolution lands on the families the parent chain lands on,
    each generation costs about twice as much, and generation 8 and the lineage end level with
    the parent chain's (generations-16, the same seeds); the numbers docs/results.md shows."""
    docs = BENCHMARKS.parent / "docs" / "horizons"
    out = bench("generations_figure.py", str(docs / "teachers-all-16")).stdout
    rows = rows_by_arm(out)
    assert "| 4 gru / 4 lstm / 4 gru |" in rows["generation-8"], out
    assert "| 3.1939 ± 0.0609 | 6.00x / 26.84x | +0.0274 (3/3) | +0.0765 (3/3) | +0.0877 (3/3) |" \
        in rows["generation-8"], out
    assert "| 3.1491 ± 0.0468 | 26.84x | -0.0448 (0/3) | -0.0309 (0/3) |" in rows["lineage"], out
    parent = str(docs / "generations-16")
    against = table_against("teachers-all-16", parent, tmp_path)
    # generation 2 hears only the social arm either way: the same arm bit for bit, so no line
    assert f"generation-2 mixture vs {parent}" not in against, against
    assert f"generation-8 mixture vs {parent}: -0.0006 bpb (per seed -0.0082, +0.0060, " \
        "+0.0004; better in 2/3)" in against, against
    assert f"lineage mixture vs {parent}: -0.0013 bpb (per seed -0.0003, -0.0038, +0.0001; " \
        "better in 1/3)" in against, against


def test_the_generations_table_reads_the_recorded_chain_and_refuses_bad_input(tmp_path):
    docs = BENCHMARKS.parent / "docs" / "horizons"
    png = tmp_path / "g.png"
    out = bench("generations_figure.py", str(docs / "horizons-16"), "--png", str(png)).stdout
    rows = rows_by_arm(out)
    # the social arm is generation 1; generation 3 against its parent, as data_limited.py pairs
    assert "| 3.2640 ± 0.0049 | 1.00x / 1.00x | - | +0.0064 (3/3) |" in rows["social"], out
    assert "| 1.88x / 4.27x | -0.0109 (1/3) |" in rows["generation-3"], out
    assert "4 lstm / 4 gru" in rows["generation-3"]  # what evolution made of seeds 2 and 3
    # the controls against the last generation: its genomes apart, the lineage (4.27x: the chain)
    assert "| 1.63x | +0.0156 (3/3) | +0.0110 (3/3) |" in rows["generation-3-apart"], out
    assert "| 4.27x | -0.0704 (0/3) |" in rows["lineage"], out
    assert png.read_bytes()[:4] == b"\x89PNG"
    # one run read whole: seed 1 of the generations to 8, and its chain's compute
    eight = bench("generations_figure.py", str(docs / "generations-16" / "seed-1")).stdout
    [row] = [x for x in eight.splitlines() if x.startswith("| 8 | generation-8 | 4 gru |")]
    assert "| 2.46x / 16.11x | +0.0482 (1/1) | +0.1140 (1/1) |" in row, eight
    assert "yardsticks given the same U bytes (test): gzip 2.8235, bzip2 2.3837, xz 2.4355, " \
        "ppmd 2.0988" in eight, eight
    # two sets at one horizon: each line says its set (both hold a `lineage`)
    shared = bench("horizons_figure.py", str(docs / "horizons-16"), str(docs / "generations-16"),
                   "--against", "isolated-16-members@16").stdout
    assert "  horizons-16: lineage at 16.0 epochs: test -0.0014" in shared, shared
    assert "  generations-16: lineage at 16.0 epochs: test +0.0460" in shared, shared
    (tmp_path / "link.png").symlink_to(png)
    for args in ([str(tmp_path)], [str(docs / "horizons-64")],  # no generations there
                 [str(docs / "horizons-16"), "--png", str(tmp_path / "link.png")],
                 [str(docs / "horizons-16"), "--png", str(tmp_path / "g.txt")]):
        bad = bench("generations_figure.py", *args, check=False)
        assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
        assert "generations_figure.py: error:" in bad.stderr


def test_the_snapshot_sweep_refuses_a_bad_grid_before_any_work(tmp_path):
    (tmp_path / "rows.jsonl").symlink_to(tmp_path / "elsewhere.jsonl")
    (tmp_path / "damaged.jsonl").write_text("{not json\n")
    for args in (["--cycles", "1"], ["--cycles", "x"], ["--cycles", "2", "--perturb", "1"],
                 ["--cycles", "2", "--jobs", "0"], ["--preset", "debug", "--cycles", "2"],
                 ["--cycles", "2", "--out", str(tmp_path / "rows.jsonl")],
                 ["--cycles", "2", "--out", str(tmp_path / "damaged.jsonl")]):
        bad = bench("sweep_snapshots.py", *args, check=False)
        assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert not (tmp_path / "elsewhere.jsonl").exists()
    assert (tmp_path / "damaged.jsonl").read_text() == "{not json\n"
