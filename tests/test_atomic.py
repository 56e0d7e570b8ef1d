"""kdgat.core.atomic and the typed manifest: outputs appear whole or not at all, and say what they are."""

from __future__ import annotations

import json

import pytest

from kdgat.core.atomic import atomic_path, atomic_write_text, staged_folder
from kdgat.core.errors import KdgatError
from kdgat.core.manifest import MANIFEST_NAME, begin_output, read_manifest, write_manifest


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "metrics.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half of the new")
            raise RuntimeError("killed")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]
    atomic_write_text(target, "new")
    assert target.read_text() == "new" and len(list(tmp_path.iterdir())) == 1


def test_temporary_names_keep_the_suffix_writers_need(tmp_path):
    import numpy as np

    with atomic_path(tmp_path / "a.npz") as tmp:
        assert tmp.name.endswith(".a.npz")
        np.savez(tmp, x=np.arange(3))  # np.savez appends .npz unless the name already ends with it
    assert np.load(tmp_path / "a.npz")["x"].tolist() == [0, 1, 2]


def test_a_staged_folder_replaces_the_old_one_whole_or_not_at_all(tmp_path):
    final = tmp_path / "store"
    with staged_folder(final) as staging:
        (staging / "part").write_text("1")
    with pytest.raises(RuntimeError):
        with staged_folder(final) as staging:
            (staging / "part").write_text("2")
            raise RuntimeError("killed")
    assert (final / "part").read_text() == "1" and sorted(p.name for p in tmp_path.iterdir()) == ["store"]
    with staged_folder(final) as staging:
        (staging / "other").write_text("3")
    assert sorted(p.name for p in final.iterdir()) == ["other"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]  # the old folder is gone too


def test_manifest_round_trip_and_begin_output_removes_it_first(tmp_path):
    written = write_manifest(
        tmp_path, stage="train", inputs=[{"path": "a", "sha256": "0" * 64}], config={"k": 1},
        outputs=[{"path": "model.pt", "rows": 3}], wall_time_s=1.23456, dataset="road", summary={"epochs": 2},
    )  # fmt: skip
    again = read_manifest(tmp_path)
    assert again == written and again.outputs[0].rows == 3 and again.wall_time_s == 1.235
    begin_output(tmp_path)
    assert read_manifest(tmp_path) is None


def test_an_older_manifest_layout_is_read_and_a_broken_one_named(tmp_path):
    old = {
        "stage": "ingest", "created_at": "2026-01-01T00:00:00+00:00", "inputs": [], "config": {},
        "config_hash": "x", "versions": {}, "wall_time_s": 1.0, "outputs": [], "dataset": "road",
        "totals": {"rows": 5}, "frame_schema": "1",
    }  # fmt: skip
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(old))
    assert read_manifest(tmp_path).summary == {"totals": {"rows": 5}, "frame_schema": "1"}
    (tmp_path / MANIFEST_NAME).write_text(json.dumps({**old, "stage": "bake"}))
    with pytest.raises(KdgatError, match="unreadable manifest: stage"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(KdgatError, match="unreadable manifest"):
        read_manifest(tmp_path)


def test_a_stop_between_the_two_renames_of_a_staged_folder_loses_nothing(tmp_path, monkeypatch):
    """The earlier folder was moved aside, then the new one in: stopped between the two (an exception there, or
    SIGKILL), no folder was left under the name, and the next clean-up deleted the earlier one as a dead writer's
    leftover. The exception path now puts it back, and so does the clean-up of a killed writer's."""
    import os
    import subprocess
    import sys

    from kdgat.core.atomic import clean_stale, temporary_name

    final = tmp_path / "bundle"
    with staged_folder(final) as staging:
        (staging / "detector.json").write_text("earlier")
    renames = []

    def stop_at_the_second(src, dst):
        renames.append(dst)
        if len(renames) == 2:
            raise KeyboardInterrupt  # Ctrl-C between the renames
        os.rename(src, dst)

    monkeypatch.setattr("kdgat.core.atomic.os.replace", stop_at_the_second)
    with pytest.raises(KeyboardInterrupt):
        with staged_folder(final) as staging:
            (staging / "detector.json").write_text("new")
    monkeypatch.undo()
    assert (final / "detector.json").read_text() == "earlier" and [p.name for p in tmp_path.iterdir()] == ["bundle"]
    # SIGKILL there: the earlier folder under a dead writer's .old- name, the new one still staged
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    aside = tmp_path / temporary_name("old", "bundle").replace(f"-{os.getpid()}-", f"-{dead.stdout.strip()}-")
    staged = tmp_path / temporary_name("staging", "bundle").replace(f"-{os.getpid()}-", f"-{dead.stdout.strip()}-")
    os.rename(final, aside)
    staged.mkdir()
    clean_stale(tmp_path)
    assert (final / "detector.json").read_text() == "earlier" and [p.name for p in tmp_path.iterdir()] == ["bundle"]
