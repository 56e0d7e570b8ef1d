"""Finished stage folders (train, fuse, evaluate) as rows of the lake's tables.

A run's id is a short hash of what makes it the same run — dataset, stage,
model, scale, auxiliaries, config hash, seed (plus the members of a fusion, the
teacher's weights of a KD student, and the evaluated runs and the graph store
of an evaluation) — so appending the same folder twice, or the folder of a
re-run, gives the same id and replaces rows instead of adding them, and an
evaluation of the same runs on another store (new captures, `graphs --like`)
is a run of its own beside the first. Metric rows of an evaluation carry the id of the run they evaluate,
derived from that run's own folder in the same way, so they join to ``runs``.

Two more hashes group runs across seeds: ``setup_hash`` (the config without its
seed, plus the teacher's or the members' setups) is shared by the seeds of one
experiment, and ``pair_hash`` (also without the KD settings) by a KD student and
the no-KD student it is compared with.

A stage records the runs it read (an evaluation's runs, a fusion's members, a
student's teacher) as absolute paths, and the sha256 of each one's weights in
its manifest. :func:`_find_run` looks for such a run where it was recorded, then
where Nextflow and ``kdgat pipeline`` put it (the recording task's own folder,
the folders appended together, ``runs/`` beside an ``eval/``), and accepts a
folder only when its weights have the recorded hash: a moved campaign is found,
another seed's or another campaign's run with the same name never is.
"""

from __future__ import annotations

import csv
import functools
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kdgat.core.config import WINDOW_VECTOR_MODELS, without_other_models
from kdgat.core.errors import KdgatError
from kdgat.core.hashing import content_hash, sha256_file
from kdgat.core.jsonfile import read_json
from kdgat.core.manifest import MANIFEST_NAME, Manifest, require_finished
from kdgat.core.run_files import (
    CONFIG_FILE,
    FUSION_FILE,
    MEMBERS_FILE,
    METRICS_FILE,
    MODEL_FILE,
    SCORES_FILE,
    WEIGHT_FILES,
    WINDOW_MODEL_FILE,
)

RUN_STAGES = ("train", "fuse", "evaluate")
_ARTIFACT_TYPES = {
    MODEL_FILE: "checkpoint", WINDOW_MODEL_FILE: "checkpoint", FUSION_FILE: "checkpoint", CONFIG_FILE: "config",
    METRICS_FILE: "metrics", "metrics.csv": "training_curves", "curves.json": "curves",
    "embeddings.npz": "embeddings", "attention.npz": "attention", "dqn_policy.json": "policy", "policy.json": "policy",
    "explanations.npz": "explanations", MEMBERS_FILE: "members", MANIFEST_NAME: "manifest", SCORES_FILE: "scores",
}  # fmt: skip
_METRIC_COLUMNS = (
    "threshold", "n", "positives", "negatives", "tp", "fp", "tn", "fn", "accuracy", "precision", "recall", "f1",
    "specificity", "balanced_accuracy", "mcc", "fpr", "fnr", "pr_auc", "detection_rate_at_fpr_1pct",
    "detection_rate_at_fpr_0_1pct",
)  # fmt: skip


@dataclass(frozen=True)
class Identity:
    """What a run is, read from its folder: the fields its id is made of, and the id."""

    run_id: str
    dataset: str
    stage: str
    model_type: str  # vgae | gat | hgb | novelty | fusion | eval
    model: str  # gat_small_kd, fusion_dqn_small_kd, eval ...
    family: str  # gat | vgae | fusion_dqn ... (what KD impact compares across scales)
    scale: str | None
    auxiliaries: tuple[str, ...]
    has_kd: bool | None
    method: str | None
    seed: int | None
    config_hash: str
    parts: tuple[str, ...] = ()  # fusion members / evaluated runs
    store_sha256: str | None = None  # the graph store the stage read (sha256 of its metadata.json, as recorded)
    setup_hash: str | None = None  # the same for every seed of one experiment (None for an evaluation)
    pair_hash: str | None = None  # ... and also for the KD student and the no-KD student it is compared with


@dataclass
class RunRecord:
    identity: Identity
    run_dir: Path
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def _read_json(path: Path) -> Any:
    return read_json(path, missing="missing (the run folder is incomplete)")


