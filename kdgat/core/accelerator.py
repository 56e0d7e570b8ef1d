"""Where training runs: Lightning's own choice (``auto``), the CPU, or a GPU that must be there (``gpu``).

With ``auto`` a cluster job that asked for a GPU and cannot use it (a container started without
``--nv``, a driver older than the build, a torch build without the card's kernels: V100 is sm_70,
which CUDA 13 builds dropped) trains on the CPU, silently, for hours. ``gpu`` stops such a job
before it reads any data, with one line saying what torch sees.
"""

from __future__ import annotations

import os

from kdgat.core.errors import KdgatError, UsageError

ACCELERATORS = ("auto", "cpu", "gpu")
ACCELERATOR_ENV = "KDGAT_ACCELERATOR"


def runs_on(capability: tuple[int, int], arch_list: list[str]) -> bool:
    """Whether a build with kernels for ``arch_list`` (``torch.cuda.get_arch_list()``) runs on a card of
    compute ``capability``: a cubin of the same major and a lower or equal minor version, or PTX
    (``compute_XY``) of a lower or equal version, which the driver compiles."""
    major, minor = capability
    for arch in arch_list:
        kind, _, version = arch.partition("_")
        if not version.isdigit() or len(version) < 2:
            continue
        built = (int(version[:-1]), int(version[-1]))
        if kind == "sm" and built[0] == major and built[1] <= minor:
            return True
        if kind == "compute" and built <= capability:
            return True
    return False


def resolve_accelerator(choice: str | None) -> str:
    """``choice`` (else ``$KDGAT_ACCELERATOR``, else ``auto``) as Lightning's accelerator; ``gpu`` is checked."""
    choice = (choice or os.environ.get(ACCELERATOR_ENV, "").strip() or "auto").lower()
    if choice not in ACCELERATORS:
        raise UsageError(f"--accelerator must be one of {', '.join(ACCELERATORS)}, not {choice!r}")
    if choice != "gpu":
        return choice
    import torch

    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "no CUDA (a CPU build)"
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        raise KdgatError(
            f"--accelerator gpu: torch {torch.__version__} ({build}) sees no GPU "
            f"(CUDA_VISIBLE_DEVICES={visible!r}); in Apptainer, is the container started with --nv?"
        )
    capability = torch.cuda.get_device_capability(0)
    arch_list = torch.cuda.get_arch_list()
    if arch_list and not torch.version.hip and not runs_on(capability, arch_list):  # ROCm names its archs gfx...
        name = torch.cuda.get_device_name(0)
        raise KdgatError(
            f"--accelerator gpu: this torch build has no kernels for the {name} (sm_{capability[0]}{capability[1]}); "
            f"it was built for {' '.join(arch_list)}: use a build for CUDA 12.x (containers/kdgat.def)"
        )
    return "gpu"
