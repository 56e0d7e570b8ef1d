"""Experiment: a threshold from each test capture's own first windows against the validation one.

A detector installed on a new vehicle could be calibrated on a stretch of that vehicle's traffic
known to be clean. This takes the first ``--fraction`` of each test scenario's windows (in capture
order) as that stretch, puts the threshold at their ``--quantile`` score, and scores the rest of the
capture. The validation threshold (F1-optimal, what `kdgat evaluate` uses) is scored on the
same rest. The calibration stretch must be benign for this to mean anything: the attack windows
it holds are printed.

    python bench/calibration.py CAMPAIGN... --dataset road [--run gat_large] [--fraction 0.1] [--quantile 0.99]

Not a speed benchmark, and not a kdgat feature: the experiment behind a note in docs/results.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("campaigns", nargs="+", type=Path, help="kdgat pipeline output folders, one per seed")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--run", default="gat_large")
    parser.add_argument("--fraction", type=float, default=0.1, help="share of each capture used to calibrate")
    parser.add_argument("--quantile", type=float, default=0.99, help="score quantile of the calibration windows")
    args = parser.parse_args()
    from kdgat.metrics import choose_threshold
    from kdgat.scoring import score_model
    from kdgat.store import open_store
    from kdgat.train import load_run_model

    results: dict[str, list[tuple]] = {}
    for campaign in args.campaigns:
        folder = campaign / args.dataset
        store = open_store(folder / "graphs")
        model, cfg = load_run_model(folder / "runs" / args.run, store)
        val = store.part("val")
        y_val = np.asarray(val.y)
        keep = y_val >= 0
        scores_val = score_model(cfg.model_type, model, val)["score"][keep]
        val_threshold = choose_threshold(y_val[keep], scores_val)["threshold"]
        for name, part in store.test_parts().items():
            order = np.lexsort((np.asarray(part.window_start), np.asarray(part.file_index)))
            y = np.asarray(part.y)[order]
            scores = score_model(cfg.model_type, model, part)["score"][order]
            k = int(len(y) * args.fraction)
            threshold = np.quantile(scores[:k], args.quantile)
            rest_y, rest = y[k:], scores[k:]
            benign = max(int((rest_y == 0).sum()), 1)
            results.setdefault(name, []).append(
                (
                    int(y[:k].sum()),
                    f1_score(rest_y, rest >= val_threshold, zero_division=0),
                    ((rest >= val_threshold) & (rest_y == 0)).sum() / benign,
                    f1_score(rest_y, rest >= threshold, zero_division=0),
                    ((rest >= threshold) & (rest_y == 0)).sum() / benign,
                )
            )
    print(
        f"{args.dataset} {args.run}: first {args.fraction:.0%} of each capture calibrates (q{args.quantile}); "
        f"{len(args.campaigns)} seed(s); F1 and FPR on the rest of the capture"
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
