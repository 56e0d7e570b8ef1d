"""The evaluate stage: every run on validation and on every test scenario of a store.

The decision threshold of each model is chosen on validation (and reported),
then applied unchanged to every test scenario; threshold-free ROC-AUC and
PR-AUC are reported beside it. Outputs: ``metrics.json``, ``curves.json``
(ROC/PR points per run and scenario), ``embeddings.npz`` (validation
embeddings and labels per run), ``attention.npz`` (GAT attention on a sample
of validation graphs) and ``manifest.json``; with ``scores``, ``scores.parquet`` (one row per scored
window: run, part, window, file, label, score, alert).

A fusion's members are scored once: the single models are evaluated before the fusions (the
outputs keep the order given), a member's per-part scores are kept, and a fusion is built from its
members' kept scores instead of scoring them again (a member not evaluated in the call is scored by
the fusion). With ``compile_models`` a fusion's members are compiled too, as in ``kdgat detect``, so
its numbers do not depend on which runs share the call.

A store built with ``kdgat graphs --like`` has no validation part: the thresholds then come from an
earlier evaluation of the same runs (``thresholds``: its folder or ``metrics.json``), as recorded there.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from kdgat.core.atomic import atomic_path, atomic_write_text, check_output_folder
from kdgat.core.config import load_frozen_config
from kdgat.core.errors import KdgatError, UsageError
from kdgat.core.jsonfile import read_json
from kdgat.core.manifest import Manifest, file_entry, refuse_other_output
from kdgat.core.publish import publish_output, staged_output
from kdgat.core.run_files import CONFIG_FILE, FUSION_FILE, MEMBERS_FILE, METRICS_FILE, SCORES_FILE
from kdgat.core.stage_log import log_stage
from kdgat.core.threads import set_threads
from kdgat.data.batching import assemble_batch
from kdgat.data.split import HELD_OUT_BLOCKS_ADVICE
from kdgat.data.store import GraphStore, open_store
from kdgat.evaluation.explain import explain_gat, sample_graphs
from kdgat.evaluation.metrics import binary_metrics, choose_threshold, curve_points
from kdgat.evaluation.policies import DEFAULT_POLICY, parse_policy
from kdgat.evaluation.recorded import read_evaluation, recorded_entry
from kdgat.evaluation.scoring import score_model
from kdgat.fusion.ensemble import (
    check_fusion_run,
    ensemble_scores,
    fusion_label,
    is_fusion_run,
    load_fusion_run,
    member_dirs,
    novel_counts,
)
from kdgat.models.compiled import check_compiler, compile_for_inference
from kdgat.models.gat import on_batch
from kdgat.training.runs import check_run, check_scored_store, load_run_model, model_file, run_label

Progress = Callable[[str], None]
# a member run's scores per part ({"val": ..., test part name: ...}), by its resolved folder
MemberScores = dict[Path, dict[str, dict]]
ATTENTION_SAMPLE = 50
_LOGGED = ("f1", "precision", "recall", "fpr", "fnr", "mcc", "roc_auc", "pr_auc", "accuracy", "balanced_accuracy")


def choose_by_policy(y_val: np.ndarray, scores_val: np.ndarray, policy: str) -> dict:
    """The validation threshold of ``policy`` (f1, margin, youden, fpr:<rate>), recorded with the policy."""
    method, options = parse_policy(policy)
    return {**choose_threshold(y_val, scores_val, method, **options), "policy": policy}


def _unlabelled_parts(store: GraphStore) -> list[str]:
    """The test parts without a labelled window: scored by none (no figure to give), recorded in the manifest's
    summary (``unlabelled_parts``) so that the command names them (a capture without labels in a --like store gave
    an empty evaluation without a word)."""
    return [name for name, part in store.test_parts().items() if not _has_labels(part)]


def _has_labels(part) -> bool:
    """Whether any window of a part is labelled (y >= 0; -1: its capture carries no labels)."""
    return bool((np.asarray(part.y) >= 0).any())


def _labelled(part) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(part.y)
    keep = y >= 0
    return keep, y[keep].astype(np.int64)


def _attention_sample(model, part) -> dict[str, np.ndarray]:
    """Per-layer attention of the first validation graphs, flattened with offsets per layer."""
    batch = assemble_batch(part, np.arange(min(ATTENTION_SAMPLE, part.num_graphs)))
    with torch.inference_mode():
        _, attention = on_batch(model, batch, return_attention=True)
    arrays = {"graph_ptr": batch.ptr.numpy(), "node_ids": batch.x[:, 0].long().numpy(), "y": batch.y.numpy()}
    for layer, (edge_index, alpha) in enumerate(attention):
        arrays[f"layer{layer}_edge_index"] = edge_index.numpy()
        arrays[f"layer{layer}_alpha"] = alpha.numpy()
    return arrays


def _recorded_thresholds(source: Path, run_dirs: list[Path], fusions: list[bool]) -> dict[Path, dict]:
    """The threshold an earlier evaluation recorded for each run's very weights, by run folder: found (or refused,
    another seed's run of the same name) once, before any work."""
    document, found = read_evaluation(source), {}
    for run, fusion in zip(run_dirs, fusions, strict=True):
        if fusion:
            label = fusion_label(read_json(run / MEMBERS_FILE, missing="missing (the fusion run is incomplete)"))
        else:
            label = run_label(load_frozen_config(run / CONFIG_FILE))
        name, entry = recorded_entry(document, run, label, source)
        if not isinstance(entry.get("threshold"), dict):
            raise KdgatError(f"--thresholds {source}: the entry of {name} records no threshold")
        found[run] = {**entry["threshold"], "recorded": True}
    return found


