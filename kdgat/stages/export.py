"""The export stage: trained runs + their evaluation -> one detector bundle (:mod:`kdgat.detection.bundle`).

Why a bundle: scoring a capture or a bus needs the weights, the frozen configs, the vocabulary,
the timing periods and the validation thresholds, which otherwise live in four folders and a
graph store of gigabytes. The bundle holds just those (sha256 of each), is written into a staging
folder and swapped in when complete, and is loaded once before it is published, so a bundle that
exists also loads.

Every input is an explicit path (a pipeline step can call it): the runs, the evaluation that chose
their thresholds (``metrics.json``) and, optionally, the training store (default: the store named
in the first run's manifest).
"""

from __future__ import annotations

import json
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

from kdgat.core.atomic import atomic_write_text, clean_stale, ensure_folder, staged_folder
from kdgat.core.config import load_frozen_config
from kdgat.core.errors import KdgatError, UsageError
from kdgat.core.hashing import sha256_file
from kdgat.core.manifest import (
    MANIFEST_NAME,
    Manifest,
    file_entry,
    package_versions,
    read_manifest,
    require_finished,
    write_manifest,
)
from kdgat.core.run_files import CONFIG_FILE, FUSION_FILE, MEMBERS_FILE, METRICS_FILE
from kdgat.core.threads import set_threads
from kdgat.data.store import open_store
from kdgat.detection import bundle as b
from kdgat.detection import ood
from kdgat.evaluation.recorded import read_evaluation, recorded_entry
from kdgat.fusion.ensemble import fusion_label, is_fusion_run
from kdgat.training.runs import check_scored_store, model_file, run_label, trained_store_record

# metadata.json keys a detector needs (the rest describes the training data, not the features)
_STORE_KEYS = ("dataset", "fingerprint", "window", "stride", "preprocessing", "feature_set", "node_features",
               "edge_features", "vocab_size", "oov_index", "attack_types", "timing", "payload_runs",
               "feature_stats")  # fmt: skip
_VALIDATION_KEYS = ("n", "positives", "f1", "precision", "recall", "fpr", "roc_auc", "pr_auc")


def _threshold(entry: dict, name: str, eval_dir: Path) -> b.Threshold:
    record = entry.get("threshold")
    if not isinstance(record, dict) or not isinstance(record.get("threshold"), (int, float)):
        raise KdgatError(f"{eval_dir}: the entry of {name} records no threshold")
    policy = record.get("policy") or record.get("method") or "unknown"
    if record.get("max_fpr") is not None and ":" not in str(policy):
        policy = f"{policy}:{record['max_fpr']}"
    return b.Threshold(value=float(record["threshold"]), policy=str(policy), evaluation=str(eval_dir), record=record)


def _no_validation(eval_dir: Path, name: str) -> str:
    """Why an evaluation without validation figures cannot make a bundle, and which one can."""
    manifest = read_manifest(eval_dir) if eval_dir.is_dir() else None
    source = (manifest.config or {}).get("thresholds") if manifest is not None else None
    where = f"; export with --eval {source}, the evaluation that chose them" if source else ""
    return (
        f"{eval_dir}: {name} has no validation figures (its thresholds came from another evaluation, "
        f"`evaluate --thresholds`){where}"
    )


def _copy_model(run_dir: Path, target: Path) -> dict:
    target.mkdir(parents=True)
    for source in (model_file(run_dir), run_dir / CONFIG_FILE, run_dir / METRICS_FILE):
        shutil.copy2(source, target / source.name)
    return json.loads((run_dir / METRICS_FILE).read_text())


