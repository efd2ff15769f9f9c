"""Every family: builds, trains, is causal, memorises, and decodes incrementally like a full pass."""

import math

import pytest
import torch
import torch.nn.functional as F

from conftest import tiny
from multitudes.models import FAMILIES, build
from multitudes.population.member import Member
from multitudes.population.schedule import set_lr
from multitudes.population.social import speak

ALL = list(FAMILIES)


@pytest.mark.parametrize("family", ALL)
def test_builds_and_trains_a_step(family):
    member = Member.create("m", tiny(family), torch.device("cpu"))
    x = torch.randint(256, (2, 33), generator=torch.Generator().manual_seed(0))
    before = [p.detach().clone() for p in member.model.parameters()]
    logits = member.model(x[:, :-1])
    assert logits.shape == (2, 32, 256)
    F.cross_entropy(logits.reshape(-1, 256), x[:, 1:].reshape(-1)).backward()
    set_lr(member.optimizer, member.genome.lr)  # the population sets it before every step
    member.optimizer.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, member.model.parameters()))


@pytest.mark.parametrize("family", ALL)
def test_causal(family):
    torch.manual_seed(0)
    model = build(tiny(family)).eval()
    x = torch.randint(256, (1, 32))
    y = x.clone()
    y[0, 20:] = (y[0, 20:] + 1) % 256
    with torch.no_grad():
        a, b = model(x), model(y)
    assert torch.equal(a[0, :20], b[0, :20])
    assert not torch.allclose(a[0, 20:], b[0, 20:])


def test_looped_with_one_loop_is_gpt():
    torch.manual_seed(0)
    gpt = build(tiny("gpt", n_layer=2))
    looped = build(tiny("looped", n_layer=2, n_loop=1))
    looped.load_state_dict(gpt.state_dict())
    x = torch.randint(256, (2, 32))
    assert torch.equal(gpt(x), looped(x))
    looped.n_loop = 3  # inference-time compute: same weights, deeper
    assert not torch.allclose(gpt(x), looped(x))


@pytest.mark.parametrize("family", ALL)
def test_incremental_decoding_matches_a_full_forward(family):
    torch.manual_seed(0)
    model = build(tiny(family)).eval()
    x = torch.randint(256, (3, 24))
    with torch.no_grad():
        full = model(x)
        logits, state = model.decode(x[:, :10], None)
        parts = [logits]
        for t in range(10, 24, 7):  # chunks of several bytes and of one byte
            logits, state = model.decode(x[:, t:t + 7] if t < 17 else x[:, t:t + 1], state)
            parts.append(logits)
            if t >= 17:
                break
        got = torch.cat(parts, dim=1)
    assert torch.allclose(full[:, :got.shape[1]], got, atol=1e-5)


@pytest.mark.parametrize("family", ALL)
def test_speaking_is_seeded(family):
    model = build(tiny(family))
    prompt = torch.randint(256, (2, 8), generator=torch.Generator().manual_seed(1))
    a = speak(model, prompt, 12, 1.0, torch.Generator().manual_seed(5))
    b = speak(model, prompt, 12, 1.0, torch.Generator().manual_seed(5))
    assert a.shape == (2, 12) and torch.equal(a, b)


@pytest.mark.parametrize("family", ALL)
def test_memorises_a_short_string(family):
    text = torch.tensor(list(b"I am large, I contain multitudes."), dtype=torch.long)[None]
    lr = 3e-2 if family in ("lstm", "gru") else 1e-2  # recurrent nets like a larger step here
    member = Member.create("m", tiny(family, lr=lr, context=64, weight_decay=0.0),
                           torch.device("cpu"))
    set_lr(member.optimizer, lr)
    for _ in range(300):
        loss = F.cross_entropy(member.model(text[:, :-1])[0], text[0, 1:])
        member.optimizer.zero_grad()
        loss.backward()
        member.optimizer.step()
    with torch.no_grad():
        bpb = F.cross_entropy(member.model(text[:, :-1])[0], text[0, 1:]).item() / math.log(2)
    assert bpb < 0.1


