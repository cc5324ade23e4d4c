"""What a recorded result was made by: the command, the code, the library versions and the machine
(the ``provenance`` block of the JSON files the scripts under ``experiments/`` write).

Training is deterministic for a seed on one kind of CPU, but float32 kernels round differently on
other instruction sets: the main job's seed 0 (at 180 Hz, before 2026-12-07) gave DS2 S F1 39.0 on
an AVX2 machine and 22.7 on an AVX-512 one. ``cpu_capability`` says which a result came from.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
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
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


#: The package's folder (``msresnet1d/``): the code a result ran.
PACKAGE = Path(__file__).resolve().parents[1]


def git_commit(package: Path = PACKAGE) -> dict[str, Any]:
    """The commit checked out in the git repository whose ``msresnet1d/`` folder is ``package``, and
    whether its tracked files, ``experiments/results/`` aside (the scripts rewrite those), differ
    from it; None for both where the package is not a checkout's (an installed copy, even inside
    another repository) or git is missing."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(package), *args], capture_output=True, text=True, timeout=30,
                                  env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"})  # status takes no index lock
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    found = git("rev-parse", "--show-toplevel", "HEAD")  # None also in a repository without a commit
    top, commit = found.splitlines() if found else (None, None)
    if top is None or Path(top).resolve() / "msresnet1d" != Path(package).resolve():
        return {"commit": None, "uncommitted_changes": None}
    changes = git("status", "--porcelain", "--untracked-files=no", "--", ":(top,exclude)experiments/results")
    return {"commit": commit, "uncommitted_changes": None if changes is None else bool(changes)}


def data_files(folder: Path) -> list[Path]:
    """The files of ``folder`` the package's loaders read: for CinC 2017, ``REFERENCE.csv`` and the
    records it labels; for another WFDB database, the records it lists (``RECORDS``, else its
    headers); for Fashion-MNIST, its four IDX files (.gz, or unpacked). Other files (notes, other
    records, PhysioNet's extra folders) are not data read."""
    from ..data.fashion_mnist import present_files
    from ..data.locate import holds_records, list_records
    from ..data.records import record_files
    from ..data.rhythm import read_reference

    if (folder / "REFERENCE.csv").is_file():
        names, files = list(read_reference(folder)), [folder / "REFERENCE.csv"]
    elif holds_records(folder):
        names, files = list_records(folder), []
    else:
        return present_files(folder)
    return files + [path for paths in record_files(folder, names).values() for path in paths]  # the cache's too


def data_digest(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """Which data a result was computed on: ``folder`` (absolute), and the number, bytes and a
    SHA-256 of the files the loaders read there (:func:`data_files`), over their relative names
    (absolute for a file a header names elsewhere), sorted, and contents. Two folders with the
    same digest give the loaders the same records and labels, whatever else lies beside them; a
    file read that is added, removed or changed (a ``REFERENCE.csv`` of other labels, say) changes
    it.

    Raises:
        FileNotFoundError: ``folder`` is not a folder.
    """
    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise FileNotFoundError(f"data folder {folder} not found")
    files = sorted(data_files(folder))
    digest, size = hashlib.sha256(), 0
    for path in files:
        content = path.read_bytes()
        size += len(content)
        # a signal file a header names in another folder by its absolute path
        name = path.relative_to(folder).as_posix() if path.is_relative_to(folder) else path.as_posix()
        digest.update(f"{name}\0{hashlib.sha256(content).hexdigest()}\n".encode())
    return {"path": str(folder), "files": len(files), "bytes": size, "sha256": digest.hexdigest()}


def data_digest_or_error(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """:func:`data_digest`, or the folder with the error that stopped it: a result written after
    hours of training is not lost to a file that cannot be read at the end."""
    try:
        return data_digest(folder)
    except (OSError, ValueError) as e:  # DataError (a bad REFERENCE.csv) is a ValueError
        return {"path": str(folder), "error": f"{type(e).__name__}: {e}"}


def provenance(script: str | Path, argv: Sequence[str] | None, started: float,
               data: Sequence[str | os.PathLike[str] | Mapping[str, Any]] = ()) -> dict[str, Any]:
    """The command (``script``'s name under ``experiments/`` and its arguments: ``argv``, or the
    command line's when None), the git commit of the package's checkout (:func:`git_commit`) and
    its source hash, the Python, torch and numpy versions, the CPU, the data folders read
    (``data``, each as :func:`data_digest` gives it, or with the error that stopped it; an entry
    that is already such a mapping, from :func:`data_digest_or_error` when a long script started,
    is kept), and the start (``started``: seconds since the epoch, ``time.time()``), end and wall
    time of the program in seconds, for a result's JSON."""
    def utc(seconds: float) -> str:
        return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="seconds")

    now = time.time()
    return {"command": [f"experiments/{Path(script).name}", *(sys.argv[1:] if argv is None else argv)],
            **git_commit(), "code": code_version(), "python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "cpu": cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cpus_usable": usable_cpus(),
            "data": [dict(entry) if isinstance(entry, Mapping) else data_digest_or_error(entry) for entry in data],
            "started_utc": utc(started), "finished_utc": utc(now),
            "wall_s": round(now - started, 1)}
