"""Where a run's wall time goes: seconds per arm and phase, for `timings.json`.

A run spends its time in the members' training steps, in scoring them (the dev slice on a
schedule, valid and test at a milestone), in checkpoints and in the classical yardsticks; a
researcher who wants it faster needs to know which. Phases are timed where they happen (the
run loop, the scoring, the protocol) and never nest; what no phase covers (loading the corpus,
building the members, the curves) is "other". Only the process that finishes a run is counted,
as a study's wall.json counts only the session that finished a cell.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager

PHASES = ("training steps", "dev scoring", "held-out scoring", "checkpoints", "yardsticks")


class Stopwatch:
    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.seconds: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))

    @contextmanager
    def phase(self, arm: str, phase: str):
        """Time the block as `phase` of `arm` (the yardsticks, given once: arm "run")."""
        assert phase in PHASES, phase
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[arm][phase] += time.perf_counter() - start

    def summary(self, resumed: bool) -> dict:
        """The wall time of this process and its split, in seconds (what timings.json holds)."""
        total = time.perf_counter() - self.start
        phases = {p: sum(arm.get(p, 0.0) for arm in self.seconds.values()) for p in PHASES}
        return {"total_seconds": round(total, 3),
                "phases": {p: round(s, 3) for p, s in phases.items()},
                "other_seconds": round(total - sum(phases.values()), 3),
                "arms": {arm: {p: round(s, 3) for p, s in by.items()}
                         for arm, by in self.seconds.items()},
                "resumed": resumed,
                "basis": "wall seconds of the process that finished the run (a resumed run's "
                         "earlier processes are not counted here; each is under `earlier`)"}


def line(summary: dict) -> str:
    """One line for the terminal: the total and each phase's share of it."""
    total = summary["total_seconds"]
    parts = [(p, s) for p, s in summary["phases"].items() if s > 0]
    parts.append(("other", summary["other_seconds"]))
    shares = ", ".join(f"{p} {100 * s / total:.0f}%" for p, s in parts) if total > 0 else ""
    minutes, seconds = divmod(round(total), 60)
    return f"time: {minutes}m{seconds:02d}s ({shares}; timings.json)"
