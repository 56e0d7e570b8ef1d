"""The report's PNG figures (matplotlib's object API with the Agg canvas: no pyplot, no global state)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from kdgat.core.config import WINDOW_VECTOR_MODELS

DPI = 100
COLORS = {"teacher": "#4c72b0", "student": "#dd8452", "student_kd": "#55a868", "yardstick": "#8c8c8c"}
SIZE_ROLES = {"teacher": "teacher (large)", "student": "small, no KD", "student_kd": "small + KD",
              "yardstick": "classical yardstick"}  # fmt: skip


def _figure(width: float, height: float, rows: int = 1, cols: int = 1):
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, axes


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, format="png")
    return path


def _none(value) -> float:
    return float("nan") if value is None else float(value)


def leaderboard_bars(rows: list[dict], dataset: str, path: Path) -> Path:
    """Validation F1 and mean test F1 per evaluated model of one dataset: mean over seeds, std as error bars."""
    rows = sorted(rows, key=lambda r: _none(r["val_f1_mean"]))
    fig, ax = _figure(7, 0.9 + 0.42 * len(rows))
    ax = ax[0, 0]
    y = np.arange(len(rows))
    for offset, key, label, color in ((0.2, "val_f1", "validation F1", "#4c72b0"),
                                      (-0.2, "test_f1", "test F1 (mean of scenarios)", "#c44e52")):  # fmt: skip
        means = [_none(r[f"{key}_mean"]) for r in rows]
        stds = [r[f"{key}_std"] or 0.0 for r in rows]  # no bar where one run has no spread
        ax.barh(y + offset, means, xerr=stds, height=0.4, label=label, color=color, error_kw={"lw": 0.8})
    several = len({r["model"] for r in rows}) < len(rows)  # a model with two setups: name the setup
    names = [f"{r['model']} ({r['setup'][:6]})" if several and r.get("setup") else r["model"] for r in rows]
    ax.set_yticks(y, [f"{name}, {r['n_seeds']} seed(s)" for name, r in zip(names, rows, strict=True)])
    ax.set_xlim(0, 1.0)
    ax.set_xlabel("F1 (mean ± std over seeds)")
    ax.set_title(f"Leaderboard — {dataset}")
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.06), ncols=2, fontsize=8, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def roc_pr(curves: dict[str, dict[str, tuple[list, list]]], title: str, path: Path) -> Path:
    """ROC and precision-recall curves of every model on one scenario (``model -> {roc|pr: (x, y)}``)."""
    fig, axes = _figure(10, 4.2, 1, 2)
    roc, pr = axes[0]
    for model, points in sorted(curves.items()):
        if "roc" in points:
            roc.plot(*points["roc"], label=model, lw=1.4)
        if "pr" in points:
            pr.plot(*points["pr"], label=model, lw=1.4, drawstyle="steps-post")
    roc.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC", xlim=(0, 1), ylim=(0, 1.02))
    pr.set(xlabel="recall", ylabel="precision", title="Precision-recall", xlim=(0, 1), ylim=(0, 1.02))
    fig.suptitle(title)
    for ax in (roc, pr):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right" if ax is roc else "lower left")
    return _save(fig, path)


def confusion_grid(cells: dict[tuple[str, str], tuple[int, int, int, int]], models: list[str],
                   scenarios: list[str], title: str, path: Path) -> Path:  # fmt: skip
    """One 2x2 confusion matrix (rows: true benign/attack) per model x scenario, shaded by row share."""
    fig, axes = _figure(1.9 * len(scenarios) + 2.2, 1.8 * len(models) + 1.0, len(models), len(scenarios))
    for i, model in enumerate(models):
        for j, scenario in enumerate(scenarios):
            ax = axes[i, j]
            ax.set_xticks([0, 1], ["benign", "attack"] if i == len(models) - 1 else ["", ""], fontsize=7)
            ax.set_yticks([0, 1], ["benign", "attack"] if j == 0 else ["", ""], fontsize=7)
            if i == 0:
                ax.set_title(textwrap.fill(scenario.replace("_", " "), 18), fontsize=8)
            if j == 0:
                ax.set_ylabel(model, fontsize=9, rotation=0, ha="right", va="center", labelpad=10)
            cell = cells.get((model, scenario))
            if cell is None:
                ax.text(0.5, 0.5, "n/a", ha="center", va="center", transform=ax.transAxes)
                continue
            tn, fp, fn, tp = cell
            matrix = np.array([[tn, fp], [fn, tp]], dtype=float)
            share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
            ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
            for (r, c), value in np.ndenumerate(matrix):
                ax.text(c, r, f"{int(value)}", ha="center", va="center", fontsize=8,
                        color="white" if share[r, c] > 0.6 else "black")  # fmt: skip
    fig.suptitle(f"Confusion matrices (rows: true class, columns: predicted) — {title}", fontsize=10)
    return _save(fig, path)


def training_curves(series: dict[str, dict[str, tuple[list, list]]], title: str, path: Path) -> Path:
    """Validation and training loss per epoch of each trained model (``model -> {metric: (epochs, values)}``)."""
    metrics = [m for m in ("val_loss", "train_loss") if any(m in s for s in series.values())]
    fig, axes = _figure(5 * max(len(metrics), 1), 3.8, 1, max(len(metrics), 1))
    for ax, metric in zip(axes[0], metrics, strict=False):
        for model, curves in sorted(series.items()):
            if metric in curves:
                ax.plot(*curves[metric], marker=".", label=model)
        ax.set(xlabel="epoch", ylabel=metric, title=f"{metric} — {title}")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, path)


def kd_impact_bars(rows: list[dict], path: Path) -> Path:
    """Teacher, student without KD and student with KD, validation and mean test F1 over the seeds they pair on,
    per dataset and family (rows without a pair are left out)."""
    rows = [r for r in rows if r["n_pairs"]]
    fig, axes = _figure(max(10.0, 2.4 * len(rows) + 3), 4.2, 1, 2)
    labels = [f"{r['dataset']}\n{r['family']}, {r['n_pairs']} seed(s)" for r in rows]
    x = np.arange(len(rows))
    for ax, prefix, name in ((axes[0, 0], "val_", "validation F1"), (axes[0, 1], "test_", "mean test F1")):
        for k, key in enumerate(("teacher", "student", "student_kd")):
            label = SIZE_ROLES[key]
            values = [_none(r[f"{key}_{prefix}f1"]) for r in rows]
            ax.bar(x + (k - 1) * 0.27, values, width=0.27, label=label, color=COLORS[key])
        ax.set_xticks(x, labels, fontsize=8)
        ax.set(ylim=(0, 1.22), ylabel=name, title=name)
        ax.set_yticks(np.linspace(0, 1, 6))
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", ncols=3)
    fig.suptitle("Knowledge distillation: teacher, student without and with KD")
    return _save(fig, path)


def size_role(row: dict) -> str:
    """A run's bar in the parameter chart: a classical yardstick (hgb, novelty: no teacher or student of
    them), else teacher (large), student without or with KD."""
    if row["family"] in WINDOW_VECTOR_MODELS:
        return "yardstick"
    return "teacher" if row["scale"] == "large" else ("student_kd" if row["has_kd"] else "student")


def parameter_bars(rows: list[dict], path: Path) -> Path:
    """Parameter counts of teachers (large), students (small) and the classical yardsticks, per model and dataset."""
    rows = sorted(rows, key=lambda r: (r["dataset"], r["family"], r["scale"] != "large", bool(r["has_kd"])))
    fig, ax = _figure(max(8.0, 0.9 * len(rows) + 2), 4.4)
    ax = ax[0, 0]
    roles = [size_role(r) for r in rows]
    bars = ax.bar(np.arange(len(rows)), [r["parameters"] for r in rows], color=[COLORS[role] for role in roles])
    for bar, r in zip(bars, rows, strict=True):
        ax.annotate(f"{r['parameters'] / 1000:.0f}k", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=7)  # fmt: skip
    names = [(r["model"], r["dataset"]) for r in rows]
    labels = [
        f"{m}\n{d}" + (f" [{(r.get('setup') or '')[:6]}]" if names.count((m, d)) > 1 else "")
        for (m, d), r in zip(names, rows, strict=True)
    ]  # several setups of a model: say which bar is which
    ax.set_xticks(np.arange(len(rows)), labels, fontsize=7, rotation=30, ha="right")
    ax.set(ylabel="parameters", title="Parameters: teachers (large), students (small) and the classical yardsticks")
    ax.grid(axis="y", alpha=0.3)
    handles = [Patch(color=COLORS[k], label=v) for k, v in SIZE_ROLES.items() if k in roles]
    ax.legend(handles=handles, fontsize=8)
    return _save(fig, path)


def policy_bars(rows: list[dict], path: Path) -> Path:
    """Mean DQN fusion weight alpha (share of the GAT) on benign and attack validation windows."""
    keys = sorted({(r["dataset"], r["model"]) for r in rows})
    fig, ax = _figure(max(6.0, 1.6 * len(keys) + 2), 3.8)
    ax = ax[0, 0]
    x = np.arange(len(keys))
    ax.set_xlim(-1, len(keys))
    for k, (cls, color) in enumerate((("benign", "#4c72b0"), ("attack", "#c44e52"))):
        values = {(r["dataset"], r["model"]): _none(r["mean_alpha"]) for r in rows if r["class"] == cls}
        ax.bar(x + (k - 0.5) * 0.3, [values.get(key, np.nan) for key in keys], width=0.3, label=cls, color=color)
    ax.set_xticks(x, [f"{m}\n{d}" for d, m in keys], fontsize=8)
    ax.set(ylim=(0, 1.05), ylabel="mean alpha (GAT weight)", title="DQN fusion weight by class (validation)")
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)
