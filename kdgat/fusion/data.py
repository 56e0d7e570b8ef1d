"""What every fusion method sees and shares: the per-window data, the fused score, standardisation.

Each window has a 15-value state (VGAE 8 then GAT 7 values), a VGAE anomaly score squashed to
[0, 1], the GAT attack probability, a 0/1 label and whether it holds a novel CAN ID. Helpers here
keep every method deterministic for a given seed without touching the caller's RNG or thread count.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

STATE_DIM = 15
EPS = 1e-6


@dataclass
class FusionData:
    """What fusion sees of a set of windows (all arrays have n rows).

    Attributes:
        states: (n, 15) float32, VGAE 8 values then GAT 7 values.
        vgae_score: (n,) VGAE anomaly score squashed to [0, 1].
        gat_prob: (n,) GAT p(attack).
        labels: (n,) 0 = benign, 1 = attack.
        novel: (n,) bool, the window holds a CAN ID benign training traffic lacks (the VGAE says so;
            no fusion method learns from it: the ensemble's rule, :func:`kdgat.fusion.ensemble.ensemble_scores`).
            None: no window does.
    """

    states: np.ndarray
    vgae_score: np.ndarray
    gat_prob: np.ndarray
    labels: np.ndarray
    novel: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.states = np.ascontiguousarray(self.states, dtype=np.float32)
        self.vgae_score = np.ascontiguousarray(self.vgae_score, dtype=np.float32)
        self.gat_prob = np.ascontiguousarray(self.gat_prob, dtype=np.float32)
        self.labels = np.ascontiguousarray(self.labels, dtype=np.float32)
        n = len(self.states)
        self.novel = np.zeros(n, dtype=bool) if self.novel is None else np.ascontiguousarray(self.novel, dtype=bool)
        if self.states.ndim != 2:
            raise ValueError(f"states must be 2-D (n, {STATE_DIM}), got shape {self.states.shape}")
        for name in ("vgae_score", "gat_prob", "labels", "novel"):
            arr = getattr(self, name)
            if arr.shape != (n,):
                raise ValueError(f"{name} must have shape ({n},) like states, got {arr.shape}")
        if not np.all(np.isfinite(self.states)):
            raise ValueError("states contain NaN or inf")
        for name in ("vgae_score", "gat_prob"):
            arr = getattr(self, name)
            if not np.all((arr >= 0) & (arr <= 1)):
                raise ValueError(f"{name} must lie in [0, 1]")
        if not np.all((self.labels == 0) | (self.labels == 1)):
            raise ValueError("labels must contain only 0 (benign) and 1 (attack)")

    def __len__(self) -> int:
        return len(self.states)

    def take(self, mask: np.ndarray) -> FusionData:
        """The windows where ``mask`` is True."""
        return FusionData(self.states[mask], self.vgae_score[mask], self.gat_prob[mask], self.labels[mask],
                          self.novel[mask])  # fmt: skip

    @property
    def both_classes(self) -> bool:
        return bool(len(np.unique(self.labels)) == 2)


def fuse(alpha: np.ndarray | float, vgae_score: np.ndarray, gat_prob: np.ndarray) -> np.ndarray:
    """Fused score (1 - alpha)·vgae_score + alpha·gat_prob (alpha per window or one scalar)."""
    return ((1.0 - alpha) * vgae_score + alpha * gat_prob).astype(np.float32)


@contextmanager
def seeded_torch(seed: int) -> Iterator[None]:
    """Run a block with the CPU torch RNG seeded, restoring the caller's RNG state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@contextmanager
def num_threads(threads: int | None) -> Iterator[None]:
    """Run a block with ``threads`` torch intra-op threads (None: unchanged), then restore the count."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class Standardizer:
    """Per-column mean / std fitted on training states (std 0 -> 1)."""

    def __init__(self, dim: int = STATE_DIM):
        self.mean = np.zeros(dim, dtype=np.float32)
        self.std = np.ones(dim, dtype=np.float32)

    def fit(self, states: np.ndarray) -> None:
        self.mean = states.mean(axis=0, dtype=np.float64).astype(np.float32)
        std = states.std(axis=0, dtype=np.float64)
        self.std = np.where(std > EPS, std, 1.0).astype(np.float32)

    def __call__(self, states: np.ndarray) -> np.ndarray:
        states = np.asarray(states, dtype=np.float32)
        if states.ndim != 2 or states.shape[1] != len(self.mean):
            raise ValueError(f"states must have shape (n, {len(self.mean)}), got {states.shape}")
        return (states - self.mean) / self.std

    def state_dict(self) -> dict[str, Tensor]:
        return {"mean": torch.from_numpy(self.mean.copy()), "std": torch.from_numpy(self.std.copy())}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        mean = np.asarray(state["mean"], dtype=np.float32)
        std = np.asarray(state["std"], dtype=np.float32)
        if mean.shape != self.mean.shape or std.shape != self.std.shape:
            raise ValueError(f"standardizer shape {mean.shape} does not match state dim {self.mean.shape}")
        self.mean, self.std = mean, std


def policy_summary_of(alpha: np.ndarray, labels: np.ndarray, action_values: np.ndarray | None = None) -> dict[str, Any]:
    """alpha per window and its mean overall and by class, as plain Python values (JSON-ready)."""
    alpha = np.asarray(alpha, dtype=np.float64)

    def mean_of(mask: np.ndarray) -> float | None:
        return round(float(alpha[mask].mean()), 6) if mask.any() else None

    out: dict[str, Any] = {
        "n_windows": int(len(alpha)),
        "mean_alpha": mean_of(np.ones(len(alpha), dtype=bool)),
        "mean_alpha_by_class": {"benign": mean_of(labels == 0), "attack": mean_of(labels == 1)},
        "alpha": [round(float(a), 6) for a in alpha],
    }
    if action_values is not None:
        idx = np.abs(alpha[:, None] - action_values[None, :]).argmin(axis=1)
        counts = np.bincount(idx, minlength=len(action_values))
        out["action_counts"] = {f"{a:.4g}": int(c) for a, c in zip(action_values, counts, strict=True)}
    return out


def check_method(state: dict[str, Any], method: str) -> None:
    saved = state.get("method")
    if saved != method:
        raise ValueError(f"state dict is for fusion method {saved!r}, not {method!r}")
