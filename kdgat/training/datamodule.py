"""The Lightning ``LightningDataModule`` the train stage fits with: loaders over a graph store.

Loaders are :class:`kdgat.data.batching.GraphBatchLoader` (in-process, batches gathered from the
memory maps). ``labels`` says which windows a model learns from: the VGAE only benign ones (it
learns what normal traffic looks like), the GAT every labelled one. ``calibration_fraction`` keeps
every ``1 / fraction``-th of each training file's selected windows out of training (the VGAE's calibration
windows: statistics of a trained model measured on windows it did not fit). The training loader reshuffles
every epoch deterministically from (seed, epoch): Lightning calls ``loader.sampler.set_epoch(epoch)``
at the start of each epoch.
"""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np

from kdgat.core.errors import KdgatError
from kdgat.data.batching import GraphBatchLoader
from kdgat.data.split import every_nth
from kdgat.data.store import GraphPart, GraphStore

__all__ = ["GraphDataModule"]


class GraphDataModule(pl.LightningDataModule):
    """Train / validation / per-scenario test loaders over ``store``, restricted to graphs labelled ``labels``."""

    def __init__(
        self,
        store: GraphStore,
        batch_size: int,
        *,
        seed: int = 0,
        labels: tuple[int, ...] = (0, 1),
        calibration_fraction: float = 0.0,
    ):
        super().__init__()
        if int(batch_size) < 1:
            raise KdgatError(f"batch size must be >= 1, got {batch_size}")
        self.store = store
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.labels = tuple(labels)
        self.labelled_train_indices = self._select(store.part("train"))  # training and calibration windows
        self.train_indices, self.calibration_indices = self._cut(self.labelled_train_indices, calibration_fraction)
        self.val_indices = self._select(store.part("val"))
        wanted = "benign" if self.labels == (0,) else "labelled"
        for name, chosen in (("train", self.train_indices), ("val", self.val_indices)):
            if len(chosen) == 0:
                held_out_empty = name == "val" and store.part(name).num_graphs == 0
                hint = " (no window fits inside one held-out time block: a smaller window?)" if held_out_empty else ""
                raise KdgatError(f"{store.path}: no {wanted} graphs in its {name} part to learn from{hint}")

    def _select(self, part: GraphPart) -> np.ndarray:
        return np.flatnonzero(np.isin(np.asarray(part.y), self.labels))

    def _cut(self, indices: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
        """Training and calibration windows: every ``round(1 / fraction)``-th of each file's, spread over the whole
        file, less the training windows sharing a frame with one (a file of fewer windows keeps them all)."""
        if fraction <= 0:
            return indices, indices[:0]
        part = self.store.part("train")
        train, calibration = every_nth(
            np.asarray(part.file_index)[indices],
            np.asarray(part.window_start)[indices],
            int(self.store.metadata["window"]),
            max(2, round(1 / fraction)),
        )
        return indices[train], indices[calibration]

    def train_dataloader(self) -> GraphBatchLoader:
        part = self.store.part("train")
        return GraphBatchLoader(part, self.batch_size, shuffle=True, seed=self.seed, indices=self.train_indices)

    def train_dataloader_in_order(self, batch_size: int = 1024, *, which: str = "train") -> GraphBatchLoader:
        """The training windows once, in store order (for statistics, not for training): ``which`` is "train"
        (what the model trains on), "calibration" (the windows kept from it) or "all" (both)."""
        indices = {"train": self.train_indices, "calibration": self.calibration_indices,
                   "all": self.labelled_train_indices}[which]  # fmt: skip
        return GraphBatchLoader(self.store.part("train"), batch_size, indices=indices)

    def val_dataloader(self) -> GraphBatchLoader:
        return GraphBatchLoader(self.store.part("val"), self.batch_size, indices=self.val_indices)

    def test_dataloader(self) -> list[GraphBatchLoader]:
        parts = self.store.test_parts()
        return [GraphBatchLoader(parts[name], self.batch_size) for name in sorted(parts)]
