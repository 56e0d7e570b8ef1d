"""Lightning modules: the training loops around the pure models.

The models (``kdgat.models``) know nothing about optimisers, logging or
teachers; these modules own the loop, the losses (task or distillation) and
what is logged per epoch.
"""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from kdgat.core.schema import KDConfig
from kdgat.models.gat import on_batch
from kdgat.training.kd import LatentProjection, gat_kd_loss, vgae_kd_loss


def _freeze(teacher: nn.Module | None) -> nn.Module | None:
    if teacher is None:
        return None
    teacher.eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher


class _Base(L.LightningModule):
    def __init__(
        self, model: nn.Module, lr: float, weight_decay: float, teacher: nn.Module | None, kd: KDConfig | None
    ):
        super().__init__()
        self.model = model
        # The teacher is not a submodule: it is neither trained nor saved in the student's checkpoint.
        self._teacher = [_freeze(teacher)] if teacher is not None else []
        self.kd = kd
        self.lr = lr
        self.weight_decay = weight_decay

    @property
    def teacher(self) -> nn.Module | None:
        return self._teacher[0] if self._teacher else None

    def on_fit_start(self) -> None:
        if self.teacher is not None:
            self.teacher.to(self.device).eval()

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)


class LitGAT(_Base):
    """Window classifier: cross-entropy, or logit distillation from a frozen teacher."""

    def forward(self, batch):
        return on_batch(self.model, batch)

    def training_step(self, batch, batch_idx):
        logits = self(batch)
        if self.teacher is not None:
            with torch.no_grad():
                teacher_logits = on_batch(self.teacher, batch)
            loss, soft, hard = gat_kd_loss(logits, teacher_logits, batch.y, self.kd.temperature, self.kd.alpha)
            self.log_dict(
                {"train_kd_soft": soft, "train_kd_hard": hard},
                on_step=False,
                on_epoch=True,
                batch_size=batch.num_graphs,
            )
        else:
            loss = F.cross_entropy(logits, batch.y)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=batch.num_graphs)
        return loss

    def validation_step(self, batch, batch_idx):
        logits = self(batch)
        loss = F.cross_entropy(logits, batch.y)
        accuracy = (logits.argmax(dim=1) == batch.y).float().mean()
        self.log_dict(
            {"val_loss": loss, "val_acc": accuracy}, on_epoch=True, prog_bar=True, batch_size=batch.num_graphs
        )


class LitVGAE(_Base):
    """Graph autoencoder on benign windows: reconstruction losses, or latent + reconstruction distillation."""

    def __init__(self, model, lr, weight_decay, teacher=None, kd=None):
        super().__init__(model, lr, weight_decay, teacher, kd)
        self.projection = None
        if teacher is not None:
            self.projection = LatentProjection(model.mu.out_features, teacher.mu.out_features)

    def _step(self, batch, stage: str):
        out = self.model(batch.x, batch.edge_index, batch.batch)
        losses = self.model.loss(out, batch.x, batch.edge_index)
        loss = losses["total"]
        if self.teacher is not None and stage == "train":
            with torch.no_grad():
                teacher_out = self.teacher(batch.x, batch.edge_index, batch.batch)
            loss, parts = vgae_kd_loss(
                out, teacher_out, self.projection, losses["total"], self.kd.alpha,
                self.kd.vgae_latent_weight, self.kd.vgae_recon_weight,
            )  # fmt: skip
            kd_parts = {f"{stage}_kd_{k}": v for k, v in parts.items() if k != "total"}
            self.log_dict(kd_parts, on_step=False, on_epoch=True, batch_size=batch.num_graphs)
        metrics = {f"{stage}_loss": loss, f"{stage}_recon": losses["recon"]}
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=True, batch_size=batch.num_graphs)
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")
