"""kdgat.core.threads: every stage sizes torch's and BLAS's pools to what it was given."""

from __future__ import annotations

import pytest
import torch
from threadpoolctl import threadpool_info

from kdgat.core.errors import UsageError
from kdgat.core.threads import THREADS_ENV, available_cores, resolve_threads, set_threads


@pytest.fixture(autouse=True)
def _restore_threads():
    before = torch.get_num_threads()
    yield
    set_threads(before)


def test_set_threads_sizes_torch_and_blas():
    assert set_threads(1) == 1
    assert torch.get_num_threads() == 1
    assert all(pool["num_threads"] == 1 for pool in threadpool_info())


def test_environment_and_default(monkeypatch):
    monkeypatch.setenv(THREADS_ENV, "3")
    assert resolve_threads(None) == 3 and resolve_threads(2) == 2  # the option wins over the environment
    monkeypatch.delenv(THREADS_ENV)
    assert resolve_threads(None) == available_cores() >= 1


@pytest.mark.parametrize("bad", [0, -2])
def test_bad_counts_are_usage_errors(bad, monkeypatch):
    with pytest.raises(UsageError, match="at least 1"):
        resolve_threads(bad)
    monkeypatch.setenv(THREADS_ENV, "many")
    with pytest.raises(UsageError, match=THREADS_ENV):
        resolve_threads(None)
