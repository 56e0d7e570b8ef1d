"""`kdgat export` + `kdgat detect`: the bundle round trip, unlabelled and foreign captures, bad input,
the live path over python-can's virtual bus and the replay of a real capture.

One small detector is trained once on the ROAD captures (real traffic, real injections): a small
GAT and a small VGAE (2 epochs) and their MLP fusion, evaluated and exported.
"""

from __future__ import annotations

import hashlib
import json
import logging
import lzma
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import can
import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from support.processes import as_from_a_terminal, only_error_line, run_kdgat_patched, signalled_at
from typer.testing import CliRunner

from kdgat.cli import app
from kdgat.core.config import resolve_config
from kdgat.core.errors import KdgatError
from kdgat.data.catalog import dataset_sources, load_catalog
from kdgat.data.windows import window_starts
from kdgat.detection.bundle import load_spec
from kdgat.detection.outputs import RowSink
from kdgat.detection.sources import read_frames
from kdgat.stages import detect as detect_stage
from kdgat.stages.evaluate import run as run_evaluate
from kdgat.stages.fuse import run as run_fuse
from kdgat.stages.graphs import run as run_graphs
from kdgat.stages.ingest import run as run_ingest
from kdgat.stages.train import run as run_train

FAST = ["training.max_epochs=2", "training.batch_size=64"]
DETECTORS = ("fusion_mlp_small", "gat_small", "vgae_small")


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_line_error(result, *fragments, code=1):
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture(scope="module")
def trained(data_root, tmp_path_factory):
    root = tmp_path_factory.mktemp("detect")
    uri = f"sqlite:///{root}/mlruns.db"
    run_ingest(dataset_sources("road", load_catalog()["road"], data_root), root / "frames", dataset="road")
    run_graphs(root / "frames", root / "graphs", resolve_config("gat", "small").preprocessing)
    for kind in ("gat", "vgae"):
        cfg = resolve_config(kind, "small", overrides=FAST)
        run_train(cfg, root / "graphs", root / "runs" / kind, progress_bar=False, tracking_uri=uri)
    cfg = resolve_config("dqn", "small", overrides=["fusion.epochs=5"])
    runs = root / "runs"
    run_fuse(cfg, "mlp", runs / "vgae", runs / "gat", root / "graphs", runs / "fusion", tracking_uri=uri)
    run_evaluate([runs / "fusion", runs / "gat", runs / "vgae"], root / "graphs", root / "eval", tracking_uri=uri)
    result = invoke("export", "--run", runs / "fusion", "--run", runs / "gat", "--run", runs / "vgae",
                    "--eval", root / "eval", "--out", root / "detector")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    return root


@pytest.fixture(scope="module")
def road_test(data_root) -> Path:
    """A ROAD capture the detector was not trained on (same vehicle, labelled fuzzing)."""
    return data_root / "road/attacks/fuzzing_attack_2.csv.xz"


@pytest.fixture(scope="module")
def other_vehicle(data_root) -> Path:
    """DAGA's Volvo V40, 2,451 windows: another vehicle, and more windows than one scoring batch."""
    return data_root / "daga-v40/clean/V40_03.can.csv.xz"


def frames_of(path: Path):
    blocks = []
    read_frames(path, blocks.append)
    return {k: np.concatenate([getattr(b, k) for b in blocks]) for k in ("keys", "data", "timestamps")}


def write_can_log(path: Path, frames, limit=None) -> Path:
    """Frames as a python-can log (the suffix picks ASC or BLF), without labels."""
    writer = can.Logger(str(path))
    n = len(frames["keys"]) if limit is None else limit
    for key, data, t in zip(frames["keys"][:n].tolist(), frames["data"][:n], frames["timestamps"][:n], strict=True):
        message = can.Message(timestamp=float(t), arbitration_id=key & 0xFFFFFFFF, is_extended_id=bool(key >> 32),
                              data=bytes(data), channel=0)  # fmt: skip
        writer.on_message_received(message)
    writer.stop()
    return path


def write_candump(path: Path, frames, n: int, between: dict[int, list[str]] | None = None) -> Path:
    """The first ``n`` frames as a candump -L log; ``between[k]``: 'ID#DATA' lines after every frame i with
    i % 500 == k, at its time."""
    lines = []
    for i, (key, payload, t) in enumerate(zip(frames["keys"][:n].tolist(), frames["data"][:n],
                                              frames["timestamps"][:n], strict=True)):  # fmt: skip
        can_id = f"{key & 0xFFFFFFFF:08X}" if key >> 32 else f"{key:03X}"  # candump: 8 digits for 29 bits
        lines.append(f"({t:.6f}) can0 {can_id}#{bytes(payload).hex().upper()}\n")
        lines += [f"({t:.6f}) can0 {extra}\n" for extra in (between or {}).get(i % 500, [])]
    path.write_text("".join(lines))
    return path


# -- the bundle --------------------------------------------------------------------------------


def test_export_writes_a_self_describing_bundle(trained):
    bundle = trained / "detector"
    spec = load_spec(bundle)
    assert [d.label for d in spec.detectors] == list(DETECTORS)
    recorded = json.loads((trained / "eval/metrics.json").read_text())["runs"]
    for det in spec.detectors:
        assert det.threshold.value == recorded[det.label]["threshold"]["threshold"]
        assert det.threshold.policy == recorded[det.label]["threshold"]["policy"] == "margin"
        assert det.validation["f1"] == recorded[det.label]["validation"]["f1"]
    assert spec.feature_set == "e4t@1" and (spec.window, spec.stride) == (100, 100)
    fusion = spec.model("fusion_mlp_small")
    assert fusion.members == {"vgae": "vgae_small", "gat": "gat_small"}
    assert fusion.parameters == spec.model("gat_small").parameters + spec.model("vgae_small").parameters + 3_137
    members = json.loads((bundle / "models/fusion_mlp_small/members.json").read_text())
    assert members["gat"] == "../gat_small"  # relative: the bundle can move
    names = {f.path for f in spec.files}
    assert {"vocab.json", "store.json", "reference.json", "models/gat_small/model.pt"} <= names
    assert "torch" in spec.versions and "kdgat" in spec.versions
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["stage"] == "export" and manifest["summary"]["detectors"] == list(DETECTORS)
    # the OOD reference: per ID, the training nodes' mean payload bytes and their spread, by hand
    from kdgat.data.store import open_store

    reference = json.loads((bundle / "reference.json").read_text())
    x = np.asarray(open_store(trained / "graphs").part("train").x, np.float64)
    for index in np.unique(x[:, 0].astype(int))[:5]:
        rows = x[x[:, 0] == index, 1:9]
        assert reference["payload_mean"][index] == pytest.approx(rows.mean(0), abs=1e-6)
        assert reference["payload_std"][index] == pytest.approx(rows.std(0), abs=1e-6)


def test_the_payload_figure_allows_a_byte_its_training_spread():
    """A byte that follows the driving (a speed: spread 0.3 over the training windows) may sit 0.4 from its training
    mean in a stretch of the same vehicle; a byte that was constant may not. The fixed 64 of 255 alone read both as
    another vehicle's (the first 20,000 frames of ROAD test captures of the training vehicle came near its limit),
    and is what a bundle exported before the spread was recorded still uses."""
    from kdgat.detection import ood

    reference = {"windows": 10, "nodes": [10, 10, 0], "payload_mean": [[0.5] * 8, [0.5] * 8, None],
                 "payload_std": [[0.3] * 8, [0.0] * 8, None]}  # fmt: skip
    x = np.zeros((2 * ood.MIN_PAYLOAD_WINDOWS, 11), np.float32)
    x[ood.MIN_PAYLOAD_WINDOWS :, 0] = 1  # ID 0 in as many windows as ID 1
    x[:, 1:9] = 0.9
    profile = ood.Profile(3, 2, reference, has_periods=False)
    profile.add_nodes(x, ood.MIN_PAYLOAD_WINDOWS)
    assert profile.figures()["payload_mismatch"] == 0.5  # ID 1 only
    older = ood.Profile(3, 2, {k: v for k, v in reference.items() if k != "payload_std"}, has_periods=False)
    older.add_nodes(x, ood.MIN_PAYLOAD_WINDOWS)
    assert older.figures()["payload_mismatch"] == 1.0


def test_bundle_round_trip_gives_evaluate_scores_bit_for_bit(trained, road_test, other_vehicle, tmp_path):
    """export -> detect equals `graphs --like` -> `evaluate --thresholds --scores` on the same windows."""
    moved = tmp_path / "bundle"
    shutil.copytree(trained / "detector", moved)
    store = trained / "graphs"
    store.rename(trained / "graphs-away")  # loading a bundle needs no training store
    try:
        result = invoke("detect", road_test, other_vehicle, "--detector", moved, "--out", tmp_path / "v.parquet")
    finally:
        (trained / "graphs-away").rename(store)
    assert result.exit_code == 0, result.stderr
    assert invoke("ingest", road_test, other_vehicle, "--out", tmp_path / "frames").exit_code == 0
    like = invoke("graphs", "--frames", tmp_path / "frames", "--like", store, "--out", tmp_path / "like")
    assert like.exit_code == 0, like.stderr
    # the store checks its captures as detect does, with the same figures: the V40 is another vehicle
    checked = json.loads((tmp_path / "like/metadata.json").read_text())["out_of_distribution"]
    for file in json.loads((tmp_path / "v.summary.json").read_text())["summary"]["files"]:
        name = Path(file["file"]).name  # the store names a capture given by path by its file name
        assert checked[name]["figures"] == pytest.approx(file["ood_figures"], abs=1e-12), name
        assert checked[name]["reasons"] == file["ood_reasons"]
    assert checked[other_vehicle.name]["reasons"] and not checked[road_test.name]["reasons"]
    (warning,) = [line for line in like.stderr.splitlines() if line.startswith("warning:")]
    assert warning.startswith(f"warning: {other_vehicle.name}: does not look like the vehicle of the models of {store}")
    runs = [trained / "runs" / r for r in ("fusion", "gat", "vgae")]
    without = invoke("evaluate", *[a for r in runs for a in ("--runs", r)], "--graphs", tmp_path / "like",
                     "--out", tmp_path / "e0")  # fmt: skip
    one_line_error(without, "no part 'val'", "--thresholds")
    refused = invoke("export", "--run", runs[1], "--eval", trained / "eval", "--graphs", tmp_path / "like",
                     "--out", tmp_path / "from-like")  # fmt: skip
    one_line_error(refused, "not a training store", "--like")  # its reference would be windows detect scores
    assert not (tmp_path / "from-like").exists()
    evaluated = invoke("evaluate", *[a for r in runs for a in ("--runs", r)], "--graphs", tmp_path / "like",
                       "--out", tmp_path / "eval", "--thresholds", trained / "eval", "--scores")  # fmt: skip
    assert evaluated.exit_code == 0, evaluated.stderr
    said = [line for line in evaluated.stderr.splitlines() if "does not look like the vehicle of these runs" in line]
    assert len(said) == 1 and said[0].startswith(f"warning: {other_vehicle.name}: "), evaluated.stderr
    # an evaluation that took its thresholds from another has no validation figures: export says which to use
    refused = invoke("export", "--run", runs[1], "--eval", tmp_path / "eval", "--out", tmp_path / "from-borrowed")
    one_line_error(refused, "no validation figures", f"export with --eval {trained / 'eval'}")
    assert not (tmp_path / "from-borrowed").exists()

    verdicts = pq.read_table(tmp_path / "v.parquet").to_pandas()
    scores = pq.read_table(tmp_path / "eval/scores.parquet").to_pandas()
    metrics = json.loads((tmp_path / "eval/metrics.json").read_text())["runs"]
    summary = json.loads((tmp_path / "v.summary.json").read_text())["summary"]
    for capture in (road_test, other_vehicle):
        mine = verdicts[verdicts.file == str(capture)]
        (part,) = scores[scores.file == capture.name].part.unique()
        assert len(mine) == len(window_starts(summary_frames(summary, capture), 100, 100))
        assert np.array_equal(mine.window.to_numpy(), np.arange(len(mine)))
        for label in DETECTORS:
            theirs = scores[(scores.part == part) & (scores.run == label)]
            column = "score" if label == DETECTORS[0] else f"score_{label}"
            assert np.array_equal(mine[column].to_numpy(), theirs.score.to_numpy()), (capture.name, label)
            assert np.array_equal(mine.first_frame.to_numpy(), theirs.window_start.to_numpy())
            file_summary = next(f for f in summary["files"] if f["file"] == str(capture))
            assert file_summary["metrics"][label] == metrics[label]["test"][part], (capture.name, label)
        assert np.array_equal(mine.alert.to_numpy(), scores[(scores.part == part) & (scores.run == DETECTORS[0])].alert)
        # the summary's first alert: the first alert window's row, its end in seconds after the capture's first frame
        first = mine[mine.alert].iloc[0]
        said = next(f for f in summary["files"] if f["file"] == str(capture))["first_alert"]
        assert (said["window"], said["frame"], said["time"]) == (first.window, first.last_frame, first.last_time)
        assert (
            said["after_s"] == pytest.approx(first.last_time - mine.first_time.iloc[0], abs=1e-6)
            and said["after_s"] > 0
        )
    assert len(verdicts[verdicts.file == str(other_vehicle)]) > 1024  # several scoring batches


