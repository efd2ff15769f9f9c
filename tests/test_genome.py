import json

import pytest

from multitudes.errors import UserError
from multitudes.config.genome import Genome, describe
from multitudes.models import build


@pytest.mark.parametrize("changes, field", [
    ({"family": "cnn"}, "family"),
    ({"d_model": -8}, "d_model"),
    ({"d_model": 130, "n_head": 4}, "d_model"),
    ({"n_loop": 2}, "n_loop"),
    ({"alpha": -0.1}, "alpha"),
    ({"lr": 0.0}, "lr"),
    ({"tau": 0}, "tau"),
    ({"dropout": 1.0}, "dropout"),
    ({"d_model": "128"}, "d_model"),
    ({"n_layer": True}, "n_layer"),
])
def test_validation_names_the_field(changes, field):
    with pytest.raises(UserError, match=f"genome field {field}="):
        Genome(**changes)


def test_json_round_trip_and_unknown_keys():
    g = Genome(family="looped", n_layer=1, n_loop=3, seed=9)
    assert Genome.from_dict(json.loads(json.dumps(g.to_dict()))) == g
    with pytest.raises(UserError, match="unknown key genome.d_modle"):
        Genome.from_dict({"d_modle": 3})


@pytest.mark.parametrize("family", ["gpt", "looped", "lstm", "gru", "ssm"])
@pytest.mark.parametrize("shape", [{}, {"d_model": 64, "n_layer": 3, "d_ff": 96, "context": 48}])
def test_param_count_matches_the_built_model(family, shape):
    """genome.py counts by arithmetic; the built model is the truth it must match."""
    g = Genome(family=family, n_loop=2 if family == "looped" else 1, **shape)
    assert g.n_params == sum(p.numel() for p in build(g).parameters())
    assert g.flops_per_byte > 6 * 256 * g.d_model  # at least the head's matmul


def test_looped_flops_grow_with_loops_but_params_do_not():
    one, three = Genome(family="looped", n_loop=1), Genome(family="looped", n_loop=3)
    assert one.n_params == three.n_params
    assert three.flops_per_byte > 2.5 * one.flops_per_byte - 6 * 256 * 128


def test_describe_uses_the_standard_notation():
    text = describe([Genome(), Genome(family="lstm")])
    header = text.splitlines()[0].split()
    for col in ("d_model", "d_head", "d_ff", "n_heads", "n_layer", "n_ctx", "d_vocab", "n_loop"):
        assert col in header
    assert text.splitlines()[1].split()[3] == "32"  # d_head = 128 / 4
