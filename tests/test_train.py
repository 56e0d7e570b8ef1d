"""The train stage: artifacts, rebuilding a run, KD from a teacher run, resume after an interruption."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import unittest.mock
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from support.processes import as_from_a_terminal
from typer.testing import CliRunner

from kdgat.cli import app
from kdgat.core.config import resolve_config
from kdgat.core.errors import KdgatError
from kdgat.data.batching import assemble_batch
from kdgat.data.catalog import dataset_sources, load_catalog
from kdgat.data.store import open_store
from kdgat.stages.graphs import run as run_graphs
from kdgat.stages.ingest import run as run_ingest
from kdgat.stages.train import run as run_train
from kdgat.training.preemption import PAUSE_ENV
from kdgat.training.runs import load_run_model

FAST = ["training.max_epochs=2", "training.batch_size=64"]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def store_dir(synthetic_graphs):
    return synthetic_graphs


@pytest.fixture(scope="module")
def teachers(store_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("teachers")
    for kind in ("gat", "vgae"):
        run_train(resolve_config(kind, "large", overrides=FAST), store_dir, root / kind, progress_bar=False)
    return root


def test_run_directory_rebuilds_the_same_model(store_dir, teachers):
    run = teachers / "gat"
    for name in (
        "model.pt",
        "config.json",
        "metrics.json",
        "manifest.json",
        "logs/metrics.csv",
        "checkpoints/last.ckpt",
    ):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["parameters"] > 300_000
    model, cfg = load_run_model(run, open_store(store_dir))
    assert cfg.model_type == "gat" and cfg.scale == "large"
    batch = assemble_batch(open_store(store_dir).part("val"), np.arange(8))
    with torch.no_grad():
        again, _ = load_run_model(run)
        assert torch.equal(model(batch.x, batch.edge_index, batch.batch), again(batch.x, batch.edge_index, batch.batch))


def test_vgae_trains_on_benign_graphs_only(store_dir, teachers):
    """By default (vgae.calibration_fraction 0) on every benign training window, its percentiles measured there."""
    metrics = json.loads((teachers / "vgae" / "metrics.json").read_text())
    train_y = np.asarray(open_store(store_dir).part("train").y)
    assert metrics["train_graphs"] == int((train_y == 0).sum()) < len(train_y) and metrics["calibrated_on"] == "train"


def test_a_vgae_calibrated_out_of_sample_on_windows_it_did_not_fit(store_dir, tmp_path):
    """The VGAE trains on the benign training windows but every 10th of each file's (vgae.calibration_fraction);
    its per-ID error percentiles are those of these windows, which share no frame with a window it trained on
    (in-sample the errors are smaller); the IDs seen are counted on both."""
    import copy

    from kdgat.training.datamodule import GraphDataModule

    cfg = resolve_config("vgae", "large", overrides=[*FAST, "vgae.calibration_fraction=0.1"])
    metrics = run_train(cfg, store_dir, tmp_path / "vgae", progress_bar=False).summary
    store = open_store(store_dir)
    part = store.part("train")
    train_y, file_index, start = (np.asarray(a) for a in (part.y, part.file_index, part.window_start))
    assert metrics["calibrated_on"] == "calibration" and metrics["calibration_graphs"] > 0
    assert metrics["train_graphs"] + metrics["calibration_graphs"] <= int((train_y == 0).sum()) < len(train_y)
    data = GraphDataModule(store, 8, labels=(0,), calibration_fraction=0.1)
    trained, held = data.train_indices, data.calibration_indices
    assert (len(trained), len(held)) == (metrics["train_graphs"], metrics["calibration_graphs"])
    assert not set(trained.tolist()) & set(held.tolist()) and set(train_y[held].tolist()) == {0}
    window = int(store.metadata["window"])
    spread = []
    for f in np.unique(file_index[held]):  # every 10th, sharing no frame with a window it trained on
        mine, theirs = start[held[file_index[held] == f]], start[trained[file_index[trained] == f]]
        assert (np.abs(mine[:, None] - theirs[None, :]) >= window).all()
        assert len(mine) == int((file_index[data.labelled_train_indices] == f).sum()) // 10
        spread.append(mine.min() < theirs.max())
    assert any(spread)  # not only each file's end
    model, _ = load_run_model(tmp_path / "vgae", store)
    again, in_sample = copy.deepcopy(model), copy.deepcopy(model)
    again.calibrate(data.train_dataloader_in_order(which="calibration"), data.train_dataloader_in_order(which="all"))
    in_sample.calibrate(data.train_dataloader_in_order(which="train"))
    assert torch.allclose(model.error_q99, again.error_q99) and not torch.allclose(model.error_q99, in_sample.error_q99)
    # nodes with a frame of their own (kdgat.models.inputs.has_frame): a node of the last transition only is none
    seen = np.concatenate([b.x[(b.x[:, 1:] != 0).any(1), 0].long().numpy()
                           for b in data.train_dataloader_in_order(which="all")])  # fmt: skip
    assert model.benign_id_count.tolist() == np.bincount(seen, minlength=len(model.benign_id_count)).tolist()


@pytest.mark.parametrize("kind", ["gat", "vgae"])
def test_kd_student_from_the_teacher_run(store_dir, teachers, tmp_path, kind):
    cfg = resolve_config(kind, "small", "kd_standard", FAST)
    metrics = run_train(cfg, store_dir, tmp_path / kind, teacher_dir=teachers / kind, progress_bar=False).summary
    assert metrics["teacher"] == str(teachers / kind)
    assert metrics["parameters"] < 0.25 * metrics["teacher_parameters"]
    header = (tmp_path / kind / "logs" / "metrics.csv").read_text().splitlines()[0]
    assert "train_kd_" in header  # the distillation terms were optimised and logged


def test_kd_needs_a_teacher_of_the_same_kind(store_dir, teachers, tmp_path):
    with pytest.raises(KdgatError, match="needs --teacher"):
        run_train(resolve_config("gat", "small", "kd_standard", FAST), store_dir, tmp_path / "a")
    with pytest.raises(KdgatError, match="cannot teach"):
        run_train(
            resolve_config("gat", "small", "kd_standard", FAST),
            store_dir,
            tmp_path / "b",
            teacher_dir=teachers / "vgae",
        )
    with pytest.raises(KdgatError, match="only used with"):
        run_train(
            resolve_config("gat", "small", overrides=FAST), store_dir, tmp_path / "c", teacher_dir=teachers / "gat"
        )


class _CrashAfter(L.Callback):
    """Stands in for a killed job: the process dies in the middle of an epoch."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("node lost")


def test_a_resume_continues_after_the_last_finished_epoch_when_validation_got_worse(store_dir, tmp_path, monkeypatch):
    """last.ckpt was written only when the monitored loss improved: a job that died in epoch 2 whose best epoch was
    0 resumed from epoch 0 and trained epoch 1 again (up to `patience` epochs per preemption)."""
    from kdgat.training.lit import LitGAT

    def worse_every_epoch(self, batch, batch_idx):
        self.log("val_loss", 1.0 + self.current_epoch, on_epoch=True, batch_size=batch.num_graphs)

    monkeypatch.setattr(LitGAT, "validation_step", worse_every_epoch)
    cfg = resolve_config("gat", "small", overrides=["training.max_epochs=4", "training.batch_size=64"])
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="node lost"):
        run_train(cfg, store_dir, run, progress_bar=False, callbacks=[_CrashAfter(2)])
    checkpoints = run / "checkpoints"
    assert torch.load(checkpoints / "best.ckpt", weights_only=False)["epoch"] == 0
    assert torch.load(checkpoints / "last.ckpt", weights_only=False)["epoch"] == 1  # the last finished epoch
    metrics = run_train(cfg, store_dir, run, progress_bar=False).summary
    assert metrics["resumed_after_epoch"] == 1 and metrics["epochs"] == 4
    assert metrics["best_val_loss"] == pytest.approx(1.0)  # the best epoch is still epoch 0's


def _epochs_logged(run):
    with open(run / "logs" / "metrics.csv") as handle:
        return sorted({int(row["epoch"]) for row in csv.DictReader(handle) if row.get("val_loss")})


def test_resume_after_an_interrupted_run(store_dir, tmp_path):
    cfg = resolve_config("gat", "small", overrides=["training.max_epochs=4", "training.batch_size=64"])
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="node lost"):
        run_train(cfg, store_dir, run, progress_bar=False, callbacks=[_CrashAfter(1)])
    assert (run / "checkpoints" / "last.ckpt").exists() and not (run / "model.pt").exists()
    assert _epochs_logged(run) == [0, 1]  # the crash came after epoch 1's checkpoint
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = run_train(cfg, store_dir, run, progress_bar=False).summary
    assert not [w for w in caught if "will be deleted" in str(w.message)]  # the earlier curves are kept
    assert metrics["epochs"] == 4
    assert _epochs_logged(run) == [0, 1, 2, 3]  # continued from epoch 2, not restarted
    with open(run / "logs" / "metrics.csv") as handle:
        epoch0 = [row for row in csv.DictReader(handle) if row.get("val_loss") and row["epoch"] == "0"]
    assert len(epoch0) == 1


