"""Atomic file writes: nothing half-written is ever left under the final name."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def uncreatable(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` could not be created, or None: its nearest existing parent is a file
    ("<parent> is a file") or a folder without write permission ("<parent> is not writable")."""
    for parent in Path(path).absolute().parents:
        try:
            if not parent.exists():
                continue
        except OSError:  # a folder above without search permission
            return f"{parent.parent} is not searchable"
        if not parent.is_dir():
            return f"{parent} is a file"
        return None if os.access(parent, os.W_OK | os.X_OK) else f"{parent} is not writable"
    return None


def check_target(path: str | os.PathLike[str], what: str) -> Path:
    """Raise ValueError, before any work, if a file could not be written at ``path`` (``what``
    names it for the message, e.g. "--json"): an existing folder there, or :func:`uncreatable`.
    Returns ``path`` as a :class:`Path` (taken literally, as the file is written: ``~`` is the
    shell's to expand)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what} {path} is a folder; give a file name")
    problem = uncreatable(path)
    if problem:
        raise ValueError(f"{what} {path}: {problem}")
    return path


@contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success, flush it to disk, rename it over
    ``path`` (``os.replace``) and flush the folder's entries; on any error, delete it. The parent
    folder is created if needed.

    ``suffix`` is the temporary file's ending (some writers, e.g. matplotlib, choose the format by it).
    An OSError about the temporary file (a read-only folder), or one that names no file (a full
    disk), is raised naming ``path`` instead, the file the caller writes.
    """
    with atomic_paths(path, suffix=suffix) as (tmp,):
        yield tmp


@contextmanager
def atomic_paths(*paths: str | os.PathLike[str], suffix: str = ".tmp") -> Iterator[list[Path]]:
    """:func:`atomic_path` for files written together (a record's annotations and their CSV):
    every temporary file is flushed to disk before the first is renamed, so a failure before
    the renames (a full disk, found by a flush) replaces none of ``paths``; the renames follow
    one another."""
    paths = [Path(path) for path in paths]
    tmps: list[Path] = []
    try:
        try:
            for path in paths:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
                os.close(fd)
                tmps.append(Path(tmp))
            yield tmps
            umask = os.umask(0)
            os.umask(umask)
            for tmp in tmps:
                _sync_file(tmp)
                os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
            for tmp, path in zip(tmps, paths):
                os.replace(tmp, path)
            for folder in dict.fromkeys(path.parent for path in paths):
                _sync_folder(folder)
        finally:
            for tmp in tmps:
                with contextlib.suppress(OSError):  # each one, and the caller's error kept
                    tmp.unlink(missing_ok=True)
    except OSError as e:  # one about a temporary file, or none named (a full disk): name the destination
        if e.errno is not None:  # an OS error (a plain message is kept)
            named = sorted((path for path in paths if e.filename is None or _about_tmp(e.filename, path)),
                           key=lambda path: -len(path.name))  # the longest: .a.csv.x is a.csv's, not a's
            if named:
                destination = str(named[0]) if e.filename is not None or len(paths) == 1 else \
                    " or ".join(map(str, paths))
                if e.filename2 is not None:  # a rename's "tmp -> path": the destination once, not "path -> path"
                    raise OSError(e.errno, e.strerror, destination).with_traceback(e.__traceback__) from None
                e.filename = destination
        raise


def _sync_file(path: Path) -> None:
    """Flush ``path``'s data to disk. The file is opened for writing (not truncated): Windows'
    fsync (``_commit``) refuses a read-only handle; a file this process may only read is opened
    for reading (POSIX flushes through any handle)."""
    try:
        f = open(path, "r+b")
    except PermissionError:
        f = open(path, "rb")
    with f:
        os.fsync(f.fileno())


def _sync_folder(folder: Path) -> None:
    """Flush ``folder``'s entries to disk, so a rename into it survives a power cut (POSIX; where a
    folder cannot be opened or synced, e.g. on Windows, the rename stands as the OS keeps it)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def move_folder(folder: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Rename ``folder`` (files only, e.g. a download's temporary folder) to ``target``, durably:
    its files and its entries are flushed to disk first, and ``target``'s parent after, so a power
    cut leaves either no ``target`` or one whose files are whole."""
    folder = Path(folder)
    for file in folder.iterdir():
        _sync_file(file)
    _sync_folder(folder)
    os.replace(folder, target)
    _sync_folder(Path(target).parent)


def _about_tmp(filename: str | os.PathLike[str], path: Path) -> bool:
    """Whether ``filename`` is one of :func:`atomic_paths`' temporary files for ``path``."""
    return os.path.abspath(Path(filename).parent) == os.path.abspath(path.parent) and \
        Path(filename).name.startswith(f".{path.name}.")


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` atomically, as UTF-8 whatever the locale's encoding, and its line endings as
    given (Windows' text mode would add a carriage return to a CSV writer's, which has one)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="")


def write_bytes(path: str | os.PathLike[str], data: bytes, suffix: str = ".tmp") -> None:
    with atomic_path(path, suffix) as tmp:
        tmp.write_bytes(data)
