"""kdgat.data.synthetic and the synth stage: the dataset must look exactly like can-train-and-test, labelled right."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from kdgat.core.errors import KdgatError, UsageError
from kdgat.data.capture import attack_type_from_name
from kdgat.data.synthetic import LAYOUT, MARKER, TRAIN_KINDS, SynthSummary, is_synthetic
from kdgat.stages.synth import run as run_synth


def synthesize(out, **kwargs) -> SynthSummary:
    return SynthSummary.from_dict(run_synth(out, **kwargs).summary)


DURATION = 3.0
EXPECTED = {
    "train_01_attack_free/attack-free-1.csv",
    "train_01_attack_free/attack-free-2.csv",
    *(f"train_02_with_attacks/{k}-1.csv" for k in ("dos", "fuzzing", "spoofing", "replay")),
    *(f"test_01_known_vehicle_known_attack/{k}-2.csv" for k in ("dos", "fuzzing", "spoofing", "replay")),
    *(f"test_02_unknown_vehicle_known_attack/{k}-3.csv" for k in ("dos", "fuzzing", "spoofing", "replay")),
    "test_03_known_vehicle_unknown_attack/suppress-4.csv",
    "test_03_known_vehicle_unknown_attack/masquerade-4.csv",
    "test_04_unknown_vehicle_unknown_attack/suppress-5.csv",
    "test_04_unknown_vehicle_unknown_attack/masquerade-5.csv",
}
ROW = re.compile(rb"^\d{10}\.\d{6},[0-9A-F]{3},(?:[0-9A-F]{2}){0,8},[01]\r\n$")


def read(path: Path) -> dict[str, np.ndarray]:
    table = pacsv.read_csv(
        path,
        convert_options=pacsv.ConvertOptions(column_types={"arbitration_id": pa.string(), "data_field": pa.string()}),
    )
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, SynthSummary]:
    out = tmp_path_factory.mktemp("synth") / "data"
    return out, synthesize(out, seed=3, duration_s=DURATION)


def files_of(summary: SynthSummary, kind: str):
    found = [f for f in summary.files if f.attack == kind]
    assert found, kind
    return found


def test_layout_and_summary(dataset):
    out, summary = dataset
    written = {p.relative_to(out).as_posix() for p in out.rglob("*.csv")}
    assert written == EXPECTED
    assert {f.path for f in summary.files} == EXPECTED
    assert len(LAYOUT) == len(EXPECTED)
    for f in summary.files:
        assert f.path.split("/")[0] == f.split
        assert attack_type_from_name(f.path) == f.attack
        assert f.vehicle == ("B" if "unknown_vehicle" in f.split else "A")
    marker = json.loads((out / MARKER).read_text())
    assert marker["generator"] == "kdgat.synth"
    assert SynthSummary.from_dict(marker) == summary
    assert json.loads(json.dumps(summary.to_dict())) == summary.to_dict()
    assert is_synthetic(out)


def test_csv_format(dataset):
    out, summary = dataset
    for f in summary.files:
        raw = (out / f.path).read_bytes()
        assert raw.startswith(b"timestamp,arbitration_id,data_field,attack\r\n")
        assert b'"' not in raw
        lines = raw.splitlines(keepends=True)
        assert len(lines) == f.rows + 1
        assert all(ROW.match(line) for line in lines[1:]), f.path
        with open(out / f.path, newline="") as fh:
            rows = list(csv.reader(fh))
        assert rows[0] == ["timestamp", "arbitration_id", "data_field", "attack"]
        assert all(len(r) == 4 for r in rows)
        cols = read(out / f.path)
        assert len(cols["timestamp"]) == f.rows
        assert int(cols["attack"].sum()) == f.attack_rows
        assert set(np.unique(cols["attack"]).tolist()) <= {0, 1}
        assert np.all(np.diff(cols["timestamp"]) >= 0)
        assert cols["timestamp"][0] >= 1672531200.0
        assert cols["timestamp"][-1] < 1672531200.0 + DURATION
        assert all(len(i) == 3 for i in cols["arbitration_id"])
        lengths = np.array([len(d) for d in cols["data_field"]])
        assert np.all(lengths % 2 == 0) and np.all(lengths <= 16)
        if f.attack != "attack-free":
            assert 0 < f.attack_rows < f.rows
            assert len(f.intervals) >= 3


def test_benign_traffic_is_periodic_with_short_dlcs(dataset):
    out, summary = dataset
    cols = read(out / "train_01_attack_free/attack-free-1.csv")
    ids, counts = np.unique(cols["arbitration_id"], return_counts=True)
    assert set(ids) <= set(summary.vehicle_ids["A"])
    assert len(ids) >= 20
    dlcs = {len(d) // 2 for d in cols["data_field"]}
    assert 8 in dlcs and min(dlcs) < 8
    fastest = ids[np.argmax(counts)]
    gaps = np.diff(cols["timestamp"][cols["arbitration_id"] == fastest])
    assert 0.008 < np.median(gaps) < 0.012  # a 10 ms ID


def test_determinism(tmp_path, dataset):
    out, summary = dataset
    again = synthesize(tmp_path / "again", seed=3, duration_s=DURATION)
    assert again == summary
    for f in summary.files:
        assert (out / f.path).read_bytes() == (tmp_path / "again" / f.path).read_bytes()
    other = synthesize(tmp_path / "other", seed=4, duration_s=DURATION)
    for f in other.files:
        assert (out / f.path).read_bytes() != (tmp_path / "other" / f.path).read_bytes()


def test_attack_free_and_unknown_kinds(dataset):
    out, summary = dataset
    for f in files_of(summary, "attack-free"):
        assert f.attack_rows == 0 and read(out / f.path)["attack"].sum() == 0
    train = {attack_type_from_name(p) for p in out.glob("train_*/*.csv")}
    assert train == set(TRAIN_KINDS)
    for split in ("test_03_known_vehicle_unknown_attack", "test_04_unknown_vehicle_unknown_attack"):
        kinds = {attack_type_from_name(p) for p in (out / split).glob("*.csv")}
        assert kinds == {"suppress", "masquerade"}
        assert not kinds & train


def test_dos_labels(dataset):
    out, summary = dataset
    for f in files_of(summary, "dos"):
        c = read(out / f.path)
        att = c["attack"] == 1
        assert np.all(c["arbitration_id"][att] == "000")
        assert np.all(c["data_field"][att] == "0" * 16)
        assert np.all(att[c["arbitration_id"] == "000"])
        # ~0.3 ms flooding inside a burst
        t = c["timestamp"][att]
        assert 0.00025 < np.median(np.diff(t)) < 0.00035


def test_fuzzing_labels(dataset):
    out, summary = dataset
    for f in files_of(summary, "fuzzing"):
        c = read(out / f.path)
        att = c["attack"] == 1
        assert att.sum() > 100
        assert set(c["arbitration_id"][~att]) <= set(summary.vehicle_ids[f.vehicle])
        assert len(set(c["arbitration_id"][att])) > 50  # random IDs over the 11-bit space


def test_spoofing_labels(dataset):
    out, summary = dataset
    for f in files_of(summary, "spoofing"):
        c = read(out / f.path)
        att = c["attack"] == 1
        assert f.target_id in summary.vehicle_ids[f.vehicle]
        assert att.sum() > 100
        assert set(c["arbitration_id"][att]) == {f.target_id}
        assert len(set(c["data_field"][att])) == 1  # constant forged payload
        assert 0.0009 < np.median(np.diff(c["timestamp"][att])) < 0.0011


def test_replay_labels(dataset):
    out, summary = dataset
    for f in files_of(summary, "replay"):
        c = read(out / f.path)
        att = c["attack"] == 1
        assert att.sum() > 0
        assert set(c["arbitration_id"][att]) == {f.target_id}
        benign = (c["arbitration_id"] == f.target_id) & ~att
        for t, data in zip(c["timestamp"][att], c["data_field"][att], strict=True):
            earlier = benign & (c["timestamp"] < t)
            assert data in set(c["data_field"][earlier])  # re-sent copy of an earlier frame


def test_masquerade_labels(dataset):
    out, summary = dataset
    for f in files_of(summary, "masquerade"):
        c = read(out / f.path)
        att = c["attack"] == 1
        assert att.sum() > 0
        assert set(c["arbitration_id"][att]) == {f.target_id}
        assert f.target_id in summary.vehicle_ids[f.vehicle]
        t = c["timestamp"]
        target = c["arbitration_id"] == f.target_id
        for a, b in f.intervals:
            inside = (t >= a) & (t < b)
            assert not np.any(target & inside & ~att)  # the victim's own frames are gone
            assert np.any(target & inside & att)  # replaced by the masquerader
        assert np.all(np.any([(t[att] >= a) & (t[att] < b) for a, b in f.intervals], axis=0))


def test_suppress_labels(dataset):
    out, summary = dataset
    for f in files_of(summary, "suppress"):
        c = read(out / f.path)
        att = c["attack"].astype(bool)
        t = c["timestamp"]
        target = c["arbitration_id"] == f.target_id
        # contiguous runs of labelled rows are the suppression intervals
        edges = np.flatnonzero(np.diff(np.concatenate([[0], att.astype(np.int8), [0]])))
        runs = edges.reshape(-1, 2)
        assert len(runs) == len(f.intervals)
        for lo, hi in runs:
            assert not np.any(target[lo:hi])
            assert hi - lo > 20
        gaps = np.diff(t[target])
        assert gaps.max() > 5 * np.median(gaps)  # the target's silence is visible
        assert target[~att].sum() > 0


def test_second_vehicle_differs(dataset):
    out, summary = dataset
    ids_a = set(read(out / "train_01_attack_free/attack-free-1.csv")["arbitration_id"])
    c = read(out / "test_04_unknown_vehicle_unknown_attack/masquerade-5.csv")
    ids_b = set(c["arbitration_id"][c["attack"] == 0])
    assert ids_a != ids_b
    assert len(ids_a & ids_b) < 0.5 * min(len(ids_a), len(ids_b))
    assert set(summary.vehicle_ids["A"]) != set(summary.vehicle_ids["B"])


def test_small_size_budget(tmp_path):
    summary = synthesize(tmp_path / "small", seed=0)
    assert summary.size == "small" and summary.duration_s == 10.0
    assert 100_000 < summary.total_rows <= 150_000
    assert all(f.attack_rows > 0 for f in summary.files if f.attack != "attack-free")


def test_refuses_foreign_directory(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(KdgatError, match="refusing"):
        synthesize(out, duration_s=DURATION)
    assert (out / "precious.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no temporary left behind
    afile = tmp_path / "file.csv"
    afile.write_text("x")
    with pytest.raises(KdgatError):
        synthesize(afile, duration_s=DURATION)
    with pytest.raises(KdgatError):
        synthesize(tmp_path / "x", size="huge")
    with pytest.raises(UsageError):  # a value out of range: exit 2, as every command's
        synthesize(tmp_path / "x", duration_s=0.1)
    with pytest.raises(UsageError, match="must be 1 to 3600 s per file, got 10000000.0"):  # filled memory for minutes
        synthesize(tmp_path / "x", duration_s=1e7)
    with pytest.raises(UsageError):
        synthesize(tmp_path / "x", seed=-1)


def test_replaces_previous_synthetic_output(tmp_path):
    out = tmp_path / "data"
    out.mkdir()  # an empty directory is fine
    synthesize(out, seed=1, duration_s=DURATION)
    # a file of an earlier run (its marker lists it) goes; one the user put there since stops the run, kept
    marker = json.loads((out / MARKER).read_text())
    marker["files"].append({"path": "train_99/old-layout-1.csv"})
    (out / MARKER).write_text(json.dumps(marker))
    (out / "train_99").mkdir()
    (out / "train_99/old-layout-1.csv").write_text("from an earlier run")
    (out / "train_01_attack_free/mine.csv").write_text("the user's")
    with pytest.raises(KdgatError, match=r"train_01_attack_free/mine.csv: not written by kdgat synth \(1 such"):
        synthesize(out, seed=2, duration_s=DURATION)
    assert (out / "train_01_attack_free/mine.csv").read_text() == "the user's"
    (out / "train_01_attack_free/mine.csv").unlink()
    summary = synthesize(out, seed=2, duration_s=DURATION)
    assert not (out / "train_99").exists()
    assert json.loads((out / MARKER).read_text())["seed"] == 2 == summary.seed
    assert {p.relative_to(out).as_posix() for p in out.rglob("*.csv")} == EXPECTED
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
