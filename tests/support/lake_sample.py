"""Hand-made run folders with the exact files of real train, fuse and evaluate outputs.

The lake's tests and ``bench/lake.py`` need many finished runs with metrics
chosen by hand; training them would take minutes each. The configs are real
resolved configs, the metrics come from :func:`kdgat.evaluation.metrics.binary_metrics`
on labels and scores that give the chosen confusion counts, and the manifests
are written by :func:`kdgat.core.manifest.write_manifest`. Only the weight files are
placeholders (the lake hashes them, never loads them). Test and benchmark
support, so it lives beside the benchmarks, not in the package.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from kdgat.core.config import config_to_json, resolve_config
from kdgat.core.hashing import content_hash
from kdgat.core.manifest import file_entry, write_manifest
from kdgat.evaluation.metrics import binary_metrics, curve_points

SCENARIOS = ("test_01_known_vehicle_known_attack", "test_02_unknown_vehicle_known_attack")
TRAINED = (("vgae", "large", False), ("gat", "large", False), ("vgae", "small", True), ("gat", "small", True),
           ("gat", "small", False))  # fmt: skip
EVALUATED = ("gat_large", "gat_small_kd", "gat_small", "vgae_large", "fusion_dqn_small_kd")
Counts = tuple[int, int, int, int]  # tp, fp, tn, fn


@functools.lru_cache(maxsize=256)
def _config(model: str, scale: str, kd: bool, seed: int) -> str:
    aux = "kd_standard" if kd else "none"
    overrides = [f"seed={seed}", "training.max_epochs=4"] + (["dqn.episodes=20"] if model == "dqn" else [])
    return config_to_json(resolve_config(model, scale, aux, overrides))


def _write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")


def _manifest(out_dir: Path, stage: str, inputs: list[Path], config: dict, outputs: list[str], dataset: str) -> None:
    write_manifest(
        out_dir, stage=stage, inputs=[file_entry(p) for p in inputs], config=config,
        outputs=[{"path": p} for p in outputs], wall_time_s=1.0, dataset=dataset,
    )  # fmt: skip


def f1_of(counts: Counts) -> float:
    """The F1 of confusion counts, by hand: what the lake's figures are checked against."""
    tp, fp, _tn, fn = counts
    return 2 * tp / (2 * tp + fp + fn)


def scored(counts: Counts) -> tuple[np.ndarray, np.ndarray]:
    """Labels and 0/1 scores whose confusion counts at threshold 0.5 are ``counts``."""
    tp, fp, tn, fn = counts
    y = np.array([1] * tp + [1] * fn + [0] * fp + [0] * tn, dtype=np.int64)
    s = np.array([1.0] * tp + [0.0] * fn + [1.0] * fp + [0.0] * tn)
    return y, s


