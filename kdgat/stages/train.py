"""The train stage: one model (VGAE or GAT, large or small, with or without KD) on a graph store.

A run directory holds everything needed to rebuild the model elsewhere:
``model.pt`` (best weights), ``config.json`` (the frozen config it ran with),
``metrics.json`` and ``manifest.json`` (written last), plus Lightning's
``checkpoints/`` (``last.ckpt`` lets an interrupted run resume) and
``logs/metrics.csv`` (per-epoch curves). A KD student is trained against a
teacher rebuilt from the teacher's own run directory and frozen config.

With ``checkpoint_dir`` the checkpoints and the epoch log live in
``<checkpoint_dir>/<run key>/`` instead (durable storage keyed by what the run
is, :func:`kdgat.training.preemption.run_key`), and the log is copied into the
run directory at the end. SIGTERM or SIGUSR2 stop training at the end of the
current batch; the stage then raises :class:`kdgat.core.errors.Interrupted`
(exit 143 / 140) and the same command resumes from the last finished epoch.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import shutil
import signal
import sys
import time
import warnings
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins.environments import LightningEnvironment
from lightning.pytorch.utilities.exceptions import SIGTERMException

from kdgat.core.accelerator import resolve_accelerator
from kdgat.core.atomic import atomic_write_text, check_output_folder, ensure_folder
from kdgat.core.config import (
    SUPERVISED_MODELS,
    WINDOW_VECTOR_MODELS,
    config_hash,
    config_to_json,
    load_frozen_config,
    model_config_hash,
    trained_on,
)
from kdgat.core.errors import Interrupted, KdgatError, UsageError
from kdgat.core.locks import writing
from kdgat.core.manifest import Manifest, begin_output, file_entry, refuse_other_output, write_manifest
from kdgat.core.publish import publish_output, staged_output
from kdgat.core.run_files import CONFIG_FILE, METRICS_FILE, MODEL_FILE, WINDOW_MODEL_FILE
from kdgat.core.schema import PipelineConfig
from kdgat.core.stage_log import log_stage
from kdgat.core.threads import set_threads
from kdgat.data.store import GraphStore, open_store
from kdgat.models import build_model
from kdgat.training.datamodule import GraphDataModule
from kdgat.training.kd import count_parameters
from kdgat.training.lit import LitGAT, LitVGAE
from kdgat.training.preemption import (
    AtomicCheckpointIO,
    KeepFinished,
    KeepRandomState,
    StopOnSignal,
    TrainingStopped,
    run_key,
    test_pause,
)
from kdgat.training.runs import load_run_model, model_file, run_label, save_weights, weights_name
from kdgat.training.window_models import fit_window_model


def _keep_earlier_curves(earlier: str, curves: Path) -> None:
    """Lightning's CSV logger starts a fresh file on resume; put back the epochs before the resumed one."""
    old = list(csv.DictReader(io.StringIO(earlier)))
    new = list(csv.DictReader(io.StringIO(curves.read_text()))) if curves.exists() else []
    first_new = min((int(r["epoch"]) for r in new if r.get("epoch")), default=None)
    kept = [r for r in old if first_new is None or int(r["epoch"]) < first_new]
    fields = list(dict.fromkeys([*(old[0].keys() if old else []), *(new[0].keys() if new else [])]))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(kept + new)
    atomic_write_text(curves, buffer.getvalue())


def _begin_run_folder(out_dir: Path, model_type: str) -> None:
    """Remove the old manifest, and weights of another kind that an earlier run left in this folder."""
    begin_output(out_dir)
    _drop_other_weights(out_dir, model_type)


def _drop_other_weights(out_dir: Path, model_type: str) -> None:
    for name in {MODEL_FILE, WINDOW_MODEL_FILE} - {weights_name(model_type)}:
        (out_dir / name).unlink(missing_ok=True)


