"""Arms are kinds (training/arms.py) planned by registered protocols (training/protocol.py)."""

from dataclasses import dataclass, replace

import pytest


from multitudes.config import files as config_files
from multitudes.errors import UserError
from multitudes.training.arms import Arm, ArmContext, Generation, Measured, Reference, Student
from multitudes.training.limited_compare import LimitedCompare
from multitudes.training.loop import ArmRunner, isolated
from multitudes.training.protocol import protocol_for
from multitudes.training.protocols import plan
from multitudes.training.stream_compare import StreamCompare

LIMITED = ["regime='data-limited'", "data.unique_bytes=4096", "evolution.every=0",
           "train.real_bytes=8192", "train.sampling='contiguous'"]


@dataclass(frozen=True)
class Shuffled(Arm):
    """A new control, written as a user would: the members trained alone on windows drawn at
    random from U instead of its contiguous lanes. One class; nothing else in the package
    changes."""

    def build(self, ctx: ArmContext, arms: dict) -> ArmRunner:
        cfg = replace(ctx.cfg, train=replace(ctx.cfg.train, sampling="random"))
        return ctx.runner(self, cfg)


class WithShuffled(LimitedCompare):
    def plan(self) -> list[Arm]:
        cfg = self.cfg
        return super().plan() + [Shuffled("shuffled", isolated(cfg.social), cfg.train.real_bytes,
                                          cfg.data.unique_bytes)]


def test_each_regime_finds_its_protocol_and_plans_typed_arms():
    stream = config_files.load("debug", None, [])
    limited = config_files.load("debug", None, LIMITED + [
        "compare.distill=true", "compare.generations=3"])
    assert type(protocol_for("compare", stream)) is StreamCompare
    assert type(protocol_for("compare", limited)) is LimitedCompare
    kinds = [(a.name, type(a)) for a in plan("compare", limited)]
    assert kinds == [("social", Measured), ("isolated", Reference), ("isolated-2U", Reference),
                     ("isolated-4U", Reference), ("distilled", Student),
                     ("distilled-ensemble", Student), ("generation-2", Generation),
                     ("generation-3", Generation)]
    arms = dict((a.name, a) for a in plan("compare", limited))
    assert arms["generation-3"].waits_for() == ("generation-2",) and arms["generation-3"].g == 3
    assert arms["distilled-ensemble"].waits_for() == ("isolated", "isolated")  # both roles
    assert arms["isolated-4U"].k == 4 and not arms["social"].waits_for()


def test_a_new_arm_kind_is_one_class_and_the_compare_places_it(tmp_path):
    """The shuffled control above runs in a data-limited compare through the shared loop and is
    placed on the reference curve beside the social arm, with no other change."""
    cfg = config_files.load("debug", None, LIMITED)
    results = WithShuffled(cfg).run(tmp_path, progress=False)
    assert list(results["arms"]) == ["social", "isolated", "isolated-2U", "isolated-4U",
                                     "shuffled"]
    assert set(results["data_limited"]["placed"]["shuffled"]) == {"best", "consensus",
                                                                  "mixture"}
    shuffled, alone = results["arms"]["shuffled"], results["arms"]["isolated"]
    assert shuffled["arm"] == {"kind": "shuffled", "listens": False}  # its kind, recorded
    assert shuffled["real_bytes"] == alone["real_bytes"]
    assert shuffled["best_test_bpb"] != alone["best_test_bpb"]  # other windows, other numbers