@pytest.mark.parametrize("kind", ["gat", "vgae"])
def test_a_resumed_run_ends_with_the_weights_of_a_run_never_stopped(store_dir, tmp_path, kind):
    """Dropout and the VGAE's sampling draw from torch's stream, seeded once at the start: a run resumed from its
    last checkpoint drew the first epoch's numbers again and ended with other weights (the checkpoint held no random
    state)."""
    overrides = ["training.max_epochs=4", "training.batch_size=64", "training.patience=10"]
    cfg = resolve_config(kind, "small", overrides=overrides)
    assert cfg.model_section.dropout > 0  # randomness beyond the seeded data order
    whole = run_train(cfg, store_dir, tmp_path / "whole", progress_bar=False).summary
    run = tmp_path / "stopped"
    with pytest.raises(RuntimeError, match="node lost"):
        run_train(cfg, store_dir, run, progress_bar=False, callbacks=[_CrashAfter(1)])
    resumed = run_train(cfg, store_dir, run, progress_bar=False).summary
    assert resumed["resumed_after_epoch"] is not None and resumed["best_val_loss"] == whole["best_val_loss"]
    theirs, ours = (torch.load(d / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
                    for d in (tmp_path / "whole", run))  # fmt: skip
    assert theirs.keys() == ours.keys() and all(torch.equal(theirs[k], ours[k]) for k in theirs)


def _train_process(store_dir, out, checkpoints, tmp_path, pause: str | None = None) -> subprocess.Popen:
    """A real `kdgat train` process (a GAT student, 4 epochs) keeping its checkpoints under ``checkpoints``."""
    args = ["train", "-m", "gat", "-s", "small", "--graphs", store_dir, "--out", out, "--checkpoint-dir", checkpoints,
            "-O", "training.max_epochs=4", "-O", "training.batch_size=32", "--threads", "1",
            "--tracking-uri", f"sqlite:///{tmp_path / 'mlruns.db'}"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop(PAUSE_ENV, None)
    if pause:
        env[PAUSE_ENV] = pause
    code = "from kdgat.cli import app; app()"
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=as_from_a_terminal)  # fmt: skip


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR2, signal.SIGINT, signal.SIGHUP],
                         ids=["SIGTERM", "SIGUSR2", "SIGINT", "SIGHUP"])  # fmt: skip
def test_a_signal_mid_epoch_stops_cleanly_and_a_retry_elsewhere_resumes(store_dir, tmp_path, sig):
    """Issue 12: preemption (SIGTERM), SLURM's time-limit warning (USR2) or Ctrl-C (SIGINT: Lightning ended it with
    exit 1 and no word) during epoch 2 of a real training process: it exits 128 + signal (a retried code), the
    checkpoint of epoch 1 is in the durable folder, and the same command with a new --out (Nextflow's retry runs
    in a new work folder) continues from it."""
    checkpoints, flag = tmp_path / "checkpoints", tmp_path / "paused"
    first = _train_process(store_dir, tmp_path / "attempt1" / "gat_small", checkpoints, tmp_path, f"2:{flag}")
    deadline = time.monotonic() + 300
    while not flag.exists():
        assert first.poll() is None, first.communicate()[1]
        assert time.monotonic() < deadline, "training never reached epoch 2"
        time.sleep(0.05)
    first.send_signal(sig)
    _, stderr = first.communicate(timeout=120)
    assert first.returncode == 128 + sig, stderr
    assert stderr.strip().splitlines()[-1].startswith(f"error: training stopped by {sig.name} during epoch 2; ")
    assert not (tmp_path / "attempt1" / "gat_small" / "manifest.json").exists()
    (state,) = checkpoints.iterdir()  # <checkpoint dir>/<run key>
    assert state.name.startswith("gat_small-") and (state / "checkpoints" / "last.ckpt").is_file()
    assert torch.load(state / "checkpoints" / "last.ckpt", weights_only=False)["epoch"] == 1
    assert not [p for p in (state / "checkpoints").iterdir() if p.name.startswith(".")]  # no half-written file

    retry = _train_process(store_dir, tmp_path / "attempt2" / "gat_small", checkpoints, tmp_path)
    _, stderr = retry.communicate(timeout=600)
    assert retry.returncode == 0, stderr
    run = tmp_path / "attempt2" / "gat_small"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["resumed_after_epoch"] == 1 and metrics["epochs"] == 4
    assert _epochs_logged(run) == [0, 1, 2, 3]  # the first attempt's epochs are kept in the copied log
    assert (run / "manifest.json").is_file() and not (run / "checkpoints").exists()
    assert list(checkpoints.iterdir()) == [state]  # same inputs, same key


def test_a_second_training_into_a_folder_in_use_is_refused_at_once(store_dir, tmp_path):
    """Two trainings into one run folder interleaved their epoch logs, or one deleted the other's checkpoints (both
    exited 0); a retry of a task whose first attempt still ran shared its durable checkpoint folder. The second is
    refused at once, naming the first, and a killed first one holds nothing."""
    checkpoints, flag = tmp_path / "checkpoints", tmp_path / "paused"
    first = _train_process(store_dir, tmp_path / "run", checkpoints, tmp_path, f"1:{flag}")
    try:
        deadline = time.monotonic() + 300  # a bound on the wait for a process that died, not a timing assertion
        while not flag.exists():
            assert first.poll() is None, first.communicate()[1]
            assert time.monotonic() < deadline, "training never reached epoch 1"
            time.sleep(0.05)
        said = rf"`kdgat train` \(pid {first.pid} on .+\) is writing in this folder now; wait for it to end"
        with pytest.raises(KdgatError, match=f"{tmp_path / 'run'}: {said}"):
            run_train(resolve_config("gat", "small", overrides=FAST), store_dir, tmp_path / "run", progress_bar=False)
        same = resolve_config("gat", "small", overrides=["training.max_epochs=4", "training.batch_size=32"])
        with pytest.raises(KdgatError, match=said):  # its run key's folder under --checkpoint-dir
            run_train(same, store_dir, tmp_path / "retry", checkpoint_dir=checkpoints, progress_bar=False)
        assert not (tmp_path / "retry").exists()  # refused: no folder left
    finally:
        first.kill()
        first.communicate()
    manifest = run_train(
        resolve_config("gat", "small", overrides=FAST), store_dir, tmp_path / "run", progress_bar=False
    )
    assert manifest.summary["epochs"] == 2


def test_a_second_ctrl_c_stops_training_at_once_as_a_stop_signal():
    """The first Ctrl-C stops at the end of the batch; a second one at once, as a StopSignal that Lightning passes
    on (a KeyboardInterrupt, which it raised before, Lightning turns into exit 1: no retry rule retries that)."""
    from kdgat.core.signals import StopSignal
    from kdgat.training.preemption import StopOnSignal

    stopper = StopOnSignal()
    stopper._handler(signal.SIGINT, None)
    assert stopper.received == signal.SIGINT
    with pytest.raises(StopSignal) as stopped:
        stopper._handler(signal.SIGINT, None)
    assert stopped.value.signum == signal.SIGINT


def test_the_checkpoint_key_is_the_runs_identity(store_dir, teachers, tmp_path):
    from kdgat.training.preemption import run_key

    store = open_store(store_dir).metadata_sha256
    base = run_key("gat_small_kd", "synthetic", "abc", store, teachers / "gat")
    assert base == run_key("gat_small_kd", "synthetic", "abc", store, teachers / "gat")
    assert base.startswith("gat_small_kd-")
    others = {run_key("gat_small_kd", "other", "abc", store, teachers / "gat"),
              run_key("gat_small_kd", "synthetic", "abd", store, teachers / "gat"),
              run_key("gat_small_kd", "synthetic", "abc", store, teachers / "vgae"),
              run_key("gat_small_kd", "synthetic", "abc", store, None)}  # fmt: skip
    assert base not in others and len(others) == 4


