"""The classical compressors as yardsticks: what gzip, bzip2, xz and PPMd know after the same bytes.

A member that has read N real bytes is compared with a compressor that has read the same N bytes:
"test bpb given the bytes read" = (bits of compress(read + test) - bits of compress(read)) per
test byte. "Alone" is compress(test) per test byte, the compressor knowing nothing beforehand.
The numbers are a pure function of the two byte strings, so they are cached on disk under
`$MULTITUDES_CACHE/yardsticks/` keyed by the strings' sha256: a run pays for them once.
"""

from __future__ import annotations

import bz2
import hashlib
import json
import lzma
import zlib
from pathlib import Path
from typing import Callable

from multitudes.runs.checkpoint import write_json_atomic
from multitudes.data.corpora import default_cache_dir

PPMD_ORDER = 8
PPMD_MEMORY = 256 << 20  # enough that order 8 never restarts its model on these inputs


def _ppmd(data: bytes) -> bytes:
    import pyppmd  # imported here: only runs that report yardsticks need it

    return pyppmd.compress(data, max_order=PPMD_ORDER, mem_size=PPMD_MEMORY)


COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": lambda b: zlib.compress(b, 9),
    "bzip2": lambda b: bz2.compress(b, 9),
    "xz": lambda b: lzma.compress(b, preset=9 | lzma.PRESET_EXTREME),
    "ppmd": _ppmd,
}
LABELS = {"gzip": "gzip -9", "bzip2": "bzip2 -9", "xz": "xz -9e",
          "ppmd": f"PPMd order {PPMD_ORDER}"}


def conditional_bpb(compress: Callable[[bytes], bytes], read: bytes, target: bytes) -> float:
    """Bits per byte of `target` coded after `read`: the extra compressed bits it costs."""
    extra = len(compress(read + target)) - (len(compress(read)) if read else 0)
    return 8 * extra / len(target)


def measure(read: bytes, target: bytes) -> dict[str, dict[str, float]]:
    """{compressor: {"given": bpb of target after read, "alone": bpb of target by itself}}."""
    out = {}
    for name, compress in COMPRESSORS.items():
        alone = conditional_bpb(compress, b"", target)
        out[name] = {"given": conditional_bpb(compress, read, target) if read else alone,
                     "alone": alone}
    return out


def cached(read: bytes, target: bytes, cache_dir: Path | None = None) -> dict:
    """`measure`, read from (or written to) the on-disk cache."""
    key = hashlib.sha256()
    for part in (read, target):
        key.update(hashlib.sha256(part).digest())
    key.update(f"ppmd{PPMD_ORDER}-{PPMD_MEMORY}".encode())
    path = (cache_dir or default_cache_dir()) / "yardsticks" / f"{key.hexdigest()[:32]}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    result = measure(read, target)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, result)
    except OSError:  # an unwritable cache costs time, never the run
        pass
    return result


def for_splits(read: bytes, targets: dict) -> dict:
    """Yardsticks of each named target (`dev`, `valid`, `test`) given the bytes read:
    {"read_bytes": n, name: {compressor: {"given", "alone"}}}."""
    out = {"read_bytes": len(read)}
    for name, data in targets.items():
        out[name] = cached(read, bytes(data))
    return out


def lines(yardsticks: dict, split: str = "test") -> list[str]:
    """The yardsticks as table rows: `gzip -9 given the same 655,360 bytes  2.8230`."""
    n = yardsticks["read_bytes"]
    rows = []
    for name, label in LABELS.items():
        value = yardsticks[split][name]
        rows.append((label, value["given"], value["alone"]))
    return [f"{label:<14} given the same {n:,} bytes: {given:.4f} bpb ({split} alone: "
            f"{alone:.4f})" for label, given, alone in rows]