def _finite(scores: np.ndarray, run_dir: Path, part: str) -> np.ndarray:
    """``scores`` of a run on a part, refused in one line where some are NaN or infinite: weights a training that
    diverged left (the threshold and metrics raised a ValueError's traceback)."""
    bad = int(np.count_nonzero(~np.isfinite(np.asarray(scores, np.float64))))
    if bad:
        raise KdgatError(
            f"{run_dir}: {bad:,} of its {len(scores):,} scores on part '{part}' are NaN or infinite (weights of a "
            "training that diverged?); train it again, e.g. with a lower training.lr"
        )
    return scores


def _validation(store: GraphStore):
    """The store's validation part, or None where it has none or no labelled window in it (a store built --like;
    held-out blocks shorter than a window, which `kdgat graphs` warned of)."""
    val = store.parts.get("val")
    return val if val is not None and _has_labels(val) else None


def _threshold(recorded: dict | None, run_dir: Path, label: str, y_val, val_scores, policy: str, store) -> dict:
    """The threshold an earlier evaluation recorded for this run (``recorded``: :func:`_recorded_thresholds`), else
    one chosen on validation."""
    if recorded is not None:
        return recorded[Path(run_dir)]
    if y_val is None:
        if "val" not in store.parts:
            raise KdgatError(
                f"graph store {store.path}: no part 'val' to choose thresholds on (a store built with --like); "
                "pass --thresholds EVAL_DIR, an evaluation of these runs on their training store"
            )
        raise KdgatError(
            f"graph store {store.path}: its 'val' part holds no labelled window to choose thresholds on; rebuild the "
            f"store: {HELD_OUT_BLOCKS_ADVICE}"
        )
    return choose_by_policy(y_val, val_scores, policy)


def _score_rows(rows: list, label: str, name: str, part, keep: np.ndarray, scores: np.ndarray, threshold: float):
    """Per-window score rows (for ``scores.parquet``) of the scored windows of one part."""
    index = np.flatnonzero(keep)
    files = np.array(part.files, dtype=object)[np.asarray(part.file_index)[index]] if len(index) else []
    rows.append({
        "run": label, "part": name, "window": index, "window_start": np.asarray(part.window_start)[index],
        "file": files, "label": np.asarray(part.y)[index], "score": np.asarray(scores, np.float32),
        "alert": np.asarray(scores, np.float64) >= threshold,
    })  # fmt: skip