def test_generations_taught_by_all_elders_and_the_genomes_apart_control_are_planned():
    cfg = config_files.load("debug", None, LIMITED + [
        "compare.generations=4", "compare.teachers='all'", "compare.apart=true",
        "compare.breed=false"])
    arms = {a.name: a for a in plan("compare", cfg)}
    g4 = arms["generation-4"]
    assert g4.parent == "generation-3" and not g4.bred
    assert g4.teachers == ("social", "generation-2", "generation-3")
    apart = arms["generation-4-apart"]
    assert apart.waits_for() == ("generation-4",) and apart.social.channel == "none"
    assert list(arms)[-1] == "generation-4-apart"
    chain = {a.name: a for a in plan("compare", config_files.load(
        "debug", None, LIMITED + ["compare.generations=3"]))}
    assert chain["generation-3"].teachers == ("generation-2",) and chain["generation-3"].bred


@pytest.mark.parametrize("override", ["compare.apart=true", "compare.teachers='all'",
                                      "compare.breed=false", "compare.teachers='some'",
                                      "compare.lineage=true"])
def test_a_generations_option_without_generations_is_refused(override):
    with pytest.raises(UserError):
        config_files.load("debug", None, LIMITED + [override])


def test_every_arm_records_its_kind_and_an_older_file_is_read_with_the_same_kinds():
    """results.json's `arm` entry (schema 3) is the arm's own description; a schema-2 file,
    whose arms had only their names, is upgraded to entries that agree with it."""
    from multitudes.runs.results import upgrade

    cfg = config_files.load("debug", None, LIMITED + [
        "compare.distill=true", "compare.generations=3", "compare.apart=true",
        "compare.snapshot_cycles=2", "compare.snapshot_social=true"])
    planned = plan("compare", cfg)
    described = {a.name: a.describe() for a in planned}
    assert described["isolated-2U"] == {"kind": "reference", "listens": False, "k": 2}
    assert described["generation-3"] == {"kind": "generation", "listens": True, "g": 3,
                                         "parent": "generation-2",
                                         "teachers": ["generation-2"], "bred": True}
    assert described["social+snapshots"] == {"kind": "snapshots", "listens": True, "cycles": 2}
    assert described["generation-3-apart"]["kind"] == "apart"
    old = {"schema": 2, "command": "compare", "arms": {name: {} for name in described},
           "data_limited": {"placed": {"social": {}, "ensemble (isolated on U)": {"x": 1}}}}
    new = upgrade(old)
    assert new["schema"] == 3 and new["data_limited"]["ensemble"] == {"x": 1}
    assert "ensemble (isolated on U)" not in new["data_limited"]["placed"]
    for name, arm in new["arms"].items():
        assert arm["arm"].items() <= described[name].items(), name


def grown_equals_whole(tmp_path, sets: list[str], added: str) -> tuple[dict, object]:
    """A debug compare run with the override `added` from the start, and one run without it
    and then resumed with it: their results.json must be equal. Returns the results and the
    grown run's directory (its timings say what the resume trained)."""
    import json

    from test_cli import cli

    args = [x for s in sets for x in ("--set", s)]
    whole, grown = tmp_path / "whole", tmp_path / "grown"
    cli("compare", "--preset", "debug", *args, "--set", added, "--out", whole, "--quiet")
    cli("compare", "--preset", "debug", *args, "--out", grown, "--quiet")
    cli("compare", "--resume", grown, "--set", added, "--quiet")
    a, b = (json.loads((d / "results.json").read_text()) for d in (whole, grown))
    assert a == b
    return a, grown


