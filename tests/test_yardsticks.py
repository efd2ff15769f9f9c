"""The classical compressors as yardsticks: conditional code lengths, cached once."""

import json
import zlib

import numpy as np

from multitudes.evaluation import yardsticks


def test_text_seen_before_is_cheap_to_code():
    rng = np.random.default_rng(0)
    text = bytes(rng.integers(97, 123, size=4000, dtype=np.uint8))
    other = bytes(rng.integers(97, 123, size=4000, dtype=np.uint8))
    gzip = yardsticks.COMPRESSORS["gzip"]
    # random letters cost about log2(26) = 4.7 bits alone, nearly nothing once read before
    assert yardsticks.conditional_bpb(gzip, b"", text) > 4.5
    assert yardsticks.conditional_bpb(gzip, text, text) < 0.5
    assert yardsticks.conditional_bpb(gzip, other, text) > 4.5
    exact = 8 * (len(zlib.compress(other + text, 9)) - len(zlib.compress(other, 9))) / len(text)
    assert yardsticks.conditional_bpb(gzip, other, text) == exact


def test_every_compressor_is_measured_and_cached(tmp_path, monkeypatch):
    read, target = b"<page>the cat sat on the mat</page>\n" * 200, b"<page>the cat sat</page>\n" * 20
    first = yardsticks.cached(read, target, tmp_path)
    assert set(first) == {"gzip", "bzip2", "xz", "ppmd"}
    for value in first.values():
        assert 0 <= value["given"] < value["alone"]  # having read the text helps every one
    calls = []
    monkeypatch.setattr(yardsticks, "measure", lambda *a: calls.append(a))
    assert yardsticks.cached(read, target, tmp_path) == first and not calls  # a cache hit
    (cache,) = (tmp_path / "yardsticks").iterdir()
    assert json.loads(cache.read_text()) == first


def test_lines_name_the_bytes_given():
    ys = {"read_bytes": 1234, "test": {n: {"given": 2.0, "alone": 3.0}
                                       for n in yardsticks.COMPRESSORS}}
    text = "\n".join(yardsticks.lines(ys))
    assert "gzip -9" in text and "PPMd order 8" in text and "1,234 bytes" in text
