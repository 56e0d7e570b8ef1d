"""A static HTML report of the lake: leaderboard, KD impact, model sizes, the DQN fusion weights and what
each fusion chose on its held-out windows, and per dataset the latest evaluation's ROC/PR curves,
confusion matrices and training curves.

Everything comes from the lake's views, so the report needs no run folder. This package builds
the page's sections and figures; :mod:`kdgat.stages.report` writes them.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from kdgat.lake.queries import run_sql
from kdgat.report import figures
from kdgat.report.page import esc, figure_html, table_html

__all__ = ["FIGURES", "Figures", "lake_counts", "sections"]

FIGURES = "figures"
_LEADERBOARD_COLUMNS = ["model", "setup", "n_seeds", "val_f1", "val_pr_auc", "test_f1", "test_pr_auc", "test_fpr",
                        "selected_seed", "selected_test_f1", "selected_test_pr_auc", "selected_test_fpr"]  # fmt: skip
_SCENARIO_COLUMNS = ["scenario", "model", "setup", "n_seeds", "test_f1", "test_pr_auc", "test_fpr", "selected_test_f1",
                     "selected_test_pr_auc", "selected_test_fpr"]  # fmt: skip
_KD_COLUMNS = ["dataset", "family", "setup", "n_pairs", "teacher_val_f1", "student_val_f1", "student_kd_val_f1",
               "val_f1_delta", "teacher_test_f1", "student_test_f1", "student_kd_test_f1", "test_f1_delta",
               "test_pr_auc_delta"]  # fmt: skip
_FUSION_COLUMNS = ["dataset", "model", "setup", "n_runs", "n_out_of_sample", "n_fallback", "fallback_to", "n_collapsed",
                   "collapsed_to", "n_novel_alert", "novel_benign", "novel_attack"]  # fmt: skip
# the newest evaluation per dataset among those the leaderboard reads (v_run_scores: on the runs' own store, of
# appended runs), so the curves and policies beside it come from the same evaluation, not from new captures
_LATEST_EVALS = """
    SELECT dataset, run_id, created_at FROM runs
    WHERE stage = 'evaluate' AND run_id IN (SELECT eval_run_id FROM v_run_scores)
    QUALIFY row_number() OVER (PARTITION BY dataset ORDER BY created_at DESC, appended_at DESC, run_id) = 1
    ORDER BY dataset
"""


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "x"


class Figures:
    """Collects figure files under a staging folder; hands out the relative paths the page links to."""

    def __init__(self, staging: Path):
        self.staging = staging
        self.count = 0

    def path(self, name: str) -> tuple[Path, str]:
        self.count += 1
        file = f"{self.count:02d}-{_slug(name)}.png"
        return self.staging / file, f"{FIGURES}/{file}"


def _with_mean_std(table, columns: list[str]):
    """``columns`` of a view's table, each ``<name>_mean`` / ``<name>_std`` pair shown as one "mean ± std" cell."""
    import pyarrow as pa

    from kdgat.evaluation.metrics import format_mean_std

    names = set(table.column_names)
    out = {}
    for column in columns:
        if column in names:
            out[column] = table.column(column)
        elif f"{column}_mean" in names:
            means, stds = table.column(f"{column}_mean").to_pylist(), table.column(f"{column}_std").to_pylist()
            out[column] = pa.array([format_mean_std({"mean": m, "std": s}) for m, s in zip(means, stds, strict=True)])
    return pa.table(out)


