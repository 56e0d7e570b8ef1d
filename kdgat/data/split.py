"""Where a window goes: train, validation and fusion by contiguous time blocks of each training file.

Windows overlap when stride < window, so shuffling windows into train and validation would leak
frames across the split; whole time blocks go to one side instead, and a window straddling two
blocks is dropped. The held-out blocks are shared between two parts: ``fusion`` (what the fusion of
two trained models is fitted on: windows neither model trained on) and ``val`` (where every model,
fusions included, is selected and gets its threshold: windows no fitted thing has seen).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from kdgat.core.schema import PreprocessingConfig

FUSION_PART = "fusion"  # the held-out windows the fusion is fitted on
# why a store's fusions cannot be fitted: said by `kdgat fuse` on the windows, by the pipeline (and
# workflows/kdgat.nf) from the graph manifest as soon as the graphs are built
NO_FUSION_PART = f"no '{FUSION_PART}' part (a store of an older kdgat); rebuild it with `kdgat graphs`"
ONE_CLASS_FUSION_PART = (
    f"its '{FUSION_PART}' part (held-out blocks of the training captures) lacks attack or benign windows, so the "
    "fusions cannot be fitted; raise preprocessing.val_blocks or val_fraction"
)


def part_name(split: str, scenario: str) -> str:
    """'test' + 'fuzzing' -> 'test__fuzzing'; a scenario already named after its split stays as is."""
    if scenario in (split, ""):
        return split
    return scenario if scenario.startswith(f"{split}_") else f"{split}__{scenario}"


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def _attack_blocks(labels: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Indices of the blocks holding at least one attack frame."""
    attacks = np.flatnonzero(np.asarray(labels) > 0)
    return np.unique(np.searchsorted(edges, attacks, side="right") - 1).astype(np.int64)


@dataclass(frozen=True)
class BlockSplit:
    """One training file cut into contiguous time blocks, some of which go to validation."""

    edges: np.ndarray  # frame index where each block starts, plus the file length
    val_blocks: np.ndarray  # indices of the validation blocks (the threshold half)
    fusion_blocks: np.ndarray  # indices of the held-out blocks the fusion is fitted on

    @classmethod
    def of_file(
        cls,
        n: int,
        n_windows: int,
        cfg: PreprocessingConfig,
        key: str,
        labels: np.ndarray | None = None,
        attack_to_val: bool = True,
    ) -> BlockSplit:
        """The split of a file of ``n`` frames and ``n_windows`` windows (seeded by ``key``, the file's name).

        With ``cfg.held_out_attacks`` and frame ``labels``, a file whose attacks lie in a few blocks
        still holds some of them out (and keeps at least one for training): validation then measures
        what the models learnt from that file. The first held-out attack block goes to validation when
        ``attack_to_val``, to the fusion part otherwise (the graph stage alternates it across files).
        """
        blocks = int(min(cfg.val_blocks, max(n_windows, 1)))
        edges = np.round(np.linspace(0, n, blocks + 1)).astype(np.int64)
        none = np.zeros(0, np.int64)
        if blocks < 2:
            return cls(edges, none, none)
        n_held = int(min(blocks - 1, max(1, round(blocks * cfg.val_fraction))))
        rng = np.random.default_rng([cfg.split_seed, _stable_int(key)])
        attack = _attack_blocks(labels, edges) if cfg.held_out_attacks and labels is not None else none
        n_fusion = n_held // 2  # half of the held-out blocks (rounded down) fit the fusion, the rest validate
        if len(attack) < 2 or len(attack) == blocks:
            held = rng.choice(blocks, size=n_held, replace=False)
            return cls(edges, np.sort(held[n_fusion:]), np.sort(held[:n_fusion]))
        k = int(min(len(attack) - 1, n_held, max(1, round(n_held * len(attack) / blocks))))
        held_attack = rng.choice(attack, size=k, replace=False)
        clean = np.setdiff1d(np.arange(blocks), attack)
        held_clean = rng.choice(clean, size=min(len(clean), n_held - k), replace=False)
        # attack blocks alternate between the two halves, starting with the one asked for
        val, fusion = [], []
        for i, block in enumerate(held_attack):
            (val if (i % 2 == 0) == attack_to_val else fusion).append(int(block))
        for block in held_clean:
            (fusion if len(fusion) < n_fusion else val).append(int(block))
        return cls(edges, np.sort(np.array(val, np.int64)), np.sort(np.array(fusion, np.int64)))

    def block_of(self, frames: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.edges, frames, side="right") - 1

    @property
    def held_out(self) -> np.ndarray:
        return np.concatenate((self.val_blocks, self.fusion_blocks))

    def training_segments(self) -> np.ndarray:
        """Per frame, which run of consecutive training blocks it lies in (-1 in a validation block).

        What vocabulary and periods may be fitted on: frames with a segment, and gaps between two
        frames of the same segment (a gap across a validation block would carry its timing).
        """
        blocks = self.block_of(np.arange(self.edges[-1]))
        is_val = np.zeros(len(self.edges) - 1, bool)
        is_val[self.held_out] = True
        segment = np.cumsum(is_val)[blocks]
        return np.where(is_val[blocks], -1, segment)

    def window_masks(self, starts: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Train, validation and fusion masks over ``starts``.

        A window uses frames s .. s+W (its last transition's target included); it goes to the side
        whose block holds all of them, and is dropped if they straddle a block boundary, so no frame
        is shared between two sides.
        """
        n = int(self.edges[-1])
        first_block = self.block_of(starts)
        last_block = self.block_of(np.minimum(starts + window, n - 1))
        whole = first_block == last_block
        in_val = np.isin(first_block, self.val_blocks)
        in_fusion = np.isin(first_block, self.fusion_blocks)
        return whole & ~in_val & ~in_fusion, whole & in_val, whole & in_fusion