def _refuse_diverged(weights: dict, best_score, cfg: PipelineConfig, epochs: int) -> None:
    """A training whose monitored value (val_loss) was never finite, or whose kept weights are not, diverged: its
    weights score NaN. Recorded as finished, it went on to evaluate (a traceback) and into bundles. The folder keeps no
    manifest (an unfinished run)."""
    loss_finite = best_score is not None and bool(torch.isfinite(torch.as_tensor(best_score)))
    weights_finite = all(bool(torch.isfinite(v).all()) for v in weights.values() if v.is_floating_point())
    if not (loss_finite and weights_finite):
        monitored = cfg.training.monitor
        what = f"its {monitored} was never finite" if not loss_finite else "its weights hold NaN or infinity"
        raise KdgatError(
            f"training diverged: {what} ({epochs} epoch(s)); train again with a lower learning rate "
            f"(training.lr, now {cfg.effective_lr:g}) or gradient clipping (training.gradient_clip)"
        )


def _require_both_classes(store, model_type: str) -> None:
    """A classifier trained on one class is a constant: refuse before the run folder is touched."""
    labels = np.asarray(store.part("train").y)
    if not ((labels == 0).any() and (labels == 1).any()):
        raise KdgatError(f"{store.path}: {model_type} needs attack and benign training windows")


