"""Soak: SIGKILL a long command every few minutes, go on after each kill as a user would, and
check that the end is the same, bit for bit, as a run never killed.

Three targets:
- `compare` (a preset's comparison): resumed with `compare --resume` after each kill; every
  member's valid and test bpb in every arm, and the multiplier, must equal the uninterrupted
  run's.
- `scale` (a study preset, kills landing across cells): resumed with `scale --resume`; every
  cell's numbers must equal the uninterrupted study's.
- `online` (`compress --online` of a file): an online compression cannot resume, so a kill
  must leave no temporary file and no partial archive behind (none, or a whole one); after the
  kills one run finishes, and its archive must be byte-identical to the uninterrupted one and
  decompress to the file.

    python benchmarks/soak.py --target compare --preset quick --kill-every 150 --out runs/soak
    python benchmarks/soak.py --target scale --preset debug --kill-every 8 --out runs/soak-scale
    python benchmarks/soak.py --target online --preset debug --file FILE --out runs/soak-online
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from common import positive_float, positive_int
from multitudes.training import protocols


def multitudes(*args: str) -> list[str]:
    return [sys.executable, "-m", "multitudes", *args]


def numbers(run: Path) -> dict:
    results = json.loads((run / "results.json").read_text())
    return {"arms": protocols.numbers(results),
            "data_efficiency": results.get("data_efficiency")}


def study_numbers(study: Path) -> dict:
    return {cell.name: numbers(cell) for cell in sorted((study / "cells").iterdir())}


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def soak(start_cmd: list[str], resume_cmd: list[str] | None, kill_every: float,
         duration: float, seed: int, after_kill=None, max_kills: int | None = None) -> dict:
    """Run `start_cmd`, SIGKILL it at jittered intervals and go on with `resume_cmd` (or start
    again: None), until it finishes, `max_kills` kills, or `duration` seconds."""
    rng = random.Random(seed)
    start, kills, cmd = time.perf_counter(), 0, start_cmd
    while True:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
        try:  # a jittered interval, so kills land at different phases of the run
            proc.wait(timeout=kill_every * rng.uniform(0.5, 1.5)
                      if max_kills is None or kills < max_kills else None)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            print(f"  kill {kills} at {time.perf_counter() - start:.0f}s", flush=True)
            if after_kill is not None:
                after_kill()
            if time.perf_counter() - start > duration:
                return {"kills": kills, "finished": False, "wall_s": time.perf_counter() - start}
            cmd = resume_cmd or start_cmd
            continue
        if proc.returncode != 0:
            raise SystemExit(f"the run failed with exit code {proc.returncode}")
        return {"kills": kills, "finished": True, "wall_s": time.perf_counter() - start}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", choices=["compare", "scale", "online"], default="compare")
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--file", type=Path, help="online: the file to compress")
    ap.add_argument("--kill-every", type=positive_float, default=120.0,
                    help="seconds, jittered +-50%%")
    ap.add_argument("--kills", type=positive_int, default=5,
                    help="online: kills before one run finishes")
    ap.add_argument("--duration", type=positive_float, default=3600.0,
                    help="give up after this long")
    ap.add_argument("--out", type=Path, default=Path("runs/soak"))
    ap.add_argument("--reference", type=Path, help="compare: a finished uninterrupted run")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out, soaked = args.out, args.out / "soaked"
    quiet = ["--quiet"]

    if args.target == "online":
        if args.file is None:
            raise SystemExit("--target online needs --file")
        reference = out / "reference.mtz"
        def compress(path: Path) -> list[str]:
            return multitudes("compress", str(args.file), "--online", "--preset", args.preset,
                              "-o", str(path), "--force", *quiet)
        out.mkdir(parents=True, exist_ok=True)
        reference_s = timed(compress(reference))
        archive = out / "soaked.mtz"
        archive.unlink(missing_ok=True)
        left = []

        def check_nothing_left() -> None:
            """A kill leaves no temporary file, and either no archive or a whole one (a kill
            after the archive's rename, while the summary's xz runs)."""
            left.extend(str(p) for p in out.iterdir() if p.name.startswith("."))
            if archive.exists() and archive.read_bytes() != reference.read_bytes():
                left.append(f"{archive} (not whole)")
        print(f"online {args.preset}: {reference_s:.0f}s uninterrupted; killing at random",
              flush=True)
        # kills at 25% to 75% of an uninterrupted run's time: each one mid-compression
        result = soak(compress(archive), None, reference_s * 0.5, args.duration, args.seed,
                      check_nothing_left, args.kills)
        back = out / "soaked.back"
        subprocess.run(multitudes("decompress", str(archive), "-o", str(back), "--force",
                                  *quiet), check=True, stdout=subprocess.DEVNULL)
        same = (result["finished"] and archive.read_bytes() == reference.read_bytes()
                and back.read_bytes() == args.file.read_bytes() and not left)
        print(f"online {args.preset}: kills {result['kills']}, partial files left by a kill: "
              f"{left or 'none'}; archive identical to the uninterrupted one and decoded "
              f"exactly: {same} (sha256 {hashlib.sha256(archive.read_bytes()).hexdigest()[:16]})")
        sys.exit(0 if same else 1)

    command = "scale" if args.target == "scale" else "compare"
    read = study_numbers if command == "scale" else numbers
    reference, reference_s = args.reference, None
    if reference is None:
        reference = out / "reference"
        print(f"uninterrupted reference: {command} {args.preset} -> {reference}", flush=True)
        reference_s = timed(multitudes(command, "--preset", args.preset, "--out",
                                       str(reference), "--force", *quiet))
    print(f"soaked run: a kill every ~{args.kill_every:.0f}s -> {soaked}", flush=True)
    result = soak(multitudes(command, "--preset", args.preset, "--out", str(soaked), "--force",
                             *quiet),
                  multitudes(command, "--resume", str(soaked), *quiet),
                  args.kill_every, args.duration, args.seed)
    same = result["finished"] and read(soaked) == read(reference)
    print(f"{command} {args.preset}: kills survived {result['kills']}, finished "
          f"{result['finished']}, wall {result['wall_s']:.0f}s"
          + (f" vs {reference_s:.0f}s uninterrupted (ratio {result['wall_s'] / reference_s:.2f})"
             if reference_s else ""))
    print(f"final numbers identical to the uninterrupted run: {same}")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
