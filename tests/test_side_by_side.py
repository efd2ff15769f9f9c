"""Members stepped side by side (population/side_by_side.py): the same arithmetic as one after
another on one thread, each member's random stream its own, failures surfaced."""

import threading

import pytest
import torch

from conftest import tiny
from multitudes.config.schema import SocialConfig, TrainConfig
from multitudes.data.splits import make_stream
from multitudes.population import side_by_side
from multitudes.population.member import Member
from multitudes.population.population import Population


def genomes():
    # dropout in three of four members: their forwards draw from their own streams, the
    # transformer's through torch's global generator under the lock, the RNNs' through their own
    return [tiny("gpt", dropout=0.1, seed=1), tiny("lstm", dropout=0.2, seed=2),
            tiny("gru", dropout=0.1, seed=3), tiny("looped", seed=4)]


# every member speaks every other step and reads 3 of its peers' texts at every step
LANGUAGE = dict(language_every=2, language_prompts=2, language_prompt_length=8,
                language_length=8, language_batch=3, beta=0.5)


def trained(threads: int, side: bool, steps: int = 6, channel: str = "logit",
            language: bool = False) -> Population:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        members = [Member.create(f"m{i}", g, torch.device("cpu")) for i, g in
                   enumerate(genomes())]
        pop = Population(members, SocialConfig(channel=channel, trust="fitness",
                                      **(LANGUAGE if language else {})),
                         TrainConfig(side_by_side=side), 100, torch.device("cpu"),
                         torch.Generator().manual_seed(0))
        for i, m in enumerate(pop.members):
            m.fitness = 3.0 + i / 10  # trust by fitness reads them
        data = torch.arange(4096, dtype=torch.uint8).numpy() * 7 % 251
        stream = make_stream(data, 4, 32, 0, "contiguous")
        for _ in range(steps):
            batch = stream.next()
            pop.step(batch, stream.continues)
        return pop
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize("channel, language", [("logit", False), ("none", False),
                                               ("logit", True), ("none", True)])
def test_side_by_side_is_one_after_another_on_one_thread_bit_for_bit(channel, language):
    """Two workers of one thread each do each member's arithmetic exactly as one thread does
    it member after member, dropout masks included (each member's generator, not a shared one).
    With the channel closed (the isolated arm) a member reads and learns in one task; with the
    language channel open the texts each reads are drawn before the members learn."""
    assert side_by_side.workers_for(4, torch.device("cpu"), True) >= 1
    side = trained(threads=2, side=True, channel=channel, language=language)
    alone = trained(threads=1, side=False, channel=channel, language=language)
    if language:
        assert len(side.culture.texts) > 0 and side.generated_bytes == alone.generated_bytes
    for a, b in zip(side.members, alone.members):
        assert torch.equal(a.rng_state, b.rng_state), a.id
        assert a.steps == b.steps == 6 and a.last_loss == b.last_loss
        for p, q in zip(a.model.parameters(), b.model.parameters()):
            assert torch.equal(p, q), a.id
    # the members with dropout did draw, and each from its own stream
    fresh = [Member.create("x", g, torch.device("cpu")).rng_state for g in genomes()]
    drew = [not torch.equal(m.rng_state, f) for m, f in zip(side.members, fresh)]
    assert drew == [True, True, True, False]


def test_an_rnn_member_draws_its_dropout_without_the_global_generators_lock():
    """The RNNs draw from their own generator (Member.draws), so a dropout RNN steps while
    another thread holds the lock that the transformers' draws take."""
    member = Member.create("m", tiny("gru", dropout=0.1), torch.device("cpu"))
    before, finished = member.rng_state.clone(), threading.Event()

    def forward():
        with member.draws():
            member.model.train()(torch.zeros(2, 8, dtype=torch.long)).sum().backward()
        finished.set()

    with side_by_side.RNG_LOCK:
        thread = threading.Thread(target=forward)
        thread.start()
        assert finished.wait(timeout=60), "the RNN's forward waited for the lock"
    thread.join()
    assert not torch.equal(member.rng_state, before)  # it drew, from its own stream


