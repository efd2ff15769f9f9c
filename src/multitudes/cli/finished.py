"""The commands that read a finished run: `eval`, `lineage`, `replay` and `report`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from multitudes.errors import UserError


@click.command(name="eval")
@click.argument("target", type=click.Path())
@click.option("--data", "corpus", default=None,
              help="sample | enwik8 | enwik9 | file:PATH (default: the run's corpus).")
@click.option("--split", type=click.Choice(["valid", "test", "all"]), default="test",
              show_default=True, help="A split of the corpus, or all of it (e.g. your own file).")
@click.option("--stride", type=int, default=0, help="Evaluation stride (0: half the context).")
@click.option("--n-loop", type=int, default=None, help="Loops of a looped model at evaluation.")
@click.option("--adaptive", is_flag=True,
              help="Also code the split as an adaptive compressor does: one optimizer step "
                   "after each window it has scored (dynamic evaluation; see docs).")
@click.option("--adaptive-lr", type=float, default=None,
              help="Its learning rate (default: chosen per member on the dev slice of valid).")
@click.option("--dev-bytes", type=int, default=32768, show_default=True,
              help="The dev slice (the first bytes of valid) that chooses the adaptive rate.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def eval_cmd(target, corpus, split, stride, n_loop, adaptive, adaptive_lr, dev_bytes,
             as_json) -> None:
    """Bits per byte of a run's members, or of one member checkpoint, on a whole split."""
    from multitudes.evaluation.target import evaluate_target, yardsticks_for

    rows, consensus = evaluate_target(Path(target), corpus, split, stride, n_loop,
                                      adaptive or adaptive_lr is not None, adaptive_lr,
                                      dev_bytes)
    sticks = yardsticks_for(Path(target), corpus, split, rows)
    if as_json:
        payload = rows[0] if len(rows) == 1 else {"members": rows, "consensus": consensus}
        click.echo(json.dumps({**payload, "yardsticks": sticks}, indent=1))
        return
    for r in rows:
        how = "state carried" if r["carry_state"] else f"stride {r['stride']}"
        arm = f"{r['arm']:>9}  " if r.get("arm") else ""
        adapted = (f"  adaptive {r['adaptive_bpb']:.4f} (lr {r['adaptive_lr']:g})"
                   if "adaptive_bpb" in r else "")
        click.echo(f"{arm}{r['id']:>14}  {r['family']:>6}  {r['split']} bpb {r['bpb']:.4f}"
                   f"{adapted}  ({r['bytes_scored']:,} bytes of {r['data']}, "
                   f"n_ctx {r['context']}, {how})")
    for c in consensus:
        adapted = f"  adaptive {c['adaptive_bpb']:.4f}" if "adaptive_bpb" in c else ""
        click.echo(f"{c['arm'] or '':>9}  {'consensus':>14}  {'':>6}  {split} bpb "
                   f"{c['bpb']:.4f}{adapted}")
    from multitudes.evaluation.yardsticks import LABELS
    for name, label in LABELS.items():
        given = (f", given the run's {sticks['read_bytes']:,} bytes {sticks['given'][name]:.4f}"
                 if "given" in sticks else "")
        click.echo(f"{'yardstick':>14}  {label:<13} alone {sticks['alone'][name]:.4f}{given}")


@click.command(name="lineage")
@click.argument("run_dir", type=click.Path(file_okay=False))
def lineage_cmd(run_dir) -> None:
    """Print a run's family tree: births, deaths and resets."""
    from multitudes.evolution import lineage

    click.echo(lineage.tree(lineage.read(Path(run_dir))))


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--out", type=click.Path(file_okay=False), help="Where to replay (default: "
              "RUN_DIR-replay).")
@click.option("--force", is_flag=True, help="Replace a run already in --out.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def replay(run_dir, out, force, quiet) -> None:
    """Re-run a finished run with its recorded births and deaths; check the numbers agree."""
    from multitudes.runs import distributed
    from multitudes.training import protocols
    from multitudes.evolution import lineage
    from multitudes.report import page
    from multitudes.runs import directory

    if distributed.world_size_from_env() > 1:
        raise UserError("replay runs in one process; start it without torchrun")
    run_dir = Path(run_dir)
    rows = lineage.read(run_dir)
    record, original = directory.read_finished_run(run_dir)
    out = Path(out or f"{run_dir}-replay")
    cfg = directory.prepare_run_dir(out, record["command"], record["cfg"], False, force)
    results = protocols.run(record["command"], cfg, out, progress=not quiet, replay=rows)
    if record["command"] == "compare":
        page.write_html(out)
    click.echo(page.table(results))
    same = protocols.numbers(results) == protocols.numbers(original)
    click.echo(f"replay of {run_dir} in {out}: "
               + ("the same numbers, bit for bit" if same else "DIFFERENT numbers"))
    if not same:
        sys.exit(1)


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--figures", type=click.Path(file_okay=False),
              help="Also write each plot as FIGURES/figure-N.png.")
def report(run_dir, figures) -> None:
    """Rebuild report.html of a compare (or train) run from its files."""
    from multitudes.report import page

    click.echo(f"report: {page.write_html(Path(run_dir), figures and Path(figures))}")
