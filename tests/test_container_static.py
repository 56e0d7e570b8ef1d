"""containers/kdgat.def checked as text; built and tested with Apptainer when it is on PATH.

The image must keep a CUDA 12.x PyTorch with sm_70 kernels (V100), install the project from its
wheel with constraints.txt without replacing that torch, and carry `ps` for Nextflow's trace; the
YAML presets come inside the wheel.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEF = ROOT / "containers" / "kdgat.def"
SECTIONS = ("files", "post", "environment", "runscript", "test", "labels", "help")


def parse_def(text: str) -> tuple[dict[str, str], dict[str, str]]:
    """(header keywords, section name -> body) of an Apptainer definition file."""
    header_text, *rest = re.split(r"(?m)^%(?=\w)", text)
    header = dict(re.findall(r"(?m)^(\w+):\s*(\S.*?)\s*$", header_text))
    sections = {}
    for chunk in rest:
        name, _, body = chunk.partition("\n")
        assert name.strip() not in sections, f"%{name} twice"
        sections[name.strip()] = body
    return header, sections


HEADER, SECTION = parse_def(DEF.read_text())


def torch_pin() -> str:
    pins = dict(re.findall(r"(?m)^([\w-]+)==(\S+)$", (ROOT / "constraints.txt").read_text()))
    return pins["torch"]


def test_sections_present():
    assert HEADER["Bootstrap"] == "docker"
    for name in SECTIONS:
        assert SECTION.get(name, "").strip(), f"%{name} missing or empty"


def test_base_is_a_pinned_cuda12_pytorch_that_still_has_volta():
    found = re.fullmatch(r"pytorch/pytorch:(\d+\.\d+\.\d+)-cuda(\d+)\.(\d+)-cudnn\d+-runtime", HEADER["From"])
    assert found, f"pin an exact pytorch/pytorch runtime tag, not {HEADER['From']!r}"
    version, cuda_major, cuda_minor = found.group(1), int(found.group(2)), int(found.group(3))
    assert version == torch_pin(), "the image's torch must be the version constraints.txt pins"
    # sm_70 (V100): CUDA 13 builds have none and PyTorch >= 2.11 dropped it from cu128; cu126 keeps it.
    assert cuda_major == 12 and cuda_minor <= 6, f"cuda{cuda_major}.{cuda_minor} builds have no sm_70 kernels"


def test_project_installed_from_wheel_with_constraints_keeping_cuda_torch():
    files = SECTION["files"]
    assert re.search(r"(?m)^\s*dist\s+/opt/kdgat/dist\s*$", files)
    assert re.search(r"(?m)^\s*constraints\.txt\s+/opt/kdgat/constraints\.txt\s*$", files)
    post = SECTION["post"]
    assert "kdgat-*.whl" in post and "--no-cache-dir" in post
    assert "grep -v '^torch==' /opt/kdgat/constraints.txt > /opt/kdgat/constraints-image.txt" in post
    assert 'echo "torch==$TORCH" >> /opt/kdgat/constraints-image.txt' in post
    assert re.search(r"pip install [^\n]*-c /opt/kdgat/constraints-image\.txt", post)
    assert "pip check" in post
    assert "--no-deps" not in post, "dependencies come from the wheel's metadata, pinned by constraints"
    assert "apt-get install -y --no-install-recommends procps g++" in post, "trace needs ps, torch.compile g++"
    assert "rm -rf /var/lib/apt/lists/*" in post


def test_constraints_filter_drops_only_the_torch_pin():
    """The %post filter applied to the real constraints.txt keeps every other pin."""
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    kept = [line for line in lines if not re.match(r"^torch==", line)]
    assert len(kept) == len(lines) - 1
    assert any(line.startswith("torch-geometric==") for line in kept)


def test_presets_come_with_the_wheel_not_an_environment_variable(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
    )
    (wheel,) = tmp_path.glob("kdgat-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for preset in (
        "defaults.yaml",
        "datasets.yaml",
        "models/gat/large.yaml",
        "models/dqn/small.yaml",
        "auxiliaries/kd_standard.yaml",
    ):
        assert f"kdgat/presets/{preset}" in names, preset
    assert "KDGAT_CONFIG_DIR" not in SECTION["environment"] and "/opt/kdgat/config" not in SECTION["files"]
    # the pipeline sets no presets folder of its own: it passes on a user's ($KDGAT_CONFIG_DIR, whitelisted and bound)
    config = (ROOT / "nextflow.config").read_text()
    assert not re.search(r"KDGAT_CONFIG_DIR['\"]?\s*=", config) and "System.getenv('KDGAT_CONFIG_DIR')" in config
    for var in ("PYTHONNOUSERSITE=1", "PYTHONUNBUFFERED=1"):
        assert f"export {var}" in SECTION["environment"]
    environment = [line.strip() for line in SECTION["environment"].splitlines() if line.strip()]
    assert all(line.startswith(("export ", "#")) for line in environment), "%environment only exports"


def test_runscript_forwards_to_kdgat():
    assert [line.strip() for line in SECTION["runscript"].splitlines() if line.strip()] == ['exec kdgat "$@"']


def test_self_test_runs_without_gpu_and_checks_sm70():
    script = SECTION["test"]
    assert "kdgat --version" in script and "command -v ps" in script
    assert "kdgat config show" in script, "the presets must be found inside the installed package"
    python = re.search(r"python - <<'PY'\n(.*?)\nPY", script, flags=re.S)
    assert python, "%test runs its torch checks as a python heredoc"
    code = python.group(1)
    compile(code, "%test", "exec")
    assert "torch.cuda.is_available()" in code, "device checks only when a GPU is visible"
    assert code.count('"sm_70"') >= 2, "sm_70 checked in the compiled arch list and on the device"
    assert "torch._C._cuda_getArchFlags" in code


def test_labels_and_help():
    labels = dict(re.findall(r"(?m)^\s*(\S+)\s+(.+?)\s*$", SECTION["labels"]))
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert labels["org.opencontainers.image.version"] == version
    assert labels["org.opencontainers.image.title"] == "kdgat"
    assert labels["kdgat.torch"] == torch_pin()
    assert labels["org.opencontainers.image.base.name"].endswith(HEADER["From"])
    help_text = SECTION["help"]
    assert "apptainer exec --nv" in help_text and "-profile slurm,apptainer" in help_text


def test_pipeline_default_image_is_the_built_one():
    config = (ROOT / "nextflow.config").read_text()
    assert 'container = "${projectDir}/containers/kdgat.sif"' in config
    assert "apptainer build containers/kdgat.sif containers/kdgat.def" in DEF.read_text()


# --------------------------------------------------------------------------------------------------
# With Apptainer: test an existing image (KDGAT_SIF or containers/kdgat.sif), or build one when
# KDGAT_BUILD_SIF=1 (pulls the ~3 GB base image: minutes, needs the network).
# --------------------------------------------------------------------------------------------------

needs_apptainer = pytest.mark.skipif(shutil.which("apptainer") is None, reason="apptainer is not on PATH")


@pytest.fixture(scope="module")
def sif(tmp_path_factory) -> Path:
    given = Path(os.environ.get("KDGAT_SIF", ROOT / "containers" / "kdgat.sif"))
    if given.is_file():
        return given
    if os.environ.get("KDGAT_BUILD_SIF") != "1":
        pytest.skip(f"no image at {given}; set KDGAT_SIF, or KDGAT_BUILD_SIF=1 to build one")
    build = tmp_path_factory.mktemp("image")
    for name in ("constraints.txt", "config", "containers"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, build / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(build / "dist"), str(ROOT)],
        check=True,
    )
    image = build / "kdgat.sif"
    fakeroot = [] if os.geteuid() == 0 else ["--fakeroot"]
    subprocess.run(["apptainer", "build", *fakeroot, str(image), "containers/kdgat.def"], cwd=build, check=True)
    return image


@needs_apptainer
def test_image_self_test_passes(sif):
    result = subprocess.run(["apptainer", "test", str(sif)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "sm_70" in result.stdout


@needs_apptainer
def test_image_runs_kdgat_and_has_ps(sif):
    version = subprocess.run(["apptainer", "run", str(sif), "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("kdgat "), version.stderr
    ps = subprocess.run(["apptainer", "exec", str(sif), "ps", "-p", "1"], capture_output=True, text=True)
    assert ps.returncode == 0, ps.stderr
    cxx = subprocess.run(["apptainer", "exec", str(sif), "g++", "--version"], capture_output=True, text=True)
    assert cxx.returncode == 0, "torch.compile (kdgat evaluate --compile) needs g++: " + cxx.stderr
    labels = subprocess.run(["apptainer", "inspect", "--labels", str(sif)], capture_output=True, text=True)
    assert "org.opencontainers.image.title: kdgat" in labels.stdout