def _manifest(run_dir: Path) -> Manifest:
    manifest = require_finished(run_dir, RUN_STAGES, "run")  # the lake records train, fuse and evaluate folders
    if not manifest.dataset:
        raise KdgatError(f"{run_dir / MANIFEST_NAME}: no `dataset` recorded; re-run the stage with this kdgat")
    return manifest


def _make_id(prefix: str, key: dict[str, Any]) -> str:
    return f"{prefix}-{content_hash(key)[:12]}"


_IDENTITIES: dict[str, Identity] = {}
_PEERS: list[Path] = []  # the folders of the append in progress: a recorded run may be one of them


def _short(value: Any) -> str:
    return content_hash(value)[:16]


def _without(cfg: dict, *keys: str) -> dict:
    """``cfg`` without ``keys`` and without the other models' sections (a VGAE's setup does not change
    with the GAT's settings: a pipeline keeps such a run cached, so its config may hold older ones)."""
    return {k: v for k, v in without_other_models(cfg).items() if k not in keys}


def identify(run_dir: Path) -> Identity:
    """The identity of a finished run folder (cached per resolved path within a process)."""
    run_dir = Path(run_dir).resolve()
    cached = _IDENTITIES.get(str(run_dir))
    if cached is not None:
        return cached
    manifest = _manifest(run_dir)
    stage, dataset = manifest.stage, manifest.dataset
    store = _store_sha256(manifest)
    teacher_weights = None
    if stage == "evaluate":
        document = _read_json(run_dir / METRICS_FILE)
        parts = tuple(
            sorted(identify(_evaluated_dir(run_dir, r["run_dir"], manifest)).run_id for r in document["runs"].values())
        )
        fields = dict(model_type="eval", model="eval", family="eval", scale=None, auxiliaries=(), has_kd=None)
        fields.update(method=None, seed=None, setup_hash=None, pair_hash=None)
    else:
        cfg = _read_json(run_dir / CONFIG_FILE)
        aux = tuple(cfg.get("auxiliaries") or ())
        fields = dict(scale=cfg.get("scale"), auxiliaries=aux, seed=cfg.get("seed"))
        if stage == "fuse":
            recorded = _read_json(run_dir / MEMBERS_FILE)
            members = [identify(_member_dir(run_dir, recorded[k], manifest)) for k in ("vgae", "gat")]
            parts = tuple(sorted(m.run_id for m in members))
            family = f"fusion_{recorded['method']}"
            fields.update(model_type="fusion", family=family, method=recorded["method"], has_kd=bool(recorded["kd"]))
            fields.update(scale=recorded["scale"])
            fields.update(
                setup_hash=_short([_without(cfg, "seed"), family, [m.setup_hash for m in members]]),
                pair_hash=_short([_without(cfg, "seed", "auxiliaries", "kd"), family, [m.pair_hash for m in members]]),
            )
        else:
            parts = ()
            fields.update(model_type=cfg["model_type"], family=cfg["model_type"], method=None)
            fields.update(has_kd=cfg.get("kd") is not None)
            teacher = _teacher_dir(run_dir, manifest)
            teacher_weights = _teacher_weights(run_dir, manifest)
            fields.update(
                setup_hash=_short([_without(cfg, "seed"), identify(teacher).setup_hash if teacher else None]),
                pair_hash=_short(_without(cfg, "seed", "auxiliaries", "kd")),
            )
        fields["model"] = f"{fields['family']}_{fields['scale']}" + ("_kd" if fields["has_kd"] else "")
    # a trained or fused run by what it depends on: its own config (not the other models' sections, which a pipeline
    # or a Nextflow task may hold otherwise for the same weights) and the graph store it read (runs of one config on
    # two stores, another stride or other captures, are two runs; the same runs scored on other windows are another
    # evaluation)
    config = manifest.config_hash if stage == "evaluate" else content_hash(_without(cfg))
    key = {
        "dataset": dataset, "stage": stage, "model": fields["family"], "scale": fields["scale"],
        "auxiliaries": sorted(fields["auxiliaries"]), "config": config, "seed": fields["seed"],
        "parts": list(parts), "store": store,
    }  # fmt: skip
    if teacher_weights is not None:  # students of two teachers are two runs (read from the student's manifest)
        key["teacher"] = teacher_weights
    identity = Identity(
        run_id=_make_id(fields["model"], key), dataset=dataset, stage=stage,
        config_hash=manifest.config_hash, parts=parts, store_sha256=store, **fields,
    )  # fmt: skip
    _IDENTITIES[str(run_dir)] = identity
    return identity