def _dataset_section(con, dataset: str, eval_id: str, created_at, leaderboard, figs: Figures) -> str:
    seeds = run_sql(con, "SELECT list(DISTINCT seed ORDER BY seed) FILTER (WHERE seed IS NOT NULL) FROM v_run_scores "
                    "WHERE eval_run_id = ?",
                    [eval_id]).column(0)[0].as_py() or []  # fmt: skip
    of_seed = f"seed {', '.join(str(s) for s in seeds)}" if seeds else "seed unknown"
    parts = [f'<p class="meta">The curves and confusion counts below are of one evaluation, the latest: '
             f"<code>{esc(eval_id)}</code> ({of_seed}, {esc(created_at)}), not a mean over seeds; "
             "thresholds chosen on validation, applied unchanged to every test scenario.</p>"]  # fmt: skip
    rows = [r for r in leaderboard.to_pylist() if r["dataset"] == dataset]
    path, src = figs.path(f"leaderboard-{dataset}")
    figures.leaderboard_bars(rows, dataset, path)
    parts.append(figure_html(src, f"leaderboard of {dataset}"))
    per_scenario = run_sql(con, "SELECT * FROM v_leaderboard_scenarios WHERE dataset = ?", [dataset])
    if per_scenario.num_rows:
        parts += ["<h3>Per test scenario (mean ± std over seeds; selected = the run with the best validation F1)</h3>",
                  table_html(_with_mean_std(per_scenario, _SCENARIO_COLUMNS))]  # fmt: skip

    # one row per (scenario, model, curve) with its points as lists, in point order
    lines = run_sql(con, "SELECT scenario, model, curve, list(x ORDER BY point) AS xs, list(y ORDER BY point) AS ys "
                 "FROM curves WHERE eval_run_id = ? AND scenario <> 'validation' GROUP BY ALL "
                 "ORDER BY scenario, model, curve", [eval_id]).to_pylist()  # fmt: skip
    by_scenario: dict[str, dict[str, dict[str, tuple[list, list]]]] = defaultdict(lambda: defaultdict(dict))
    for line in lines:
        by_scenario[line["scenario"]][line["model"]][line["curve"]] = (line["xs"], line["ys"])
    parts.append("<h3>ROC and precision-recall per test scenario</h3>")
    if not by_scenario:
        parts.append('<p class="note">No curves (a scenario without both classes has none).</p>')
    for scenario, curves in sorted(by_scenario.items()):
        path, src = figs.path(f"roc-pr-{dataset}-{scenario}")
        figures.roc_pr(curves, scenario, path)
        parts.append(figure_html(src, f"ROC and PR curves, {dataset}, {scenario}"))

    cells = run_sql(con, "SELECT model, scenario, split, tn, fp, fn, tp FROM metrics WHERE eval_run_id = ? "
                 "ORDER BY split DESC, scenario, model", [eval_id]).to_pylist()  # fmt: skip
    if cells:
        models = list(dict.fromkeys(r["model"] for r in sorted(cells, key=lambda r: r["model"])))
        scenarios = list(dict.fromkeys(r["scenario"] for r in cells))
        grid = {(r["model"], r["scenario"]): (r["tn"], r["fp"], r["fn"], r["tp"]) for r in cells}
        path, src = figs.path(f"confusion-{dataset}")
        figures.confusion_grid(grid, models, scenarios, dataset, path)
        parts += ["<h3>Confusion matrices</h3>", figure_html(src, f"confusion matrices, {dataset}")]

    curves = run_sql(con, """
        WITH latest AS (
            SELECT run_id, model FROM runs WHERE dataset = ? AND stage = 'train'
            QUALIFY row_number() OVER (PARTITION BY model ORDER BY created_at DESC, run_id) = 1),
        per_epoch AS (
            SELECT l.model, t.metric, t.epoch, avg(t.value) AS value
            FROM training_curves t JOIN latest l USING (run_id)
            WHERE t.metric IN ('val_loss', 'train_loss') AND t.epoch IS NOT NULL GROUP BY ALL)
        SELECT model, metric, list(epoch ORDER BY epoch) AS xs, list(value ORDER BY epoch) AS ys
        FROM per_epoch GROUP BY ALL ORDER BY model, metric""", [dataset]).to_pylist()  # fmt: skip
    if curves:
        series: dict[str, dict[str, tuple[list, list]]] = defaultdict(dict)
        for r in curves:
            series[r["model"]][r["metric"]] = (r["xs"], r["ys"])
        path, src = figs.path(f"training-{dataset}")
        figures.training_curves(series, dataset, path)
        parts += ["<h3>Training curves (latest run per model)</h3>", figure_html(src, f"training curves, {dataset}")]
    return "".join(parts)


