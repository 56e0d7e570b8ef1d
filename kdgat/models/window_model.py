"""What the classical yardsticks share: a store part in, one row per window out (:mod:`kdgat.data.window_vectors`).

Both are fitted on the windows of a store's training part and drop, at fit and at every later
scoring, the columns that hold no value in any of the windows they were fitted on (an ID absent from
every one of them leaves its timing and payload columns all NaN).
"""

from __future__ import annotations

import numpy as np

from kdgat.data.store import GraphPart
from kdgat.data.window_vectors import window_vectors


class WindowVectorModel:
    """A fitted scikit-learn or NumPy model over the window vectors of a store with ``vocab_size`` IDs."""

    def __init__(self, vocab_size: int, node_features: list[str]):
        self.vocab_size = int(vocab_size)
        self.node_features = list(node_features)
        self.columns: list[str] = []  # the columns the model sees
        self.keep: np.ndarray | None = None  # which window_vectors columns they are (set by fit)

    def vectors(self, part: GraphPart) -> np.ndarray:
        """The window vectors of ``part`` on the columns the model was fitted on."""
        x, _names = window_vectors(part, self.vocab_size, self.node_features)
        keep = getattr(self, "keep", None)  # None: an hgb model pickled before columns were dropped
        return x if keep is None else x[:, keep]

    def fitting_vectors(self, part: GraphPart, indices: np.ndarray) -> np.ndarray:
        """The vectors of the windows ``indices``, without (and from now on without) their all-NaN columns."""
        x, names = window_vectors(part, self.vocab_size, self.node_features)
        x = x[indices]
        self.keep = ~np.isnan(x).all(axis=0)
        self.columns = np.asarray(names)[self.keep].tolist()
        return x[:, self.keep]
