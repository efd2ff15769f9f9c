"""The `compress` and `decompress` commands (see coding/archive.py); registered by cli/main.py."""

from __future__ import annotations

from pathlib import Path

import click

from multitudes.errors import UserError


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("-o", "--out", "out", type=click.Path(dir_okay=False), default=None,
              help="The archive (default: FILE.mtz).")
@click.option("--run", "run", type=click.Path(), default=None,
              help="Offline: a finished run (its members code) or one member checkpoint.")
@click.option("--arm", default=None, help="Offline: the arm whose members code (default: "
              "social).")
@click.option("--member", default=None, help="Offline: one member of the arm (default: the "
              "consensus of all its members).")
@click.option("--lanes", type=int, default=64, show_default=True,
              help="Offline: slices of the file coded side by side.")
@click.option("--online", is_flag=True, help="Prequential: the population of --preset codes "
              "each batch, then trains on it; nothing is trained beforehand.")
@click.option("--preset", default=None, help="Online: the population and its recipe.")
@click.option("--config", "config_file", type=click.Path(), default=None,
              help="Online: a TOML config instead of a preset.")
@click.option("--set", "overrides", multiple=True, help="Online: override a config value.")
@click.option("--members", type=int, default=None, help="Online: only the first K members.")
@click.option("--keep", default=None, help="Online: only the members at these indices (2,3).")
@click.option("--mixture", type=click.Choice(["bayes", "uniform"]), default="bayes",
              show_default=True, help="Online: how the members' predictions are mixed.")
@click.option("--isolated", is_flag=True, help="Online: the members train alone (channels "
              "closed); the consensus still codes.")
@click.option("--force", is_flag=True, help="Replace an existing archive.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def compress(file, out, run, arm, member, lanes, online, preset, config_file, overrides,
             members, keep, mixture, isolated, force, quiet) -> None:
    """Code FILE with a population's predictions (range coding); `decompress` gives it back."""
    from multitudes.coding import archive
    from multitudes.runs.checkpoint import check_output

    out = out or f"{file}.mtz"
    # a file the coder reads is an input, --force or not: the run's results and models too
    check_output(Path(out), force, [Path(file)] + (
        archive.inputs_of(Path(run), arm, member) if run and not online else []))
    if online:
        from multitudes.config.files import load
        if run or arm or member:
            raise UserError("--online trains its own population: drop --run/--arm/--member")
        try:
            indices = [int(i) for i in keep.split(",")] if keep else None
        except ValueError:
            raise UserError(f"--keep {keep}: member indices separated by commas") from None
        cfg = archive.online_config(load(preset, config_file, overrides), members,
                                isolated, indices)
        r = archive.compress_online(Path(file), Path(out), cfg, not quiet, mixture)
    else:
        if not run:
            raise UserError("compress needs --run DIR (a trained run), or --online")
        r = archive.compress_file(Path(file), Path(out), Path(run), arm, member, lanes, not quiet)
    took = f" in {r['seconds']:.0f} s ({r['bytes'] / max(r['seconds'], 1e-9):,.0f} B/s)" \
        if "seconds" in r else ""
    click.echo(f"{file}: {r['bytes']:,} bytes -> {out}: {r['compressed']:,} bytes, "
               f"{r['bpb']:.4f} bpb (model {r['model_bpb']:.4f} bpb + {r['header_bytes']} "
               f"header bytes; xz -9e on the same bytes {r['xz_bpb']:.4f} bpb){took}")


@click.command()
@click.argument("archive", type=click.Path(dir_okay=False))
@click.option("-o", "--out", "out", type=click.Path(dir_okay=False), required=True)
@click.option("--run", "run", type=click.Path(), default=None,
              help="Where the run that coded it is now (default: the path in its header).")
@click.option("--force", is_flag=True, help="Replace an existing output file.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def decompress(archive, out, run, force, quiet) -> None:
    """The original of a `.mtz` archive, checked against its sha256."""
    from multitudes.coding.archive import archive_inputs, decompress_file
    from multitudes.runs.checkpoint import check_output

    check_output(Path(out), force, [Path(archive)] + archive_inputs(Path(archive),
                                                                     run and Path(run)))
    r = decompress_file(Path(archive), Path(out), Path(run) if run else None, not quiet)
    click.echo(f"{archive} -> {out}: {r['bytes']:,} bytes, sha256 verified")
