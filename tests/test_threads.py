"""kdgat.core.threads: every stage sizes torch's and BLAS's pools to what it was given."""

from __future__ import annotations

import pytest
import torch
from threadpoolctl import threadpool_info

from kdgat.core.errors import UsageError
from kdgat.core.threads import THREADS_ENV, available_cores, resolve_threads, set_threads


@pytest.fixture(autouse=True)
def _restore_threads():
    import os

    before, omp = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    yield
    set_threads(before)
    if omp is None:  # set_threads exports the count; put the environment back as it was
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = omp


def test_set_threads_sizes_torch_and_blas():
    assert set_threads(1) == 1
    assert torch.get_num_threads() == 1
    assert all(pool["num_threads"] == 1 for pool in threadpool_info())


def test_environment_and_default(monkeypatch):
    monkeypatch.setenv(THREADS_ENV, "3")
    assert resolve_threads(None) == 3 and resolve_threads(2) == 2  # the option wins over the environment
    monkeypatch.delenv(THREADS_ENV)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert resolve_threads(None) == available_cores() >= 1


@pytest.mark.parametrize("bad", [0, -2])
def test_bad_counts_are_usage_errors(bad, monkeypatch):
    with pytest.raises(UsageError, match="at least 1"):
        resolve_threads(bad)
    monkeypatch.setenv(THREADS_ENV, "many")
    with pytest.raises(UsageError, match=THREADS_ENV):
        resolve_threads(None)


def test_omp_num_threads_is_the_fallback(monkeypatch):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert resolve_threads(None) == 2
    monkeypatch.setenv(THREADS_ENV, "1")
    assert resolve_threads(None) == 1  # kdgat's own variable first


STAGE_COMMANDS = ["synth", "ingest", "graphs", "train", "fuse", "evaluate", "lake append", "lake build", "report",
                  "pipeline"]  # fmt: skip


@pytest.mark.parametrize("words", STAGE_COMMANDS)
def test_every_stage_command_takes_threads(words):
    import typer

    from kdgat.cli import app

    command = typer.main.get_command(app)
    for word in words.split():
        command = command.commands[word]
    assert any("--threads" in p.opts for p in command.params), f"kdgat {words} has no --threads"


def test_a_stage_sizes_the_pools_it_was_given(tmp_path, monkeypatch):
    import os

    from typer.testing import CliRunner

    from kdgat.cli import app
    from kdgat.core.threads import current_threads

    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # restored after the test
    set_threads(2)
    result = CliRunner().invoke(app, ["synth", "--out", str(tmp_path / "s"), "--duration", "1", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert current_threads() == 1 and torch.get_num_threads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"
    assert all(pool["num_threads"] == 1 for pool in threadpool_info())
