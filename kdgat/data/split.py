"""Where a window goes: train, validation and fusion by contiguous time blocks of each training file.

Windows overlap when stride < window, so shuffling windows into train and validation would leak
frames across the split; whole time blocks go to one side instead, and a window straddling two
blocks is dropped. The held-out blocks are shared between two parts: ``fusion`` (what the fusion of
two trained models is fitted on: windows neither model trained on) and ``val`` (where every model,
fusions included, is selected and gets its threshold: windows no fitted thing has seen).

A one-trace dataset (DAGA, CrySyS: every file is one recording with frames inserted or modified)
cannot be split per file: the validation block of one file is a training block of another, and
the test files are the training trace again. :class:`TraceSplit` cuts the recording's time axis
once, for every file: validation, fusion and **test** blocks are the same seconds in all of them,
no file trains on them, and a test file is scored in its test blocks only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from kdgat.core.errors import ConfigError
from kdgat.core.schema import PreprocessingConfig

FUSION_PART = "fusion"  # the held-out windows the fusion is fitted on
# why a store's fusions cannot be fitted: said by `kdgat fuse` on the windows, by the pipeline (and
# workflows/kdgat.nf) from the graph manifest as soon as the graphs are built
NO_FUSION_PART = f"no '{FUSION_PART}' part (a store of an older kdgat); rebuild it with `kdgat graphs`"
# the way out when a held-out part has no window (too few held-out blocks, or blocks shorter than a window): said by
# `kdgat graphs` for val and fusion, and by fuse and the pipeline for fusion
HELD_OUT_BLOCKS_ADVICE = (
    "raise preprocessing.val_blocks or val_fraction until that product is 2 or more, or lower "
    "preprocessing.window where a block is shorter than a window"
)
EMPTY_FUSION_PART = (
    f"its '{FUSION_PART}' part holds no window, so the fusions cannot be fitted: it gets half (rounded down) of the "
    "round(val_blocks x val_fraction) held-out time blocks of each training file, and only the windows that fit "
    f"inside one; {HELD_OUT_BLOCKS_ADVICE}"
)
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


def _held_count(blocks: int, cfg: PreprocessingConfig) -> int:
    return int(min(blocks - 1, max(1, round(blocks * cfg.val_fraction))))


def _held_out(
    candidates: np.ndarray, attack: np.ndarray, n_held: int, rng: np.random.Generator, attack_to_val: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Validation and fusion blocks: ``n_held`` of ``candidates``, half (rounded down) for the fusion.

    When only some candidates hold attacks (``attack``), some of those are held out and one at least stays
    for training; the attack blocks alternate between the halves, starting with validation when
    ``attack_to_val``.
    """
    attack = np.intersect1d(attack, candidates)
    n_fusion = n_held // 2
    if len(attack) < 2 or len(attack) == len(candidates):
        held = rng.choice(candidates, size=n_held, replace=False)
        return np.sort(held[n_fusion:]), np.sort(held[:n_fusion])
    k = int(min(len(attack) - 1, n_held, max(1, round(n_held * len(attack) / len(candidates)))))
    held_attack = rng.choice(attack, size=k, replace=False)
    clean = np.setdiff1d(candidates, attack)
    held_clean = rng.choice(clean, size=min(len(clean), n_held - k), replace=False)
    val, fusion = [], []
    for i, block in enumerate(held_attack):
        (val if (i % 2 == 0) == attack_to_val else fusion).append(int(block))
    for block in held_clean:
        (fusion if len(fusion) < n_fusion else val).append(int(block))
    return np.sort(np.array(val, np.int64)), np.sort(np.array(fusion, np.int64))


def _in_file_order(file_index: np.ndarray, window_start: np.ndarray):
    """Windows sorted by (file, position): the order, the sorted starts and files, each window's rank in its file,
    and per file its first sorted position and its count."""
    order = np.lexsort((window_start, file_index))
    files, starts = file_index[order], window_start[order]
    _, first, counts = np.unique(files, return_index=True, return_counts=True)
    rank = np.arange(len(order)) - np.repeat(first, counts)
    return order, starts, files, rank, first, counts