def _store_sha256(manifest: Manifest) -> str | None:
    """The sha256 of the graph store's metadata.json that the stage recorded among its inputs (None: none)."""
    found = [i.sha256 for i in manifest.inputs if Path(i.path).name == "metadata.json" and i.sha256]
    return found[0] if found else None


def _recorded_teacher(run_dir: Path) -> str | None:
    """The teacher run folder a KD student recorded in its metrics.json (None: not a student)."""
    metrics_file = run_dir / METRICS_FILE
    return _read_json(metrics_file).get("teacher") if metrics_file.is_file() else None


def _teacher_weights(run_dir: Path, manifest: Manifest) -> str | None:
    """The sha256 of the teacher's weights a KD student's manifest recorded (None: not a student)."""
    recorded = _recorded_teacher(run_dir)
    return _recorded_hash(manifest, recorded) if recorded else None


def remember_peers(run_dirs: list[Path]) -> None:
    """The folders of one append: a run another of them recorded may be staged among them under its name
    (Nextflow's LAKE task stages its inputs as ``runs/<n>/<name>``)."""
    _PEERS[:] = [Path(d).resolve() for d in run_dirs]


def _recorded_hash(manifest: Manifest, recorded: str) -> str | None:
    """sha256 of the weights the recording stage read from run folder ``recorded`` (its manifest's inputs)."""
    path = Path(recorded)
    weights = [Path(i.path) for i in manifest.inputs if Path(i.path).name in WEIGHT_FILES and i.sha256]
    hashes = {str(Path(i.path)): i.sha256 for i in manifest.inputs if i.sha256}
    exact = [w for w in weights if w.parent == path]
    if not exact:  # written before run folders were recorded resolved: the input of the same folder name
        exact = [w for w in weights if w.parent.name == path.name]
    return hashes[str(exact[0])] if len(exact) == 1 else None


@functools.lru_cache(maxsize=4096)
def _weights_hash(run_dir: Path, stamp: tuple) -> str | None:
    for name in WEIGHT_FILES:
        if (run_dir / name).is_file():
            return sha256_file(run_dir / name)
    return None


def _is_recorded_run(candidate: Path, expected: str | None) -> bool:
    if not (candidate / MANIFEST_NAME).is_file():
        return False
    if expected is None:
        return True
    weights = [candidate / n for n in WEIGHT_FILES if (candidate / n).is_file()]
    stamp = tuple((w.stat().st_size, w.stat().st_mtime_ns) for w in weights)
    return _weights_hash(candidate.resolve(), stamp) == expected


def _candidates(base: Path, recorded: str) -> tuple[list[Path], list[Path]]:
    """Where a run folder that the stage writing ``base`` recorded as ``recorded`` may be.

    First the recorded path itself (relative paths against the folder the stage ran in, which holds
    ``base``, then ``base`` and the current folder); then, for folders that moved, the same name among
    the folders appended together, in ``runs/`` beside ``base`` (the layout of ``kdgat pipeline`` and
    of the published Nextflow results), beside ``base``, and the last one to three path components
    under ``base`` or one of its two parents.
    """
    path = Path(recorded)
    exact = [path] if path.is_absolute() else [base.parent / path, base / path, Path.cwd() / path]
    moved = [peer for peer in _PEERS if peer.name == path.name and peer != base]
    moved += [base.parent / "runs" / path.name, base.parent / path.name]
    tails = [Path(*path.parts[-k:]) for k in (1, 2, 3) if len(path.parts) >= k]
    for root in (base, *list(base.parents)[:2]):
        moved += [root / tail for tail in tails]
    return exact, moved


