"""The classical compressors on a file, alone: the yardsticks `compress` is compared with.

    python benchmarks/compressors.py FILE [FILE ...]

Each reads the file once, as an online compressor does; bits per byte of its output. zstd is
not a dependency of the project: its row is the `zstd` command (level 19, long window) when one
is installed on the machine, and is left out otherwise.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from multitudes.evaluation.yardsticks import COMPRESSORS, LABELS

ZSTD = ["zstd", "-19", "--long=27", "-c", "-q"]


def _zstd(data: bytes) -> bytes:
    return subprocess.run(ZSTD, input=data, stdout=subprocess.PIPE, check=True).stdout


def main() -> None:
    compressors, labels = dict(COMPRESSORS), dict(LABELS)
    if shutil.which("zstd"):
        compressors["zstd"], labels["zstd"] = _zstd, "zstd -19 (CLI)"
    for name in sys.argv[1:]:
        data = Path(name).read_bytes()
        print(f"{name}: {len(data):,} bytes")
        for key, label in labels.items():
            start = time.perf_counter()
            size = len(compressors[key](data))
            took = time.perf_counter() - start
            print(f"  {label:<14} {8 * size / len(data):.4f} bpb  {len(data) / took:12,.0f} B/s")


if __name__ == "__main__":
    main()
