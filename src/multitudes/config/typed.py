"""Typed dataclass fields, checked where an object is built.

Configs and genomes call `check_fields` in `__post_init__`, so every construction (from a file, a
`--set`, a `dataclasses.replace`) is checked the same way, and the error names the key. Choices
are `Literal` annotations (litgpt's habit): the type is the list of valid values.
"""

from __future__ import annotations

import math
import typing
from dataclasses import fields

from multitudes.errors import UserError

SCALARS = {int: int, float: (int, float), str: str, bool: bool}


def check_fields(obj, where: str) -> None:
    """Check every scalar and `Literal` field of the dataclass `obj`; ints given for floats
    become floats. `where` prefixes the key in errors (`train.`, `genome field `)."""
    hints = typing.get_type_hints(type(obj))
    for f in fields(obj):
        hint, value, key = hints[f.name], getattr(obj, f.name), f"{where}{f.name}"
        if typing.get_origin(hint) is typing.Literal:
            if value not in typing.get_args(hint):
                raise UserError(f"{key}={value!r}: expected one of "
                                f"{', '.join(map(str, typing.get_args(hint)))}")
            continue
        if hint not in SCALARS:  # a nested section or the member list: checked on its own
            continue
        if isinstance(value, bool) and hint is not bool or not isinstance(value, SCALARS[hint]):
            raise UserError(f"{key}={value!r}: expected {hint.__name__}, "
                            f"got {type(value).__name__}")
        if hint is float and not isinstance(value, float):
            object.__setattr__(obj, f.name, float(value))  # frozen dataclasses too


def choices(literal) -> tuple:
    """The values of a `Literal` type, e.g. for a dispatch that must cover them all."""
    return typing.get_args(literal)


def positive(obj, where: str, *names: str) -> None:
    for name in names:
        if not getattr(obj, name) > 0:  # nan too
            raise UserError(f"{where}{name}={getattr(obj, name)}: must be positive")
        finite(obj, where, name)


def non_negative(obj, where: str, *names: str) -> None:
    for name in names:
        if not getattr(obj, name) >= 0:  # nan too
            raise UserError(f"{where}{name}={getattr(obj, name)}: must be non-negative")
        finite(obj, where, name)


def finite(obj, where: str, name: str) -> None:
    """No field these check means anything at infinity (a learning rate, a weight decay, a
    count): TOML's `inf` is refused where it is read, not as a nan loss steps later."""
    if not math.isfinite(getattr(obj, name)):
        raise UserError(f"{where}{name}={getattr(obj, name)}: must be finite")


def within(obj, where: str, name: str, low: float, high: float, open_: bool = False) -> None:
    value = getattr(obj, name)
    inside = low < value < high if open_ else low <= value <= high
    if not inside:
        interval = f"({low}, {high})" if open_ else f"[{low}, {high}]"
        raise UserError(f"{where}{name}={value}: must be in {interval}")
