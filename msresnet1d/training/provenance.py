"""What a recorded result was made by: the command, the code, the library versions and the machine
(the ``provenance`` block of the JSON files the scripts under ``experiments/`` write).

Training is deterministic for a seed on one kind of CPU, but float32 kernels round differently on
other instruction sets (AVX2 and AVX-512 pick other oneDNN kernels), and one seed's MIT-BIH S F1
moved by 16 points between the two: ``cpu_capability`` says which a result came from.
"""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.parallel import usable_cpus
from .checkpoint import code_version


def load_average() -> list[float] | None:
    """The system's 1, 5 and 15 minute load averages (None where the OS has none: Windows)."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux, else what :mod:`platform` says)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def git_commit(folder: str | Path) -> dict[str, Any]:
    """The commit checked out in the git repository holding ``folder`` and whether tracked files
    differ from it; None for both outside a repository or without git."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    changes = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "uncommitted_changes": None if changes is None else bool(changes)}


def provenance(script: str | Path, argv: Sequence[str] | None, started: float) -> dict[str, Any]:
    """The command (``script``'s name under ``experiments/`` and its arguments: ``argv``, or the
    command line's when None), the git commit and the package's source hash, the Python, torch and
    numpy versions, the CPU, and the start (``started``: seconds since the epoch, ``time.time()``),
    end and wall time of the program in seconds, for a result's JSON."""
    def utc(seconds: float) -> str:
        return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="seconds")

    now = time.time()
    return {"command": [f"experiments/{Path(script).name}", *(sys.argv[1:] if argv is None else argv)],
            **git_commit(Path(script).resolve().parent), "code": code_version(),
            "python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "cpu": cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cpus_usable": usable_cpus(),
            "started_utc": utc(started), "finished_utc": utc(now), "wall_s": round(now - started, 1)}
