"""A Lightning ``LightningDataModule`` over a graph store (:mod:`kdgat.data.store`).

Loaders are :class:`kdgat.data.batching.GraphBatchLoader` (in-process, batches gathered from the
memory maps). The training loader reshuffles every epoch deterministically from (seed, epoch):
Lightning calls ``loader.sampler.set_epoch(epoch)`` at the start of each epoch, and
:meth:`GraphDataModule.train_dataloader` also sets the epoch from the attached trainer (or from
how many times it was called) so ``reload_dataloaders_every_n_epochs`` gives the same orders.
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import numpy as np

from kdgat.core.errors import KdgatError
from kdgat.data.batching import GraphBatchLoader
from kdgat.data.store import GraphPart, GraphStore, open_store

__all__ = ["GraphDataModule"]


class GraphDataModule(pl.LightningDataModule):
    """Train / val / per-scenario test loaders over the store at ``store_dir``.

    ``balanced``: class-balanced sampling with replacement for training instead of shuffling.
    ``eval_batch_size`` (default ``batch_size``) is used for validation and test.
    ``val_part=None``: no validation loader (an empty list).
    """

    def __init__(
        self,
        store_dir: str | Path,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        balanced: bool = False,
        seed: int = 0,
        val_part: str | None = "val",
        train_part: str = "train",
    ):
        super().__init__()
        if int(batch_size) < 1 or (eval_batch_size is not None and int(eval_batch_size) < 1):
            raise KdgatError(f"batch sizes must be >= 1, got {batch_size} / {eval_batch_size}")
        self.store_dir = Path(store_dir)
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size) if eval_batch_size is not None else self.batch_size
        self.balanced = bool(balanced)
        self.seed = int(seed)
        self.val_part = val_part
        self.train_part = train_part
        self._store: GraphStore | None = None
        self._train_calls = 0

    # -- store -----------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        store = self.store
        if stage in (None, "fit"):
            store.part(self.train_part)
        if stage in (None, "fit", "validate") and self.val_part is not None:
            store.part(self.val_part)

    @property
    def store(self) -> GraphStore:
        """The opened store (opened on first use, so sizes are known before ``setup``)."""
        if self._store is None:
            self._store = open_store(self.store_dir)
        return self._store

    @property
    def num_node_features(self) -> int:
        return self.store.num_node_features

    @property
    def num_edge_features(self) -> int:
        return self.store.num_edge_features

    @property
    def vocab_size(self) -> int:
        return self.store.vocab_size

    @property
    def test_part_names(self) -> list[str]:
        """Names of the test parts, in the order of :meth:`test_dataloader`'s loaders."""
        return sorted(self.store.test_parts())

    def class_counts(self, part: str | GraphPart | None = None) -> dict[int, int]:
        """Graph counts per label of ``part`` (default: the training part): {0: benign, 1: attack, -1: unknown}."""
        p = self.store.part(self.train_part if part is None else part) if not isinstance(part, GraphPart) else part
        y = np.asarray(p.y)
        return {label: int(np.count_nonzero(y == label)) for label in (0, 1, -1)}

    # -- loaders ---------------------------------------------------------------------------
    def _epoch_for_train_loader(self) -> int:
        trainer = getattr(self, "trainer", None)
        epoch = None
        if trainer is not None:
            try:
                epoch = int(trainer.current_epoch)
            except (AttributeError, RuntimeError, TypeError):
                epoch = None
        if epoch is None:
            epoch = self._train_calls
        self._train_calls += 1
        return epoch

    def train_dataloader(self) -> GraphBatchLoader:
        loader = GraphBatchLoader(
            self.store.part(self.train_part),
            self.batch_size,
            shuffle=not self.balanced,
            seed=self.seed,
            sampler="balanced" if self.balanced else None,
        )
        loader.set_epoch(self._epoch_for_train_loader())
        return loader

    def val_dataloader(self) -> GraphBatchLoader | list:
        if self.val_part is None:
            return []
        return GraphBatchLoader(self.store.part(self.val_part), self.eval_batch_size)

    def test_dataloader(self) -> list[GraphBatchLoader]:
        parts = self.store.test_parts()
        return [GraphBatchLoader(parts[name], self.eval_batch_size) for name in sorted(parts)]
