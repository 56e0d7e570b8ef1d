"""A training run folder as other stages read it: the file names and rebuilding its model.

``model.pt`` holds the best weights, ``config.json`` the frozen config the run trained with and
``metrics.json`` its figures; together they rebuild the model anywhere, without the training store.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import torch

from kdgat.core.atomic import atomic_path
from kdgat.core.config import WINDOW_VECTOR_MODELS, load_frozen_config
from kdgat.core.errors import KdgatError
from kdgat.core.hashing import sha256_file
from kdgat.core.manifest import FileEntry, read_manifest, require_finished
from kdgat.core.run_files import CONFIG_FILE, METRICS_FILE, MODEL_FILE, WINDOW_MODEL_FILE
from kdgat.core.schema import PipelineConfig
from kdgat.data.store import GraphStore
from kdgat.models import build_model


def run_label(cfg) -> str:
    """gat_large, gat_small_kd, vgae_small ... (unique per model variant): a run's name everywhere."""
    return f"{cfg.model_type}_{cfg.scale}" + ("_kd" if cfg.has_kd else "")


def weights_name(model_type: str) -> str:
    """``model.joblib`` for the classical yardsticks (hgb, novelty), ``model.pt`` for the GNNs."""
    return WINDOW_MODEL_FILE if model_type in WINDOW_VECTOR_MODELS else MODEL_FILE


def training_extent(metrics: dict) -> str:
    """How long a run trained, in its own unit: "2 epochs", "300 boosting iterations" (hgb), or "one
    pass" (the novelty yardstick: statistics of the benign windows)."""
    if metrics.get("model") == "hgb":
        return f"{metrics['epochs']} boosting iterations"
    if metrics.get("epochs") is None:
        return "one pass"
    return f"{metrics['epochs']} epoch" + ("" if metrics["epochs"] == 1 else "s")


