"""The benign-only classical yardstick: how far a window's vector lies from the benign training windows.

The VGAE learns benign traffic only and scores how abnormal a window is; the hgb yardstick needs
attack windows in training, so it is no fair comparison for the VGAE, and on an attack-free capture
(crysys) there is none. This model sees the same per-window vectors as hgb
(:mod:`kdgat.data.window_vectors`), fitted on the benign training windows only:

- ``zscore`` (default): per column, the benign mean and standard deviation (floored at ``std_floor``:
  a column constant in benign traffic would otherwise make any change infinitely abnormal); a
  window's score is the mean of its ``top_k`` largest absolute z-scores (an absent ID's timing and
  payload columns count 0: its ``present`` column says it is absent);
- ``iforest``: scikit-learn's IsolationForest on the same vectors, an absent ID's columns filled with
  the benign median; the score is ``-score_samples`` (higher = more isolated).
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import IsolationForest

from kdgat.core.schema import NoveltyConfig
from kdgat.data.store import GraphPart
from kdgat.models.window_model import WindowVectorModel


class WindowNovelty(WindowVectorModel):
    """Per-window anomaly score from benign column statistics (``zscore``) or an isolation forest."""

    def __init__(self, cfg: NoveltyConfig, vocab_size: int, node_features: list[str], seed: int = 0):
        super().__init__(vocab_size, node_features)
        self.method = cfg.method
        self.top_k = cfg.top_k
        self.std_floor = cfg.std_floor
        self.forest = (
            # n_jobs None: joblib's configuration decides (fit_window_model sizes it from --threads); the
            # trees do not depend on it (random_state)
            IsolationForest(n_estimators=cfg.trees, random_state=seed, n_jobs=None) if cfg.method == "iforest" else None
        )
        self.mean = self.std = None  # zscore: per kept column, set by fit
        self.fill = None  # iforest: the value of an absent ID's columns, per kept column

    def fit(self, part: GraphPart, indices: np.ndarray) -> WindowNovelty:
        """Fit on the windows ``indices`` of ``part`` (the benign training windows)."""
        if len(indices) == 0:
            raise ValueError("the novelty yardstick needs at least one benign window to fit on")
        x = self.fitting_vectors(part, indices).astype(np.float64)
        if self.forest is not None:
            self.fill = np.nanmedian(x, axis=0)
            self.forest.fit(self._filled(x))
        else:
            self.mean = np.nanmean(x, axis=0)
            self.std = np.maximum(np.nanstd(x, axis=0), self.std_floor)
        return self

    def _filled(self, x: np.ndarray) -> np.ndarray:
        return np.where(np.isnan(x), self.fill, x)

    def anomaly(self, part: GraphPart) -> np.ndarray:
        """Anomaly score per window of ``part`` (higher = less like the benign training windows)."""
        if part.num_graphs == 0:
            return np.zeros(0, np.float32)
        return self.score_vectors(self.vectors(part))

    def score_vectors(self, x: np.ndarray) -> np.ndarray:
        """:meth:`anomaly` of windows already turned into vectors (:meth:`vectors`)."""
        x = np.asarray(x, dtype=np.float64)
        if self.forest is not None:
            return (-self.forest.score_samples(self._filled(x))).astype(np.float32)
        z = np.nan_to_num(np.abs(x - self.mean) / self.std, nan=0.0)
        k = min(self.top_k, z.shape[1])
        return np.partition(z, z.shape[1] - k, axis=1)[:, -k:].mean(axis=1).astype(np.float32)

    @property
    def parameters(self) -> int:
        """What the model stores: two statistics per column, or the forest's tree nodes."""
        if self.forest is not None:
            return int(sum(tree.tree_.node_count for tree in self.forest.estimators_))
        return 2 * len(self.columns)
