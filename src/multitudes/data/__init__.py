"""Bytes in: the corpora (bundled, downloaded and verified, or local) and the splits and batch
streams every member reads."""