def default_counts(rng: np.random.Generator, scenarios: tuple[str, ...]) -> dict[str, Counts]:
    out = {}
    for scenario in ("validation", *scenarios):
        pos, neg = int(rng.integers(20, 60)), int(rng.integers(40, 100))
        tp, tn = int(rng.integers(pos // 2, pos + 1)), int(rng.integers(neg // 2, neg + 1))
        out[scenario] = (tp, neg - tn, tn, pos - tp)
    return out


def write_store(root: Path, dataset: str, scenarios: tuple[str, ...]) -> Path:
    store = root / "graphs"
    parts = {
        "train": {"split": "train", "scenario": "train", "graphs": 400, "attack_share": 0.25},
        "val": {"split": "val", "scenario": "val", "graphs": 100, "attack_share": 0.25},
    }
    parts.update({s: {"split": "test", "scenario": s, "graphs": 150, "attack_share": 0.3} for s in scenarios})
    _write_json(
        store / "metadata.json",
        {"kind": "kdgat-graph-store", "dataset": dataset, "fingerprint": content_hash([dataset, list(scenarios)]),
         "window": 100, "stride": 100, "feature_set": {"name": "e4", "version": "1", "tag": "e4@1"},
         "vocab_size": 64, "oov_index": 63, "parts": parts},
    )  # fmt: skip
    return store


def write_train_run(
    run_dir: Path, store: Path, dataset: str, model: str, scale: str, kd: bool, seed: int,
    teacher: Path | None = None, epochs: int = 4,
) -> Path:  # fmt: skip
    cfg_text = _config(model, scale, kd, seed)
    cfg = json.loads(cfg_text)
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(cfg_text, encoding="utf-8")
    (run_dir / "model.pt").write_bytes(content_hash([str(run_dir), seed]).encode())  # placeholder weights
    sizes = {("gat", "large"): 336130, ("gat", "small"): 61698, ("vgae", "large"): 388910, ("vgae", "small"): 68542}
    lines = ["epoch,step,train_loss,val_loss"]
    for epoch in range(epochs):
        lines.append(f"{epoch},{epoch * 3 + 2},,{0.7 / (epoch + 1):.6f}")
        lines.append(f"{epoch},{epoch * 3 + 2},{0.8 / (epoch + 1):.6f},")
    (run_dir / "logs" / "metrics.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    metrics = {
        "model": model, "scale": scale, "auxiliaries": cfg["auxiliaries"], "config_hash": content_hash(cfg),
        "best_val_loss": 0.7 / epochs, "epochs": epochs, "stopped_early": False, "parameters": sizes[(model, scale)],
        "num_node_features": 11, "vocab_size": 64, "train_graphs": 400, "val_graphs": 100,
        "teacher": str(teacher) if teacher else None,
        "teacher_parameters": sizes[(model, "large")] if teacher else None, "device": "cpu",
    }  # fmt: skip
    _write_json(run_dir / "metrics.json", metrics)
    inputs = [store / "metadata.json"] + ([teacher / "model.pt"] if teacher else [])
    outputs = ["model.pt", "config.json", "metrics.json", "logs/metrics.csv"]
    _manifest(run_dir, "train", inputs, cfg, outputs, dataset)
    return run_dir


def write_fuse_run(
    run_dir: Path, store: Path, dataset: str, vgae: Path, gat: Path, kd: bool, seed: int, scale: str = "small"
) -> Path:  # fmt: skip
    cfg_text = _config("dqn", scale, False, seed)
    cfg = json.loads(cfg_text)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(cfg_text, encoding="utf-8")
    (run_dir / "fusion.pt").write_bytes(content_hash([str(run_dir), seed]).encode())
    members = {"method": "dqn", "vgae": str(vgae.resolve()), "gat": str(gat.resolve()), "vgae_scale": 0.09,
               "scale": scale, "kd": kd}  # fmt: skip
    _write_json(run_dir / "members.json", members)
    _write_json(
        run_dir / "dqn_policy.json",
        {"n_windows": 100, "mean_alpha": 0.8, "mean_alpha_by_class": {"benign": 0.7, "attack": 0.9}, "alpha": []},
    )
    metrics = {"model": "fusion", "method": "dqn", "scale": scale, "config_hash": content_hash(cfg),
               "fusion_windows": 100, "fallback": None, "collapsed_to": None, "history": {"episodes": 20},
               "ensemble_parameters": 162581, "fusion_parameters": 32341}  # fmt: skip
    _write_json(run_dir / "metrics.json", metrics)
    inputs = [store / "metadata.json", vgae / "model.pt", gat / "model.pt"]
    outputs = ["fusion.pt", "members.json", "config.json", "metrics.json", "dqn_policy.json"]
    _manifest(run_dir, "fuse", inputs, {**cfg, "method": "dqn"}, outputs, dataset)
    return run_dir


def write_eval_run(
    eval_dir: Path, store: Path, dataset: str, runs: dict[str, Path], counts: dict[str, dict[str, Counts]],
    alpha_by_class: dict[str, float] | None = None,
) -> Path:  # fmt: skip
    """An evaluate folder over ``runs`` (label -> run folder) with the given confusion counts per scenario."""
    eval_dir.mkdir(parents=True, exist_ok=True)
    document = {"store": str(store), "threshold_policy": "f1", "runs": {}}
    curves, policies = {}, {}
    for label, run_dir in runs.items():
        family, scale, kd = label.rsplit("_kd", 1)[0].rsplit("_", 1) + [label.endswith("_kd")]
        model = "fusion" if family.startswith("fusion") else family
        result = {"run_dir": str(run_dir), "model": model, "scale": scale, "kd": kd,
                  "threshold": {"threshold": 0.5, "method": "f1", "value": None, "fallback": False},
                  "test": {}}  # fmt: skip
        if model == "fusion":
            result["method"] = family.removeprefix("fusion_")
        curves[label] = {}
        for scenario, c in counts[label].items():
            y, s = scored(c)
            values = binary_metrics(y, s, 0.5)
            if scenario == "validation":
                result["validation"] = values
            else:
                result["test"][scenario] = values
            curves[label][scenario] = curve_points(y, s)
        document["runs"][label] = result
        if model == "fusion":
            by_class = alpha_by_class or {"benign": 0.7, "attack": 0.9}
            policies[label] = {"n_windows": sum(next(iter(counts[label].values()))), "mean_alpha": 0.8,
                               "mean_alpha_by_class": by_class, "alpha": []}  # fmt: skip
    _write_json(eval_dir / "metrics.json", document)
    _write_json(eval_dir / "curves.json", curves)
    np.savez_compressed(eval_dir / "embeddings.npz", placeholder=np.zeros(3))
    outputs = ["metrics.json", "curves.json", "embeddings.npz"]
    if policies:
        _write_json(eval_dir / "dqn_policy.json", policies)
        outputs.append("dqn_policy.json")
    inputs = [store / "metadata.json"] + [r / ("fusion.pt" if (r / "fusion.pt").exists() else "model.pt")
                                          for r in runs.values()]  # fmt: skip
    _manifest(eval_dir, "evaluate", inputs, {"threshold_policy": "f1", "batch_size": 1024, "explain": 0}, outputs,
              dataset)  # fmt: skip
    return eval_dir


def write_run_set(
    root: Path, *, dataset: str = "synthetic", seed: int = 42, counts: dict[str, dict[str, Counts]] | None = None,
    scenarios: tuple[str, ...] = SCENARIOS, evaluated: tuple[str, ...] = EVALUATED,
) -> dict[str, Path]:  # fmt: skip
    """The demo's runs (teachers, KD students, the no-KD student, a DQN fusion) and one evaluation of them.

    ``counts`` maps each evaluated label to {"validation" | scenario: (tp, fp, tn, fn)}; missing labels get
    counts drawn from ``seed``. Returns label -> folder, plus "eval" and "graphs".
    """
    root = Path(root)
    store = write_store(root, dataset, scenarios)
    rng = np.random.default_rng([seed, len(dataset)])
    paths: dict[str, Path] = {"graphs": store}
    for model, scale, kd in TRAINED:
        label = f"{model}_{scale}" + ("_kd" if kd else "")
        teacher = paths[f"{model}_large"] if kd else None
        paths[label] = write_train_run(root / "runs" / label, store, dataset, model, scale, kd, seed, teacher)
    paths["fusion_dqn_small_kd"] = write_fuse_run(
        root / "runs" / "fusion_dqn_small", store, dataset, paths["vgae_small_kd"], paths["gat_small_kd"], True, seed
    )
    counts = dict(counts or {})
    for label in evaluated:
        counts.setdefault(label, default_counts(rng, scenarios))
    paths["eval"] = write_eval_run(root / "eval", store, dataset, {k: paths[k] for k in evaluated}, counts)
    return paths
