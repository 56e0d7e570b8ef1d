"""Experiment: two threshold policies side by side on the same trained runs.

Each seed folder of a campaign's dataset holds the default evaluation (``eval``, `margin`) and one
made with another policy (``kdgat evaluate ... --threshold fpr:0.01 -o <seed>/eval-fpr001``); this
prints test F1 and FPR under both, mean ± std over seeds, per scenario and run, as Markdown.

    python bench/policies.py work/results/z/road work/results/z/road_masquerade --other eval-fpr001

Not a speed benchmark, and not a kdgat feature (the policies are `kdgat evaluate --threshold`).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset_dirs", type=Path, nargs="+", help="dataset folders of a kdgat pipeline campaign")
    parser.add_argument("--base", default="eval", help="evaluation folder of the first policy (default: eval)")
    parser.add_argument("--other", required=True, help="evaluation folder of the second policy, beside it")
    args = parser.parse_args()
    from campaign import seed_folders

    from kdgat.evaluation.metrics import format_mean_std, summarize_seeds
    from kdgat.stages.evaluate import read_results

    names: dict[str, str] = {}
    print("| dataset | scenario | run | F1, A | FPR, A | F1, B | FPR, B |")
    print("|---|---|---|---|---|---|---|")
    for dataset_dir in args.dataset_dirs:
        table: dict[tuple[str, str], dict[str, list[tuple[float, float]]]] = {}
        for seed_dir in seed_folders(dataset_dir):
            for side, folder in (("A", args.base), ("B", args.other)):
                results = read_results(seed_dir / folder)["runs"]
                for label, run in results.items():
                    names.setdefault(side, run["threshold"].get("policy") or run["threshold"]["method"])
                    for scenario, m in run["test"].items():
                        table.setdefault((scenario, label), {}).setdefault(side, []).append((m["f1"], m["fpr"]))
        for (scenario, label), sides in sorted(table.items()):
            cells = []
            for side in ("A", "B"):  # a run evaluated under one policy only: n/a under the other
                values = sides.get(side, [])
                cells += [format_mean_std(summarize_seeds([v[i] for v in values])) if values else "n/a" for i in (0, 1)]
            print(f"| {dataset_dir.name} | {scenario} | `{label}` | " + " | ".join(cells) + " |")
    print(f"\nA: {args.base} ({names.get('A')}); B: {args.other} ({names.get('B')})")


if __name__ == "__main__":
    main()
