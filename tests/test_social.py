"""Channels against direct, slow computations; isolation proven with autograd."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import tiny
from multitudes.population import social
from multitudes.config.schema import SocialConfig, TrainConfig
from multitudes.data.splits import BatchStream
from multitudes.population.member import Member
from multitudes.population.population import Population


def slow_consensus(probs, w):
    K = len(probs)
    return [sum(w[m][j] * probs[j] for j in range(K) if j != m) for m in range(K)]


@pytest.mark.parametrize("policy", ["uniform", "fitness", "topk", "random_peer"])
def test_trust_policies_match_a_direct_computation(policy):
    K = 4
    gen = torch.Generator().manual_seed(0)
    probs = [F.softmax(torch.randn(2, 3, 256, generator=gen), -1) for _ in range(K)]
    fitness = [3.0, 2.5, 4.0, 2.7]
    w = social.trust_weights(policy, fitness, 2, 0.5, torch.Generator().manual_seed(1))
    got = social.consensus(probs, w)
    if policy == "uniform":
        direct = [[1 / (K - 1)] * K for _ in range(K)]
    elif policy == "fitness":
        direct = [[0.0 if j == m else np.exp(-fitness[j] / 0.5) for j in range(K)]
                  for m in range(K)]
        direct = [[v / sum(row) for v in row] for row in direct]
    elif policy == "topk":  # the two fittest peers of each listener
        best = {0: [1, 3], 1: [3, 0], 2: [1, 3], 3: [1, 0]}
        direct = [[0.5 if j in best[m] else 0.0 for j in range(K)] for m in range(K)]
    else:
        assert all(w[m, m] == 0 and w[m].sum() == 1 and (w[m] > 0).sum() == 1 for m in range(K))
        direct = w.tolist()
    for a, b in zip(got, slow_consensus(probs, direct)):
        assert torch.allclose(a, b, atol=1e-6)
        assert torch.allclose(a.sum(-1), torch.ones(2, 3))


def test_listen_loss_is_the_kl_gradient():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(2, 5, 256, generator=gen, requires_grad=True)
    q = F.softmax(torch.randn(2, 5, 256, generator=gen), -1)
    tau = 2.0
    ce = social.listen_loss(z, q, tau)
    kl = tau ** 2 * F.kl_div(F.log_softmax(z / tau, -1), q, reduction="none").sum(-1).mean()
    g_ce, = torch.autograd.grad(ce, z)
    g_kl, = torch.autograd.grad(kl, z)
    assert torch.allclose(g_ce, g_kl, atol=1e-6)
    entropy = -(q * q.log()).sum(-1).mean()
    assert torch.allclose(ce - kl, tau ** 2 * entropy, atol=1e-4)


def make_pop(genomes, **social_kw):
    members = [Member.create(f"m{i}", g, torch.device("cpu")) for i, g in enumerate(genomes)]
    return Population(members, SocialConfig(**social_kw), TrainConfig(), 100,
                      torch.device("cpu"), torch.Generator().manual_seed(0))


def test_no_gradient_crosses_members():
    pop = make_pop([tiny("gpt"), tiny("lstm")])
    x = torch.randint(256, (2, 33), generator=torch.Generator().manual_seed(0))
    logits = [m.model(x[:, :-1]) for m in pop.members]
    q = social.consensus(social.thoughts(logits, [1.0, 1.0]), None)
    loss_0 = F.cross_entropy(logits[0].reshape(-1, 256), x[:, 1:].reshape(-1)) + \
        social.listen_loss(logits[0], q[0], 1.0)
    grads = torch.autograd.grad(loss_0, list(pop.members[1].model.parameters()),
                                allow_unused=True)
    assert all(g is None for g in grads)
    own = torch.autograd.grad(loss_0, list(pop.members[0].model.parameters()))
    assert any(g.abs().sum() > 0 for g in own)


def batches(n, seed=0):
    data = np.frombuffer(b"multitudes social training of byte models " * 200, dtype=np.uint8)
    stream = BatchStream(data, 4, 32, seed)
    return [stream.next() for _ in range(n)]


@pytest.mark.parametrize("social_kw", [dict(channel="none"), dict(channel="logit"),
                                       dict(channel="complement"),
                                       dict(channel="logit", trust="random_peer",
                                            language_every=2, language_length=8)])
def test_one_member_with_any_channel_is_plain_training(social_kw):
    pop = make_pop([tiny("gpt")], **social_kw)
    for b in batches(6):
        pop.step(b)
    # plain training of the same member, written out by hand
    ref = Member.create("m0", tiny("gpt"), torch.device("cpu"))
    for step, b in enumerate(batches(6)):
        for group in ref.optimizer.param_groups:
            group["lr"] = ref.genome.lr
        with ref.rng_scope():
            logits = ref.model(b[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, 256), b[:, 1:].reshape(-1))
        ref.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ref.model.parameters(), 1.0)
        ref.optimizer.step()
    for a, b in zip(pop.members[0].model.parameters(), ref.model.parameters()):
        assert torch.equal(a, b)


def test_listening_changes_training_and_is_deterministic():
    def run(**kw):
        pop = make_pop([tiny("gpt"), tiny("gru", seed=4)], **kw)
        for b in batches(5):
            pop.step(b)
        return [p.detach().clone() for p in pop.members[0].model.parameters()]
    alone, heard, again = run(channel="none"), run(channel="logit"), run(channel="logit")
    assert all(torch.equal(a, b) for a, b in zip(heard, again))
    assert not all(torch.equal(a, b) for a, b in zip(alone, heard))


def test_the_complement_channel_is_the_mixtures_loss_through_the_members_own_probabilities():
    """-log((1/K) p(y) + ((K-1)/K) q(y)) at the real bytes: the gradient reaches the member
    only (q detached), and it learns less where its peers already put weight on the truth."""
    from multitudes.population.channels import complement_loss

    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 5, 256, generator=g, requires_grad=True)
    q = torch.softmax(torch.randn(2, 5, 256, generator=g), -1).requires_grad_()
    y = torch.randint(256, (2, 5), generator=g)
    loss = complement_loss(z, q, y, 3)
    p = torch.softmax(z.detach(), -1)
    by_hand = -torch.log(p.gather(-1, y[..., None]) / 3 + 2 / 3 * q.detach().gather(
        -1, y[..., None])).mean()
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-6)
    loss.backward()
    assert q.grad is None and z.grad.abs().sum() > 0
    # the same logits, peers right (q(y) = 0.9) or wrong (q(y) = 0): a smaller pull when right
    one = torch.zeros(1, 1, 256)
    right, wrong = one.clone(), one.clone()
    right[..., 7], wrong[..., 8] = 1.0, 1.0
    pulls = []
    for heard in (0.9 * right + 0.1 * wrong, wrong):
        z1 = torch.zeros(1, 1, 256, requires_grad=True)
        complement_loss(z1, heard, torch.tensor([[7]]), 2).backward()
        pulls.append(-z1.grad[0, 0, 7].item())
    assert 0 < pulls[0] < pulls[1]


def test_the_complement_channel_at_alpha_zero_is_training_alone():
    """Negative correlation learning at lambda = 0 is independent training, bit for bit."""
    def run(**kw):
        pop = make_pop([tiny("gpt", alpha=0.0), tiny("gru", seed=4, alpha=0.0)], **kw)
        for b in batches(4):
            pop.step(b)
        return [p.detach().clone() for m in pop.members for p in m.model.parameters()]
    alone, complement = run(channel="none"), run(channel="complement")
    assert all(torch.equal(a, b) for a, b in zip(alone, complement))
    listening = make_pop([tiny("gpt"), tiny("gru", seed=4)], channel="complement")
    for b in batches(4):
        listening.step(b)
    assert not all(torch.equal(a, b) for a, b in zip(alone, (
        p for m in listening.members for p in m.model.parameters())))


def test_every_channel_the_config_names_is_registered():
    from typing import get_args, get_type_hints

    from multitudes.population.channels import CHANNELS
    choices = set(get_args(get_type_hints(SocialConfig)["channel"]))
    assert choices == {"none", *CHANNELS}


def test_language_channel_fills_a_bounded_culture_and_counts_bytes_apart():
    pop = make_pop([tiny("gpt"), tiny("lstm")], language_every=1, language_prompts=3,
                   language_prompt_length=8, language_length=16, culture_size=10)
    for b in batches(5):
        stats = pop.step(b)
    assert len(pop.culture.texts) == 10  # 5 turns x 2 speakers x 3 texts, oldest out
    assert pop.generated_bytes == 5 * 2 * 3 * 16
    assert pop.real_bytes == 5 * 4 * 32
    assert len(stats.language_loss) == 2
    assert {t.speaker for t in pop.culture.sample("m0", 20, torch.Generator())} == {"m1"}


def test_wsd_cools_down_at_its_horizon_only():
    from multitudes.population.schedule import cooldown_factor
    assert cooldown_factor(0, None, 0.2) == 1.0 and cooldown_factor(10**6, None, 0.2) == 1.0
    assert [cooldown_factor(s, 100, 0.2) for s in (0, 79)] == [1.0, 1.0]
    assert cooldown_factor(80, 100, 0.2) == 1.0  # the cooldown's first step
    assert cooldown_factor(85, 100, 0.2) == pytest.approx(1 - 0.5)
    assert 0 < cooldown_factor(99, 100, 0.2) < 0.23
    assert cooldown_factor(100, 100, 0.2) == 0.0


@pytest.mark.parametrize("precision, dtype", [("auto", torch.float32), ("fp32", torch.float32),
                                              ("bf16", torch.bfloat16)])
def test_train_precision_sets_the_members_matmuls_on_the_cpu(precision, dtype):
    member = Member.create("m0", tiny("gru"), torch.device("cpu"))
    pop = Population([member], SocialConfig(channel="none"), TrainConfig(precision=precision),
                     100, torch.device("cpu"), torch.Generator().manual_seed(0))
    seen = []
    member.model.head.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
    before = [p.detach().clone() for p in member.model.parameters()]
    stats = pop.step(batches(1)[0])
    assert seen == [dtype]  # what the head computed in
    assert all(p.dtype == torch.float32 for p in member.model.parameters())  # fp32 weights
    assert np.isfinite(stats.data_loss[0])
    assert not all(torch.equal(a, b) for a, b in zip(before, member.model.parameters()))
