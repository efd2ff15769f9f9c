"""A progress bar per seed for `data_limited.py`, whose runs write only to their logs.

A seed's bar counts the member-steps its arms have taken (its metrics.jsonl, read as it grows)
out of the member-steps its plan holds, so the rate and the time left it shows are the run's
own: an arm of sixteen members weighs four times one of four. The lineage, which trains nothing,
is not counted. The bars are drawn only where stderr is a terminal (tqdm's rule), so a run in
the background or under a test writes nothing more.
"""

from __future__ import annotations

import json
from pathlib import Path

from tqdm import tqdm

from multitudes.config.schema import RunConfig
from multitudes.data.splits import steps_for
from multitudes.training.arms import Enlarged, Student
from multitudes.training.lineage import Lineage
from multitudes.training.protocols import plan


def planned(cfg: RunConfig) -> dict[str, tuple[int, int]]:
    """Each arm of a data-limited compare that trains: (its steps, its members), by name."""
    K = len(cfg.members)
    return {arm.name: (steps_for(arm.total_bytes, cfg.train.batch_size, cfg.context),
                       arm.members if isinstance(arm, Enlarged) else
                       1 if isinstance(arm, Student) else K)
            for arm in plan("compare", cfg) if not isinstance(arm, Lineage)}


def taken(metrics: Path, arms: dict[str, tuple[int, int]]) -> tuple[int, str]:
    """The member-steps the arms have taken by their dev evaluations in `metrics` (0 before
    it exists; a line still being written is skipped), and the arm at work: the first of the
    plan not finished (compare trains them one after another, in the plan's order), or the
    last when all are."""
    reached: dict[str, int] = {}
    try:
        lines = metrics.read_text().splitlines()
    except (FileNotFoundError, UnicodeDecodeError):
        lines = []
    for line in lines:
        try:
            row = json.loads(line)
            arm, step = row["arm"], int(row["step"])
        except (ValueError, KeyError, TypeError):
            continue
        if arm in arms:
            reached[arm] = max(reached.get(arm, 0), step)
    at_work = next((a for a, (steps, _) in arms.items() if reached.get(a, 0) < steps),
                   next(reversed(arms), ""))
    return sum(min(s, arms[a][0]) * arms[a][1] for a, s in reached.items()), at_work


class SeedBar:
    """One seed's bar: `update()` reads the run's metrics again; `close(finished)` fills it
    when the run finished (its last arms' final steps may fall between evaluations)."""

    def __init__(self, label: str, run: Path, cfg: RunConfig, position: int, file=None,
                 disable: bool | None = None):
        self.arms, self.metrics = planned(cfg), run / "metrics.jsonl"
        done, _ = taken(self.metrics, self.arms)  # a resumed seed starts where it stopped
        self.bar = tqdm(total=sum(s * m for s, m in self.arms.values()), initial=done,
                        desc=label, unit=" member-steps", position=position, leave=True,
                        dynamic_ncols=True, file=file, disable=disable, unit_scale=True)

    def update(self) -> None:
        done, arm = taken(self.metrics, self.arms)
        self.bar.set_postfix_str(arm, refresh=False)
        self.bar.update(done - self.bar.n)

    def close(self, finished: bool) -> None:
        if finished:
            self.bar.update(self.bar.total - self.bar.n)
        self.bar.close()
