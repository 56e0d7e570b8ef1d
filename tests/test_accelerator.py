"""`--accelerator`: a training that asks for a GPU and cannot use one stops at once, with the reason."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from kdgat.cli import app
from kdgat.core.accelerator import ACCELERATOR_ENV, resolve_accelerator, runs_on
from kdgat.core.errors import KdgatError, UsageError

VOLTA = (7, 0)  # V100, the cluster's card


@pytest.mark.parametrize(
    ("capability", "arch_list", "expected"),
    [
        (VOLTA, ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"], False),  # a CUDA 12.8+ build
        (VOLTA, ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"], True),  # a CUDA 12.6 build
        ((8, 6), ["sm_80"], True),  # a cubin runs on a later minor version of its major
        ((8, 6), ["sm_90", "compute_90"], False),
        ((9, 0), ["sm_80", "compute_80"], True),  # PTX, compiled by the driver for a later card
        ((7, 5), ["sm_70"], True),
        ((7, 0), ["sm_75"], False),
    ],
)
def test_which_builds_run_on_which_cards(capability, arch_list, expected):
    assert runs_on(capability, arch_list) is expected


def test_auto_and_cpu_pass_through_and_a_wrong_name_is_a_usage_error(monkeypatch):
    monkeypatch.delenv(ACCELERATOR_ENV, raising=False)
    assert resolve_accelerator(None) == "auto" and resolve_accelerator("CPU") == "cpu"
    with pytest.raises(UsageError, match="auto, cpu, gpu"):
        resolve_accelerator("tpu")


def test_gpu_without_a_visible_gpu_stops_with_the_reason(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with pytest.raises(KdgatError, match=r"sees no GPU \(CUDA_VISIBLE_DEVICES='0'\); in Apptainer, is the container"):
        resolve_accelerator("gpu")
    monkeypatch.setenv(ACCELERATOR_ENV, "gpu")  # the environment's choice is checked alike
    with pytest.raises(KdgatError, match="sees no GPU"):
        resolve_accelerator(None)


def test_gpu_on_a_card_the_build_has_no_kernels_for_stops_with_the_reason(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: VOLTA)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100-SXM2-32GB")
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: ["sm_75", "sm_80", "sm_90"])
    with pytest.raises(KdgatError, match=r"no kernels for the Tesla V100-SXM2-32GB \(sm_70\); it was built for sm_75"):
        resolve_accelerator("gpu")
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: ["sm_70", "sm_80"])
    assert resolve_accelerator("gpu") == "gpu"


def test_kdgat_train_stops_before_writing_anything(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "run"
    args = ["train", "-m", "gat", "-s", "small", "--graphs", str(tmp_path / "graphs"), "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--accelerator", "gpu"])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and "--accelerator gpu" in lines[0], result.stderr
    assert not out.exists()
    result = CliRunner().invoke(app, [*args, "--accelerator", "cpu"])  # goes on, to the missing store
    assert result.exit_code != 0 and "--accelerator" not in result.stderr and "graphs" in result.stderr


def test_kdgat_pipeline_stops_before_its_first_step(monkeypatch, tmp_path, data_root):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "campaign"
    args = ["pipeline", "-d", "crysys", "--data-root", str(data_root), "-o", str(out), "--accelerator", "gpu"]
    result = CliRunner().invoke(app, args)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and "sees no GPU" in lines[0], result.stderr
    assert not list(out.rglob("*.parquet"))  # nothing ingested