def run(
    run_dirs: list[str | Path],
    out_dir: str | Path,
    *,
    evaluation: str | Path,
    graphs_dir: str | Path | None = None,
    threads: int | None = None,
) -> Manifest:
    """Pack ``run_dirs`` (train or fuse folders; the first is the default detector) into a bundle at ``out_dir``."""
    started = time.perf_counter()
    set_threads(threads)  # loading the bundle back runs torch
    if not run_dirs:
        raise UsageError("nothing to export: pass one or more --run RUN_DIR")
    out_dir, eval_dir = Path(out_dir), Path(evaluation)
    run_dirs = [Path(r) for r in run_dirs]
    for run_dir in run_dirs:
        require_finished(run_dir, ("train", "fuse"), "training or fusion run")
    document = read_evaluation(eval_dir)
    graphs_dir = Path(graphs_dir) if graphs_dir is not None else Path(trained_store_record(run_dirs[0]).path).parent
    store = open_store(graphs_dir)
    if "train" not in store.parts or store.metadata.get("like"):  # the reference: the training vehicle's windows
        raise KdgatError(
            f"{graphs_dir}: not a training store (built with --like, or no 'train' part); "
            "export needs the store the runs trained on"
        )
    check_scored_store(run_dirs, store)
    ensure_folder(out_dir.parent)
    if out_dir.exists() and not out_dir.is_dir():
        raise KdgatError(f"{out_dir}: exists and is not a folder; give a folder for the bundle")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / b.SPEC_FILE).exists():
        raise UsageError(f"{out_dir}: exists and is not a detector bundle; refusing to replace it")

    models: dict[str, b.ModelSpec] = {}
    sources: dict[str, Path] = {}
    detectors: list[b.Detector] = []
    # inputs by absolute path, as every stage records them (a Nextflow task folder's relative names mean nothing)
    inputs = [file_entry(graphs_dir.resolve() / "metadata.json", sha256=store.metadata_sha256)]

    clean_stale(out_dir.parent)
    with staged_folder(out_dir) as staging:

        def add_model(run_dir: Path) -> str:
            """Copy a training run once; its label (evaluate's naming)."""
            cfg = load_frozen_config(run_dir / CONFIG_FILE)
            if cfg.model_type not in ("gat", "vgae"):
                raise KdgatError(
                    f"{run_dir}: a {cfg.model_type} run cannot go into a detector bundle (GAT, VGAE or their fusion)"
                )
            label = run_label(cfg)
            if label in sources:
                if sources[label] != run_dir.resolve():
                    raise KdgatError(f"two different {label} runs ({sources[label]}, {run_dir}); export one")
                return label
            metrics = _copy_model(run_dir, staging / b.MODELS_DIR / label)
            if metrics.get("vocab_size", store.vocab_size) != store.vocab_size:
                raise KdgatError(f"{run_dir}: trained on another store than {graphs_dir} (vocabulary sizes differ)")
            models[label] = b.ModelSpec(label=label, kind=cfg.model_type, path=f"{b.MODELS_DIR}/{label}",
                                        source=str(run_dir.resolve()), parameters=int(metrics["parameters"]),
                                        scale=cfg.scale, kd=cfg.has_kd)  # fmt: skip
            sources[label] = run_dir.resolve()
            inputs.append(file_entry(model_file(run_dir.resolve())))
            return label

        def add_fusion(run_dir: Path) -> str:
            members = json.loads((run_dir / MEMBERS_FILE).read_text())
            label = fusion_label(members)
            if label in sources:
                if sources[label] != run_dir.resolve():
                    raise KdgatError(f"two different {label} runs ({sources[label]}, {run_dir}); export one")
                return label
            member_labels = {role: add_model(run_dir / members[role]) for role in ("vgae", "gat")}
            target = staging / b.MODELS_DIR / label
            target.mkdir(parents=True)
            for name in (FUSION_FILE, CONFIG_FILE, METRICS_FILE):
                shutil.copy2(run_dir / name, target / name)
            # member folders relative to the fusion folder: the bundle can move
            relative = {**members, **{role: f"../{member}" for role, member in member_labels.items()}}
            (target / MEMBERS_FILE).write_text(json.dumps(relative, indent=2) + "\n")
            metrics = json.loads((run_dir / METRICS_FILE).read_text())
            models[label] = b.ModelSpec(label=label, kind="fusion", path=f"{b.MODELS_DIR}/{label}",
                                        source=str(run_dir.resolve()), parameters=int(metrics["ensemble_parameters"]),
                                        members=member_labels, method=members["method"], scale=members["scale"],
                                        kd=bool(members["kd"]))  # fmt: skip
            sources[label] = run_dir.resolve()
            inputs.append(file_entry(run_dir.resolve() / FUSION_FILE))
            return label

        for run_dir in run_dirs:
            label = add_fusion(run_dir) if is_fusion_run(run_dir) else add_model(run_dir)
            if any(d.label == label for d in detectors):
                continue
            name, entry = recorded_entry(document, run_dir, label, eval_dir)
            if not entry.get("validation"):
                raise KdgatError(_no_validation(eval_dir, name))
            validation = {k: entry["validation"].get(k) for k in _VALIDATION_KEYS}
            detectors.append(
                b.Detector(label=label, threshold=_threshold(entry, name, eval_dir), validation=validation)
            )

        meta = store.metadata
        shutil.copy2(graphs_dir / "vocab.json", staging / b.VOCAB_FILE)
        atomic_write_text(staging / b.STORE_FILE, json.dumps({k: meta.get(k) for k in _STORE_KEYS}, indent=2) + "\n")
        atomic_write_text(staging / b.REFERENCE_FILE, json.dumps(ood.reference_statistics(store)) + "\n")
        files = sorted(p for p in staging.rglob("*") if p.is_file())
        spec = b.DetectorSpec(
            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            dataset=store.dataset,
            detectors=detectors,
            models=list(models.values()),
            feature_set=meta["feature_set"]["tag"],
            window=int(meta["window"]),
            stride=int(meta["stride"]),
            vocab_size=store.vocab_size,
            num_node_features=store.num_node_features,
            store_fingerprint=meta.get("fingerprint"),
            versions=package_versions(),
            files=[
                b.BundleFile(path=str(p.relative_to(staging)), sha256=sha256_file(p), bytes=p.stat().st_size)
                for p in files
            ],  # fmt: skip
        )
        atomic_write_text(staging / b.SPEC_FILE, spec.model_dump_json(indent=2) + "\n")

        from kdgat.detection.detector import load_detector

        loaded = load_detector(staging)  # a bundle that exists also loads, without the store
        summary = {
            "detectors": [d.label for d in detectors],
            "thresholds": {d.label: {"value": d.threshold.value, "policy": d.threshold.policy} for d in detectors},
            "models": {m.label: m.kind for m in models.values()},
            "parameters": {d.label: loaded.parameters(d.label) for d in detectors},
            "feature_set": spec.feature_set,
            "window": spec.window,
            "stride": spec.stride,
            "vocab_size": spec.vocab_size,
            "files": len(spec.files) + 1,
            "bytes": sum(f.bytes for f in spec.files),
        }
        manifest = write_manifest(
            staging,
            stage="export",
            inputs=[*inputs, file_entry((eval_dir / METRICS_FILE if eval_dir.is_dir() else eval_dir).resolve())],
            config={
                "runs": [str(r.resolve()) for r in run_dirs],
                "evaluation": str(eval_dir.resolve()),
                "graphs": str(graphs_dir.resolve()),
            },  # fmt: skip
            outputs=[{"path": b.SPEC_FILE}] + [{"path": f.path, "sha256": f.sha256} for f in spec.files],
            wall_time_s=time.perf_counter() - started,
            dataset=store.dataset,
            summary=summary,
        )
    assert MANIFEST_NAME not in {f.path for f in spec.files}
    return manifest
