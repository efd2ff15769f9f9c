"""What a protocol is, and the registry the command line, replay and the study find them in.

A protocol plans a run's arms (training/arms.py), trains them and reads its result out: `train`
(one arm, training/single.py) and `compare` in each regime (training/stream_compare.py,
training/limited_compare.py). A new protocol is a subclass registered under its command and
regime.
"""

from __future__ import annotations

from pathlib import Path

from multitudes.config.schema import RunConfig
from multitudes.errors import UserError
from multitudes.evaluation import yardsticks
from multitudes.evolution import generations
from multitudes.runs.distributed import Group
from multitudes.training.arms import Arm
from multitudes.training.loop import ArmRunner

_REGISTRY: dict[tuple[str, str | None], type[Protocol]] = {}


def register(command: str, regime: str | None = None):
    """Register a protocol for `command` in `regime` (None: in every regime)."""
    def add(cls: type[Protocol]) -> type[Protocol]:
        _REGISTRY[(command, regime)] = cls
        return cls
    return add


def protocol_for(command: str, cfg: RunConfig) -> Protocol:
    """The protocol `command` runs under `cfg`'s regime."""
    cls = _REGISTRY.get((command, cfg.regime)) or _REGISTRY.get((command, None))
    if cls is None:
        raise UserError(f"no protocol runs {command!r} in the {cfg.regime!r} regime")
    return cls(cfg)


class Protocol:
    """A run's protocol under one config: its arms, how they train, what the run reports."""
    command = ""

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg

    def plan(self) -> list[Arm]:
        raise NotImplementedError

    def check(self) -> None:
        """Refuse a config this protocol cannot run (before anything is written)."""

    def largest_multiple(self) -> int:
        """The most unique bytes the run reads, as a multiple of U."""
        return 1

    def planned_bytes(self) -> list[int]:
        """The real bytes each arm is planned to read (a stream reference: as far as it may
        read on), for the warning before a very long run."""
        return [arm.total_bytes for arm in self.plan()]

    def run(self, out: Path, resume: bool = False, progress: bool = True,
            replay: list[dict] | None = None, group: Group | None = None) -> dict:
        raise NotImplementedError


def yardsticks_of(runner: ArmRunner, real_bytes: int) -> dict:
    """The classical compressors on the dev slice, valid (beyond it) and test, given the bytes
    this arm's stream dealt (every arm of a comparison reads the same)."""
    targets = {"dev": runner.scoring.dev, **runner.scoring.held_out}
    with runner.files.clock.phase("run", "yardsticks"):
        return runner.files.for_writer(
            lambda: yardsticks.for_splits(runner.stream.dealt_bytes(real_bytes), targets))


def add_curves(result: dict, runner: ArmRunner) -> None:
    """An arm's dev curve and, when it evolved, its newborns' against the founders'."""
    result["curve"] = [p.to_json() for p in runner.curve()]
    culture = generations.cultural_transmission(runner.history, runner.events, runner.name)
    if culture:
        result["culture"] = culture