def lake_counts(con) -> dict:
    """How many runs, evaluations and datasets the lake holds."""
    return run_sql(con, "SELECT count(*) AS runs, count(*) FILTER (WHERE stage = 'evaluate') AS evals, "
                   "count(DISTINCT dataset) AS datasets FROM runs").to_pylist()[0]  # fmt: skip


def sections(con, figs: Figures) -> list[tuple[str, str, str]]:
    leaderboard = run_sql(con, "SELECT * FROM v_leaderboard")
    sections = []
    inner = ['<p class="meta">Per model and setup (one experiment over seeds): validation and test figures as mean ± '
             "std over seeds (test: the mean over the test scenarios of each run), and the test figures of the "
             "<b>selected</b> run, the one with the best validation F1 (none where validation holds no attack window). "
             "Nothing is chosen on test.</p>"]  # fmt: skip
    for dataset in sorted(set(leaderboard.column("dataset").to_pylist())):
        rows = leaderboard.filter(leaderboard.column("dataset").to_numpy(zero_copy_only=False) == dataset)
        inner += [f"<h3>{esc(dataset)}</h3>", table_html(_with_mean_std(rows, _LEADERBOARD_COLUMNS))]
    if leaderboard.num_rows == 0:
        inner.append('<p class="note">No evaluations in the lake yet.</p>')
    sections.append(("leaderboard", "Leaderboard", "".join(inner)))

    kd = run_sql(con, "SELECT * FROM v_kd_impact")
    inner = ['<p class="meta">Small model with KD minus small model without KD, paired by seed (mean ± std over the '
             "pairs), the KD students' own teachers beside them; means over the paired seeds.</p>",
             table_html(_with_mean_std(kd, _KD_COLUMNS))]  # fmt: skip
    if any(kd.column("n_pairs").to_pylist()):
        path, src = figs.path("kd-impact")
        figures.kd_impact_bars(kd.to_pylist(), path)
        inner.append(figure_html(src, "knowledge distillation impact"))
    sections.append(("kd-impact", "Knowledge distillation impact", "".join(inner)))

    sizes = run_sql(con, "SELECT dataset, model, family, scale, has_kd, setup, parameters FROM v_parameters")
    inner = [table_html(sizes)]
    if sizes.num_rows:
        path, src = figs.path("parameters")
        figures.parameter_bars(sizes.to_pylist(), path)
        inner.append(figure_html(src, "parameter counts, teacher vs student"))
    sections.append(("parameters", "Parameters: teacher vs student", "".join(inner)))

    latest = run_sql(con, _LATEST_EVALS).to_pylist()
    policy = run_sql(con, f"""
        SELECT l.dataset, p.model, p.class, p.mean_alpha FROM policies p JOIN ({_LATEST_EVALS}) l
        ON l.run_id = p.eval_run_id WHERE p.class IN ('benign', 'attack')""").to_pylist()  # fmt: skip
    inner = ['<p class="meta">Mean weight alpha the DQN gives the GAT (1 - alpha to the VGAE) on validation '
             "windows, by true class.</p>"]  # fmt: skip
    if policy:
        path, src = figs.path("dqn-policy")
        figures.policy_bars(policy, path)
        inner.append(figure_html(src, "DQN fusion weight by class"))
    else:
        inner.append('<p class="note">No DQN fusion was evaluated.</p>')
    fusions = run_sql(con, f"SELECT {', '.join(_FUSION_COLUMNS)} FROM v_fusions")
    inner.append(
        '<p class="meta">What each fusion chose on its held-out fusion windows, over its seeds: '
        "fell back to one member (it ranked them worse than that member), gave almost every window to "
        "one member, and the novel-ID rule (a window with a CAN ID benign training traffic lacks "
        "scores 1; off where it ranked those windows worse), with their novel windows by class.</p>"
    )
    inner.append(table_html(fusions) if fusions.num_rows else '<p class="note">No fusion was fitted.</p>')
    sections.append(("dqn", "Fusion: weights by class, fallbacks and the novel-ID rule", "".join(inner)))

    for item in latest:
        html = _dataset_section(con, item["dataset"], item["run_id"], item["created_at"], leaderboard, figs)
        sections.append((f"dataset-{_slug(item['dataset'])}", f"Dataset {item['dataset']}", html))
    return sections
