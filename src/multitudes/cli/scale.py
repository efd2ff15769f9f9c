"""`multitudes scale`: the scaling study from the command line (see study/plan.py and study/runner.py)."""

from __future__ import annotations

import math
from pathlib import Path

import click

from multitudes.cli import resume_hint
from multitudes.errors import UserError


def _ints(text: str | None, name: str) -> list[int] | None:
    if text is None:
        return None
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise UserError(f"--{name} {text!r}: expected comma-separated integers such as 1,2,4,8")
    if not values or min(values) < 1:
        raise UserError(f"--{name} {text!r}: every value must be a positive integer")
    return values


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [v.strip() for v in text.split(",") if v.strip()]


@click.command()
@click.option("--preset", help="A study preset (studies/NAME.toml): cpu, gpu, debug.")
@click.option("--config", "study_file", type=click.Path(dir_okay=False),
              help="A study TOML file.")
@click.option("--members", "members", help="Members K per population, e.g. 1,2,4,8.")
@click.option("--sizes", help="Sizes, e.g. S,M (defined in the study file's [size.*]).")
@click.option("--mixes", help="Family mixes, e.g. hetero,transformer,rnn.")
@click.option("--channels", help="Social channels: logit, language, both.")
@click.option("--seeds", type=int, help="Seeds per cell (1..N).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a study value, e.g. base.train.real_bytes=65536, "
                   "size.S.gru.d_model=64.")
@click.option("--out", type=click.Path(file_okay=False), help="Study directory.")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False),
              help="Continue the study in this directory.")
@click.option("--force", is_flag=True, help="Replace a study already in --out.")
@click.option("--dry-run", is_flag=True, help="Print the cells, their parameters and FLOPs; "
                                               "train nothing.")
@click.option("--assume-flops", type=float, default=None, metavar="FLOP/S",
              help="With --dry-run: also print each cell's hours at this sustained training "
                   "rate (an assumption you give, e.g. 1e14 for bf16 on one H100).")
@click.option("--report", "report_only", is_flag=True,
              help="With --resume: rebuild scale.json and scale.html from the finished cells; "
                   "train nothing.")
@click.option("--merge", "merge", multiple=True, type=click.Path(dir_okay=False),
              metavar="SCALE.JSON",
              help="With --report: also take the finished cells of another run of the same "
                   "study (its scale.json; e.g. a size run as a study of its own) and write "
                   "scale-merged.json and scale-merged.html.")
@click.option("--quiet", is_flag=True, help="No progress bars within cells.")
def scale(preset, study_file, members, sizes, mixes, channels, seeds, overrides, out,
          resume_dir, force, dry_run, assume_flops, report_only, merge, quiet) -> None:
    """A resumable grid of comparisons: multiplier vs members, size, mix and channel."""
    from multitudes.runs import distributed
    from multitudes.study import runner
    from multitudes.study.plan import load
    from multitudes.study.render import text_table

    if distributed.world_size_from_env() > 1:
        raise UserError("scale runs its cells one after another in one process; start it "
                        "without torchrun (a cell can be resumed under torchrun by itself)")
    if merge and not report_only:
        raise UserError("--merge goes with --resume DIR --report")
    if seeds is not None and seeds < 1:
        raise UserError(f"--seeds {seeds}: must be a positive integer")
    axes = {"members": _ints(members, "members"), "sizes": _names(sizes),
            "mixes": _names(mixes), "channels": _names(channels), "seeds": seeds}
    if resume_dir:
        if preset or study_file or out or any(v is not None for v in axes.values()) \
                or overrides:
            raise UserError("--resume takes the study as it was started; drop the other "
                            "options")
        doc, out = None, Path(resume_dir)
    else:
        doc = load(preset, study_file, list(overrides), axes)
        out = Path(out or f"runs/scale-{doc.get('name', 'study')}")
    if assume_flops is not None and not 0 < assume_flops < math.inf:
        raise UserError(f"--assume-flops {assume_flops:g}: must be a positive, finite rate")
    if assume_flops is not None and not dry_run:
        raise UserError("--assume-flops goes with --dry-run")
    if dry_run:
        click.echo(plan_text(doc if doc is not None else runner.open_study(out, None, False),
                             assume_flops))
        return
    if report_only:
        if doc is not None:
            raise UserError("--report rebuilds a study's files: give it with --resume DIR")
        summary = runner.report_only(out, [Path(p) for p in merge])
        click.echo(text_table(summary))
        merged = (f", {summary['cells_merged']} more merged from {len(merge)} file(s)"
                  if merge else "")
        click.echo(f"{summary['cells_finished']} of {summary['cells_planned']} cells finished"
                   f"{merged}; report: {out}/{'scale-merged' if merge else 'scale'}.html")
        return
    resume_hint.resumable("scale", out)
    summary = runner.run_study(doc, out, force=force, progress=not quiet, say=click.echo)
    click.echo(text_table(summary))
    click.echo(f"study written to {out}/ (scale.json, scale.html, cells/)")


def plan_text(doc: dict, rate: float | None = None) -> str:
    """The cells a study would run: members, parameters, the training FLOPs of each cell (both
    arms, the isolated read-on at its longest) and, at an assumed rate, its hours."""
    from multitudes.study.plan import cells, check_cells

    plan = cells(doc)
    unchecked = check_cells(plan, fetch=False)  # a cell its corpus cannot hold: one line
    lines = [f"{'cell':<34} {'command':<8} {'members':<40} {'params':>12} {'FLOPs (max)':>12}"
             + (f" {'hours':>7}" if rate else "")]
    total = 0.0
    for c in plan:
        N = c.cfg.train.real_bytes
        # social at N, isolated to multiplier x N plus its cooldowns: an upper bound
        arms = 1.0 if c.command == "train" else 1.0 + c.cfg.compare.multiplier * (
            1 + c.cfg.train.cooldown)
        flops = sum(g.flops_per_byte for g in c.cfg.members) * N * arms
        total += flops
        who = ",".join(f"{g.family}{g.d_model}" for g in c.cfg.members)
        who = who if len(who) <= 40 else who[:37] + "..."
        lines.append(f"{c.name:<34} {c.command:<8} {who:<40} "
                     f"{sum(g.n_params for g in c.cfg.members):>12,} {flops:>12.3g}"
                     + (f" {flops / rate / 3600:>7.2f}" if rate else ""))
    lines.append(f"{len(plan)} cells, {total:.3g} training FLOPs at most "
                 f"({plan[0].cfg.train.real_bytes:,} real bytes per arm)"
                 + (f", {total / rate / 3600:.1f} hours at an assumed {rate:.3g} FLOP/s"
                    if rate else "")
                 + (f"; cells not checked against {', '.join(unchecked)} (not downloaded yet: "
                    f"a run checks every cell before it trains)" if unchecked else ""))
    return "\n".join(lines)
