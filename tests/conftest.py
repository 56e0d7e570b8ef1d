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
    raw = text.encode("utf-8", "surrogateescape")  # "\udcff" writes the byte 0xff: text that is not UTF-8
    target = path.with_name(path.name + suffix)
    target.write_bytes(COMPRESSORS[suffix](raw) if suffix else raw)
    return target


@pytest.fixture(scope="session")
def synthetic_graphs(tmp_path_factory) -> Path:
    """One graph store of generated traffic with attacks for the whole session (read only)."""
    return synthetic_store(tmp_path_factory.mktemp("synthetic"), seed=2)


def synthetic_store(root: Path, seed: int) -> Path:
    """A graph store of 4 s of generated traffic with attacks (default preprocessing); its folder."""
    from kdgat.core.config import resolve_config
    from kdgat.data.catalog import dataset_sources, load_catalog
    from kdgat.stages.graphs import run as run_graphs
    from kdgat.stages.ingest import run as run_ingest
    from kdgat.stages.synth import run as run_synth

    run_synth(root / "data" / "synthetic", seed=seed, duration_s=4)
    run_ingest(dataset_sources("synthetic", load_catalog()["synthetic"], root / "data"), root / "frames")
    run_graphs(root / "frames", root / "graphs", resolve_config("gat", "large").preprocessing)
    return root / "graphs"
