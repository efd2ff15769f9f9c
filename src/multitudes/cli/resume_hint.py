"""What an interrupted command says about going on: the command that resumes its run, once a
run or study directory exists to resume, and nothing otherwise (compress, a dry run)."""

from __future__ import annotations

from pathlib import Path

_HINT: list[str] = []


def resumable(command: str, out: Path) -> None:
    """From here on an interruption names the command that resumes the run in `out`."""
    _HINT[:] = [f"multitudes {command} --resume {out}"]


def clear() -> None:
    _HINT.clear()


def kept(what: str = "the latest checkpoint is", after: str = "") -> str:
    """"; the latest checkpoint is kept (multitudes train --resume DIR)", or "" if nothing is."""
    return f"; {what} kept ({_HINT[0]}{after})" if _HINT else ""
