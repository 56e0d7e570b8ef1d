"""What an evaluation recorded for a run (its entry in ``metrics.json``: threshold, figures), found safely.

Export packs an evaluation's thresholds into a detector, and ``kdgat evaluate --thresholds`` scores new captures
with them: both must get the entry of *these* weights, never that of another run of the same name (another seed's,
or one trained again since), so a run is matched by its folder, else by name when the evaluation's manifest lists
its weights' sha256 (a moved or staged run), and its weights are checked either way.
"""

from __future__ import annotations

from pathlib import Path

from kdgat.core.errors import KdgatError
from kdgat.core.hashing import sha256_file
from kdgat.core.jsonfile import read_json
from kdgat.core.manifest import read_manifest, require_finished
from kdgat.core.run_files import FUSION_FILE, MEMBERS_FILE, METRICS_FILE
from kdgat.fusion.ensemble import is_fusion_run
from kdgat.training.runs import model_file

__all__ = ["read_evaluation", "recorded_entry"]


def read_evaluation(eval_dir: Path) -> dict:
    """An evaluation's metrics.json (its folder or the file), with one line where it is none."""
    path = eval_dir / METRICS_FILE if eval_dir.is_dir() else eval_dir
    if path.is_file() and path.name != METRICS_FILE:
        raise KdgatError(f"{path}: not an evaluation; give an evaluation's folder or its {METRICS_FILE}")
    if path.parent.is_dir() and path.is_file():  # a killed evaluation may hold the earlier one's thresholds
        require_finished(path.parent, "evaluate", "evaluation")
    document = read_json(path, missing="no evaluation here (run `kdgat evaluate` on the runs first)", what="evaluation")
    if not isinstance(document, dict) or not isinstance(document.get("runs"), dict):
        raise KdgatError(f"{path}: not an evaluation's {METRICS_FILE} (no 'runs')")
    return document


def recorded_entry(document: dict, run_dir: Path, label: str, eval_dir: Path) -> tuple[str, dict]:
    """The evaluation's entry for ``run_dir``: matched by folder, else by label when the evaluation scored these
    very weights (a moved or staged run); thresholds of another run of the same name are refused."""
    target = run_dir.resolve()
    for name, entry in document["runs"].items():
        if Path(entry.get("run_dir", "")).resolve() == target:
            _check_same_weights(run_dir, name, eval_dir, required=False)  # a run trained again in place
            return name, entry
    if label in document["runs"]:
        _check_same_weights(run_dir, label, eval_dir)
        return label, document["runs"][label]
    raise KdgatError(
        f"{eval_dir}: holds no evaluation of {run_dir} (it evaluated {', '.join(document['runs']) or 'nothing'}); "
        "evaluate the run first"
    )


def _check_same_weights(run_dir: Path, label: str, eval_dir: Path, required: bool = True) -> None:
    """The evaluation's manifest lists the sha256 of every weight file it scored (and of a fusion's members.json
    since this version): ``run_dir``'s must be among them. Without a manifest, a run matched by its folder
    passes (``required`` False) and one matched by label does not."""
    folder = eval_dir if eval_dir.is_dir() else eval_dir.parent
    manifest = read_manifest(folder)
    if manifest is None:
        if not required:
            return
        raise KdgatError(f"{folder}: no manifest.json, so nothing says its {label} is {run_dir}; evaluate the run")
    scored = {item.sha256 for item in manifest.inputs}
    fusion = is_fusion_run(run_dir)
    files = [run_dir / FUSION_FILE] if fusion else [model_file(run_dir)]
    if fusion and any(Path(item.path).name == MEMBERS_FILE for item in manifest.inputs):
        files.append(run_dir / MEMBERS_FILE)
    for path in files:
        if sha256_file(path) not in scored:
            raise KdgatError(
                f"{folder}: its {label} is another run than {run_dir} ({path.name} differs); "
                "evaluate this run and use that evaluation"
            )
