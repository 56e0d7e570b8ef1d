"""Rich tables shown by the CLI and the demo (one place, so both show the same)."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table
from rich.text import Text

from kdgat.core.manifest import Manifest


def _columns(table: Table, spec: list[tuple[str, str]]) -> Table:
    """Names fold; other text columns wrap (suspect IDs, OOD: cut at the console's width, the last columns went
    missing when the output is not a terminal); numbers stay on one line."""
    for name, justify in spec:
        if justify == "name":
            table.add_column(name, overflow="fold", min_width=14)
        elif justify == "left":
            table.add_column(name, justify=justify, overflow="fold")
        else:
            table.add_column(name, justify=justify, no_wrap=True)
    return table


def _share(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def ingest_table(manifest: Manifest, out_dir: Path) -> Table:
    table = _columns(
        Table(title=f"Ingested into {out_dir}"),
        [("output", "name"), ("format", "left"), ("frames", "right"), ("attack", "right"), ("skipped", "right")],
    )
    for item in manifest.outputs:
        attack = "unlabelled" if item.unlabelled_rows == item.rows else f"{item.attack_rows:,}"
        table.add_row(item.path, item.format, f"{item.rows:,}", attack, f"{item.skipped_rows:,}")
    totals = manifest.summary["totals"]
    table.add_row(
        Text("total", style="bold"),
        "",
        Text(f"{totals['rows']:,}", style="bold"),
        Text(f"{totals['attack_rows']:,}", style="bold"),
        f"{totals['skipped_rows']:,}",
    )
    return table


def store_table(meta: dict, out_dir: Path) -> Table:
    state = "up to date, reused" if meta.get("reused") else "built"
    table = _columns(
        Table(
            title=f"Graph store {out_dir} ({state}; window {meta['window']}, stride {meta['stride']})",
            caption=(
                f"vocabulary: {meta['vocab_size'] - 1} CAN IDs + OOV; feature set {meta['feature_set']['tag']}; "
                f"{meta['dropped_straddling_windows']} windows dropped for straddling two time blocks"
            ),
        ),
        [("part", "name"), ("graphs", "right"), ("nodes/graph", "right"), ("edges/graph", "right"),
         ("attack", "right"), ("attack %", "right")],
    )  # fmt: skip
    for name, part in meta["parts"].items():
        table.add_row(
            name, f"{part['graphs']:,}", f"{part['mean_nodes']:.1f}", f"{part['mean_edges']:.1f}",
            f"{part['attack_graphs']:,}", _share(part["attack_share"]),
        )  # fmt: skip
    return table


def run_table(metrics: dict, out_dir: Path) -> Table:
    from kdgat.training.runs import training_extent

    kd = " + KD from " + metrics["teacher"] if metrics.get("teacher") else ""
    table = Table(title=f"Trained {metrics['model']} {metrics['scale']}{kd} -> {out_dir}")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    rows = [
        ("parameters", f"{metrics['parameters']:,}"),
        ("best validation loss", "-" if metrics["best_val_loss"] is None else f"{metrics['best_val_loss']:.4f}"),
        ("trained for", training_extent(metrics)),
        ("stopped early", "yes" if metrics["stopped_early"] else "no"),
        ("train / val graphs", f"{metrics['train_graphs']:,} / {metrics['val_graphs']:,}"),
        ("device", metrics["device"]),
    ]
    if metrics.get("teacher_parameters"):
        share = metrics["parameters"] / metrics["teacher_parameters"]
        rows.append(("size vs teacher", f"{100 * share:.1f}% of {metrics['teacher_parameters']:,}"))
    for name, value in rows:
        table.add_row(name, value)
    return table


def _fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _evaluation_title(policy: str, where: str) -> str:
    subject = f"Evaluation{f' of {where}' if where else ''}"
    if policy.startswith("recorded"):
        return f"{subject} (thresholds {policy})"
    return f"{subject} (thresholds chosen on validation, policy {policy})"


def evaluation_table(document: dict, where: str = "") -> Table:
    """One row per run and scenario: F1, precision, recall, FPR, ROC-AUC, PR-AUC at the validation threshold."""
    table = _columns(
        Table(title=_evaluation_title(document["threshold_policy"], where)),
        [("run", "left"), ("scenario", "name"), ("F1", "right"), ("precision", "right"), ("recall", "right"),
         ("FPR", "right"), ("ROC-AUC", "right"), ("PR-AUC", "right")],
    )  # fmt: skip
    for label, run in document["runs"].items():
        rows = ([("validation", run["validation"])] if run.get("validation") else []) + list(run["test"].items())
        for scenario, m in rows:
            table.add_row(
                label, scenario, _fmt(m["f1"]), _fmt(m["precision"]), _fmt(m["recall"]), _fmt(m["fpr"], 4),
                _fmt(m["roc_auc"]), _fmt(m["pr_auc"]),
            )  # fmt: skip
    return table


def _when(first: dict | None) -> str:
    """The first alert: seconds after the capture's first frame, and its window."""
    if first is None:
        return "-"
    if first.get("after_s") is None:
        return f"window {first['window']}"
    return f"+{first['after_s']:.3f} s (window {first['window']})"


