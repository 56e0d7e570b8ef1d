"""A model of a `kdgat pipeline` campaign read back for the analysis scripts (errors.py, calibration.py).

The threshold is the one `kdgat evaluate` chose on validation and recorded in ``eval/metrics.json``,
not chosen again, so an analysis always matches the reported tables.
"""

from __future__ import annotations

from pathlib import Path


def seed_folders(dataset_dir: Path) -> list[Path]:
    """The folders holding a dataset's ``runs/`` and ``eval/``: one per seed (``seed<k>/``), or the dataset
    folder itself in campaigns written before seeds were a dimension."""
    if (dataset_dir / "runs").is_dir():
        return [dataset_dir]
    found = sorted(p for p in dataset_dir.glob("seed*") if (p / "eval" / "metrics.json").is_file())
    if not found:
        raise SystemExit(f"{dataset_dir}: no evaluated seed (no seed<k>/eval/metrics.json, no runs/)")
    return found


def load_evaluated_run(dataset_dir: Path, run: str, seed_dir: Path | None = None):
    """``(store, model, cfg, threshold)`` of ``runs/<run>`` of one seed of a campaign's dataset folder."""
    from kdgat.data.store import open_store
    from kdgat.stages.evaluate import read_results
    from kdgat.training.runs import load_run_model, run_label

    seed_dir = seed_dir or dataset_dir
    store = open_store(dataset_dir / "graphs")
    model, cfg = load_run_model(seed_dir / "runs" / run, store)
    evaluated = read_results(seed_dir / "eval")["runs"]
    label = run_label(cfg)
    if label not in evaluated:
        raise SystemExit(f"{seed_dir}/eval/metrics.json has no {label} (evaluated: {', '.join(evaluated)})")
    return store, model, cfg, evaluated[label]["threshold"]
