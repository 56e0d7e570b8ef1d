"""CAN-ID vocabulary: training IDs -> dense indices, everything else -> OOV.

Built from the training split only (the original study once grew it at test
time and crashed on unseen IDs). 11- and 29-bit identifiers are different
keys. IDs seen fewer than ``min_count`` times in training also map to OOV:
a once-seen ID behaves like an unseen one (detection notes, point 3).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EXTENDED_BIT = np.uint64(1 << 32)


def id_keys(can_id: np.ndarray, is_extended: np.ndarray) -> np.ndarray:
    """One integer per (identifier, frame format) pair."""
    return can_id.astype(np.uint64) | (is_extended.astype(np.uint64) * EXTENDED_BIT)


@dataclass(frozen=True)
class Vocabulary:
    keys: np.ndarray  # sorted unique id_keys of the training IDs; index i <-> keys[i]
    min_count: int = 1

    @property
    def oov_index(self) -> int:
        return len(self.keys)

    @property
    def size(self) -> int:
        """Embedding rows needed: every known ID plus the OOV row."""
        return len(self.keys) + 1

    @classmethod
    def from_counts(cls, keys: np.ndarray, counts: np.ndarray, min_count: int = 1) -> "Vocabulary":
        keep = counts >= min_count
        return cls(keys=np.sort(keys[keep]).astype(np.uint64), min_count=min_count)

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Vocabulary index of each key (OOV for unknown ones); never raises."""
        if len(self.keys) == 0:
            return np.full(len(keys), self.oov_index, dtype=np.int64)
        pos = np.searchsorted(self.keys, keys)
        pos_clipped = np.minimum(pos, len(self.keys) - 1)
        found = self.keys[pos_clipped] == keys
        return np.where(found, pos_clipped, self.oov_index).astype(np.int64)

    def to_json(self) -> dict:
        ids = [{"can_id": int(k & np.uint64(0xFFFFFFFF)), "extended": bool(k & EXTENDED_BIT)} for k in self.keys]
        return {"min_count": self.min_count, "oov_index": self.oov_index, "ids": ids}

    @classmethod
    def from_json(cls, data: dict) -> "Vocabulary":
        keys = np.array(
            [np.uint64(item["can_id"]) | (EXTENDED_BIT if item["extended"] else np.uint64(0)) for item in data["ids"]],
            dtype=np.uint64,
        )
        return cls(keys=np.sort(keys), min_count=int(data.get("min_count", 1)))


def count_keys(key_arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Unique keys and their frame counts over several arrays."""
    if not key_arrays:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    keys, counts = np.unique(np.concatenate(key_arrays), return_counts=True)
    return keys, counts
