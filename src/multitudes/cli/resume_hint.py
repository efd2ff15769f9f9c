"""What an interrupted command says about going on: the command that resumes its run, once a
run or study directory exists to resume and holds something saved (a checkpoint, a milestone),
and nothing otherwise (compress, a dry run, a run stopped before its first checkpoint)."""

from __future__ import annotations

from pathlib import Path

_HINT: list[tuple[str, Path]] = []


def resumable(command: str, out: Path) -> None:
    """From here on an interruption names the command that resumes the run in `out`."""
    _HINT[:] = [(f"multitudes {command} --resume {out}", Path(out))]


def clear() -> None:
    _HINT.clear()


def kept(what: str = "the latest checkpoint is", after: str = "") -> str:
    """"; the latest checkpoint is kept (multitudes train --resume DIR)", or "" if nothing is
    (no checkpoint, milestone or member was saved yet: a resume would start over)."""
    if not _HINT or not saved(_HINT[0][1]):
        return ""
    return f"; {what} kept ({_HINT[0][0]}{after})"


def saved(out: Path) -> bool:
    """Whether `out` (a run, or a study's cells) holds a whole checkpoint or a milestone: every
    checkpoint and member folder has its manifest, written last; milestones are whole files."""
    return any(True for _ in Path(out).glob("**/manifest.json")) or any(
        True for _ in Path(out).glob("**/milestones/*.json"))