@pytest.mark.parametrize("family", ["gru", "lstm"])
def test_a_small_rnn_leaves_the_unigram_plateau(family):
    """Parity guard: a 2-layer RNN alone, 400 steps of 8 lanes x 32 bytes of the sample, codes
    the head of valid 0.75 bpb below the unigram entropy (the N(0, 0.1) embedding that held the
    RNNs back gave only 0.44-0.48 below it; PyTorch's default gives 0.96-1.28)."""
    import numpy as np
    from multitudes.config.schema import SocialConfig, TrainConfig
    from multitudes.data.corpora import resolve
    from multitudes.data.splits import LaneStream, load_splits
    from multitudes.evaluation.bpb import bpb, byte_log2probs
    from multitudes.config.genome import Genome
    from multitudes.population.population import Population

    splits = load_splits(resolve("sample"))
    valid = np.asarray(splits["valid"][:8192])
    counts = np.bincount(np.asarray(splits["train"]), minlength=256) + 1
    unigram = float(-np.log2((counts / counts.sum())[valid]).mean())
    g = Genome(family=family, d_model=64, n_layer=2, context=32, lr=4e-3, warmup=10,
               weight_decay=0.0, seed=1)
    member = Member.create("m", g, torch.device("cpu"))
    pop = Population([member], SocialConfig(channel="none"), TrainConfig(), 10**6,
                     torch.device("cpu"))
    stream = LaneStream(splits["train"], 8, 32)
    for _ in range(400):
        batch = stream.next()
        pop.step(batch, stream.continues)
    assert bpb(byte_log2probs(member.model, valid, 32, carry_state=True)) < unigram - 0.75


def test_attention_stays_fp32_under_the_cpus_bf16_autocast():
    """The CPU's bf16 attention backward was 3-4x slower than fp32's at these contexts, so
    under CPU autocast `attend` computes in fp32 (BENCHMARKS.md); outside it, the plain call."""
    from multitudes.models.blocks import attend
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 32, 16, generator=g, requires_grad=True) for _ in range(3))
    plain = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert torch.equal(attend(q, k, v, is_causal=True), plain)  # fp32: the very same call
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = attend(q.bfloat16(), k.bfloat16(), v.bfloat16(), is_causal=True)
        y_bf16 = F.scaled_dot_product_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(),
                                                is_causal=True)
    assert y.dtype == torch.float32 and y_bf16.dtype == torch.bfloat16
    exact = F.scaled_dot_product_attention(*(t.bfloat16().float() for t in (q, k, v)),
                                           is_causal=True)
    assert torch.equal(y, exact)  # the bf16 inputs attended in fp32
    y.sum().backward()
    assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in (q, k, v))


@pytest.mark.parametrize("family", ["gru", "lstm"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_an_rnn_drawing_from_its_own_generator_draws_what_the_global_one_draws(family,
                                                                             precision):
    """Dropout from the member's own generator (layer by layer, models/rnn.py) is bit for bit
    the plain modules' dropout drawn from torch's global generator in the same state: the
    logits, the carried state, every gradient and the generator's state after."""
    model = build(tiny(family, n_layer=3, dropout=0.2)).train()
    idx = torch.randint(0, 256, (4, 16), generator=torch.Generator().manual_seed(0))
    start = torch.Generator().manual_seed(7).get_state()

    def run(own: bool):
        model.zero_grad()
        autocast = torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16")
        with torch.random.fork_rng(devices=[]), autocast:
            torch.set_rng_state(start if not own else torch.Generator().manual_seed(99)
                                .get_state())  # the own path must not read the global one
            generator = torch.Generator()
            generator.set_state(start)
            model.generator = generator if own else None
            z, state = model.decode(idx[:, :8], None)
            z2, state = model.decode(idx[:, 8:], state)  # a carried state too
            after = generator.get_state() if own else torch.get_rng_state()
        model.generator = None
        (z.float().sum() + z2.float().pow(2).mean()).backward()
        states = state if isinstance(state, tuple) else (state,)
        return [z, z2, *states, after] + [p.grad.clone() for p in model.parameters()]

    own, plain = run(own=True), run(own=False)
    assert all(torch.equal(a, b) for a, b in zip(own, plain))
    assert not torch.equal(own[-len(list(model.parameters())) - 1], start)  # it did draw
