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
  scored); its test figure (the full run at that threshold) is reported, not chosen by.

    python bench/unseen_captures.py work/results/z/road --out work/unseen/road \\
        [--run gat_large --run gat_small_kd ...] [--policy margin] [--threads 1]

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


def left_out_scores(run_dir: Path, store, capture: int, out: Path, threads: int) -> np.ndarray:
    """Validation scores of ``run_dir``'s model trained again without the attack windows of file ``capture``
    (its index in the validation part's file list: the runs are named by it)."""
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
        return model.p_attack(val)
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
    return score_model(cfg.model_type, model, val)["score"]


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
    t_unseen = threshold(y, unseen, policy)
    row["test"] = {}
    for name, part in sorted(store.test_parts().items()):
        keep = np.asarray(part.y) >= 0
        y_t, s_t = np.asarray(part.y)[keep].astype(np.int64), score_model(cfg.model_type, model, part)["score"][keep]
        row["test"][name] = {k: binary_metrics(y_t, s_t, t) for k, t in (("usual", t_full), ("unseen", t_unseen))}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset_dir", type=Path, help="a dataset folder of a kdgat pipeline campaign")
    parser.add_argument("--out", type=Path, required=True, help="where the left-out runs are kept")
    parser.add_argument("--run", action="append", help=f"run folder names, teachers first (default {RUNS})")
    parser.add_argument("--policy", default="margin")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    from campaign import seed_folders

    from kdgat.core.threads import set_threads
    from kdgat.data.store import open_store
    from kdgat.evaluation.metrics import format_mean_std, summarize_seeds

    set_threads(args.threads)
    store = open_store(args.dataset_dir / "graphs")
    rows = defaultdict(list)
    for seed_dir in seed_folders(args.dataset_dir):
        for run in args.run or RUNS:
            rows[run].append(one_seed(seed_dir, store, run, args.policy, args.out, args.threads))

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


if __name__ == "__main__":
    main()
