"""The `ssm` family: its chunked scan is the recurrence, in fp32, and evolution can reach it."""

import random

import numpy as np
import pytest
import torch

from conftest import tiny
from multitudes.config.genome import Genome
from multitudes.config.schema import EvolutionConfig, SocialConfig, TrainConfig
from multitudes.data.splits import BatchStream
from multitudes.errors import UserError
from multitudes.evolution import operators
from multitudes.models import build
from multitudes.models.ssm import CHUNK, linear_scan
from multitudes.population.member import Member
from multitudes.population.population import Population


def loop_scan(log_a, b, h0):
    """The recurrence as written: one byte at a time."""
    h, out = h0, []
    for t in range(b.shape[1]):
        h = log_a[:, t].exp() * h + b[:, t]
        out.append(h)
    return torch.stack(out, 1), h


@pytest.mark.parametrize("T", [1, CHUNK - 1, CHUNK, 2 * CHUNK + 5])
def test_the_chunked_scan_is_the_recurrence(T):
    g = torch.Generator().manual_seed(T)
    log_a = -torch.rand(3, T, 8, generator=g, dtype=torch.float64) * 3
    b = torch.randn(3, T, 8, generator=g, dtype=torch.float64)
    h0 = torch.randn(3, 8, generator=g, dtype=torch.float64)
    got, last = linear_scan(log_a, b, h0)
    want, want_last = loop_scan(log_a, b, h0)
    assert torch.allclose(got, want, atol=1e-12) and torch.equal(last, got[:, -1])
    assert torch.allclose(last, want_last, atol=1e-12)


def test_a_long_strong_decay_neither_underflows_nor_loses_its_gradient():
    """Decays whose product over a chunk is far below the smallest float: a product of them
    would be 0 and its ratios NaN; the differences of log decays stay exact."""
    log_a = torch.full((1, 2 * CHUNK, 4), -60.0, requires_grad=True)
    b = torch.ones(1, 2 * CHUNK, 4, requires_grad=True)
    h, _ = linear_scan(log_a, b, torch.zeros(1, 4))
    h.sum().backward()
    assert torch.isfinite(h).all() and torch.allclose(h, torch.ones_like(h))
    assert torch.isfinite(log_a.grad).all() and torch.isfinite(b.grad).all()


def test_the_state_is_kept_in_fp32_under_the_cpus_bf16_autocast():
    torch.manual_seed(0)
    model = build(tiny("ssm")).eval()
    x = torch.randint(256, (2, 40))
    with torch.no_grad():
        full, state = model.decode(x, None)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low, low_state = model.decode(x, None)
    assert low_state.dtype == torch.float32 and state.shape == (2, 2, 32)
    assert (low.float() - full).abs().max() < 0.25  # bf16 matmuls, the scan in fp32


def test_carried_state_equals_one_long_window():
    """What truncated BPTT relies on: two windows with the state carried are one window."""
    torch.manual_seed(1)
    model = build(tiny("ssm", dropout=0.0)).train()
    x = torch.randint(256, (4, 64))
    whole = model(x)
    first, state = model.decode(x[:, :32], None)
    second, _ = model.decode(x[:, 32:], state)
    assert torch.allclose(torch.cat([first, second], 1), whole, atol=1e-5)


def test_a_member_checkpoint_round_trips_and_scores_the_same(tmp_path):
    from multitudes.evaluation.target import load_member
    from multitudes.training.state import save_member

    torch.manual_seed(2)
    genome = tiny("ssm")
    model = build(genome).eval()
    save_member(tmp_path / "m", "m0-ssm", genome, model.state_dict(), {})
    back_genome, back, _ = load_member(tmp_path / "m")
    x = torch.randint(256, (2, 40))
    assert back_genome == genome
    with torch.no_grad():
        assert torch.equal(model.decode(x, None)[0], back.eval().decode(x, None)[0])


def test_a_sick_ssm_is_reborn_and_its_neighbour_goes_on():
    members = [Member.create(f"m{i}", tiny(f, seed=i), torch.device("cpu"))
               for i, f in enumerate(["ssm", "gru"])]
    pop = Population(members, SocialConfig(channel="none"), TrainConfig(), 100,
                     torch.device("cpu"), torch.Generator().manual_seed(0))
    data = np.frombuffer(b"a sick member is contained, the others go on. " * 100, np.uint8)
    with torch.no_grad():
        next(members[0].model.parameters()).fill_(float("nan"))
    stats = pop.step(BatchStream(data, 4, 32, 0).next())
    assert [(e["member"], e["reason"]) for e in pop.events] == [("m0", "non-finite logits")]
    assert all(torch.isfinite(p).all() for p in pop.members[0].model.parameters())
    assert np.isfinite(stats.data_loss[1]) and pop.members[1].steps == 1


def test_evolution_switches_into_the_ssm_only_when_asked():
    gru = Genome(family="gru", d_model=64, n_layer=2, context=32)
    default = {operators.mutate(gru, random.Random(s), 400_000, 1.0)[0].family
               for s in range(60)}
    asked = {operators.mutate(gru, random.Random(s), 400_000, 1.0,
                              ("gru", "gpt", "ssm"))[0].family for s in range(60)}
    assert "ssm" not in default and default == {"gpt", "looped", "lstm"}
    assert asked == {"gpt", "ssm"}
    ssm = Genome(family="ssm", d_model=64, n_layer=2, d_ff=256, context=32)
    out = operators.mutate(ssm, random.Random(0), 400_000, 1.0)[0]  # and out of it
    assert out.family != "ssm" and out.n_params <= 400_000
    with pytest.raises(UserError, match="below the smallest ssm"):
        operators.repair(ssm, 1000)


@pytest.mark.parametrize("families", [["gru"], ["gru", "gru"], ["gru", "mamba"], "gru,ssm"])
def test_evolution_families_are_checked(families):
    with pytest.raises(UserError, match="evolution.families"):
        EvolutionConfig(families=families)