def _unsorted(order: np.ndarray, *sorted_masks: np.ndarray) -> tuple[np.ndarray, ...]:
    out = []
    for mask in sorted_masks:
        back = np.empty(len(order), dtype=bool)
        back[order] = mask
        out.append(back)
    return tuple(out)


def every_nth(
    file_index: np.ndarray, window_start: np.ndarray, window: int, every: int
) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the kept and the held windows: each file's ``every``-th window (by position, the last of each run of
    ``every``) is held, and a kept window sharing a frame with a held one (frames s .. s+W: one W or fewer frames
    before or after it) is in neither.

    Held windows spread over the whole file, so what is fitted on the kept ones still sees every stretch of the
    recording (a held-out end of each file took a whole driving phase from the VGAE: measured in docs/results.md).
    """
    order, starts, files, rank, _, _ = _in_file_order(np.asarray(file_index), np.asarray(window_start))
    held = rank % int(every) == int(every) - 1
    # each window's nearest held window before and after it (by sorted position; -1 / n where none)
    positions = np.arange(len(order))
    before = np.maximum.accumulate(np.where(held, positions, -1))
    after = np.minimum.accumulate(np.where(held, positions, len(order))[::-1])[::-1]
    near = np.zeros(len(order), dtype=bool)
    for other, has in ((before, before >= 0), (after, after < len(order))):
        mine, theirs = positions[has], other[has]
        # windows use frames s .. s+W (BlockSplit.window_masks): two starts W or fewer frames apart share one
        near[mine] |= (files[theirs] == files[mine]) & (np.abs(starts[theirs] - starts[mine]) <= int(window))
    return _unsorted(order, ~held & ~near, held)


def fusion_halves(file_index: np.ndarray, window_start: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the fit and selection windows: the earlier and the later half of each file's windows.

    The fusion is fitted on the earlier half of the fusion part and its best epoch and fallback to a member
    are chosen on the later half: windows it did not fit (in-sample, a fusion beat its members on windows it
    had fitted and lost to them on new ones). Halves in time, not shuffled windows, so no benign stretch of a
    file is on both sides (odd counts: the later half has the extra window); a later window that shares a
    frame with the file's last earlier one is in neither, as the parts themselves drop windows that straddle
    two blocks. A window uses frames s .. s+W (its last transition's target), so at stride = window the first
    later window, which starts on that frame, is dropped too.
    """
    order, starts, _, rank, first, counts = _in_file_order(np.asarray(file_index), np.asarray(window_start))
    n_fit = counts // 2
    fit = rank < np.repeat(n_fit, counts)
    has_fit = n_fit > 0
    last = np.zeros(len(counts), dtype=np.int64)  # each file's last fit window start (a file without one: unused)
    last[has_fit] = starts[(first + n_fit - 1)[has_fit]]
    clear = ~np.repeat(has_fit, counts) | (starts > np.repeat(last, counts) + int(window))
    return _unsorted(order, fit, ~fit & clear)


