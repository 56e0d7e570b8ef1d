"""Every real capture in ../shared/data ingests with the row and attack counts of its README."""

from __future__ import annotations

import lzma

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from kdgat.data.capture import IngestOptions, sources_from_files
from kdgat.data.frames import FRAME_SCHEMA
from kdgat.stages.ingest import run as run_ingest

# (relative path, format detected, rows, attack rows or None when the capture has no labels)
REAL_CAPTURES = [
    ("can-train-and-test/set_01/train_01/DoS-1.csv.xz", "can-train-and-test", 90_169, 9_139),
    ("daga-v40/clean/V40_03.can.csv.xz", "daga", 245_144, 0),
    ("daga-v40/infected/DenialOfService/lowestID_V40_03.can.csv.xz", "daga", 254_164, 13_860),
    ("daga-v40/infected/MessageIDFuzzing/V40_03.can.csv.xz", "daga", 245_297, 153),
    ("daga-v40/infected/PayloadFuzzing/ID_145_V40_03.can.csv.xz", "daga", 245_450, 306),
    ("daga-v40/infected/PayloadFuzzing/ID_1_V40_03.can.csv.xz", "daga", 245_756, 612),
    ("daga-v40/infected/SingleIDReplay/ID_145_V40_03.can.csv.xz", "daga", 245_450, 306),
    ("daga-v40/infected/SingleIDReplay/ID_1_V40_03.can.csv.xz", "daga", 245_756, 612),
    ("road/attacks/fuzzing_attack_1.csv.xz", "road", 49_342, 592),
    ("road/attacks/fuzzing_attack_2.csv.xz", "road", 32_351, 352),
    ("road/attacks/correlated_signal_attack_2.csv.xz", "road", 69_657, 2_141),
    ("road/attacks/correlated_signal_attack_2_masquerade.csv.xz", "road", 67_517, 2_141),
    ("road/attacks/max_engine_coolant_temp_attack.csv.xz", "road", 61_923, 43),
    ("road/attacks/max_engine_coolant_temp_attack_masquerade.csv.xz", "road", 61_881, 43),
    ("road/attacks/reverse_light_off_attack_1.csv.xz", "road", 67_902, 673),
    ("road/attacks/reverse_light_off_attack_1_masquerade.csv.xz", "road", 67_230, 673),
    ("otids/Attack_free_dataset_10k.txt.xz", "hcrl-txt", 10_000, None),
    ("crysys/S-1-1-orig.csv.xz", "crysys-txt", 17_935, None),
    ("crysys/S-1-1-benign.log.xz", "candump-l", 17_935, None),
    ("crysys/S-1-1-malicious-CONST-msg-mod-0x410-0.4-0.6.log.xz", "candump-l", 17_935, 60),
    ("j1939/normal.log.xz", "candump", 19_957, None),
    ("j1939/Application_Layer/dos_1ms.log.xz", "candump", 28_074, None),
    ("j1939/Application_Layer/fuzz_1ms_ID_and_Data.log.xz", "candump", 28_596, None),
    ("j1939/Application_Layer/tsc1.log.xz", "candump", 21_568, None),
    ("j1939/Data_Link_Layer/BAM_Block_attack.txt.xz", "candump", 6_184, None),
    ("j1939/labeled_TSC1.csv.xz", "j1939-csv", 21_568, 923),
    ("ciciov2024/decimal_benign.csv.xz", "ciciov2024", 1_223_737, 0),
    ("ciciov2024/decimal_DoS.csv.xz", "ciciov2024", 74_663, 74_663),
    ("ciciov2024/decimal_spoofing-GAS.csv.xz", "ciciov2024", 9_991, 9_991),
    ("ciciov2024/decimal_spoofing-RPM.csv.xz", "ciciov2024", 54_900, 54_900),
    ("ciciov2024/decimal_spoofing-SPEED.csv.xz", "ciciov2024", 24_951, 24_951),
    ("ciciov2024/decimal_spoofing-STEERING_WHEEL.csv.xz", "ciciov2024", 19_977, 19_977),
    ("nissan-juke/2020-11-24T042548.log.xz", "candump", 98_222, None),
]


def test_every_capture_is_listed(data_root):
    on_disk = {str(p.relative_to(data_root)) for p in data_root.rglob("*.xz")}
    assert on_disk == {rel for rel, *_ in REAL_CAPTURES}


def _ingest(path, tmp_path):
    manifest = run_ingest(sources_from_files([path]), tmp_path / "out", IngestOptions())
    (item,) = [o.model_dump() for o in manifest.outputs]
    return item, pq.read_table(tmp_path / "out" / item["path"])


