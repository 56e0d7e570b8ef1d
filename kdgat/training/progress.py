"""A Lightning callback that reports each finished epoch in one line (for runners without a progress bar)."""

from __future__ import annotations

from collections.abc import Callable

import lightning as L


class EpochProgress(L.Callback):
    """Calls ``report("epoch 3/15: val_loss 0.0123")`` after every validation epoch."""

    def __init__(self, report: Callable[[str], None]):
        self.report = report

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        loss = trainer.callback_metrics.get("val_loss")
        tail = f": val_loss {float(loss):.4g}" if loss is not None else ""
        self.report(f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}{tail}")