def test_a_rerun_removes_the_old_manifest_first(store_dir, teachers, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(teachers / "gat", run)
    assert (run / "manifest.json").is_file()
    cfg = resolve_config("gat", "large", overrides=FAST)
    with pytest.raises(RuntimeError, match="node lost"):
        run_train(cfg, store_dir, run, resume=False, progress_bar=False, callbacks=[_CrashAfter(0)])
    # the old weights are still there, but no manifest vouches for the folder's mix of old and new files
    assert (run / "model.pt").is_file() and not (run / "manifest.json").exists()
    # and no checkpoint of the old run is left for a later resume to continue from as if it were this one's
    assert not (run / "checkpoints" / "last.ckpt").exists()


def test_a_vgae_teacher_with_targets_in_another_space_is_refused(store_dir, teachers, tmp_path):
    """Reconstructions are distilled value for value: a standardised teacher cannot teach raw [0, 1] targets."""
    cfg = resolve_config("vgae", "small", aux=["kd_standard"], overrides=[*FAST, "vgae.target=raw"])
    with pytest.raises(KdgatError, match="a VGAE with standardized targets cannot teach one with raw targets"):
        run_train(cfg, store_dir, tmp_path / "student", teacher_dir=teachers / "vgae", progress_bar=False)


def test_a_run_that_stopped_early_is_not_trained_further_when_run_again(store_dir, tmp_path, monkeypatch):
    """Lightning does not save that early stopping had stopped training: the same command again (resume is the
    default: a pipeline or a Nextflow retry after a failure past training) trained on from the last epoch."""
    from kdgat.training.lit import LitGAT

    def worse_every_epoch(self, batch, batch_idx):
        self.log("val_loss", 1.0 + self.current_epoch, on_epoch=True, batch_size=batch.num_graphs)

    monkeypatch.setattr(LitGAT, "validation_step", worse_every_epoch)
    cfg = resolve_config(
        "gat", "small", overrides=["training.max_epochs=8", "training.batch_size=64", "gat.patience=2"]
    )
    run = tmp_path / "run"
    first = run_train(cfg, store_dir, run, progress_bar=False).summary
    assert first["stopped_early"] and first["epochs"] == 3  # epochs 0-2: no improvement after 0, patience 2
    weights = torch.load(run / "model.pt", weights_only=False)
    again = run_train(cfg, store_dir, run, progress_bar=False).summary
    assert again["resumed_after_epoch"] == 2 and again["epochs"] == 3 and _epochs_logged(run) == [0, 1, 2]
    again_weights = torch.load(run / "model.pt", weights_only=False)
    assert weights.keys() == again_weights.keys() and all(torch.equal(weights[k], again_weights[k]) for k in weights)


def test_resume_refuses_a_checkpoint_distilled_from_another_teacher(store_dir, teachers, tmp_path):
    """Only the config was compared: a KD student run again after its teacher was trained again resumed from the
    old teacher's checkpoint (the finished run's last epoch) and recorded the new teacher as its input."""
    teacher = tmp_path / "teacher"
    shutil.copytree(teachers / "gat", teacher)
    cfg = resolve_config("gat", "small", aux=["kd_standard"], overrides=FAST)
    run_train(cfg, store_dir, tmp_path / "student", teacher_dir=teacher, progress_bar=False, dataset="a tag")
    again = run_train(cfg, store_dir, tmp_path / "student", teacher_dir=teacher, progress_bar=False, dataset="another")
    assert again.summary["resumed_after_epoch"] == 1  # the MLflow dataset tag is no input of the training
    weights = torch.load(teacher / "model.pt", weights_only=False)
    torch.save({k: v * 1.01 if v.is_floating_point() else v for k, v in weights.items()}, teacher / "model.pt")
    with pytest.raises(KdgatError, match="its checkpoint was trained on another graph store or teacher"):
        run_train(cfg, store_dir, tmp_path / "student", teacher_dir=teacher, progress_bar=False)
    metrics = run_train(cfg, store_dir, tmp_path / "student", teacher_dir=teacher, progress_bar=False, resume=False)
    assert metrics.summary["resumed_after_epoch"] is None
    # the pipeline has no --no-resume to offer: it trains such a step over
    teacher_weights = torch.load(teacher / "model.pt", weights_only=False)
    torch.save({k: v * 1.01 if v.is_floating_point() else v for k, v in teacher_weights.items()}, teacher / "model.pt")
    over = run_train(cfg, store_dir, tmp_path / "student", teacher_dir=teacher, progress_bar=False,
                     restart_on_other_inputs=True)  # fmt: skip
    assert over.summary["resumed_after_epoch"] is None and over.summary["epochs"] == 2


def test_resume_refuses_another_config(store_dir, teachers, tmp_path):
    run = tmp_path / "run"
    run_train(resolve_config("gat", "small", overrides=FAST), store_dir, run, progress_bar=False)
    finished = (run / "manifest.json").read_bytes()
    with pytest.raises(KdgatError, match="another config"):
        run_train(resolve_config("gat", "small", overrides=FAST + ["gat.dropout=0.3"]), store_dir, run)
    # refused before the folder is touched: its manifest removed, the finished run was no longer one (the lake
    # refused it: "the run did not finish")
    assert (run / "manifest.json").read_bytes() == finished
    # another model's section is not this run's config: the pipeline keeps such a step's key, and resumes it
    other = resolve_config("gat", "small", overrides=FAST + ["vgae.dropout=0.3", "hgb.max_iter=7"])
    summary = run_train(other, store_dir, run, progress_bar=False).summary
    assert summary["resumed_after_epoch"] == 1 and summary["epochs"] == 2  # 0-based: after its last epoch


def test_cli_train(store_dir, tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "train",
            "-m",
            "gat",
            "-s",
            "small",
            "--graphs",
            str(store_dir),
            "--out",
            str(tmp_path / "r"),
            "-O",
            "training.max_epochs=1",
        ],
    )
    assert result.exit_code == 0, result.stderr
    assert "parameters" in result.output and (tmp_path / "r" / "model.pt").exists()


def test_evaluate_thresholds_on_validation_and_every_test_scenario(store_dir, teachers, tmp_path):
    from kdgat.evaluation.metrics import binary_metrics, choose_threshold
    from kdgat.evaluation.scoring import score_gat
    from kdgat.stages.evaluate import read_results
    from kdgat.stages.evaluate import run as run_evaluate

    heard = []
    run_evaluate([teachers / "gat", teachers / "vgae"], store_dir, tmp_path / "eval", explain=10, progress=heard.append)
    document = read_results(tmp_path / "eval")
    assert heard[0].startswith("[1/2]") and any("GNNExplainer, graph 1/" in message for message in heard)
    store = open_store(store_dir)
    assert set(document["runs"]) == {"gat_large", "vgae_large"}
    gat = document["runs"]["gat_large"]
    assert set(gat["test"]) == set(store.test_parts())
    # the reported threshold is the F1-optimal one on validation, and test metrics use it unchanged
    model, _ = load_run_model(teachers / "gat", store)
    val_y = np.asarray(store.part("val").y)
    expected = choose_threshold(val_y, score_gat(model, store.part("val"))["score"], "margin")
    assert gat["threshold"]["threshold"] == pytest.approx(expected["threshold"])
    name = sorted(store.test_parts())[0]
    part = store.part(name)
    recomputed = binary_metrics(np.asarray(part.y), score_gat(model, part)["score"], expected["threshold"])
    assert gat["test"][name]["f1"] == pytest.approx(recomputed["f1"])
    for file in ("metrics.json", "curves.json", "embeddings.npz", "attention.npz", "explanations.npz", "manifest.json"):
        assert (tmp_path / "eval" / file).is_file()
    explained = np.load(tmp_path / "eval" / "explanations.npz")
    graphs = explained["gat_large_graph_indices"]
    assert 0 < len(graphs) <= 10 and set(explained["gat_large_labels"].tolist()) == {0, 1}
    node_counts = np.diff(np.asarray(store.part("val").node_offsets))[graphs]
    assert np.array_equal(np.diff(explained["gat_large_node_offsets"]), node_counts)
    assert explained["gat_large_node_mask"].shape[1] == store.num_node_features - 1
    arrays = np.load(tmp_path / "eval" / "embeddings.npz")
    assert arrays["gat_large_embedding"].shape[0] == store.part("val").num_graphs


def test_a_refused_evaluation_leaves_the_earlier_one_whole(store_dir, teachers, tmp_path):
    """The folder was prepared (its manifest removed) before the runs were scored, so an evaluation refused
    on its runs left the earlier evaluation's files without the manifest that vouches for them."""
    from kdgat.stages.evaluate import run as run_evaluate

    run_evaluate([teachers / "gat"], store_dir, tmp_path / "eval")
    finished = (tmp_path / "eval" / "manifest.json").read_bytes()
    twin = tmp_path / "gat_again"
    shutil.copytree(teachers / "gat", twin)
    with pytest.raises(KdgatError, match="a second gat_large run"):
        run_evaluate([teachers / "gat", twin], store_dir, tmp_path / "eval")
    assert (tmp_path / "eval" / "manifest.json").read_bytes() == finished


def test_a_run_folder_a_killed_stage_left_is_read_by_nothing(store_dir, teachers, tmp_path):
    """A re-train killed half way leaves its new config beside the old weights and no manifest: evaluate scored
    the old model under the new config and fuse fitted on it, where only the lake saw the run had not finished."""
    from kdgat.stages.evaluate import run as run_evaluate
    from kdgat.stages.fuse import run as run_fuse

    killed = tmp_path / "gat"
    shutil.copytree(teachers / "gat", killed)
    (killed / "manifest.json").unlink()  # what train removes first, before it writes the new run
    with pytest.raises(KdgatError, match="no manifest.json, so the training run did not finish"):
        run_evaluate([teachers / "vgae", killed], store_dir, tmp_path / "eval")
    assert not (tmp_path / "eval").exists()
    with pytest.raises(KdgatError, match="no manifest.json, so the training run did not finish"):
        run_fuse(resolve_config("dqn", "small", overrides=["fusion.epochs=2"]), "mlp", teachers / "vgae", killed,
                 store_dir, tmp_path / "fusion")  # fmt: skip
    with pytest.raises(KdgatError, match="no manifest.json, so the training run did not finish"):  # as a teacher
        run_train(resolve_config("gat", "small", aux=["kd_standard"], overrides=FAST), store_dir, tmp_path / "kd",
                  teacher_dir=killed)  # fmt: skip


