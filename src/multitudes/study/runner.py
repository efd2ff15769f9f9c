"""`multitudes scale`: run a study's cells one after another, each an ordinary run directory.

    DIR/study.json        the study's document (grid, sizes, base config) and its sha256
    DIR/cells/NAME/       one `compare` or `train` run per cell (inspect, resume, report it)
    DIR/cells/NAME/inference.json   the inference-time axis of the largest-K cells
    DIR/scale.json, DIR/scale.html   the study's table and plots, rebuilt after every cell

A killed study resumes at the cell it was in: finished cells (results.json) are read back, the
interrupted one resumes from its latest checkpoint, the rest start. Re-running the same command
on the same --out continues it too; a different grid there is refused. Several processes can
work on one study at once (`scale --resume DIR` in a second terminal, on a second core): each
cell is locked by the process that runs it, and the others move on to the next.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from multitudes.training import protocols
from multitudes.study.plan import Cell, cells, check, check_cells
from multitudes.study.rows import ROW_KEYS, check_row
from multitudes.runs import directory
from multitudes.runs.checkpoint import damaged, json_digest, read_json, write_json_atomic
from multitudes.runs.results import read as read_results
from multitudes.errors import UserError
from multitudes.runs.files import lock_run_dir, release


def lock_study(out: Path, resuming: bool, shared: bool = False) -> None:
    """Workers of one study share its lock (each cell has its own, exclusive); starting it
    anew (--force) or rebuilding its report takes it alone. A resume of nothing creates
    nothing."""
    if resuming and not (out / "study.json").is_file():
        raise UserError(f"--resume {out}: no study there (no study.json)")
    lock_run_dir(out, shared=shared)


def _check_new_study_dir(out: Path) -> None:
    """A study goes into a new directory or one of its own (study.json), never into a run's or
    a user's files, --force or not (`train --out STUDYDIR` is refused alike)."""
    if not out.is_dir() or (out / "study.json").is_file():
        return
    # another worker starting the same study at the same moment: its lock, and its study.json
    # on the way in (write_json_atomic's temporary file, renamed a moment later)
    names = {p.name for p in out.iterdir()
             if p.name != ".lock" and not p.name.startswith(".study.json.")}
    if names:
        what = "a run" if "config.json" in names else "files"
        raise UserError(f"{out} holds {what}, not a study: choose another --out")


def open_study(out: Path, doc: dict | None, force: bool) -> dict:
    """Create DIR/study.json, or reopen it: `doc` None means `--resume DIR`."""
    record_path = out / "study.json"
    if doc is None:
        if not record_path.is_file():
            raise UserError(f"--resume {out}: no study there (no study.json)")
        record = read_json(record_path, "the study's record")
        if not isinstance(record, dict) or record.get("sha256") != json_digest(
                record.get("study", {})):
            raise UserError(f"--resume {out}: study.json was edited or damaged after the study "
                            f"started")
        check(record["study"])
        return record["study"]
    if record_path.is_file() and not force:
        record = read_json(record_path, "the study's record")
        if not isinstance(record, dict) or record.get("sha256") != json_digest(doc):
            raise UserError(f"{out} holds another study (a different grid or config); use "
                            f"--resume {out} to continue it, or --force to start this one there")
        return doc
    if record_path.is_file():  # --force: the old grid's cells and tables go with it
        for name in ("cells", "scale.json", "scale.html", "scale-merged.json",
                     "scale-merged.html"):
            path = out / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(record_path, {"study": doc, "sha256": json_digest(doc)})
    return doc


def run_cell(cell: Cell, cell_dir: Path, force: bool, progress: bool) -> dict:
    """A cell's results, run or resumed (its lock is held): resumed when its directory holds a
    run of the same config, else started (anew with --force)."""
    record = cell_dir / "config.json"
    recorded = read_json(record, "a cell's config") if record.is_file() else {}
    resume = record.is_file() and not force and isinstance(recorded, dict) and (
        recorded.get("config") == cell.cfg.to_dict())
    if record.is_file() and not resume and not force:
        raise UserError(f"cell {cell_dir} holds a run of another config; --force restarts it")
    cfg = directory.prepare_run_dir(cell_dir, cell.command, None if resume else cell.cfg, resume,
                                 force=True)
    return protocols.run(cell.command, cfg, cell_dir, resume=resume, progress=progress)