def evaluate_run(
    run_dir: Path,
    store: GraphStore,
    policy: str,
    batch_size: int,
    explain: int = 0,
    compile_models: bool = False,
    progress: Progress | None = None,
    recorded: dict | None = None,
    score_rows: list | None = None,
    kept: dict[str, dict] | None = None,
) -> tuple[str, dict, dict, dict]:
    """One trained run on validation and every test part; ``kept``: filled with its scores per part, for
    the fusions it is a member of."""
    model, cfg = load_run_model(run_dir, store)
    # scores may come from the compiled model; attention and explanations need the eager one
    kind = cfg.model_type
    gnn = isinstance(model, torch.nn.Module)
    scorer = compile_for_inference(model) if compile_models and gnn else model
    label = run_label(cfg)
    val = _validation(store)
    keep, y_val, scored, val_scores = None, None, None, None
    if val is not None:
        keep, y_val = _labelled(val)
        scored = score_model(kind, scorer, val, batch_size, with_embedding=True)
        val_scores = _finite(scored["score"][keep], run_dir, "val")
        if kept is not None:
            kept["val"] = scored
    threshold = _threshold(recorded, run_dir, label, y_val, val_scores, policy, store)
    if score_rows is not None and val is not None:
        _score_rows(score_rows, label, "val", val, keep, val_scores, threshold["threshold"])
    result = {
        "run_dir": str(run_dir),
        "model": kind,
        "scale": cfg.scale,
        "kd": cfg.has_kd,
        "parameters": sum(p.numel() for p in model.parameters()) if gnn else model.parameters,
        "score": {"vgae": "reconstruction_error", "novelty": "anomaly"}.get(kind, "p_attack"),
        "threshold": threshold,
        "validation": None if val is None else binary_metrics(y_val, val_scores, threshold["threshold"]),
        "test": {},
    }
    curves = {} if val is None else {"validation": curve_points(y_val, val_scores)}
    for name, part in store.test_parts().items():
        keep_t, y_t = _labelled(part)
        if len(y_t) == 0:
            continue
        part_scores = score_model(kind, scorer, part, batch_size)
        if kept is not None:
            kept[name] = part_scores
        scores = _finite(part_scores["score"][keep_t], run_dir, name)
        result["test"][name] = binary_metrics(y_t, scores, threshold["threshold"])
        curves[name] = curve_points(y_t, scores)
        if score_rows is not None:
            _score_rows(score_rows, label, name, part, keep_t, scores, threshold["threshold"])
    if val is None:
        return label, result, curves, {}
    embeddings = {}
    if "embedding" in scored:
        embeddings = {f"{label}_embedding": scored["embedding"], f"{label}_labels": np.asarray(val.y)}
    attention = _attention_sample(model, val) if kind == "gat" else {}
    explanations = {}
    if kind == "gat" and explain > 0:
        graphs = sample_graphs(np.asarray(val.y), explain, seed=cfg.seed)
        report = (lambda i, n: progress(f"{label}: GNNExplainer, graph {i}/{n}")) if progress else None
        explained = explain_gat(model, val, graphs, seed=cfg.seed, progress=report)
        explanations = {f"{label}_{k}": v for k, v in explained.items()}
    extras = {
        "embeddings": embeddings,
        "attention": {f"{label}_{k}": v for k, v in attention.items()},
        "explanations": explanations,
    }
    return label, result, curves, extras


