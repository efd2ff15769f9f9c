"""The classical compressors on a file, alone: the yardsticks `compress` is compared with.

    python benchmarks/compressors.py FILE [FILE ...]

Each reads the file once, as an online compressor does; bits per byte of its output.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from multitudes.yardsticks import COMPRESSORS, LABELS


def main() -> None:
    for name in sys.argv[1:]:
        data = Path(name).read_bytes()
        print(f"{name}: {len(data):,} bytes")
        for key, label in LABELS.items():
            start = time.perf_counter()
            size = len(COMPRESSORS[key](data))
            took = time.perf_counter() - start
            print(f"  {label:<14} {8 * size / len(data):.4f} bpb  {len(data) / took:12,.0f} B/s")


if __name__ == "__main__":
    main()
