"""Adaptive evaluation: prequential (no byte predicted by a step that saw it), equal to the static
protocol at rate 0, and it learns what the split repeats."""

import numpy as np
import pytest
import torch

from conftest import tiny
from multitudes.evaluation.adaptive import adaptive_log2probs, choose_lr
from multitudes.evaluation.bpb import bpb, byte_log2probs
from multitudes.models import build

FAMILIES = ["gpt", "looped", "lstm", "gru", "ssm"]


def model_of(family):
    torch.manual_seed(0)
    return build(tiny(family))


def text(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    words = [b"the ", b"cat ", b"sat ", b"on ", b"a ", b"mat. "]
    data = b"".join(words[i] for i in rng.integers(len(words), size=n))[:n]
    return np.frombuffer(data, dtype=np.uint8).copy()


@pytest.mark.parametrize("family", FAMILIES)
def test_no_byte_is_predicted_by_a_step_that_saw_it(family):
    """Change byte k: every prediction of bytes 1..k-1 is unchanged, bit for bit, while the
    adaptation (lr > 0) carries the change into later predictions."""
    model, data = model_of(family), text(1200)
    k = 700
    changed = data.copy()
    changed[k] = (int(changed[k]) + 1) % 256
    a = adaptive_log2probs(model, data, 32, 1e-2, carry_state=True)
    b = adaptive_log2probs(model, changed, 32, 1e-2, carry_state=True)
    assert np.array_equal(a[:k - 1], b[:k - 1])  # entry i predicts byte i + 1
    assert not np.array_equal(a[k:], b[k:])


@pytest.mark.parametrize("family", FAMILIES)
def test_at_rate_zero_it_is_the_static_protocol(family):
    """The same windows, one at a time instead of 32 to a batch (hence float32 rounding)."""
    model, data = model_of(family), text(1500)
    adapted = adaptive_log2probs(model, data, 32, 0.0, carry_state=False)
    assert np.allclose(adapted, byte_log2probs(model, data, 32), rtol=0, atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_it_learns_the_split_and_leaves_the_model_as_it_was(family):
    model, data = model_of(family), text(3000)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    static = bpb(byte_log2probs(model, data, 32))
    adapted = bpb(adaptive_log2probs(model, data, 32, 1e-2, carry_state=True))
    assert adapted < static - 1.0  # an untrained model learns six words within 3,000 bytes
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_the_dev_slice_chooses_the_rate():
    model, dev = model_of("gru"), text(2000, seed=1)
    lr, tried = choose_lr(model, dev, 32, carry_state=True, learning_rates=(0.0, 1e-2))
    assert set(tried) == {0.0, 1e-2}
    assert lr == 1e-2 and tried[1e-2] < tried[0.0]  # an untrained model: adapting pays
    assert tried[0.0] == pytest.approx(
        bpb(adaptive_log2probs(model, dev, 32, 0.0, carry_state=True)), abs=0)
