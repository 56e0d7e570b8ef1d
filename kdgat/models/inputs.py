"""Node input shared by the models: a CAN-ID embedding beside the numeric node features."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def check_sizes(num_ids: int, num_features: int) -> None:
    if num_ids < 1:
        raise ValueError(f"num_ids must be positive, got {num_ids}")
    if num_features < 2:
        raise ValueError(f"num_features must count the ID column and at least one numeric column, got {num_features}")


def embed_ids(embedding: nn.Embedding, x: Tensor) -> Tensor:
    """Column 0 of ``x`` is a vocabulary index: replace it by its embedding."""
    return torch.cat([embedding(x[:, 0].long()), x[:, 1:]], dim=-1)