def _find_run(base: Path, recorded: str, manifest: Manifest) -> Path | None:
    """The finished run folder the stage that wrote ``base`` (with ``manifest``) recorded as ``recorded``.

    A candidate is accepted when it is a finished run whose weights have the sha256 the stage recorded
    for that run; without a recorded hash (manifests of very old versions) only the recorded path is.
    """
    expected = _recorded_hash(manifest, recorded)
    exact, moved = _candidates(base, recorded)
    for candidate in exact:
        if _is_recorded_run(candidate, expected):
            return candidate.resolve()
    if expected is None:
        return None
    closeness: dict[Path, tuple[int, int]] = {}  # resolved copy -> its best (shared tail, shared head with base)
    for candidate in moved:
        if _is_recorded_run(candidate, expected):
            resolved = candidate.resolve()
            score = max(
                _closeness(candidate, Path(recorded), base), _closeness(resolved, Path(recorded), base.resolve())
            )
            closeness[resolved] = max(closeness.get(resolved, score), score)
    if len(closeness) < 2:
        return next(iter(closeness), None)
    # a deterministic model (the novelty yardstick) has the same weights in every seed: the copy that keeps the most
    # of the recorded path (a moved campaign), then the one beside the recording stage's own folder (a published
    # seed<k>/runs beside seed<k>/eval) is the one, never merely the first of that name
    best = [c for c, score in closeness.items() if score == max(closeness.values())]
    if len(best) > 1:
        raise KdgatError(
            f"{base}: run {recorded} is gone, and {best[0]} and {best[1]} both hold the weights it recorded; "
            "append them from folders that tell them apart (each seed's runs beside its evaluation)"
        )
    return best[0]


def _closeness(candidate: Path, recorded: Path, base: Path) -> tuple[int, int]:
    """(trailing components shared with the recorded path, leading components shared with the recording stage's
    folder)."""
    return _shared(reversed(candidate.parts), reversed(recorded.parts)), _shared(candidate.parts, base.parts)


def _shared(mine, theirs) -> int:
    """How many leading items two sequences of path components have in common."""
    count = 0
    for a, b in zip(mine, theirs, strict=False):
        if a != b:
            break
        count += 1
    return count


def _evaluated_dir(eval_dir: Path, recorded: str, manifest: Manifest) -> Path:
    found = _find_run(eval_dir, recorded, manifest)
    if found is None:
        raise KdgatError(
            f"{eval_dir}: evaluated run {recorded} {_missing(recorded, 'evaluated')} (nor a moved copy with the "
            "weights it evaluated); its metrics are linked to that run's id, which is read from its folder"
        )
    return found


def _member_dir(fuse_dir: Path, recorded: str, manifest: Manifest) -> Path:
    found = _find_run(fuse_dir, recorded, manifest)
    if found is None:
        raise KdgatError(
            f"{fuse_dir}: fusion member {recorded} {_missing(recorded, 'the fusion was fitted on')}; "
            "the fusion's id includes its members' ids"
        )
    return found


def _missing(recorded: str, read: str) -> str:
    """Why a recorded run was not accepted: gone, or there with other weights (trained again since)."""
    if (Path(recorded) / MANIFEST_NAME).is_file():
        return f"holds other weights than those {read} (trained again since?)"
    return "not found"


def _teacher_dir(run_dir: Path, manifest: Manifest) -> Path | None:
    """A KD student's teacher run (found like fusion members), or None: not a student, or the teacher is gone."""
    recorded = _recorded_teacher(run_dir)
    return _find_run(run_dir, recorded, manifest) if recorded else None


def _timestamp(text: str | None) -> datetime | None:
    if not text:
        return None
    stamp = datetime.fromisoformat(text)
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)


def _get(mapping: dict | None, *keys: str) -> Any:
    for key in keys:
        if not isinstance(mapping, dict):
            return None
        mapping = mapping.get(key)
    return mapping


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


# --------------------------------------------------------------------------- tables


def _artifacts(run_dir: Path, run_id: str, manifest: Manifest) -> list[dict]:
    names = manifest.output_paths() + [MANIFEST_NAME]
    rows = []
    for name in names:
        path = run_dir / name
        # a stage lists its own files, inside its folder: a manifest naming /etc/passwd or ../.. had them hashed
        # (by name: a file that is a link, as git-annex and DVC keep them, is the run's own)
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise KdgatError(f"{run_dir / MANIFEST_NAME}: lists {name!r}, which is not in the run folder")
        if not path.is_file():
            raise KdgatError(f"{path}: listed in {MANIFEST_NAME} but missing")
        kind = _ARTIFACT_TYPES.get(Path(name).name, "other")
        size = path.stat().st_size
        rows.append(dict(run_id=run_id, artifact_type=kind, path=str(path), size_bytes=size, sha256=sha256_file(path)))
    return rows


