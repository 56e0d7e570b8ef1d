"""Experiment: the ensemble's novel-ID rule on each supervised run alone, the classical yardstick included.

A fused ensemble scores a window holding a novel CAN ID 1 where that ranks its held-out fusion windows no
worse (``fusion.novel_alert``). The rule is not the GNN's: it reads the benign training count of each ID.
So its gain is measured on the yardstick too. For every GAT and hgb run of a campaign's dataset folder, per
seed, the same steps as ``kdgat fuse`` and ``kdgat evaluate``:

- the rule is kept where it ranks the run's fusion-part windows no worse (``keeps_novel_alert``);
- the threshold is chosen on validation (``--policy``, default ``margin``) on the scores with the rule;
- test F1 / PR-AUC / FPR without and with it are printed, reported and not chosen by.

Which windows hold a novel ID comes from the first seed's ``vgae_large`` (``novel_first``; every VGAE of a
store marks the same windows: the counts are the store's benign training nodes).

    python bench/novel_rule.py work/results/z/daga_v40 [--run gat_large --run hgb_large ...] [--threads 1]

Not a speed benchmark, and not a kdgat feature.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

RUNS = ("gat_large", "gat_small_kd", "gat_small", "hgb_large")
VGAE = "vgae_large"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset_dir", type=Path, help="a dataset folder of a kdgat pipeline campaign")
    parser.add_argument("--run", action="append", help=f"supervised run folder names (default {RUNS})")
    parser.add_argument("--policy", default="margin", help="threshold policy on validation (default margin)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    from campaign import seed_folders

    from kdgat.core.threads import set_threads
    from kdgat.data.split import FUSION_PART
    from kdgat.data.store import open_store
    from kdgat.evaluation.metrics import binary_metrics, format_mean_std, summarize_seeds
    from kdgat.evaluation.scoring import score_model, score_vgae
    from kdgat.fusion.ensemble import keeps_novel_alert, with_novel_alert
    from kdgat.stages.evaluate import choose_by_policy
    from kdgat.training.runs import load_run_model

    set_threads(args.threads)
    store = open_store(args.dataset_dir / "graphs")
    parts = {FUSION_PART: store.part(FUSION_PART), "val": store.part("val"), **store.test_parts()}
    labelled = {name: np.asarray(part.y) >= 0 for name, part in parts.items()}
    labels = {name: np.asarray(part.y)[labelled[name]].astype(np.int64) for name, part in parts.items()}
    seeds = seed_folders(args.dataset_dir)
    # the flags come from the store's benign training counts, not from the weights: one VGAE says them all
    vgae, _ = load_run_model(seeds[0] / "runs" / VGAE, store)
    if not vgae.marks_novel_ids:
        raise SystemExit(f"{seeds[0] / 'runs' / VGAE}: its window score does not mark novel IDs (needs novel_first)")
    novel = {name: score_vgae(vgae, part)["novel"][labelled[name]] for name, part in parts.items()}
    figures: dict[tuple[str, str, str, str], list[float]] = defaultdict(list)  # (run, scenario, rule, metric)
    kept: dict[str, list[bool]] = defaultdict(list)
    for seed_dir in seeds:
        for run in args.run or RUNS:
            model, cfg = load_run_model(seed_dir / "runs" / run, store)
            scores = {
                name: np.asarray(score_model(cfg.model_type, model, part)["score"], np.float32)[labelled[name]]
                for name, part in parts.items()
            }
            keep, _ = keeps_novel_alert(labels[FUSION_PART], scores[FUSION_PART], novel[FUSION_PART])
            kept[run].append(keep)
            ruled = {name: with_novel_alert(s, novel[name]) if keep else s for name, s in scores.items()}
            for rule, scored in (("without", scores), ("with", ruled)):
                threshold = choose_by_policy(labels["val"], scored["val"], args.policy)["threshold"]
                for name in store.test_parts():
                    result = binary_metrics(labels[name], scored[name], threshold)
                    for metric in ("f1", "pr_auc", "fpr"):
                        figures[(run, name, rule, metric)].append(result[metric])
    novel_counts = {
        name: (int((n & (labels[name] == 0)).sum()), int(n[labels[name] == 1].sum())) for name, n in novel.items()
    }
    print(f"## {args.dataset_dir.name}: the novel-ID rule on each supervised run alone ({args.policy} thresholds)\n")
    print(
        "Windows holding a novel ID (benign / attack): "
        + "; ".join(f"{n} {b} / {a}" for n, (b, a) in novel_counts.items())
    )
    print(
        "\n| run | rule kept (seeds) | scenario | F1 without -> with | PR-AUC without -> with | FPR without -> with |"
    )
    print("|---|---|---|---|---|---|")
    for run in args.run or RUNS:
        for name in store.test_parts():
            cells = [
                " -> ".join(
                    format_mean_std(summarize_seeds(figures[(run, name, rule, metric)])) for rule in ("without", "with")
                )
                for metric in ("f1", "pr_auc", "fpr")
            ]
            print(f"| {run} | {sum(kept[run])} of {len(kept[run])} | {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
