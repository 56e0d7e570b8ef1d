"""kdgat.core.tracking: URI precedence, one MLflow run per stage, and several processes sharing one SQLite store."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from kdgat.core.errors import KdgatError
from kdgat.core.tracking import (
    ENV_URI,
    TRUNCATED_TAG,
    StageRun,
    artifact_location,
    find_runs,
    flatten_params,
    resolve_tracking_uri,
)

TAGS = {"dataset": "synthetic", "stage": "train", "model": "gat", "scale": "small", "kd": "none"}


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory) -> str:
    """One store shared by the single-process tests (creating a schema takes a couple of seconds)."""
    return resolve_tracking_uri(None, tmp_path_factory.mktemp("tracking"))


# -- URI ----------------------------------------------------------------------------------------
def test_default_uri_is_sqlite_in_outdir(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_URI, raising=False)
    monkeypatch.chdir(tmp_path)
    uri = resolve_tracking_uri(None, Path("out"))
    assert uri == f"sqlite:///{tmp_path.resolve()}/out/mlruns.db"
    assert artifact_location(uri) == str(tmp_path.resolve() / "out" / "mlartifacts")
    assert resolve_tracking_uri("", "out") == uri


def test_configured_uri_beats_default(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_URI, raising=False)
    assert resolve_tracking_uri("http://tracking:5000", tmp_path) == "http://tracking:5000"
    assert artifact_location("http://tracking:5000") is None


def test_env_uri_beats_configured(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_URI, "sqlite:////shared/runs.db")
    assert resolve_tracking_uri("http://tracking:5000", tmp_path) == "sqlite:////shared/runs.db"
    monkeypatch.setenv(ENV_URI, "")
    assert resolve_tracking_uri("http://tracking:5000", tmp_path) == "http://tracking:5000"


def test_import_does_not_import_mlflow():
    code = "import sys, kdgat.core.tracking; assert 'mlflow' not in sys.modules and 'sqlalchemy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- params ------------------------------------------------------------------------------------
def test_flatten_params():
    nested = {"gat": {"hidden": 64, "heads": [4, 1], "jk": None, "v2": True}, "seed": 0, "name": "x", "empty": {}}
    assert flatten_params(nested) == {
        "gat.hidden": "64",
        "gat.heads": "[4,1]",
        "gat.jk": "None",
        "gat.v2": "True",
        "seed": "0",
        "name": "x",
        "empty": "{}",
    }


# -- one run -----------------------------------------------------------------------------------
def test_run_logs_params_metrics_tags_artifacts(store_uri, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.chdir(tmp_path)  # nothing may land in the working directory
    config = {
        "gat": {"hidden": 32, "heads": 4},
        "training": {"lr": 0.001},
        "wide": {f"k{i:03d}": i for i in range(150)},  # more than one 100-param batch
        "long": "x" * 7000,  # over MLflow's 6000-character param limit
    }
    report = tmp_path / "report.txt"
    report.write_text("hello\n")
    tags = {**TAGS, "run_id": "single"}
    with StageRun(store_uri, run_name="gat-small", tags=tags, params=config) as run:
        for epoch in range(3):
            run.log_metrics({"loss": 1.0 / (epoch + 1), "val_f1": 0.5 + 0.1 * epoch}, step=epoch)
        run.log_artifact(report)
        run.log_dict(config, "config.json")

    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.txt"]
    (found,) = find_runs(store_uri, run_id="single")
    assert found["run_id"] == run.run_id and found["run_name"] == "gat-small"
    assert found["status"] == "FINISHED" and found["end_time"] >= found["start_time"]
    assert {k: found["tags"][k] for k in tags} == tags
    params = found["params"]
    assert params["gat.hidden"] == "32" and params["training.lr"] == "0.001" and params["wide.k149"] == "149"
    assert len(params) == 2 + 1 + 150 + 1
    assert params["long"] == "x" * 6000 and found["tags"][TRUNCATED_TAG] == "long"
    assert found["metrics"] == {"loss": pytest.approx(1 / 3), "val_f1": pytest.approx(0.7)}

    client = MlflowClient(tracking_uri=store_uri)
    history = sorted((m.step, m.value) for m in client.get_metric_history(run.run_id, "loss"))
    assert history == [(0, 1.0), (1, 0.5), (2, pytest.approx(1 / 3))]
    assert not [k for k in found["metrics"] if k.startswith("system/")]  # no system-metrics sampler
    artifacts = {a.path for a in client.list_artifacts(run.run_id)}
    assert artifacts == {"report.txt", "config.json", "truncated_params.json"}
    local = Path(found["artifact_uri"].removeprefix("file://"))
    assert local.is_relative_to(Path(artifact_location(store_uri)))
    assert json.loads((local / "config.json").read_text())["gat"] == {"hidden": 32, "heads": 4}
    assert json.loads((local / "truncated_params.json").read_text()) == {"long": "x" * 7000}
    assert find_runs(store_uri, run_id="single", model="vgae") == []


def test_a_scenario_named_after_any_capture_is_logged(store_uri):
    """evaluate logs '<scenario>.<metric>', and a scenario is a capture's stem: characters MLflow refuses in a
    key (it failed the evaluation after scoring) become '_'."""
    with StageRun(store_uri, tags={**TAGS, "run_id": "odd-names"}, params={}) as run:
        run.log_metrics({"test__my capture (1).f1": 0.5, "test__café+1.fpr": 0.25, "val_f1": 1.0})
    (found,) = find_runs(store_uri, run_id="odd-names")
    assert found["metrics"] == {"test__my capture _1_.f1": 0.5, "test__café_1.fpr": 0.25, "val_f1": 1.0}


def test_exception_marks_run_failed_and_propagates(store_uri):
    with pytest.raises(ValueError, match="boom"):
        with StageRun(store_uri, tags={**TAGS, "run_id": "failing"}, params={"a": 1}) as run:
            run.log_metrics({"loss": 2.0}, step=0)
            raise ValueError("boom")
    with pytest.raises(RuntimeError, match="outside"):
        run.log_metrics({"loss": 3.0})
    (found,) = find_runs(store_uri, run_id="failing")
    assert found["status"] == "FAILED" and found["metrics"] == {"loss": 2.0}


def test_a_store_mlflow_refuses_is_a_one_line_error(tmp_path, monkeypatch):
    """MLflow 3 refuses a file:// store unless told otherwise: one line naming the URI, no traceback."""
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    uri = f"file:{tmp_path / 'mlruns'}"
    with pytest.raises(KdgatError) as caught:
        with StageRun(uri, tags={**TAGS, "run_id": "file-store"}, params={"a": 1}):
            pass
    message = str(caught.value)
    assert message.startswith(f"tracking store {uri}: MLflow cannot open it: ") and "\n" not in message


