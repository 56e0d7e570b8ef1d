"""Experiment: the VGAE's window scores on validation, per attack kind, with the same trained weights.

A window score is computed from a trained model's reconstruction errors and calibration, not learnt:
every VGAE run of a campaign's dataset folder is scored on its validation part once per
``vgae.window_score`` (``id_feature_max``, ``novel_first``), and PR-AUC is printed over all attack
windows and per attack kind (each kind against every benign window), mean ± std over the seeds, and the
number of benign windows holding a novel ID (which novel_first puts above every attack window
without one). No test part is read: this is how the default was
chosen.

    python bench/vgae_window_scores.py work/results/z/daga_v40 [--run vgae_large ...] [--threads 1]

Not a speed benchmark, and not a kdgat feature.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

RUNS = ("vgae_large", "vgae_small_kd", "vgae_small")
SCORES = ("id_feature_max", "novel_first")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset_dir", type=Path, help="a dataset folder of a kdgat pipeline campaign")
    parser.add_argument("--run", action="append", help=f"VGAE run folder names (default {RUNS})")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    from campaign import seed_folders

    from kdgat.core.threads import set_threads
    from kdgat.data.store import open_store
    from kdgat.evaluation.metrics import format_mean_std, summarize_seeds
    from kdgat.evaluation.scoring import score_vgae
    from kdgat.fusion.ensemble import average_precision
    from kdgat.training.runs import load_run_model

    set_threads(args.threads)
    store = open_store(args.dataset_dir / "graphs")
    val = store.part("val")
    y, kind = np.asarray(val.y).astype(np.int64), np.asarray(val.attack_type)
    kinds = {store.attack_types[k]: k for k in sorted(set(kind[y == 1].tolist()))}
    labelled = y >= 0
    table: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for seed_dir in seed_folders(args.dataset_dir):
        for run in args.run or RUNS:
            model, cfg = load_run_model(seed_dir / "runs" / run, store)
            for window_score in SCORES:
                model.cfg = cfg.vgae.model_copy(update={"window_score": window_score})
                scored = score_vgae(model, val)
                score = scored["score"]
                row = table[(run, window_score)]
                row["all"].append(average_precision(y[labelled], score[labelled]))
                for name, k in kinds.items():
                    chosen = (y == 0) | ((y == 1) & (kind == k))
                    row[name].append(average_precision(y[chosen], score[chosen]))
                if model.marks_novel_ids:
                    row["benign with a novel ID"].append(int(((y == 0) & scored["novel"]).sum()))
    columns = ["all", *kinds, "benign with a novel ID"]
    print(f"## {args.dataset_dir.name}: validation PR-AUC by window score (same weights)\n")
    print("| run | window score | " + " | ".join(columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for (run, window_score), row in table.items():
        cells = [format_mean_std(summarize_seeds(row[c])) if row[c] else "–" for c in columns]
        print(f"| {run} | `{window_score}` | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
