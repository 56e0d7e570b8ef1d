"""Shared fixtures: the real captures beside the project, and small file builders."""

from __future__ import annotations

import bz2
import gzip
import lzma
from pathlib import Path

import pytest
import zstandard

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_root() -> Path:
    assert DATA.is_dir(), f"real captures expected in {DATA} (../shared/data beside the project)"
    return DATA


COMPRESSORS = {
    ".gz": gzip.compress,
    ".bz2": bz2.compress,
    ".xz": lzma.compress,
    ".zst": lambda b: zstandard.ZstdCompressor().compress(b),
}


def write_capture(path: Path, text: str, suffix: str = "") -> Path:
    """Write ``text`` to ``path`` + ``suffix``, compressed according to the suffix."""
    raw = text.encode()
    target = path.with_name(path.name + suffix)
    target.write_bytes(COMPRESSORS[suffix](raw) if suffix else raw)
    return target
