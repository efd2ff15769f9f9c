"""A run directory's files, and the one place that decides which process writes them.

Under torchrun every rank runs the same loop; rank 0 alone writes the run's files (metrics,
lineage, TensorBoard, milestones, results) and speaks to the user. Checkpoints are the exception:
every rank saves its own (see training/state.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from multitudes.runs.checkpoint import read_json, write_bytes_atomic, write_json_atomic
from multitudes.runs.distributed import Group
from multitudes.runs.stopwatch import Stopwatch
from multitudes.errors import UserError


class RunFiles:
    def __init__(self, out: Path, group: Group | None = None, progress: bool = True):
        self.out = Path(out)
        self.group = group or Group()
        self.writes = self.group.main  # the rule, decided once
        self.progress = progress and self.writes  # progress bars: the writer's only
        self._tensorboard = None
        self.clock = Stopwatch()  # where this process's time goes: timings.json

    def say(self, text: str, bar=None) -> None:
        """A line for the user (through the progress bar when one is drawn)."""
        if self.writes:
            (bar.write if bar is not None else print)(text)

    def on_main(self, fn):
        """`fn()` computed by the writer and shared (see Group.on_main)."""
        return self.group.on_main(fn)

    def for_writer(self, fn):
        """`fn()` computed by the writer alone, for what only it writes (None elsewhere)."""
        return fn() if self.writes else None

    # -- logs ----------------------------------------------------------------------------------
    def rewrite_logs(self, history: list[dict], events: list[dict]) -> None:
        """metrics.jsonl and lineage.jsonl rebuilt from the arms' state: at the start of a run
        (the founders' births), and on resume, so that rows written after the last checkpoint
        are not duplicated when those steps run again."""
        if self.writes:
            _write_jsonl(self.out / "metrics.jsonl", sorted(history,
                                                            key=lambda r: (r["arm"], r["step"])))
            _write_jsonl(self.out / "lineage.jsonl", events)

    def append_metrics(self, row: dict) -> None:
        """A dev evaluation: a line of metrics.jsonl and TensorBoard scalars."""
        if not self.writes:
            return
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        if self._tensorboard is None:
            from tensorboardX import SummaryWriter
            self._tensorboard = SummaryWriter(str(self.out / "tb"))
        tb, arm, x = self._tensorboard, row["arm"], row["real_bytes"]
        for mid, vals in row["members"].items():
            tb.add_scalar(f"{arm}/{mid}/dev_bpb", vals["dev_bpb"], x)
        tb.add_scalar(f"{arm}/consensus_dev_bpb", row["consensus_dev_bpb"], x)
        tb.flush()

    def append_lineage(self, rows: list[dict]) -> None:
        if self.writes:
            with open(self.out / "lineage.jsonl", "a") as f:
                f.writelines(json.dumps(row) + "\n" for row in rows)

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None

    # -- results -------------------------------------------------------------------------------
    def member_dir(self, label: str, member_id: str) -> Path:
        """Where a milestone's member weights go (every rank saves the members it owns)."""
        return self.out / "members" / label / member_id

    def milestone(self, label: str, score) -> dict:
        """`score()` once; a resumed run reads the milestone back instead of scoring it again
        (a run extended to more bytes has had its milestones set aside, see runs/directory.py)."""
        path = self.out / "milestones" / f"{label}.json"
        if self.on_main(path.is_file):
            return self.on_main(lambda: read_json(path, "milestone"))
        result = score()
        if self.writes:
            write_json_atomic(path, result)
        return result

    def write_results(self, results: dict) -> None:
        if self.writes:
            write_json_atomic(self.out / "results.json", results)

    def write_timings(self, resumed: bool) -> None:
        """This process's timings; a resumed run keeps its earlier processes' under `earlier`
        (a resume that adds an arm would otherwise lose the record of the run it grew)."""
        if not self.writes:
            return
        summary = self.clock.summary(resumed)
        path = self.out / "timings.json"
        if resumed and path.is_file():
            try:
                before = json.loads(path.read_text())
            except (OSError, ValueError):  # damaged: a record of time, not an input
                before = None
            if isinstance(before, dict):
                summary["earlier"] = [*before.pop("earlier", []), before]
        write_json_atomic(path, summary)


_HELD: list = []  # (directory, open lock file) of this process (closed when it exits)


def lock_run_dir(out: Path, shared: bool = False, grace: float | None = None) -> None:
    """Hold `out/.lock` while this process lives: a second process that would write the same
    run (two resumes at once) stops with one line instead of interleaving rows. `shared`: any
    number of shared holders, no exclusive one (the workers of one scaling study). `grace`:
    seconds a held lock is waited for (default LOCK_GRACE_SECONDS; 0 for a study's worker
    looking for a free cell)."""
    import fcntl

    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        # O_NOFOLLOW: a .lock that is a link would create or truncate its target elsewhere
        handle = os.fdopen(os.open(out / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW,
                                   0o666), "a+")
    except OSError as e:
        why = "it is a symbolic link" if (out / ".lock").is_symlink() else e.strerror or e
        raise UserError(f"--out {out}: cannot write a run there: {out / '.lock'}: {why}"
                        ) from None
    try:
        _flock_soon(handle.fileno(), fcntl.LOCK_SH if shared else fcntl.LOCK_EX, grace)
    except OSError:
        handle.close()
        raise UserError(f"{out} is in use by another multitudes process; wait for it to "
                        f"finish, or write to another --out") from None
    _HELD.append((out.resolve(), handle))
    refuse_links(out)


def check_unlocked(out: Path) -> None:
    """Refuse, before the run's files are read or changed, a directory another process holds
    (a second resume, a second extension): its lock is tried and given back at once, so the
    one line is "in use", not whatever the other process's changes make the files say."""
    import fcntl

    try:
        fd = os.open(Path(out) / ".lock", os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:  # no lock file yet (or a link, refused when the lock is taken)
        return
    try:
        _flock_soon(fd, fcntl.LOCK_EX)
    except OSError:
        raise UserError(f"{out} is in use by another multitudes process; wait for it to "
                        f"finish, or write to another --out") from None
    finally:
        os.close(fd)


# A process killed a moment ago (SIGKILL to a torchrun job, then a resume at once) holds its
# lock until the kernel has torn it down: a lock is waited for this long before it is "in use".
LOCK_GRACE_SECONDS = 3.0


def _flock_soon(fd: int, mode: int, grace: float | None = None) -> None:
    """flock `fd` without blocking, retried for `grace` seconds (LOCK_GRACE_SECONDS); OSError
    if it is still held then."""
    import fcntl
    import time

    deadline = time.monotonic() + (LOCK_GRACE_SECONDS if grace is None else grace)
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return
        except OSError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


def release(out: Path) -> None:
    """Give up this process's lock on `out` (a study worker's finished cell), so that others
    may open it (`train --resume CELL`) while the study goes on."""
    out = Path(out).resolve()
    for held in [h for h in _HELD if h[0] == out]:
        held[1].close()
        _HELD.remove(held)


def refuse_links(out: Path) -> None:
    """A run or study directory whose files or folders include a symbolic link is refused:
    checkpoints, weights, events and logs would be written wherever the link points."""
    for root, folders, names in os.walk(out):  # links to folders are listed, never entered
        for name in folders + names:
            path = Path(root) / name
            if path.is_symlink():
                raise UserError(f"{path} is a symbolic link: a run writes only into its own "
                                f"directory (replace the link with the folder or file itself)")


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    write_bytes_atomic(path, "".join(json.dumps(r) + "\n" for r in rows).encode())
