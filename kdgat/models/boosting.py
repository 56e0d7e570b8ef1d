"""The classical yardstick: gradient-boosted trees on per-window vectors (scikit-learn's HistGradientBoosting).

Every GNN result is read against it (detection notes: such a model on per-window timing and
payload features is what the graph models must beat). It sees the same graph store through
:func:`kdgat.data.window_vectors.window_vectors`, so both are trained, selected and scored on the
same windows.
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier

from kdgat.core.schema import HGBConfig
from kdgat.data.store import GraphPart
from kdgat.models.window_model import WindowVectorModel


class WindowBoosting(WindowVectorModel):
    """A fitted classifier plus what it needs to turn a store part into its input."""

    def __init__(self, cfg: HGBConfig, vocab_size: int, node_features: list[str], seed: int = 0):
        super().__init__(vocab_size, node_features)
        self.estimator = HistGradientBoostingClassifier(
            max_iter=cfg.max_iter,
            learning_rate=cfg.learning_rate,
            max_leaf_nodes=cfg.max_leaf_nodes,
            min_samples_leaf=cfg.min_samples_leaf,
            l2_regularization=cfg.l2_regularization,
            class_weight="balanced" if cfg.balanced else None,
            early_stopping=False,  # its own early stopping splits windows at random: overlapping ones leak
            random_state=seed,
        )

    def fit(self, part: GraphPart, indices: np.ndarray) -> WindowBoosting:
        """Fit on the windows ``indices`` of ``part``, without the columns that hold no value in any of them
        (scikit-learn 1.9 cannot bin an all-NaN column, and it could never be split on)."""
        self.estimator.fit(self.fitting_vectors(part, indices), np.asarray(part.y)[indices].astype(np.int64))
        return self

    def p_attack(self, part: GraphPart) -> np.ndarray:
        """Probability of the attack class per window of ``part``."""
        if part.num_graphs == 0:
            return np.zeros(0, np.float32)
        return self.estimator.predict_proba(self.vectors(part))[:, 1].astype(np.float32)

    @property
    def parameters(self) -> int:
        """Tree nodes over every boosting iteration (what the model stores, compared with GNN weights)."""
        return int(sum(tree.nodes.size for stage in self.estimator._predictors for tree in stage))
