"""Experiment: a fusion that does not learn, "alert when either member alerts", beside the learnt one.

The learnt fusions are fitted on held-out windows of the training captures, where the GAT knows every
attack kind, so they learn to follow the GAT (docs/results.md). This rule keeps each member's own
validation threshold (the one `kdgat evaluate` recorded) and alerts when the VGAE or the GAT does: it
cannot learn to ignore the VGAE. For every seed folder of a campaign's dataset, the members are
evaluated again with ``--scores`` (same thresholds: they are read from the campaign's evaluation) and
the rule is scored on every test scenario; the members and the DQN fusion are printed beside it.

    python bench/either_alert.py work/results/c/road [--threads 2]

Not a speed benchmark, and not a kdgat feature.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

PAIRS = {"teacher": ("gat_large", "vgae_large", "fusion_dqn_large"),
         "student": ("gat_small_kd", "vgae_small_kd", "fusion_dqn_small_kd")}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset_dir", type=Path, help="a dataset folder of a kdgat pipeline campaign")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    from campaign import seed_folders

    from kdgat.evaluation.metrics import binary_metrics, format_mean_std, summarize_seeds
    from kdgat.stages.evaluate import run as run_evaluate

    f1: dict[tuple[str, str, str], list[float]] = {}
    fpr: dict[tuple[str, str, str], list[float]] = {}
    for seed_dir in seed_folders(args.dataset_dir):
        recorded = json.loads((seed_dir / "eval" / "metrics.json").read_text())["runs"]
        runs = [seed_dir / "runs" / name for pair in PAIRS.values() for name in pair[:2]]
        with tempfile.TemporaryDirectory() as tmp:
            run_evaluate(runs, args.dataset_dir / "graphs", tmp, thresholds=seed_dir / "eval", scores=True,
                         tracking_uri=f"sqlite:///{tmp}/mlruns.db", threads=args.threads)  # fmt: skip
            table = pq.read_table(Path(tmp) / "scores.parquet").to_pandas()
        for ensemble, (gat, vgae, fusion) in PAIRS.items():
            for scenario in sorted(set(table["part"]) - {"val"}):
                rows = {r: table[(table["run"] == r) & (table["part"] == scenario)].sort_values("window")
                        for r in (gat, vgae)}  # fmt: skip
                y = rows[gat]["label"].to_numpy()
                either = rows[gat]["alert"].to_numpy() | rows[vgae]["alert"].to_numpy()
                measured = {
                    "either": binary_metrics(y, either.astype(np.float64), 0.5),
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
