"""Experiment tracking: one MLflow run per stage, safe when several processes share a SQLite store.

This module's one reason to change is talking to MLflow. The store is chosen once
(:func:`resolve_tracking_uri`): ``$MLFLOW_TRACKING_URI``, else the configured URI, else a SQLite
file beside the stage outputs, ``sqlite:///<outdir>/mlruns.db`` with artifacts in
``<outdir>/mlartifacts``. A stage logs through :class:`StageRun`::

    with StageRun(uri, run_name="gat-small", tags={"dataset": "daga_v40", "stage": "train"},
                  params=config) as run:
        run.log_metrics({"val_f1": 0.93}, step=epoch)
        run.log_artifact(manifest_path)
        run.log_dict(config, "config.json")

Concurrent writers (pitfall C.8). Several jobs writing one SQLite file collide ("database is
locked"), and jobs that open a fresh file together race on MLflow's schema migration ("duplicate
column name", "table ... already exists"; a torn migration can leave the file unusable). So:

- opening a ``sqlite:///`` store holds an exclusive ``flock`` on ``<db>.lock``, which serialises
  the schema creation between processes;
- every MLflow call is retried on those errors with jittered exponential backoff within
  :data:`RETRY_BUDGET_S`, then fails with one :class:`~kdgat.core.errors.KdgatError` line naming the
  store; other errors propagate at once;
- the experiment is got-or-created, tolerating another process creating it first.

MLflow already sets ``PRAGMA busy_timeout = 20000`` on every session; it offers no URI or engine
option for WAL, and WAL is unsafe on network filesystems (pitfall C.9), so the journal mode is
left alone. Runs are logged with :class:`mlflow.MlflowClient`, never the fluent API, so no
system-metrics sampler (and no global active run) is ever started.

``mlflow`` is imported inside the functions: ``import kdgat.core.tracking`` stays cheap.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from kdgat.core.atomic import ensure_folder
from kdgat.core.errors import KdgatError
from kdgat.core.locks import flock

__all__ = [
    "ARTIFACT_DIR",
    "DB_NAME",
    "ENV_URI",
    "RETRY_BUDGET_S",
    "StageRun",
    "artifact_location",
    "find_runs",
    "flatten_params",
    "resolve_tracking_uri",
]

ENV_URI = "MLFLOW_TRACKING_URI"
DB_NAME = "mlruns.db"
ARTIFACT_DIR = "mlartifacts"
EXPERIMENT = "kdgat"
RETRY_BUDGET_S = 60.0
TRUNCATED_TAG = "kdgat.truncated_params"
REPLACED_BY_TAG = "kdgat.replaced_by"
RETRIES_TAG = "kdgat.tracking_retries"
TRUNCATED_ARTIFACT = "truncated_params.json"

_FIRST_DELAY_S = 0.05
_MAX_DELAY_S = 2.0
_SQLITE_PREFIX = "sqlite:///"
# Lower-cased fragments of the errors a concurrent writer or a concurrent schema creation causes.
_TRANSIENT = (
    "database is locked",
    "database schema is locked",
    "database table is locked",
    "duplicate column",
    "already exists",
    "online migration expected",
    "unique constraint failed: experiments.",
)

_log = logging.getLogger(__name__)
T = TypeVar("T")


def metric_key(name: object) -> str:
    """``name`` as MLflow accepts a metric key: a scenario named after its capture ('my capture (1)') may hold
    characters MLflow refuses (it failed the evaluation after scoring); each becomes '_'."""
    return re.sub(r"[^\w\-. :/]", "_", str(name))


def resolve_tracking_uri(configured: str | None, outdir: str | Path) -> str:
    """``$MLFLOW_TRACKING_URI`` if set, else ``configured``, else ``sqlite:///<outdir>/mlruns.db``."""
    env = os.environ.get(ENV_URI, "").strip()
    if env:
        return env
    if configured and configured.strip():
        return configured.strip()
    return _SQLITE_PREFIX + str(Path(outdir).resolve() / DB_NAME)


def artifact_location(uri: str) -> str | None:
    """Where new experiments of a ``sqlite:///`` store keep artifacts: ``mlartifacts`` beside the file.

    ``None`` for other stores (a tracking server decides for itself).
    """
    db = _sqlite_path(uri)
    return None if db is None else str(db.parent / ARTIFACT_DIR)


