"""The `.mtz` file: `MTZ1`, a 4-byte header length, a zlib-compressed JSON header, then the
range coder's 32-bit words; written atomically, read back with every field checked before any
decoding (coding/archive.py says what the header records and why)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
import zlib
from pathlib import Path

import numpy as np

from multitudes.errors import UserError
from multitudes.runs import checkpoint

MAGIC = b"MTZ1"
FORMAT = 1


def read_file(src: Path) -> bytes:
    """A regular file's bytes: a device (/dev/zero) would be read without end, and a pipe with no
    writer would wait for ever."""
    try:
        if not stat.S_ISREG(os.stat(src).st_mode):
            raise UserError(f"{src} is not a regular file (a device, a pipe or a folder): "
                            f"compress codes a file of known length")
        return Path(src).read_bytes()
    except FileNotFoundError:
        raise UserError(f"{src} does not exist") from None
    except OSError as e:
        raise UserError(f"{src} cannot be read: {e.strerror or e}") from None


def write(out: Path, header: dict, words: np.ndarray) -> int:
    code = words.astype("<u4").tobytes()
    header = {**header, "code_sha256": hashlib.sha256(code).hexdigest()}
    head = zlib.compress(json.dumps(header, sort_keys=True, separators=(",", ":")).encode(), 9)
    blob = MAGIC + struct.pack("<I", len(head)) + head + code
    atomic_write(Path(out), blob)
    return len(blob)


def read(src: Path) -> tuple[dict, np.ndarray]:
    blob = read_file(src)
    if blob[:4] != MAGIC:
        raise UserError(f"{src} is not a multitudes archive (no MTZ1 mark)")
    try:
        (length,) = struct.unpack("<I", blob[4:8])
        header = json.loads(zlib.decompress(blob[8:8 + length]))
        body = blob[8 + length:]
    except (struct.error, ValueError, UnicodeDecodeError, zlib.error):
        raise UserError(f"{src} is damaged: its header cannot be read") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise UserError(f"{src} is damaged or of another format version "
                        f"(this version reads {FORMAT})")
    if len(body) % 4:
        raise UserError(f"{src} is truncated: its code is not whole 32-bit words")
    required = (("mode", "run", "members", "lanes", "length", "sha256")
                if header.get("mode") == "offline" else ("mode", "config", "length", "sha256"))
    if header.get("mode") not in ("offline", "online") or any(k not in header for k in required):
        raise UserError(f"{src} is damaged: its header lacks {', '.join(required)}")
    check_header(src, header)
    # The code's own digest (archives from before it was recorded have none): a flipped or
    # appended byte is refused here, before any decoding, not found as garbage at the end.
    if "code_sha256" in header and hashlib.sha256(body).hexdigest() != header["code_sha256"]:
        raise UserError(f"{src} is damaged: its code fails its sha256 (a byte changed, added "
                        f"or cut)")
    return header, np.frombuffer(body, dtype="<u4").astype(np.uint32)


def check_header(src: Path, header: dict) -> None:
    """The header's values of the types decoding reads them as (a crafted header with valid
    zlib and JSON is otherwise a TypeError deep in the decoder); one line for the first."""
    def whole(value, low: int) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= low

    def digest(value) -> bool:
        return isinstance(value, str) and len(value) == 64 and all(
            c in "0123456789abcdef" for c in value)

    checks = {"length": whole(header["length"], 0), "sha256": digest(header["sha256"]),
              "code_sha256": "code_sha256" not in header or digest(header["code_sha256"])}
    if header["mode"] == "offline":
        checks.update(
            lanes=whole(header["lanes"], 1), run=isinstance(header["run"], str),
            members=isinstance(header["members"], list) and bool(header["members"]) and all(
                isinstance(m, dict) and isinstance(m.get("checkpoint"), str)
                and isinstance(m.get("sha256"), str) for m in header["members"]))
    else:
        checks.update(config=isinstance(header["config"], dict),
                      mixture=isinstance(header.get("mixture", "bayes"), str))
    wrong = [key for key, ok in checks.items() if not ok]
    if wrong:
        raise UserError(f"{src} is damaged: its header's {wrong[0]} is not what an archive "
                        f"holds ({header.get(wrong[0])!r})"[:300])


def atomic_write(path: Path, data: bytes) -> None:
    try:
        checkpoint.write_bytes_atomic(path, data)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None
