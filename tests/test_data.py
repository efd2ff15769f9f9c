import numpy as np
import pytest

from multitudes.corpora import resolve
from multitudes.data import BatchStream, load_splits, split_bounds


def test_split_rules():
    assert split_bounds(100, "fraction") == {"train": (0, 90), "valid": (90, 95),
                                             "test": (95, 100)}
    b = split_bounds(10**8, "tail10M")
    assert b == {"train": (0, 90_000_000), "valid": (90_000_000, 95_000_000),
                 "test": (95_000_000, 100_000_000)}
    assert split_bounds(10**9, "tail10M")["valid"] == (990_000_000, 995_000_000)


def test_sample_splits_are_views_in_file_order():
    s = load_splits(resolve("sample"))
    assert [len(s[k]) for k in ("train", "valid", "test")] == [3_272_434, 181_802, 181_802]
    assert bytes(s["train"][:11]) == b"<mediawiki "


def test_stream_is_seeded_and_resumable():
    data = np.frombuffer(bytes(range(256)) * 50, dtype=np.uint8)
    a = BatchStream(data, 4, 16, seed=7)
    first = [a.next() for _ in range(30)]
    b = BatchStream(data, 4, 16, seed=7)
    for _ in range(11):
        b.next()
    c = BatchStream(data, 4, 16, seed=7)
    c.load_state_dict(b.state_dict())
    assert all((x == y).all() for x, y in zip(first[11:], [c.next() for _ in range(19)]))
    d = BatchStream(data, 4, 16, seed=8)
    assert not (d.next() == first[0]).all()


def test_an_epoch_reads_every_window_once():
    data = np.arange(16 * 40 + 1, dtype=np.uint8)
    stream = BatchStream(data, 5, 16, seed=0)
    starts = np.concatenate([stream.next_starts() for _ in range(7)])  # 35 of 40-ish windows
    assert len(set(starts.tolist())) == 35
    assert len(set((starts - starts[0]) % 16)) == 1  # one alignment per epoch


def test_too_short_data_is_refused():
    with pytest.raises(ValueError, match="too short"):
        BatchStream(np.zeros(10, dtype=np.uint8), 2, 16, seed=0)