def test_the_same_training_writes_the_same_weight_bytes(store_dir, tmp_path):
    """torch named the archive inside model.pt after the atomic write's unique temporary file, so two runs of one
    config never had the same sha256, and a KD student's run id (which holds its teacher's weights hash) changed
    with every re-run: the lake kept both copies."""
    from kdgat.core.hashing import sha256_file

    cfg = resolve_config("gat", "small", overrides=["training.max_epochs=1", "training.batch_size=64"])
    for name in ("a", "b"):
        run_train(cfg, store_dir, tmp_path / name, progress_bar=False)
    assert sha256_file(tmp_path / "a" / "model.pt") == sha256_file(tmp_path / "b" / "model.pt")


def test_cli_evaluate(store_dir, teachers, tmp_path):
    result = CliRunner().invoke(
        app, ["evaluate", "--runs", str(teachers / "gat"), "--graphs", str(store_dir), "--out", str(tmp_path / "e")]
    )
    assert result.exit_code == 0, result.stderr
    assert "gat_large" in result.output and "validation" in result.output


def test_evaluate_with_compiled_models_gives_the_same_metrics(store_dir, teachers, tmp_path):
    from kdgat.stages.evaluate import read_results
    from kdgat.stages.evaluate import run as run_evaluate

    runs = [teachers / "gat", teachers / "vgae"]
    run_evaluate(runs, store_dir, tmp_path / "eager", explain=0)
    manifest = run_evaluate(runs, store_dir, tmp_path / "compiled", explain=0, compile_models=True)
    eager, compiled = read_results(tmp_path / "eager"), read_results(tmp_path / "compiled")
    for label, result in eager["runs"].items():
        other = compiled["runs"][label]
        assert other["threshold"]["threshold"] == pytest.approx(result["threshold"]["threshold"], rel=1e-4)
        for scenario, metrics in [("validation", result["validation"]), *result["test"].items()]:
            got = other["validation"] if scenario == "validation" else other["test"][scenario]
            assert got["f1"] == pytest.approx(metrics["f1"], abs=1e-6), (label, scenario)
            assert got["roc_auc"] == pytest.approx(metrics["roc_auc"], abs=1e-4), (label, scenario)
    assert manifest.config["compile"] is True


