"""Atomic file writes: nothing half-written is ever left under the final name."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


#: The longest file name, in bytes, assumed where the system cannot say (Windows): most file systems' NAME_MAX.
NAME_MAX = 255
#: Characters of a long file name that its temporary files' names keep (:func:`atomic_paths`).
_KEPT = 32


def name_max(folder: str | os.PathLike[str]) -> int:
    """The longest file name, in bytes, that the file system of ``folder`` (an existing folder)
    takes: its ``NAME_MAX`` (``os.pathconf``), else :data:`NAME_MAX`."""
    try:
        limit = os.pathconf(folder, "PC_NAME_MAX")
    except (AttributeError, OSError, ValueError):  # no pathconf (Windows), or no answer
        return NAME_MAX
    return limit if limit > 0 else NAME_MAX


def masked(mode: int) -> int:
    """``mode`` less the process's umask: what ``open`` (``0o666``) or ``mkdir`` (``0o777``) gives a
    new file or folder, for one ``mkstemp`` or ``mkdtemp`` made private."""
    umask = os.umask(0)
    os.umask(umask)
    return mode & ~umask


class NotWritable(str):
    """:func:`uncreatable`'s answer (the message, a ``str`` as its others are) when the folder a
    file would be made in is there but this process may not write in it: the file could be
    written in another folder (:func:`check_target` raises :class:`FolderNotWritableError`)."""


class FolderNotWritableError(ValueError):
    """:func:`check_target`'s refusal of a file whose folder this process may not write in
    (:class:`NotWritable`): another folder would take it."""


def uncreatable(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` could not be created, or None: its nearest existing parent is a file
    ("<parent> is a file"), a symbolic link to nothing ("<parent> is a symbolic link to <target>,
    which does not exist") or a folder without write permission ("<parent> is not writable", a
    :class:`NotWritable`), or a name to create under it is longer than its file system takes
    (:func:`name_max`)."""
    path = Path(path).absolute()
    for parent in path.parents:
        try:
            if not parent.exists():
                if os.path.islink(parent):
                    return f"{parent} is a symbolic link to {os.readlink(parent)}, which does not exist"
                continue
        except OSError as e:
            if e.errno == errno.ENAMETOOLONG:  # a name below an existing folder: said once that folder is found
                continue
            return f"{parent.parent} is not searchable"  # a folder above without search permission
        if not parent.is_dir():
            return f"{parent} is a file"
        limit = name_max(parent)
        for name in path.relative_to(parent).parts:
            if len(os.fsencode(name)) > limit:
                return (f"the name {name[:40]}... is {len(os.fsencode(name))} bytes long, over the {limit}-byte limit "
                        f"of the file system of {parent}")
        return None if os.access(parent, os.W_OK | os.X_OK) else NotWritable(f"{parent} is not writable")
    return None


