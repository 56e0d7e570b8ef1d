"""Experiment: the novelty yardstick's settings, chosen on validation windows only.

For each graph store given, the model is fitted on the benign training windows with every setting
of a small grid (``zscore`` with ``top_k`` x ``std_floor``, and ``iforest``) and its validation
PR-AUC is printed; the last column is the mean over the stores. No test part is read.

    python bench/novelty_settings.py work/results/c/road/graphs work/results/c/road_masquerade/graphs \
        work/results/c/daga_v40/graphs [--threads 1]

Not a speed benchmark, and not a kdgat feature (the chosen setting is in defaults.yaml).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stores", type=Path, nargs="+", help="graph stores whose validation part holds attacks")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    from sklearn.metrics import average_precision_score

    from kdgat.core.config import resolve_config
    from kdgat.core.threads import set_threads
    from kdgat.data.store import open_store
    from kdgat.models.novelty import WindowNovelty

    set_threads(args.threads)
    floors, top_ks = (0.001, 0.01, 0.1), (1, 3, 5, 10, 20)
    fits = [[f"novelty.std_floor={floor}"] for floor in floors] + [["novelty.method=iforest"]]
    table: dict[str, list[float]] = {}
    for path in args.stores:
        store = open_store(path)
        train, val = store.part("train"), store.part("val")
        benign = np.flatnonzero(np.asarray(train.y) == 0)
        y_val = np.asarray(val.y)
        labelled = y_val >= 0
        x_val = None  # the validation windows' vectors, built once per store
        for overrides in fits:  # one fit per std_floor: top_k only changes the scoring
            cfg = resolve_config("novelty", "large", overrides=overrides).novelty
            model = WindowNovelty(cfg, store.vocab_size, store.metadata["node_features"]).fit(train, benign)
            x_val = model.vectors(val) if x_val is None else x_val  # same columns: same benign windows
            for k in top_ks if cfg.method == "zscore" else (None,):
                name = " ".join(overrides) if k is None else f"novelty.top_k={k} {overrides[0]}"
                model.top_k = k or model.top_k
                scores = model.score_vectors(x_val)
                table.setdefault(name, []).append(average_precision_score(y_val[labelled], scores[labelled]))
    names = [f"{p.parent.name}/{p.name}" for p in args.stores]
    print("| setting | " + " | ".join(names) + " | mean |")
    print("|---|" + "---:|" * (len(names) + 1))
    for setting, values in table.items():
        print(f"| `{setting}` | " + " | ".join(f"{v:.3f}" for v in values) + f" | {np.mean(values):.3f} |")


if __name__ == "__main__":
    main()
