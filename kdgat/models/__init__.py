"""The GNN models: :class:`GATJK` (classifier) and :class:`VGAE` (anomaly scorer), and a factory."""

from __future__ import annotations

from typing import Literal

from torch import nn

from kdgat.core.schema import GATConfig, VGAEConfig
from kdgat.models.gat import GATJK
from kdgat.models.vgae import VGAE

__all__ = ["GATJK", "VGAE", "build_model", "MODEL_KINDS"]

MODEL_KINDS = {"gat": (GATJK, GATConfig), "vgae": (VGAE, VGAEConfig)}


def build_model(
    kind: Literal["gat", "vgae"],
    num_ids: int,
    cfg_section: GATConfig | VGAEConfig,
    num_features: int = 11,
    feature_stats: dict | None = None,
) -> nn.Module:
    """The model ``kind`` for a vocabulary of ``num_ids`` from its config section (``cfg.gat`` / ``cfg.vgae``).

    ``feature_stats`` (the store's training means and stds) standardise what a model reads as numbers; they
    are kept in its buffers, so a saved model scores without the store.
    """
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {sorted(MODEL_KINDS)}")
    model_cls, cfg_cls = MODEL_KINDS[kind]
    if not isinstance(cfg_section, cfg_cls):
        raise TypeError(f"model kind {kind!r} needs a {cfg_cls.__name__}, got {type(cfg_section).__name__}")
    return model_cls(num_ids, cfg_section, num_features=num_features, feature_stats=feature_stats)