def test_a_fusion_member_in_the_bundle_is_scored_once_with_the_same_numbers(trained):
    """The bundle's GAT and VGAE are the fusion's members: one model object each, and scoring every
    detector in one call gives each the numbers it gets scored alone."""
    from kdgat.data.store import open_store
    from kdgat.detection.detector import load_detector

    detector = load_detector(trained / "detector", batch_size=256)
    fusion, gat, vgae = DETECTORS
    ensemble = detector.fusions[fusion][0]
    assert detector.models[gat][0] is ensemble.gat and detector.models[vgae][0] is ensemble.vgae
    assert detector.shared == {(fusion, "gat"): gat, (fusion, "vgae"): vgae}
    from kdgat.data.windows import GraphArrays

    part = GraphArrays.of(open_store(trained / "graphs").part("val"))  # several batches of 256
    together = detector.score(part)
    assert list(together) == detector.labels
    for label in DETECTORS:
        assert np.array_equal(together[label], detector.score(part, [label])[label]), label
    calls = {"gat": [], "vgae": []}
    for kind, label in (("gat", gat), ("vgae", vgae)):  # the ensemble's and the detector's model, were they two
        for net in {id(m): m for m in (getattr(ensemble, kind), detector.models[label][0])}.values():
            net.forward = (lambda seen, f: lambda *a, **k: seen.append(1) or f(*a, **k))(calls[kind], net.forward)
    detector.score(part)
    batches = -(-part.num_graphs // 256)
    assert {kind: len(seen) for kind, seen in calls.items()} == {"gat": batches, "vgae": batches}  # not twice


def test_the_novel_id_rule_scores_alike_in_evaluate_and_detect(trained, road_test, tmp_path):
    """The ROAD fusion here with ``novel_alert`` off and on in its members.json (as fuse writes it where the rule
    is dropped or kept, whichever it chose here): with it, evaluate scores every window holding a novel ID 1 and
    every other as without the rule, its bundle says so (version 2), detect gives evaluate's numbers, and its
    ``novel_ids`` column names the novel IDs of exactly the windows the rule scored 1."""
    from kdgat.data.store import open_store
    from kdgat.data.windows import GraphArrays
    from kdgat.detection.detector import load_detector
    from kdgat.evaluation.scoring import score_vgae
    from kdgat.training.runs import load_run_model

    variants = {"plain": tmp_path / "without" / "fusion", "rule": tmp_path / "fusion"}
    for on, run in zip((False, True), variants.values(), strict=True):
        shutil.copytree(trained / "runs/fusion", run)
        members = json.loads((run / "members.json").read_text())
        (run / "members.json").write_text(json.dumps({**members, "novel_alert": on}))
    rule = variants["rule"]
    for folder, run in variants.items():
        run_evaluate([run], trained / "graphs", tmp_path / folder, scores=True)
    store = open_store(trained / "graphs")
    vgae, _ = load_run_model(trained / "runs/vgae", store)
    label = "fusion_mlp_small"
    tables = {f: pq.read_table(tmp_path / f / "scores.parquet").to_pandas() for f in ("plain", "rule")}
    for name, part in store.test_parts().items():
        plain, ruled = (t[t.part == name] for t in tables.values())
        novel = score_vgae(vgae, part)["novel"][ruled.window.to_numpy()]
        assert (ruled.score.to_numpy()[novel] == 1).all(), name
        assert np.array_equal(ruled.score.to_numpy()[~novel], plain.score.to_numpy()[~novel]), name
        if name == "test__fuzzing":  # fuzzing: random IDs
            assert novel.sum() > 2 and (plain.score.to_numpy()[novel] < 1).any()
    result = invoke("export", "--run", rule, "--eval", tmp_path / "rule", "--out", tmp_path / "bundle")
    assert result.exit_code == 0, result.stderr
    assert load_spec(tmp_path / "bundle").version == 2
    bundled = json.loads((tmp_path / f"bundle/models/{label}/members.json").read_text())
    assert bundled["novel_alert"] is True
    detector = load_detector(tmp_path / "bundle")
    part = store.part("test__fuzzing")
    scores = tables["rule"][tables["rule"].part == "test__fuzzing"].score.to_numpy()
    assert np.array_equal(detector.score(GraphArrays.of(part), [label])[label], scores)

    novel = score_vgae(vgae, part)["novel"]
    result = invoke("detect", road_test, "--detector", tmp_path / "bundle", "--out", tmp_path / "v.jsonl")
    assert result.exit_code == 0, result.stderr
    rows = [json.loads(line) for line in (tmp_path / "v.jsonl").read_text().splitlines()]
    assert [bool(r["novel_ids"]) for r in rows] == novel.tolist()  # the same windows as the VGAE's flags
    assert all(r["score"] == 1 and r["alert"] for r in rows if r["novel_ids"])
    named = Counter(name for r in rows for name in r["novel_ids"])
    assert all(name.startswith(("0x", "unknown:0x")) or name == "unknown" for name in named)  # unknown IDs named
    (summary,) = json.loads((tmp_path / "v.summary.json").read_text())["summary"]["files"]
    assert summary["novel_alert"] is True and summary["novel_windows"] == int(novel.sum())
    assert [(n["id"], n["windows"]) for n in summary["top_novel_ids"]] == sorted(
        named.items(), key=lambda item: (-item[1], item[0])
    )[:5]


def test_a_detector_without_a_vgae_names_no_novel_ids(trained, road_test):
    result = invoke("detect", road_test, "--detector", trained / "detector", "--use", "gat_small", "--out", "-")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert all(json.loads(line)["novel_ids"] is None for line in lines[:-1])
    (summary,) = json.loads(lines[-1])["summary"]["files"]
    assert summary["novel_windows"] is None and summary["novel_alert"] is False and summary["top_novel_ids"] == []


def test_a_bundle_of_version_1_is_read_and_another_refused(trained, tmp_path):
    """Version 1 (before novel_alert: its fusions score as they did) loads; a version this kdgat does not know is
    refused in one line."""
    from kdgat.detection.bundle import SPEC_FILE

    for version in (1, 3):
        bundle = tmp_path / f"v{version}"
        shutil.copytree(trained / "detector", bundle)
        spec = json.loads((bundle / SPEC_FILE).read_text())
        (bundle / SPEC_FILE).write_text(json.dumps({**spec, "version": version}))
    assert load_spec(tmp_path / "v1").version == 1
    with pytest.raises(KdgatError, match="bundle version 3, this kdgat reads versions 1 and 2"):
        load_spec(tmp_path / "v3")


def test_export_refuses_a_file_and_a_folder_of_other_files_as_its_bundle(trained, tmp_path):
    """A file where the bundle's folder goes is an output-path problem (exit 1, as for every stage); a folder of
    other files is one that holds something else (exit 2, as for graphs, synth and lake). Neither is touched."""
    a_file = tmp_path / "afile"
    a_file.write_text("mine")
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "mine.txt").write_text("mine")
    args = ["export", "--run", trained / "runs" / "gat", "--eval", trained / "eval", "--out"]
    one_line_error(invoke(*args, a_file), str(a_file), "not a folder", code=1)
    one_line_error(invoke(*args, folder), str(folder), "not a detector bundle", code=2)
    assert a_file.read_text() == "mine" and [p.name for p in folder.iterdir()] == ["mine.txt"]


def test_export_packs_the_store_the_runs_trained_on_only(trained, tmp_path, monkeypatch):
    """The store is found from any folder (its manifests record it absolute), and another store, even one of
    the same vocabulary, is refused: its window, periods or vocabulary would score every capture wrongly."""
    runs = trained / "runs"
    monkeypatch.chdir(tmp_path)
    found = invoke("export", "--run", runs / "gat", "--eval", trained / "eval", "--out", tmp_path / "b1")
    assert found.exit_code == 0, found.stderr
    assert load_spec(tmp_path / "b1").window == 100
    other = tmp_path / "other-store"
    shutil.copytree(trained / "graphs", other)
    meta = json.loads((other / "metadata.json").read_text())
    meta["window"] = meta["stride"] = 50  # a store built with another window, same vocabulary
    (other / "metadata.json").write_text(json.dumps(meta))
    refused = invoke("export", "--run", runs / "gat", "--eval", trained / "eval", "--graphs", other,
                     "--out", tmp_path / "b2")  # fmt: skip
    one_line_error(refused, f"{runs / 'gat'}: trained on another graph store than {other}", "--graphs")
    assert not (tmp_path / "b2").exists()


def test_graphs_like_says_when_every_id_is_unknown(trained, data_root, tmp_path):
    """A J1939 truck against the ROAD car's vocabulary: every frame on an unknown ID, said out loud."""
    truck = data_root / "j1939/normal.log.xz"
    assert invoke("ingest", truck, "--out", tmp_path / "frames").exit_code == 0
    like = invoke("graphs", "--frames", tmp_path / "frames", "--like", trained / "graphs", "--out", tmp_path / "g")
    assert like.exit_code == 0, like.stderr
    (warning,) = [line for line in like.stderr.splitlines() if line.startswith("warning:")]
    assert warning.startswith(f"warning: {truck.name}: does not look like the vehicle of the models of")
    assert "100.0% of frames have CAN IDs the detector never saw" in warning


def summary_frames(summary, capture) -> int:
    return next(f["frames"] for f in summary["files"] if f["file"] == str(capture))