def test_find_runs_does_not_create_a_store(tmp_path):
    uri = resolve_tracking_uri(None, tmp_path / "nothing")
    assert find_runs(uri, stage="train") == []
    assert not (tmp_path / "nothing").exists()


# -- retries -----------------------------------------------------------------------------------
def test_retry_on_lock_errors_then_one_line_error():
    from mlflow.exceptions import MlflowException

    from kdgat.core.tracking import _retry

    calls = []

    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise sqlite3.OperationalError("database is locked")
        if len(calls) == 2:  # how MLflow's sessions wrap a migration race
            try:
                raise sqlite3.OperationalError("duplicate column name: step")
            except sqlite3.OperationalError as inner:
                raise MlflowException("(sqlite3.OperationalError) ...") from inner
        return "ok"

    retried = []
    assert _retry(flaky, what="log", uri="sqlite:///x.db", on_retry=retried.append, budget_s=5) == "ok"
    assert len(calls) == 3 and sum(retried) == 2

    def locked():
        raise sqlite3.OperationalError("database schema is locked: main")

    with pytest.raises(KdgatError) as err:
        _retry(locked, what="create run", uri="sqlite:///x.db", budget_s=0.2)
    message = str(err.value)
    assert "\n" not in message and "sqlite:///x.db" in message and "create run" in message

    def broken():
        calls.append(1)
        raise sqlite3.OperationalError("no such table: runs")

    calls.clear()
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        _retry(broken, what="log", uri="sqlite:///x.db", budget_s=5)
    assert len(calls) == 1  # not a lock problem: no retry


# -- several processes at once -----------------------------------------------------------------
WORKERS, RUNS_PER_WORKER, STEPS = 6, 2, 3


def _worker(uri: str, index: int, barrier, results) -> None:
    """Log RUNS_PER_WORKER runs, all workers leaving the barrier together; report once on ``results``."""
    # Imported before the barrier, so that the workers reach the fresh store at the same moment.
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401

    barrier.wait(timeout=120)
    try:
        retries = []
        for j in range(RUNS_PER_WORKER):
            tags = {**TAGS, "run_id": f"{index}-{j}"}
            with StageRun(uri, run_name=f"w{index}-r{j}", tags=tags, params={"worker": index, "gat": {"j": j}}) as run:
                for step in range(STEPS):
                    run.log_metrics({"loss": index + j / 10 + step, "acc": step / 10}, step=step)
            retries.append(run.retries)
        results.put(("ok", index, retries))
    except BaseException as exc:  # report instead of dying silently
        results.put(("error", index, f"{type(exc).__name__}: {exc}"))