def flatten_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mapping -> ``{"a.b.c": "value"}``; lists and other non-scalars as compact JSON."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten_params(value, prefix=f"{name}."))
        elif isinstance(value, str):
            flat[name] = value
        elif value is None or isinstance(value, bool | int | float):
            flat[name] = str(value)
        else:
            flat[name] = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return flat


class StageRun:
    """Context manager around one MLflow run; ends it FINISHED, or FAILED when an exception escapes.

    ``tags`` are set on the run as strings; ``params`` (nested allowed) are flattened to dotted keys
    and logged in batches of MLflow's per-call limit. A value longer than MLflow's limit is cut;
    the cut keys are listed in the ``kdgat.truncated_params`` tag and the full values stored as the
    ``truncated_params.json`` artifact. Retries that were needed are counted in ``retries`` and, if
    any, in the ``kdgat.tracking_retries`` tag.

    ``replaces``: tags (a subset of ``tags``) that name the result this run records, e.g. its output folder.
    Once the run has FINISHED, earlier runs of the experiment with those tags are deleted (MLflow's soft delete:
    ``mlflow runs restore`` brings one back), each tagged ``kdgat.replaced_by`` with this run's id. A stage run
    again into the same folder replaced its files; its MLflow runs doubled, which a mean over runs counted twice.
    """

    def __init__(
        self,
        uri: str,
        *,
        experiment: str = EXPERIMENT,
        run_name: str | None = None,
        tags: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        retry_budget_s: float = RETRY_BUDGET_S,
        replaces: Mapping[str, Any] | None = None,
    ):
        self.uri = uri
        self.replaces = {str(k): str(v) for k, v in (replaces or {}).items()}
        self.experiment = experiment
        self.run_name = run_name
        self.tags = {str(k): str(v) for k, v in (tags or {}).items()}
        self.params = flatten_params(params or {})
        self.retry_budget_s = retry_budget_s
        self.retries = 0
        self.run_id: str | None = None
        self.artifact_uri: str | None = None
        self._client: Any = None
        self._started_ms: int | None = None
        self._ended = False

    # -- context -----------------------------------------------------------------------------
    def __enter__(self) -> StageRun:
        self._client = _open_client(self.uri, self._count, self.retry_budget_s)
        client, name = self._client, self.experiment
        experiment_id = self._call("get experiment", lambda: _get_or_create_experiment(client, name, self.uri))
        run = self._call("create run", lambda: client.create_run(experiment_id, run_name=self.run_name, tags=self.tags))
        self.run_id, self.artifact_uri = run.info.run_id, run.info.artifact_uri
        self._started_ms = run.info.start_time
        try:
            self._log_params()
        except BaseException as exc:
            self.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        status = "FINISHED" if exc is None else "FAILED"
        self._ended = True
        try:
            if self.retries:
                self._call("set tag", lambda: self._client.set_tag(self.run_id, RETRIES_TAG, str(self.retries)))
            self._call("end run", lambda: self._client.set_terminated(self.run_id, status=status))
            if exc is None and self.replaces:
                self._replace_earlier()
        except Exception as tracking_exc:
            if exc is None:
                raise
            exc.add_note(f"(and the run could not be marked {status}: {tracking_exc})")
        return False

    # -- logging -----------------------------------------------------------------------------
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric
        from mlflow.utils.validation import MAX_METRICS_PER_BATCH

        run_id = self._active()
        now = int(time.time() * 1000)
        items = [Metric(metric_key(k), float(v), now, int(step or 0)) for k, v in metrics.items()]
        for chunk in _chunks(items, MAX_METRICS_PER_BATCH):
            self._call("log metrics", lambda c=chunk: self._client.log_batch(run_id, metrics=c))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        run_id = self._active()
        self._call("log artifact", lambda: self._client.log_artifact(run_id, str(path), artifact_path))

    def log_dict(self, obj: Any, artifact_file: str) -> None:
        run_id = self._active()
        self._call("log dict", lambda: self._client.log_dict(run_id, obj, artifact_file))

    # -- internals ---------------------------------------------------------------------------
    def _replace_earlier(self) -> None:
        """Best effort: the run is logged whatever happens here. Only runs that started before this one and are
        no longer running are replaced: two processes logging the same folder at once each keep their own run
        (deleting a live run would fail its next call)."""
        client, run_id = self._client, self.run_id
        try:
            found = self._call("search runs", lambda: _search(client, self.experiment, self.replaces))
            earlier = [r for r in found if r.info.run_id != run_id and r.info.status != "RUNNING"
                       and r.info.start_time is not None and r.info.start_time <= self._started_ms]  # fmt: skip
            for run in earlier:
                self._call("set tag", lambda r=run: client.set_tag(r.info.run_id, REPLACED_BY_TAG, run_id))
                self._call("delete run", lambda r=run: client.delete_run(r.info.run_id))
        except Exception as exc:  # another process replaced them first, or the store refused: they stay
            _log.warning("tracking store %s: earlier runs of %s not replaced: %s", self.uri, self.replaces, exc)

    def _active(self) -> str:
        if self.run_id is None or self._ended:
            raise RuntimeError("StageRun is used outside its `with` block")
        return self.run_id

    def _count(self, n: int = 1) -> None:
        self.retries += n

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        return _retry(fn, what=what, uri=self.uri, on_retry=self._count, budget_s=self.retry_budget_s)

    def _log_params(self) -> None:
        from mlflow.entities import Param
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH, MAX_TAG_VAL_LENGTH

        run_id = self._active()
        truncated = {k: v for k, v in self.params.items() if len(v) > MAX_PARAM_VAL_LENGTH}
        items = [Param(k, v[:MAX_PARAM_VAL_LENGTH]) for k, v in self.params.items()]
        for chunk in _chunks(items, MAX_PARAMS_TAGS_PER_BATCH):
            self._call("log params", lambda c=chunk: self._client.log_batch(run_id, params=c))
        if truncated:
            _log.warning("params longer than %d characters were cut: %s", MAX_PARAM_VAL_LENGTH, ", ".join(truncated))
            listed = ",".join(truncated)[:MAX_TAG_VAL_LENGTH]
            self._call("set tag", lambda: self._client.set_tag(run_id, TRUNCATED_TAG, listed))
            self.log_dict(truncated, TRUNCATED_ARTIFACT)


