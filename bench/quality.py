"""Quality tables over seeds: F1, PR-AUC and FPR per dataset, test scenario and model, mean +/- std.

The numbers come from the lake's views (``v_leaderboard``, ``v_leaderboard_scenarios``,
``v_kd_impact``), the same ones `kdgat leaderboard`, `kdgat kd-impact` and the report print: the
run folders of `kdgat pipeline` campaigns are appended to a lake (a temporary one unless ``--lake``
is given) and the views are read back as Markdown (docs/results.md is made of this output):

    python bench/quality.py work/results/e4                  # OUT/<dataset>/seed<k>/... of one or more campaigns
    python bench/quality.py --lake work/results/e4/lake      # an existing lake as it is

Thresholds are the ones `kdgat evaluate` chose on validation; "selected" is the run with the best
validation F1; nothing is chosen on the tests.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
from collections import Counter
from pathlib import Path

from kdgat.evaluation.metrics import format_mean_std, summarize_seeds
from kdgat.lake import append_runs, query
from kdgat.lake.queries import connect, run_sql

ROLES = {
    "gat_large": "teacher GAT",
    "gat_small_kd": "student GAT + KD",
    "gat_small": "student GAT, no KD",
    "fusion_dqn_large": "teacher fusion (DQN)",
    "fusion_dqn_small_kd": "student fusion (DQN, KD)",
    "vgae_large": "teacher VGAE",
    "vgae_small_kd": "student VGAE + KD",
    "vgae_small": "student VGAE, no KD",
    "hgb_large": "classical yardstick (hgb)",
    "novelty_large": "benign-only yardstick (novelty)",
}


def campaign_runs(campaign: Path) -> list[Path]:
    """Every finished train, fuse and evaluate folder of a `kdgat pipeline` campaign (any number of seeds)."""
    found = []
    for pattern in ("*/seed*/runs/*", "*/seed*/eval", "*/runs/*", "*/eval"):  # the last two: single-seed layout
        found += [p for p in sorted(campaign.glob(pattern)) if (p / "manifest.json").is_file()]
    return found


def _ms(row: dict, name: str) -> str:
    return format_mean_std({"mean": row.get(f"{name}_mean"), "std": row.get(f"{name}_std")})


def _num(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _order(model: str) -> tuple:
    return (list(ROLES).index(model) if model in ROLES else len(ROLES), model)


def _label(model: str) -> str:
    return f"{ROLES[model]} (`{model}`)" if model in ROLES else f"`{model}`"


def tables(lake: Path, dataset: str | None = None) -> str:
    """The Markdown tables of one lake: per scenario (validation first), KD impact, sizes, student gap."""
    where = "WHERE dataset = ?" if dataset else ""
    args = [dataset] if dataset else None
    with connect(lake) as con:
        board = run_sql(con, f"SELECT * FROM v_leaderboard {where}", args).to_pylist()
        scenarios = run_sql(con, f"SELECT * FROM v_leaderboard_scenarios {where}", args).to_pylist()
        kd = run_sql(con, f"SELECT * FROM v_kd_impact {where}", args).to_pylist()
        sizes = {(r["dataset"], r["model"], r["setup"]): r["parameters"]
                 for r in run_sql(con, "SELECT * FROM v_parameters").to_pylist()}  # fmt: skip
    several = {(r["dataset"], r["model"]) for r in board if sum(
        (b["dataset"], b["model"]) == (r["dataset"], r["model"]) for b in board) > 1}  # fmt: skip

    def name(r: dict) -> str:
        setup = f" [{(r['setup'] or 'no setup')[:6]}]" if (r["dataset"], r["model"]) in several else ""
        return _label(r["model"]) + setup

    lines = [
        "| dataset | scenario | model | params | seeds | F1 | PR-AUC | FPR | selected: seed, F1 |",
        "|---|---|---|---:|---:|---|---|---|---|",
    ]
    overall = "all test scenarios (mean)"

    def selected(r: dict, column: str) -> str:
        """The best-by-validation run's seed and figure; none where validation holds no attack window."""
        if all(r[k] is None for k in r if k.startswith("selected_")):
            return "none (no attack in validation)"
        return f"{r['selected_seed']}, {_num(r[column])}"

    rows = [(r["dataset"], "validation", r, "val_f1", "val_pr_auc", None, "selected_val_f1") for r in board]
    rows += [(r["dataset"], overall, r, "test_f1", "test_pr_auc", "test_fpr", "selected_test_f1") for r in board]
    rows += [(r["dataset"], r["scenario"], r, "test_f1", "test_pr_auc", "test_fpr", "selected_test_f1")
             for r in scenarios]  # fmt: skip
    for ds, scenario, r, f1, pr, fpr, chosen in sorted(
        rows,
        key=lambda x: (x[0], x[1] != "validation", x[1] != overall, x[1], _order(x[2]["model"]), x[2]["setup"] or ""),
    ):
        params = sizes.get((ds, r["model"], r["setup"]))
        lines.append(
            f"| {ds} | {scenario} | {name(r)} | {params if params is None else f'{params:,}'} | {r['n_seeds']} | "
            f"{_ms(r, f1)} | {_ms(r, pr)} | {_ms(r, fpr) if fpr else '–'} | "
            f"{selected(r, chosen)} |"
        )
    out = ["\n".join(lines)]
    if kd:
        out.append(
            "Knowledge distillation: small + KD minus small without KD, paired by seed (mean ± std over pairs):\n\n"
            "| dataset | family | pairs | teacher val F1 | val F1 delta | teacher test F1 | test F1 delta "
            "| test PR-AUC delta |\n|---|---|---:|---|---|---|---|---|\n"
            + "\n".join(
                f"| {r['dataset']} | {r['family']} | {r['n_pairs']} | {_num(r['teacher_val_f1'])} | "
                f"{_ms(r, 'val_f1_delta')} | {_num(r['teacher_test_f1'])} | {_ms(r, 'test_f1_delta')} | "
                f"{_ms(r, 'test_pr_auc_delta')} |"
                for r in kd
            )
        )
    for ds in sorted({d for d, _, _ in sizes if dataset in (None, d)}):
        teachers = {s: n for (d, m, s), n in sizes.items() if (d, m) == (ds, "fusion_dqn_large")}
        students = {s: n for (d, m, s), n in sizes.items() if (d, m) == (ds, "fusion_dqn_small_kd")}
        for (t_setup, teacher), (s_setup, student) in itertools.product(teachers.items(), students.items()):
            setups = f" (setups {t_setup[:6]}, {s_setup[:6]})" if len(teachers) * len(students) > 1 else ""
            out.append(f"{ds}: student ensemble {student:,} parameters = {student / teacher:.1%} of the teacher's "
                       f"{teacher:,}{setups}")  # fmt: skip
    gaps = student_gap(lake, dataset)
    if gaps:
        out.append("F1 lost by the student fusion (DQN, KD) against the teacher fusion (DQN), paired by seed:\n"
                   + "\n".join(f"- {line}" for line in gaps))  # fmt: skip
    return "\n\n".join(out)


