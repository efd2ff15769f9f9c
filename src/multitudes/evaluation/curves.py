"""Reading a learning curve: where a piecewise-linear curve of (x, bpb) first falls to a target.

Used for the data-efficiency multipliers (x: real or unique bytes) and for cultural transmission
(x: a member's age in bytes)."""

from __future__ import annotations

import math

import numpy as np


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


def data_efficiency(reference: list[tuple[float, float]], target: float) -> float | None:
    """U'/U: the unique bytes the reference curve of (k = U'/U, bpb) needs to reach `target`,
    piecewise-linear in log k between measured points (NanoGPT Slowrun's definition); None
    when out of range. A target at or below the curve's first point but the curve never there
    returns None too, and one above its first point returns the first k (no extrapolation)."""
    needed = crossing([(math.log(k), bpb) for k, bpb in reference], target)
    return None if needed is None else math.exp(needed)


def power_law_fit(reference: list[tuple[float, float]]) -> dict | None:
    """Least squares fit bpb = E + A * k^(-a) to a data-scaling curve, with its residuals.

    The exponent is searched on a grid (0.01..3), E and A solved linearly for each a; A and a
    are kept positive (more data never hurts the fit). None with fewer than 4 points: three
    parameters go through any three points, so residuals would mean nothing."""
    if len(reference) < 4:
        return None
    k = np.array([x for x, _ in reference], dtype=np.float64)
    y = np.array([b for _, b in reference], dtype=np.float64)
    best = None
    for a in np.linspace(0.01, 3.0, 300):
        X = np.stack([np.ones_like(k), k ** -a], axis=1)
        (E, A), *_ = np.linalg.lstsq(X, y, rcond=None)
        if A <= 0:
            continue
        sse = float(((X @ np.array([E, A]) - y) ** 2).sum())
        if best is None or sse < best[0]:
            best = (sse, float(E), float(A), float(a))
    if best is None:
        return None
    _, E, A, a = best
    residuals = [float(b - (E + A * x ** -a)) for x, b in reference]
    return {"E": E, "A": A, "a": a, "residuals": residuals}
