"""Training that survives preemption and time limits.

On a cluster a training job is stopped from outside: SLURM sends SIGTERM when it preempts a job or
kills it at its time limit, and (with ``--signal=B:USR2@<seconds>``, which the Nextflow slurm profile
asks for) SIGUSR2 to the job's shell shortly before the limit, which Nextflow's task wrapper turns
into a SIGTERM for the task. :class:`StopOnSignal` turns either signal, Ctrl-C and a hang-up into a clean stop
at the end of the current batch; the stage then exits with ``128 + signal`` (143 for SIGTERM), an exit
status the pipeline's retry rule retries.

The checkpoint a retry continues from is Lightning's ``last.ckpt`` of the last finished epoch, so a
resumed run repeats at most the interrupted epoch and its data order is the one an uninterrupted run
would have had (a mid-epoch checkpoint could not promise that with a plain data loader). Checkpoints
are written atomically (:class:`AtomicCheckpointIO`), so a kill during a save leaves the previous one.
With ``--checkpoint-dir`` they live under ``<dir>/<run key>/`` (:func:`run_key`: dataset, config,
graph store and teacher), outside the task's work folder, so the retried task, which starts in a new
work folder, finds them.
"""

from __future__ import annotations

import os
import signal
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import lightning as L
import torch
from lightning.fabric.plugins import TorchCheckpointIO

from kdgat.core.atomic import atomic_path
from kdgat.core.hashing import content_hash, sha256_file
from kdgat.core.run_files import MODEL_FILE
from kdgat.core.signals import StopSignal, stop_signals_handled_by

PAUSE_ENV = "KDGAT_TRAIN_TEST_PAUSE"  # test hook: "<epoch>:<flag file>" (see _PauseForTest)


class TrainingStopped(Exception):
    """Raised inside the fit loop at the end of the batch during which a stop signal arrived."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class KeepFinished(L.Callback):
    """Saves in every checkpoint whether training had finished: early stopping sets ``trainer.should_stop``,
    which Lightning does not save, so resuming the last checkpoint of a run that had stopped early trained
    on (a rerun into the same folder, a retry after a failure past training, a pipeline run again)."""

    def __init__(self) -> None:
        self.trainer: L.Trainer | None = None
        self.finished = False  # as restored from the checkpoint being resumed

    def setup(self, trainer, pl_module, stage) -> None:
        self.trainer = trainer

    def state_dict(self) -> dict:
        return {"finished": bool(self.trainer is not None and self.trainer.should_stop)}

    def load_state_dict(self, state_dict: dict) -> None:
        self.finished = bool(state_dict.get("finished"))

    def on_train_start(self, trainer, pl_module) -> None:
        if self.finished:
            trainer.should_stop = True


class StopOnSignal(L.Callback):
    """SIGTERM / SIGUSR2 / SIGINT / SIGHUP (those the process does not ignore: ``nohup`` ignores SIGHUP) stop
    training at the end of the current batch (training or validation); a second Ctrl-C stops at once, as a user
    pressing it again expects: as :class:`~kdgat.core.signals.StopSignal`, which Lightning passes on (its own
    KeyboardInterrupt handling ended the process with exit 1, a code no retry rule retries)."""

    def __init__(self) -> None:
        self.received: int | None = None

    def _handler(self, signum, _frame) -> None:
        if signum == signal.SIGINT and self.received is not None:
            raise StopSignal(signum)
        self.received = self.received or signum

    @contextmanager
    def installed(self) -> Iterator[StopOnSignal]:
        """Handle the stop signals while the block runs (main thread only), then restore the old handlers."""
        with stop_signals_handled_by(self._handler):
            yield self

    def _check(self) -> None:
        if self.received is not None:
            raise TrainingStopped(self.received)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._check()

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._check()


class KeepRandomState(L.Callback):
    """The random streams (torch's, CUDA's, numpy's, Python's) go into every checkpoint and come back with it.

    Dropout and the VGAE's sampling draw from torch's global stream, which the stage seeds once at its start:
    a resumed run drew epoch 0's numbers again for the epochs after its checkpoint and ended with other weights
    than the same command run without a stop (a VGAE's best validation loss 4 % worse). Stored as tensors and
    ints, which any checkpoint loader reads.
    """

    def state_dict(self) -> dict:
        import random

        import numpy as np

        kind, keys, position, has_gauss, gauss = np.random.get_state()
        state = {
            "torch": torch.get_rng_state(),
            "numpy": {
                "kind": kind,
                "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                "position": position,
                "has_gauss": has_gauss,
                "gauss": gauss,
            },  # fmt: skip
            "python": random.getstate(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        import random

        import numpy as np

        torch.set_rng_state(state_dict["torch"])
        n = state_dict["numpy"]
        np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["position"], n["has_gauss"], n["gauss"]))
        random.setstate(state_dict["python"])
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, but through a temporary file renamed into place (and fsynced)."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)


def run_key(label: str, dataset: str, config_hash: str, store_sha256: str, teacher_dir: Path | None) -> str:
    """``<label>-<16 hex>``: what makes two trainings the same (so one may continue the other's checkpoint).

    The dataset, the resolved config (its seed included), the graph store's metadata and the teacher's
    weights; not the output folder, which is a new one for each Nextflow task attempt.
    """
    key = {
        "dataset": dataset,
        "config": config_hash,
        "store": store_sha256,  # of the store's metadata.json as the run opened it (GraphStore.metadata_sha256)
        "teacher": sha256_file(Path(teacher_dir) / MODEL_FILE) if teacher_dir is not None else None,
    }
    return f"{label}-{content_hash(key)[:16]}"


class _PauseForTest(L.Callback):
    """Test hook (``KDGAT_TRAIN_TEST_PAUSE=<epoch>:<flag>``): in the middle of that epoch, touch the flag and
    wait for a stop signal, so a test can stop a real training process at a known point."""

    def __init__(self, stopper: StopOnSignal, epoch: int, flag: Path):
        self.stopper, self.epoch, self.flag = stopper, epoch, flag

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == 1:
            self.flag.touch()
            deadline = time.monotonic() + 120
            while self.stopper.received is None and time.monotonic() < deadline:
                time.sleep(0.01)


def test_pause(stopper: StopOnSignal) -> list[L.Callback]:
    epoch, _, flag = os.environ.get(PAUSE_ENV, "").partition(":")
    return [_PauseForTest(stopper, int(epoch), Path(flag))] if epoch and flag else []
