"""The protocols a run can follow, found by command and regime: `train` (training/single.py)
and `compare` (training/compare.py; per regime training/stream_compare.py and
training/limited_compare.py). The one dispatch of the command line, replay and the study.
"""

from __future__ import annotations

from pathlib import Path

from multitudes.config.schema import RunConfig
from multitudes.data.corpora import resolve
from multitudes.data.splits import check_trainable, load_splits
from multitudes.runs.distributed import Group
# importing the protocols registers them
from multitudes.training import limited_compare, single, stream_compare  # noqa: F401
from multitudes.training.arms import Arm
from multitudes.training.protocol import protocol_for


def plan(command: str, cfg: RunConfig) -> list[Arm]:
    """The arms `command` trains under `cfg`, in the order it trains them."""
    return protocol_for(command, cfg).plan()


def planned_bytes(cfg: RunConfig, command: str) -> list[int]:
    """The real bytes each arm of a run is planned to read, for the warning before a very long
    run."""
    return protocol_for(command, cfg).planned_bytes()


def check_runnable(cfg: RunConfig, command: str) -> None:
    """A bad corpus, or one too small for the config (its batch, context, dev slice, unique
    bytes), is one line before anything is written: for `train`, `compare` and every cell of a
    study alike."""
    protocol = protocol_for(command, cfg)
    protocol.check()
    check_trainable(load_splits(resolve(cfg.data.corpus)), cfg.train.batch_size, cfg.context,
                    cfg.train.dev_bytes, cfg.data.corpus, cfg.data.unique_bytes,
                    protocol.largest_multiple())


def run(command: str, cfg: RunConfig, out: Path, resume: bool = False, progress: bool = True,
        replay: list[dict] | None = None, group: Group | None = None) -> dict:
    """Run `command` under `cfg` into `out`."""
    return protocol_for(command, cfg).run(out, resume, progress, replay, group)


def numbers(results: dict) -> dict:
    """What a replay or a resume must reproduce: every member's valid and test bpb."""
    return {arm: [(m["id"], m["valid_bpb"], m["test_bpb"]) for m in res["members"]]
            for arm, res in results["arms"].items()}
