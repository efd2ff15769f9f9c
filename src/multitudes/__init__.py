"""multitudes: heterogeneous social training of byte-level language models."""

__version__ = "0.1.0"
