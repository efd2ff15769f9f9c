import pytest

from multitudes.config import files as config_files
from multitudes.errors import UserError


def test_every_preset_loads_and_states_its_regime():
    presets = config_files.list_presets()
    assert {"debug", "quick"} <= set(presets)
    for name in presets:
        cfg = config_files.load(preset=name)
        assert cfg.regime in ("stream", "data-limited") and cfg.name == name


def test_quick_preset_is_heterogeneous():
    cfg = config_files.load(preset="quick")
    assert len(cfg.members) >= 4 and len({g.family for g in cfg.members}) >= 3


def test_overrides():
    cfg = config_files.load(preset="debug", overrides=["train.batch_size=3", "members.1.lr=0.5",
                                                  "members.*.alpha=2", "social.trust=topk"])
    assert cfg.train.batch_size == 3 and cfg.members[1].lr == 0.5
    assert all(g.alpha == 2.0 for g in cfg.members) and cfg.social.trust == "topk"


@pytest.mark.parametrize("override, message", [
    ("train.batch_sise=3", "unknown key train.batch_sise"),
    ("trian.batch_size=3", "unknown key trian"),
    ("train.batch_size='a'", "train.batch_size='a': expected int"),
    ("train.batch_size=1.5", "expected int"),
    ("train.batch_size=-1", "train.batch_size=-1: must be positive"),
    ("social.trust=gossip", "social.trust='gossip': expected one of"),
    ("train.side_by_side=1", "train.side_by_side=1: expected bool"),
    ("train.compile=3", "train.compile=3: expected bool"),
    ("train.precision='fp16'", "train.precision='fp16': expected one of auto, fp32, bf16"),
    ("members.0.d_model=33", "d_model=33: must be divisible by n_head"),
    ("members.0.alpha=-1", "alpha=-1.0: must be non-negative"),
    ("members.0.colour=3", "unknown key members.0.colour"),
    ("members.5.lr=3", "no member 5"),
    ("members.1.context=32", "must agree"),
    ("train", "expected key=value"),
    ("compare.reference_epochs=[4]", "compare.reference_epochs=[4]: expected [] or one positive "
                                     "number of epochs per reference point beyond U (2 for"),
    ("compare.reference_epochs=[4, 0]", "compare.reference_epochs=[4, 0]"),
    ("compare.reference_epochs=[4, 'x']", "compare.reference_epochs"),
    ("compare.reference_epochs=4", "compare.reference_epochs"),
])
def test_bad_values_name_the_key(override, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace("[", r"\[")):
        config_files.load(preset="debug", overrides=[override])


def test_a_reference_point_reads_its_own_epoch_budget():
    """compare.reference_epochs: the point on k x U reads exactly its epochs of k x U (its own
    planned schedule), U itself still reads N; and the record keys the budget, so a point
    trained to another budget is never read for this one."""
    from multitudes.training.arms import Reference
    from multitudes.training.protocols import plan
    from multitudes.training.reference_record import point_config
    base = ["regime='data-limited'", "data.unique_bytes=4096", "evolution.every=0",
            "train.real_bytes=16384", "compare.unique_multiples=[1, 2, 4]"]
    before = config_files.load(preset="debug", overrides=base)
    own = config_files.load(preset="debug", overrides=base + [
        "compare.reference_epochs=[3, 1.5]"])
    read = {p.name: p.total_bytes for p in plan("compare", own) if isinstance(p, Reference)}
    assert read == {"isolated": 16384, "isolated-2U": 2 * 4096 * 3, "isolated-4U": 4 * 4096 * 1.5}
    assert {p.name: p.total_bytes for p in plan("compare", before) if isinstance(p, Reference)} == {
        "isolated": 16384, "isolated-2U": 16384, "isolated-4U": 16384}
    assert point_config(own, "c", 2)["epochs"] == 3 and "epochs" not in point_config(before, "c", 2)
    assert point_config(own, "c", 4) != point_config(before, "c", 4)


def test_config_files(tmp_path):
    with pytest.raises(UserError, match="unknown preset 'nope'"):
        config_files.load(preset="nope")
    with pytest.raises(UserError, match="does not exist"):
        config_files.load(config_file=str(tmp_path / "x.toml"))
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    with pytest.raises(UserError, match="is empty"):
        config_files.load(config_file=str(empty))
    broken = tmp_path / "broken.toml"
    broken.write_text("[train\n")
    with pytest.raises(UserError, match="not valid TOML"):
        config_files.load(config_file=str(broken))
    good = tmp_path / "good.toml"
    good.write_text('name = "mine"\n[[members]]\nfamily = "gru"\n')
    assert config_files.load(config_file=str(good)).members[0].family == "gru"
    with pytest.raises(UserError, match="exactly one"):
        config_files.load()
