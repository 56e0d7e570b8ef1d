"""The fuse stage: learn how to weigh a frozen VGAE and a frozen GAT per window.

The fusion is fitted on the store's ``fusion`` part: held-out time blocks that neither member
trained on and that no threshold is chosen on (``kdgat.data.split``); a fusion fitted on the
members' own training windows learns to trust whichever member overfits most. It is fitted on the
earlier half of each file's fusion windows, and what is chosen about it (its best epoch or
episode, the fallback) on the later half, which it did not fit
(:func:`kdgat.data.split.fusion_halves`). The VGAE's reconstruction error is squashed to [0, 1] as
e / (e + m), with m the median error of the benign windows of the fit half: 0.5 at a typical benign
window, towards 1 for unusual ones. Unless the fitted fusion ranks the selection windows better
(PR-AUC) than its best member, the run falls back to that member (a tie too: a fusion that shows no
gain is not used), so the ensemble is never worse than its best member on windows it did not fit.
With ``fusion.novel_alert`` (the default) a window holding a CAN ID that benign training traffic
lacks then scores 1, whatever the fusion says (it needs the VGAE's ``novel_first`` window score),
unless that ranks the fusion windows worse: benign windows with such IDs there, in either half (the
rule fits nothing, so all of them are evidence; the selection half alone held none on ROAD). Both
comparisons allow for rounding (1e-9 of average precision: the same ranking summed in another
order). The run directory records the two member runs and both choices, so evaluation rebuilds the
ensemble.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from kdgat.core.atomic import atomic_write_text, check_output_folder
from kdgat.core.config import config_hash, config_to_json, trained_on
from kdgat.core.errors import KdgatError
from kdgat.core.manifest import Manifest, file_entry, refuse_other_output
from kdgat.core.publish import publish_output, staged_output
from kdgat.core.run_files import CONFIG_FILE, FUSION_FILE, MEMBERS_FILE, METRICS_FILE, MODEL_FILE
from kdgat.core.schema import PipelineConfig
from kdgat.core.stage_log import log_stage
from kdgat.core.threads import set_threads
from kdgat.data.split import EMPTY_FUSION_PART, FUSION_PART, NO_FUSION_PART, ONE_CLASS_FUSION_PART, fusion_halves
from kdgat.data.store import open_store
from kdgat.evaluation.scoring import score_vgae
from kdgat.fusion import make_fusion, trainable_parameters
from kdgat.fusion.ensemble import (
    Ensemble,
    average_precision,
    collapsed_to,
    ensemble_scores,
    keeps_novel_alert,
    novel_counts,
    ranks_better,
    with_novel_alert,
)
from kdgat.training.runs import check_scored_store, save_weights

# how the fusion's choices are made: on the later half of the held-out windows, which it did not fit (part of the
# pipeline's fuse-step key, so fusions chosen on their own fit windows are fitted again); "no frame shared": a
# selection window starting on the fit half's last frame (stride = window), which the first version kept, is dropped
SELECTION = "later-half, no frame shared, rule on every window, ties to the member"


def novel_alert_off(metrics: dict) -> str | None:
    """Why a fuse run that asked for the novel-ID rule does not have it (its metrics), else None."""
    if metrics["novel_alert_unavailable"]:
        return (
            "fusion.novel_alert is off for this run: its VGAE's window score does not say which windows hold a "
            "novel CAN ID (that needs vgae.window_score novel_first)"
        )
    if metrics["novel_alert_dropped"]:
        # the windows it was decided on: every fusion window (runs made before: the selection windows)
        decided = metrics.get("novel_alert_decided_on")
        counts, where = (decided["novel_windows"], "fusion") if decided else (metrics["novel_windows"], "selection")
        return (
            f"fusion.novel_alert is off for this run: {counts['benign']} benign {where} windows hold a novel CAN "
            f"ID ({counts['attack']} attack ones), and scoring them 1 ranked those windows worse"
        )
    return None


def run(
    cfg: PipelineConfig,
    method: str,
    vgae_dir: str | Path,
    gat_dir: str | Path,
    graphs_dir: str | Path,
    out_dir: str | Path,
    *,
    tracking_uri: str | None = None,
    dataset: str | None = None,
    threads: int | None = None,
) -> Manifest:
    """Fit one fusion method on the store's fusion part; the manifest's summary holds its metrics."""
    set_threads(threads)
    started = time.perf_counter()
    vgae_dir, gat_dir, graphs_dir, out_dir = map(Path, (vgae_dir, gat_dir, graphs_dir, out_dir))
    vgae_dir, gat_dir = vgae_dir.resolve(), gat_dir.resolve()  # recorded absolute: the lake finds them anywhere
    refuse_other_output(out_dir, "fuse")
    check_output_folder(out_dir)  # an unusable output path fails now, not after the work (nothing created)
    store = open_store(graphs_dir)
    dataset = dataset or store.dataset
    cfg = trained_on(cfg, store.metadata)
    ensemble = Ensemble(vgae_dir, gat_dir, store)
    check_scored_store([vgae_dir, gat_dir], store)  # members scored on windows they were not trained on: refused
    if FUSION_PART not in store.parts:
        raise KdgatError(f"{graphs_dir}: {NO_FUSION_PART}")
    part = store.part(FUSION_PART)
    if part.num_graphs == 0:
        raise KdgatError(f"{graphs_dir}: {EMPTY_FUSION_PART}")
    fit_windows, selection_windows = fusion_halves(part.file_index, part.window_start, int(store.metadata["window"]))
    vgae_scores = score_vgae(ensemble.vgae, part)
    # the VGAE's squashing scale is fitted with the fusion: on the fit half's benign windows (on every benign fusion
    # window where that half has none; then the selection is in-sample anyway, and said so)
    benign = np.asarray(part.y) == 0
    scale_on = fit_windows & benign if (fit_windows & benign).any() else benign
    ensemble.vgae_scale = float(np.median(vgae_scores["score"][scale_on] if scale_on.any() else vgae_scores["score"]))
    held_out, labelled = ensemble.data(part, vgae=vgae_scores)
    if not held_out.both_classes:
        raise KdgatError(f"{graphs_dir}: {ONE_CLASS_FUSION_PART}")
    fit, select = held_out.take(fit_windows[labelled]), held_out.take(selection_windows[labelled])
    out_of_sample = fit.both_classes and select.both_classes
    if not out_of_sample:  # a half without attack (or benign) windows: fitted and chosen on every window, said so
        fit = select = held_out
    fusion = make_fusion(method, cfg.dqn, cfg.fusion, seed=cfg.seed)
    history = fusion.fit(fit, select)  # its best epoch / episode: on the half it does not fit
    # the fusion's scoring of the selection windows (in evaluate's batches) against its best member's
    scores = {"fusion": ensemble_scores(fusion, select, {}), "gat": select.gat_prob, "vgae": select.vgae_score}
    ranking = {name: average_precision(select.labels, s) for name, s in scores.items()}
    best_member = max(("gat", "vgae"), key=ranking.get)
    # the fusion is kept only where it ranks them better than its best member: a tie falls back to the member
    fallback = None if ranks_better(ranking["fusion"], ranking[best_member]) else best_member
    # the rule needs the VGAE to say which windows hold a novel ID
    available = cfg.fusion.novel_alert and ensemble.vgae.marks_novel_ids
    novel_alert, rule_decision = False, None
    if available:
        # the rule fits nothing: what decides it is whether benign held-out windows hold novel IDs, so it is decided
        # on every fusion window (on ROAD the selection half held none, and the two benign ones of the fit half that
        # cost ranking there went unseen). On the fit half a fitted fusion's scores are in-sample, which understates
        # what the rule adds and not what it costs (a benign novel window scored 1 tops the ranking either way)
        everywhere = ensemble_scores(fusion, held_out, {"fallback": fallback})
        novel_alert, with_rule = keeps_novel_alert(held_out.labels, everywhere, held_out.novel)
        rule_decision = {"windows": len(held_out), "pr_auc": average_precision(held_out.labels, everywhere),
                         "with_novel_alert": with_rule, "novel_windows": novel_counts(held_out)}  # fmt: skip
        chosen = scores[fallback or "fusion"]
        ranking["with_novel_alert"] = average_precision(select.labels, with_novel_alert(chosen, select.novel))
    with staged_output(out_dir, "fuse") as staging:  # the finished output stays whole until this one is
        save_weights(fusion.state_dict(), staging / FUSION_FILE)
        # each member's weights hashed once: members.json (evaluate and detect check it) and the manifest's inputs
        weights = {role: file_entry(folder / MODEL_FILE) for role, folder in (("vgae", vgae_dir), ("gat", gat_dir))}
        members = {
            "method": method,
            "vgae": str(vgae_dir.resolve()),
            "gat": str(gat_dir.resolve()),
            # the weights fitted against: evaluate and detect refuse a member trained again since
            "vgae_sha256": weights["vgae"]["sha256"],
            "gat_sha256": weights["gat"]["sha256"],
            "vgae_scale": ensemble.vgae_scale,
            "scale": ensemble.gat_cfg.scale,
            "kd": ensemble.gat_cfg.has_kd,
            "fallback": fallback,
            "novel_alert": novel_alert,
        }
        atomic_write_text(staging / MEMBERS_FILE, json.dumps(members, indent=2) + "\n")
        atomic_write_text(staging / CONFIG_FILE, config_to_json(cfg))
        policy = fusion.policy_summary(held_out) if hasattr(fusion, "policy_summary") else None
        policy_file = "dqn_policy.json" if method == "dqn" else "policy.json"
        if policy is not None:
            atomic_write_text(staging / policy_file, json.dumps(policy) + "\n")
        parameters = sum(p.numel() for m in (ensemble.vgae, ensemble.gat) for p in m.parameters())
        fusion_parameters = trainable_parameters(fusion)
        metrics = {
            "model": "fusion",
            "method": method,
            "scale": ensemble.gat_cfg.scale,
            "config_hash": config_hash(cfg),
            "fusion_windows": len(held_out),
            "selection": SELECTION,  # the rules its choices were made by (a run of an earlier kdgat has none)
            # fitted on the earlier half of each file's fusion windows, chosen on the later half (selection_windows);
            # False: a half held one class only, and both were done on every window (in-sample)
            "out_of_sample_selection": out_of_sample,
            "fit_windows": len(fit),
            "selection_windows": len(select),
            # later windows sharing a frame with the fit half's last one: in neither half
            "purged_windows": len(held_out) - len(fit) - len(select) if out_of_sample else 0,
            "pr_auc_on_fusion_windows": ranking,  # on the selection windows
            "fallback": fallback,
            "novel_alert": novel_alert,
            "novel_alert_unavailable": cfg.fusion.novel_alert and not available,
            "novel_alert_dropped": available and not novel_alert,
            "novel_windows": novel_counts(select),
            "novel_alert_decided_on": rule_decision,  # every fusion window (both halves)
            "collapsed_to": collapsed_to(policy["alpha"]) if policy else None,
            "history": {k: v for k, v in history.items() if not isinstance(v, (list, dict))},
            "ensemble_parameters": parameters + fusion_parameters,
            "fusion_parameters": fusion_parameters,
        }
        metrics["mlflow"] = log_stage(
            stage="fuse",
            out_dir=out_dir,
            config={**json.loads(config_to_json(cfg)), "method": method, "members": members, "selection": SELECTION},
            tags={
                "dataset": dataset,
                "stage": "fuse",
                "model": f"fusion_{method}",
                "scale": members["scale"],
                "kd": members["kd"],
                "seed": cfg.seed,
                "run_id": f"fusion_{method}_{members['scale']}_{config_hash(cfg)}",
            },
            summary={k: v for k, v in metrics["history"].items() if isinstance(v, (int, float))},
            artifacts=[staging / MEMBERS_FILE, staging / CONFIG_FILE],
            tracking_uri=tracking_uri,
        )
        atomic_write_text(staging / METRICS_FILE, json.dumps(metrics, indent=2) + "\n")
        return publish_output(
            staging,
            out_dir,
            stage="fuse",
            inputs=[
                file_entry(graphs_dir.resolve() / "metadata.json", sha256=store.metadata_sha256),
                weights["vgae"],
                weights["gat"],
            ],
            config={**json.loads(config_to_json(cfg)), "method": method},
            outputs=[
                {"path": p}
                for p in (FUSION_FILE, MEMBERS_FILE, CONFIG_FILE, METRICS_FILE, *([policy_file] if policy else []))
            ],
            wall_time_s=time.perf_counter() - started,
            dataset=dataset,
            summary=metrics,
        )