def find_runs(
    uri: str, experiment: str = EXPERIMENT, *, retry_budget_s: float = RETRY_BUDGET_S, **tags: Any
) -> list[dict[str, Any]]:
    """Runs of ``experiment`` whose tags equal ``tags``, oldest first, as plain dicts.

    Each dict has ``run_id``, ``run_name``, ``status``, ``start_time``, ``end_time`` (ms),
    ``artifact_uri``, ``tags``, ``params`` and ``metrics`` (latest value per key). A ``sqlite:///``
    store that does not exist yet has no runs (and is not created).
    """
    db = _sqlite_path(uri)
    if db is not None and not db.exists():
        return []
    client = _open_client(uri, lambda n=1: None, retry_budget_s)
    runs = _retry(lambda: _search(client, experiment, tags), what="search runs", uri=uri, budget_s=retry_budget_s)
    return [
        {
            "run_id": r.info.run_id,
            "run_name": r.info.run_name,
            "status": r.info.status,
            "start_time": r.info.start_time,
            "end_time": r.info.end_time,
            "artifact_uri": r.info.artifact_uri,
            "tags": dict(r.data.tags),
            "params": dict(r.data.params),
            "metrics": dict(r.data.metrics),
        }
        for r in runs
    ]


def _search(client: Any, experiment: str, tags: Mapping[str, Any]) -> list[Any]:
    """The active runs of ``experiment`` whose tags equal ``tags``, oldest first."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    quotable = {k: str(v) for k, v in tags.items() if not ("'" in str(v) and '"' in str(v))}
    runs, token = [], None
    while True:
        page = client.search_runs(
            [found.experiment_id],
            filter_string=" and ".join(f"tags.`{k}` = {_quote(v)}" for k, v in quotable.items()),
            order_by=["attributes.start_time ASC"],
            max_results=1000,
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:  # a value the filter cannot quote is compared here
            return [r for r in runs if all(r.data.tags.get(k) == str(v) for k, v in tags.items())]


# -- store access and retries -----------------------------------------------------------------
def _sqlite_path(uri: str) -> Path | None:
    if not uri.startswith(_SQLITE_PREFIX):
        return None
    path = uri.removeprefix(_SQLITE_PREFIX).split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path).resolve()


def _open_client(uri: str, on_retry: Callable[[int], None], budget_s: float) -> Any:
    """A client whose store is open; the first open of a fresh SQLite file creates the schema."""
    from mlflow import MlflowClient

    def open_store() -> Any:
        client = MlflowClient(tracking_uri=uri)  # builds (and on a fresh file migrates) the store
        client.search_experiments(max_results=1)
        return client

    if _sqlite_path(uri) is not None:
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401  (seconds of imports: not under the lock)

    from mlflow.exceptions import MlflowException

    try:
        with _store_lock(uri, budget_s):
            return _retry(open_store, what="open", uri=uri, on_retry=on_retry, budget_s=budget_s)
    except MlflowException as exc:  # a store MLflow refuses (e.g. a file:// store): its words, on one line
        said = " ".join(str(exc).split()) or type(exc).__name__
        raise KdgatError(f"tracking store {uri}: MLflow cannot open it: {said}") from None


_NO_LOCK_HINT = (
    "put the SQLite tracking store on a local disk, or use a tracking server (--tracking-uri http://..., "
    "--tracking_uri in the Nextflow pipeline)"
)


@contextmanager
def _store_lock(uri: str, budget_s: float) -> Iterator[None]:
    """Exclusive ``flock`` on ``<db>.lock`` while a process opens (and maybe migrates) a SQLite store."""
    db = _sqlite_path(uri)
    if db is None:
        yield
        return
    import fcntl

    ensure_folder(db.parent)
    deadline = time.monotonic() + budget_s
    with open(db.with_name(db.name + ".lock"), "a") as handle:
        while True:
            try:
                flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB, hint=_NO_LOCK_HINT)
                break
            except BlockingIOError as exc:
                if time.monotonic() > deadline:
                    raise KdgatError(f"tracking store {uri}: {handle.name} stayed locked for {budget_s:.0f} s") from exc
                time.sleep(random.uniform(0.02, 0.1))
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _is_transient(exc: BaseException) -> bool:
    """A lock or schema-creation race somewhere in the exception's cause chain."""
    import sqlalchemy.exc
    from mlflow.exceptions import MlflowException

    kinds = (sqlite3.Error, sqlalchemy.exc.SQLAlchemyError, MlflowException)
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        err = stack.pop()
        if err is None or id(err) in seen:
            continue
        seen.add(id(err))
        text = str(err).lower()
        if isinstance(err, kinds) or type(err).__name__ == "CommandError":  # alembic's
            if any(marker in text for marker in _TRANSIENT):
                return True
        stack += [err.__cause__, err.__context__]
    return False


