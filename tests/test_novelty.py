"""The benign-only classical yardstick (`kdgat train --model novelty`): fitted on benign windows only,
scored as computed by hand, a run like the others (evaluate, lake); configs of earlier runs hash as
recorded. (That it trains on crysys, where hgb cannot: tests/test_train.py.)"""

from __future__ import annotations

import json

import joblib
import numpy as np
import pytest

from kdgat.core.config import config_to_json, load_frozen_config, resolve_config
from kdgat.core.errors import ConfigError, KdgatError
from kdgat.data.store import open_store
from kdgat.data.window_vectors import window_vectors
from kdgat.models.novelty import WindowNovelty
from kdgat.stages.train import run as run_train
from kdgat.training.runs import load_run_model


@pytest.fixture(scope="module")
def store_dir(synthetic_graphs):
    return synthetic_graphs


def _vectors(store, part):
    return window_vectors(part, store.vocab_size, store.metadata["node_features"])[0].astype(np.float64)


def test_zscore_statistics_come_from_the_benign_training_windows_only(store_dir, tmp_path):
    store = open_store(store_dir)
    run_train(resolve_config("novelty", "large"), store_dir, tmp_path / "run")
    model, cfg = load_run_model(tmp_path / "run", store)
    assert cfg.model_type == "novelty" and isinstance(model, WindowNovelty) and model.method == "zscore"

    train = store.part("train")
    x, y = _vectors(store, train), np.asarray(train.y)
    assert (y == 1).any() and (y == 0).any()  # the store has attack windows the fit must not see
    benign = x[y == 0]
    keep = ~np.isnan(benign).all(axis=0)
    assert np.array_equal(model.keep, keep)
    with np.errstate(invalid="ignore"):
        expected_mean = np.nanmean(benign[:, keep], axis=0)
        expected_std = np.maximum(np.nanstd(benign[:, keep], axis=0), cfg.novelty.std_floor)
        with_attacks = np.nanmean(x[y >= 0][:, keep], axis=0)
    np.testing.assert_allclose(model.mean, expected_mean)
    np.testing.assert_allclose(model.std, expected_std)
    assert not np.allclose(with_attacks, expected_mean)  # so the check above could tell the two apart

    # a window's score: its largest |z| (top_k 1), an absent ID's NaN columns counting 0
    val = store.part("val")
    z = np.nan_to_num(np.abs(_vectors(store, val)[:, keep] - expected_mean) / expected_std, nan=0.0)
    np.testing.assert_allclose(model.anomaly(val), z.max(axis=1), rtol=1e-5)
    model.top_k = 3
    np.testing.assert_allclose(model.anomaly(val), np.sort(z, axis=1)[:, -3:].mean(axis=1), rtol=1e-5)
    assert model.parameters == 2 * int(keep.sum())


def test_novelty_through_train_evaluate_and_the_lake(store_dir, tmp_path):
    from kdgat.evaluation.metrics import binary_metrics
    from kdgat.lake import append_runs, build_lake, query
    from kdgat.stages.evaluate import read_results
    from kdgat.stages.evaluate import run as run_evaluate
    from kdgat.stages.export import run as run_export

    store = open_store(store_dir)
    manifest = run_train(resolve_config("novelty", "large"), store_dir, tmp_path / "novelty")
    summary = manifest.summary
    assert summary["model"] == "novelty" and summary["best_val_loss"] is None and summary["epochs"] is None
    assert summary["train_graphs"] == int((np.asarray(store.part("train").y) == 0).sum())
    assert {o.path for o in manifest.outputs} == {"model.joblib", "config.json", "metrics.json"}

    run_evaluate([tmp_path / "novelty"], store_dir, tmp_path / "eval")
    result = read_results(tmp_path / "eval")["runs"]["novelty_large"]
    assert result["score"] == "anomaly" and set(result["test"]) == set(store.test_parts())
    model, _ = load_run_model(tmp_path / "novelty", store)
    val = store.part("val")
    y = np.asarray(val.y)
    recomputed = binary_metrics(y[y >= 0], model.anomaly(val)[y >= 0], result["threshold"]["threshold"])
    assert result["validation"]["f1"] == pytest.approx(recomputed["f1"])

    # a benign-anchored threshold through evaluate: at most 5 % of the benign validation windows flagged,
    # the threshold just above the highest benign score left unflagged (the attack scores do not set it)
    run_evaluate([tmp_path / "novelty"], store_dir, tmp_path / "eval_fpr", policy="fpr:0.05")
    chosen = read_results(tmp_path / "eval_fpr")["runs"]["novelty_large"]["threshold"]
    assert chosen["method"] == "fpr" and chosen["max_fpr"] == 0.05
    benign = np.sort(model.anomaly(val)[y == 0])
    allowed = int(0.05 * len(benign))
    assert np.count_nonzero(benign >= np.float32(chosen["threshold"])) <= allowed
    assert chosen["threshold"] == float(np.nextafter(benign[-(allowed + 1)], np.float32(np.inf)))

    with pytest.raises(KdgatError, match="a novelty run cannot go into a detector bundle"):
        run_export([tmp_path / "novelty"], tmp_path / "bundle", evaluation=tmp_path / "eval", graphs_dir=store_dir)

    lake = tmp_path / "lake"
    append_runs([tmp_path / "novelty", tmp_path / "eval"], lake)
    build_lake(lake)
    rows = query(lake, "SELECT model, family, parameters FROM runs WHERE stage = 'train'").to_pylist()
    assert rows == [{"model": "novelty_large", "family": "novelty", "parameters": summary["parameters"]}]
    board = query(lake, "SELECT model, n_seeds FROM v_leaderboard").to_pylist()
    assert {r["model"] for r in board} == {"novelty_large"}


