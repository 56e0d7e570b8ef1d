"""Fusion of the two frozen detectors per window: DQN agent and two baselines (reference design 3.5).

Each window has a 15-value state (VGAE 8: recon MSE, neighbourhood BCE, ID CE, z mean / std / max /
min, confidence 1/(1+recon); GAT 7: p(benign), p(attack), embedding mean / std / max / min,
confidence clip(1 - entropy/ln 2, 0, 1)), a VGAE anomaly score already squashed to [0, 1], the GAT
attack probability and a 0/1 label. A fusion method turns them into one **fused score** per window
("higher = more likely attack").

The decision is always that fused score against a threshold the caller chooses on validation
(:func:`kdgat.evaluation.metrics.choose_threshold`) and reuses unchanged on test.  Unlike the original study,
the fusion weight alpha is never the classifier (no ``alpha > 0.5`` rule, quirk 3.5 (a)).

Methods, all with ``fit(train, val) -> history`` and ``score(data) -> fused scores``:

- :class:`DQNFusion`: a Double-DQN agent choosing alpha in linspace(0, 1, 1/action_step + 1) per
  window; fused = (1 - alpha)·vgae_score + alpha·gat_prob.
- :class:`MLPFusion`: 15 -> 64 -> 32 -> 1 classifier on the state; fused = sigmoid(logit).
- :class:`WeightedFusion`: one global alpha = sigmoid(w) learned with BCE on the fused score.

Pure torch / numpy on CPU, no I/O and no logging: histories come back as dicts of plain Python
values.  Every method is deterministic for a given seed (the torch RNG is forked, so the caller's
global RNG state is left untouched).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch

from kdgat.core.schema import DQNConfig, FusionConfig
from kdgat.fusion.baselines import MLPFusion, WeightedFusion
from kdgat.fusion.data import STATE_DIM, FusionData, fuse
from kdgat.fusion.dqn import DQNFusion, FusionQNetwork, ReplayBuffer
from kdgat.fusion.rewards import RewardFn, brier_reward, log_reward

__all__ = [
    "STATE_DIM",
    "Fusion",
    "FusionData",
    "FusionQNetwork",
    "DQNFusion",
    "MLPFusion",
    "WeightedFusion",
    "ReplayBuffer",
    "RewardFn",
    "brier_reward",
    "log_reward",
    "fuse",
    "make_fusion",
    "trainable_parameters",
]


class Fusion(Protocol):
    """What every fusion method offers; ``policy_summary(data)`` too where it has weights alpha."""

    method: str

    def fit(self, train: FusionData, val: FusionData | None = None) -> dict[str, Any]: ...

    def score(self, data: FusionData) -> np.ndarray: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def make_fusion(
    method: str, dqn_cfg: DQNConfig, fusion_cfg: FusionConfig, seed: int = 0, reward_fn: RewardFn = brier_reward
) -> Fusion:
    """The fusion method named ``method`` (dqn | mlp | weighted); the MLP uses ``dqn_cfg.batch_size``."""
    if method == "dqn":
        return DQNFusion(dqn_cfg, seed, reward_fn=reward_fn)
    if method == "mlp":
        return MLPFusion(fusion_cfg, seed, batch_size=dqn_cfg.batch_size)
    if method == "weighted":
        return WeightedFusion(fusion_cfg, seed)
    raise ValueError(f"unknown fusion method {method!r} (choose from: dqn, mlp, weighted)")


def trainable_parameters(fusion: Fusion) -> int:
    """Learned weights of a fusion method (its network, or the single weight), not its buffers."""
    for name in ("q_net", "net"):
        module = getattr(fusion, name, None)
        if isinstance(module, torch.nn.Module):
            return sum(p.numel() for p in module.parameters())
    weight = getattr(fusion, "w", None)
    return int(weight.numel()) if isinstance(weight, torch.Tensor) else 0
