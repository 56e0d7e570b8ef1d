"""Knowledge distillation losses, teacher -> student (reference design 4.4).

Pure functions plus :class:`LatentProjection`, the one trainable piece (it belongs to the
student's optimizer). Teacher outputs are detached: the teacher is frozen, gradients only reach the
student (and the projection).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["gat_kd_loss", "vgae_kd_loss", "LatentProjection", "count_parameters"]


def gat_kd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor,
    temperature: float,
    alpha: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(total, soft, hard)`` for logit distillation of the GAT classifier.

    soft = T²·KL(softmax(t/T) ‖ softmax(s/T)) averaged over the batch (``batchmean``),
    hard = CE(s, y), total = alpha·soft + (1 − alpha)·hard.
    """
    t = temperature
    soft = F.kl_div(
        F.log_softmax(student_logits / t, dim=-1),
        F.log_softmax(teacher_logits.detach() / t, dim=-1),
        reduction="batchmean",
        log_target=True,
    ) * (t * t)
    hard = F.cross_entropy(student_logits, labels)
    return alpha * soft + (1.0 - alpha) * hard, soft, hard


class LatentProjection(nn.Module):
    """Maps the student's latent onto the teacher's width: ``Linear(student, teacher)``, identity when equal."""

    def __init__(self, student_latent: int, teacher_latent: int):
        super().__init__()
        self.student_latent = student_latent
        self.teacher_latent = teacher_latent
        self.proj: nn.Module = (
            nn.Identity() if student_latent == teacher_latent else nn.Linear(student_latent, teacher_latent)
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.proj(z)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.student_latent} -> {self.teacher_latent})"


def vgae_kd_loss(
    student_out: dict[str, Tensor],
    teacher_out: dict[str, Tensor],
    projection: nn.Module,
    task_loss: Tensor,
    alpha: float,
    latent_weight: float,
    recon_weight: float,
) -> tuple[Tensor, dict[str, Tensor]]:
    """``(total, parts)`` for VGAE distillation; the outputs are the dicts ``VGAE.forward`` returns.

    total = alpha·[latent_weight·MSE(P(z_s), z_t) + recon_weight·MSE(recon_s, recon_t)] + (1 − alpha)·task_loss.
    ``parts`` holds ``latent``, ``recon`` (the two unweighted MSEs), ``kd`` (the bracket), ``task`` and ``total``.
    """
    latent = F.mse_loss(projection(student_out["z"]), teacher_out["z"].detach())
    recon = F.mse_loss(student_out["recon"], teacher_out["recon"].detach())
    kd = latent_weight * latent + recon_weight * recon
    total = alpha * kd + (1.0 - alpha) * task_loss
    return total, {"latent": latent, "recon": recon, "kd": kd, "task": task_loss, "total": total}


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters (buffers such as BatchNorm running statistics are not counted)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