def file_version(path: str | os.PathLike[str]) -> tuple[int, int, int, int] | None:
    """What tells one version of the file at ``path`` from another, or None when there is none:
    its device, inode, size and modification time (ns), which a rewrite changes (a new file
    renamed over it, as :func:`atomic_paths` writes, is another inode)."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns


def unwritable(path: str | os.PathLike[str]) -> str | None:
    """Why a file could not be written at ``path``, or None: :func:`uncreatable`, a device, pipe or
    socket there or a symbolic link to one ("<path> is not a regular file ..."), or a file that
    this process may not write ("<path> is not writable ..."), write protection that ``open``
    honours and a rename would not (a symbolic link to a file is replaced, not its target: its
    target's permissions are not asked)."""
    problem = uncreatable(path)
    if problem is None and os.path.exists(path):  # through a link: its target
        if not os.path.isfile(path) and not os.path.isdir(path):  # a rename would replace the node or the link to it
            link = " (through a symbolic link)" if os.path.islink(path) else ""  # (--json /dev/stdout, as root)
            problem = f"{path} is not a regular file{link} (a device, a pipe or a socket): give a file"
        elif not os.path.islink(path) and not os.access(path, os.W_OK):
            problem = f"{path} is not writable (write-protected: make it writable, or give another file)"
    return problem


def check_target(path: str | os.PathLike[str], what: str) -> Path:
    """Raise ValueError, before any work, if a file could not be written at ``path`` (``what``
    names it for the message, e.g. "--json"): an existing folder there, or :func:`unwritable`
    (:class:`FolderNotWritableError` when the folder may not be written in). Returns ``path`` as
    a :class:`Path` (taken literally, as the file is written: the command's path flags expand a
    leading ``~``, :func:`~msresnet1d.arguments.path_flag`)."""
    path = Path(path)
    if os.path.isdir(path):
        raise ValueError(f"{what} {path} is a folder; give a file name")
    problem = unwritable(path)
    if problem:
        refusal = FolderNotWritableError if isinstance(problem, NotWritable) else ValueError
        raise refusal(f"{what} {path}: {problem}")
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
    one another. A file replaced keeps its permissions (a new one gets the umask's, as ``open``
    gives); ``suffix`` is a dot and lowercase letters or digits."""
    if not re.fullmatch(r"\.[a-z0-9]+", suffix):
        raise ValueError(f"atomic_paths: suffix must be a dot and lowercase letters or digits, got {suffix!r}")
    paths = [Path(path) for path in paths]
    tmps: list[Path] = []
    try:
        try:
            for path in paths:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temporary_prefix(path, suffix), suffix=suffix)
                os.close(fd)
                tmps.append(Path(tmp))
            yield tmps
            for tmp, path in zip(tmps, paths):
                _sync_file(tmp)
                os.chmod(tmp, _mode_of(path))  # mkstemp makes 0600 files
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


def _mode_of(path: Path) -> int:
    """The permissions a file written at ``path`` gets: those of the file there (through a
    symbolic link, its target's), else the umask's (:func:`masked`)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode) & 0o777  # not set-user-ID and the like, for new contents
    except OSError:  # none there (or a symbolic link to nothing)
        return masked(0o666)


def _temporary_prefix(path: Path, suffix: str) -> str:
    """The start of the names of :func:`atomic_paths`' temporary files for ``path``, which
    ``mkstemp`` follows with random characters, then ``suffix``: ``.<name>.``, or, where that
    would be over the folder's limit (:func:`name_max`), ``.<the name's first 32 characters>~.``."""
    prefix = f".{path.name}."
    if len(os.fsencode(f"{prefix}{'x' * 8}{suffix}")) > name_max(path.parent):  # mkstemp adds 8 characters
        prefix = f".{path.name[:_KEPT]}~."
    return prefix


def _temporary_pattern(path: Path) -> re.Pattern[str]:
    """The names :func:`atomic_paths` gives its temporary files for ``path`` (:func:`_temporary_prefix`,
    ``mkstemp``'s random characters, a suffix), whatever the suffix."""
    names = [re.escape(path.name), re.escape(path.name[:_KEPT]) + "~"]  # the short one on any file system
    return re.compile(rf"\.(?:{'|'.join(names)})\.[a-z0-9_]+\.[a-z0-9]+")


def temporary_files(path: str | os.PathLike[str]) -> list[Path]:
    """The temporary files of :func:`atomic_paths` for ``path`` in its folder (left by a process
    killed while writing ``path``): the names it gives them, and no others."""
    path = Path(path)
    try:
        names = os.listdir(path.parent)
    except OSError:  # no folder
        return []
    pattern = _temporary_pattern(path)
    return [path.parent / name for name in sorted(names) if pattern.fullmatch(name)]


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
        _temporary_pattern(path).fullmatch(Path(filename).name) is not None


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` atomically, as UTF-8 whatever the locale's encoding, and its line endings as
    given (Windows' text mode would add a carriage return to a CSV writer's, which has one). A file
    name that is not UTF-8 in it (a Latin-1 folder, which Python holds with surrogates) is written
    as its own bytes, as the file system names it."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8", errors="surrogateescape", newline="")


def write_bytes(path: str | os.PathLike[str], data: bytes, suffix: str = ".tmp") -> None:
    with atomic_path(path, suffix) as tmp:
        tmp.write_bytes(data)