def _quiet_lightning() -> None:
    """Keep Lightning's start-up banners (GPU available..., tips) out of the stage's output."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*is deprecated")  # lightning 2.6 internals
    # On resume the CSV logger announces that earlier log files "will be deleted"; _keep_earlier_curves
    # puts the earlier epochs back, so the warning is wrong here.
    warnings.filterwarnings("ignore", message=r".*Previous log files in this directory will be deleted.*")


RUN_KEY_FILE = "run_key"  # beside the checkpoints: the inputs they were trained on (preemption.run_key)


def run(cfg: PipelineConfig, graphs_dir: str | Path, out_dir: str | Path, **options) -> Manifest:
    """Train one model on a graph store (:func:`_train`, whose options these are), holding its run folder, and the
    durable checkpoint folder where one is given, for this process: a second training into either is refused at
    once (:func:`kdgat.core.locks.writing`)."""
    out_dir = Path(out_dir)
    refuse_other_output(out_dir, "train")  # before the lock file: another stage's folder is not written in
    check_output_folder(out_dir)
    with ExitStack() as held:
        held.enter_context(writing(out_dir, "train"))
        return _train(cfg, graphs_dir, out_dir, hold=held.enter_context, **options)


def _train(
    cfg: PipelineConfig,
    graphs_dir: str | Path,
    out_dir: Path,
    *,
    hold: Callable,
    teacher_dir: str | Path | None = None,
    resume: bool = True,
    progress_bar: bool | None = None,
    callbacks: list | None = None,
    tracking_uri: str | None = None,
    dataset: str | None = None,
    threads: int | None = None,
    checkpoint_dir: str | Path | None = None,
    accelerator: str | None = None,
    restart_on_other_inputs: bool = False,
) -> Manifest:
    """Train one model on a graph store; the manifest's summary holds the run's metrics.

    ``accelerator``: auto, cpu or gpu (:mod:`kdgat.core.accelerator`; else ``$KDGAT_ACCELERATOR``, else auto);
    the classical yardsticks (hgb, novelty) run on the CPU whatever it says. A checkpoint trained on another
    graph store or teacher is refused, or with ``restart_on_other_inputs`` (the pipeline, which has no
    --no-resume to offer) trained over from the start.
    """
    set_threads(threads)
    accelerator = resolve_accelerator(accelerator) if cfg.model_type not in WINDOW_VECTOR_MODELS else "cpu"
    started = time.perf_counter()
    graphs_dir = Path(graphs_dir)
    if cfg.model_type == "dqn":
        raise KdgatError("`kdgat train` trains vgae, gat, hgb or novelty models; dqn is trained by `kdgat fuse`")
    if cfg.has_kd and teacher_dir is None:
        raise UsageError("the kd_standard auxiliary needs --teacher RUN_DIR (a finished large run)")
    if teacher_dir is not None and not cfg.has_kd:
        raise UsageError("--teacher is only used with --aux kd_standard")
    store = open_store(graphs_dir)
    dataset = dataset or store.dataset
    cfg = trained_on(cfg, store.metadata)
    if cfg.model_type in SUPERVISED_MODELS:
        _require_both_classes(store, cfg.model_type)
    if cfg.model_type in WINDOW_VECTOR_MODELS:
        with staged_output(out_dir, "train") as staging:  # a finished run in the folder stays whole until this one is
            atomic_write_text(staging / CONFIG_FILE, config_to_json(cfg))
            metrics = fit_window_model(cfg, store, staging)
            manifest = _record(cfg, store, out_dir, metrics, started, None, dataset, tracking_uri, staging=staging)
        _drop_other_weights(out_dir, cfg.model_type)
        return manifest
    teacher = None
    if teacher_dir is not None:
        teacher_dir = Path(teacher_dir).resolve()  # recorded absolute and resolved: the lake finds it anywhere
        teacher, teacher_cfg = load_run_model(teacher_dir, store)
        if teacher_cfg.model_type != cfg.model_type:
            raise KdgatError(f"{teacher_dir}: a {teacher_cfg.model_type} run cannot teach a {cfg.model_type}")
        if cfg.model_type == "vgae" and teacher_cfg.vgae.target != cfg.vgae.target:
            # the reconstructions are distilled value for value: they must be in the same space
            raise KdgatError(
                f"{teacher_dir}: a VGAE with {teacher_cfg.vgae.target} targets cannot teach one with "
                f"{cfg.vgae.target} targets (vgae.target)"
            )

    _quiet_lightning()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    model = build_model(
        cfg.model_type, store.vocab_size, cfg.model_section, num_features=store.num_node_features,
        feature_stats=store.metadata.get("feature_stats"),
    )  # fmt: skip
    lit_class = LitVGAE if cfg.model_type == "vgae" else LitGAT
    lit = lit_class(model, cfg.effective_lr, cfg.training.weight_decay, teacher=teacher, kd=cfg.kd)
    # the autoencoder learns what benign traffic looks like; the classifier learns from every labelled window
    vgae = cfg.model_type == "vgae"
    data = GraphDataModule(
        store, cfg.effective_batch_size, seed=cfg.seed, labels=(0,) if vgae else (0, 1),
        calibration_fraction=cfg.vgae.calibration_fraction if vgae else 0.0,
    )  # fmt: skip

    # where checkpoints and the epoch log go: the run folder, or durable storage keyed by the run's identity
    # what makes two trainings the same: config, graph store, teacher's weights (a checkpoint of other ones is
    # never continued, whether it sits in the run folder or in durable storage under this key)
    key = run_key(run_label(cfg), store.dataset, model_config_hash(cfg), store.metadata_sha256, teacher_dir)
    state_dir = out_dir if checkpoint_dir is None else ensure_folder(Path(checkpoint_dir) / key)
    if state_dir != out_dir:  # a retry of a task whose first attempt still runs (SLURM) shares it
        hold(writing(state_dir, "train"))
    ckpt_dir = state_dir / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    previous = state_dir / CONFIG_FILE
    can_resume, other_inputs = resume and last.exists(), False
    if can_resume:
        # the pipeline resumes a step whose key (its own model's section) is unchanged: compare the same thing
        if previous.exists() and model_config_hash(load_frozen_config(previous)) != model_config_hash(cfg):
            raise KdgatError(f"{state_dir}: holds a run with another config; use a new --out or --no-resume")
        recorded = ckpt_dir / RUN_KEY_FILE
        other_inputs = recorded.is_file() and recorded.read_text().strip() != key
        if other_inputs and not restart_on_other_inputs:
            raise KdgatError(
                f"{state_dir}: its checkpoint was trained on another graph store or teacher, or by an earlier "
                "revision of the models (kdgat.core.config.model_config_hash); "
                "use a new --out or --no-resume"
            )
    resuming = can_resume and not other_inputs
    _begin_run_folder(out_dir, cfg.model_type)  # only now: a refused run leaves the finished one in the folder whole
    if getattr(model, "uses_id_statistics", False) and not resuming:  # a resumed run restores them
        model.fit_id_statistics(data.train_dataloader_in_order())  # before training: the node inputs read them
    if not resuming:  # a run that starts over leaves no checkpoint a later --resume could mistake for its own
        shutil.rmtree(ckpt_dir, ignore_errors=True)
        atomic_write_text(ensure_folder(ckpt_dir) / RUN_KEY_FILE, key + "\n")
    atomic_write_text(out_dir / CONFIG_FILE, config_to_json(cfg))
    if state_dir != out_dir:
        atomic_write_text(state_dir / CONFIG_FILE, config_to_json(cfg))
    stopper = StopOnSignal()
    best = ModelCheckpoint(
        dirpath=ckpt_dir, filename="best", monitor=cfg.training.monitor, mode=cfg.training.monitor_mode,
        save_top_k=1, enable_version_counter=False,
    )  # fmt: skip
    # every finished epoch, after `best` (its state goes in): Lightning's save_last writes only when the monitored
    # value improves, and a resume would then train every epoch since the best one again
    last_epoch = ModelCheckpoint(dirpath=ckpt_dir, filename="last", save_top_k=1, enable_version_counter=False)
    stop = EarlyStopping(monitor=cfg.training.monitor, mode=cfg.training.monitor_mode, patience=cfg.effective_patience)
    trainer = L.Trainer(
        default_root_dir=out_dir,
        max_epochs=cfg.training.max_epochs,
        accelerator=accelerator,
        devices=1,
        precision=cfg.training.precision,
        gradient_clip_val=cfg.training.gradient_clip or None,
        callbacks=[
            KeepRandomState(),
            best,
            last_epoch,
            stop,
            stopper,
            KeepFinished(),
            *(callbacks or []),
            *test_pause(stopper),
        ],  # fmt: skip
        logger=CSVLogger(state_dir, name="logs", version=""),
        # one process, no cluster logic: under SLURM, Lightning would otherwise requeue the job itself on
        # SIGUSR1 and "bypass" SIGTERM; checkpoints are written atomically
        plugins=[LightningEnvironment(), AtomicCheckpointIO()],
        enable_progress_bar=sys.stderr.isatty() if progress_bar is None else progress_bar,
        enable_model_summary=False,
        deterministic=True,
        num_sanity_val_steps=0,
        log_every_n_steps=max(1, min(50, -(-len(data.train_indices) // data.batch_size))),
    )
    # the epoch the checkpoint ends (mmap: no need to read the weights to know it)
    resumed_after = torch.load(last, map_location="cpu", weights_only=False, mmap=True)["epoch"] if resuming else None
    curves = state_dir / "logs" / "metrics.csv"
    earlier = curves.read_text() if resuming and curves.exists() else None
    # the checkpoint folder is not empty: it holds the run key, and what a resumed run continues from
    warnings.filterwarnings("ignore", message=r".*Checkpoint directory .* exists and is not empty")
    stopped = None
    with stopper.installed():
        try:
            trainer.fit(lit, datamodule=data, ckpt_path=str(last) if resuming else None)
        except (TrainingStopped, SIGTERMException):
            stopped = stopper.received or signal.SIGTERM
    if earlier is not None:
        _keep_earlier_curves(earlier, curves)
    if stopped is not None:
        where = (
            f"the checkpoint of the last finished epoch, {last}"
            if last.exists()
            else "the start (no epoch had finished)"
        )
        raise Interrupted(
            f"training stopped by {signal.Signals(stopped).name} during epoch {trainer.current_epoch}; "
            f"run the same command again to continue from {where}",
            signum=stopped,
        )
    if trainer.interrupted:
        raise KdgatError(f"training interrupted; run the same command again to resume from {last}")
    if state_dir != out_dir and curves.exists():
        atomic_write_text(out_dir / "logs" / "metrics.csv", curves.read_text())

    best_path = Path(best.best_model_path) if best.best_model_path else last
    state = torch.load(best_path, map_location="cpu", weights_only=False)["state_dict"]
    weights = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    _refuse_diverged(weights, best.best_model_score, cfg, trainer.current_epoch)
    # per-ID error percentiles of the best weights on the benign training windows (the default), or with
    # vgae.calibration_fraction on the windows kept from training; the IDs seen are counted on every benign one
    calibrated_on = None
    if vgae:
        model.load_state_dict(weights)
        model.eval().cpu()
        held_out = len(data.calibration_indices) > 0
        calibrated_on = "calibration" if held_out else "train"
        seen_on = data.train_dataloader_in_order(which="all") if held_out else None  # else the same windows
        model.calibrate(data.train_dataloader_in_order(which=calibrated_on), seen_on)
        weights = model.state_dict()
    save_weights(weights, out_dir / MODEL_FILE)
    metrics = {
        "model": cfg.model_type,
        "scale": cfg.scale,
        "auxiliaries": list(cfg.auxiliaries),
        "config_hash": config_hash(cfg),
        "best_val_loss": float(best.best_model_score) if best.best_model_score is not None else None,
        "epochs": int(trainer.current_epoch),
        "stopped_early": bool(stop.stopped_epoch),
        "resumed_after_epoch": resumed_after,
        "parameters": count_parameters(model),
        "num_node_features": store.num_node_features,
        "vocab_size": store.vocab_size,
        "train_graphs": len(data.train_indices),
        "calibration_graphs": len(data.calibration_indices) if vgae else None,
        "calibrated_on": calibrated_on,  # "train": the error percentiles are in-sample
        "val_graphs": len(data.val_indices),
        "teacher": str(teacher_dir) if teacher_dir else None,
        "teacher_parameters": sum(p.numel() for p in teacher.parameters()) if teacher is not None else None,
        "device": str(lit.device),
    }
    return _record(cfg, store, out_dir, metrics, started, teacher_dir, dataset, tracking_uri)


def _record(
    cfg: PipelineConfig,
    store: GraphStore,
    out_dir: Path,
    metrics: dict,
    started: float,
    teacher_dir: str | Path | None,
    dataset: str | None,
    tracking_uri: str | None,
    staging: Path | None = None,
) -> Manifest:
    """MLflow, metrics.json and the manifest (last) of a finished training run of any kind; ``staging``: where its
    files were written, to be put in place with the manifest (a yardstick's; a GNN's are written in place)."""
    files = staging or out_dir
    curves = files / "logs" / "metrics.csv"
    metrics["mlflow"] = log_stage(
        stage="train",
        out_dir=out_dir,
        config=json.loads(config_to_json(cfg)),
        tags={
            "dataset": dataset,
            "stage": "train",
            "model": cfg.model_type,
            "scale": cfg.scale,
            "kd": cfg.has_kd,
            "seed": cfg.seed,
            "run_id": f"{run_label(cfg)}_{config_hash(cfg)}",
        },
        summary={k: v for k, v in metrics.items() if k in ("best_val_loss", "epochs", "parameters")},
        artifacts=[files / CONFIG_FILE],
        tracking_uri=tracking_uri,
        curves=curves if curves.is_file() else None,
    )
    atomic_write_text(files / METRICS_FILE, json.dumps(metrics, indent=2) + "\n")
    # absolute: export finds it from anywhere; the hash of the store as opened (one rebuilt in place since is not it)
    inputs = [file_entry(store.path.resolve() / "metadata.json", sha256=store.metadata_sha256)]
    if teacher_dir is not None:
        inputs.append(file_entry(model_file(teacher_dir)))
    written = [model_file(files).name, CONFIG_FILE, METRICS_FILE] + (["logs/metrics.csv"] if curves.is_file() else [])
    record = dict(
        stage="train",
        inputs=inputs,
        config=json.loads(config_to_json(cfg)),
        outputs=[{"path": name} for name in written],
        wall_time_s=time.perf_counter() - started,
        dataset=dataset,
        summary=metrics,
    )
    return write_manifest(out_dir, **record) if staging is None else publish_output(staging, out_dir, **record)
