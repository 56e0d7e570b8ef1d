"""The two fusion baselines: an MLP on the state, and one learned global weight."""

from __future__ import annotations

import copy
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdgat.core.schema import FusionConfig
from kdgat.fusion.data import (
    EPS,
    STATE_DIM,
    FusionData,
    Standardizer,
    check_method,
    fuse,
    num_threads,
    policy_summary_of,
    seeded_torch,
)


class _MLP(nn.Module):
    def __init__(self, hidden: tuple[int, ...], dropout: float):
        super().__init__()
        blocks: list[nn.Module] = []
        width = STATE_DIM
        for h in hidden:
            blocks += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        blocks.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*blocks)

    def forward(self, states: Tensor) -> Tensor:
        return self.net(states).squeeze(-1)


class MLPFusion:
    """MLP baseline: standardised state -> 64 -> 32 -> 1 logit (ReLU, dropout), fused score = sigmoid.

    BCE-with-logits against the label, Adam, ``epochs`` passes of shuffled minibatches of
    ``batch_size``, from fresh seeded weights; the weights with the lowest validation loss are kept.
    ``threads`` as in :class:`DQNFusion`.  Its score does not use vgae_score / gat_prob directly
    (they are in the state), and it has no alpha.
    """

    method = "mlp"

    def __init__(self, cfg: FusionConfig, seed: int = 0, batch_size: int = 64, threads: int | None = 1):
        self.cfg = cfg
        self.seed = int(seed)
        self.threads = threads
        self.batch_size = int(batch_size)
        self._reset()

    def _reset(self) -> None:
        self.standardizer = Standardizer()
        with seeded_torch(self.seed):
            self.net = _MLP(tuple(self.cfg.mlp_hidden), self.cfg.mlp_dropout)
        self.net.eval()

    @torch.no_grad()
    def logits(self, states: np.ndarray) -> np.ndarray:
        self.net.eval()
        return self.net(torch.from_numpy(self.standardizer(states))).numpy()

    def score(self, data: FusionData) -> np.ndarray:
        return torch.sigmoid(torch.from_numpy(self.logits(data.states))).numpy()

    def _loss(self, data: FusionData) -> float:
        with torch.no_grad():
            logits = torch.from_numpy(self.logits(data.states))
            return float(F.binary_cross_entropy_with_logits(logits, torch.from_numpy(data.labels)))

    def fit(self, train: FusionData, val: FusionData | None = None) -> dict[str, Any]:
        if len(train) == 0:
            raise ValueError("no training windows")
        start = time.perf_counter()
        self._reset()
        rng = np.random.default_rng(self.seed)
        self.standardizer.fit(train.states)
        x = torch.from_numpy(self.standardizer(train.states))
        y = torch.from_numpy(train.labels)
        optimizer = torch.optim.Adam(self.net.parameters(), lr=self.cfg.mlp_lr)
        history: dict[str, Any] = {"train_loss": [], "val_loss": []}
        best_loss, best_epoch, best_weights = np.inf, None, None
        with seeded_torch(self.seed + 1), num_threads(self.threads):
            for epoch in range(self.cfg.epochs):
                self.net.train()
                order = torch.from_numpy(rng.permutation(len(train)))
                total = 0.0
                for b in range(0, len(order), self.batch_size):
                    idx = order[b : b + self.batch_size]
                    loss = F.binary_cross_entropy_with_logits(self.net(x[idx]), y[idx])
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    total += loss.item() * len(idx)
                history["train_loss"].append(total / len(order))
                if val is not None:
                    val_loss = self._loss(val)
                    history["val_loss"].append(val_loss)
                    if val_loss < best_loss:
                        best_loss, best_epoch = val_loss, epoch
                        best_weights = copy.deepcopy(self.net.state_dict())
        if best_weights is not None:
            self.net.load_state_dict(best_weights)
        self.net.eval()
        history.update(
            best_epoch=best_epoch,
            best_val_loss=None if best_epoch is None else float(best_loss),
            seconds=time.perf_counter() - start,
        )
        return history

    def state_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "net": copy.deepcopy(self.net.state_dict()),
            "standardizer": self.standardizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_method(state, self.method)
        self.net.load_state_dict(state["net"])
        self.standardizer.load_state_dict(state["standardizer"])
        self.net.eval()


class WeightedFusion:
    """Weighted-average baseline: one global alpha = sigmoid(w), fused = (1 - alpha)·vgae + alpha·gat.

    w starts at 0 (alpha 0.5) and is fitted with BCE on the fused score (clamped away from 0 and 1),
    Adam, full batch, ``epochs`` steps; the w with the lowest validation loss is kept.
    """

    method = "weighted"

    def __init__(self, cfg: FusionConfig, seed: int = 0):
        self.cfg = cfg
        self.seed = int(seed)  # nothing random; kept for a uniform constructor
        self.w = nn.Parameter(torch.zeros(()))

    @property
    def alpha(self) -> float:
        return float(torch.sigmoid(self.w.detach()))

    def alphas(self, states: np.ndarray) -> np.ndarray:
        """The single alpha, repeated per window."""
        return np.full(len(states), self.alpha, dtype=np.float32)

    def score(self, data: FusionData) -> np.ndarray:
        return fuse(np.float32(self.alpha), data.vgae_score, data.gat_prob)

    def policy_summary(self, data: FusionData) -> dict[str, Any]:
        return policy_summary_of(self.alphas(data.states), data.labels)

    def _loss(self, vgae: Tensor, gat: Tensor, y: Tensor) -> Tensor:
        alpha = torch.sigmoid(self.w)
        fused = ((1 - alpha) * vgae + alpha * gat).clamp(EPS, 1 - EPS)
        return F.binary_cross_entropy(fused, y)

    def fit(self, train: FusionData, val: FusionData | None = None) -> dict[str, Any]:
        if len(train) == 0:
            raise ValueError("no training windows")
        start = time.perf_counter()
        with torch.no_grad():
            self.w.zero_()
        tensors = [torch.from_numpy(a) for a in (train.vgae_score, train.gat_prob, train.labels)]
        val_tensors = None if val is None else [torch.from_numpy(a) for a in (val.vgae_score, val.gat_prob, val.labels)]
        optimizer = torch.optim.Adam([self.w], lr=self.cfg.weighted_lr)
        history: dict[str, Any] = {"train_loss": [], "val_loss": [], "alpha": []}
        best_loss, best_epoch, best_w = np.inf, None, None
        for epoch in range(self.cfg.epochs):
            loss = self._loss(*tensors)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            history["train_loss"].append(loss.item())
            history["alpha"].append(self.alpha)
            if val_tensors is not None:
                with torch.no_grad():
                    val_loss = float(self._loss(*val_tensors))
                history["val_loss"].append(val_loss)
                if val_loss < best_loss:
                    best_loss, best_epoch, best_w = val_loss, epoch, self.w.detach().clone()
        if best_w is not None:
            with torch.no_grad():
                self.w.copy_(best_w)
        history.update(
            best_epoch=best_epoch,
            best_val_loss=None if best_epoch is None else float(best_loss),
            final_alpha=self.alpha,
            seconds=time.perf_counter() - start,
        )
        return history

    def state_dict(self) -> dict[str, Any]:
        return {"method": self.method, "w": self.w.detach().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_method(state, self.method)
        with torch.no_grad():
            self.w.copy_(torch.as_tensor(state["w"], dtype=self.w.dtype))
