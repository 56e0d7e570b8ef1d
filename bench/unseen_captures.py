"""Experiment: what a supervised model does on an attack it never trained on, measured on validation.

Validation holds held-out blocks of the training captures, so a supervised model has seen every attack
kind it is validated on, and its threshold is chosen where it is sure. Here every attacked training
capture c is left out in turn: the run is trained again (its frozen config and seed) on the training
windows minus c's attack windows, and its best epoch is chosen on validation minus them too. A KD
student's left-out model learns from its teacher's left-out model for the same capture; hgb is fitted
the same way. The benign-only models (VGAE, novelty) never see an attack: their validation is unseen
already and they are printed as they are. Per dataset folder of a `kdgat pipeline` campaign, over its
seeds:

- recall of c's validation attack windows: by the full run at its validation threshold (seen) and by
  the run without c at its own validation threshold (unseen);
- the threshold question: a threshold chosen (``--policy``) on "unseen" validation scores, every
  attack window scored by the run that did not see its capture and every benign window by the full
  run. Its validation figure is nested on the attack side only (for capture j: the threshold from the
  other captures' unseen scores, applied to the run without j; every benign window both sets it and is
  scored); its test figure (the full run at that threshold) is reported, not chosen by;
- with ``--fuse-with RUN=VGAE`` (e.g. ``gat_small=vgae_small``): a weighted average a·GAT + (1-a)·VGAE
  (the VGAE's error squashed as `kdgat fuse` does, e/(e+m), m the median over the benign fusion-part
  windows). Its weight a (grid of 0.05, best PR-AUC) is chosen on a pool of windows that are neither
  validation nor test, each scored by a GAT that did not train on it: the fusion part's windows (an
  attack one by the run without its capture) and the train part's attack windows (likewise; the VGAE
  trains on benign windows only). Its threshold is chosen on the unseen validation scores, and the
  full runs are scored with both on test (reported, not chosen by). The same weight at a threshold
  chosen on the usual (seen) validation scores is printed beside it.

    python bench/unseen_captures.py work/results/z/road --out work/unseen/road \\
        [--run gat_large --run gat_small_kd ...] [--fuse-with gat_small=vgae_small ...] \\
        [--policy margin] [--threads 1]

Left-out runs are kept under ``--out`` and reused. Not a speed benchmark, and not a kdgat feature.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import numpy as np

RUNS = ("gat_large", "gat_small_kd", "gat_small", "hgb_large", "vgae_large")


def of_capture(part, path: str) -> np.ndarray:
    """Which windows of ``part`` come from the source file ``path`` (by path: parts list their files apart)."""
    files = list(part.files)
    return np.asarray(part.file_index) == files.index(path) if path in files else np.zeros(len(part.y), bool)


@contextmanager
def without_attacks_of(path: str):
    """Every GraphDataModule built inside leaves out the attack windows of file ``path`` (train and val)."""
    from kdgat.training import datamodule

    original = datamodule.GraphDataModule._select

    def select(self, part):
        chosen = original(self, part)
        return chosen[~((np.asarray(part.y)[chosen] == 1) & of_capture(part, path)[chosen])]

    datamodule.GraphDataModule._select = select
    try:
        yield
    finally:
        datamodule.GraphDataModule._select = original


def left_out_scores(run_dir: Path, store, capture: int, out: Path, threads: int, part: str = "val") -> np.ndarray:
    """Scores of ``part`` (every window) by ``run_dir``'s model trained again without the attack windows of file
    ``capture`` (its index in the validation part's file list: the runs are named by it)."""
    from kdgat.core.config import load_frozen_config
    from kdgat.evaluation.scoring import score_model
    from kdgat.stages import train
    from kdgat.training.runs import load_run_model
    from kdgat.training.window_models import WINDOW_MODELS

    cfg = load_frozen_config(run_dir / "config.json")
    val = store.part("val")
    path = val.files[capture]
    if cfg.model_type == "hgb":  # fitted in memory: the same selection as fit_window_model's, minus c's attacks
        train_part = store.part("train")
        y = np.asarray(train_part.y)
        model = WINDOW_MODELS["hgb"](cfg.hgb, store.vocab_size, store.metadata["node_features"], seed=cfg.seed)
        model.fit(train_part, np.flatnonzero((y >= 0) & ~((y == 1) & of_capture(train_part, path))))
        return model.p_attack(store.part(part))
    target = out / f"{run_dir.name}_without{capture}"
    if not (target / "model.pt").is_file():
        teacher = None
        if cfg.has_kd:
            recorded = json.loads((run_dir / "metrics.json").read_text())["teacher"]
            teacher = out / f"{Path(recorded).name}_without{capture}"
            if not (teacher / "model.pt").is_file():
                raise SystemExit(f"{run_dir.name} learns from {Path(recorded).name}: list that run before it")
        with without_attacks_of(path):
            train.run(cfg, store.path, target, teacher_dir=teacher, threads=threads, progress_bar=False,
                      tracking_uri=f"sqlite:///{out / 'mlruns.db'}", resume=False)  # fmt: skip
    model, _ = load_run_model(target, store)
    return score_model(cfg.model_type, model, store.part(part))["score"]


def capture_names(paths: list[str]) -> list[str]:
    """File names without extensions, with their folder where two captures share a name (DAGA's)."""
    stems = [Path(p).name.split(".")[0] for p in paths]
    return [
        stem if stems.count(stem) == 1 else f"{Path(p).parent.name}/{stem}"
        for p, stem in zip(paths, stems, strict=True)
    ]


def threshold(y, scores, policy: str) -> float:
    from kdgat.stages.evaluate import choose_by_policy

    return choose_by_policy(y, scores, policy)["threshold"]


def one_seed(seed_dir: Path, store, run: str, policy: str, out: Path, threads: int) -> dict:
    from kdgat.core.config import SUPERVISED_MODELS
    from kdgat.evaluation.metrics import binary_metrics
    from kdgat.evaluation.scoring import score_model
    from kdgat.training.runs import load_run_model

    run_dir = seed_dir / "runs" / run
    model, cfg = load_run_model(run_dir, store)
    val = store.part("val")
    keep = np.asarray(val.y) >= 0  # the labelled windows, as evaluate scores them
    y, files = np.asarray(val.y)[keep].astype(np.int64), np.asarray(val.file_index)[keep]
    full = score_model(cfg.model_type, model, val)["score"][keep]
    t_full = threshold(y, full, policy)
    captures = sorted(set(files[y == 1].tolist()))
    names = capture_names([val.files[c] for c in captures])
    by_capture = {c: full for c in captures}
    if cfg.model_type in SUPERVISED_MODELS:
        by_capture = {c: left_out_scores(run_dir, store, c, out / seed_dir.name, threads)[keep] for c in captures}
    unseen = full.copy()
    for c in captures:
        attacks = (files == c) & (y == 1)
        unseen[attacks] = by_capture[c][attacks]
    row = {"recall_seen": {}, "recall_unseen": {}, "nested_f1_usual": {}, "nested_f1_unseen": {}}
    for c, name in zip(captures, names, strict=True):
        attacks, own = (files == c) & (y == 1), ~((files == c) & (y == 1))
        row["recall_seen"][name] = float((full[attacks] >= t_full).mean())
        t_own = threshold(y[own], by_capture[c][own], policy)  # the run without c, at its usual threshold
        row["recall_unseen"][name] = float((by_capture[c][attacks] >= t_own).mean())
        held = attacks | (y == 0)
        row["nested_f1_usual"][name] = binary_metrics(y[held], by_capture[c][held], t_own)["f1"]
        t_nested = threshold(y[own], unseen[own], policy)
        row["nested_f1_unseen"][name] = binary_metrics(y[held], by_capture[c][held], t_nested)["f1"]
    row["val_scores"] = {"y": y, "full": full, "unseen": unseen}
    t_unseen = threshold(y, unseen, policy)
    row["test"] = {}
    for name, part in sorted(store.test_parts().items()):
        keep = np.asarray(part.y) >= 0
        y_t, s_t = np.asarray(part.y)[keep].astype(np.int64), score_model(cfg.model_type, model, part)["score"][keep]
        row["test"][name] = {k: binary_metrics(y_t, s_t, t) for k, t in (("usual", t_full), ("unseen", t_unseen))}
        row.setdefault("test_scores", {})[name] = (y_t, s_t)
    return row


ALPHAS = np.round(np.linspace(0.0, 1.0, 21), 2)


def squashed_vgae(seed_dir: Path, store, vgae: str) -> dict[str, np.ndarray]:
    """The VGAE run's error on every labelled window of every part, squashed to [0, 1] by the median of its benign
    fusion-part windows (the scale `kdgat fuse` uses, fitted on windows that are neither validation nor test)."""
    from kdgat.evaluation.scoring import score_model
    from kdgat.training.runs import load_run_model

    model, cfg = load_run_model(seed_dir / "runs" / vgae, store)

    def labelled(part):
        keep = np.asarray(part.y) >= 0
        return np.asarray(part.y)[keep], score_model(cfg.model_type, model, part)["score"][keep]

    y_fusion, e_fusion = labelled(store.part("fusion"))
    scale = max(float(np.median(e_fusion[y_fusion == 0])), 1e-12)
    parts = {name: store.part(name) for name in ("train", "fusion", "val")} | store.test_parts()
    return {name: labelled(part)[1] / (labelled(part)[1] + scale) for name, part in parts.items()}


def fusion_pool(seed_dir: Path, store, run: str, out: Path, threads: int) -> dict[str, tuple]:
    """The windows the weight is chosen on, none of them a validation or test window, each scored by a GAT that did
    not train on it: every labelled fusion-part window (an attack one by the run without its capture, a benign one
    by the full run) and every attack window of the train part (by the run without its capture). Per part
    ``(mask over its labelled windows, labels, GAT scores)``."""
    from kdgat.evaluation.scoring import score_model
    from kdgat.training.runs import load_run_model

    run_dir = seed_dir / "runs" / run
    model, cfg = load_run_model(run_dir, store)
    captures = list(store.part("val").files)  # the left-out runs are named by their index here
    pool = {}
    for name in ("fusion", "train"):
        part = store.part(name)
        keep = np.asarray(part.y) >= 0
        y, files = np.asarray(part.y)[keep].astype(np.int64), np.asarray(part.file_index)[keep]
        chosen = np.ones(len(y), bool) if name == "fusion" else y == 1
        # the full run scores the fusion part's benign windows only (the train part's pool is its attack windows,
        # each scored by the run without its capture): it is not run over the train part
        scores = (
            score_model(cfg.model_type, model, part)["score"][keep] if name == "fusion" else np.full(len(y), np.nan)
        )
        for c in sorted(set(files[y == 1].tolist())):
            attacks = (files == c) & (y == 1)
            if part.files[c] not in captures:  # an attacked capture without validation windows: no run without it
                chosen &= ~attacks
                continue
            without = left_out_scores(run_dir, store, captures.index(part.files[c]), out / seed_dir.name, threads, name)
            scores[attacks] = without[keep][attacks]
        pool[name] = (chosen, y[chosen], scores[chosen])
    return pool


def fusion_row(row: dict, pool: dict, vgae: dict[str, np.ndarray], policy: str) -> dict:
    """A weighted average's weight chosen on the pool (:func:`fusion_pool`), its threshold on the unseen validation
    scores (and, beside it, on the usual ones), and its test figures (reported, not chosen by)."""
    from kdgat.evaluation.metrics import binary_metrics
    from kdgat.fusion.ensemble import average_precision

    y_pool = np.concatenate([labels for _, labels, _ in pool.values()])
    gat_pool = np.concatenate([scores for _, _, scores in pool.values()])
    vgae_pool = np.concatenate([vgae[name][chosen] for name, (chosen, _, _) in pool.items()])
    ranking = {float(a): average_precision(y_pool, a * gat_pool + (1 - a) * vgae_pool) for a in ALPHAS}
    alpha = max(ranking, key=lambda a: (ranking[a], a))  # a tie goes to the GAT's side
    y, unseen, full = (row["val_scores"][k] for k in ("y", "unseen", "full"))
    fused_val = alpha * unseen + (1 - alpha) * vgae["val"]
    t_unseen = threshold(y, fused_val, policy)
    t_seen = threshold(y, alpha * full + (1 - alpha) * vgae["val"], policy)
    val_ranking = {
        k: average_precision(y, v) for k, v in (("gat", unseen), ("vgae", vgae["val"]), ("fused", fused_val))
    }
    out = {"alpha": alpha, "pool": {"windows": len(y_pool), "attack": int(y_pool.sum())}, "val_pr_auc": val_ranking}
    out["test"] = {}
    for name, (y_t, s_t) in row["test_scores"].items():
        fused = alpha * s_t + (1 - alpha) * vgae[name]
        out["test"][name] = {
            "unseen": binary_metrics(y_t, fused, t_unseen),
            "seen": binary_metrics(y_t, fused, t_seen),
            "pr_auc": average_precision(y_t, fused),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset_dir", type=Path, help="a dataset folder of a kdgat pipeline campaign")
    parser.add_argument("--out", type=Path, required=True, help="where the left-out runs are kept")
    parser.add_argument("--run", action="append", help=f"run folder names, teachers first (default {RUNS})")
    parser.add_argument("--fuse-with", action="append", default=[], metavar="RUN=VGAE",
                        help="also their weighted average, weighted on unseen scores")  # fmt: skip
    parser.add_argument("--policy", default="margin")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if any("=" not in pair for pair in args.fuse_with):
        parser.error("--fuse-with takes GAT_RUN=VGAE_RUN, e.g. gat_small=vgae_small")
    pairs = dict(pair.split("=", 1) for pair in args.fuse_with)
    if set(pairs) - set(args.run or RUNS):
        parser.error(
            f"--fuse-with names runs not listed with --run: {', '.join(sorted(set(pairs) - set(args.run or RUNS)))}"
        )
    from campaign import seed_folders

    from kdgat.core.threads import set_threads
    from kdgat.data.store import open_store
    from kdgat.evaluation.metrics import format_mean_std, summarize_seeds

    set_threads(args.threads)
    store = open_store(args.dataset_dir / "graphs")
    rows, fused = defaultdict(list), defaultdict(list)
    for seed_dir in seed_folders(args.dataset_dir):
        for run in args.run or RUNS:
            rows[run].append(one_seed(seed_dir, store, run, args.policy, args.out, args.threads))
            if run in pairs:
                pool = fusion_pool(seed_dir, store, run, args.out, args.threads)
                vgae = squashed_vgae(seed_dir, store, pairs[run])
                fused[f"{run} + {pairs[run]}"].append(fusion_row(rows[run][-1], pool, vgae, args.policy))

    def cell(values) -> str:
        return format_mean_std(summarize_seeds(values))

    print(f"## {args.dataset_dir.name}: validation, policy {args.policy}, {len(rows[next(iter(rows))])} seeds\n")
    captures = list(next(iter(rows.values()))[0]["recall_seen"])
    print("| run | " + " | ".join(f"{c}: recall seen / unseen / nested F1 usual → unseen" for c in captures) + " |")
    print("|---|" + "---|" * len(captures))
    for run, seeds in rows.items():
        cells = [
            " / ".join(cell([s[k][c] for s in seeds]) for k in ("recall_seen", "recall_unseen"))
            + " / " + " → ".join(cell([s[k][c] for s in seeds]) for k in ("nested_f1_usual", "nested_f1_unseen"))
            for c in captures
        ]  # fmt: skip
        print(f"| {run} | " + " | ".join(cells) + " |")
    scenarios = list(next(iter(rows.values()))[0]["test"])
    print(f"\n## {args.dataset_dir.name}: test (reported only), threshold usual → on unseen validation scores\n")
    print("| run | " + " | ".join(f"{s} F1 | {s} FPR" for s in scenarios) + " |")
    print("|---|" + "---|---|" * len(scenarios))
    for run, seeds in rows.items():
        cells = [
            " → ".join(cell([r["test"][s][k][m] for r in seeds]) for k in ("usual", "unseen"))
            for s in scenarios
            for m in ("f1", "fpr")
        ]
        print(f"| {run} | " + " | ".join(cells) + " |")
    if fused:
        print_fusions(fused, scenarios, args.dataset_dir.name, args.policy)


def print_fusions(fused: dict, scenarios: list[str], dataset: str, policy: str) -> None:
    from kdgat.evaluation.metrics import format_mean_std, summarize_seeds

    def cell(values) -> str:
        return format_mean_std(summarize_seeds(values))

    print(f"\n## {dataset}: weighted average, weight on the unseen pool, threshold ({policy}) on unseen validation\n")
    heads = [f"{s} F1 / FPR, threshold on unseen val | {s} F1, threshold on seen val | {s} PR-AUC" for s in scenarios]
    print("| fusion | weight a per seed (pool windows, attack) | val PR-AUC unseen: GAT / VGAE / fused | "
          + " | ".join(heads) + " |")  # fmt: skip
    print("|---|---|---|" + "---|---|---|" * len(scenarios))
    for name, seeds in fused.items():
        alphas = ", ".join(f"{s['alpha']:.2f} ({s['pool']['windows']}, {s['pool']['attack']})" for s in seeds)
        val = " / ".join(cell([s["val_pr_auc"][k] for s in seeds]) for k in ("gat", "vgae", "fused"))
        cells = []
        for sc in scenarios:
            f1, fpr = ([s["test"][sc]["unseen"][k] for s in seeds] for k in ("f1", "fpr"))
            seen, pr_auc = [s["test"][sc]["seen"]["f1"] for s in seeds], [s["test"][sc]["pr_auc"] for s in seeds]
            cells.append(f"{cell(f1)} / {cell(fpr)} | {cell(seen)} | {cell(pr_auc)}")
        print(f"| {name} | {alphas} | {val} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