def test_the_ensemble_given_more_compute_reads_more_of_u_and_joins_a_finished_run(tmp_path):
    """`compare.ensemble_compute = [F]`: the isolated members on U for F x N real bytes (their
    own schedule), F x the ensemble's training FLOPs, placed beside the social arm but not a
    point of the reference curve; a finished run takes it on resume, the other arms read back,
    and ends as one run with it from the start."""
    import json

    from multitudes.training.arms import Longer

    sets = LIMITED + ["compare.unique_multiples=[1, 2]"]
    cfg = config_files.load("debug", None, sets + ["compare.ensemble_compute=[1.5, 2]"])
    longer = [a for a in plan("compare", cfg) if isinstance(a, Longer)]
    assert [(a.name, a.total_bytes, a.unique_bytes, a.compute) for a in longer] == [
        ("isolated-x1.5", 12288, 4096, 1.5), ("isolated-x2", 16384, 4096, 2)]
    assert all(a.social.channel == "none" and not a.waits_for() for a in longer)
    a, grown = grown_equals_whole(tmp_path, sets, "compare.ensemble_compute=[1.5]")
    arms = a["arms"]
    more, alone = arms["isolated-x1.5"], arms["isolated"]
    assert more["arm"] == {"kind": "longer", "listens": False, "compute": 1.5}
    assert more["train_flops"] == 1.5 * alone["train_flops"]
    assert more["epochs"] == pytest.approx(1.5 * alone["epochs"], abs=1e-3)
    assert "isolated-x1.5" in a["data_limited"]["placed"]
    assert [q["k"] for q in a["data_limited"]["reference"]] == [1, 2]
    trained = json.loads((grown / "timings.json").read_text())["arms"]
    assert [x for x in trained if trained[x].get("training steps")] == ["isolated-x1.5"]


def test_the_ensemble_given_more_members_trains_copies_and_joins_a_finished_run(tmp_path):
    """`compare.ensemble_members = [M]`: M isolated members on U, the K founders (trained
    exactly as the isolated arm's: same genomes, seeds and batches) and copies of them with
    seeds of their own, M / K x the ensemble's training FLOPs, all in its mixture; a finished
    run takes it on resume and ends as one run with it from the start."""
    import json

    from multitudes.training.arms import Enlarged, enlarged

    sets = LIMITED + ["compare.unique_multiples=[1, 2]"]
    cfg = config_files.load("debug", None, sets + ["compare.ensemble_members=[3, 5]"])
    K = len(cfg.members)
    assert K == 2
    more = [a for a in plan("compare", cfg) if isinstance(a, Enlarged)]
    assert [(a.name, a.total_bytes, a.unique_bytes, a.members) for a in more] == [
        ("isolated-3-members", 8192, 4096, 3), ("isolated-5-members", 8192, 4096, 5)]
    genomes = enlarged(cfg.members, 5)
    assert genomes[:K] == cfg.members
    assert [g.replace(seed=0) for g in genomes] == [
        cfg.members[j % K].replace(seed=0) for j in range(5)]
    assert len({g.seed for g in genomes}) == 5
    a, grown = grown_equals_whole(tmp_path, sets, "compare.ensemble_members=[3]")
    arms = a["arms"]
    wide, alone = arms["isolated-3-members"], arms["isolated"]
    assert wide["arm"] == {"kind": "enlarged", "listens": False, "members": 3}
    assert len(wide["members"]) == 3 and len(wide["mixture_weights"]) == 3
    copy = wide["members"][2]  # member 0's genome again, its own seed: its FLOPs, not its bits
    assert copy["train_flops"] == alone["members"][0]["train_flops"]
    assert wide["train_flops"] == alone["train_flops"] + copy["train_flops"]
    for founder, own in zip(alone["members"], wide["members"]):
        assert own["best_dev_bpb"] == founder["best_dev_bpb"]
        assert own["test_bpb"] == founder["test_bpb"]
    assert copy["test_bpb"] != alone["members"][0]["test_bpb"]
    assert "isolated-3-members" in a["data_limited"]["placed"]
    timings = json.loads((grown / "timings.json").read_text())
    trained = timings["arms"]
    assert [x for x in trained if trained[x].get("training steps")] == ["isolated-3-members"]
    first, = timings["earlier"]  # the run it grew from keeps its record
    assert not first["resumed"] and "isolated-3-members" not in first["arms"]
    assert first["arms"]["isolated"]["training steps"] > 0


