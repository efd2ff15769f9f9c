"""The classical compressors on a file, alone: the yardsticks `compress` is compared with.

    python benchmarks/compressors.py FILE [FILE ...]

Each reads the file once, as an online compressor does; bits per byte of its output. zstd is
not a dependency of the project: its row is the `zstd` command (level 19, long window) when one
is installed on the machine, and is left out otherwise.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import time
from pathlib import Path

from multitudes.evaluation.yardsticks import COMPRESSORS, LABELS

ZSTD = ["zstd", "-19", "--long=27", "-c", "-q"]


def _zstd(data: bytes) -> bytes:
    return subprocess.run(ZSTD, input=data, stdout=subprocess.PIPE, check=True).stdout


def readable(name: str) -> bytes:
    """A file's bytes, or one line and exit 2 (missing, a folder, empty, unreadable)."""
    path = Path(name)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise argparse.ArgumentTypeError(f"{name}: cannot read it ({e.strerror or e})")
    if not data:
        raise argparse.ArgumentTypeError(f"{name}: empty, nothing to compress")
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description="The classical compressors on files, alone.")
    parser.add_argument("files", nargs="+", metavar="FILE")
    args = parser.parse_args()
    try:
        inputs = [(name, readable(name)) for name in args.files]  # all checked before any work
    except argparse.ArgumentTypeError as e:
        parser.exit(2, f"compressors.py: {e}\n")
    compressors, labels = dict(COMPRESSORS), dict(LABELS)
    if shutil.which("zstd"):
        compressors["zstd"], labels["zstd"] = _zstd, "zstd -19 (CLI)"
    for name, data in inputs:
        print(f"{name}: {len(data):,} bytes")
        for key, label in labels.items():
            start = time.perf_counter()
            size = len(compressors[key](data))
            took = time.perf_counter() - start
            print(f"  {label:<14} {8 * size / len(data):.4f} bpb  {len(data) / took:12,.0f} B/s")


if __name__ == "__main__":
    main()