def test_a_changed_bundle_is_refused(trained, road_test, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(trained / "detector", bundle)
    weights = bundle / "models/gat_small/model.pt"
    raw = bytearray(weights.read_bytes())
    raw[-20] ^= 0xFF
    weights.write_bytes(bytes(raw))
    one_line_error(invoke("detect", road_test, "--detector", bundle), "model.pt", "sha256")
    one_line_error(invoke("detect", road_test, "--detector", tmp_path), "not a detector bundle")


def test_a_bundle_from_someone_else_runs_none_of_their_code_when_loaded(trained, road_test, tmp_path):
    """README: a bundle holds no pickle. Weights whose pickle would run code (recorded with a matching sha256, as
    its author would) are refused in one line by torch's weights_only loader, and the code never runs."""
    import torch

    bundle = tmp_path / "bundle"
    shutil.copytree(trained / "detector", bundle)
    ran = tmp_path / "their-code-ran"

    class Payload:
        def __reduce__(self):
            return (pathlib_touch, (str(ran),))

    weights = bundle / "models/fusion_mlp_small/fusion.pt"
    torch.save({"weight": Payload()}, weights)
    spec = json.loads((bundle / "detector.json").read_text())
    for item in spec["files"]:
        if item["path"] == "models/fusion_mlp_small/fusion.pt":
            item["sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    (bundle / "detector.json").write_text(json.dumps(spec))
    result = invoke("detect", road_test, "--detector", bundle, "--out", tmp_path / "v.csv")
    one_line_error(result, "fusion.pt")
    assert not ran.exists() and not (tmp_path / "v.csv").exists()


def _rehash(bundle: Path) -> None:
    """Record every listed file's sha256 again, as the author of a bundle made to harm would."""
    spec = json.loads((bundle / "detector.json").read_text())
    for item in spec["files"]:
        path = bundle / item["path"]
        if path.is_file():
            item["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (bundle / "detector.json").write_text(json.dumps(spec))


def _edit_json(path: Path, change) -> None:
    value = json.loads(path.read_text())
    path.write_text(json.dumps(change(value)))


def _as_hgb(bundle: Path, ran: Path) -> None:
    import joblib

    class Payload:
        def __reduce__(self):
            return (pathlib_touch, (str(ran),))

    _edit_json(bundle / "models/gat_small/config.json", lambda c: {**c, "model_type": "hgb"})
    joblib.dump(Payload(), bundle / "models/gat_small/model.joblib")
    pickled = {"path": "models/gat_small/model.joblib", "sha256": "", "bytes": 0}
    _edit_json(bundle / "detector.json", lambda s: {**s, "files": [*s["files"], pickled]})


def _spec(change):
    return lambda bundle, _ran: _edit_json(bundle / "detector.json", change)


def _files(change):
    return _spec(lambda s: {**s, "files": change(s["files"])})


def _model_path(bundle: Path, _ran: Path) -> None:
    elsewhere = bundle.parent / "elsewhere"
    shutil.copytree(bundle / "models/gat_small", elsewhere)
    _edit_json(bundle / "detector.json", lambda s: {**s, "models": [
        {**m, "path": str(elsewhere)} if m["label"] == "gat_small" else m for m in s["models"]]})  # fmt: skip


def _members(value):
    return lambda bundle, _ran: _edit_json(bundle / "models/fusion_mlp_small/members.json", lambda m: value(m))


@pytest.mark.parametrize(
    ("harm", "said"),
    [
        (_as_hgb, "models/gat_small/config.json: a hgb run, where detector.json says gat"),
        (_files(lambda files: []), "config.json: not listed with its sha256 in detector.json"),
        (_files(lambda files: [*files, {"path": "../../../../etc/hostname", "sha256": "", "bytes": 0}]),
         "file '../../../../etc/hostname' is not inside the bundle"),
        (_model_path, "is not inside the bundle"),
        (_members(lambda m: {**m, "gat": "/tmp"}), "members.json: its gat is not one of the bundle's gat folders"),
        (_members(lambda m: [m]), "members.json: its vgae is not one of the bundle's vgae folders"),
        (_spec(lambda s: {**s, "window": 2_000_000_000}), "window: Input should be less than or equal to 100000"),
        (_spec(lambda s: {**s, "models": [{**m, "label": "fake", "kind": "gat"} for m in s["models"]
                                          if m["kind"] == "vgae"] + s["models"]}), "and vgae_small are one folder"),
        (_spec(lambda s: {**s, "detectors": []}), "detectors: List should have at least 1 item"),
        (_spec(lambda s: {**s, "detectors": [{**d, "threshold": {**d["threshold"], "value": float("nan")}}
                                             for d in s["detectors"]]}), "threshold.value: Input should be a finite"),
        (lambda bundle, _ran: _edit_json(bundle / "store.json", lambda _: []), "not a readable detector bundle"),
        (lambda bundle, _ran: _edit_json(bundle / "models/gat_small/metrics.json", lambda m: {**m, "vocab_size": 3e9}),
         "metrics.json: trained on other sizes than detector.json gives"),
    ],
    ids=["hgb-pickle", "no-files-listed", "file-outside", "model-outside", "member-outside", "members-not-a-mapping",
         "huge-window", "two-entries-one-folder", "no-detector", "nan-threshold", "store-not-a-mapping",
         "huge-vocabulary"],
)  # fmt: skip
def test_a_bundle_made_to_harm_is_refused_in_one_line_before_its_code_runs(trained, road_test, tmp_path, harm, said):
    """A shared bundle that reads files outside itself, lists none of what it reads, makes kdgat unpickle a
    yardstick's model.joblib (its code ran), or holds malformed or oversized values: one line naming it, nothing run,
    nothing written (its sha256 values recorded again, as its author would)."""
    bundle, ran = tmp_path / "bundle", tmp_path / "their-code-ran"
    shutil.copytree(trained / "detector", bundle)
    harm(bundle, ran)
    _rehash(bundle)
    result = invoke("detect", road_test, "--detector", bundle, "--out", tmp_path / "v.csv")
    one_line_error(result, said)
    assert not ran.exists() and not (tmp_path / "v.csv").exists()


def pathlib_touch(path: str) -> None:
    """What a malicious pickle would call (here: leave a mark)."""
    Path(path).touch()


# -- captures ------------------------------------------------------------------------------------


def test_the_ids_behind_the_unknown_node_are_named(trained, road_test, tmp_path):
    """Every CAN ID the detector never saw shares one node: its suspects and novel IDs said 'unknown', and a user
    could not tell which IDs an injection used. They are named now (unknown:0x7FE), most frames first."""
    injected = {k: ["7FE#0102030405060708", "1ABCDEF0#00"] for k in range(0, 500, 25)}  # 2 unknown IDs, ~8 a window
    capture = write_candump(tmp_path / "injected.log", frames_of(road_test), 3_000, between=injected)
    result = invoke("detect", capture, "--detector", trained / "detector", "--out", tmp_path / "v.parquet")
    assert result.exit_code == 0, result.stderr
    rows = pq.read_table(tmp_path / "v.parquet").to_pylist()
    named = [name for row in rows for column in ("suspects", "novel_ids") for name in row[column] or []]
    assert "unknown" not in named  # every window holds frames of the unknown IDs: each is named
    assert {n for n in named if n.startswith("unknown")} == {"unknown:0x7FE", "unknown:0x1ABCDEF0"}
    novel = [row["novel_ids"] for row in rows]
    assert all("unknown:0x7FE" in ids and "unknown:0x1ABCDEF0" in ids for ids in novel), novel[:3]
    summary = json.loads((tmp_path / "v.summary.json").read_text())["summary"]["files"][0]
    assert {i["id"] for i in summary["top_novel_ids"]} >= {"unknown:0x7FE", "unknown:0x1ABCDEF0"}


def test_a_suspect_list_keeps_one_name_a_node():
    """Suspects are nodes by importance: the unknown node is named by its top ID and keeps the others in the list
    (its 4 IDs pushed the known suspects out); novel IDs name up to 5 of a window's unknown IDs."""
    from kdgat.detection.detector import name_unknown

    keys = np.array([0x7FE, 0x7FD, 0x7FC, 0x7FB, 0x7FA, 0x7F9], np.uint64)
    assert name_unknown(["unknown", "0x1A0", "0x2B0"], keys, most=1) == ["unknown:0x7FE", "0x1A0", "0x2B0"]
    assert name_unknown(["0x1A0", "unknown"], keys) == ["0x1A0", *(f"unknown:0x{k:03X}" for k in keys[:5].tolist())]
    assert name_unknown(["0x1A0", "unknown"], keys[:0]) == ["0x1A0", "unknown"]  # a target only: no frame to name


def test_unlabelled_asc_and_blf_logs_of_the_same_vehicle(trained, road_test, tmp_path):
    """python-can's Vector readers (compressed too); no labels: no metrics, a null label column; not OOD."""
    frames = frames_of(road_test)
    asc = write_can_log(tmp_path / "road.asc", frames)
    blf = write_can_log(tmp_path / "road.blf", frames)
    packed = tmp_path / "road.blf.xz"  # python-can alone cannot read a compressed BLF
    packed.write_bytes(lzma.compress(blf.read_bytes()))
    out = tmp_path / "v.parquet"
    result = invoke("detect", road_test, asc, packed, "--detector", trained / "detector", "--out", out)
    assert result.exit_code == 0, result.stderr
    summary = json.loads((tmp_path / "v.summary.json").read_text())["summary"]
    csv_, asc_, blf_ = summary["files"]
    assert asc_["format"] == "asc (python-can)" and blf_["format"] == "blf (python-can)"
    assert csv_["frames"] == asc_["frames"] == blf_["frames"] == len(frames["keys"])
    assert "metrics" in csv_ and "metrics" not in asc_ and "metrics" not in blf_
    assert not any(f["out_of_distribution"] for f in summary["files"])
    table = pq.read_table(out).to_pandas()
    by_file = {name: group for name, group in table.groupby("file")}
    reference = by_file[str(road_test)]
    for path in (asc, packed):
        mine = by_file[str(path)]
        assert mine.label.isna().all()
        # the logs keep microseconds relative to the first frame: timing features agree up to that rounding
        # (which can flip a frame's "early" flag, hence a few windows further apart)
        difference = np.abs(mine.score.to_numpy() - reference.score.to_numpy())
        assert np.median(difference) < 1e-5 and (difference < 1e-4).mean() > 0.95, path.name
        assert (mine.alert.to_numpy() == reference.alert.to_numpy()).mean() > 0.99
        assert np.array_equal(mine.first_frame.to_numpy(), reference.first_frame.to_numpy())


def test_detect_says_when_its_verdicts_are_less_trustworthy(trained, road_test, tmp_path):
    """A capture shorter than a window gives one short window, like none the models trained on (benign traffic
    was flagged so, silently); frames without timestamps get neutral timing features. Both are said, in the
    summary and on stderr, as `kdgat graphs` says the second."""
    lines = lzma.open(road_test, "rt").read().splitlines(keepends=True)
    short = tmp_path / "short.csv"
    short.write_text("".join(lines[:31]))  # the header and 30 frames
    untimed = tmp_path / "untimed.log"  # candump's default output, without timestamps: `can0  123   [8]  11 22 ...`
    rows = [r for r in (line.split(",") for line in lines[1:]) if int(r[1], 16) <= 0x7FF][:2_000]  # Time,Id,Byte1..
    untimed.write_text("".join(f"  can0  {r[1]}   [8]  {' '.join(r[2:10])}\n" for r in rows))
    result = invoke(
        "detect", short, untimed, road_test, "--detector", trained / "detector", "--out", tmp_path / "v.csv"
    )
    assert result.exit_code == 0, result.stderr
    warned = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    files = json.loads((tmp_path / "v.summary.json").read_text())["summary"]["files"]
    assert files[0]["frames"] == 30 and "fewer than a window (100)" in files[0]["warnings"][0]
    assert any(str(short) in w and "fewer than a window" in w for w in warned)
    assert files[1]["warnings"] == ["2,000 frames have no timestamp: their timing features are neutral (ratio 1, "
                                    "not early; has_timestamps 0 where the capture has none at all), so attacks "
                                    "seen only in timing go unseen"]  # fmt: skip
    assert any(str(untimed) in w and "no timestamp" in w for w in warned)
    assert files[2]["warnings"] == [] and not any(str(road_test) + ": " in w and "timestamp" in w for w in warned)
    # a detector trained on timed traffic reads neutral timing as nothing it trained on (an audit saw a benign
    # capture without timestamps alert on every window while the check said it looked like the training vehicle)
    assert [f["ood_figures"]["untimed_share"] for f in files] == [0.0, 1.0, 0.0]
    assert [f["out_of_distribution"] for f in files][1:] == [True, False]
    assert [r for r in files[1]["ood_reasons"] if r.startswith("100.0% of frames have no timestamp")]


def test_an_unwritable_out_is_refused_before_scoring_and_keeps_the_earlier_output(trained, road_test, tmp_path):
    """`--out` naming a folder failed after all the scoring, naming a temporary file; a summary path that is a folder
    replaced the earlier rows, then failed. Both are refused first; a killed run's temporary file goes at the next run;
    an unknown --format lists the python-can logs too."""
    from kdgat.core.atomic import _HOST

    (tmp_path / "dir.csv").mkdir()
    one_line_error(invoke("detect", road_test, "--detector", trained / "detector", "--out", tmp_path / "dir.csv"),
                   "dir.csv is a folder; name a file", code=1)  # fmt: skip
    earlier = tmp_path / "v.csv"
    earlier.write_text("earlier rows\n")
    (tmp_path / "v.summary.json").mkdir()
    one_line_error(invoke("detect", road_test, "--detector", trained / "detector", "--out", earlier),
                   "v.summary.json is a folder", code=1)  # fmt: skip
    assert earlier.read_text() == "earlier rows\n"
    (tmp_path / "v.summary.json").rmdir()
    killed = tmp_path / f".tmp-{_HOST}-999999999-0123abcd.v.csv"  # a run killed while writing (no such process)
    killed.write_text("half")
    one_line_error(invoke("detect", road_test, "--detector", trained / "detector", "--format", "nosuch"),
                   "unknown format 'nosuch'", "asc, blf, trc", code=2)  # fmt: skip
    result = invoke("detect", road_test, "--detector", trained / "detector", "--out", earlier)
    assert result.exit_code == 0, result.stderr
    assert not killed.exists() and earlier.read_text().startswith('"file","window"')


def test_a_sigterm_while_scoring_a_file_keeps_the_earlier_output_and_says_so(trained, road_test, tmp_path):
    """A file `kdgat detect` stopped by SIGTERM (a scheduler's kill) half way through its rows: one line, exit 143,
    the earlier rows and summary as they were and no temporary file (by default SIGTERM ended it at once: exit -15
    with no word, the half-written rows left for the next run to clean)."""
    out = tmp_path / "v.csv"
    assert invoke("detect", road_test, "--detector", trained / "detector", "--out", out).exit_code == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    # after the first rows are written: the temporary file holds them when the signal lands
    patch = signalled_at("kdgat.detection.outputs:CsvSink.write", after=True)
    proc = run_kdgat_patched(patch, "detect", road_test, "--detector", trained / "detector", "--out", out,
                             "--stride", 50)  # fmt: skip
    assert proc.returncode == 143 and only_error_line(proc).startswith("error: stopped by SIGTERM"), proc.stderr
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_a_sigterm_between_the_rows_and_the_summary_waits_for_both(trained, road_test, tmp_path):
    """The rows move into place, then their summary: a SIGTERM between the two renames is held until both are there
    (delivered then: exit 143), so the summary beside the rows is theirs, never the earlier run's."""
    out = tmp_path / "v.csv"
    assert invoke("detect", road_test, "--detector", trained / "detector", "--out", out).exit_code == 0
    patch = """
real = os.replace
def replace(source, target):
    real(source, target)
    if str(target).endswith("v.csv"):
        os.kill(os.getpid(), signal.SIGTERM)  # the rows are in place, their summary not yet
os.replace = replace
"""
    proc = run_kdgat_patched(patch, "detect", road_test, "--detector", trained / "detector", "--out", out,
                             "--stride", 50)  # fmt: skip
    assert proc.returncode == 143, proc.stderr
    summary = json.loads((tmp_path / "v.summary.json").read_text())
    assert summary["config"]["stride"] == 50 and summary["summary"]["windows"] == len(pa_csv.read_csv(out))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_an_asc_log_cut_short(trained, road_test, tmp_path):
    """A log still being written or copied in part: a line cut inside its data bytes is refused (python-can
    reads it as a frame with fewer bytes than its DLC); one cut at a line end is scored, with a warning."""
    asc = write_can_log(tmp_path / "road.asc", frames_of(road_test), limit=3_000)
    lines = asc.read_text().splitlines(keepends=True)
    last = max(i for i, line in enumerate(lines) if " Rx " in line)
    frame_line = lines[last]
    mid = tmp_path / "mid.asc"
    mid.write_text("".join(lines[:last]) + frame_line[: frame_line.rindex(" ", 0, len(frame_line) - 9)])
    one_line_error(invoke("detect", mid, "--detector", trained / "detector"), "mid.asc", "frame 3000 (0x",
                   "data bytes; the line is cut short")  # fmt: skip
    whole = tmp_path / "whole.asc"
    whole.write_text("".join(lines[: last + 1]))  # no "End TriggerBlock"
    result = invoke("detect", whole, asc, "--detector", trained / "detector", "--out", tmp_path / "v.jsonl")
    assert result.exit_code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and str(whole) in warnings[0] and "End TriggerBlock" in warnings[0], warnings
    cut, full = json.loads((tmp_path / "v.summary.json").read_text())["summary"]["files"]
    assert cut["frames"] == full["frames"] == 3_000 and full["warnings"] == []
    # a PEAK TRC log cut inside its last line: python-can logged it and went on without it
    trc = write_can_log(tmp_path / "road.trc", frames_of(road_test), limit=3_000)
    text = trc.read_text()
    cut_trc = tmp_path / "cut.trc"
    cut_trc.write_text(text[: text.rstrip().rindex("\n") + 30])
    result = invoke("detect", cut_trc, "--detector", trained / "detector")
    one_line_error(result, "cut.trc", "unreadable TRC line after", "Failed to parse message")
    # whatever the caller's logging set-up: python-can's warning is still heard, and the set-up given back
    can_logger = logging.getLogger("can")
    can_logger.setLevel(logging.ERROR)
    logging.disable(logging.WARNING)
    try:
        with pytest.raises(KdgatError, match="unreadable TRC line after"):
            read_frames(cut_trc, lambda block: None)
        with pytest.raises(KdgatError, match="data bytes; the line is cut short"):
            read_frames(mid, lambda block: None)
        assert logging.getLogger("can.io.trc").level == logging.NOTSET and can_logger.level == logging.ERROR
        assert logging.root.manager.disable == logging.WARNING
    finally:
        logging.disable(logging.NOTSET)
        can_logger.setLevel(logging.NOTSET)


def test_error_frames_and_long_can_fd_frames_are_left_out_and_said(trained, road_test, tmp_path):
    """A capture of a real bus holds error frames and, on a mixed bus, CAN FD frames: every reader leaves them
    out (the classic frames score exactly as without them) and says how many, in the summary and on stderr."""
    frames = frames_of(road_test)
    n = 3_000
    keys, data, times = frames["keys"][:n].tolist(), frames["data"][:n], frames["timestamps"][:n]

    def candump(path: Path, extra: bool) -> Path:
        between = {7: ["20000004#0000080000000000", f"5A0##1{'AB' * 12}"]} if extra else {}  # error, 12-byte FD
        return write_candump(path, frames, n, between)

    def blf(path: Path, extra: bool) -> Path:
        writer = can.Logger(str(path))
        for i, (key, payload, t) in enumerate(zip(keys, data, times, strict=True)):
            writer.on_message_received(can.Message(timestamp=float(t), arbitration_id=key & 0xFFFFFFFF,
                                                   is_extended_id=bool(key >> 32), data=bytes(payload),
                                                   channel=0))  # fmt: skip
            if extra and i % 500 == 7:
                writer.on_message_received(can.Message(timestamp=float(t), is_error_frame=True, channel=0))
                writer.on_message_received(can.Message(timestamp=float(t), arbitration_id=0x5A0, is_fd=True,
                                                       data=bytes(range(12)), channel=0))  # fmt: skip
        writer.stop()
        return path

    captures = [candump(tmp_path / "clean.log", False), candump(tmp_path / "bus.log", True),
                blf(tmp_path / "clean.blf", False), blf(tmp_path / "bus.blf", True)]  # fmt: skip
    result = invoke("detect", *captures, "--detector", trained / "detector", "--out", tmp_path / "v.parquet")
    assert result.exit_code == 0, result.stderr
    said = "6 error frames and 6 CAN FD frames over 8 bytes left out"
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert [w for w in warnings if said in w] == [w for w in warnings if "bus." in w] and len(warnings) == 2, warnings
    files = json.loads((tmp_path / "v.summary.json").read_text())["summary"]["files"]
    assert [f["frames"] for f in files] == [n] * 4
    left_out = {"error frames": 6, "CAN FD frames over 8 bytes": 6}
    assert [f.get("frames_left_out") for f in files] == [None, left_out, None, left_out]
    verdicts = pq.read_table(tmp_path / "v.parquet").to_pandas()
    score = {Path(name).name: group.score.to_numpy() for name, group in verdicts.groupby("file")}
    assert np.array_equal(score["clean.log"], score["bus.log"]) and np.array_equal(score["clean.blf"], score["bus.blf"])
    # ingest reads the candump log the same way, and records what it left out
    out = tmp_path / "frames"
    result = invoke("ingest", captures[1], "--out", out)
    assert result.exit_code == 0, result.stderr
    assert said in result.stderr
    (item,) = json.loads((out / "manifest.json").read_text())["outputs"]
    assert item["rows"] == n and item["left_out_frames"] == left_out and item["skipped_rows"] == 0


def test_trc_error_frames_are_left_out_and_counted_and_a_record_cut_short_is_refused(trained, road_test, tmp_path):
    """PEAK TRC: python-can's reader notes a record of a type it does not read (an error frame ``ER``, a status
    ``ST``, an event ``EV``, a ``DT`` cut to ``D``) at INFO level and goes on, so kdgat dropped error frames without
    counting them and lost a frame cut short without a word. Error frames are now left out and counted as in every
    other format, status and event records are no traffic, and an unknown type is an unreadable line."""
    frames = frames_of(road_test)
    n = 1_500
    lines = write_can_log(tmp_path / "clean.trc", frames, limit=n).read_text().splitlines()
    records = [i for i, line in enumerate(lines) if not line.startswith(";")]
    bus = list(lines)
    for k, i in enumerate(reversed(records[100::400])):  # after every 400th frame, from the 100th
        bus[i + 1 : i + 1] = [f"{90_000 + k:7d}        30.000 ER  1     -    Rx -  5    04 00 00 08 00",
                              f"{90_100 + k:7d}        30.000 ST  1     -    Rx -  4    00 00 00 01"]  # fmt: skip
    (tmp_path / "bus.trc").write_text("\n".join(bus) + "\n")
    out = tmp_path / "v.parquet"
    result = invoke("detect", tmp_path / "clean.trc", tmp_path / "bus.trc", "--detector", trained / "detector",
                    "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    files = json.loads((tmp_path / "v.summary.json").read_text())["summary"]["files"]
    assert [f["frames"] for f in files] == [n, n]
    assert [f.get("frames_left_out") for f in files] == [None, {"error frames": 4}]
    assert "4 error frames" in next(line for line in result.stderr.splitlines() if "bus.trc" in line)
    verdicts = pq.read_table(out).to_pandas()
    score = {Path(name).name: group.score.to_numpy() for name, group in verdicts.groupby("file")}
    assert np.array_equal(score["clean.trc"], score["bus.trc"])
    # the last record cut inside its type column (a log still being written): refused, or dropped when asked
    cut = tmp_path / "cut.trc"
    cut.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: lines[-1].index(" DT ") + 2])
    one_line_error(invoke("detect", cut, "--detector", trained / "detector"),
                   "cut.trc: unreadable TRC line after", "unknown type 'D'")  # fmt: skip
    skipped = invoke("detect", cut, "--detector", trained / "detector", "--on-bad-rows", "skip",
                     "--out", tmp_path / "cut.csv")  # fmt: skip
    assert skipped.exit_code == 0, skipped.stderr
    (summary,) = json.loads((tmp_path / "cut.summary.json").read_text())["summary"]["files"]
    assert summary["frames"] == n - 1 and summary["rows_skipped"]["rows"] == 1, summary


def test_frames_out_of_time_order_are_said(trained, road_test, tmp_path):
    """A clock step (or logs merged out of order) makes per-ID gaps negative, which reads as early arrivals:
    scored as recorded, and said with the first such frame, by detect and by ingest."""
    frames = frames_of(road_test)
    frames["timestamps"] = frames["timestamps"].copy()
    frames["timestamps"][1_500:] -= 5.0  # the clock steps back 5 s at frame 1500 (0-based)
    capture = write_candump(tmp_path / "stepped.log", frames, 3_000)
    result = invoke("detect", capture, "--detector", trained / "detector", "--out", tmp_path / "v.csv")
    assert result.exit_code == 0, result.stderr
    said = "1 frames are timestamped earlier than the frame before them (the first at frame 1500;"
    assert any(said in line for line in result.stderr.splitlines() if line.startswith("warning:")), result.stderr
    (summary,) = json.loads((tmp_path / "v.summary.json").read_text())["summary"]["files"]
    assert any(said in warning for warning in summary["warnings"])
    result = invoke("ingest", capture, "--out", tmp_path / "frames")
    assert result.exit_code == 0 and "(the first at line 1501;" in result.stderr, result.stderr
    (item,) = json.loads((tmp_path / "frames/manifest.json").read_text())["outputs"]
    assert (item["backwards_timestamps"], item["first_backwards_line"]) == (1, 1501)


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_a_stream_without_a_window_still_gets_the_columns(trained, road_test, tmp_path, suffix):
    """A bus that stayed silent gives no window, no row: the file still has the verdict columns (a CSV
    header, a typed empty Parquet) for whatever reads it next."""
    full = tmp_path / f"full{suffix}"
    out = tmp_path / f"v{suffix}"
    silent = ["--bus", f"virtual:silent-{uuid.uuid4().hex}", "--duration", "0.3"]
    for source, target in ((silent, out), ([road_test], full)):
        result = invoke("detect", *source, "--detector", trained / "detector", "--out", target)
        assert result.exit_code == 0, result.stderr
    summary = json.loads((tmp_path / "v.summary.json").read_text())["summary"]
    assert summary["windows"] == 0 and summary["files"][0]["frames"] == 0
    if suffix == ".jsonl":
        assert out.read_text() == ""
    elif suffix == ".csv":
        header = out.read_text().splitlines()
        assert len(header) == 1 and header[0] == full.read_text().splitlines()[0]
    else:
        empty, rows = pq.read_table(out), pq.read_table(full)
        assert empty.num_rows == 0 and rows.num_rows > 300 and empty.schema.equals(rows.schema)


def test_a_capture_from_another_vehicle_gets_the_ood_warning(trained, road_test, other_vehicle, tmp_path):
    out = tmp_path / "v.jsonl"
    result = invoke("detect", other_vehicle, road_test, "--detector", trained / "detector", "--out", out)
    assert result.exit_code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and str(other_vehicle) in warnings[0] and "never saw in training" in warnings[0]
    lines = out.read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    daga = [r for r in rows if r["file"] == str(other_vehicle)]
    assert np.mean([r["unknown_ids"] for r in daga]) > 0.5  # the figure, per window, in the output
    summary = json.loads((tmp_path / "v.summary.json").read_text())["summary"]
    foreign, own = summary["files"]
    assert foreign["out_of_distribution"] and foreign["ood_figures"]["unknown_id_share"] > 0.5
    assert foreign["ood_figures"]["training_id_coverage"] < 0.5
    assert not own["out_of_distribution"] and own["ood_figures"]["unknown_id_share"] < 0.05
    assert own["ood_figures"]["timing_mismatch"] < 0.3 and own["ood_figures"]["payload_mismatch"] < 0.5


def test_the_ood_figures_do_not_depend_on_the_stride_nor_judge_payloads_on_a_few_seconds(trained, road_test, tmp_path):
    """The same 2,000 and 22,000 frames of the training vehicle at strides 100, 50 and 10 give the same figures (the
    windows tiling the capture are counted, not overlapping ones, which counted a frame up to ten times and switched
    the payload figure on at a small stride only); over 2,000 frames (20 windows) a payload mean follows the moment's
    driving and is not judged (an audit's first 2,000 frames of a training capture read as another vehicle; the
    first 6,000 of this one did too), over 22,000 it is, and the vehicle is its own."""
    frames = frames_of(road_test)
    figures = {}
    for n in (2_000, 22_000):
        capture = write_candump(tmp_path / f"head{n}.log", frames, n)
        for stride in (100, 50, 10):
            out = tmp_path / f"v{n}_{stride}.csv"
            result = invoke("detect", capture, "--detector", trained / "detector", "--stride", stride, "--out", out,
                            "--fail-on", "ood")  # fmt: skip
            assert result.exit_code == 0, result.stderr
            (summary,) = json.loads(out.with_name(f"v{n}_{stride}.summary.json").read_text())["summary"]["files"]
            figures[n, stride] = summary["ood_figures"]
        assert figures[n, 100] == figures[n, 50] == figures[n, 10], figures
    assert figures[2_000, 100]["payload_mismatch"] is None and figures[2_000, 100]["training_id_coverage"] == 1.0
    assert figures[22_000, 100]["payload_mismatch"] is not None


def test_fail_on_exits_3_after_writing_everything(trained, road_test, other_vehicle, tmp_path):
    """`--fail-on alert|ood`: a script or CI job learns from the exit code what the run saw; the verdicts and the
    summary are written all the same, and what was not asked for does not fail the run."""
    out = tmp_path / "v.csv"
    result = invoke("detect", other_vehicle, road_test, "--detector", trained / "detector", "--out", out,
                    "--fail-on", "ood", "--fail-on", "alert")  # fmt: skip
    summary = json.loads((tmp_path / "v.summary.json").read_text())["summary"]
    assert summary["alerts"] > 0 and summary["out_of_distribution"], summary
    assert result.exit_code == 3, (result.exit_code, result.stderr)
    (said,) = [line for line in result.stderr.splitlines() if line.startswith("detect: exit 3")]
    assert f"{summary['alerts']:,} alert window(s)" in said and f"out of distribution: {other_vehicle}" in said
    assert str(road_test) not in said.split("out of distribution:")[1]
    assert len(pa_csv.read_csv(out)) == summary["windows"]  # every verdict written before the exit
    # the summary names its rows by absolute path and sha256 (it once said the path as given, and no hash), and
    # hashes what decides the verdicts (it recorded ""): the same for another --out, another for another stride
    document = json.loads((tmp_path / "v.summary.json").read_text())
    described = document["outputs"]
    assert described == [{"path": str(out.resolve()), "sha256": hashlib.sha256(out.read_bytes()).hexdigest()}]
    hashes = []
    for name, stride in (("a.csv", 100), ("b.csv", 100), ("c.csv", 50)):
        assert invoke("detect", road_test, "--detector", trained / "detector", "--out", tmp_path / name,
                      "--stride", stride).exit_code == 0  # fmt: skip
        hashes.append(json.loads((tmp_path / name.replace(".csv", ".summary.json")).read_text())["config_hash"])
    assert len(hashes[0]) == 16 and hashes[0] == hashes[1] != hashes[2]
    own = invoke("detect", road_test, "--detector", trained / "detector", "--fail-on", "ood")
    assert own.exit_code == 0 and "detect: exit" not in own.stderr, own.stderr  # the same vehicle: ood not met
    assert invoke("detect", road_test, "--detector", trained / "detector").exit_code == 0
    wrong = invoke("detect", road_test, "--detector", trained / "detector", "--fail-on", "warning")
    assert wrong.exit_code == 2 and "warning" in wrong.stderr


def test_unknown_ids_injected_into_the_training_vehicles_traffic_are_no_other_vehicle(trained, road_test, tmp_path):
    """An ID-fuzzing attack on the training vehicle's bus: a quarter of the frames carry IDs the detector never saw,
    while every regular ID of the vehicle is there at its period. That is an attack to flag, not another vehicle:
    no "does not look like the training vehicle" warning (the figures are still in the summary)."""
    fuzzed = {k: [f"{0x7F0 + k % 16:03X}#{k % 256:02X}00"] for k in range(0, 500, 3)}
    capture = write_candump(tmp_path / "fuzzed.log", frames_of(road_test), 6000, between=fuzzed)
    result = invoke("detect", capture, "--detector", trained / "detector", "--out", tmp_path / "v.jsonl")
    assert result.exit_code == 0, result.stderr
    (summary,) = json.loads((tmp_path / "v.summary.json").read_text())["summary"]["files"]
    figures = summary["ood_figures"]
    assert figures["unknown_id_share"] > 0.2 and figures["training_id_coverage"] >= 0.5, figures
    assert not summary["out_of_distribution"], summary
    assert "does not look like the training vehicle" not in result.stderr


def test_a_few_frames_of_regular_ids_in_a_flood_of_unknown_ones_vouch_for_nothing():
    """The unknown-ID share is no reason only where the vehicle's traffic goes on (half its regular IDs there and
    the known IDs at their periods); a frame or two of some regular IDs, timing unmeasured, vouches for nothing."""
    from kdgat.detection.ood import verdict

    fuzzed = {"unknown_id_share": 0.25, "training_id_coverage": 0.9, "timing_mismatch": 0.05, "payload_mismatch": 0.1}
    assert verdict(fuzzed) == []
    flood = {"unknown_id_share": 0.9975, "training_id_coverage": 0.5, "timing_mismatch": None, "payload_mismatch": None}
    assert [r for r in verdict(flood) if "never saw in training" in r]
    off_period = {**fuzzed, "timing_mismatch": 0.4}
    assert [r for r in verdict(off_period) if "never saw in training" in r]


def test_a_capture_off_its_ids_periods_or_payloads_is_said_to_be_unlike_the_training_vehicle(
    trained, road_test, tmp_path
):
    """The timing and payload figures each make a capture of the training vehicle's own IDs out of distribution: the
    same frames at a third of their rate (a clock in other units, another bus load), and with every payload byte
    random (another vehicle's encoding behind the same IDs). Neither rule was ever seen to fire (the other-vehicle
    captures are out through their unknown IDs), so either could be switched off unnoticed."""
    from kdgat.detection.ood import LIMITS, verdict

    lines = lzma.open(road_test, "rt").read().splitlines()[:30_001]  # the header and 30,000 frames, benign start
    header, rows = lines[0], [line.split(",") for line in lines[1:]]
    rng = np.random.default_rng(0)
    variants = {
        "as_is.csv": rows,
        "slow.csv": [[f"{3 * float(r[0]) - 2 * float(rows[0][0]):.6f}", *r[1:]] for r in rows],
        "garbled.csv": [[*r[:2], *(f"{b:02X}" for b in rng.integers(0, 256, 8)), r[10]] for r in rows],
    }
    paths = []
    for name, variant in variants.items():
        paths.append(tmp_path / name)
        paths[-1].write_text("\n".join([header, *(",".join(r) for r in variant)]) + "\n")
    result = invoke("detect", *paths, "--detector", trained / "detector", "--out", tmp_path / "v.csv")
    assert result.exit_code == 0, result.stderr
    as_is, slow, garbled = json.loads((tmp_path / "v.summary.json").read_text())["summary"]["files"]
    assert not as_is["out_of_distribution"] and as_is["ood_figures"]["timing_mismatch"] <= LIMITS["timing_mismatch"]
    assert slow["ood_figures"]["timing_mismatch"] > LIMITS["timing_mismatch"]
    assert [r for r in slow["ood_reasons"] if "training period" in r] == slow["ood_reasons"] != []
    assert garbled["ood_figures"]["payload_mismatch"] > LIMITS["payload_mismatch"]
    assert [r for r in garbled["ood_reasons"] if "payloads unlike training" in r] == garbled["ood_reasons"] != []
    # each rule at its limit says nothing, just past it one sentence
    for figure, words in (("timing_mismatch", "training period"), ("payload_mismatch", "payloads unlike training")):
        assert verdict({figure: LIMITS[figure]}) == []
        (said,) = verdict({figure: LIMITS[figure] + 0.01})
        assert words in said


def test_json_lines_on_stdout_end_with_the_summary(trained, road_test):
    result = invoke("detect", road_test, "--detector", trained / "detector", "--out", "-", "--stride", "50")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    rows, last = [json.loads(line) for line in lines[:-1]], json.loads(lines[-1])
    frames = last["summary"]["files"][0]["frames"]
    starts = window_starts(frames, 100, 50)
    assert len(rows) == len(starts)
    tail = last["summary"]["files"][0]["unscored_tail_frames"]
    assert tail == frames - (starts[-1] + 100) and 0 <= tail < 50  # no window holds them, as in evaluate
    assert {"file", "window", "first_frame", "last_frame", "first_time", "last_time", "score", "alert", "suspects",
            "unknown_ids", "novel_ids", "label", "score_gat_small", "score_vgae_small"} == set(rows[0])  # fmt: skip
    assert all(isinstance(r["novel_ids"], list) for r in rows)  # the fusion's VGAE says which IDs are novel
    alerts = [r for r in rows if r["alert"]]
    assert alerts and all(1 <= len(r["suspects"]) <= 3 for r in alerts)
    assert all(r["suspects"] == [] for r in rows if not r["alert"])
    assert last["summary"]["stride"] == 50 and last["summary"]["alerts"] == len(alerts)
    assert "Detections by fusion_mlp_small" in result.stderr  # the table goes to stderr


def test_bad_captures_get_the_ingest_one_line_errors(trained, road_test, tmp_path):
    out = tmp_path / "v.parquet"
    truncated = tmp_path / "cut.csv.xz"
    truncated.write_bytes(road_test.read_bytes()[:50_000])
    one_line_error(invoke("detect", truncated, "--detector", trained / "detector", "--out", out),
                   "cut.csv.xz", "corrupt or truncated xz data")  # fmt: skip
    wrong = tmp_path / "notes.txt"
    wrong.write_text("hello\nthis is not a capture\n")
    one_line_error(invoke("detect", wrong, "--detector", trained / "detector", "--out", out),
                   "notes.txt:1", "unknown format")  # fmt: skip
    bad_row = tmp_path / "bad.csv"
    bad_row.write_text("timestamp,arbitration_id,data_field,attack\n1.0,1E5,00,0\n1.1,0G9,00,0\n")
    one_line_error(invoke("detect", bad_row, "--detector", trained / "detector", "--out", out),
                   "bad.csv:3", "CAN ID is not hexadecimal")  # fmt: skip
    blf = write_can_log(tmp_path / "road.blf", frames_of(road_test), limit=20_000)
    cut = tmp_path / "cut.blf"
    cut.write_bytes(blf.read_bytes()[: blf.stat().st_size // 2])
    one_line_error(invoke("detect", cut, "--detector", trained / "detector", "--out", out), "cut.blf", "truncated")
    one_line_error(invoke("detect", tmp_path / "none.csv", "--detector", trained / "detector"), "file not found")
    assert not out.exists() and not list(tmp_path.glob(".tmp-*")) and not (tmp_path / "v.summary.json").exists()


def test_malformed_rows_are_dropped_and_said_when_asked(trained, road_test, tmp_path):
    """A real capture with three malformed rows: by default the first stops the run (file and line); with
    --on-bad-rows skip they are dropped, counted in the summary and warned about, and every verdict is that of the
    capture without them. A python-can log's lines it cannot parse and frames cut short are dropped alike."""
    lines = lzma.decompress(road_test.read_bytes()).decode().splitlines(keepends=True)
    bad = {1_000: "1010000001.5,1G3,00,00,00,00,00,00,00,00,Benign\n", 5_000: "1010000002.5,153,00\n",
           20_000: "not,a,frame\n"}  # fmt: skip
    damaged = tmp_path / "damaged.csv"
    damaged.write_text("".join(line + bad.get(i, "") for i, line in enumerate(lines, start=1)))
    bad_lines = [i + n for n, i in enumerate(sorted(bad), start=1)]  # where each landed in the damaged file
    detector = trained / "detector"
    one_line_error(invoke("detect", damaged, "--detector", detector), f"damaged.csv:{bad_lines[0]}")
    result = invoke("detect", damaged, road_test, "--detector", detector, "--on-bad-rows", "skip",
                    "--out", tmp_path / "v.parquet")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "damaged.csv" in warnings[0], warnings
    assert "3 malformed rows dropped (0 of them labelled attack)" in warnings[0]
    assert f"the first are on lines {', '.join(map(str, bad_lines))}" in warnings[0]
    mine, clean = json.loads((tmp_path / "v.summary.json").read_text())["summary"]["files"]
    assert mine["rows_skipped"]["rows"] == 3 and mine["rows_skipped"]["first_lines"] == bad_lines
    assert "rows_skipped" not in clean and mine["frames"] == clean["frames"]
    table = pq.read_table(tmp_path / "v.parquet").to_pandas()
    ours, theirs = (
        table[table.file == str(f)].drop(columns="file").reset_index(drop=True) for f in (damaged, road_test)
    )
    assert len(ours) == len(theirs) > 300
    assert ours.equals(theirs)
    # a python-can log: a frame cut short inside its data bytes, dropped and counted (no line numbers there)
    asc = write_can_log(tmp_path / "road.asc", frames_of(road_test), limit=3_000)
    text = asc.read_text().splitlines(keepends=True)
    middle = [i for i, line in enumerate(text) if " Rx " in line][1_500]
    text[middle] = text[middle][: text[middle].rindex(" ", 0, len(text[middle]) - 9)] + "\n"
    cut = tmp_path / "cut.asc"
    cut.write_text("".join(text))
    one_line_error(invoke("detect", cut, "--detector", detector), "cut.asc", "the line is cut short")
    result = invoke("detect", cut, "--detector", detector, "--on-bad-rows", "skip", "--out", tmp_path / "c.jsonl")
    assert result.exit_code == 0, result.stderr
    summary = json.loads((tmp_path / "c.summary.json").read_text())["summary"]["files"][0]
    assert summary["frames"] == 2_999 and summary["rows_skipped"]["rows"] == 1
    assert summary["rows_skipped"]["by_problem"] == {"frame with fewer data bytes than its DLC": 1}
    assert any("1 malformed rows dropped (the capture has no labels)" in w for w in summary["warnings"])


def test_usage_errors_exit_2(trained, road_test):
    detector = trained / "detector"
    one_line_error(invoke("detect", road_test, "--detector", detector, "--bus", "virtual:x"), "not both", code=2)
    one_line_error(invoke("detect", road_test, "--detector", detector, "--stride", "101"), "--stride", code=2)
    one_line_error(invoke("detect", road_test, "--detector", detector, "--out", "v.txt"), ".parquet", code=2)
    one_line_error(invoke("detect", road_test, "--detector", detector, "--use", "nope"), "no detector 'nope'", code=2)
    for extra, said in (
        (["--speed", "5"], "--replay"),
        (["--bus-option", "bitrate=500000"], "--bus"),
        (["--replay", "--duration", "-5"], "positive"),
        (["--replay", "--speed", "0"], "positive"),
    ):
        one_line_error(invoke("detect", road_test, "--detector", detector, *extra), said, code=2)  # fmt: skip


def test_out_never_overwrites_an_input(trained, road_test, tmp_path):
    capture = tmp_path / "capture.csv.xz"
    shutil.copy(road_test, capture)
    before = capture.read_bytes()
    for out, said in (
        (capture, "a capture this run reads"),
        (trained / "detector" / "detector.csv", "into the detector bundle"),
    ):
        one_line_error(invoke("detect", capture, "--detector", trained / "detector", "--out", out), said, code=2)
    assert capture.read_bytes() == before and not (trained / "detector" / "detector.csv").exists()


def test_two_outputs_never_share_a_summary(trained, road_test, tmp_path):
    """a.csv and a.parquet share a.summary.json: a second run into a.parquet replaced the summary of a.csv, which was
    then described by another run. Refused before scoring; the same --out again replaces both. A .json name (the rows
    are JSON lines, not one JSON document; and o.summary.json is o.jsonl's summary) is refused."""
    detector = trained / "detector"
    first = tmp_path / "a.csv"
    assert invoke("detect", road_test, "--detector", detector, "--out", first).exit_code == 0
    rows, summary = first.read_bytes(), (tmp_path / "a.summary.json").read_bytes()
    one_line_error(invoke("detect", road_test, "--detector", detector, "--out", tmp_path / "a.parquet"),
                   "a.summary.json describes", "a.csv", code=2)  # fmt: skip
    assert first.read_bytes() == rows and (tmp_path / "a.summary.json").read_bytes() == summary
    assert not (tmp_path / "a.parquet").exists()
    again = invoke("detect", road_test, "--detector", detector, "--out", first)
    assert again.exit_code == 0, again.stderr
    first.unlink()  # the file it described is gone: its summary is no one's any more
    assert invoke("detect", road_test, "--detector", detector, "--out", tmp_path / "a.parquet").exit_code == 0
    described = json.loads((tmp_path / "a.summary.json").read_text())["outputs"][0]["path"]
    assert Path(described).name == "a.parquet"
    one_line_error(invoke("detect", road_test, "--detector", detector, "--out", tmp_path / "o.summary.json"),
                   ".jsonl (.ndjson)", code=2)  # fmt: skip


def test_a_clean_capture_shows_no_f1_precision_or_recall():
    """Nothing to find: 0.000 read as 'found none of it'; only its FPR says something."""
    import io

    from rich.console import Console

    from kdgat.cli.tables import detect_metrics_table
    from kdgat.evaluation.metrics import binary_metrics

    clean = binary_metrics(np.zeros(50, np.int64), np.r_[np.full(49, 0.1), 0.9], 0.5)
    attacked = binary_metrics(np.r_[np.zeros(40, np.int64), np.ones(10, np.int64)], np.linspace(0, 1, 50), 0.5)
    files = [
        {"file": "clean.log", "metrics": {"gat_small": clean}},
        {"file": "dos.log", "metrics": {"gat_small": attacked}},
    ]
    console = Console(width=200, file=io.StringIO(), color_system=None)
    console.print(detect_metrics_table({"files": files}))
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in console.file.getvalue().splitlines()]
    rows = {row[0]: row for row in cells if row and row[0].endswith(".log")}
    assert rows["clean.log"][2:6] == ["-", "-", "-", "0.0200"], rows["clean.log"]
    assert "-" not in rows["dos.log"][2:5] and float(rows["dos.log"][2]) > 0, rows["dos.log"]


def test_the_detections_table_keeps_its_last_columns_on_a_narrow_console():
    """Long suspect lists pushed 'unknown IDs %' and 'OOD' past the 160 columns used when stdout is not a terminal:
    the text columns wrap now."""
    import io

    from rich.console import Console

    from kdgat.cli.tables import detect_table

    suspects = [{"id": f"0x{i:03X}-long-name", "alert_windows": 1000 + i} for i in range(3)]
    file = {"file": "a-capture-with-a-rather-long-name.candump.log.xz", "frames": 12345678, "windows": 123456,
            "alerts": 65432, "alert_rate": 0.53, "first_alert": {"window": 12, "after_s": 1.25},
            "top_suspects": suspects, "novel_windows": 4321, "novel_alert": True,
            "top_novel_ids": [{"id": "0x7DF"}, {"id": "0x7E0"}], "ood_figures": {"unknown_id_share": 0.905},
            "out_of_distribution": True}  # fmt: skip
    summary = {"detector": "fusion_dqn_small_kd", "threshold": 0.123456, "threshold_policy": "margin", "window": 100,
               "stride": 100, "files": [file]}  # fmt: skip
    console = Console(width=160, file=io.StringIO(), color_system=None)
    console.print(detect_table(summary))
    text = console.file.getvalue()
    assert "OOD" in text and "90.50" in text and "yes" in text, text


def test_kdgat_frame_parquet_is_a_capture_too(trained, road_test, tmp_path):
    """A capture ingested first (e.g. with --on-bad-rows skip) is scored from its frame Parquet as from the
    capture itself; a Parquet file that is not kdgat frames is one line."""
    assert invoke("ingest", road_test, "--out", tmp_path / "frames").exit_code == 0
    (frames,) = (tmp_path / "frames").rglob("*.parquet")
    for capture, out in ((road_test, "a.parquet"), (frames, "b.parquet")):
        result = invoke("detect", capture, "--detector", trained / "detector", "--out", tmp_path / out)
        assert result.exit_code == 0, result.stderr
    a, b = (pq.read_table(tmp_path / name).to_pandas() for name in ("a.parquet", "b.parquet"))
    assert len(a) > 300 and np.array_equal(a.score.to_numpy(), b.score.to_numpy())
    assert np.array_equal(a.label.to_numpy(), b.label.to_numpy())
    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"x": [1, 2]}), other)
    one_line_error(invoke("detect", other, "--detector", trained / "detector"), "other.parquet", "not kdgat frames")