def _claim(cell_dir: Path) -> bool:
    """This process's lock on a cell, or False when another worker holds it."""
    try:
        lock_run_dir(cell_dir, grace=0)  # held: another worker's, take the next cell
    except UserError:
        return False
    return True


def run_study(doc: dict, out: Path, force: bool = False, progress: bool = True,
              say=print) -> dict:
    """Run every cell not finished yet, in plan order. Several processes may run one study
    (the same `scale --resume DIR` in two terminals): each takes the next cell no other holds."""
    from multitudes.study import inference
    from multitudes.study import summary

    resuming = doc is None
    if not resuming:  # checked before the study's directory or lock is made
        _check_new_study_dir(out)
        plan = cells(doc)
        check_cells(plan)
    lock_study(out, resuming, shared=not force)
    doc = open_study(out, doc, force)  # a new study's doc comes back as it was given
    if resuming:
        plan = cells(doc)
        check_cells(plan)
    largest = max(doc["members"])
    done = sum((out / "cells" / c.name / "results.json").is_file() for c in plan)
    say(f"study {doc.get('name', '')}: {len(plan)} cells in {out}/cells "
        f"({done} finished already)")
    for i, cell in enumerate(plan, 1):
        cell_dir = out / "cells" / cell.name
        finished = (cell_dir / "results.json").is_file() and not force
        probe = doc.get("inference") and cell.kind == "population" and cell.K == largest
        if finished and (not probe or (cell_dir / "inference.json").is_file()):
            continue
        if not _claim(cell_dir):
            say(f"[{i}/{len(plan)}] {cell.name}: another worker runs it; on to the next")
            continue
        if (cell_dir / "results.json").is_file() and not force:  # finished meanwhile
            results = read_results(cell_dir / "results.json", f"cell {cell.name}'s results")
        else:
            say(f"[{i}/{len(plan)}] {cell.name}: {cell.command}, "
                f"{len(cell.cfg.members)} member(s)")
            start = time.perf_counter()
            results = run_cell(cell, cell_dir, force, progress)
            _record_seconds(cell_dir, time.perf_counter() - start)
            say(f"[{i}/{len(plan)}] {cell.name}: {summary.cell_line(results)} "
                f"({_seconds(cell_dir):.0f} s)")
        if probe:
            inference.ensure(cell_dir, results, progress)
        release(cell_dir)  # finished: free to inspect or resume while the study goes on
        summary.write(out, doc, plan)
    return summary.write(out, doc, plan)


def report_only(out: Path, merge: list[Path] = ()) -> dict:
    """scale.json and scale.html rebuilt from the finished cells (the study's lock is held, so
    never while the study runs); with `merge`, other runs' scale.json of the same study join
    them in scale-merged.json and scale-merged.html."""
    from multitudes.study import summary

    lock_study(out, True)
    doc = open_study(out, None, False)
    others = {str(path): _other_summary(path, doc) for path in merge}
    return summary.write(out, doc, cells(doc), others)


def _other_summary(path: Path, doc: dict) -> dict:
    from multitudes.study import summary

    if not path.is_file():
        raise UserError(f"--merge {path}: no such file (give another study's scale.json)")
    other = read_json(path, "the scale.json to merge")
    if not isinstance(other, dict) or not isinstance(other.get("cells"), list) or not all(
            isinstance(c, dict) and ROW_KEYS <= c.keys() for c in other["cells"]):
        raise UserError(f"--merge {path}: not a study's scale.json (no cells, or damaged ones)")
    with damaged(path, "--merge"):
        for row in other["cells"]:
            check_row(row, doc["mix"], f"--merge {path}")
    budget = summary.real_bytes(doc)
    if (other.get("study"), other.get("real_bytes")) != (doc.get("name"), budget):
        raise UserError(f"--merge {path}: study {other.get('study')!r} at "
                        f"{other.get('real_bytes')} real bytes, not this study "
                        f"({doc.get('name')!r} at {budget})")
    return other


def _record_seconds(cell_dir: Path, seconds: float) -> None:
    """Wall time of the session that finished the cell (a resumed cell's earlier, interrupted
    sessions are not counted: their time is lost with them)."""
    write_json_atomic(cell_dir / "wall.json", {"seconds": seconds})


def _seconds(cell_dir: Path) -> float:
    path = cell_dir / "wall.json"
    if not path.is_file():
        return float("nan")
    with damaged(path, "a cell's wall time"):
        return float(read_json(path, "a cell's wall time")["seconds"])