def student_gap(
    lake: Path, dataset: str | None = None, student: str = "fusion_dqn_small_kd", teacher: str = "fusion_dqn_large"
) -> list[str]:
    """Teacher minus student F1 in points, paired by seed, per dataset, test scenario and pair of setups.

    Each student setup is paired with each teacher setup apart (as the size lines above), and the setups are
    named where a dataset has more than one pair: averaging two student setups would report neither."""
    sql = f"""
        WITH gaps AS (
            SELECT t.dataset, t.scenario, t.setup_hash AS teacher_setup, s.setup_hash AS student_setup, t.seed,
                   100 * (t.f1 - s.f1) AS gap
            FROM v_run_scores t JOIN v_run_scores s
              ON s.dataset = t.dataset AND s.scenario = t.scenario AND s.seed = t.seed AND s.split = 'test'
            WHERE t.model = '{teacher}' AND s.model = '{student}' AND t.split = 'test')
        SELECT dataset, scenario, teacher_setup, student_setup, list(gap ORDER BY seed) AS gaps
        FROM gaps GROUP BY ALL ORDER BY dataset, scenario, teacher_setup, student_setup
    """
    rows = query(lake, sql).to_pylist()
    pairs = Counter((row["dataset"], row["scenario"]) for row in rows)
    lines = []
    for row in rows:
        if dataset not in (None, row["dataset"]):
            continue
        gaps = [g for g in row["gaps"] if g is not None]
        if not gaps:
            continue
        summary = summarize_seeds(gaps)
        spread = f" ± {summary['std']:.1f}" if len(gaps) > 1 else ""
        worst = f", at most {max(gaps):.1f}" if len(gaps) > 1 else ""
        setups = ""
        if pairs[row["dataset"], row["scenario"]] > 1:
            setups = f" (setups {(row['teacher_setup'] or '-')[:6]}, {(row['student_setup'] or '-')[:6]})"
        lines.append(
            f"{row['dataset']} {row['scenario']}{setups}: {summary['mean']:+.1f}{spread} points{worst} "
            f"({len(gaps)} seed(s))"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("campaigns", nargs="*", type=Path, help="kdgat pipeline output folders (OUT of --out)")
    parser.add_argument("--lake", type=Path, help="the lake to append to and read (default: a temporary one)")
    parser.add_argument("--dataset", help="only this dataset")
    args = parser.parse_args()
    if not args.campaigns and args.lake is None:
        parser.error("give campaign folders, --lake, or both")
    with tempfile.TemporaryDirectory(prefix="kdgat-quality-") as scratch:
        lake = args.lake or Path(scratch) / "lake"
        runs = [run for campaign in args.campaigns for run in campaign_runs(campaign)]
        if args.campaigns and not runs:
            raise SystemExit(f"no finished runs under {', '.join(map(str, args.campaigns))}")
        if runs:
            append_runs(runs, lake)
        print(tables(lake, args.dataset))


if __name__ == "__main__":
    main()