def test_truncated_weights_are_one_line(trained, tmp_path):
    broken = tmp_path / "gat"
    shutil.copytree(trained / "runs/gat", broken)
    (broken / "model.pt").write_bytes((broken / "model.pt").read_bytes()[:1000])
    result = invoke("evaluate", "--runs", broken, "--graphs", trained / "graphs", "--out", tmp_path / "eval")
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]  # (after a progress line)
    assert result.exit_code == 1 and len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "model.pt: unreadable weights, the file is corrupt or truncated" in errors[0]


def test_export_takes_thresholds_only_from_an_evaluation_of_the_same_weights(trained, tmp_path):
    """A moved run is found in the evaluation by its label when the evaluation scored the same weights; a run of
    the same name with other weights is refused (its thresholds would be another model's)."""
    moved = tmp_path / "gat"
    shutil.copytree(trained / "runs/gat", moved)
    result = invoke("export", "--run", moved, "--eval", trained / "eval", "--out", tmp_path / "ok")
    assert result.exit_code == 0, result.stderr
    run_evaluate([moved], trained / "graphs", tmp_path / "own")  # its own evaluation: matched by folder
    with open(moved / "model.pt", "ab") as handle:
        handle.write(b"\0")  # other weights (a zip with a trailing byte): trained again in place, say
    for evaluation in (trained / "eval", tmp_path / "own"):  # matched by label, then by folder
        one_line_error(invoke("export", "--run", moved, "--eval", evaluation, "--out", tmp_path / "no"),
                       "is another run than", "model.pt differs")  # fmt: skip
    assert not (tmp_path / "no").exists()


