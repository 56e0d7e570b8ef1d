"""A fusion run folder as other stages read it: the frozen VGAE + GAT pair and the fitted fusion.

``members.json`` names the two member runs and the sha256 of their weights, the VGAE score scale,
when the fitted fusion ranked worse than one of its members on its selection windows (held out, and
not fitted on), that member (``fallback``: the ensemble then scores with it alone, so a fusion is
never worse than its best member there), and whether a window holding a novel CAN ID scores 1
whatever the fusion says (``novel_alert``).
``fusion.pt`` holds the fitted fusion method; evaluation and export rebuild the ensemble from them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score

from kdgat.core.config import load_frozen_config
from kdgat.core.errors import KdgatError
from kdgat.core.hashing import sha256_file
from kdgat.core.manifest import require_finished
from kdgat.core.run_files import CONFIG_FILE, FUSION_FILE, MEMBERS_FILE, MODEL_FILE
from kdgat.data.store import GraphPart, GraphStore
from kdgat.evaluation.scoring import fusion_state, score_gat, score_vgae
from kdgat.fusion import FusionData, make_fusion
from kdgat.training.runs import check_run, load_run_model, load_weights


class Ensemble:
    """A frozen VGAE + GAT pair and the squashing of the VGAE score."""

    def __init__(
        self, vgae_dir: Path, gat_dir: Path, store: GraphStore, vgae_scale: float | None = None, *, finished=True
    ):
        self.vgae, self.vgae_cfg = load_run_model(vgae_dir, store, finished=finished)
        self.gat, self.gat_cfg = load_run_model(gat_dir, store, finished=finished)
        if self.vgae_cfg.model_type != "vgae" or self.gat_cfg.model_type != "gat":
            raise KdgatError(f"fusion needs a vgae run ({vgae_dir}) and a gat run ({gat_dir})")
        self.vgae_scale = vgae_scale

    def member_scores(self, part: GraphPart, batch_size: int = 1024) -> tuple[dict, dict]:
        """The VGAE's and the GAT's scores of every window of ``part``: what :meth:`data` is made of."""
        return score_vgae(self.vgae, part, batch_size), score_gat(self.gat, part, batch_size)

    def data(
        self, part: GraphPart, batch_size: int = 1024, *, vgae: dict | None = None, gat: dict | None = None
    ) -> tuple[FusionData, np.ndarray]:
        """Fusion inputs for the labelled windows of ``part`` (and which windows those are); ``vgae``,
        ``gat``: a member's scores of ``part`` where the caller has them already (else scored here)."""
        vgae = score_vgae(self.vgae, part, batch_size) if vgae is None else vgae
        gat = score_gat(self.gat, part, batch_size) if gat is None else gat
        y = np.asarray(part.y)
        keep = y >= 0
        if self.vgae_scale is None:  # fitted by `kdgat fuse` only: fitted here, it would be fitted on what is scored
            raise KdgatError("the fusion's VGAE scale is not set (members.json vgae_scale); `kdgat fuse` fits it")
        error = vgae["score"]  # the VGAE's window score (its most abnormal node, by default)
        squashed = error / (error + max(self.vgae_scale, 1e-12))
        novel = vgae["novel"][keep]
        data = FusionData(fusion_state(vgae, gat)[keep], squashed[keep], gat["p_attack"][keep], y[keep], novel)
        return data, keep


def ensemble_scores(fusion, data: FusionData, members: dict, batch_size: int = 1024) -> np.ndarray:
    """The ensemble's score per window: its fallback member's, or the fusion's in batches of
    ``batch_size``; with ``novel_alert`` (members.json) a window holding a novel CAN ID scores 1.

    Why batches: a matrix product's rows can differ in the last bit with the number of rows, so
    evaluate and detect score the same windows in the same batches to give the same numbers.
    Why the rule: a fusion fitted on known attack kinds learns to follow the GAT, which finds few
    windows of a kind it never trained on; an ID that normal traffic never carries is such a sign.
    """
    scores = _fused_or_fallback(fusion, data, members.get("fallback"), batch_size)
    return with_novel_alert(scores, data.novel) if members.get("novel_alert") else scores


def with_novel_alert(scores: np.ndarray, novel: np.ndarray) -> np.ndarray:
    """``scores`` with the windows holding a novel CAN ID set to 1 (the top of a fused score)."""
    return np.where(novel, np.float32(1.0), scores).astype(np.float32)


AP_ROUNDING = 1e-9  # average precisions closer than this rank alike (floating-point sums of the same terms)


def average_precision(labels, scores) -> float:
    return float(average_precision_score(np.asarray(labels, dtype=np.int64), scores))


def ranks_no_worse(candidate: float, incumbent: float) -> bool:
    """Whether a candidate scoring's average precision is at least the incumbent's, up to rounding: the same
    ranking summed over fewer thresholds can come out a few ulps lower (the fuse stage's two choices)."""
    return candidate >= incumbent - AP_ROUNDING


