"""Experiment: a fusion that does not learn, "alert when either member alerts", beside the learnt one.

The learnt fusions are fitted on held-out windows of the training captures, where the GAT knows every
attack kind, so they learn to follow the GAT (docs/results.md). This rule keeps each member's own
validation threshold (the one `kdgat evaluate` recorded) and alerts when the VGAE or the GAT does: it
cannot learn to ignore the VGAE. For every seed folder of a campaign's dataset, the members are
scored again on the test scenarios only (at the thresholds read from the campaign's evaluation) and
the rule is scored on every test scenario; the members and the DQN fusion are printed beside it.

    python bench/either_alert.py work/results/c/road [--threads 2]

Not a speed benchmark, and not a kdgat feature.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

PAIRS = {"teacher": ("gat_large", "vgae_large", "fusion_dqn_large"),
         "student": ("gat_small_kd", "vgae_small_kd", "fusion_dqn_small_kd")}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset_dir", type=Path, help="a dataset folder of a kdgat pipeline campaign")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    from campaign import load_evaluated_run, seed_folders

    from kdgat.core.threads import set_threads
    from kdgat.evaluation.metrics import binary_metrics, format_mean_std, summarize_seeds
    from kdgat.evaluation.scoring import score_model
    from kdgat.stages.evaluate import read_results

    set_threads(args.threads)
    f1: dict[tuple[str, str, str], list[float]] = {}
    fpr: dict[tuple[str, str, str], list[float]] = {}
    for seed_dir in seed_folders(args.dataset_dir):
        recorded = read_results(seed_dir / "eval")["runs"]
        for ensemble, (gat, vgae, fusion) in PAIRS.items():
            alerts: dict[str, dict[str, np.ndarray]] = {}  # member -> test scenario -> 0/1 per window
            for member in (gat, vgae):  # each member at the threshold evaluate chose for it on validation
                store, model, cfg, threshold = load_evaluated_run(args.dataset_dir, member, seed_dir)
                parts = store.test_parts()
                # compared in float64, as evaluate's binary_metrics compares the recorded threshold
                alerts[member] = {
                    name: np.asarray(score_model(cfg.model_type, model, part)["score"], np.float64)
                    >= threshold["threshold"]
                    for name, part in parts.items()
                }
            for scenario, part in sorted(parts.items()):
                either = alerts[gat][scenario] | alerts[vgae][scenario]
                y = np.asarray(part.y)
                labelled = y >= 0  # evaluate scores the labelled windows only
                measured = {
                    "either": binary_metrics(y[labelled], either[labelled].astype(np.float64), 0.5),
                    gat: recorded[gat]["test"][scenario],
                    vgae: recorded[vgae]["test"][scenario],
                    fusion: recorded[fusion]["test"][scenario],
                }
                for name, m in measured.items():
                    f1.setdefault((ensemble, scenario, name), []).append(m["f1"])
                    fpr.setdefault((ensemble, scenario, name), []).append(m["fpr"])
    print(f"{args.dataset_dir}: test F1 (FPR), mean ± std over seeds; 'either' = GAT or VGAE alerts")
    for (ensemble, scenario, name), values in sorted(f1.items()):
        fprs = fpr[(ensemble, scenario, name)]
        print(f"  {ensemble:8s} {scenario:28s} {name:22s} F1 {format_mean_std(summarize_seeds(values))}  "
              f"FPR {format_mean_std(summarize_seeds(fprs))}  ({len(values)} seeds)")  # fmt: skip


if __name__ == "__main__":
    main()