def test_workers_follow_the_threads_the_members_and_the_device():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert side_by_side.workers_for(4, torch.device("cpu"), True) == 2
        assert side_by_side.workers_for(1, torch.device("cpu"), True) == 1
        assert side_by_side.workers_for(4, torch.device("cpu"), False) == 1
        assert side_by_side.workers_for(4, torch.device("cuda"), True) == 1
    finally:
        torch.set_num_threads(previous)


def test_each_keeps_order_runs_on_one_thread_and_waits_for_all_before_raising():
    done, names = [], set()

    def work(i):
        names.add(threading.current_thread().name)
        if i == 0:
            raise ValueError("member 0 fell sick")
        done.append((i, torch.get_num_threads()))
        return i * i

    assert side_by_side.each(lambda i: i * i, [3, 1, 2], workers=2) == [9, 1, 4]
    with pytest.raises(ValueError, match="member 0"):
        side_by_side.each(work, [0, 1, 2, 3], workers=2)
    assert sorted(i for i, _ in done) == [1, 2, 3]  # the others finished, not abandoned
    assert all(n == 1 for _, n in done)  # one intra-op thread per worker
    assert all(n.startswith("member") for n in names)


def scored(threads: int, side: bool, tmp_path) -> tuple[dict, dict]:
    """A trained population's dev row and milestone, scored on `threads` threads."""
    from multitudes.config.schema import DataConfig, RunConfig
    from multitudes.runs.files import RunFiles
    from multitudes.training.scoring import Scoring

    pop = trained(threads=1, side=False)
    pop.train = TrainConfig(side_by_side=side)
    cfg = RunConfig(regime="data-limited", data=DataConfig(unique_bytes=4096),
                    train=TrainConfig(dev_bytes=2048, sampling="contiguous", side_by_side=side),
                    members=genomes())
    data = torch.arange(8192, dtype=torch.uint8).numpy() * 13 % 241
    splits = {"train": data, "valid": data[:6000], "test": data[2000:7000]}
    scoring = Scoring(cfg, splits, torch.device("cpu"), keep_best=True)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        assert pop.workers(4) == (threads if side else 1)
        row = scoring.dev_row(pop, {"epochs": 1.0})
        milestone = scoring.milestone(pop, "arm", "arm", RunFiles(tmp_path / f"{threads}"), 1.0)
    finally:
        torch.set_num_threads(previous)
    for entry in milestone["members"]:
        entry.pop("checkpoint")
    return row, milestone


def test_members_scored_side_by_side_score_what_one_thread_scores(tmp_path):
    """Scoring (the dev slice, and valid and test at a milestone) maps the members over the
    same workers as the step; each member's numbers are those of one thread, bit for bit."""
    assert scored(2, True, tmp_path) == scored(1, False, tmp_path)


def test_a_rank_counts_only_the_members_it_owns():
    """Under torchrun a rank steps and scores only its own members: `mine` lists them, and
    with one of them there is nothing to put side by side (so the scoring draws its bars)."""
    pop = trained(threads=1, side=True, steps=1)
    assert pop.mine() == [0, 1, 2, 3]
    for m in pop.members[1:]:
        m.rank = 1  # owned by another rank
    assert pop.mine() == [0]
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert pop.workers(len(pop.mine())) == 1
        assert pop.workers(len(pop.members)) == 2
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize("channel, waits", [("none", 1), ("logit", 2)])
def test_a_member_that_hears_no_one_steps_in_one_task(monkeypatch, channel, waits):
    """The isolated arm's step is one task a member (one wait a step); a listening step waits
    twice: for every member's thoughts before the consensus, then for their learning."""
    calls = []
    real_each = side_by_side.each

    def counted(fn, items, workers):
        calls.append(len(items))
        return real_each(fn, items, workers)
    monkeypatch.setattr(side_by_side, "each", counted)
    trained(threads=2, side=True, steps=3, channel=channel)
    assert calls == [4] * (3 * waits)