def _training_curves(path: Path, run_id: str) -> list[dict]:
    """Lightning's CSV log (one column per metric, blanks where not logged) in long form."""
    if not path.is_file():
        return []
    rows = []
    with path.open(newline="", encoding="utf-8") as handle:
        for number, line in enumerate(csv.DictReader(handle), start=2):  # line 1 is the header
            epoch, step = line.pop("epoch", ""), line.pop("step", "")
            try:
                for metric, value in line.items():
                    if value not in ("", None):
                        rows.append(
                            dict(run_id=run_id, epoch=_int(epoch or None), step=_int(step or None), metric=metric,
                                 value=float(value))
                        )  # fmt: skip
            except (TypeError, ValueError) as exc:
                raise KdgatError(f"{path}:{number}: not a training log row ({exc})") from None
    return rows


def _training_loop(ident: Identity, cfg: dict) -> dict[str, Any]:
    """The learning settings a run used, as it used them (kdgat.core.schema's effective_* rules): a section's own
    batch size and patience win over training's, training.lr over the section's. A fusion learns with its method's
    settings (dqn section, or the fusion section's lr and epochs); the yardsticks have no training loop: none."""
    if ident.model_type in WINDOW_VECTOR_MODELS:
        return {}
    if ident.model_type == "fusion":
        if ident.method == "dqn":
            return {k: _get(cfg, "dqn", k) for k in ("lr", "weight_decay", "batch_size")}
        mlp = ident.method == "mlp"  # its batches are the dqn section's size (kdgat.fusion.make_fusion)
        return {
            "lr": _get(cfg, "fusion", "mlp_lr" if mlp else "weighted_lr"),
            "max_epochs": _get(cfg, "fusion", "epochs"),
            "batch_size": _get(cfg, "dqn", "batch_size") if mlp else None,
        }
    section, training = cfg.get(ident.model_type), cfg.get("training") or {}

    def own_first(key: str) -> Any:
        return _get(section, key) if _get(section, key) is not None else training.get(key)

    lr = training.get("lr") if training.get("lr") is not None else _get(section, "lr")
    return dict(lr=lr, weight_decay=training.get("weight_decay"), batch_size=own_first("batch_size"),
                max_epochs=training.get("max_epochs"), patience=own_first("patience"),
                precision=training.get("precision"))  # fmt: skip


def _config_row(run_id: str, ident: Identity, cfg: dict) -> dict:
    """A run's settings: the model columns from its own section only (a VGAE's row showed the dqn section's
    episodes, which differ between `kdgat pipeline` and a Nextflow task for the same VGAE)."""
    loop, full = _training_loop(ident, cfg), cfg
    cfg = without_other_models(cfg)  # a fusion's config is the dqn section's: an MLP or weighted one has no dqn
    if ident.model_type == "fusion" and ident.method != "dqn":
        cfg.pop("dqn", None)
    return dict(
        run_id=run_id, model_type=ident.model_type, scale=ident.scale, seed=cfg.get("seed"), lr=loop.get("lr"),
        weight_decay=loop.get("weight_decay"), batch_size=loop.get("batch_size"),
        max_epochs=loop.get("max_epochs"), patience=loop.get("patience"), precision=loop.get("precision"),
        window=_get(cfg, "preprocessing", "window"), stride=_get(cfg, "preprocessing", "stride"),
        feature_set=_get(cfg, "preprocessing", "feature_set"), vgae_latent_dim=_get(cfg, "vgae", "latent_dim"),
        gat_hidden=_get(cfg, "gat", "hidden"), gat_layers=_get(cfg, "gat", "layers"),
        gat_heads=_get(cfg, "gat", "heads"), gat_fc_layers=_get(cfg, "gat", "fc_layers"),
        gat_jk_mode=_get(cfg, "gat", "jk_mode"), dqn_hidden=_get(cfg, "dqn", "hidden"),
        dqn_episodes=_get(cfg, "dqn", "episodes"), dqn_gamma=_get(cfg, "dqn", "gamma"),
        kd_alpha=_get(cfg, "kd", "alpha"), kd_temperature=_get(cfg, "kd", "temperature"),
        full_config_json=json.dumps(full, sort_keys=True),
    )  # fmt: skip


def _store_dir(manifest: Manifest, run_dir: Path) -> Path | None:
    """The graph store a run read (its metadata.json is the first input of every stage after `graphs`)."""
    for item in manifest.inputs:
        path = Path(item.path)
        if path.name == "metadata.json":
            relative = (run_dir.parent / path, run_dir / path, Path.cwd() / path)
            for candidate in (path,) if path.is_absolute() else relative:
                if candidate.is_file():
                    return candidate.parent
    return None


@functools.lru_cache(maxsize=64)
def _dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


