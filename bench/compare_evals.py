"""An experiment's figures beside the campaign's: the same runs evaluated in two places, per seed.

Not a speed benchmark. For each dataset and run name, reads ``<root>/<dataset>/seed<k>/eval/metrics.json``
under two roots (``--a``, ``--b``: a campaign and an experiment made from the same frames and seeds,
e.g. another feature set), and prints validation F1 / PR-AUC and per test scenario F1 / PR-AUC / FPR
as mean ± std over the seeds both have, in Markdown. Validation first: it is what a choice between
the two may rest on; the test figures are reported, not chosen by.

    python bench/compare_evals.py --a work/campaign --b work/e4ts road daga_v40 [--run vgae_large]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from campaign import seed_folders

from kdgat.evaluation.metrics import format_mean_std, summarize_seeds
from kdgat.stages.evaluate import read_results


def _entries(root: Path, dataset: str, run: str) -> dict[str, dict]:
    """Per seed folder name (seed0, ...): the run's evaluation entry."""
    out = {}
    for seed_dir in seed_folders(root / dataset):
        runs = read_results(seed_dir / "eval")["runs"]
        if run in runs:
            out[seed_dir.name] = runs[run]
    return out


def _cell(entries: list[dict], keys: tuple[str, ...]) -> str:
    return " / ".join(format_mean_std(summarize_seeds([e[k] for e in entries])) for k in keys)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="+")
    parser.add_argument("--a", type=Path, required=True, help="the campaign (its <dataset>/seed<k>/eval)")
    parser.add_argument("--b", type=Path, required=True, help="the experiment, same layout")
    parser.add_argument("--run", action="append", help="run names (default: vgae_large, novelty_large)")
    args = parser.parse_args()
    print(f"| dataset | run | part | {args.a} | {args.b} | seeds |")
    print("|---|---|---|---|---|---:|")
    for dataset in args.datasets:
        for run in args.run or ["vgae_large", "novelty_large"]:
            a, b = _entries(args.a, dataset, run), _entries(args.b, dataset, run)
            seeds = sorted(set(a) & set(b))
            if not seeds:
                continue
            first = [a[s] for s in seeds], [b[s] for s in seeds]
            val = tuple(_cell([e["validation"] for e in side], ("f1", "pr_auc")) for side in first)
            print(f"| {dataset} | {run} | validation | {val[0]} | {val[1]} | {len(seeds)} |")
            both = set(first[0][0]["test"]) & set(first[1][0]["test"])
            for scenario in [name for name in first[0][0]["test"] if name in both]:
                cells = tuple(_cell([e["test"][scenario] for e in side], ("f1", "pr_auc", "fpr")) for side in first)
                print(f"| {dataset} | {run} | {scenario} | {cells[0]} | {cells[1]} | {len(seeds)} |")


if __name__ == "__main__":
    main()
