"""GAT readouts and layer types measured against each other, over seeds, on a real dataset.

Not a speed benchmark: it trains the GAT (student preset unless ``--scale large``) once per variant
and seed on one graph store with the product's own stages (``kdgat.stages.train`` / ``evaluate``),
and prints validation and per-test-scenario F1 and PR-AUC (mean ± std over seeds, thresholds
chosen on validation by the default policy) with the parameter counts:

    python bench/architectures.py --dataset road --seeds 0 1 2 --epochs 15
    python bench/architectures.py --dataset road --variants max transformer --out work/arch   # keep the runs

Variants are ``-O gat.*`` overrides (``VARIANTS``); every other setting is the preset's.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

VARIANTS = {
    "mean": ["gat.readout=mean"],
    "max": ["gat.readout=max"],
    "meanmax": ["gat.readout=meanmax"],
    "attention": ["gat.readout=attention"],
    "gatv2": ["gat.readout=max", "gat.conv_type=gatv2"],
    "transformer": ["gat.readout=max", "gat.conv_type=transformer"],
}
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def build_store(dataset: str, root: Path) -> Path:
    from kdgat.core.config import resolve_config
    from kdgat.data.catalog import dataset_sources, load_catalog
    from kdgat.stages import graphs, ingest

    frames, store = root / "frames", root / "graphs"
    entry = load_catalog()[dataset]  # a one-trace dataset (DAGA, CrySyS) is split on its time axis, as in the pipeline
    ingest.run(dataset_sources(dataset, entry, DATA), frames, dataset=dataset, one_trace=entry.one_trace)
    cfg = resolve_config("gat", "large")
    graphs.run(frames, store, cfg.preprocessing)
    return store


def measure(store: Path, root: Path, variant: str, scale: str, seed: int, epochs: int) -> dict:
    from kdgat.core.config import resolve_config
    from kdgat.stages import evaluate, train

    overrides = [*VARIANTS[variant], f"seed={seed}", f"training.max_epochs={epochs}"]
    run_dir, eval_dir = root / f"{variant}-{seed}", root / f"{variant}-{seed}-eval"
    metrics = train.run(resolve_config("gat", scale, "none", overrides), store, run_dir, progress_bar=False).summary
    evaluate.run([run_dir], store, eval_dir)
    (result,) = evaluate.read_results(eval_dir)["runs"].values()
    return {"parameters": metrics["parameters"], "validation": result["validation"], **result["test"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="road")
    parser.add_argument("--scale", default="small", choices=["small", "large"])
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="keep the store and runs here (default: a temporary folder)")
    args = parser.parse_args()

    from kdgat.core.threads import set_threads
    from kdgat.evaluation.metrics import format_mean_std, summarize_seeds

    set_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="kdgat-arch-") as scratch:
        root = args.out or Path(scratch)
        store = build_store(args.dataset, root)
        results = {v: [measure(store, root, v, args.scale, s, args.epochs) for s in args.seeds] for v in args.variants}
    scenarios = [k for k in results[args.variants[0]][0] if k != "parameters"]
    print(f"{args.dataset}, GAT {args.scale}, {args.epochs} epochs, seeds {args.seeds}: F1 / PR-AUC (mean ± std)")
    print("| variant | params | " + " | ".join(scenarios) + " |")
    print("|---|---:|" + "---|" * len(scenarios))
    for variant, runs in results.items():
        cells = []
        for scenario in scenarios:
            f1 = format_mean_std(summarize_seeds([r[scenario]["f1"] for r in runs]))
            pr = format_mean_std(summarize_seeds([r[scenario]["pr_auc"] for r in runs]))
            cells.append(f"{f1} / {pr}")
        print(f"| {variant} | {runs[0]['parameters']:,} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