def test_parallel_processes_lose_no_run(tmp_path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlruns.db"  # fresh: the schema is created by the racing workers
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(WORKERS), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(uri, i, barrier, results)) for i in range(WORKERS)]
    for proc in procs:
        proc.start()
    try:
        reports = [results.get(timeout=150) for _ in range(WORKERS)]
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
    errors = [r for r in reports if r[0] == "error"]
    assert not errors, errors
    assert all(proc.exitcode == 0 for proc in procs)
    print("tracking retries per worker:", {index: retries for _, index, retries in reports})

    runs = find_runs(uri, stage="train")
    assert len(runs) == WORKERS * RUNS_PER_WORKER
    assert {r["tags"]["run_id"] for r in runs} == {f"{i}-{j}" for i in range(WORKERS) for j in range(RUNS_PER_WORKER)}
    client = MlflowClient(tracking_uri=uri)
    for run in runs:
        index, j = map(int, run["tags"]["run_id"].split("-"))
        assert run["status"] == "FINISHED"
        assert run["run_name"] == f"w{index}-r{j}"
        assert {k: run["tags"][k] for k in TAGS} == TAGS
        assert run["params"] == {"worker": str(index), "gat.j": str(j)}
        history = sorted((m.step, m.value) for m in client.get_metric_history(run["run_id"], "loss"))
        assert history == [(s, pytest.approx(index + j / 10 + s)) for s in range(STEPS)]
        assert run["metrics"]["acc"] == pytest.approx((STEPS - 1) / 10)


def test_a_file_system_without_locks_gets_one_line_naming_the_file(tmp_path, monkeypatch):
    """Lustre without flock answers ENOSYS: the tracking store and the lake say which file and what to do; a
    held lock (BlockingIOError) and other errors are not disguised."""
    import errno

    from kdgat.core import locks
    from kdgat.core.tracking import _store_lock
    from kdgat.lake.store import build_lock

    def no_locks(handle, operation):
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(locks.fcntl, "flock", no_locks)
    with pytest.raises(KdgatError, match=r"mlruns\.db\.lock: this file system has no file locks .*tracking server"):
        with _store_lock(f"sqlite:///{tmp_path}/mlruns.db", 1.0):
            pass
    with pytest.raises(KdgatError, match=r"\.build\.lock: this file system has no file locks .*--lake"):
        with build_lock(tmp_path):
            pass
    for raised in (BlockingIOError(errno.EAGAIN, "busy"), OSError(errno.EIO, "I/O error")):

        def fails(handle, operation, raised=raised):
            raise raised

        monkeypatch.setattr(locks.fcntl, "flock", fails)
        with pytest.raises(type(raised)) as caught, open(tmp_path / "x.lock", "a") as handle:
            locks.flock(handle, 0, hint="-")
        assert caught.value is raised


def test_a_run_replaces_only_finished_earlier_runs_of_its_result(store_uri):
    """Two processes logging one folder at once: the first to finish must not delete the other's live run (its
    next call would fail, after the stage's work was done); finished earlier ones are replaced, other results not."""
    same = {"kdgat.out_dir": "/campaign/seed0/runs/gat_small", "stage": "train", "model": "replaced"}
    with StageRun(store_uri, run_name="earlier", tags={**same, "run_id": "a"}, replaces=same):
        pass
    other = {**same, "kdgat.out_dir": "/campaign/seed1/runs/gat_small"}
    with StageRun(store_uri, run_name="other folder", tags={**other, "run_id": "b"}, replaces=other):
        pass
    with StageRun(store_uri, run_name="live", tags={**same, "run_id": "c"}, replaces=same) as live:
        with StageRun(store_uri, run_name="finishes first", tags={**same, "run_id": "d"}, replaces=same) as first:
            pass
        live.log_metrics({"val_f1": 0.5})  # its run is still active
    active = {r["run_name"]: r for r in find_runs(store_uri, model="replaced")}  # the module's store is shared
    assert set(active) == {"other folder", "live", "finishes first"}
    assert active["live"]["status"] == "FINISHED" and active["live"]["metrics"] == {"val_f1": 0.5}
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    client = MlflowClient(tracking_uri=store_uri)
    experiment = client.get_experiment_by_name("kdgat").experiment_id

    (deleted,) = client.search_runs([experiment], "tags.model = 'replaced'", run_view_type=ViewType.DELETED_ONLY)
    assert deleted.info.run_name == "earlier" and deleted.data.tags["kdgat.replaced_by"] == first.run_id
