"""Bits per byte: the windowed protocol, adaptive (dynamic) evaluation, the classical yardsticks,
and scoring saved members."""