def ranks_better(candidate: float, incumbent: float) -> bool:
    """Whether a candidate scoring's average precision beats the incumbent's by more than rounding: a learnt fusion
    that only ties its best member (ROAD: both rank the selection windows perfectly) showed nothing it adds there,
    and on an attack kind it never saw it ranked worse than that member."""
    return candidate > incumbent + AP_ROUNDING


def keeps_novel_alert(labels: np.ndarray, scores: np.ndarray, novel: np.ndarray) -> tuple[bool, float]:
    """Whether the novel-ID rule ranks these labelled windows (the fuse stage's held-out ones) no worse than
    ``scores`` alone, and their average precision with it: not where benign windows there hold novel IDs."""
    with_rule = average_precision(labels, with_novel_alert(scores, novel))
    return ranks_no_worse(with_rule, average_precision(labels, scores)), with_rule


def novel_counts(data: FusionData) -> dict[str, int]:
    """Windows holding a novel CAN ID, by class (scored 1 where ``novel_alert`` is on; fuse and evaluate
    report them either way)."""
    return {
        "benign": int(np.sum(data.novel & (data.labels == 0))),
        "attack": int(np.sum(data.novel & (data.labels == 1))),
    }


def _fused_or_fallback(fusion, data: FusionData, fallback: str | None, batch_size: int) -> np.ndarray:
    if fallback == "gat":
        return data.gat_prob
    if fallback == "vgae":
        return data.vgae_score
    if len(data) == 0:
        return np.zeros(0, np.float32)
    chunks = []
    for start in range(0, len(data), batch_size):
        part = slice(start, start + batch_size)
        chunk = FusionData(data.states[part], data.vgae_score[part], data.gat_prob[part], data.labels[part])
        chunks.append(fusion.score(chunk))
    return np.concatenate(chunks)


def collapsed_to(alpha: np.ndarray, share: float = 0.99) -> str | None:
    """The member a per-window weighting gives (almost) every window to: 'gat' (alpha 1), 'vgae' (alpha 0)."""
    alpha = np.asarray(alpha, dtype=np.float64)
    if len(alpha) and np.mean(alpha >= 1.0 - 1e-6) >= share:
        return "gat"
    if len(alpha) and np.mean(alpha <= 1e-6) >= share:
        return "vgae"
    return None


def fusion_label(members: dict) -> str:
    """fusion_dqn_large, fusion_dqn_small_kd ... from a fuse run's members.json: the fusion's run_label."""
    return f"fusion_{members['method']}_{members['scale']}" + ("_kd" if members["kd"] else "")


def check_fusion_run(run_dir: str | Path, store: GraphStore) -> dict:
    """A finished fuse run whose members are finished runs that fit ``store``: its members.json, or one error line
    (cheap: ``kdgat evaluate`` checks every run before scoring the first)."""
    run_dir = Path(run_dir)
    require_finished(run_dir, "fuse", "fusion run")
    members = json.loads((run_dir / MEMBERS_FILE).read_text())
    for member in member_dirs(run_dir, members):
        check_run(member, store)
    return members


def load_fusion_run(run_dir: str | Path, store: GraphStore | None, *, finished: bool = True):
    """Rebuild (ensemble, fusion, method, members) from a fuse run directory (``finished``: as
    :func:`~kdgat.training.runs.check_run`; False for a detector bundle's fusion folder)."""
    run_dir = Path(run_dir)
    if finished:
        require_finished(run_dir, "fuse", "fusion run")
    members = json.loads((run_dir / MEMBERS_FILE).read_text())
    cfg = load_frozen_config(run_dir / CONFIG_FILE)
    vgae_dir, gat_dir = member_dirs(run_dir, members)
    for role, folder in (("vgae", vgae_dir), ("gat", gat_dir)):
        recorded = members.get(f"{role}_sha256")  # runs fused before it was recorded have none
        if recorded is not None and (folder / MODEL_FILE).is_file() and sha256_file(folder / MODEL_FILE) != recorded:
            raise KdgatError(
                f"{run_dir}: its {role.upper()} member {folder} holds other weights than the fusion was fitted with "
                "(trained again since?); fuse again"
            )
    ensemble = Ensemble(vgae_dir, gat_dir, store, vgae_scale=members["vgae_scale"], finished=finished)
    fusion = make_fusion(members["method"], cfg.dqn, cfg.fusion, seed=cfg.seed)
    fusion.load_state_dict(load_weights(run_dir / FUSION_FILE))
    return ensemble, fusion, members


def member_dirs(run_dir: str | Path, members: dict) -> tuple[Path, Path]:
    """A fusion run's VGAE and GAT folders, resolved: ``members.json`` names them absolute (fuse) or
    relative to the fusion folder (a detector bundle)."""
    return (Path(run_dir) / members["vgae"]).resolve(), (Path(run_dir) / members["gat"]).resolve()


def is_fusion_run(run_dir: str | Path) -> bool:
    return (Path(run_dir) / MEMBERS_FILE).is_file()