def test_evaluate_takes_recorded_thresholds_only_for_the_same_weights(trained, tmp_path):
    """`evaluate --thresholds` (scoring new captures with an earlier evaluation's thresholds) found a run by its name
    alone, so another seed's run of that name took this one's threshold; now as export: by folder, else by name
    when the evaluation scored these very weights."""
    moved = tmp_path / "gat"
    shutil.copytree(trained / "runs/gat", moved)
    args = ("--graphs", trained / "graphs", "--thresholds", trained / "eval")
    assert invoke("evaluate", "--runs", moved, *args, "--out", tmp_path / "ok").exit_code == 0  # moved: same weights
    runs = json.loads((trained / "eval/metrics.json").read_text())["runs"]
    (label,) = [name for name, entry in runs.items() if Path(entry["run_dir"]) == (trained / "runs/gat").resolve()]
    again = json.loads((tmp_path / "ok/metrics.json").read_text())["runs"][label]["threshold"]
    assert again["recorded"] and again["threshold"] == runs[label]["threshold"]["threshold"]
    with open(moved / "model.pt", "ab") as handle:
        handle.write(b"\0")  # other weights of the same name (another seed's run, or one trained again)
    one_line_error(invoke("evaluate", "--runs", moved, *args, "--out", tmp_path / "no"),
                   "is another run than", "model.pt differs")  # fmt: skip
    assert not (tmp_path / "no").exists()  # refused before any scoring: nothing written, no folder made