def evaluate_fusion_run(
    run_dir: Path,
    store: GraphStore,
    policy: str,
    batch_size: int = 1024,
    recorded: dict | None = None,
    score_rows: list | None = None,
    member_scores: MemberScores | None = None,
    compile_models: bool = False,
) -> tuple[str, dict, dict, dict]:
    """One fusion run; ``member_scores``: its members' scores where they were evaluated already."""
    ensemble, fusion, members = load_fusion_run(run_dir, store)
    if compile_models:
        ensemble.vgae, ensemble.gat = compile_for_inference(ensemble.vgae), compile_for_inference(ensemble.gat)
    label = fusion_label(members)
    vgae_kept, gat_kept = ((member_scores or {}).get(folder, {}) for folder in member_dirs(run_dir, members))

    def data(name: str, part):
        return ensemble.data(part, batch_size, vgae=vgae_kept.get(name), gat=gat_kept.get(name))

    val_part = _validation(store)
    val, val_scores, y_val = None, None, None
    if val_part is not None:
        val, keep = data("val", val_part)
        val_scores = _finite(ensemble_scores(fusion, val, members, batch_size), run_dir, "val")
        y_val = val.labels.astype(np.int64)
    threshold = _threshold(recorded, run_dir, label, y_val, val_scores, policy, store)
    if score_rows is not None and val_part is not None:
        _score_rows(score_rows, label, "val", val_part, keep, val_scores, threshold["threshold"])
    fitted = read_json(Path(run_dir) / METRICS_FILE, missing="missing (the fusion run is incomplete)")
    result = {
        "run_dir": str(run_dir),
        "model": "fusion",
        "method": members["method"],
        "scale": members["scale"],
        "kd": members["kd"],
        "members": {"vgae": members["vgae"], "gat": members["gat"]},
        "fallback": members.get("fallback"),
        "novel_alert": bool(members.get("novel_alert")),
        "novel_windows": {} if val is None else {"validation": novel_counts(val)},
        "collapsed_to": fitted.get("collapsed_to"),
        "parameters": fitted["ensemble_parameters"],
        "score": "fused",
        "threshold": threshold,
        "validation": None if val is None else binary_metrics(y_val, val_scores, threshold["threshold"]),
        "test": {},
    }
    curves = {} if val is None else {"validation": curve_points(y_val, val_scores)}
    for name, part in store.test_parts().items():
        test, keep_t = data(name, part)
        if len(test) == 0:
            continue
        scores = _finite(ensemble_scores(fusion, test, members, batch_size), run_dir, name)
        result["test"][name] = binary_metrics(test.labels.astype(np.int64), scores, threshold["threshold"])
        result["novel_windows"][name] = novel_counts(test)
        curves[name] = curve_points(test.labels.astype(np.int64), scores)
        if score_rows is not None:
            _score_rows(score_rows, label, name, part, keep_t, scores, threshold["threshold"])
    policy = hasattr(fusion, "policy_summary") and val is not None
    extras = {"policy": {label: fusion.policy_summary(val)} if policy else {}}
    return label, result, curves, extras


def _fusion_members(fusion_dirs: list[Path]) -> set[Path]:
    """The member runs of these fusions: their scores are kept for the fusions."""
    folders: set[Path] = set()
    for run in fusion_dirs:
        folders.update(
            member_dirs(run, read_json(run / MEMBERS_FILE, missing="missing (the fusion run is incomplete)"))
        )
    return folders