@dataclass(frozen=True)
class BlockSplit:
    """One file cut into contiguous time blocks, some of which go to validation (and, in a one-trace
    dataset, to test: :class:`TraceSplit`)."""

    edges: np.ndarray  # frame index where each block starts, plus the file length
    val_blocks: np.ndarray  # indices of the validation blocks (the threshold half)
    fusion_blocks: np.ndarray  # indices of the held-out blocks the fusion is fitted on
    test_blocks: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # one-trace datasets only

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
        rng = np.random.default_rng([cfg.split_seed, _stable_int(key)])
        attack = _attack_blocks(labels, edges) if cfg.held_out_attacks and labels is not None else none
        val, fusion = _held_out(np.arange(blocks), attack, _held_count(blocks, cfg), rng, attack_to_val)
        return cls(edges, val, fusion)

    def block_of(self, frames: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.edges, frames, side="right") - 1

    @property
    def held_out(self) -> np.ndarray:
        """Blocks no model trains on and nothing is fitted on: validation, fusion and test."""
        return np.concatenate(self.held_parts)

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

    def window_masks(self, starts: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Train, validation, fusion and test masks over ``starts`` (test: one-trace datasets only).

        A window uses frames s .. s+W (its last transition's target included); it goes to the side
        whose block holds all of them, and is in no mask if they straddle a block boundary, so no frame
        is shared between two sides.
        """
        n = int(self.edges[-1])
        first_block = self.block_of(starts)
        whole = first_block == self.block_of(np.minimum(starts + window, n - 1))
        in_val, in_fusion, in_test = (whole & np.isin(first_block, b) for b in self.held_parts)
        return whole & ~in_val & ~in_fusion & ~in_test, in_val, in_fusion, in_test

    @property
    def held_parts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.val_blocks, self.fusion_blocks, self.test_blocks


@dataclass(frozen=True)
class TraceSplit:
    """The blocks of a one-trace dataset: its recording's time axis cut once, shared by every file.

    Test blocks are chosen first: ``val_fraction`` of the blocks, and among them, for every test file whose
    attacks lie in some blocks only, one of those (one not holding training attacks where it can), so every
    scenario keeps attack windows and training keeps its own; then validation and fusion blocks among the
    rest (at least one each) as :meth:`BlockSplit.of_file` chooses them, from where the training files'
    attacks lie. Seeded by ``split_seed`` only: one split per dataset.
    """

    time_edges: np.ndarray  # seconds where each block starts, plus the end of the recording
    val_blocks: np.ndarray
    fusion_blocks: np.ndarray
    test_blocks: np.ndarray

    @classmethod
    def choose(
        cls,
        start: float,
        end: float,
        cfg: PreprocessingConfig,
        train_attacks: np.ndarray,
        test_attacks: list[np.ndarray],
    ) -> TraceSplit:
        """``train_attacks``: timestamps of the training files' attack frames; ``test_attacks``: those of each
        test file."""
        blocks = int(cfg.val_blocks)
        n_test, n_held = _held_count(blocks, cfg), max(2, _held_count(blocks, cfg))
        time_edges = np.linspace(start, end, blocks + 1)
        time_edges[-1] = np.nextafter(end, np.inf)  # the last frame lies inside the last block

        def blocks_of(times: np.ndarray) -> np.ndarray:
            return np.unique(np.clip(np.searchsorted(time_edges, times, side="right") - 1, 0, blocks - 1))

        rng = np.random.default_rng([cfg.split_seed, _stable_int("one trace")])
        everything = np.arange(blocks)
        train_attack = blocks_of(train_attacks) if cfg.held_out_attacks else np.zeros(0, np.int64)
        own = [b for b in map(blocks_of, test_attacks) if 0 < len(b) < blocks]  # scenarios with a few attack blocks
        test: list[int] = []
        for attack in own:
            if np.isin(attack, test).any():
                continue
            spare = np.setdiff1d(attack, train_attack)
            test.append(int(rng.choice(spare if len(spare) else attack, size=1, replace=False)[0]))
        clean = np.setdiff1d(everything, np.concatenate([*own, test]))
        pool = clean if len(clean) >= n_test - len(test) else np.setdiff1d(everything, test)
        if n_test > len(test):
            test.extend(rng.choice(pool, size=n_test - len(test), replace=False).tolist())
        rest = np.setdiff1d(everything, test)
        if len(rest) < n_held + 1:
            raise ConfigError(
                f"a one-trace dataset needs more than preprocessing.val_blocks={blocks}: {len(test)} test, "
                f"{n_held} validation and fusion blocks and one to train on"
            )
        val, fusion = _held_out(rest, train_attack, n_held, rng, True)
        return cls(time_edges, val, fusion, np.sort(np.array(test, np.int64)))

    def of_file(self, timestamps: np.ndarray) -> BlockSplit:
        """The split of one file of the recording, in frame indices (its timestamps in time order)."""
        edges = np.searchsorted(timestamps, self.time_edges, side="left").astype(np.int64)
        edges[-1] = len(timestamps)
        return BlockSplit(edges, self.val_blocks, self.fusion_blocks, self.test_blocks)