@pytest.mark.parametrize(("rel", "fmt", "rows", "attack"), REAL_CAPTURES, ids=[r[0] for r in REAL_CAPTURES])
def test_real_capture_counts(data_root, tmp_path, rel, fmt, rows, attack):
    item, table = _ingest(data_root / rel, tmp_path)
    assert item["format"] == fmt
    assert table.num_rows == item["rows"] == rows
    assert table.schema.remove_metadata() == FRAME_SCHEMA.remove_metadata()
    labels = table["label"]
    if attack is None:
        assert labels.null_count == rows and item["unlabelled_rows"] == rows
    else:
        assert labels.null_count == 0
        assert item["attack_rows"] == attack
        assert int(pc.sum(pc.cast(labels, "int64")).as_py()) == attack
    positions = table["position"].to_numpy()
    assert np.array_equal(positions, np.arange(rows))
    assert pc.max(table["dlc"]).as_py() <= 8


def test_ctt_payload_and_ids_match_a_plain_parse(data_root, tmp_path):
    path = data_root / "can-train-and-test/set_01/train_01/DoS-1.csv.xz"
    _, table = _ingest(path, tmp_path)
    lines = lzma.decompress(path.read_bytes()).decode().splitlines()[1:]
    for i in range(0, len(lines), 997):  # a spread of rows, parsed the slow obvious way
        ts, can_id, data, attack = lines[i].split(",")
        payload = bytes.fromhex(data)
        row = table.slice(i, 1).to_pylist()[0]
        assert row["timestamp"] == float(ts)
        assert row["can_id"] == int(can_id, 16)
        assert row["dlc"] == len(payload)
        assert row["data"] == payload.ljust(8, b"\0")
        assert row["label"] == int(attack)
        assert row["attack_type"] == ("dos" if attack == "1" else "normal")


def test_otids_remote_frames(data_root, tmp_path):
    _, table = _ingest(data_root / "otids/Attack_free_dataset_10k.txt.xz", tmp_path)
    remote = table.filter(table["is_remote"])
    assert remote.num_rows == 424
    assert set(remote["dlc"].to_pylist()) == {0}
    assert set(remote["data"].to_pylist()) == {bytes(8)}


def test_j1939_ids_are_extended(data_root, tmp_path):
    item, table = _ingest(data_root / "j1939/normal.log.xz", tmp_path)
    assert all(table["is_extended"].to_pylist())
    first = table.slice(0, 1).to_pylist()[0]
    assert first["can_id"] == 0x18FCF200 and first["dlc"] == 8
    assert first["data"] == bytes.fromhex("E1FFFFFFFFFFFFFF")


def test_nissan_juke_has_no_timestamps_and_skips_the_date_line(data_root, tmp_path):
    item, table = _ingest(data_root / "nissan-juke/2020-11-24T042548.log.xz", tmp_path)
    assert table["timestamp"].null_count == table.num_rows
    assert item["ignored_lines"] >= 1
    first = table.slice(0, 1).to_pylist()[0]
    assert (first["can_id"], first["dlc"], first["data"]) == (
        0x160,
        7,
        bytes.fromhex("31232600 08FFE800".replace(" ", "")),
    )


def test_daga_unpadded_zero_payload(data_root, tmp_path):
    _, table = _ingest(data_root / "daga-v40/infected/SingleIDReplay/ID_1_V40_03.can.csv.xz", tmp_path)
    id1_attacks = table.filter(pc.and_(pc.equal(table["can_id"], 1), pc.equal(table["label"], 1)))
    # The replayed 0x1 frames are written with PAYLOAD_HEX "0" (a number without
    # leading zeros); the other 459 attack frames of the file target 0x8 and 0x145.
    assert id1_attacks.num_rows == 153
    assert set(id1_attacks["dlc"].to_pylist()) == {8}
    assert set(id1_attacks["data"].to_pylist()) == {bytes(8)}


def test_road_attack_types_come_from_labels(data_root, tmp_path):
    _, table = _ingest(data_root / "road/attacks/correlated_signal_attack_2_masquerade.csv.xz", tmp_path)
    assert set(pc.cast(table["attack_type"], "string").to_pylist()) == {"normal", "masquerade"}


def test_ciciov_attack_types(data_root, tmp_path):
    _, table = _ingest(data_root / "ciciov2024/decimal_spoofing-GAS.csv.xz", tmp_path)
    assert set(pc.cast(table["attack_type"], "string").to_pylist()) == {"spoofing-gas"}
    assert table["timestamp"].null_count == table.num_rows


def test_crysys_modified_frames_are_the_0x410_ones(data_root, tmp_path):
    _, table = _ingest(data_root / "crysys/S-1-1-malicious-CONST-msg-mod-0x410-0.4-0.6.log.xz", tmp_path)
    attacks = table.filter(pc.equal(table["label"], 1))
    assert set(attacks["can_id"].to_pylist()) == {0x410}
