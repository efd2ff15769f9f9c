"""The run's stopwatch: phases add up, never nest, and read as one line."""

import time

import pytest

from multitudes.runs.stopwatch import Stopwatch, line


def test_phases_add_up_per_arm_and_the_rest_is_other():
    clock = Stopwatch()
    for _ in range(2):
        with clock.phase("social", "training steps"):
            time.sleep(0.01)
    with clock.phase("isolated", "dev scoring"):
        time.sleep(0.02)
    time.sleep(0.01)  # in no phase
    s = clock.summary(resumed=False)
    assert s["arms"]["social"]["training steps"] >= 0.02
    assert s["phases"]["dev scoring"] == s["arms"]["isolated"]["dev scoring"] >= 0.02
    assert s["phases"]["held-out scoring"] == 0
    assert s["other_seconds"] >= 0.01
    assert s["total_seconds"] == pytest.approx(sum(s["phases"].values()) + s["other_seconds"],
                                               abs=2e-3)


def test_a_phase_that_raises_is_still_counted_and_unknown_phases_are_refused():
    clock = Stopwatch()
    with pytest.raises(RuntimeError):
        with clock.phase("social", "checkpoints"):
            raise RuntimeError("disk full")
    assert "checkpoints" in clock.seconds["social"]
    with pytest.raises(AssertionError):
        with clock.phase("social", "lunch"):
            pass


def test_the_line_gives_each_phase_its_share():
    summary = {"total_seconds": 125.0, "other_seconds": 5.0,
               "phases": {"training steps": 100.0, "dev scoring": 20.0, "held-out scoring": 0.0,
                          "checkpoints": 0.0, "yardsticks": 0.0}}
    assert line(summary) == ("time: 2m05s (training steps 80%, dev scoring 16%, other 4%; "
                             "timings.json)")
