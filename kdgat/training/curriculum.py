"""Hard-sample curriculum for the GAT: VGAE-scored benign windows, a schedule that really changes.

Every epoch e trains on all attack windows plus the hardest benign ones, as
in the reference design (4.3): progress p = min(e / max_epochs, 1), benign
to attack ratio r = 1 + 9p, and only benign windows whose VGAE difficulty
(reconstruction error + 0.1 * ID cross-entropy) is at or above the
(75 + 20p)-th percentile are eligible, hardest first. The original computed
the epoch-0 sample once (its data loaders were never reloaded); here the
loader rebuilds the sample for every epoch.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch_geometric.data import Batch

from kdgat.data.batching import assemble_batch
from kdgat.data.store import GraphPart


def curriculum_indices(labels: np.ndarray, difficulty: np.ndarray, epoch: int, max_epochs: int) -> np.ndarray:
    """Graph indices of the epoch's sample (attacks + hardest eligible benign windows), unshuffled."""
    progress = min(epoch / max(max_epochs, 1), 1.0)
    ratio = 1.0 + 9.0 * progress
    attacks = np.flatnonzero(labels == 1)
    benign = np.flatnonzero(labels == 0)
    if len(benign) == 0:
        return attacks
    cut = np.percentile(difficulty[benign], 75.0 + 20.0 * progress)
    eligible = benign[difficulty[benign] >= cut]
    hardest_first = eligible[np.argsort(-difficulty[eligible], kind="stable")]
    take = min(int(len(attacks) * ratio), len(hardest_first)) if len(attacks) else len(hardest_first)
    return np.sort(np.concatenate((attacks, hardest_first[:take])))


class CurriculumLoader:
    """Batches of the epoch's curriculum sample, shuffled by (seed, epoch).

    Its length changes from epoch to epoch, so the trainer must reload it every
    epoch (``reload_dataloaders_every_n_epochs=1``).
    """

    def __init__(self, part: GraphPart, difficulty: np.ndarray, batch_size: int, max_epochs: int, seed: int = 0):
        self.part = part
        self.labels = np.asarray(part.y)
        self.difficulty = np.asarray(difficulty, dtype=np.float64)
        self.batch_size = int(batch_size)
        self.max_epochs = int(max_epochs)
        self.seed = int(seed)
        self.epoch = 0
        self.sampler = self  # Lightning calls loader.sampler.set_epoch(epoch)
        self.batch_sampler = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def indices(self, epoch: int | None = None) -> np.ndarray:
        epoch = self.epoch if epoch is None else epoch
        chosen = curriculum_indices(self.labels, self.difficulty, epoch, self.max_epochs)
        return chosen[np.random.default_rng([self.seed, epoch]).permutation(len(chosen))]

    def __len__(self) -> int:
        return -(-len(curriculum_indices(self.labels, self.difficulty, self.epoch, self.max_epochs)) // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        epoch = self.epoch
        order = self.indices(epoch)
        for start in range(0, len(order), self.batch_size):
            yield assemble_batch(self.part, order[start : start + self.batch_size])
        if self.epoch == epoch:
            self.epoch = epoch + 1
