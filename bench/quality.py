"""Quality table over seeds: F1, PR-AUC and FPR per dataset, test scenario and model, mean +/- std.

Reads the `eval/metrics.json` of `kdgat pipeline` campaigns (one folder per seed) and prints a
Markdown table (docs/results.md is made of its output):

    python bench/quality.py work/results/e4/seed0 work/results/e4/seed1 work/results/e4/seed2

Thresholds are the ones `kdgat evaluate` chose on validation; nothing is re-tuned on the tests.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

ROLES = {
    "gat_large": "teacher GAT",
    "gat_small_kd": "student GAT + KD",
    "gat_small": "student GAT, no KD",
    "fusion_dqn_large": "teacher fusion (DQN)",
    "fusion_dqn_small_kd": "student fusion (DQN, KD)",
    "vgae_large": "teacher VGAE",
    "vgae_small_kd": "student VGAE + KD",
}
METRICS = ("f1", "pr_auc", "fpr")


def _ensemble_parameters(run_dir: str) -> int:
    """A fusion counts its whole ensemble; `kdgat evaluate` records it, evaluations written before it did do not."""
    path = Path(run_dir) / "metrics.json"
    return json.loads(path.read_text()).get("ensemble_parameters", 0) if path.exists() else 0


def collect(campaigns: list[Path]) -> tuple[dict, dict, dict]:
    """values[(dataset, split, model)][metric] = one value per seed; params[(dataset, model)] = parameters;
    f1[(dataset, split)][campaign][model] = F1 (to pair models of the same seed)."""
    values: dict = defaultdict(lambda: defaultdict(list))
    params: dict = {}
    f1: dict = defaultdict(lambda: defaultdict(dict))
    for campaign in campaigns:
        for metrics_file in sorted(campaign.glob("*/eval/metrics.json")):
            dataset = metrics_file.parent.parent.name
            for label, run in json.loads(metrics_file.read_text())["runs"].items():
                params[(dataset, label)] = run.get("parameters") or _ensemble_parameters(run["run_dir"])
                splits = {"validation": run["validation"], **run["test"]}
                for split, m in splits.items():
                    for key in METRICS:
                        values[(dataset, split, label)][key].append(m[key])
                    f1[(dataset, split)][campaign][label] = m["f1"]
    return values, params, f1


def student_gap(f1: dict, student: str = "fusion_dqn_small_kd", teacher: str = "fusion_dqn_large") -> list[str]:
    """Teacher minus student F1 in points, paired by seed, per dataset and test scenario."""
    lines = []
    for (dataset, split), by_seed in sorted(f1.items()):
        gaps = [100 * (m[teacher] - m[student]) for m in by_seed.values() if teacher in m and student in m]
        if split != "validation" and gaps:
            spread = f" ± {np.std(gaps):.1f}" if len(gaps) > 1 else ""
            worst = f", at most {max(gaps):.1f}" if len(gaps) > 1 else ""
            lines.append(f"{dataset} {split}: {np.mean(gaps):+.1f}{spread} points{worst} ({len(gaps)} seed(s))")
    return lines


def fmt(xs: list) -> str:
    xs = [x for x in xs if x is not None]
    if not xs:
        return "–"
    return f"{np.mean(xs):.3f} ± {np.std(xs):.3f}" if len(xs) > 1 else f"{xs[0]:.3f}"


def table(values: dict, params: dict) -> str:
    lines = [
        "| dataset | scenario | model | params | seeds | F1 | PR-AUC | FPR |",
        "|---|---|---|---:|---:|---|---|---|",
    ]
    for (dataset, split, label), m in sorted(
        values.items(),
        key=lambda kv: (
            kv[0][0],
            kv[0][1] != "validation",
            kv[0][1],
            list(ROLES).index(kv[0][2]) if kv[0][2] in ROLES else 99,
        ),
    ):
        if label not in ROLES:
            continue
        lines.append(
            f"| {dataset} | {split} | {ROLES[label]} (`{label}`) | {params[(dataset, label)]:,} | {len(m['f1'])} | "
            + " | ".join(fmt(m[k]) for k in METRICS)
            + " |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("campaigns", nargs="+", type=Path, help="kdgat pipeline output folders, one per seed")
    args = parser.parse_args()
    values, params, f1 = collect(args.campaigns)
    if not values:
        raise SystemExit(f"no */eval/metrics.json under {', '.join(map(str, args.campaigns))}")
    print(table(values, params))
    for dataset in sorted({d for d, _ in params}):
        teacher, student = params.get((dataset, "fusion_dqn_large")), params.get((dataset, "fusion_dqn_small_kd"))
        if teacher and student:
            share = student / teacher
            print(f"\n{dataset}: student ensemble {student:,} parameters = {share:.1%} of the teacher's {teacher:,}")
    gaps = student_gap(f1)
    if gaps:
        print("\nF1 lost by the student fusion (DQN, KD) against the teacher fusion (DQN), paired by seed:")
        print("\n".join(f"- {line}" for line in gaps))


if __name__ == "__main__":
    main()
