"""The evaluate stage: every run on validation and on every test scenario of a store.

The decision threshold of each model is chosen on validation (and reported),
then applied unchanged to every test scenario; threshold-free ROC-AUC and
PR-AUC are reported beside it. Outputs: ``metrics.json``, ``curves.json``
(ROC/PR points per run and scenario), ``embeddings.npz`` (validation
embeddings and labels per run), ``attention.npz`` (GAT attention on a sample
of validation graphs) and ``manifest.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from kdgat.core.atomic import atomic_path, atomic_write_text, ensure_folder
from kdgat.core.errors import KdgatError, UsageError
from kdgat.core.manifest import Manifest, begin_output, file_entry, write_manifest
from kdgat.core.stage_log import log_stage
from kdgat.core.threads import set_threads
from kdgat.data.batching import assemble_batch
from kdgat.data.store import GraphStore, open_store
from kdgat.evaluation.explain import explain_gat, sample_graphs
from kdgat.evaluation.metrics import DEFAULT_POLICY, binary_metrics, choose_threshold, curve_points, parse_policy
from kdgat.evaluation.scoring import score_model
from kdgat.fusion.ensemble import FUSION_FILE, fused_scores, is_fusion_run, load_fusion_run
from kdgat.models.compiled import check_compiler, compile_for_inference
from kdgat.training.runs import load_run_model, model_file

Progress = Callable[[str], None]
ATTENTION_SAMPLE = 50
RESULTS_FILE = "metrics.json"
_LOGGED = ("f1", "precision", "recall", "fpr", "fnr", "mcc", "roc_auc", "pr_auc", "accuracy", "balanced_accuracy")


def run_label(cfg) -> str:
    """gat_large, gat_small_kd, vgae_small ... (unique per model variant)."""
    return f"{cfg.model_type}_{cfg.scale}" + ("_kd" if cfg.has_kd else "")


def choose_by_policy(y_val: np.ndarray, scores_val: np.ndarray, policy: str) -> dict:
    """The validation threshold of ``policy`` (f1, margin, youden, fpr:<rate>), recorded with the policy."""
    method, options = parse_policy(policy)
    return {**choose_threshold(y_val, scores_val, method, **options), "policy": policy}


def _labelled(part) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(part.y)
    keep = y >= 0
    return keep, y[keep].astype(np.int64)


def _attention_sample(model, part) -> dict[str, np.ndarray]:
    """Per-layer attention of the first validation graphs, flattened with offsets per layer."""
    batch = assemble_batch(part, np.arange(min(ATTENTION_SAMPLE, part.num_graphs)))
    with torch.inference_mode():
        _, attention = model(batch.x, batch.edge_index, batch.batch, edge_attr=batch.edge_attr, return_attention=True)
    arrays = {"graph_ptr": batch.ptr.numpy(), "node_ids": batch.x[:, 0].long().numpy(), "y": batch.y.numpy()}
    for layer, (edge_index, alpha) in enumerate(attention):
        arrays[f"layer{layer}_edge_index"] = edge_index.numpy()
        arrays[f"layer{layer}_alpha"] = alpha.numpy()
    return arrays


def evaluate_run(
    run_dir: Path,
    store: GraphStore,
    policy: str,
    batch_size: int,
    explain: int = 0,
    compile_models: bool = False,
    progress: Progress | None = None,
) -> tuple[str, dict, dict, dict]:
    model, cfg = load_run_model(run_dir, store)
    # scores may come from the compiled model; attention and explanations need the eager one
    kind = cfg.model_type
    scorer = compile_for_inference(model) if compile_models and kind != "hgb" else model
    label = run_label(cfg)
    val = store.part("val")
    keep, y_val = _labelled(val)
    scored = score_model(kind, scorer, val, batch_size, with_embedding=True)
    val_scores = scored["score"][keep]
    threshold = choose_by_policy(y_val, val_scores, policy)
    result = {
        "run_dir": str(run_dir),
        "model": kind,
        "scale": cfg.scale,
        "kd": cfg.has_kd,
        "parameters": model.parameters if kind == "hgb" else sum(p.numel() for p in model.parameters()),
        "score": "reconstruction_error" if kind == "vgae" else "p_attack",
        "threshold": threshold,
        "validation": binary_metrics(y_val, val_scores, threshold["threshold"]),
        "test": {},
    }
    curves = {"validation": curve_points(y_val, val_scores)}
    for name, part in store.test_parts().items():
        keep_t, y_t = _labelled(part)
        if len(y_t) == 0:
            continue
        scores = score_model(kind, scorer, part, batch_size)["score"][keep_t]
        result["test"][name] = binary_metrics(y_t, scores, threshold["threshold"])
        curves[name] = curve_points(y_t, scores)
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


def evaluate_fusion_run(run_dir: Path, store: GraphStore, policy: str) -> tuple[str, dict, dict, dict]:
    ensemble, fusion, members = load_fusion_run(run_dir, store)
    label = f"fusion_{members['method']}_{members['scale']}" + ("_kd" if members["kd"] else "")
    val, _ = ensemble.data(store.part("val"))
    val_scores = fused_scores(fusion, val, members)
    threshold = choose_by_policy(val.labels.astype(np.int64), val_scores, policy)
    result = {
        "run_dir": str(run_dir),
        "model": "fusion",
        "method": members["method"],
        "scale": members["scale"],
        "kd": members["kd"],
        "members": {"vgae": members["vgae"], "gat": members["gat"]},
        "fallback": members.get("fallback"),
        "collapsed_to": json.loads((Path(run_dir) / "metrics.json").read_text()).get("collapsed_to"),
        "parameters": json.loads((Path(run_dir) / "metrics.json").read_text())["ensemble_parameters"],
        "score": "fused",
        "threshold": threshold,
        "validation": binary_metrics(val.labels.astype(np.int64), val_scores, threshold["threshold"]),
        "test": {},
    }
    curves = {"validation": curve_points(val.labels.astype(np.int64), val_scores)}
    for name, part in store.test_parts().items():
        data, _ = ensemble.data(part)
        if len(data) == 0:
            continue
        scores = fused_scores(fusion, data, members)
        result["test"][name] = binary_metrics(data.labels.astype(np.int64), scores, threshold["threshold"])
        curves[name] = curve_points(data.labels.astype(np.int64), scores)
    extras = {"policy": {label: fusion.policy_summary(val)} if hasattr(fusion, "policy_summary") else {}}
    return label, result, curves, extras


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
) -> Manifest:
    """Evaluate every run on the store's validation and test parts (``metrics.json``, :func:`read_results`).

    ``explain``: validation graphs explained per GAT run with GNNExplainer (slow: tens of seconds a
    graph for a teacher on CPU). ``progress(message)`` hears about each run and each explained graph.
    """
    set_threads(threads)
    started = time.perf_counter()
    graphs_dir, out_dir = Path(graphs_dir), Path(out_dir)
    if compile_models:
        check_compiler()
    ensure_folder(out_dir)  # an unusable output path fails now, not after the work
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
    begin_output(out_dir)
    metrics, curves, embeddings, attention, policies, explanations = {}, {}, {}, {}, {}, {}
    for index, run in enumerate(map(Path, run_dirs), 1):
        if progress:
            progress(f"[{index}/{len(run_dirs)}] {run}: scoring validation and {len(store.test_parts())} test parts")
        if is_fusion_run(run):
            label, result, run_curves, arrays = evaluate_fusion_run(run, store, policy)
        else:
            label, result, run_curves, arrays = evaluate_run(
                run, store, policy, batch_size, explain, compile_models, progress
            )
        if label in metrics:
            raise KdgatError(f"{run}: a second {label} run; evaluate one run per model variant")
        metrics[label], curves[label] = result, run_curves
        embeddings.update(arrays.get("embeddings", {}))
        attention.update(arrays.get("attention", {}))
        policies.update(arrays.get("policy", {}))
        explanations.update(arrays.get("explanations", {}))
    document = {"store": str(graphs_dir), "threshold_policy": policy, "runs": metrics}
    _save_npz(out_dir / "embeddings.npz", embeddings)
    if attention:
        _save_npz(out_dir / "attention.npz", attention)
    atomic_write_text(out_dir / "curves.json", json.dumps(curves) + "\n")
    if explanations:
        _save_npz(out_dir / "explanations.npz", explanations)
    if policies:
        atomic_write_text(out_dir / "dqn_policy.json", json.dumps(policies) + "\n")
    for label, result in metrics.items():  # one MLflow run per evaluated model, metrics per scenario
        summary = {f"val_{k}": v for k, v in result["validation"].items() if k in _LOGGED}
        for scenario, values in result["test"].items():
            summary.update({f"{scenario}.{k}": v for k, v in values.items() if k in _LOGGED})
        result["mlflow"] = log_stage(
            stage="evaluate",
            out_dir=out_dir,
            config={
                "threshold_policy": policy,
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
    atomic_write_text(out_dir / RESULTS_FILE, json.dumps(document, indent=2) + "\n")
    inputs = [file_entry(graphs_dir / "metadata.json")]
    for r in map(Path, run_dirs):
        inputs.append(file_entry(r / FUSION_FILE if is_fusion_run(r) else model_file(r)))
    outputs = [RESULTS_FILE, "curves.json", "embeddings.npz"] + (["attention.npz"] if attention else [])
    outputs += ["dqn_policy.json"] if policies else []
    outputs += ["explanations.npz"] if explanations else []
    return write_manifest(
        out_dir,
        stage="evaluate",
        inputs=inputs,
        config={"threshold_policy": policy, "batch_size": batch_size, "explain": explain, "compile": compile_models},
        outputs=[{"path": p} for p in outputs],
        wall_time_s=time.perf_counter() - started,
        dataset=dataset,
        summary={"threshold_policy": policy, "models": list(metrics)},
    )


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, **arrays)


def read_results(out_dir: str | Path) -> dict:
    """The evaluation's ``metrics.json``: per model, its threshold and validation and per-scenario metrics."""
    return json.loads((Path(out_dir) / RESULTS_FILE).read_text())