def detect_table(summary: dict) -> Table:
    """One row per capture (or bus): windows, alerts, first alert, top suspect IDs, novel IDs, unknown IDs, OOD."""
    title = (f"Detections by {summary['detector']} (threshold {summary['threshold']:.6g}, "
             f"{summary['threshold_policy']}; window {summary['window']}, stride {summary['stride']})")  # fmt: skip
    table = _columns(
        Table(title=title),
        [("capture", "name"), ("frames", "right"), ("windows", "right"), ("alerts", "right"), ("alert %", "right"),
         ("first alert", "right"), ("top suspect IDs", "left"), ("novel-ID windows", "left"),
         ("unknown IDs %", "right"), ("OOD", "left")],
    )  # fmt: skip
    for f in summary["files"]:
        suspects = ", ".join(f"{s['id']} ({s['alert_windows']})" for s in f["top_suspects"][:3]) or "-"
        table.add_row(
            f["file"], f"{f['frames']:,}", f"{f['windows']:,}", f"{f['alerts']:,}", _share(f["alert_rate"]),
            _when(f["first_alert"]), suspects, _novel(f), _share(f["ood_figures"]["unknown_id_share"]),
            Text("yes", style="bold yellow") if f["out_of_distribution"] else "no",
        )  # fmt: skip
    return table


def _novel(file: dict) -> str:
    """Windows holding a CAN ID benign training (nearly) never carried, and the top IDs; '-' if not counted."""
    if file.get("novel_windows") is None:
        return "-"
    ids = ", ".join(n["id"] for n in file["top_novel_ids"][:2])
    rule = " (rule on)" if file["novel_alert"] and file["novel_windows"] else ""
    return f"{file['novel_windows']:,}{rule}" + (f": {ids}" if ids else "")


def detect_metrics_table(summary: dict) -> Table | None:
    """Per labelled capture and detector: the metrics kdgat evaluate reports, at the bundle's thresholds."""
    rows = [(f["file"], label, m) for f in summary["files"] for label, m in (f.get("metrics") or {}).items()]
    if not rows:
        return None
    table = _columns(
        Table(title="Metrics on the labelled captures (thresholds from the bundle)"),
        [("capture", "name"), ("detector", "left"), ("F1", "right"), ("precision", "right"), ("recall", "right"),
         ("FPR", "right"), ("ROC-AUC", "right"), ("PR-AUC", "right")],
    )  # fmt: skip
    for file, label, m in rows:
        # a capture without attack windows (a clean drive): nothing to find, so no F1, precision or recall (the
        # metrics hold 0.0 there, as scikit-learn's zero_division=0); its FPR is the figure
        found = (m["f1"], m["precision"], m["recall"]) if m["positives"] else (None, None, None)
        table.add_row(file, label, *map(_fmt, found), _fmt(m["fpr"], 4), _fmt(m["roc_auc"]), _fmt(m["pr_auc"]))
    return table


def export_table(summary: dict, out_dir: Path) -> Table:
    table = _columns(
        Table(title=f"Detector bundle {out_dir} (feature set {summary['feature_set']}, window {summary['window']}, "
                    f"{summary['files']} files, {summary['bytes']:,} bytes)"),
        [("detector", "left"), ("kind", "left"), ("parameters", "right"), ("threshold", "right"), ("policy", "left")],
    )  # fmt: skip
    for label in summary["detectors"]:
        t = summary["thresholds"][label]
        table.add_row(label, summary["models"][label], f"{summary['parameters'][label]:,}", f"{t['value']:.6g}",
                      t["policy"])  # fmt: skip
    return table