@functools.lru_cache(maxsize=1)
def _catalog() -> dict:
    from kdgat.data.catalog import load_catalog

    try:
        return load_catalog()
    except KdgatError:
        return {}


def forget() -> None:
    """Drop what this process has cached about run folders (they may have been re-run since)."""
    _IDENTITIES.clear()
    _PEERS.clear()
    _weights_hash.cache_clear()
    _dir_size.cache_clear()
    _catalog.cache_clear()


def _dataset_row(name: str, run_id: str, store: Path | None) -> dict | None:
    """What the catalog says about a dataset, plus the sizes of the graph store the run used (if still there);
    None for an evaluation of new captures (a store built --like): they are scored, not the dataset trained on."""
    meta_path = store / "metadata.json" if store else None
    meta = _read_json(meta_path) if meta_path is not None and meta_path.is_file() else None
    if meta is not None and meta.get("like"):
        return None
    row: dict[str, Any] = dict(name=name, run_id=run_id)
    entry = _catalog().get(name)
    if entry is not None:
        row.update(domain=entry.domain, protocol=entry.protocol, source=entry.source, description=entry.description)
    if meta is not None:
        parts = meta.get("parts") or {}
        tests = {k: v for k, v in parts.items() if v.get("split") == "test"}
        row.update(
            store_fingerprint=meta.get("fingerprint"), feature_set=_get(meta, "feature_set", "tag"),
            window=meta.get("window"), stride=meta.get("stride"), vocab_size=meta.get("vocab_size"),
            n_train_graphs=_get(parts, "train", "graphs"), n_val_graphs=_get(parts, "val", "graphs"),
            n_test_scenarios=len(tests), n_test_graphs=sum(v.get("graphs", 0) for v in tests.values()),
            train_attack_share=_get(parts, "train", "attack_share"), cache_size_bytes=_dir_size(store),
            store_path=str(store.resolve()),
        )  # fmt: skip
    return row


def _run_row(ident: Identity, run_dir: Path, manifest: Manifest, metrics: dict, appended_at: datetime) -> dict:
    # the teacher is looked up like fusion members (moved folders are found); a deleted one leaves no link
    teacher = _teacher_dir(run_dir, manifest) if ident.stage == "train" else None
    teacher_id = identify(teacher).run_id if teacher else None
    parameters = metrics.get("parameters", metrics.get("ensemble_parameters"))
    return dict(
        run_id=ident.run_id, dataset=ident.dataset, stage=ident.stage, model_type=ident.model_type,
        model=ident.model, family=ident.family, scale=ident.scale, auxiliaries=list(ident.auxiliaries),
        has_kd=ident.has_kd, method=ident.method, seed=ident.seed, config_hash=ident.config_hash,
        setup_hash=ident.setup_hash, pair_hash=ident.pair_hash,
        parameters=parameters, teacher_run_id=teacher_id, teacher_parameters=metrics.get("teacher_parameters"),
        epochs=metrics.get("epochs"), best_val_loss=metrics.get("best_val_loss"),
        evaluated_runs=list(ident.parts) if ident.stage == "evaluate" else None, store_sha256=ident.store_sha256,
        success=True,
        created_at=_timestamp(manifest.created_at), duration_seconds=manifest.wall_time_s,
        run_dir=str(run_dir), kdgat_version=manifest.versions.get("kdgat"), appended_at=appended_at,
    )  # fmt: skip