def test_export_refuses_an_evaluation_that_did_not_finish(trained, tmp_path):
    """An evaluation killed after it had removed its manifest (and written some files, or none yet) holds this
    run's metrics.json or the earlier one's: export packed its thresholds all the same."""
    evaluation = tmp_path / "eval"
    shutil.copytree(trained / "eval", evaluation)
    (evaluation / "manifest.json").unlink()
    runs = [x for r in ("fusion", "gat", "vgae") for x in ("--run", trained / "runs" / r)]
    one_line_error(invoke("export", *runs, "--eval", evaluation, "--out", tmp_path / "bundle"),
                   "no manifest.json, so the evaluation did not finish")  # fmt: skip
    assert not (tmp_path / "bundle").exists()
    other = tmp_path / "thresholds.json"  # a file that is not an evaluation's metrics.json: named, not its folder
    other.write_text("{}")
    one_line_error(invoke("export", *runs, "--eval", other, "--out", tmp_path / "bundle"),
                   f"{other}: not an evaluation")  # fmt: skip
    assert not (tmp_path / "bundle").exists()


# -- live and replayed streams --------------------------------------------------------------------


class Collect(RowSink):
    """Keeps the verdict tables in memory and counts rows as they arrive."""

    def __init__(self):
        self.tables: list[pa.Table] = []
        self.summary = None

    def write(self, table):
        self.tables.append(table)

    def close(self, summary):
        self.summary = summary

    @property
    def rows(self) -> int:
        return sum(t.num_rows for t in self.tables)

    def table(self) -> pa.Table:
        return pa.concat_tables(self.tables)