def test_cli_evaluate_compile_without_a_compiler(store_dir, teachers, tmp_path, monkeypatch):
    monkeypatch.setenv("CXX", "no-such-g++")
    out = tmp_path / "e"
    args = ["evaluate", "--runs", str(teachers / "gat"), "--graphs", str(store_dir), "--out", str(out), "--compile"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert "'no-such-g++' is not on PATH" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()  # found before any scoring, and before the output folder is made


@pytest.mark.parametrize("method", ["dqn", "mlp", "weighted"])
def test_fuse_then_evaluate_the_ensemble(store_dir, teachers, tmp_path, method):
    from kdgat.data.split import fusion_halves
    from kdgat.fusion.ensemble import ensemble_scores, load_fusion_run, with_novel_alert
    from kdgat.stages.evaluate import read_results
    from kdgat.stages.evaluate import run as run_evaluate
    from kdgat.stages.fuse import SELECTION, average_precision
    from kdgat.stages.fuse import run as run_fuse

    cfg = resolve_config("dqn", "small", overrides=["dqn.episodes=10", "fusion.epochs=5"])
    metrics = run_fuse(cfg, method, teachers / "vgae", teachers / "gat", store_dir, tmp_path / "fusion").summary
    store = open_store(store_dir)
    assert metrics["fusion_windows"] == int((np.asarray(store.part("fusion").y) >= 0).sum()) > 0
    # fitted on the earlier half of the held-out windows; never worse than its best member on the later half, which it
    # did not fit (else it falls back to that member)
    ensemble, fusion, members = load_fusion_run(tmp_path / "fusion", store)
    part = store.part("fusion")
    held_out, labelled = ensemble.data(part)
    fit_half, select_half = fusion_halves(part.file_index, part.window_start, int(store.metadata["window"]))
    fit_half, select = fit_half[labelled], held_out.take(select_half[labelled])
    assert metrics["out_of_sample_selection"] and (metrics["fit_windows"], metrics["selection_windows"]) == (
        int(fit_half.sum()), len(select)) and 0 < len(select) < len(held_out)  # fmt: skip
    assert metrics["purged_windows"] == len(held_out) - int(fit_half.sum()) - len(select)
    assert metrics["selection"] == SELECTION  # the rules its choices were made by, recorded with them
    ranked = average_precision(select.labels, ensemble_scores(fusion, select, members))
    best_member = max(average_precision(select.labels, s) for s in (select.gat_prob, select.vgae_score))
    assert ranked >= best_member - 1e-9  # up to rounding (AP_ROUNDING)
    ranking = metrics["pr_auc_on_fusion_windows"]  # kept only where it ranks better than its best member: not a tie
    assert (metrics["fallback"] is None) is (ranking["fusion"] > max(ranking["gat"], ranking["vgae"]) + 1e-9)
    # a fusion that gives >= 99 % of its windows to one member (alpha 1: the GAT, 0: the VGAE) says so; by hand from
    # the alpha per window it wrote (the MLP has no per-window weight)
    policy_file = tmp_path / "fusion" / ("dqn_policy.json" if method == "dqn" else "policy.json")
    alpha = np.asarray(json.loads(policy_file.read_text())["alpha"]) if policy_file.exists() else None
    to_gat, to_vgae = (None, None) if alpha is None else (np.mean(alpha > 1 - 1e-6), np.mean(alpha < 1e-6))
    expected = None if alpha is None else "gat" if to_gat >= 0.99 else "vgae" if to_vgae >= 0.99 else None
    assert members["fallback"] == metrics["fallback"] and metrics["collapsed_to"] == expected
    # the default novel_alert (a window holding a CAN ID that benign training traffic lacks scores 1), kept only
    # where it ranks every fusion window, both halves, no worse (the dropping case on hand-made scores:
    # tests/test_fusion.py); its effect on the selection windows is reported
    ranking = metrics["pr_auc_on_fusion_windows"]
    plain = ensemble_scores(fusion, select, {"fallback": members["fallback"]})
    counts = metrics["novel_windows"]
    assert (counts["benign"], counts["attack"]) == (int((select.novel & (select.labels == 0)).sum()),
                                                    int((select.novel & (select.labels == 1)).sum()))  # fmt: skip
    with_rule = average_precision(select.labels, with_novel_alert(plain, select.novel))
    assert ranking["with_novel_alert"] == pytest.approx(with_rule)
    everywhere = ensemble_scores(fusion, held_out, {"fallback": members["fallback"]})
    rule_everywhere = average_precision(held_out.labels, with_novel_alert(everywhere, held_out.novel))
    decided = metrics["novel_alert_decided_on"]
    assert decided["windows"] == len(held_out) and decided["with_novel_alert"] == pytest.approx(rule_everywhere)
    assert decided["novel_windows"]["benign"] == int((held_out.novel & (held_out.labels == 0)).sum())
    assert (
        members["novel_alert"]
        is metrics["novel_alert"]
        is (rule_everywhere >= average_precision(held_out.labels, everywhere) - 1e-9)
    )
    assert not metrics["novel_alert_unavailable"] and metrics["novel_alert_dropped"] is not metrics["novel_alert"]
    for name in ("fusion.pt", "members.json", "config.json", "metrics.json", "manifest.json"):
        assert (tmp_path / "fusion" / name).is_file()
    listed = {o["path"] for o in json.loads((tmp_path / "fusion" / "manifest.json").read_text())["outputs"]}
    policies = {p.name for p in (tmp_path / "fusion").glob("*policy.json")}
    assert listed == {"fusion.pt", "members.json", "config.json", "metrics.json"} | policies
    assert policies == {"dqn": {"dqn_policy.json"}, "weighted": {"policy.json"}, "mlp": set()}[method]
    run_evaluate([tmp_path / "fusion"], store_dir, tmp_path / "eval")
    document = read_results(tmp_path / "eval")
    (label,) = document["runs"]
    assert label == f"fusion_{method}_large"
    result = document["runs"][label]
    assert result["threshold"]["policy"] == "margin" and set(result["test"]) == set(open_store(store_dir).test_parts())
    assert result["novel_alert"] is members["novel_alert"] and set(result["novel_windows"]) == {
        "validation",
        *result["test"],
    }
    members = sum(json.loads((teachers / k / "metrics.json").read_text())["parameters"] for k in ("vgae", "gat"))
    assert result["parameters"] == metrics["ensemble_parameters"] == members + metrics["fusion_parameters"]
    if method == "dqn":
        policy = json.loads((tmp_path / "eval" / "dqn_policy.json").read_text())[label]
        assert "mean_alpha" in json.dumps(policy)


def test_a_refused_fusion_leaves_the_finished_one_whole(store_dir, teachers, mlp_fusion, tmp_path):
    """The folder was prepared (its manifest removed) before the fusion part was checked: a fusion refused on a
    store whose fusion part holds one class left the finished fusion's files without their manifest."""
    from kdgat.stages.fuse import run as run_fuse

    fusion, store = tmp_path / "fusion", tmp_path / "store"
    shutil.copytree(mlp_fusion / "fusion", fusion)
    shutil.copytree(store_dir, store)
    labels = store / "parts" / "fusion" / "y.npy"
    np.save(labels, np.zeros_like(np.load(labels)))  # every fusion window benign
    finished = (fusion / "manifest.json").read_bytes()
    with pytest.raises(KdgatError, match="lacks attack or benign windows"):
        run_fuse(resolve_config("dqn", "small", overrides=["fusion.epochs=5"]), "mlp", teachers / "vgae",
                 teachers / "gat", store, fusion)  # fmt: skip
    assert (fusion / "manifest.json").read_bytes() == finished


def test_a_training_that_diverged_is_refused_and_its_nan_weights_never_scored(store_dir, teachers, tmp_path):
    """A learning rate of 1e30 makes the loss NaN at once: the run was recorded as finished ('best validation
    loss inf'), and evaluate then stopped on a ValueError's traceback. Both say what happened in one line."""
    from kdgat.stages.evaluate import run as run_evaluate
    from kdgat.training.runs import save_weights

    cfg = resolve_config("gat", "small", overrides=[*FAST, "training.lr=1e30"])
    with pytest.raises(KdgatError, match=r"training diverged: its val_loss was never finite .*\(training\.lr"):
        run_train(cfg, store_dir, tmp_path / "diverged", progress_bar=False)
    assert not (tmp_path / "diverged" / "manifest.json").exists()  # an unfinished run: nothing takes it

    nan = tmp_path / "nan"  # weights of a diverged training written by a version before the check
    shutil.copytree(teachers / "gat", nan)
    weights = torch.load(nan / "model.pt", weights_only=True)
    save_weights({k: v.fill_(float("nan")) if v.is_floating_point() else v for k, v in weights.items()},
                 nan / "model.pt")  # fmt: skip
    manifest = json.loads((nan / "manifest.json").read_text())  # the manifest's sha256 of the weights follows
    for item in manifest["outputs"]:
        if item["path"] == "model.pt":
            item["sha256"] = hashlib.sha256((nan / "model.pt").read_bytes()).hexdigest()
    (nan / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(KdgatError, match=rf"{nan}: \d+ of its \d+ scores on part 'val' are NaN or infinite"):
        run_evaluate([nan], store_dir, tmp_path / "eval")


def test_fuse_refuses_members_trained_on_another_store(store_dir, teachers, tmp_path):
    """Evaluate and export refuse runs scored on a store they did not train on; fuse fitted them there silently,
    and its manifest records only its own store, so evaluate took the fusion afterwards."""
    from kdgat.stages.fuse import run as run_fuse

    other = tmp_path / "other"
    shutil.copytree(store_dir, other)
    meta = json.loads((other / "metadata.json").read_text())
    (other / "metadata.json").write_text(json.dumps({**meta, "window": 50, "stride": 50}))  # same vocabulary
    with pytest.raises(KdgatError, match=f"{teachers / 'vgae'}: trained on another graph store than {other}"):
        run_fuse(resolve_config("dqn", "small", overrides=["fusion.epochs=2"]), "weighted", teachers / "vgae",
                 teachers / "gat", other, tmp_path / "fusion")  # fmt: skip
    assert not (tmp_path / "fusion").exists()


def test_fuse_says_the_novel_id_rule_is_off_without_a_vgae_that_marks_novel_ids(store_dir, teachers, tmp_path):
    """A VGAE run made before novel_first (id_feature_max, whose +1000 does not put novel windows apart): the
    rule is off, the CLI says why, and the fusion scores as before it existed."""
    vgae = tmp_path / "vgae"
    shutil.copytree(teachers / "vgae", vgae)
    config = json.loads((vgae / "config.json").read_text())
    config["vgae"]["window_score"] = "id_feature_max"
    (vgae / "config.json").write_text(json.dumps(config))
    args = ["fuse", "--method", "weighted", "--vgae", vgae, "--gat", teachers / "gat", "--graphs", store_dir,
            "--out", tmp_path / "fusion", "-O", "fusion.epochs=3"]  # fmt: skip
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.stderr
    assert "its VGAE's window score does not say which windows hold a novel CAN ID" in result.stderr
    metrics = json.loads((tmp_path / "fusion/metrics.json").read_text())
    assert metrics["novel_alert_unavailable"] and not metrics["novel_alert_dropped"] and not metrics["novel_alert"]
    assert json.loads((tmp_path / "fusion/members.json").read_text())["novel_alert"] is False
    assert metrics["novel_windows"] == {"benign": 0, "attack": 0}  # that VGAE marks none
    assert "with_novel_alert" not in metrics["pr_auc_on_fusion_windows"]


@pytest.fixture(scope="module")
def mlp_fusion(store_dir, teachers, tmp_path_factory):
    """An MLP fusion of the teachers, and its evaluation alone (with window scores)."""
    from kdgat.stages.evaluate import run as run_evaluate
    from kdgat.stages.fuse import run as run_fuse

    root = tmp_path_factory.mktemp("mlp_fusion")
    cfg = resolve_config("dqn", "small", overrides=["fusion.epochs=5"])
    run_fuse(cfg, "mlp", teachers / "vgae", teachers / "gat", store_dir, root / "fusion")
    run_evaluate([root / "fusion"], store_dir, root / "alone", scores=True)
    return root


def test_a_fusion_whose_member_was_trained_again_is_refused(store_dir, teachers, tmp_path):
    """members.json named the member folders only: a GAT trained again in place was scored beside the old fusion
    weights and VGAE scale, silently."""
    from kdgat.stages.evaluate import run as run_evaluate
    from kdgat.stages.fuse import run as run_fuse

    members = tmp_path / "members"
    for kind in ("vgae", "gat"):
        shutil.copytree(teachers / kind, members / kind)
    cfg = resolve_config("dqn", "small", overrides=["fusion.epochs=2"])
    run_fuse(cfg, "mlp", members / "vgae", members / "gat", store_dir, tmp_path / "fusion")
    recorded = json.loads((tmp_path / "fusion" / "members.json").read_text())
    assert recorded["gat_sha256"] == hashlib.sha256((members / "gat" / "model.pt").read_bytes()).hexdigest()
    weights = torch.load(members / "gat" / "model.pt", weights_only=False)
    torch.save({k: v + 0.01 if v.is_floating_point() else v for k, v in weights.items()}, members / "gat" / "model.pt")
    with pytest.raises(KdgatError, match=r"its GAT member .*gat holds other weights than the fusion was fitted with"):
        run_evaluate([tmp_path / "fusion"], store_dir, tmp_path / "eval")
    assert not (tmp_path / "eval" / "manifest.json").exists()


def _fusion_entry(folder: Path, label: str = "fusion_mlp_large"):
    from kdgat.stages.evaluate import read_results

    entry = dict(read_results(folder)["runs"][label])
    entry.pop("mlflow", None)
    rows = pq.read_table(folder / "scores.parquet").to_pandas()
    return entry, rows[rows.run == label].reset_index(drop=True)


@pytest.mark.parametrize("order", ["members first", "fusion first", "gat only"])
def test_evaluate_scores_a_fusions_members_once(store_dir, teachers, mlp_fusion, tmp_path, monkeypatch, order):
    """Each model is scored once per part whatever the order of the runs (a member not in the call is
    scored by the fusion), the results keep the order given, and the fusion's figures and window scores
    are the ones it gets evaluated alone, bit for bit."""
    import kdgat.evaluation.scoring as scoring
    import kdgat.fusion.ensemble as ensemble_module
    from kdgat.stages.evaluate import read_results
    from kdgat.stages.evaluate import run as run_evaluate

    calls = []
    for name in ("score_vgae", "score_gat"):
        original = getattr(scoring, name)

        def counted(model, part, *args, _name=name, _original=original, **kwargs):
            calls.append(_name)
            return _original(model, part, *args, **kwargs)

        for module in (scoring, ensemble_module):  # the members' own scoring, and the fusion's
            monkeypatch.setattr(module, name, counted)
    vgae, gat, fusion = teachers / "vgae", teachers / "gat", mlp_fusion / "fusion"
    runs = {"members first": [vgae, gat, fusion], "fusion first": [fusion, gat, vgae], "gat only": [gat, fusion]}
    run_evaluate(runs[order], store_dir, tmp_path / "together", scores=True)
    parts = 1 + len(open_store(store_dir).test_parts())  # validation and every test part
    assert sorted(calls) == ["score_gat"] * parts + ["score_vgae"] * parts  # not twice each
    labels = {vgae: "vgae_large", gat: "gat_large", fusion: "fusion_mlp_large"}
    together = tmp_path / "together"
    assert list(read_results(together)["runs"]) == [labels[r] for r in runs[order]]
    written = pq.read_table(together / "scores.parquet").column("run").to_pylist()
    assert list(dict.fromkeys(written)) == [labels[r] for r in runs[order]]  # score rows in that order too
    (alone, alone_rows), (shared, shared_rows) = _fusion_entry(mlp_fusion / "alone"), _fusion_entry(together)
    assert alone == shared
    assert len(alone_rows) > 0 and alone_rows.equals(shared_rows)


def test_a_compiled_fusion_gives_the_same_numbers_alone_and_beside_its_members(
    store_dir, teachers, mlp_fusion, tmp_path
):
    """With --compile the fusion's members are compiled too (as in kdgat detect): its figures do not depend
    on whether its members share the call."""
    from kdgat.stages.evaluate import run as run_evaluate

    fusion = mlp_fusion / "fusion"
    run_evaluate([fusion], store_dir, tmp_path / "alone", scores=True, compile_models=True)
    run_evaluate([teachers / "vgae", teachers / "gat", fusion], store_dir, tmp_path / "shared", scores=True,
                 compile_models=True)  # fmt: skip
    (alone, alone_rows), (shared, shared_rows) = _fusion_entry(tmp_path / "alone"), _fusion_entry(tmp_path / "shared")
    assert alone == shared and alone_rows.equals(shared_rows)


def test_an_ensemble_never_fits_its_vgae_scale_on_the_windows_it_scores(store_dir, teachers):
    """The VGAE's squashing scale is fitted by `kdgat fuse` on the fit half's benign windows; an ensemble without it
    (a future caller on a test part) used to fit it on whatever part it scored. Now it refuses."""
    from kdgat.fusion.ensemble import Ensemble

    store = open_store(store_dir)
    with pytest.raises(KdgatError, match="VGAE scale is not set"):
        Ensemble(teachers / "vgae", teachers / "gat", store).data(store.part("val"))
    data, _ = Ensemble(teachers / "vgae", teachers / "gat", store, vgae_scale=2.0).data(store.part("val"))
    assert len(data) > 0


def test_fuse_needs_a_vgae_and_a_gat(store_dir, teachers, tmp_path):
    from kdgat.stages.fuse import run as run_fuse

    with pytest.raises(KdgatError, match="needs a vgae run"):
        run_fuse(resolve_config("dqn", "small"), "mlp", teachers / "gat", teachers / "vgae", store_dir, tmp_path / "f")


def test_training_is_recorded_in_mlflow(store_dir, tmp_path, monkeypatch):
    from kdgat.core.tracking import find_runs

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    metrics = run_train(
        resolve_config("gat", "small", overrides=FAST),
        store_dir,
        tmp_path / "run",
        tracking_uri=uri,
        dataset="synthetic",
    ).summary
    (run,) = find_runs(uri, stage="train")
    assert run["run_id"] == metrics["mlflow"]["run_id"] and run["status"] == "FINISHED"
    assert run["tags"]["dataset"] == "synthetic" and run["tags"]["model"] == "gat" and run["tags"]["kd"] == "False"
    assert run["params"]["gat.heads"] == "4" and "val_loss" in run["metrics"]


def test_fuse_and_evaluate_are_recorded_in_mlflow(store_dir, teachers, tmp_path, monkeypatch):
    from kdgat.core.tracking import find_runs
    from kdgat.stages.evaluate import run as run_evaluate
    from kdgat.stages.fuse import run as run_fuse

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    cfg = resolve_config("dqn", "small", overrides=["fusion.epochs=3"])
    run_fuse(
        cfg,
        "mlp",
        teachers / "vgae",
        teachers / "gat",
        store_dir,
        tmp_path / "f",
        tracking_uri=uri,
        dataset="synthetic",
    )
    run_evaluate([teachers / "gat", tmp_path / "f"], store_dir, tmp_path / "e", tracking_uri=uri, dataset="synthetic")
    (fuse_run,) = find_runs(uri, stage="fuse")
    assert fuse_run["tags"]["model"] == "fusion_mlp" and fuse_run["status"] == "FINISHED"
    evaluated = {r["tags"]["model"]: r for r in find_runs(uri, stage="evaluate")}
    assert set(evaluated) == {"gat_large", "fusion_mlp_large"}
    scenario = sorted(open_store(store_dir).test_parts())[0]
    document = json.loads((tmp_path / "e" / "metrics.json").read_text())
    expected = document["runs"]["gat_large"]["test"][scenario]["f1"]
    assert evaluated["gat_large"]["metrics"][f"{scenario}.f1"] == pytest.approx(expected)
    assert fuse_run["run_name"] == "synthetic/fuse/fusion_mlp_large" and fuse_run["tags"]["seed"] == "42"
    # evaluated again into the same folder: one active MLflow run per model (the earlier ones deleted, restorable)
    run_evaluate([teachers / "gat", tmp_path / "f"], store_dir, tmp_path / "e", tracking_uri=uri, dataset="synthetic")
    again = {r["tags"]["model"]: r for r in find_runs(uri, stage="evaluate")}
    assert set(again) == {"gat_large", "fusion_mlp_large"} and len(find_runs(uri, stage="evaluate")) == 2
    assert again["gat_large"]["run_name"] == "synthetic/evaluate/gat_large"
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("kdgat").experiment_id
    deleted = client.search_runs([experiment], "tags.stage = 'evaluate'", run_view_type=ViewType.DELETED_ONLY)
    assert {r.data.tags["model"]: r.data.tags["kdgat.replaced_by"] for r in deleted} == {
        model: run["run_id"] for model, run in again.items()
    }
    assert {r.info.run_id for r in deleted} == {r["run_id"] for r in evaluated.values()}
    # the same runs evaluated into another folder: another result, the first folder's runs stay
    run_evaluate([teachers / "gat"], store_dir, tmp_path / "e2", tracking_uri=uri, dataset="synthetic")
    active = {r["run_id"] for r in find_runs(uri, stage="evaluate")}
    assert {r["run_id"] for r in again.values()} < active and len(active) == 3


@pytest.mark.parametrize("kind", ["gat", "vgae"])
def test_teacher_stays_frozen_while_the_student_learns(store_dir, teachers, kind):
    from kdgat.models import build_model
    from kdgat.training.lit import LitGAT, LitVGAE

    store = open_store(store_dir)
    teacher, _ = load_run_model(teachers / kind, store)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    cfg = resolve_config(kind, "small", "kd_standard")
    student = build_model(kind, store.vocab_size, cfg.model_section, num_features=store.num_node_features)
    lit = (LitGAT if kind == "gat" else LitVGAE)(student, 1e-2, 0.0, teacher=teacher, kd=cfg.kd)
    optimizer = lit.configure_optimizers()
    batch = assemble_batch(store.part("train"), np.arange(32))
    for _ in range(3):
        optimizer.zero_grad()
        lit.training_step(batch, 0).backward()
        optimizer.step()
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())  # buffers (BatchNorm) too
    assert not any(p is q for p in lit.parameters() for q in teacher.parameters())  # not in the optimiser


def test_hgb_through_train_evaluate_and_the_lake(store_dir, tmp_path):
    """The classical yardstick is a run like the others: trained, evaluated, in the lake."""
    from kdgat.data.window_vectors import window_vectors
    from kdgat.evaluation.metrics import binary_metrics
    from kdgat.lake import append_runs, build_lake, query
    from kdgat.stages.evaluate import read_results
    from kdgat.stages.evaluate import run as run_evaluate

    store = open_store(store_dir)
    metrics = run_train(resolve_config("hgb", "large", overrides=["hgb.max_iter=20"]), store_dir, tmp_path / "hgb")
    summary = metrics.summary
    assert summary["model"] == "hgb" and summary["parameters"] > 0 and summary["epochs"] == 20
    assert {o.path for o in metrics.outputs} == {"model.joblib", "config.json", "metrics.json"}
    model, cfg = load_run_model(tmp_path / "hgb", store)
    assert cfg.model_type == "hgb"

    run_evaluate([tmp_path / "hgb"], store_dir, tmp_path / "eval")
    result = read_results(tmp_path / "eval")["runs"]["hgb_large"]
    assert set(result["test"]) == set(store.test_parts()) and result["threshold"]["policy"] == "margin"
    part = store.part("val")
    vectors, names = window_vectors(part, store.vocab_size, store.metadata["node_features"])
    p_attack = model.estimator.predict_proba(vectors[:, model.keep])[:, 1]
    y = np.asarray(part.y)
    recomputed = binary_metrics(y[y >= 0], p_attack[y >= 0], result["threshold"]["threshold"])
    assert result["validation"]["f1"] == pytest.approx(recomputed["f1"])
    assert len(names) == vectors.shape[1] and "nodes" in names

    # trees over window vectors have no node to point at: not a detector bundle member
    from kdgat.stages.export import run as run_export

    with pytest.raises(KdgatError, match="a hgb run cannot go into a detector bundle"):
        run_export([tmp_path / "hgb"], tmp_path / "bundle", evaluation=tmp_path / "eval", graphs_dir=store_dir)
    assert not (tmp_path / "bundle").exists()

    lake = tmp_path / "lake"
    append_runs([tmp_path / "hgb", tmp_path / "eval"], lake)
    build_lake(lake)
    rows = query(lake, "SELECT model, family, parameters FROM runs WHERE stage = 'train'").to_pylist()
    assert rows == [{"model": "hgb_large", "family": "hgb", "parameters": summary["parameters"]}]
    scenarios = query(lake, "SELECT count(*) AS n FROM metrics WHERE model = 'hgb_large'").to_pylist()[0]["n"]
    assert scenarios == 1 + len(store.test_parts())

    # a yardstick of another store (here: its recorded vocabulary made another) is refused before any run is
    # scored, as a GNN is: the check came only when its model was loaded, after the runs before it were scored
    other = tmp_path / "hgb_other"
    shutil.copytree(tmp_path / "hgb", other)
    recorded = json.loads((other / "metrics.json").read_text())
    (other / "metrics.json").write_text(json.dumps({**recorded, "vocab_size": store.vocab_size + 5}))
    heard = []
    with pytest.raises(KdgatError, match=rf"trained on a store with {store.vocab_size + 5} IDs"):
        run_evaluate([tmp_path / "hgb", other], store_dir, tmp_path / "eval2", progress=heard.append)
    assert heard == [] and not (tmp_path / "eval2").exists()


def test_a_run_records_the_preprocessing_of_the_store_it_trained_on(store_dir, teachers, tmp_path):
    """How windows were cut is the store's: a command line that says otherwise (a Nextflow task is given only its
    own model's overrides) was recorded as the run's config, and the lake's configs table, its identity and its
    setup hash read a stride the run never saw."""
    from kdgat.lake import append_runs, query
    from kdgat.stages.fuse import run as run_fuse

    stored = json.loads((store_dir / "metadata.json").read_text())["preprocessing"]
    said = [f"preprocessing.stride={stored['stride'] // 2}", "preprocessing.feature_set=e4"]
    run_train(resolve_config("hgb", "large", overrides=["hgb.max_iter=5", *said]), store_dir, tmp_path / "hgb")
    run_train(resolve_config("gat", "small", overrides=FAST + said), store_dir, tmp_path / "gat", progress_bar=False)
    cfg = resolve_config("dqn", "small", overrides=["fusion.epochs=2", *said])
    run_fuse(cfg, "weighted", teachers / "vgae", teachers / "gat", store_dir, tmp_path / "fusion")
    for run in (tmp_path / "hgb", tmp_path / "gat", tmp_path / "fusion"):
        assert json.loads((run / "config.json").read_text())["preprocessing"] == stored, run
    append_runs([tmp_path / "hgb"], tmp_path / "lake")
    rows = query(tmp_path / "lake", "SELECT stride, feature_set FROM configs").to_pylist()
    assert rows == [{"stride": stored["stride"], "feature_set": stored["feature_set"]}]


def test_a_run_records_the_store_it_opened_when_the_store_is_rebuilt_in_place_meanwhile(store_dir, tmp_path):
    """The run's manifest took the store's hash when it ended: a store rebuilt in place during training (another
    stride) was recorded as the one trained on, evaluate scored the model on it, and refused the identical copy of
    the store it did train on."""
    import lightning as L

    from kdgat.stages.evaluate import run as run_evaluate

    store = tmp_path / "graphs"
    shutil.copytree(store_dir, store)
    trained_on = store_dir / "metadata.json"

    class RebuildTheStore(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            if trainer.current_epoch == 0:
                run_graphs(
                    store_dir.parent / "frames",
                    store,
                    resolve_config("gat", "large", overrides=["preprocessing.stride=50"]).preprocessing,
                )

    run_train(resolve_config("gat", "small", overrides=FAST), store, tmp_path / "run", callbacks=[RebuildTheStore()])
    assert (store / "metadata.json").read_bytes() != trained_on.read_bytes()  # rebuilt while it trained
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    (recorded,) = [i for i in manifest["inputs"] if i["path"].endswith("metadata.json")]
    assert recorded["sha256"] == hashlib.sha256(trained_on.read_bytes()).hexdigest()
    with pytest.raises(KdgatError, match="trained on another graph store"):
        run_evaluate([tmp_path / "run"], store, tmp_path / "eval_rebuilt")
    run_evaluate([tmp_path / "run"], store_dir, tmp_path / "eval_own")  # the copy of the store it trained on


@pytest.mark.parametrize("stage", ["evaluate", "fuse", "hgb"])
def test_a_rerun_that_fails_late_keeps_the_finished_output_whole(store_dir, teachers, tmp_path, monkeypatch, stage):
    """README: a command stopped or failed leaves the earlier output in its folder as it was. evaluate, fuse and the
    yardsticks removed the manifest before their work and wrote their files in place: an MLflow store that could not
    be written (or a full disk, or a stop signal) left a folder with no manifest, which the lake, fuse and export
    refuse, and for hgb the new config.json beside the old model."""
    from kdgat.stages.evaluate import run as run_evaluate
    from kdgat.stages.fuse import run as run_fuse

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = tmp_path / "out"

    def again(tracking_uri: str, other: bool):
        if stage == "evaluate":
            run_evaluate(
                [teachers / "gat"], store_dir, out, policy="f1" if other else "margin", tracking_uri=tracking_uri
            )
        elif stage == "fuse":
            cfg = resolve_config("dqn", "small", overrides=[f"fusion.epochs={2 if other else 3}"])
            run_fuse(cfg, "weighted", teachers / "vgae", teachers / "gat", store_dir, out, tracking_uri=tracking_uri)
        else:
            cfg = resolve_config("hgb", "large", overrides=[f"hgb.max_iter={7 if other else 5}"])
            run_train(cfg, store_dir, out, tracking_uri=tracking_uri)

    again(f"sqlite:///{tmp_path}/mlruns.db", other=False)
    finished = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(KdgatError, match="no-such-folder"):  # after the work, where it records the run
        again("sqlite:////proc/no-such-folder/mlruns.db", other=True)
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == finished
    assert not [p for p in out.iterdir() if p.name.startswith(".staging-")]  # no staging folder left


def test_an_evaluation_run_again_without_scores_leaves_no_scores_of_the_last_one(store_dir, teachers, tmp_path):
    """Files an earlier run listed and a re-run does not write go when it is put in place (a scores.parquet of
    other runs or thresholds stayed beside the new evaluation)."""
    from kdgat.core.run_files import SCORES_FILE
    from kdgat.stages.evaluate import run as run_evaluate

    run_evaluate([teachers / "gat"], store_dir, tmp_path / "eval", scores=True)
    assert (tmp_path / "eval" / SCORES_FILE).is_file()
    manifest = run_evaluate([teachers / "gat"], store_dir, tmp_path / "eval", policy="f1")
    assert not (tmp_path / "eval" / SCORES_FILE).exists() and SCORES_FILE not in manifest.output_paths()


def test_window_vectors_describe_each_graph(store_dir):
    from kdgat.data.window_vectors import window_vectors

    store = open_store(store_dir)
    part = store.part(sorted(store.test_parts())[0])
    vectors, names = window_vectors(part, store.vocab_size, store.metadata["node_features"])
    offsets = np.asarray(part.node_offsets)
    ids = np.asarray(part.x)[:, 0].astype(int)
    present = vectors[:, [names.index(f"id{i}_present") for i in range(store.vocab_size)]]
    for g in (0, part.num_graphs // 2, part.num_graphs - 1):
        assert set(np.flatnonzero(present[g])) == set(ids[offsets[g] : offsets[g + 1]])
        assert vectors[g, names.index("nodes")] == offsets[g + 1] - offsets[g]


def test_evaluate_says_when_validation_holds_no_window(store_dir, tmp_path):
    """Held-out blocks shorter than a window leave 'val' empty (graphs warns): evaluate has nothing to choose a
    threshold on, and says so in one line instead of a ValueError's traceback."""
    from kdgat.core.errors import KdgatError
    from kdgat.stages.evaluate import run as run_evaluate
    from kdgat.stages.graphs import run as run_graphs

    frames = store_dir.parent / "frames"
    preprocessing = resolve_config("gat", "large", overrides=["preprocessing.val_blocks=1"]).preprocessing
    run_graphs(frames, tmp_path / "graphs", preprocessing)
    val = open_store(tmp_path / "graphs").parts.get("val")
    assert val is None or val.num_graphs == 0
    run_train(resolve_config("hgb", "large", overrides=["hgb.max_iter=5"]), tmp_path / "graphs", tmp_path / "hgb")
    with pytest.raises(KdgatError, match="its 'val' part holds no labelled window to choose thresholds on; rebuild"):
        run_evaluate([tmp_path / "hgb"], tmp_path / "graphs", tmp_path / "eval")
    assert not (tmp_path / "eval").exists()


def test_hgb_fits_when_a_column_has_no_value_in_its_training_windows(store_dir):
    """An ID that never occurs in the training windows (the unknown-ID slot on a capture without
    fuzzing, as on DAGA) leaves its timing and payload columns all NaN; scikit-learn cannot bin such a
    column, so the model must still fit and score every window."""
    from kdgat.data.window_vectors import window_vectors
    from kdgat.models.boosting import WindowBoosting

    store = open_store(store_dir)
    part = store.part("train")
    vectors, names = window_vectors(part, store.vocab_size, store.metadata["node_features"])
    y = np.asarray(part.y)
    without_unknown = np.flatnonzero((vectors[:, names.index("unknown_ids")] == 0) & (y >= 0))
    assert set(y[without_unknown]) == {0, 1}
    assert np.isnan(vectors[without_unknown]).all(axis=0).any()  # the case under test is present

    cfg = resolve_config("hgb", "large", overrides=["hgb.max_iter=5"]).hgb
    model = WindowBoosting(cfg, store.vocab_size, store.metadata["node_features"]).fit(part, without_unknown)
    empty = np.isnan(vectors[without_unknown]).all(axis=0)
    assert np.array_equal(model.keep, ~empty) and len(model.columns) == int((~empty).sum())
    p_attack = model.p_attack(part)  # scored on the same columns, including windows that do hold the slot
    assert p_attack.shape == (part.num_graphs,) and np.isfinite(p_attack).all()
    assert model.estimator.n_features_in_ == len(model.columns)


def test_supervised_models_refuse_a_store_without_attack_windows_and_write_nothing(data_root, tmp_path):
    """A GAT (or hgb) trained on attack-free windows only would be a constant; refused in one line,
    before the run folder is touched. The VGAE and the benign-only novelty yardstick train on the same
    store."""

    run_ingest(dataset_sources("crysys", load_catalog()["crysys"], data_root), tmp_path / "frames")
    run_graphs(tmp_path / "frames", tmp_path / "graphs", resolve_config("gat", "large").preprocessing)
    for model in ("gat", "hgb"):
        with pytest.raises(KdgatError, match=f"{model} needs attack and benign training windows"):
            run_train(resolve_config(model, "large", overrides=FAST), tmp_path / "graphs", tmp_path / model)
        assert not (tmp_path / model).exists() or not any((tmp_path / model).iterdir())
    metrics = run_train(resolve_config("vgae", "small", overrides=FAST), tmp_path / "graphs", tmp_path / "vgae")
    assert metrics.summary["epochs"] == 2
    metrics = run_train(resolve_config("novelty", "large"), tmp_path / "graphs", tmp_path / "novelty")
    # every training window is benign here: it fits on all of them (benign-only: tests/test_novelty.py)
    assert metrics.summary["train_graphs"] == len(open_store(tmp_path / "graphs").part("train").y)


def test_a_run_folder_reused_for_another_model_kind_keeps_only_its_weights(store_dir, tmp_path):
    """hgb then GAT into one folder: the GAT's model.pt is what model_file() and the manifest name."""
    from kdgat.training.runs import model_file

    run_train(resolve_config("hgb", "large", overrides=["hgb.max_iter=5"]), store_dir, tmp_path / "run")
    assert model_file(tmp_path / "run").name == "model.joblib"
    manifest = run_train(
        resolve_config("gat", "small", overrides=FAST), store_dir, tmp_path / "run", progress_bar=False
    )
    assert not (tmp_path / "run" / "model.joblib").exists()
    assert model_file(tmp_path / "run").name == "model.pt"
    assert "model.pt" in {o.path for o in manifest.outputs}
    model, cfg = load_run_model(tmp_path / "run", open_store(store_dir))
    assert cfg.model_type == "gat" and isinstance(model, torch.nn.Module)


def test_an_id_free_gat_keeps_its_per_id_statistics_with_its_weights(store_dir, tmp_path):
    """``gat.id_input=zscore``: the per-ID statistics are fitted on the benign training windows before
    training and saved with the weights; a resumed run keeps them (it does not fit them again)."""
    from kdgat.models.gat import CONSTANT_COLUMN_STD, ID_STATS_MIN_NODES, ID_STD_FLOOR

    cfg = resolve_config("gat", "small", overrides=[*FAST, "gat.id_input=zscore"])
    run_train(cfg, store_dir, tmp_path / "r", progress_bar=False)
    store = open_store(store_dir)
    model, loaded_cfg = load_run_model(tmp_path / "r", store)
    assert loaded_cfg.gat.id_input == "zscore" and "id_embedding.weight" not in model.state_dict()

    train = store.part("train")
    batch = assemble_batch(train, np.arange(len(np.asarray(train.y))))
    benign = (batch.y[batch.batch] == 0) & (batch.x[:, 1:] != 0).any(1)  # nodes with a frame of their own
    ids, feats = batch.x[benign, 0].long(), batch.x[benign, 1:]
    fitted = [i for i in range(store.vocab_size - 1) if (ids == i).sum() >= ID_STATS_MIN_NODES]
    assert len(fitted) >= 3
    constant = feats.double().std(0, correction=0) < 1e-9  # has_timestamps: 1 on every node with a frame
    assert constant.any() and not constant.all()
    for i in fitted:
        torch.testing.assert_close(model.id_mean[i], feats[ids == i].mean(0), atol=1e-5, rtol=1e-4)
        own_std = feats[ids == i].double().std(0, correction=0).clamp_min(ID_STD_FLOOR).float()
        own_std[constant] = CONSTANT_COLUMN_STD  # a column no benign node varies in reads 0
        torch.testing.assert_close(model.id_std[i], own_std, atol=1e-5, rtol=1e-4)
    counts = torch.bincount(ids, minlength=store.vocab_size)
    assert model.id_novel.tolist() == [float(c < ID_STATS_MIN_NODES) for c in counts[:-1].tolist()] + [1.0]

    # resuming (here: the finished run, with another model's setting changed) restores, not refits, them
    fitted_mean = model.id_mean.clone()
    with unittest.mock.patch("kdgat.models.gat.GATJK.fit_id_statistics", side_effect=AssertionError("refit")):
        resumed = run_train(cfg.model_copy(update={"vgae": cfg.vgae.model_copy(update={"dropout": 0.3})}),
                            store_dir, tmp_path / "r", progress_bar=False)  # fmt: skip
    assert resumed.summary["resumed_after_epoch"] == 1  # 0-based: after its last epoch
    assert torch.equal(load_run_model(tmp_path / "r")[0].id_mean, fitted_mean)


def test_a_gat_with_the_studys_embedding_still_trains_and_reloads(store_dir, tmp_path):
    """``gat.id_input=embedding``: the weights hold the embedding (and no per-ID statistics, as before the
    option existed), and the run folder rebuilds the same model."""
    run_train(resolve_config("gat", "small", overrides=[*FAST, "gat.id_input=embedding"]), store_dir, tmp_path / "r")
    state = torch.load(tmp_path / "r" / "model.pt", weights_only=True)
    assert "id_embedding.weight" in state and "id_mean" not in state
    assert "id_input" not in json.loads((tmp_path / "r" / "config.json").read_text())["gat"]
    model, cfg = load_run_model(tmp_path / "r", open_store(store_dir))
    assert cfg.gat.id_input == "embedding" and model.id_embedding.num_embeddings == open_store(store_dir).vocab_size


def test_weights_of_another_model_shape_are_refused_in_one_line(store_dir, teachers, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(teachers / "gat", run)
    state = torch.load(run / "model.pt", weights_only=True)
    state["from_another_version"] = torch.zeros(3)  # a buffer this model does not have
    torch.save(state, run / "model.pt")
    with pytest.raises(KdgatError, match=r"model.pt: the weights do not fit this kdgat's gat \(Unexpected key"):
        load_run_model(run)


def test_evaluate_scores_runs_on_their_own_store_or_one_built_like_it(store_dir, teachers, tmp_path):
    """Only the vocabulary size and feature count were compared: a store of other windows (another stride, another
    dataset of as many IDs) was scored, its validation part chose thresholds, and its figures were reported."""
    from kdgat.stages.evaluate import run as run_evaluate

    frames = store_dir.parent / "frames"
    prep = resolve_config("gat", "large").preprocessing
    other = tmp_path / "other"
    run_graphs(frames, other, prep.model_copy(update={"stride": 50}))
    assert open_store(other).vocab_size == open_store(store_dir).vocab_size  # the old check let it through
    with pytest.raises(KdgatError, match="trained on another graph store than .*other.*for new captures, one built"):
        run_evaluate([teachers / "gat"], other, tmp_path / "e_other")
    run_evaluate([teachers / "gat"], store_dir, tmp_path / "e")
    run_graphs(frames, tmp_path / "like", prep, like=store_dir)
    run_evaluate([teachers / "gat"], tmp_path / "like", tmp_path / "e_like", thresholds=tmp_path / "e")
    run_graphs(frames, tmp_path / "like_other", prep.model_copy(update={"stride": 50}), like=other)
    with pytest.raises(KdgatError, match="built --like another store than"):
        run_evaluate([teachers / "gat"], tmp_path / "like_other", tmp_path / "e2", thresholds=tmp_path / "e")


def test_evaluate_names_a_part_without_labels_and_records_the_policy_it_used(
    store_dir, teachers, data_root, tmp_path
):  # fmt: skip
    """A capture without labels in a --like store gave an empty evaluation without a word; --threshold beside
    --thresholds was recorded as the policy used though the recorded thresholds were."""
    from kdgat.core.manifest import read_manifest
    from kdgat.data.capture import sources_from_files
    from kdgat.stages.evaluate import run as run_evaluate

    run_evaluate([teachers / "gat"], store_dir, tmp_path / "e")
    run_ingest(sources_from_files([data_root / "otids" / "Attack_free_dataset_10k.txt.xz"]), tmp_path / "frames")
    run_graphs(tmp_path / "frames", tmp_path / "like", resolve_config("gat", "large").preprocessing, like=store_dir)
    result = CliRunner().invoke(app, ["evaluate", "--runs", str(teachers / "gat"), "--graphs", str(tmp_path / "like"),
                                      "--thresholds", str(tmp_path / "e"), "--threshold", "youden",
                                      "--out", str(tmp_path / "e_like")])  # fmt: skip
    assert result.exit_code == 0, result.output
    said = " ".join(result.stderr.split())
    assert "warning: test__Attack_free_dataset_10k: no window of this part has a label, so none was scored" in said
    manifest = read_manifest(tmp_path / "e_like")
    assert (
        manifest.config["threshold_policy"] == manifest.summary["threshold_policy"] == f"recorded in {tmp_path / 'e'}"
    )
