import numpy as np
import pytest
import torch

from conftest import tiny
from multitudes.evaluation.bpb import (bpb, byte_log2probs, carried_log2probs, consensus_bpb,
                                 window_plan)
from multitudes.models import build


@pytest.mark.parametrize("n, T, S", [(100, 16, 8), (100, 16, 16), (17, 16, 8), (5, 16, 8),
                                     (1000, 64, 1)])
def test_every_byte_is_scored_once(n, T, S):
    covered = np.zeros(n, dtype=int)
    T_eff = min(T, n - 1)
    for start, first in window_plan(n, T_eff, S):
        covered[start + 1 + first:start + T_eff + 1] += 1
    assert covered[0] == 0 and (covered[1:] == 1).all()


class Uniform(torch.nn.Module):
    def forward(self, idx):
        return torch.zeros(*idx.shape, 256)


def test_uniform_model_scores_eight_bits():
    data = np.frombuffer(bytes(range(256)) * 3, dtype=np.uint8)
    lp = byte_log2probs(Uniform(), data, 32)
    assert len(lp) == len(data) - 1 and bpb(lp) == pytest.approx(8.0)


def test_scores_do_not_depend_on_batching_and_use_context():
    model = build(tiny("gpt"))
    data = np.frombuffer(b"abcdefgh" * 40, dtype=np.uint8)
    a = byte_log2probs(model, data, 32, 8, batch_size=1)
    b = byte_log2probs(model, data, 32, 8, batch_size=64)
    assert np.allclose(a, b, atol=1e-5)


def test_consensus_of_the_mixture():
    p = np.log2(np.array([[0.5, 0.25], [0.25, 0.25]]))
    assert consensus_bpb(p) == pytest.approx(-np.mean(np.log2([0.375, 0.25])))
    assert consensus_bpb([p[0], p[0]]) == pytest.approx(bpb(p[0]))


@pytest.mark.parametrize("family", ["gru", "lstm", "ssm"])
def test_carried_state_scores_every_byte_once_as_one_pass_would(family):
    model = build(tiny(family))
    data = np.frombuffer(b"the state is carried through the split. " * 30, dtype=np.uint8)
    one_lane = carried_log2probs(model, data, 32, lanes=1, chunk=50)
    with torch.no_grad():  # the whole split in one decode: the reference
        logits, _ = model.decode(torch.from_numpy(data[None, :-1].astype(np.int64)), None)
    ref = torch.log_softmax(logits[0], -1).gather(
        -1, torch.from_numpy(data[1:].astype(np.int64))[:, None])[:, 0] / np.log(2)
    assert len(one_lane) == len(data) - 1
    assert np.allclose(one_lane, ref.numpy(), atol=1e-5)
    lanes = carried_log2probs(model, data, 32, lanes=7, chunk=13)
    assert len(lanes) == len(data) - 1 and np.isfinite(lanes).all()
    assert np.allclose(lanes[:100], one_lane[:100], atol=1e-5)  # lane 0 is the same pass
    assert byte_log2probs(model, data, 32, carry_state=True).shape == (len(data) - 1,)


def test_only_stateful_models_carry_state():
    data = np.frombuffer(bytes(range(256)) * 3, dtype=np.uint8)
    assert bpb(byte_log2probs(Uniform(), data, 32, carry_state=True)) == pytest.approx(8.0)


def test_a_paired_gap_over_blocks_has_the_textbook_standard_error():
    from multitudes.evaluation.bpb import block_bpb, paired_gap
    lp = -np.arange(1, 101, dtype=np.float64)  # log2 probabilities 1..100 bits
    blocks = block_bpb(lp, 4)
    assert blocks == [13.0, 38.0, 63.0, 88.0]
    gap = paired_gap([b + 1.0 for b in blocks[:2]] + [b + 3.0 for b in blocks[2:]], blocks)
    assert gap["mean"] == 2.0 and gap["blocks"] == 4
    assert gap["se"] == pytest.approx(np.std([1, 1, 3, 3], ddof=1) / 2)


def test_data_efficiency_interpolates_in_log_u_and_the_power_law_recovers_its_curve():
    """Slowrun's definition on a known curve: bpb 3.0 at U, 2.8 at 2U, 2.6 at 4U; a target of
    2.7 lies halfway in log U between 2U and 4U: 2^1.5 U."""
    from multitudes.evaluation.curves import data_efficiency, power_law_fit
    curve = [(1, 3.0), (2, 2.8), (4, 2.6), (8, 2.5)]
    assert data_efficiency(curve, 2.7) == pytest.approx(2 ** 1.5)
    assert data_efficiency(curve, 2.8) == pytest.approx(2.0)
    assert data_efficiency(curve, 2.4) is None  # beyond the largest point: "> 8"
    law = [(k, 1.5 + 2.0 * k ** -0.5) for k in (1, 2, 4, 8, 16)]
    fit = power_law_fit(law)
    assert fit["E"] == pytest.approx(1.5, abs=0.02) and fit["a"] == pytest.approx(0.5, abs=0.02)
    assert max(abs(r) for r in fit["residuals"]) < 0.01
    assert power_law_fit(law[:3]) is None  # three parameters fit any three points


def test_the_dev_fit_mixture_weights_the_better_member():
    from multitudes.evaluation.bpb import consensus_bpb, fit_mixture, mixture_bpb
    rng = np.random.default_rng(0)
    good = np.log2(rng.uniform(0.5, 0.9, 4000))
    bad = np.log2(rng.uniform(0.01, 0.1, 4000))
    w = fit_mixture([good, bad])
    assert w.sum() == pytest.approx(1) and w[0] > 0.9
    assert mixture_bpb([good, bad], w) < consensus_bpb([good, bad])
    assert mixture_bpb([good, bad], np.array([0.5, 0.5])) == pytest.approx(
        consensus_bpb([good, bad]))