def run(
    run_dirs: list[str | Path],
    graphs_dir: str | Path,
    out_dir: str | Path,
    *,
    policy: str = DEFAULT_POLICY,
    batch_size: int = 1024,
    explain: int = 0,
    compile_models: bool = False,
    tracking_uri: str | None = None,
    dataset: str | None = None,
    progress: Progress | None = None,
    threads: int | None = None,
    thresholds: str | Path | None = None,
    scores: bool = False,
) -> Manifest:
    """Evaluate every run on the store's validation and test parts (``metrics.json``, :func:`read_results`).

    ``explain``: validation graphs explained per GAT run with GNNExplainer (slow: tens of seconds a
    graph for a teacher on CPU). ``progress(message)`` hears about each run and each explained graph.
    ``thresholds``: an earlier evaluation of the same runs whose thresholds are used instead of
    choosing them here (needed for a store without a validation part). ``scores``: also write
    ``scores.parquet``.
    """
    set_threads(threads)
    started = time.perf_counter()
    graphs_dir, out_dir = Path(graphs_dir), Path(out_dir)
    if compile_models:
        check_compiler()
    refuse_other_output(out_dir, "evaluate")
    check_output_folder(out_dir)  # an unusable output path fails now, not after the work (nothing created)
    if not run_dirs:
        raise UsageError("nothing to evaluate: pass one or more --runs RUN_DIR")
    try:
        parse_policy(policy)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    # recorded absolute and resolved (a staged link becomes the folder it points to): the lake finds them anywhere
    run_dirs = [Path(r).resolve() for r in run_dirs]
    store = open_store(graphs_dir)
    dataset = dataset or store.dataset
    unlabelled = _unlabelled_parts(store)
    validated = _validation(store) is not None
    if thresholds is None and not validated:
        _threshold(None, Path("."), "", None, None, policy, store)  # no way to get thresholds: say so before any work
    score_rows: list | None = [] if scores else None
    fusions = [is_fusion_run(run) for run in run_dirs]
    for run, fusion in zip(run_dirs, fusions, strict=True):  # a missing, unfinished or misfit run: said at once
        if fusion:
            check_fusion_run(run, store)
        else:
            check_run(run, store)
    check_scored_store(run_dirs, store)
    members = _fusion_members([run for run, fusion in zip(run_dirs, fusions, strict=True) if fusion])
    recorded = None if thresholds is None else _recorded_thresholds(Path(thresholds), run_dirs, fusions)
    member_scores: MemberScores = {}
    # the single models first, so that the fusions find their members' scores; results in the order given
    order = sorted(range(len(run_dirs)), key=lambda i: fusions[i])
    evaluated: dict[int, tuple] = {}  # per run: its results and its score rows, written in the order given
    for position, index in enumerate(order, 1):
        run = run_dirs[index]
        run_rows = None if score_rows is None else []
        if progress:
            what = "validation and " if validated else ""
            progress(f"[{position}/{len(run_dirs)}] {run}: scoring {what}{len(store.test_parts())} test parts")
        if fusions[index]:
            outcome = evaluate_fusion_run(
                run, store, policy, batch_size, recorded, run_rows, member_scores, compile_models
            )
        else:
            kept = member_scores.setdefault(run, {}) if run in members else None
            outcome = evaluate_run(
                run, store, policy, batch_size, explain, compile_models, progress, recorded, run_rows, kept
            )
        evaluated[index] = (*outcome, run_rows)
    metrics, curves, embeddings, attention, policies, explanations = {}, {}, {}, {}, {}, {}
    for index, run in enumerate(run_dirs):
        label, result, run_curves, arrays, run_rows = evaluated[index]
        if label in metrics:
            raise KdgatError(f"{run}: a second {label} run; evaluate one run per model variant")
        metrics[label], curves[label] = result, run_curves
        if score_rows is not None:
            score_rows.extend(run_rows)
        embeddings.update(arrays.get("embeddings", {}))
        attention.update(arrays.get("attention", {}))
        policies.update(arrays.get("policy", {}))
        explanations.update(arrays.get("explanations", {}))
    # only now, every run scored: a run refused on this store leaves an earlier evaluation in the folder whole
    with staged_output(out_dir, "evaluate") as staging:  # the finished output stays whole until this one is
        threshold_policy = policy if thresholds is None else f"recorded in {thresholds}"
        document = {"store": str(graphs_dir.resolve()), "threshold_policy": threshold_policy, "runs": metrics}
        _save_npz(staging / "embeddings.npz", embeddings)
        if score_rows is not None:
            _save_scores(staging / SCORES_FILE, score_rows)
        if attention:
            _save_npz(staging / "attention.npz", attention)
        atomic_write_text(staging / "curves.json", json.dumps(curves) + "\n")
        if explanations:
            _save_npz(staging / "explanations.npz", explanations)
        if policies:
            atomic_write_text(staging / "dqn_policy.json", json.dumps(policies) + "\n")
        for label, result in metrics.items():  # one MLflow run per evaluated model, metrics per scenario
            summary = {f"val_{k}": v for k, v in (result["validation"] or {}).items() if k in _LOGGED}
            for scenario, values in result["test"].items():
                summary.update({f"{scenario}.{k}": v for k, v in values.items() if k in _LOGGED})
            result["mlflow"] = log_stage(
                stage="evaluate",
                out_dir=out_dir,
                config={
                    "threshold_policy": threshold_policy,
                    "threshold": result["threshold"]["threshold"],
                    "run_dir": result["run_dir"],
                },
                tags={
                    "dataset": dataset,
                    "stage": "evaluate",
                    "model": label,
                    "scale": result["scale"],
                    "kd": result["kd"],
                    "run_id": f"evaluate_{label}",
                },
                summary=summary,
                artifacts=[],
                tracking_uri=tracking_uri,
            )
        atomic_write_text(staging / METRICS_FILE, json.dumps(document, indent=2) + "\n")
        inputs = [file_entry(graphs_dir.resolve() / "metadata.json", sha256=store.metadata_sha256)]
        for r, fusion in zip(run_dirs, fusions, strict=True):
            inputs.append(file_entry(r / FUSION_FILE if fusion else model_file(r)))
            if fusion:  # its novel-ID rule scores too, and the same weights may be refitted with it on or off
                inputs.append(file_entry(r / MEMBERS_FILE))
        outputs = [METRICS_FILE, "curves.json", "embeddings.npz"] + (["attention.npz"] if attention else [])
        outputs += ["dqn_policy.json"] if policies else []
        outputs += ["explanations.npz"] if explanations else []
        outputs += [SCORES_FILE] if score_rows is not None else []
        if thresholds is not None:
            inputs.append(file_entry(Path(thresholds) / METRICS_FILE if Path(thresholds).is_dir() else thresholds))
        return publish_output(
            staging,
            out_dir,
            stage="evaluate",
            inputs=inputs,
            config={
                "threshold_policy": threshold_policy,  # the one used: recorded thresholds, not --threshold, where given
                "batch_size": batch_size,
                "explain": explain,
                "compile": compile_models,
                "thresholds": None if thresholds is None else str(thresholds),
                "scores": scores,
            },
            outputs=[{"path": p} for p in outputs],
            wall_time_s=time.perf_counter() - started,
            dataset=dataset,
            summary={
                "threshold_policy": threshold_policy,
                "models": list(metrics),
                "unlabelled_parts": unlabelled,
                # captures of a --like store unlike the training vehicle (graphs' check): named by the command
                "out_of_distribution": {
                    source: entry
                    for source, entry in (store.metadata.get("out_of_distribution") or {}).items()
                    if entry["reasons"]
                },
            },
        )


def _save_scores(path: Path, rows: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {k: np.concatenate([np.asarray(r[k]) for r in rows]) if rows else [] for k in
               ("window", "window_start", "file", "label", "score", "alert")}  # fmt: skip
    runs = np.concatenate([np.full(len(r["score"]), r["run"], dtype=object) for r in rows]) if rows else []
    parts = np.concatenate([np.full(len(r["score"]), r["part"], dtype=object) for r in rows]) if rows else []
    types = {"window": pa.int64(), "window_start": pa.int64(), "file": pa.string(), "label": pa.int8(),
             "score": pa.float32(), "alert": pa.bool_()}  # fmt: skip
    table = pa.table({
        "run": pa.array(runs, pa.string()), "part": pa.array(parts, pa.string()),
        **{name: pa.array(columns[name], kind) for name, kind in types.items()},
    })  # fmt: skip
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, **arrays)


def read_results(out_dir: str | Path) -> dict:
    """The evaluation's ``metrics.json``: per model, its threshold and validation and per-scenario metrics."""
    return json.loads((Path(out_dir) / METRICS_FILE).read_text())