def file_verdicts(detector: Path, capture: Path, tmp_path: Path, stride: int = 100) -> pa.Table:
    out = tmp_path / f"file-{uuid.uuid4().hex[:6]}.parquet"
    detect_stage.run([capture], detector, out=out, stride=stride)
    return pq.read_table(out)


def test_live_virtual_bus_delivers_every_verdict_in_order_and_stops_on_sigterm(trained, road_test, tmp_path):
    frames = frames_of(road_test)
    n, stride = 6_000, 50
    channel = f"kdgat-test-{uuid.uuid4().hex}"
    sink = Collect()
    closing_while_live = len(window_starts(n - 1, 100, stride))  # windows whose next frame has arrived
    problems = []

    def send():
        try:
            # a virtual bus delivers to the receivers open when a frame is sent: wait until the detector has opened
            # its end (it loads the bundle first; a fixed sleep lost every frame on a loaded machine). python-can
            # (pinned) keeps each channel's receivers in can.interfaces.virtual.channels
            from can.interfaces import virtual

            opened_by = time.monotonic() + 300  # not a timing assertion: a bound on the wait for a detector that died
            while not virtual.channels.get(channel) and time.monotonic() < opened_by:
                time.sleep(0.01)
            bus = can.Bus(interface="virtual", channel=channel, preserve_timestamps=True)  # the capture's times
            for i in range(n):
                key = int(frames["keys"][i])
                bus.send(can.Message(timestamp=float(frames["timestamps"][i]), arbitration_id=key & 0xFFFFFFFF,
                                     is_extended_id=bool(key >> 32), data=bytes(frames["data"][i])))  # fmt: skip
                if i % 500 == 0:
                    time.sleep(0.01)
            bus.shutdown()
            deadline = time.monotonic() + 60
            while sink.rows < closing_while_live and time.monotonic() < deadline:
                time.sleep(0.01)
            problems.append(None if sink.rows == closing_while_live else f"only {sink.rows} verdicts arrived")
        finally:
            os.kill(os.getpid(), signal.SIGTERM)  # what `kill` does to a running detector

    previous = signal.getsignal(signal.SIGTERM)
    threading.Thread(target=send, daemon=True).start()
    manifest = detect_stage.run([], trained / "detector", bus=f"virtual:{channel}", stride=stride, sink=sink)
    assert problems == [None]
    assert signal.getsignal(signal.SIGTERM) is previous  # the handler is given back
    live = sink.table()
    # every window once, in order, the last one closed by the stop
    assert live["window"].to_pylist() == list(range(len(window_starts(n, 100, stride))))
    summary = manifest.summary["files"][0]
    assert summary["frames"] == n and summary["windows"] == live.num_rows and "latency_ms" in summary
    assert sink.summary["summary"]["windows"] == live.num_rows
    # the same verdicts as the file (scored in other batch sizes: equal up to float rounding)
    capture = tmp_path / "first.blf"
    write_can_log(capture, frames, limit=n)
    offline = file_verdicts(trained / "detector", capture, tmp_path, stride)
    assert np.allclose(live["score"].to_numpy(), offline["score"].to_numpy(), atol=1e-5)
    assert live["first_frame"].to_pylist() == offline["first_frame"].to_pylist()


def test_replay_of_a_real_capture(trained, road_test, tmp_path):
    sink = Collect()
    manifest = detect_stage.run([road_test], trained / "detector", replay=True, speed=1000, sink=sink)
    replayed = sink.table()
    offline = file_verdicts(trained / "detector", road_test, tmp_path)
    assert replayed["window"].to_pylist() == offline["window"].to_pylist()
    assert np.allclose(replayed["score"].to_numpy(), offline["score"].to_numpy(), atol=1e-5)
    summary = manifest.summary["files"][0]
    assert summary["latency_ms"]["p50"] > 0 and summary["frames"] == 32_351
    # the recorded timing is kept: ~16 s of traffic at 1000x takes at least 16 ms
    assert summary["seconds"] >= (replayed["last_time"][-1].as_py() - replayed["first_time"][0].as_py()) / 1000


def test_standard_input_is_scored_as_it_arrives(trained, road_test, tmp_path):
    """`candump -L can0 | kdgat detect - ...`: verdicts come while the pipe is still open (each window as it
    closes), SIGTERM ends it with the summary, and the verdicts are those of the same frames read from a file."""
    log = write_candump(tmp_path / "road.log", frames_of(road_test), 3_050)
    lines = log.read_text().splitlines(keepends=True)
    command = [sys.executable, "-c", "from kdgat.cli import app; app()", "detect", "-", "--detector",
               str(trained / "detector")]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env)  # fmt: skip
    process.stdin.write("".join(lines[:2_050]))  # 20 windows of 100 frames, and half of the next
    process.stdin.flush()
    first = process.stdout.readline()  # a verdict while the pipe is open: not held until it ends
    assert json.loads(first)["window"] == 0
    process.stdin.write("".join(lines[2_050:]))
    process.stdin.flush()
    rows = [json.loads(first)]
    while rows[-1]["window"] < 29:  # window 29 (frames 2,900-2,999) comes out once a later frame was read
        rows.append(json.loads(process.stdout.readline()))
    process.send_signal(signal.SIGTERM)
    # read on from the same buffered reader (communicate() reads the raw pipe and would lose what readline buffered)
    rest, err = process.stdout.read(), process.stderr.read()
    process.stdin.close()
    assert process.wait(timeout=60) == 0, err
    rows += [json.loads(line) for line in rest.splitlines()]
    summary = rows.pop()["summary"]
    assert summary["live"] and summary["files"][0]["file"] == "<stdin>" and summary["files"][0]["stopped"]
    assert 3_000 < summary["files"][0]["frames"] <= 3_050 and len(rows) == summary["windows"] == 30, summary
    from_file = invoke("detect", log, "--detector", trained / "detector", "--out", tmp_path / "v.jsonl")
    assert from_file.exit_code == 0, from_file.stderr
    expected = [json.loads(line) for line in (tmp_path / "v.jsonl").read_text().splitlines()]
    for key in ("window", "first_frame", "last_frame", "alert", "suspects"):
        assert [r[key] for r in rows] == [r[key] for r in expected], key
    assert np.allclose([r["score"] for r in rows], [r["score"] for r in expected], rtol=1e-5, atol=1e-7)


