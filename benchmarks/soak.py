"""Soak: run a comparison with a SIGKILL and a `--resume` every few minutes until it finishes.

Reports the kills survived, the wall time against an uninterrupted run of the same preset, and
whether the final numbers (every member's valid and test bpb in every arm, the multiplier) are
the same, bit for bit. The uninterrupted reference is run here too unless --reference names a
finished run directory of the same preset (e.g. the README's main job).

    python benchmarks/soak.py --preset quick --kill-every 120 --out runs/soak
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from multitudes.training import protocols


def multitudes(*args: str) -> list[str]:
    return [sys.executable, "-m", "multitudes", *args]


def numbers(run: Path) -> dict:
    results = json.loads((run / "results.json").read_text())
    return {"arms": protocols.numbers(results),
            "data_efficiency": results.get("data_efficiency")}


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def soak(preset: str, out: Path, kill_every: float, duration: float, seed: int) -> dict:
    rng = random.Random(seed)
    start, kills = time.perf_counter(), 0
    cmd = multitudes("compare", "--preset", preset, "--out", str(out), "--quiet", "--force")
    while True:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
        try:  # a jittered interval, so kills land at different phases of the run
            proc.wait(timeout=kill_every * rng.uniform(0.5, 1.5))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            print(f"  kill {kills} at {time.perf_counter() - start:.0f}s", flush=True)
            if time.perf_counter() - start > duration:
                return {"kills": kills, "finished": False, "wall_s": time.perf_counter() - start}
            cmd = multitudes("compare", "--resume", str(out), "--quiet")
            continue
        if proc.returncode != 0:
            raise SystemExit(f"the run failed with exit code {proc.returncode}")
        return {"kills": kills, "finished": True, "wall_s": time.perf_counter() - start}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--kill-every", type=float, default=120.0, help="seconds, jittered +-50%%")
    ap.add_argument("--duration", type=float, default=3600.0, help="give up after this long")
    ap.add_argument("--out", type=Path, default=Path("runs/soak"))
    ap.add_argument("--reference", type=Path, help="a finished uninterrupted run to compare with")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    reference, reference_s = args.reference, None
    if reference is None:
        reference = args.out / "reference"
        print(f"uninterrupted reference: {args.preset} -> {reference}", flush=True)
        reference_s = timed(multitudes("compare", "--preset", args.preset, "--out",
                                       str(reference), "--quiet", "--force"))
    print(f"soaked run: a kill every ~{args.kill_every:.0f}s -> {args.out / 'soaked'}", flush=True)
    result = soak(args.preset, args.out / "soaked", args.kill_every, args.duration, args.seed)
    same = result["finished"] and numbers(args.out / "soaked") == numbers(reference)
    print(f"preset {args.preset}: kills survived {result['kills']}, finished "
          f"{result['finished']}, wall {result['wall_s']:.0f}s"
          + (f" vs {reference_s:.0f}s uninterrupted (ratio {result['wall_s'] / reference_s:.2f})"
             if reference_s else ""))
    print(f"final numbers identical to the uninterrupted run: {same}")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
