"""Models compiled for inference with ``torch.compile`` (TorchInductor).

Why: on CPU the eager forward pass of these small-graph models is spent in many small gather,
multiply and scatter kernels that each walk an ``(edges, heads, channels)`` tensor; Inductor fuses
them into a few C++ loops (``bench/infer.py`` prints the speed-up on 2 threads). Compiling costs
tens of seconds once per process and model, so it pays off on large parts and long-running
detectors, not on small test sets; it stays opt-in (``kdgat evaluate --compile``).

Shapes are compiled as dynamic: node and edge counts change with every batch and must not
trigger a recompilation each time. On CPU Inductor needs a C++ compiler, found as ``$CXX`` or
``g++``; on CUDA, Triton needs a C compiler for its launcher stubs.
"""

from __future__ import annotations

import os
import shutil

import torch
from torch import nn

from kdgat.core.errors import KdgatError

__all__ = ["compile_for_inference"]


def check_compiler() -> None:
    cxx = os.environ.get("CXX", "g++")
    if shutil.which(cxx) is None:
        message = f"torch.compile needs a C++ compiler and {cxx!r} is not on PATH: install g++ or drop --compile"
        raise KdgatError(message)


def compile_for_inference(model: nn.Module) -> nn.Module:
    """``model`` in eval mode behind ``torch.compile(dynamic=True)``; same call signature, same outputs.

    Attributes and methods of ``model`` stay reachable through the returned wrapper (e.g.
    ``VGAE.graph_scores``), uncompiled. The compilation itself happens on the first call.
    """
    check_compiler()
    return torch.compile(model.eval(), dynamic=True)
