"""Experiment: a threshold from each test capture's own first windows against the validation one.

A detector installed on a new vehicle could be calibrated on a stretch of that vehicle's traffic
known to be clean. This takes the first ``--fraction`` of each test capture's windows (in capture
order) as that stretch, puts the capture's threshold at their ``--quantile`` score, and scores the
rest of the capture. The threshold `kdgat evaluate` chose on validation (read from the campaign's
``eval/metrics.json``) is scored on the same rest. The calibration stretch must be benign for this
to mean anything: the attack windows it holds are printed.

    python bench/calibration.py CAMPAIGN... --dataset road [--run gat_large] [--fraction 0.1] [--quantile 0.99]

Not a speed benchmark, and not a kdgat feature: the experiment behind a note in docs/results.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("campaigns", nargs="+", type=Path, help="kdgat pipeline output folders (every seed of each)")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--run", default="gat_large")
    parser.add_argument("--fraction", type=float, default=0.1, help="share of each capture used to calibrate")
    parser.add_argument("--quantile", type=float, default=0.99, help="score quantile of the calibration windows")
    args = parser.parse_args()
    from campaign import load_evaluated_run, seed_folders

    from kdgat.evaluation.metrics import binary_metrics
    from kdgat.evaluation.scoring import score_model

    results: dict[str, list[tuple]] = {}
    seeds = [(c / args.dataset, d) for c in args.campaigns for d in seed_folders(c / args.dataset)]
    for dataset_dir, seed_dir in seeds:
        store, model, cfg, chosen = load_evaluated_run(dataset_dir, args.run, seed_dir)
        for name, part in store.test_parts().items():
            file_index, start = np.asarray(part.file_index), np.asarray(part.window_start)
            y, scores = np.asarray(part.y), score_model(cfg.model_type, model, part)["score"]
            # calibration windows: the first `fraction` of each capture, in capture order
            rank = np.empty(len(y), dtype=np.int64)
            order = np.lexsort((start, file_index))
            rank[order] = np.arange(len(y)) - np.searchsorted(file_index[order], file_index[order])
            calibrates = rank < (np.bincount(file_index) * args.fraction).astype(np.int64)[file_index]
            per_capture = np.zeros(file_index.max() + 1)
            for f in np.unique(file_index):
                per_capture[f] = np.quantile(scores[calibrates & (file_index == f)], args.quantile)
            rest = ~calibrates
            baseline = binary_metrics(y[rest], scores[rest], chosen["threshold"])
            # one threshold per capture: compare each score with its own capture's threshold
            calibrated = binary_metrics(y[rest], (scores - per_capture[file_index])[rest], 0.0)
            results.setdefault(name, []).append(
                (int(y[calibrates].sum()), baseline["f1"], baseline["fpr"], calibrated["f1"], calibrated["fpr"])
            )
    print(
        f"{args.dataset} {args.run}: first {args.fraction:.0%} of each capture calibrates (q{args.quantile}); "
        f"{len(seeds)} seed(s); F1 and FPR on the rest of the capture"
    )
    for name, rows in sorted(results.items()):
        a = np.array(rows, dtype=float)
        m, s = a.mean(axis=0), a.std(axis=0)
        print(
            f"  {name}: attack windows in the calibration part {[r[0] for r in rows]}; "
            f"validation threshold F1 {m[1]:.3f} ± {s[1]:.3f} (FPR {m[2]:.3f}); "
            f"capture threshold F1 {m[3]:.3f} ± {s[3]:.3f} (FPR {m[4]:.3f})"
        )


if __name__ == "__main__":
    main()