def test_the_retuned_ensemble_changes_only_the_named_recipes_and_joins_a_finished_run(tmp_path):
    """`compare.retuned`: the isolated members on U with the named families' recipes changed
    (here the LSTM's dropout), the others' as they are: the GPT trains exactly as the isolated
    arm's, the LSTM differently at the same FLOPs; a finished run takes it on resume and ends as
    one run with it from the start."""
    import json

    from multitudes.training.arms import Retuned

    sets = LIMITED + ["compare.unique_multiples=[1, 2]"]
    added = "compare.retuned.lstm.dropout=0.3"
    cfg = config_files.load("debug", None, sets + [added])
    arm, = [a for a in plan("compare", cfg) if isinstance(a, Retuned)]
    assert (arm.name, arm.total_bytes, arm.unique_bytes) == ("isolated-retuned", 8192, 4096)
    assert arm.recipes == {"lstm": {"dropout": 0.3}} and not arm.waits_for()
    a, grown = grown_equals_whole(tmp_path, sets, added)
    arms = a["arms"]
    again, alone = arms["isolated-retuned"], arms["isolated"]
    assert again["arm"] == {"kind": "retuned", "listens": False,
                            "recipes": {"lstm": {"dropout": 0.3}}}
    (gpt, lstm), (gpt_alone, lstm_alone) = again["members"], alone["members"]
    assert (gpt["family"], lstm["family"]) == ("gpt", "lstm")
    assert gpt["test_bpb"] == gpt_alone["test_bpb"]
    assert lstm["test_bpb"] != lstm_alone["test_bpb"]
    assert again["train_flops"] == alone["train_flops"]
    assert "isolated-retuned" in a["data_limited"]["placed"]
    trained = json.loads((grown / "timings.json").read_text())["arms"]
    assert [x for x in trained if trained[x].get("training steps")] == ["isolated-retuned"]


def test_the_lineage_mixes_every_generation_and_joins_a_finished_run(tmp_path):
    """`compare.lineage`: the members of generation 1 (the social arm) and 2, read back at their
    kept weights and scored as they were in their own arms, mixed by dev-fit weights; its
    compute is its sources'; it trains nothing; a finished run takes it on resume and ends as
    one run with it from the start."""
    import json

    from multitudes.training.lineage import Lineage

    sets = LIMITED + ["compare.unique_multiples=[1, 2]", "compare.generations=2"]
    cfg = config_files.load("debug", None, sets + ["compare.lineage=true"])
    arms = {a.name: a for a in plan("compare", cfg)}
    assert isinstance(arms["lineage"], Lineage)
    assert arms["lineage"].waits_for() == ("social", "generation-2")
    a, grown = grown_equals_whole(tmp_path, sets, "compare.lineage=true")
    arms = a["arms"]
    lineage, sources = arms["lineage"], [arms["social"], arms["generation-2"]]
    assert lineage["arm"] == {"kind": "lineage", "listens": True,
                              "sources": ["social", "generation-2"]}
    own = {m["id"]: m for m in lineage["members"]}
    assert list(own) == [f"{name}-{m['id']}" for name, arm in
                         zip(("social", "generation-2"), sources) for m in arm["members"]]
    for name, arm in zip(("social", "generation-2"), sources):
        for m in arm["members"]:
            mine = own[f"{name}-{m['id']}"]
            assert (mine["test_bpb"], mine["best_dev_bpb"], mine["train_flops"]) == (
                m["test_bpb"], m["best_dev_bpb"], m["train_flops"])
    assert lineage["train_flops"] == sum(arm["train_flops"] for arm in sources)
    assert len(lineage["mixture_weights"]) == 4
    # its weights are fit on the dev slice over a superset of each source's members
    assert lineage["mixture_dev_bpb"] <= min(arm["mixture_dev_bpb"] for arm in sources) + 1e-4
    assert lineage["curve"] == []
    trained = json.loads((grown / "timings.json").read_text())["arms"]
    assert [x for x in trained if trained[x].get("training steps")] == []
    assert trained["lineage"].get("held-out scoring")