def _retry(
    fn: Callable[[], T],
    *,
    what: str,
    uri: str,
    on_retry: Callable[[int], None] | None = None,
    budget_s: float = RETRY_BUDGET_S,
) -> T:
    """``fn()``, repeated after transient store errors with full-jitter exponential backoff."""
    deadline = time.monotonic() + budget_s
    delay, attempts = _FIRST_DELAY_S, 0
    while True:
        try:
            return fn()
        except Exception as exc:
            if not _is_transient(exc):
                raise
            attempts += 1
            left = deadline - time.monotonic()
            if left <= 0:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
                raise KdgatError(
                    f"tracking store {uri}: {what} still failing after {attempts} attempts in {budget_s:.0f} s: {first}"
                ) from exc
            if on_retry is not None:
                on_retry(1)
            _log.debug("tracking store %s: %s failed (%s), retry %d", uri, what, type(exc).__name__, attempts)
            time.sleep(min(left, random.uniform(0.0, delay)))
            delay = min(delay * 2, _MAX_DELAY_S)


def _get_or_create_experiment(client: Any, name: str, uri: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is None:
        # If another process creates it first this raises "already exists", which _retry treats
        # as transient: the next attempt finds it.
        return client.create_experiment(name, artifact_location=artifact_location(uri))
    if found.lifecycle_stage != "active":
        raise KdgatError(f"tracking store {uri}: experiment {name!r} is deleted; restore it or use another name")
    return found.experiment_id


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _quote(value: str) -> str:
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ValueError(f"a tag value to search for cannot hold both quote characters: {value!r}")
