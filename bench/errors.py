"""Where a trained model's errors fall in the test captures: next to attacks, or not (detection note 6).

For each test scenario of a `kdgat pipeline` dataset folder, the run's scores are thresholded as
`kdgat evaluate` does (F1-optimal on validation) and every error window is placed in its capture:

  FP after attack : benign windows with an attack frame in the ``window`` frames before their first
                    frame (the next legitimate frame of the attacked ID arrives "early")
  missed by count : attack windows by the number of attack frames they hold (1, 2, ..., >= 5), and
                    the share of them the model misses

FPs are given as a share of the errors and, for comparison, of all benign windows of the scenario.

    python bench/errors.py work/results/e4/daga_v40 [--run gat_large]     # every seed<k>/ of the dataset

Not a speed benchmark; it explains F1 figures in docs/results.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq


def frame_labels(frames_dir: Path, sources: list[str]) -> list[np.ndarray]:
    """0/1 per frame of each source capture, found through the ingest manifest (source -> Parquet)."""
    from kdgat.core.manifest import read_manifest

    manifest = read_manifest(frames_dir)
    parquet = {getattr(o, "source", None): o.path for o in (manifest.outputs if manifest else [])}
    missing = [s for s in sources if s not in parquet]
    if missing:
        raise SystemExit(f"{frames_dir}: the ingest manifest lists no frames for {', '.join(missing)}")
    tables = [pq.read_table(frames_dir / parquet[s], columns=["label"]) for s in sources]
    return [t["label"].to_numpy().astype(np.int64) for t in tables]


def attack_frames(labels: list[np.ndarray], file_index: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Attack frames in [lo, hi) of each window's file (bounds clipped to the file)."""
    out = np.zeros(len(lo), dtype=np.int64)
    for f, lab in enumerate(labels):
        sel = file_index == f
        cum = np.concatenate([[0], np.cumsum(lab)])
        a, b = np.clip(lo[sel], 0, len(lab)), np.clip(hi[sel], 0, len(lab))
        out[sel] = cum[b] - cum[a]
    return out


def share(mask: np.ndarray, within: np.ndarray) -> str:
    n = int(within.sum())
    return f"{int((mask & within).sum()):5d}/{n:<5d} ({(mask & within).sum() / max(n, 1):6.1%})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset_dir", type=Path, help="a dataset folder of a kdgat pipeline campaign")
    parser.add_argument("--run", default="gat_large", help="run folder under runs/ (default: gat_large)")
    args = parser.parse_args()
    from campaign import load_evaluated_run, seed_folders

    from kdgat.evaluation.scoring import score_model

    for seed_dir in seed_folders(args.dataset_dir):
        store, model, cfg, chosen = load_evaluated_run(args.dataset_dir, args.run, seed_dir)
        threshold, window = chosen["threshold"], cfg.preprocessing.window
        method = chosen["method"]
        print(f"{seed_dir} {args.run}: threshold {threshold:.4g} ({method} on validation), window {window}")
        for name, part in store.test_parts().items():
            y = np.asarray(part.y)
            pred = score_model(cfg.model_type, model, part)["score"] >= threshold
            start, file_index = np.asarray(part.window_start), np.asarray(part.file_index)
            labels = frame_labels(args.dataset_dir / "frames", part.files)
            before = attack_frames(labels, file_index, start - window, start) > 0
            inside = attack_frames(labels, file_index, start, start + window)
            benign, attack = y == 0, y == 1
            fp, fn = pred & benign, ~pred & attack
            counted = f"{int(benign.sum())} benign, {int(attack.sum())} attack windows"
            print(f"  {name}: {counted}; FP {fp.sum()}, FN {fn.sum()}")
            print(f"    FP after attack : {share(before, fp)} of FPs; {share(before, benign)} of benign windows")
            counts = np.minimum(inside, 5)
            groups = [(k, attack & (counts == k)) for k in range(1, 6)]
            missed = [f"{k}{'+' if k == 5 else ''}: {share(fn, group)}" for k, group in groups if group.any()]
            print("    missed by count : " + "; ".join(missed))


if __name__ == "__main__":
    main()
