"""Reading a learning curve: where a piecewise-linear curve of (x, bpb) first falls to a target.

Used for the data-efficiency multipliers (x: real or unique bytes) and for cultural transmission
(x: a member's age in bytes)."""

from __future__ import annotations


def crossing(curve: list[tuple[float, float]], target: float) -> float | None:
    """First x where the piecewise-linear curve of (x, bpb) falls to `target`, or None.

    A curve that starts at or below the target crosses at its first point."""
    previous = None
    for x, y in curve:
        if y <= target:
            if previous is None or previous[1] == y:
                return float(x)
            x0, y0 = previous
            return x0 + (x - x0) * (y0 - target) / (y0 - y)
        previous = (x, y)
    return None
