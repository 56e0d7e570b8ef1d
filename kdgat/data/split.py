"""Where a window goes: train/validation by contiguous time blocks of each training file, test parts by scenario.

Windows overlap when stride < window, so shuffling windows into train and validation would leak
frames across the split; whole time blocks go to one side instead, and a window straddling two
blocks is dropped.
"""

from __future__ import annotations

import hashlib

import numpy as np

from kdgat.core.schema import PreprocessingConfig


def part_name(split: str, scenario: str) -> str:
    """'test' + 'fuzzing' -> 'test__fuzzing'; a scenario already named after its split stays as is."""
    if scenario in (split, ""):
        return split
    return scenario if scenario.startswith(f"{split}_") else f"{split}__{scenario}"


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def block_split(
    n: int, starts: np.ndarray, window: int, cfg: PreprocessingConfig, key: str
) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation masks over ``starts`` from contiguous time blocks of one file.

    A window uses frames s .. s+W (its last transition's target included); it
    goes to the side whose block holds all of them, and is dropped if they
    straddle a block boundary, so no frame is shared between the two sides.
    """
    blocks = int(min(cfg.val_blocks, max(len(starts), 1)))
    if blocks < 2:
        return np.ones(len(starts), bool), np.zeros(len(starts), bool)
    edges = np.round(np.linspace(0, n, blocks + 1)).astype(np.int64)
    n_val = int(min(blocks - 1, max(1, round(blocks * cfg.val_fraction))))
    rng = np.random.default_rng([cfg.split_seed, _stable_int(key)])
    val_blocks = rng.choice(blocks, size=n_val, replace=False)
    last_frame = np.minimum(starts + window, n - 1)
    first_block = np.searchsorted(edges, starts, side="right") - 1
    last_block = np.searchsorted(edges, last_frame, side="right") - 1
    whole = first_block == last_block
    in_val = np.isin(first_block, val_blocks)
    return whole & ~in_val, whole & in_val