def test_what_standard_input_cannot_carry(trained, road_test, tmp_path, monkeypatch):
    """A quiet pipe ends at --duration as a silent bus does; an empty one, a compressed one and a python-can log
    (its reader needs the whole file) are one line each; - twice or with --replay is a usage error."""
    from kdgat.detection import sources

    def piped(data: bytes | None, *args):
        read, write = os.pipe()
        monkeypatch.setattr(sources, "STDIN_FD", read)
        try:
            if data is not None:
                os.write(write, data)
                os.close(write)
            return invoke("detect", "-", "--detector", trained / "detector", *args)
        finally:
            os.close(read)
            if data is None:
                os.close(write)

    quiet = piped(None, "--duration", "0.3")
    assert quiet.exit_code == 0 and json.loads(quiet.stdout.splitlines()[-1])["summary"]["windows"] == 0
    log = write_candump(tmp_path / "road.log", frames_of(road_test), 300)
    asc = write_can_log(tmp_path / "r.asc", frames_of(road_test), 100)
    for given, said in ((b"", "<stdin>: empty file"), (lzma.compress(log.read_bytes()), "xz-compressed input"),
                        (asc.read_bytes(), "not a pipe")):  # fmt: skip
        one_line_error(piped(given), said)
    one_line_error(invoke("detect", "-", "-", "--detector", trained / "detector"), "read once", code=2)
    one_line_error(invoke("detect", "-", "--replay", "--detector", trained / "detector"), "own pace", code=2)


def test_a_row_group_without_timestamps_reads_as_graphs_reads_it(trained, road_test, tmp_path):
    """A frame Parquet file of a timed capture whose row group of 100 frames has no timestamp: detect read that block
    as a capture without timestamps (has_timestamps 0, the gap across it measured from the frames before), graphs as
    frames with unknown times (NaN), and their scores differed (0.0013 vs 0.344 on one window, the alert flipped)."""
    from kdgat.data.incremental import WindowStream
    from kdgat.data.store import open_store
    from kdgat.data.timing import timing_frame_values
    from kdgat.data.vocab import Vocabulary
    from kdgat.data.windows import build_graphs
    from kdgat.stages.graphs import _read_frames

    assert invoke("ingest", road_test, "--out", tmp_path / "frames").exit_code == 0
    (path,) = (tmp_path / "frames").rglob("*.parquet")
    table = pq.read_table(path).slice(0, 3_000)
    times = table["timestamp"].to_numpy().copy()
    missing = np.zeros(len(times), bool)
    missing[1_000:1_100] = True  # one whole row group
    table = table.set_column(table.schema.get_field_index("timestamp"), "timestamp",
                             pa.array(times, pa.float64(), mask=missing))  # fmt: skip
    holey = tmp_path / "holey.parquet"
    pq.write_table(table.replace_schema_metadata(pq.read_schema(path).metadata), holey, row_group_size=100)
    blocks = []
    read_frames(holey, blocks.append, block_size=100)
    assert all(b.timestamps is not None for b in blocks)
    keys, data, _, _, stamps = _read_frames(holey)
    assert np.array_equal(np.concatenate([b.timestamps for b in blocks]), stamps, equal_nan=True)

    store = open_store(trained / "graphs")
    vocab = Vocabulary.from_json(json.loads((trained / "graphs/vocab.json").read_text()))
    periods = np.array([np.nan if p is None else p for p in store.metadata["timing"]["median_period"]])
    ids = vocab.lookup(keys)
    whole = build_graphs(ids, data, None, None, window=100, stride=100, vocab_size=vocab.size,
                         frame_values=timing_frame_values(stamps, keys, ids, periods))  # fmt: skip
    stream = WindowStream(window=100, stride=100, vocab=vocab, periods=periods, max_windows=4096)
    streamed = [w.graphs for b in blocks for w in stream.push(b)] + [w.graphs for w in stream.finish()]
    assert np.array_equal(np.concatenate([g.x for g in streamed]), whole.x)


def test_a_replay_is_paced_from_its_first_frame_with_a_time():
    """A first frame without a timestamp made the clock's origin NaN: every frame was due at once (2 s of traffic at
    --speed 0.2 replayed in 5.9 s instead of 10+); frames before the first time are handed over at once."""
    from kdgat.data.incremental import FrameBlock
    from kdgat.detection.sources import Pacer

    got: list[FrameBlock] = []
    pacer = Pacer(got.append, 2.0, threading.Event(), Path("x"))
    pacer(FrameBlock(np.arange(2, dtype=np.uint64), np.zeros((2, 8), np.uint8), np.array([np.nan, np.nan])))
    times = np.array([np.nan, 0.0, 0.2, 0.4])
    pacer(FrameBlock(np.arange(4, dtype=np.uint64), np.zeros((4, 8), np.uint8), times))
    due = np.concatenate([b.arrival for b in got])  # when each frame was due: its arrival
    assert len(due) == 6 and np.isfinite(due).all() and (np.diff(due) >= 0).all()
    assert due[5] - due[3] == pytest.approx(0.4 / 2)  # the recorded 0.4 s at speed 2 (every frame was due at once)


def test_a_pipe_reads_as_the_same_bytes_in_a_file_would(road_test, tmp_path, monkeypatch):
    """Stopped inside a line, a pipe drops that line (it never came whole; it was read as a malformed CSV row);
    stopped before a whole line came it is a silent bus; blank lines first and the data in a later write, it is
    recognised as the same bytes in a file are."""
    from kdgat.detection import sources

    lines = lzma.decompress(road_test.read_bytes()).splitlines(keepends=True)[:31]

    def piped(pieces: list[bytes], close: bool, stop_after: float | None = None):
        read, write = os.pipe()
        monkeypatch.setattr(sources, "STDIN_FD", read)
        stop = threading.Event()

        def writer():
            for piece in pieces:
                os.write(write, piece)
                time.sleep(0.2)
            if close:
                os.close(write)

        feeding = threading.Thread(target=writer)
        feeding.start()
        if stop_after is not None:
            threading.Timer(stop_after, stop.set).start()
        blocks = []
        try:
            info = sources.read_frames("-", blocks.append, stop=stop)
        finally:
            feeding.join()
            os.close(read)
            if not close:
                os.close(write)
        return info, sum(len(b.keys) for b in blocks)

    info, frames = piped([b"".join(lines[:21]) + lines[21][:25]], close=False, stop_after=0.6)
    assert (info.frames, frames, info.warnings, info.skipped) == (20, 20, [], None)
    assert piped([lines[0][:10]], close=False, stop_after=0.6)[0].frames == 0
    blanks_first = [b"\n" * 5, b"".join(lines)]
    (tmp_path / "same.csv").write_bytes(b"".join(blanks_first))
    info, frames = piped(blanks_first, close=True)
    assert info.format == sources.read_frames(tmp_path / "same.csv", lambda block: None).format == "road"
    assert info.frames == frames == 30
    # a UTF-8 byte-order mark arriving in parts is no part of the first line either (a review found it kept): the
    # stream's first read gets one byte of it
    from kdgat.data.formats.stream import PipeStream

    read, write = os.pipe()
    try:
        stream = PipeStream(read)
        os.write(write, b"\xef")
        assert stream._arrive(1 << 16) and stream._pending == b"\xef"  # held: it may be the start of a mark
        os.write(write, b"\xbb\xbf" + b"".join(lines))
        os.close(write)
        assert stream.head() == b"".join(lines)[: len(stream.head())] and stream.head().startswith(b"Time,")
    finally:
        os.close(read)


def test_a_file_piped_in_is_read_in_blocks_not_64_kib_at_a_time(road_test, monkeypatch):
    """A pipe hands over 64 KiB a read; reading only that made a file piped in thousands of small blocks (DAGA's
    V40_03: 396 scoring calls, 6.5 s in-process against 3.0 s from the file). What is waiting is read on."""
    import fcntl

    from kdgat.detection import sources

    data = lzma.decompress(road_test.read_bytes())[: 900 << 10]
    data = data[: data.rindex(b"\n") + 1]
    read, write = os.pipe()
    fcntl.fcntl(write, fcntl.F_SETPIPE_SZ, 1 << 20)  # all of it waits in the pipe before the first read
    os.write(write, data)
    os.close(write)
    monkeypatch.setattr(sources, "STDIN_FD", read)
    blocks = []
    try:
        info = sources.read_frames("-", blocks.append)
    finally:
        os.close(read)
    assert info.frames == sum(len(b.keys) for b in blocks) == data.count(b"\n") - 1
    assert len(blocks) <= 3, [len(b.keys) for b in blocks]  # the head's bytes, then the rest at once


def test_an_asc_frame_whose_dlc_disagrees_is_dropped_when_skipping(tmp_path):
    """python-can's ASC reader warns about a CAN FD line whose DLC disagrees with its data length and yields the
    frame anyway: refused by default, and under skip the frame is dropped, not counted and kept."""
    messages = [can.Message(timestamp=i * 0.01, arbitration_id=0x100 + i % 5, data=bytes(range(8)), channel=0,
                            is_fd=i == 5) for i in range(20)]  # fmt: skip
    with can.Logger(str(tmp_path / "a.asc")) as writer:
        for message in messages:
            writer.on_message_received(message)
    lines = (tmp_path / "a.asc").read_text().splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if "CANFD" in line)
    fields = lines[at].split()
    fields[fields.index("Rx") + 4] = "7"  # DLC 7 (7 bytes) for 8 data bytes
    lines[at] = "   " + " ".join(fields) + "\n"
    (tmp_path / "b.asc").write_text("".join(lines))
    with pytest.raises(KdgatError, match="DLC vs Data Length mismatch"):
        read_frames(tmp_path / "b.asc", lambda block: None)
    blocks = []
    info = read_frames(tmp_path / "b.asc", blocks.append, on_bad_rows="skip")
    assert info.frames == sum(len(b.keys) for b in blocks) == 19 and info.skipped["rows"] == 1


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_replay_stops_cleanly_on_sigterm_with_the_summary(trained, road_test, sig):
    """SIGTERM, or SIGHUP when the terminal closes (which ended the process with nothing written): the windows
    still open close and the summary follows, exit 0."""
    command = [sys.executable, "-c", "from kdgat.cli import run; run()", "detect", str(road_test),
               "--detector", str(trained / "detector"), "--replay"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               preexec_fn=as_from_a_terminal)  # fmt: skip
    first = process.stdout.readline()  # the first verdict: the detector is running
    process.send_signal(sig)
    rest, err = process.stdout.read(), process.stderr.read()  # not communicate(): it would lose readline's buffer
    assert process.wait(timeout=60) == 0, err
    lines = [first, *rest.splitlines()]
    rows, last = [json.loads(line) for line in lines[:-1]], json.loads(lines[-1])
    assert [r["window"] for r in rows] == list(range(len(rows)))
    summary = last["summary"]
    assert summary["live"] and summary["files"][0]["stopped"] and summary["windows"] == len(rows)
    assert "Detections by" in err and "Traceback" not in err
