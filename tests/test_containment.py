"""A sick member (non-finite thoughts, loss or gradients) is reborn; nobody hears it."""

import json

import numpy as np
import pytest
import torch

from conftest import tiny
from multitudes.config import files as config_files
from multitudes.config.schema import SocialConfig, TrainConfig
from multitudes.data.splits import BatchStream
from multitudes.population.member import Member
from multitudes.population.population import Population
from multitudes.runs.files import RunFiles
from multitudes.training.loop import ArmRunner

GENOMES = [tiny("gpt", seed=1), tiny("lstm", seed=2), tiny("gru", seed=3)]


def make_pop(genomes, **social_kw):
    members = [Member.create(f"m{i}", g, torch.device("cpu")) for i, g in enumerate(genomes)]
    return Population(members, SocialConfig(**social_kw), TrainConfig(), 100,
                      torch.device("cpu"), torch.Generator().manual_seed(0))


def batches(n):
    data = np.frombuffer(b"a sick member is contained, the others go on. " * 200, np.uint8)
    stream = BatchStream(data, 4, 32, 0)
    return [stream.next() for _ in range(n)]


def poison_weights(member):
    with torch.no_grad():
        next(member.model.parameters()).fill_(float("nan"))


def poison_gradients(member):
    next(member.model.parameters()).register_hook(lambda g: torch.full_like(g, float("inf")))


@pytest.mark.parametrize("poison, reason", [(poison_weights, "non-finite logits"),
                                            (poison_gradients, "non-finite gradients")])
@pytest.mark.parametrize("trust", ["uniform", "fitness"])
def test_a_sick_member_is_reset_and_the_others_hear_only_the_healthy(poison, reason, trust):
    pop = make_pop(GENOMES, channel="logit", trust=trust)
    healthy_pair = make_pop(GENOMES[1:], channel="logit", trust=trust)
    first, second = batches(2)
    poison(pop.members[0])
    stats = pop.step(first)
    healthy_pair.step(first)

    assert [e["member"] for e in pop.events] == ["m0"] and pop.events[0]["reason"] == reason
    sick = pop.members[0]
    assert sick.resets == 1 and sick.steps == 0 and sick.fitness is None
    assert all(torch.isfinite(p).all() for p in sick.model.parameters())
    assert np.isnan(stats.data_loss[0]) and np.isfinite(stats.data_loss[1:]).all()
    # With a NaN-logit member the two healthy ones heard only each other: they moved exactly
    # as a population of the two alone would (the mixing is done in another order, hence the
    # float tolerance). A member whose gradients broke was heard before it broke: it did think.
    for a, b in zip(pop.members[1:], healthy_pair.members):
        for p, q in zip(a.model.parameters(), b.model.parameters()):
            assert torch.isfinite(p).all()
            if reason == "non-finite logits":  # Adam's first step turns float noise in a
                # near-zero gradient into up to ~1e-3 of a step (lr 3e-3 / warmup): 1e-5 bounds it
                assert torch.allclose(p, q, atol=1e-5)
    pop.events.clear()
    stats = pop.step(second)  # everyone, the reborn member included, trains on
    assert not pop.events and np.isfinite(stats.data_loss).all()
    assert sick.steps == 1


@pytest.mark.parametrize("poison, reason", [(poison_weights, "non-finite logits"),
                                            (poison_gradients, "non-finite gradients")])
def test_a_sick_member_that_hears_no_one_is_reset_and_the_others_step_as_alone(poison, reason):
    """The channel closed (the isolated arm), each member reads and learns in one go: the sick
    one is reborn all the same, and the others step exactly as they would without it."""
    pop, others = make_pop(GENOMES, channel="none"), make_pop(GENOMES[1:], channel="none")
    poison(pop.members[0])
    stats = pop.step(batches(1)[0])
    others.step(batches(1)[0])
    assert [(e["member"], e["reason"]) for e in pop.events] == [("m0", reason)]
    assert pop.members[0].resets == 1 and pop.members[0].steps == 0
    assert np.isnan(stats.data_loss[0]) and np.isfinite(stats.data_loss[1:]).all()
    for a, b in zip(pop.members[1:], others.members):
        assert a.last_loss == b.last_loss
        for p, q in zip(a.model.parameters(), b.model.parameters()):
            assert torch.equal(p, q)


def test_a_sick_speaker_says_nothing():
    pop = make_pop(GENOMES[:2], channel="logit", language_every=1, language_prompts=2,
                   language_prompt_length=8, language_length=8)
    poison_weights(pop.members[0])
    pop.step(batches(1)[0])
    assert {t.speaker for t in pop.culture.texts} == {"m1"}
    assert pop.events[0]["member"] == "m0"


def test_the_runner_logs_the_reset_and_records_it_in_the_lineage(text_file, tmp_path, capsys):
    from multitudes.data.corpora import resolve
    from multitudes.data.splits import load_splits
    cfg = config_files.load("debug", None, [f"data.corpus='file:{text_file}'", "train.eval_every=4",
                                      "train.checkpoint_every=4"])
    runner = ArmRunner(cfg, load_splits(resolve(cfg.data.corpus)), RunFiles(tmp_path, progress=False),
                       name="social", social=cfg.social, total_bytes=cfg.train.real_bytes)
    poison_weights(runner.pop.members[1])
    runner.run_until(8 * 512)
    rows = [json.loads(x) for x in (tmp_path / "lineage.jsonl").read_text().splitlines()]
    assert [(r["arm"], r["event"], r["member"], r["step"]) for r in rows] == [
        ("social", "reset", "m1-lstm", 0)]
    assert "m1-lstm reset at step 0 (non-finite logits)" in capsys.readouterr().out
    last = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert all(np.isfinite(v["dev_bpb"]) for v in last["members"].values())
    # the reset is part of the checkpointed state: a resumed runner knows of it
    again = ArmRunner(cfg, load_splits(resolve(cfg.data.corpus)), RunFiles(tmp_path, progress=False),
                       name="social", social=cfg.social, total_bytes=cfg.train.real_bytes)
    assert again.try_resume() and again.events == rows
    assert again.pop.members[1].resets == 1
