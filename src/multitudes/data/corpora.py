"""Byte corpora: the bundled sample, enwik8/enwik9 (downloaded, verified, cached) and local files.

A corpus named on the command line resolves to a path on disk plus a split rule:
  sample      the first 3,636,038 bytes of enwik8, shipped inside the package (sha256 checked)
  enwik8      100,000,000 bytes, from enwik8.zip (md5 + sha1 of the unpacked file checked)
  enwik9      1,000,000,000 bytes, from enwik9.zip
  file:PATH   any local file

Downloads go to a temporary file in the cache directory and are renamed into place only after the
unpacked file's size and published checksums check out, so a failed or corrupt download never
leaves a file that a later call would take for a cache hit.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from multitudes.errors import UserError

BASE_URL_ENV = "MULTITUDES_DATA_URL"
CACHE_ENV = "MULTITUDES_CACHE"
DEFAULT_BASE_URL = "http://mattmahoney.net/dc"
SAMPLE_PATH = Path(__file__).parent / "corpus" / "enwik8-head-3636038.bytes"
SAMPLE_SHA256 = "8ad4cb15de8a1657eba8f449b74314b18ce9084e9c37de182f57f014c53a5ce0"


@dataclass(frozen=True)
class RemoteCorpus:
    """One downloadable corpus: where its zip lives and what the unpacked file must be."""

    name: str
    zip_name: str  # file name of the zip under the base URL
    member: str  # the file inside the zip
    size: int
    md5: str
    sha1: str
    split: str = "tail10M"  # see data.split_bounds


REMOTE_CORPORA = {
    "enwik8": RemoteCorpus(
        "enwik8", "enwik8.zip", "enwik8", 10**8,
        md5="a1fa5ffddb56f4953e226637dabbb36a", sha1="57b8363b814821dc9d47aa4d41f58733519076b2",
    ),
    "enwik9": RemoteCorpus(
        "enwik9", "enwik9.zip", "enwik9", 10**9,
        md5="e206c3450ac99950df65bf70ef61a12d", sha1="2996e86fb978f93cca8f566cc56998923e7fe581",
    ),
}


@dataclass(frozen=True)
class CorpusFile:
    """A corpus resolved to a readable file and the rule that splits it."""

    name: str
    path: Path
    split: str  # "tail10M" (enwik8/9) or "fraction" (90/5/5)


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "multitudes")


def resolve(spec: str, cache_dir: Path | None = None) -> CorpusFile:
    """Turn `sample`, `enwik8`, `enwik9` or `file:PATH` into a verified file on disk."""
    if spec == "sample":
        verify_sha256(SAMPLE_PATH, SAMPLE_SHA256)
        return CorpusFile("sample", SAMPLE_PATH, "fraction")
    if spec in REMOTE_CORPORA:
        base = os.environ.get(BASE_URL_ENV, DEFAULT_BASE_URL)
        path = fetch(REMOTE_CORPORA[spec], cache_dir or default_cache_dir(), base)
        return CorpusFile(spec, path, REMOTE_CORPORA[spec].split)
    if spec.startswith("file:"):
        path = Path(spec[len("file:"):]).expanduser()
        check_readable(path)
        return CorpusFile(spec, path, "fraction")
    known = ", ".join(["sample", *REMOTE_CORPORA, "file:PATH"])
    raise UserError(f"unknown corpus {spec!r}: expected one of {known}")


def at_hand(spec: str, cache_dir: Path | None = None) -> bool:
    """Whether `spec` can be read without a download: the sample, a file, or a corpus already
    in the cache (an unknown name is 'at hand' so that resolving it says what is wrong)."""
    if spec not in REMOTE_CORPORA:
        return True
    final = (cache_dir or default_cache_dir()) / REMOTE_CORPORA[spec].name
    return final.is_file() and final.stat().st_size == REMOTE_CORPORA[spec].size


def check_readable(path: Path) -> None:
    if not path.exists():
        raise UserError(f"data file {path} does not exist")
    if not path.is_file():
        raise UserError(f"data file {path} is not a regular file")
    try:
        with open(path, "rb") as f:
            first = f.read(1)
    except OSError as e:
        raise UserError(f"data file {path} cannot be read: {e.strerror}") from None
    if not first:
        raise UserError(f"data file {path} is empty")


def verify_sha256(path: Path, expected: str) -> None:
    check_readable(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != expected:
        raise UserError(f"{path} has sha256 {digest}, expected {expected}: the file is corrupt")


def fetch(corpus: RemoteCorpus, cache_dir: Path, base_url: str) -> Path:
    """Download, unpack and verify `corpus` into `cache_dir`; a second call is a cache hit."""
    final = cache_dir / corpus.name
    if final.exists() and final.stat().st_size == corpus.size:
        return final
    cache_dir.mkdir(parents=True, exist_ok=True)
    url = f"{base_url.rstrip('/')}/{corpus.zip_name}"
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".download-") as tmp:
        zip_path = Path(tmp) / corpus.zip_name
        _download(url, zip_path)
        unpacked = Path(tmp) / corpus.name
        _unpack_member(zip_path, corpus, unpacked, url)
        _check_digests(unpacked, corpus, url)
        os.replace(unpacked, final)  # atomic: a reader sees no file or the whole verified file
    return final


def _download(url: str, dest: Path) -> None:
    try:
        with urllib.request.urlopen(url, timeout=30) as response, open(dest, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {url}",
                      disable=None) as bar:
                received = 0
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            if total is not None and received != total:
                raise UserError(f"download of {url} was cut short ({received} of {total} bytes)")
    except urllib.error.HTTPError as e:
        raise UserError(f"download of {url} failed: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise UserError(f"download of {url} failed: {reason}") from None
    except ValueError as e:  # not a URL at all (a malformed $MULTITUDES_DATA_URL)
        raise UserError(f"download of {url} failed: {e} (is $MULTITUDES_DATA_URL a base URL "
                        f"such as https://host/path?)") from None


def safe_member_name(name: str) -> str:
    """Refuse zip member names that could escape the extraction directory."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise UserError(f"zip member {name!r} has an unsafe path; refusing to unpack it")
    return str(path)


def _unpack_member(zip_path: Path, corpus: RemoteCorpus, dest: Path, url: str) -> None:
    try:
        with zipfile.ZipFile(zip_path) as archive:
            names = {safe_member_name(info.filename): info for info in archive.infolist()}
            if corpus.member not in names:
                raise UserError(f"{url} does not contain {corpus.member!r} "
                                f"(found: {', '.join(sorted(names)) or 'nothing'})")
            with archive.open(names[corpus.member]) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
    except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile) as e:
        raise UserError(f"{url} is not a valid zip file (truncated or corrupt): {e}") from None
    except OSError as e:
        raise UserError(f"unpacking {url} failed: {e}") from None


def _check_digests(path: Path, corpus: RemoteCorpus, url: str) -> None:
    size = path.stat().st_size
    if size != corpus.size:
        raise UserError(f"{corpus.name} from {url} has {size} bytes, expected {corpus.size}")
    md5, sha1 = hashlib.md5(), hashlib.sha1()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            md5.update(chunk)
            sha1.update(chunk)
    if md5.hexdigest() != corpus.md5 or sha1.hexdigest() != corpus.sha1:
        raise UserError(f"{corpus.name} from {url} fails its checksum "
                        f"(md5 {md5.hexdigest()}, expected {corpus.md5})")
