import numpy as np
import pytest

from multitudes.data.corpora import resolve
from multitudes.data.splits import BatchStream, LaneStream, load_splits, split_bounds


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


def test_lanes_are_read_in_order_and_say_when_they_continue():
    data = np.arange(4 * 40 + 1, dtype=np.int64).astype(np.uint8)
    stream = LaneStream(data, 4, 8)  # lanes of 40 bytes: 5 windows each
    first = stream.next()
    assert not stream.continues and first[:, 0].tolist() == [0, 40, 80, 120]
    second = stream.next()
    assert stream.continues and (second[:, 0] == first[:, -1]).all()  # each lane goes on
    for _ in range(3):
        stream.next()
    assert stream.state.epoch == 1
    again = stream.next()
    assert not stream.continues and (again == first).all()  # a new epoch starts afresh
    resumed = LaneStream(data, 4, 8)
    resumed.load_state_dict(stream.state_dict())
    assert (resumed.next() == stream.next()).all() and resumed.continues and stream.continues


def test_dealt_bytes_are_what_the_stream_reads():
    data = np.frombuffer(bytes(range(256)) * 10, dtype=np.uint8)
    lanes = LaneStream(data, 4, 16)
    batches = [lanes.next() for _ in range(3)]
    read = lanes.dealt_bytes(3 * 4 * 16)
    assert len(read) == 3 * 4 * 16
    per_lane = [b"".join(bytes(b[row, 1:].numpy().astype(np.uint8)) for b in batches)
                for row in range(4)]
    assert read == b"".join(per_lane)
    windows = BatchStream(data, 4, 16, seed=3)
    dealt = windows.dealt_bytes(2 * 64)
    got = b"".join(bytes(row[1:].numpy().astype(np.uint8)) for b in (windows.next(),
                                                                       windows.next())
                   for row in b)
    assert dealt == got
    assert windows.dealt_bytes(10**9) == bytes(data)  # past one epoch: the whole split


def test_the_unique_sample_is_spread_over_the_split_and_nested():
    """U bytes in 16 equal pieces at evenly spaced starts; 2U holds U (each piece grows in
    place), so the points of a data-scaling curve read more of the same places."""
    from multitudes.data.splits import unique_sample
    train = np.arange(160_000, dtype=np.int64) % 251
    one, two = unique_sample(train, 1600), unique_sample(train, 3200)
    assert len(one) == 1600 and len(two) == 3200
    starts = [i * 10_000 for i in range(16)]
    assert [int(x) for x in one[::100]] == [int(train[s]) for s in starts]
    for i in range(16):  # piece i of U is the head of piece i of 2U
        assert (two[i * 200:i * 200 + 100] == one[i * 100:(i + 1) * 100]).all()
    assert (unique_sample(train, len(train)) == train).all()
