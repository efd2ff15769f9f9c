"""The command line: `multitudes train | compare | scale | eval | compress | decompress | lineage |
replay | report | models | presets`.

Every expected failure (bad config, missing file, corrupt checkpoint, failed download) is a
UserError and ends as one line on stderr with exit code 2; click's own usage errors are folded
into the same one-line form.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

import click

from multitudes.cli import resume_hint
from multitudes.cli.coding import compress, decompress
from multitudes.cli.finished import eval_cmd, lineage_cmd, replay, report
from multitudes.cli.scale import scale
from multitudes.errors import UserError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="multitudes")
def cli() -> None:
    """Heterogeneous social training of byte-level language models."""


def _config_options(fn):
    fn = click.option("--preset", help="A preset name (see `multitudes presets`).")(fn)
    fn = click.option("--config", "config_file", type=click.Path(dir_okay=False),
                      help="A TOML config file.")(fn)
    fn = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                      help="Override a config value, e.g. train.batch_size=64, members.0.lr=3e-3.")(fn)
    fn = click.option("--out", type=click.Path(file_okay=False), help="Run directory.")(fn)
    fn = click.option("--resume", "resume_dir", type=click.Path(file_okay=False),
                      help="Continue the run in this directory from its latest checkpoint.")(fn)
    fn = click.option("--force", is_flag=True, help="Replace a run already in --out.")(fn)
    fn = click.option("--quiet", is_flag=True, help="No progress bars.")(fn)
    return fn


def _open_run(command: str, preset, config_file, overrides, out, resume_dir, force):
    """The run directory, its config, whether it resumes, and this process's rank group.

    Under torchrun every rank reads the config itself (nothing is written yet), then joins the
    others; rank 0 alone creates the run directory.
    """
    from multitudes.config.files import load
    from multitudes.runs import distributed
    from multitudes.runs import directory
    from multitudes.runs.device import resolve_device
    from multitudes.training.protocols import check_runnable
    from multitudes.training.reference_record import checked_before_run
    from multitudes.runs.files import check_unlocked, lock_run_dir

    if resume_dir:
        if preset or config_file or out:
            raise UserError("--resume takes the run's own config; drop --preset/--config/--out")
        out = Path(resume_dir)
        if os.environ.get("RANK", "0") == "0":  # the other ranks would see rank 0's own lock
            check_unlocked(out)
        cfg = directory.prepare_run_dir(out, command, None, True, False, overrides)
    else:
        cfg = load(preset, config_file, overrides)
        # a bad corpus, one too small for the config, or no CUDA fails before anything is written
        check_runnable(cfg, command)
        if resolve_device(cfg.train.device).type == "cpu":
            _warn_if_slow(cfg, command)
        out = Path(out or f"runs/{command}-{cfg.name}")
    # every file the run reads is checked before anything is written or replaced (--force)
    cfg = checked_before_run(cfg, out)
    d = cfg.distributed
    group = distributed.connect(d.thoughts, d.top_k, d.timeout, cfg.train.device)
    if not resume_dir:  # refused before the lock file is made (`--out /etc` leaves nothing)
        group.on_main(lambda: directory.check_new_run_dir(out, force))
    group.on_main(lambda: lock_run_dir(out))  # one writer per run directory
    if not resume_dir:
        group.on_main(lambda: directory.prepare_run_dir(out, command, cfg, False, force))
    elif overrides:  # a longer run: checked by every rank, recorded once the lock is held
        group.on_main(lambda: directory.record_extension(out, cfg))
        if resolve_device(cfg.train.device).type == "cpu":
            _warn_if_slow(cfg)
    resume_hint.resumable(command, out)
    return out, cfg, bool(resume_dir), group


# The quick preset trains 4 members x 2,560 steps per arm in about 15 minutes on 2 CPU cores;
# a config a hundred times that is hours, which a user should hear before it starts.
SLOW_MEMBER_STEPS = 1_000_000


def _warn_if_slow(cfg, command: str = "train") -> None:
    """A warning before a run of very many member-steps starts: every arm counted (a compare's
    reference points, which may read many epochs, and its generations too)."""
    from multitudes.data.splits import steps_for
    from multitudes.training.protocols import planned_bytes

    arms = planned_bytes(cfg, command)
    steps = sum(steps_for(n, cfg.train.batch_size, cfg.context) for n in arms)
    member_steps = steps * len(cfg.members)
    if member_steps > SLOW_MEMBER_STEPS:
        where = "per arm" if len(arms) == 1 else f"in its {len(arms)} arms"
        click.echo(f"multitudes: warning: {len(cfg.members)} members x {steps:,} steps "
                   f"({member_steps:,} member-steps {where}; the quick preset has 10,240 per "
                   f"arm): expect hours or days on a CPU", err=True)


@cli.command()
@_config_options
def train(**options) -> None:
    """Train one population (one arm) and score it on the valid and test splits."""
    _run("train", **options)


@cli.command()
@_config_options
def compare(**options) -> None:
    """Isolated vs social arms at equal real bytes; writes results.json and report.html."""
    _run("compare", **options)


def _run(command: str, preset, config_file, overrides, out, resume_dir, force, quiet) -> None:
    """`train` or `compare`, as the user runs it: the members, the run, the result table."""
    from multitudes.training import protocols
    from multitudes.config import genome
    from multitudes.report import page
    from multitudes.runs import stopwatch
    from multitudes.runs.checkpoint import read_json
    from multitudes.runs.files import RunFiles

    out, cfg, resume, group = _open_run(command, preset, config_file, overrides, out,
                                        resume_dir, force)
    files = RunFiles(out, group)
    files.say(genome.describe(cfg.members))
    results = protocols.run(command, cfg, out, resume, progress=not quiet, group=group)
    files.say(page.table(results))
    files.say(files.for_writer(lambda: stopwatch.line(read_json(out / "timings.json",
                                                                "the run's timings"))))
    if command == "compare":
        files.say(f"report: {files.on_main(lambda: page.write_html(out))}")
    else:
        files.say(f"run written to {out}/ (results.json, metrics.jsonl, members/)")


@cli.command()
def models() -> None:
    """List the model families."""
    from multitudes.models import FAMILIES

    for name, (_, about) in FAMILIES.items():
        click.echo(f"{name:>7}  {about}")


@cli.command()
def presets() -> None:
    """List the presets (of `train` and `compare`, then of `scale`)."""
    from multitudes.config.files import list_presets
    from multitudes.study.plan import list_studies

    for name, about in list_presets().items():
        click.echo(f"{name:>8}  {about}")
    click.echo("studies (multitudes scale --preset NAME):")
    for name, about in list_studies().items():
        click.echo(f"{name:>8}  {about}")


for command in (compress, decompress, scale, eval_cmd, lineage_cmd, replay, report):
    cli.add_command(command)


def _out_of_memory(e: BaseException) -> bool:
    """torch's OutOfMemoryError (CUDA) or the CPU allocator's RuntimeError, or a MemoryError."""
    text = str(e)
    return (isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError"
            or "can't allocate memory" in text or "out of memory" in text.lower())


class Terminated(BaseException):
    """SIGTERM (kill, a batch scheduler, torchrun stopping the other ranks). A BaseException like
    KeyboardInterrupt, so no `except Exception` takes it for a failure and every cleanup that
    holds for Ctrl-C (temporary files, locks, peers) holds for it; not a KeyboardInterrupt, which
    click turns into its Abort."""


def _terminate(signum, frame):
    raise Terminated()




def _leave_without_teardown(stopping: BaseException | None) -> None:
    """A rank of several leaves now, skipping the interpreter's teardown: finished (`stopping`
    None, exit 0) or stopping with its one line said (a lost peer, SIGTERM from torchrun,
    Ctrl-C, an error: a SystemExit, its code). Gloo's worker threads outlive
    `destroy_process_group`: one still releasing the last collective's work (a barrier's
    tensors, which Python owns) takes the GIL while the interpreter finalizes, and the process
    aborts ("terminate called without an active exception", exit 134). A core dump shows it,
    one finished run in twenty on the project machine (tests/test_distributed.py), and about
    one in ten with a peer dead or stopping. Everything worth keeping is on disk already
    (results, checkpoints and milestones are written atomically and closed), so nothing is
    lost by not tearing down. Anything else (a bug's traceback, still to be printed) goes on as
    usual."""
    if stopping is not None and not isinstance(stopping, SystemExit):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    code = 0 if stopping is None else stopping.code
    os._exit(code if isinstance(code, int) else 1)


def main(argv: list[str] | None = None) -> None:
    # Python's default for SIGTERM ends the process without a word; handled like Ctrl-C it
    # leaves the same one line, and the same checkpoint to resume from.
    handles_term = threading.current_thread() is threading.main_thread()
    if handles_term:
        previous_term = signal.signal(signal.SIGTERM, _terminate)
        # Ctrl-C raises here even where the shell started us with SIGINT ignored (a `&` job)
        previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    resume_hint.clear()
    finished = False
    try:
        cli.main(args=argv, standalone_mode=False, prog_name="multitudes")
        finished = True
    except UserError as e:
        click.echo(f"multitudes: error: {e}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:  # click's form of Ctrl-C
        click.echo(f"multitudes: interrupted{resume_hint.kept()}", err=True)
        sys.exit(130)
    except click.ClickException as e:
        click.echo(f"multitudes: error: {e.format_message()}", err=True)
        sys.exit(e.exit_code)
    except Terminated:
        click.echo(f"multitudes: terminated (SIGTERM){resume_hint.kept()}", err=True)
        sys.exit(143)
    except KeyboardInterrupt:
        click.echo(f"multitudes: interrupted{resume_hint.kept()}", err=True)
        sys.exit(130)
    except OSError as e:  # disk full, read-only, permissions: what was saved before is intact
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        kept = resume_hint.kept("the latest checkpoint and finished milestones are",
                                " once it is fixed")
        click.echo(f"multitudes: error: {e.strerror or e}{where}{kept}", err=True)
        sys.exit(2)
    except (MemoryError, RuntimeError) as e:
        if not _out_of_memory(e):
            raise
        click.echo("multitudes: error: out of memory: the config's models or batches do not "
                   "fit on this machine (make members.*.d_model, train.batch_size or the "
                   f"context smaller){resume_hint.kept()}", err=True)
        sys.exit(2)
    finally:
        if handles_term:
            signal.signal(signal.SIGTERM, previous_term)
            signal.signal(signal.SIGINT, previous_int)
        joined = sys.modules.get("multitudes.runs.distributed")  # imported only by runs that train
        if joined is not None:  # after a failure no peer is waited for: one may be dead
            joined.disconnect(wait_for_peers=finished)
            if joined.world_size_from_env() > 1:  # None when finished, else the SystemExit
                _leave_without_teardown(None if finished else sys.exc_info()[1])