def _evaluation_rows(run_dir: Path, eval_id: str, dataset: str) -> dict[str, list[dict]]:
    """metrics, curves and policies rows of an evaluate folder, keyed to the evaluated runs' ids."""
    document = _read_json(run_dir / METRICS_FILE)
    manifest = _manifest(run_dir)
    curves = _read_json(run_dir / "curves.json") if (run_dir / "curves.json").is_file() else {}
    policies = _read_json(run_dir / "dqn_policy.json") if (run_dir / "dqn_policy.json").is_file() else {}
    metric_rows, curve_rows, policy_rows = [], [], []
    for label, result in document["runs"].items():
        target = identify(_evaluated_dir(run_dir, result["run_dir"], manifest))
        base = dict(run_id=target.run_id, eval_run_id=eval_id, model=target.model)
        scenarios = [("val", "validation", result["validation"])] if result.get("validation") else []
        scenarios += [("test", name, values) for name, values in result["test"].items()]
        for split, scenario, values in scenarios:
            row = dict(base, dataset=dataset, family=target.family, model_type=target.model_type, scale=target.scale)
            row.update(has_kd=target.has_kd, split=split, scenario=scenario)
            row.update({k: values.get(k) for k in _METRIC_COLUMNS}, auc=values.get("roc_auc"))
            threshold = result.get("threshold") or {}
            policy = threshold.get("policy") or threshold.get("method") or document.get("threshold_policy")
            row.update(threshold_method=policy)
            metric_rows.append(row)
        for scenario, points in (curves.get(label) or {}).items():
            for curve, (xs, ys) in (("roc", ("fpr", "tpr")), ("pr", ("recall", "precision"))):
                data = points.get(curve)
                if not data:
                    continue
                thresholds = data.get("thresholds") or []
                for i, (x, y) in enumerate(zip(data[xs], data[ys], strict=True)):
                    t = thresholds[i] if i < len(thresholds) else None
                    curve_rows.append(dict(base, scenario=scenario, curve=curve, point=i, x=x, y=y, threshold=t))
        policy = policies.get(label)
        if policy:
            policy_rows.append(dict(base, **{"class": "all"}, mean_alpha=policy.get("mean_alpha")))
            policy_rows[-1]["n_windows"] = policy.get("n_windows")
            for cls, alpha in (policy.get("mean_alpha_by_class") or {}).items():
                policy_rows.append(dict(base, **{"class": cls}, mean_alpha=alpha))
    return {"metrics": metric_rows, "curves": curve_rows, "policies": policy_rows}


def read_run(run_dir: Path, appended_at: datetime | None = None) -> RunRecord:
    """All lake rows of one finished train, fuse or evaluate folder; a file of it that is not what its stage
    writes is one line naming the folder."""
    run_dir = Path(run_dir).resolve()
    try:
        return _read_run(run_dir, appended_at)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        what = f"missing {exc}" if isinstance(exc, KeyError) else str(exc).splitlines()[0]
        raise KdgatError(f"{run_dir}: its files are not what its stage writes ({what})") from None


def _read_run(run_dir: Path, appended_at: datetime | None) -> RunRecord:
    ident = identify(run_dir)
    manifest = _manifest(run_dir)
    appended_at = appended_at or datetime.now(timezone.utc)
    metrics = _read_json(run_dir / METRICS_FILE) if ident.stage != "evaluate" else {}
    cfg = _read_json(run_dir / CONFIG_FILE) if ident.stage != "evaluate" else manifest.config
    record = RunRecord(ident, run_dir)
    record.rows["runs"] = [_run_row(ident, run_dir, manifest, metrics, appended_at)]
    record.rows["configs"] = [_config_row(ident.run_id, ident, cfg)]
    record.rows["artifacts"] = _artifacts(run_dir, ident.run_id, manifest)
    record.rows["training_curves"] = _training_curves(run_dir / "logs" / "metrics.csv", ident.run_id)
    dataset = _dataset_row(ident.dataset, ident.run_id, _store_dir(manifest, run_dir))
    record.rows["datasets"] = [] if dataset is None else [dataset]
    if ident.stage == "evaluate":
        record.rows.update(_evaluation_rows(run_dir, ident.run_id, ident.dataset))
    if ident.stage == "fuse":
        record.rows["fusions"] = [_fusion_row(ident.run_id, metrics)]
    return record


def _fusion_row(run_id: str, metrics: dict) -> dict[str, Any]:
    """What a fuse run chose on its selection windows (its metrics.json); a run made before the novel-ID rule
    had none (``novel_alert`` False) and counted no novel windows (NULL); one made before the selection half
    chose on every held-out window, in-sample (``selection_windows`` and ``out_of_sample_selection`` NULL)."""
    ranking = "pr_auc_on_fusion_windows"
    return dict(
        run_id=run_id, fusion_windows=metrics.get("fusion_windows"), selection_windows=metrics.get("selection_windows"),
        out_of_sample_selection=metrics.get("out_of_sample_selection"), pr_auc_fusion=_get(metrics, ranking, "fusion"),
        pr_auc_gat=_get(metrics, ranking, "gat"), pr_auc_vgae=_get(metrics, ranking, "vgae"),
        fallback=metrics.get("fallback"), collapsed_to=metrics.get("collapsed_to"),
        novel_alert=bool(metrics.get("novel_alert", False)), novel_benign=_get(metrics, "novel_windows", "benign"),
        novel_attack=_get(metrics, "novel_windows", "attack"),
    )  # fmt: skip