def test_isolation_forest_method_is_seeded_and_fills_absent_ids(store_dir):
    store = open_store(store_dir)
    train, val = store.part("train"), store.part("val")
    benign = np.flatnonzero(np.asarray(train.y) == 0)
    cfg = resolve_config("novelty", "large", overrides=["novelty.method=iforest", "novelty.trees=20"]).novelty
    features = store.metadata["node_features"]
    first = WindowNovelty(cfg, store.vocab_size, features, seed=1).fit(train, benign)
    again = WindowNovelty(cfg, store.vocab_size, features, seed=1).fit(train, benign)
    other = WindowNovelty(cfg, store.vocab_size, features, seed=2).fit(train, benign)
    assert np.isnan(_vectors(store, val)[:, first.keep]).any()  # absent IDs: the case the fill is for
    benign_vectors = _vectors(store, train)[benign][:, first.keep]
    np.testing.assert_array_equal(first.fill, np.nanmedian(benign_vectors, axis=0))
    scores = first.anomaly(val)
    assert scores.shape == (val.num_graphs,) and np.isfinite(scores).all()
    np.testing.assert_array_equal(scores, again.anomaly(val))
    assert not np.array_equal(scores, other.anomaly(val))
    assert first.parameters == sum(tree.tree_.node_count for tree in first.forest.estimators_)
    # fitted on two threads (fit_window_model passes --threads to joblib): the same trees
    with joblib.parallel_config(n_jobs=2):
        parallel = WindowNovelty(cfg, store.vocab_size, features, seed=1).fit(train, benign)
    np.testing.assert_array_equal(scores, parallel.anomaly(val))


def test_only_a_novelty_run_records_the_section(tmp_path):
    """No config but a novelty run's dumps the section (so earlier runs' configs hash as recorded:
    tests/test_config.py reads some back), yet every config validates it."""
    assert json.loads(config_to_json(resolve_config("novelty", "large")))["novelty"]["method"] == "zscore"
    for model in ("vgae", "gat", "dqn", "hgb"):
        text = config_to_json(resolve_config(model, "large"))
        assert "novelty" not in json.loads(text), model

    # still validated for every model: a typo in it is an error, not silently dropped
    with pytest.raises(ConfigError, match="novelty.bogus: unknown key"):
        resolve_config("gat", "large", overrides=["novelty.bogus=3"])

    dumped = json.loads(text)
    dumped["model_type"] = "novelty"
    (tmp_path / "config.json").write_text(json.dumps(dumped))
    with pytest.raises(ConfigError, match="novelty section"):
        load_frozen_config(tmp_path / "config.json")


def test_every_window_vector_model_name_has_its_class():
    from kdgat.core.config import WINDOW_VECTOR_MODELS
    from kdgat.training.window_models import WINDOW_MODELS

    assert set(WINDOW_MODELS) == set(WINDOW_VECTOR_MODELS)


def test_the_yardsticks_step_keys_ignore_the_training_loop_settings():
    """hgb and novelty are fitted without Lightning: `--epochs` must not refit them (a GNN's key changes)."""
    from kdgat.core.config import model_config_hash

    for model in ("hgb", "novelty", "gat"):
        plain = model_config_hash(resolve_config(model, "large"))
        shorter = model_config_hash(resolve_config(model, "large", overrides=["training.max_epochs=2"]))
        assert (plain == shorter) == (model != "gat"), model
    own = model_config_hash(resolve_config("novelty", "large", overrides=["novelty.top_k=3"]))
    assert own != model_config_hash(resolve_config("novelty", "large"))
