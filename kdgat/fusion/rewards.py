"""Rewards of the DQN fusion agent: proper scoring rules of the fused score (vectorised over windows)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

RewardFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``reward_fn(fused, labels) -> rewards``: vectorised over windows, all arrays of shape (n,)."""


def brier_reward(fused: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Default reward r = 1 - (y - fused)^2, in [0, 1].

    One minus the Brier score: a strictly proper scoring rule of the fused score, so the action that
    maximises the expected reward is the fusion weight giving the most confident *correct* score (a
    detector that is right and sure gets weight 1, one that is noise weight 0).  It has no
    correct/incorrect bonus at a fixed 0.5 cut, no agreement term and no alpha term, which drove the
    original shaped reward into alpha ~ 0.5 / alpha -> 1 collapses (reference design 8, point 4).
    """
    return (1.0 - np.square(labels - fused)).astype(np.float32)


def log_reward(fused: np.ndarray, labels: np.ndarray, floor: float = 1e-3) -> np.ndarray:
    """Alternative reward: the log score log p(correct class), p clipped at ``floor`` (r in [log floor, 0]).

    Also strictly proper, but its gap between the best weight and a near-best one is first order in
    the weight difference where the Brier reward's is second order, so near-ties (the noisy detector
    happens to be nearly right) are resolved with far less training: on the toy of the tests the
    DQN reaches the obvious policy in ~15 episodes instead of ~100.  Pass it as ``reward_fn``.
    """
    p_correct = np.where(labels == 1, fused, 1.0 - fused)
    return np.log(np.clip(p_correct, floor, 1.0)).astype(np.float32)
