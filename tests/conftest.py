import numpy as np
import pytest

from multitudes.config.genome import Genome


def tiny(family: str, **kw) -> Genome:
    """A genome small enough to train in milliseconds."""
    base = dict(family=family, d_model=32, n_layer=2, n_head=2, d_ff=64, context=32, lr=1e-2,
                warmup=0, seed=3)
    if family == "looped":
        base.update(n_layer=1, n_loop=2)
    base.update(kw)
    return Genome(**base)


def write_text_corpus(path):
    """A small corpus of real-looking bytes (not random: models can learn it) at `path`."""
    rng = np.random.default_rng(0)
    words = [b"the ", b"cat ", b"sat ", b"on ", b"a ", b"mat. ", b"[[link]] ", b"<page>\n"]
    path.write_bytes(b"".join(words[i] for i in rng.integers(len(words), size=20_000)))
    return path


@pytest.fixture
def text_file(tmp_path):
    return write_text_corpus(tmp_path / "corpus.txt")