def model_file(run_dir: str | Path) -> Path:
    """The weights of a training run, named by the ``model_type`` of its ``config.json`` (``model.pt``
    where there is none yet, so that the caller's missing-file message names the GNN weights)."""
    run_dir = Path(run_dir)
    try:
        model_type = json.loads((run_dir / CONFIG_FILE).read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        return run_dir / MODEL_FILE
    return run_dir / weights_name(str(model_type))


def save_weights(state: dict, path: Path) -> None:
    """Write a state dict atomically, the same bytes for the same tensors: torch names the archive inside the file
    after the file it is given, and the atomic write's temporary name is unique, so every run's weights hashed
    differently and a KD student's run id (which holds its teacher's weights hash) changed with each re-run."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(state, handle)


def load_weights(path: Path) -> dict:
    """A state dict saved by kdgat (tensors only); a corrupt or truncated file is one line naming it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as err:
        if isinstance(err, (FileNotFoundError, PermissionError, IsADirectoryError)):
            raise KdgatError(f"{path}: cannot read the weights ({err.strerror})") from None
        detail = (str(err).strip().splitlines() or [type(err).__name__])[0].split(". ")[0]
        raise KdgatError(f"{path}: unreadable weights, the file is corrupt or truncated ({detail})") from None


def check_run(run_dir: str | Path, store: GraphStore | None = None, *, finished: bool = True) -> PipelineConfig:
    """A finished training run (config and weights there) that fits ``store``: its config, or one error line.

    Cheap (no weights read): ``kdgat evaluate`` checks every run with it before scoring the first. ``finished``:
    the run's manifest must be there (a re-train killed half way leaves its new config beside the old weights);
    False only for a detector bundle's model folders, which hold none (the bundle's sha256 list vouches for them).
    """
    run_dir = Path(run_dir)
    if finished:
        require_finished(run_dir, "train", "training run")
    elif not run_dir.is_dir():
        raise KdgatError(f"{run_dir}: no such run folder")
    if not (run_dir / CONFIG_FILE).is_file():
        raise KdgatError(f"{run_dir}: not a finished training run (no {CONFIG_FILE})")
    cfg = load_frozen_config(run_dir / CONFIG_FILE)
    if not (run_dir / weights_name(cfg.model_type)).is_file():
        raise KdgatError(f"{run_dir}: not a finished training run (no {weights_name(cfg.model_type)})")
    if store is None:
        return cfg
    num_ids, num_features = _trained_sizes(run_dir)
    if cfg.model_type in WINDOW_VECTOR_MODELS and num_ids != store.vocab_size:  # its window vectors count IDs
        raise KdgatError(
            f"{run_dir}: trained on a store with {num_ids} IDs, this one has {store.vocab_size} (build it with --like)"
        )
    if cfg.model_type not in WINDOW_VECTOR_MODELS and (num_ids, num_features) != (
        store.vocab_size,
        store.num_node_features,
    ):
        raise KdgatError(
            f"{run_dir}: trained on a store with {num_ids} IDs / {num_features} node features, "
            f"this one has {store.vocab_size} / {store.num_node_features} (build it with --like)"
        )
    return cfg


def trained_store_record(run_dir: Path) -> FileEntry:
    """The graph store a run was trained on (a fusion: fitted on), as its manifest records it: the path and sha256 of
    its metadata.json."""
    for item in read_manifest(run_dir).inputs:
        if item.path.endswith("metadata.json"):
            return item
    raise KdgatError(f"{run_dir}: its manifest names no graph store; pass --graphs STORE")


def check_scored_store(run_dirs: list[Path], store: GraphStore) -> None:
    """``store`` is the one every run trained on (its metadata.json, by sha256) or one built ``--like`` it (its
    fingerprint): the vocabulary size and feature count alone let a store of another dataset through, and every
    figure on it was computed on other windows, other statistics and another validation part (a detector bundle,
    on another window, vocabulary or timing periods). Where a run's store is gone, a ``--like`` store cannot be
    traced to it and is taken as it is. Fuse (its members), evaluate and export check their runs with it."""
    like = (store.metadata.get("like") or {}).get("fingerprint")
    digest = store.metadata_sha256 if like is None else None
    fingerprints: dict[str, str | None] = {}  # a training store's fingerprint, by its metadata.json's sha256
    for run_dir in run_dirs:
        recorded = trained_store_record(run_dir)
        if recorded.sha256 is None:  # manifests of very old versions
            continue
        if like is None:
            if digest != recorded.sha256:
                raise KdgatError(
                    f"{run_dir}: trained on another graph store than {store.path} (its manifest records "
                    f"{recorded.path} with another sha256); pass that store (--graphs), or, for new captures, "
                    "one built --like it"
                )
            continue
        trained_on = Path(recorded.path)
        if recorded.sha256 not in fingerprints:
            here = trained_on.is_file() and sha256_file(trained_on) == recorded.sha256
            fingerprints[recorded.sha256] = json.loads(trained_on.read_text()).get("fingerprint") if here else None
        if fingerprints[recorded.sha256] not in (None, like):
            raise KdgatError(
                f"{store.path}: built --like another store than {trained_on.parent}, which {run_dir} trained on; "
                f"build it with --like {trained_on.parent}"
            )


def _trained_sizes(run_dir: Path) -> tuple[int, int]:
    """The vocabulary size and node-feature count a run was trained with (its metrics.json; every kind records
    them)."""
    metrics = json.loads((run_dir / METRICS_FILE).read_text())
    return metrics["vocab_size"], metrics["num_node_features"]


def load_run_model(
    run_dir: str | Path, store: GraphStore | None = None, *, finished: bool = True
) -> tuple[torch.nn.Module, PipelineConfig]:
    """Rebuild a trained model from its run directory (frozen config + weights), in eval mode.

    A GNN comes back as an ``nn.Module``; a classical yardstick as a
    :class:`~kdgat.models.window_model.WindowVectorModel`. ``finished``: as :func:`check_run`.
    """
    run_dir = Path(run_dir)
    cfg = check_run(run_dir, store, finished=finished)
    if cfg.model_type in WINDOW_VECTOR_MODELS:
        from kdgat.training.window_models import load_window_model

        return load_window_model(run_dir, cfg.model_type), cfg
    state = load_weights(run_dir / MODEL_FILE)
    num_ids, num_features = _trained_sizes(run_dir)
    model = build_model(cfg.model_type, num_ids, cfg.model_section, num_features=num_features)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:  # weights of another kdgat version's model: say so in one line
        detail = str(err).splitlines()[1].strip() if len(str(err).splitlines()) > 1 else str(err)
        raise KdgatError(
            f"{run_dir / MODEL_FILE}: the weights do not fit this kdgat's {cfg.model_type} ({detail}); "
            "train the run again with this version"
        ) from None
    return model.eval(), cfg
