"""Genetic operators: every child is a valid genome inside the budget, and reproducible."""

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from multitudes.evolution import operators as evolution
from multitudes.config.genome import Genome

BUDGET = 400_000


@st.composite
def genomes(draw):
    family = draw(st.sampled_from(["gpt", "looped", "lstm", "gru", "ssm"]))
    d_model = draw(st.sampled_from([32, 64, 96, 128, 192]))
    return Genome(family=family, d_model=d_model, n_layer=draw(st.integers(1, 4)),
                  n_head=draw(st.sampled_from([1, 2, 4])), d_ff=draw(st.sampled_from([64, 256])),
                  n_loop=draw(st.integers(2, 4)) if family == "looped" else 1, context=32,
                  lr=draw(st.floats(1e-4, 1e-2)), alpha=draw(st.sampled_from([0.0, 0.5, 1.0])),
                  seed=draw(st.integers(0, 100)))


@settings(max_examples=60, deadline=None)
@given(genomes(), st.integers(0, 2**32))
def test_a_mutant_is_valid_inside_the_budget_and_reproducible(parent, seed):
    child, changes = evolution.mutate(parent, random.Random(seed), BUDGET, family_switch=0.3)
    assert isinstance(child, Genome) and child.n_params <= BUDGET
    assert evolution.mutate(parent, random.Random(seed), BUDGET, family_switch=0.3) == (
        child, changes)
    assert all(isinstance(c, str) and c for c in changes)
    if child.family != parent.family:
        assert f"family {parent.family} -> {child.family}" in changes


@settings(max_examples=60, deadline=None)
@given(genomes(), genomes(), st.integers(0, 2**32))
def test_a_crossover_child_is_valid_inside_the_budget_and_reproducible(a, b, seed):
    child, changes = evolution.crossover(a, b, random.Random(seed), BUDGET)
    assert child.n_params <= BUDGET
    assert evolution.crossover(a, b, random.Random(seed), BUDGET) == (child, changes)
    donor = a if changes[0].endswith("the first parent") else b
    # the architecture comes whole from one parent (unless the budget shrank it)
    if not any("(budget)" in c for c in changes):
        for trait in evolution.ARCHITECTURE:
            assert getattr(child, trait) == getattr(donor, trait)
    for habit in evolution.HABITS:
        assert getattr(child, habit) in (getattr(a, habit), getattr(b, habit))


def test_repair_shrinks_width_first_and_names_each_step():
    big = Genome(family="gpt", d_model=512, n_layer=8, n_head=8, d_ff=2048, context=32)
    small, changes = evolution.repair(big, BUDGET)
    assert small.n_params <= BUDGET < big.n_params
    assert changes[0] == "d_model 512 -> 384 (budget)" and small.n_layer == 8
    assert small.d_ff == 4 * small.d_model and small.d_model % small.n_head == 0


def test_mutation_steps_along_the_ladders():
    g = Genome(family="lstm", d_model=128, n_layer=2, context=32, lr=1e-3)
    seen = set()
    for seed in range(200):
        child, changes = evolution.mutate(g, random.Random(seed), BUDGET, family_switch=0.0)
        seen.update(c.split()[0] for c in changes)
        assert child.d_model in (96, 128, 160) or "(budget)" in " ".join(changes)
        assert child.lr in (1e-3, 1e-3 * 0.8, 1e-3 * 1.25)
    assert {"d_model", "n_layer", "lr", "alpha", "tau"} <= seen


def test_tournament_picks_the_fitter_entrant():
    fitness = {"a": 3.0, "b": 2.0, "c": 4.0}
    wins = [evolution.tournament(fitness, random.Random(s), size=3) for s in range(5)]
    assert wins == ["b"] * 5


def test_the_young_are_not_judged_and_the_best_never_dies():
    from types import SimpleNamespace

    from multitudes.config.schema import EvolutionConfig
    from multitudes.evolution.generations import plan

    members = [SimpleNamespace(id=f"m{i}", fitness=f, genome=Genome(family="gpt", seed=i))
               for i, f in enumerate([3.0, 5.0, 4.0, 6.0])]
    cfg = EvolutionConfig(every=8, replace_fraction=0.5, min_age=96)
    ages = {"m0": 200, "m1": 200, "m2": 200, "m3": 50}
    deaths, births = plan(members, cfg, random.Random(0), BUDGET, 4, ages)
    assert deaths == ["m1", "m2"]  # the worst old enough, worst first; m3 is too young
    assert len(births) == 2 and all(set(b["parents"]) <= {"m0", "m3"} for b in births)
    assert plan(members, cfg, random.Random(0), BUDGET, 4, dict.fromkeys(ages, 10)) == ([], [])
    # min_age = 0: the worst half dies, whatever the ages
    assert plan(members, EvolutionConfig(every=8, replace_fraction=0.5), random.Random(0),
                BUDGET, 4, ages)[0] == ["m3", "m1"]


def test_replay_follows_the_lineage_not_the_generator(text_file, tmp_path):
    """A run replayed from another run's lineage ends where that run did, whatever its seed."""
    import json

    from multitudes.config import files as config_files
    from multitudes.training import protocols
    from multitudes.runs import directory as rundir

    def run(out, seed, replay=None):
        cfg = config_files.load("debug", None, [f"data.corpus='file:{text_file}'",
                                          f"evolution.seed={seed}"])
        rundir.prepare_run_dir(out, "train", cfg, False, False)
        return protocols.run("train", cfg, out, progress=False, replay=replay)

    a, b = run(tmp_path / "a", 0), run(tmp_path / "b", 7)
    assert protocols.numbers(a) != protocols.numbers(b)  # other seed, other births
    rows_b = [json.loads(x) for x in (tmp_path / "b" / "lineage.jsonl").read_text().splitlines()]
    replayed = run(tmp_path / "c", 0, replay=rows_b)  # seed 0, but b's births and deaths
    assert protocols.numbers(replayed) == protocols.numbers(b)
    rows_c = [json.loads(x) for x in (tmp_path / "c" / "lineage.jsonl").read_text().splitlines()]
    assert rows_c == rows_b


def test_cultural_transmission_reads_ages_off_the_curves():
    from multitudes.evolution.generations import cultural_transmission
    events = [{"arm": "s", "event": "birth", "member": "f", "parents": [], "real_bytes": 0,
               "genome": {"family": "gpt"}},
              {"arm": "s", "event": "birth", "member": "n", "parents": ["f"], "real_bytes": 100,
               "fitness": 8.0, "genome": {"family": "gpt"}}]
    history = [{"real_bytes": 100, "members": {"f": {"dev_bpb": 6.0}}},
               {"real_bytes": 200, "members": {"f": {"dev_bpb": 5.0}, "n": {"dev_bpb": 5.0}}},
               {"real_bytes": 300, "members": {"f": {"dev_bpb": 4.0}, "n": {"dev_bpb": 4.0}}}]
    out = cultural_transmission(history, events, "s")
    newborn, = out["newborns"]
    # at its last age (200 bytes) the founders were at 5.0; the newborn got there at age 100
    assert newborn["age_bytes"] == 200 and newborn["founders_bpb_at_age"] == 5.0
    assert newborn["bytes_to_founders_bpb"] == 100 and out["median_speedup"] == 2.0
