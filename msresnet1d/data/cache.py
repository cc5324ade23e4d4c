"""On-disk cache of preprocessed arrays.

An *entry* is a folder holding one ``<name>.npy`` per array and a ``manifest.json`` with the
entry's key, each array's shape, dtype and CRC-32, and the warnings the build gave (given again
on every load: a cached database warns as the records did). Entries load memory-mapped (the fastest
way numpy has to read arrays back; copy-on-write) and are checked against the manifest, so a truncated,
missing or corrupted file is detected: it gives a warning and the entry is rebuilt.

An entry's key hashes (sha256) three things, so a stale entry is never reused:

* the source files: signal files (:data:`SIGNAL_SUFFIXES`) by name, size and modification time
  (``st_mtime_ns``), cheap enough to check on every load, unlike a content hash of ~100 MB; every
  other file up to 1 MiB (headers, annotations, ``REFERENCE.csv``: small, and what sets the
  rate, gains, leads and labels) by name and content, so that an edited label is seen even when
  the edit kept the file's size and time (``cp -p``, ``rsync -a``, an archive's extraction);
* the parameters (any JSON-able mapping);
* the code version: the package version, the versions of numpy, scipy and wfdb (which
  filter, resample and parse), and the source of the modules that compute the arrays
  (:data:`CODE_MODULES`; any edit to them invalidates the cache).

Writes are atomic: the entry is written in a temporary folder next to it, then renamed into
place. Processes may build one entry at once (a cold cache, two runs started together): each
builds it, the first to finish writes it, and the others keep that entry (a valid one is never
replaced) and drop their copy. Entries for other keys are never deleted: clear the folder by hand
to reclaim space (and any ``.<entry>.*.tmp`` folder no process is writing, left by one killed mid-write).

Cache folder: the explicit argument, else ``$MSRESNET1D_CACHE``, else the repository's
``datasets/cache/`` if ``datasets/`` is writable, else ``~/.cache/msresnet1d/cache`` (beside
``~/.cache/msresnet1d/data``, where downloads go then: clearing the cache keeps them).

The cache is trusted as the data are: its checks find accidents (a damaged or partial file, a
stale entry), not tampering, since whoever can write an entry can write a matching manifest. It
holds no pickled object (``allow_pickle=False``), its array names are plain names (no path), and
replayed warnings lose control characters; do not share a cache folder others can write to.
"""

from __future__ import annotations

import builtins
import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from stat import S_ISREG

import numpy as np

from ..atomic import masked, move_folder
from .locate import env_path, repo_datasets_dir

log = logging.getLogger(__name__)

CACHE_ENV = "MSRESNET1D_CACHE"
MANIFEST = "manifest.json"

#: Modules whose source is part of the code version of cached arrays (what computes them).
CODE_MODULES = ("records", "preprocess", "aami", "rr", "beats", "rhythm")

#: Suffixes of the source files :func:`cache_key` fingerprints by size and modification time
#: (WFDB signal files: MIT-BIH's ``.dat``, CinC 2017's ``.mat``); others, by content, up to
#: :data:`CONTENT_HASHED_BYTES` (a larger one, a ``.dat.bak`` say, by size and time too).
SIGNAL_SUFFIXES = (".dat", ".mat")
CONTENT_HASHED_BYTES = 1 << 20

#: Characters of a database folder's name that its cache entries' names keep (:func:`entry_path`).
ENTRY_NAME_KEPT = 40

#: The warnings of a build that its entry keeps, to give again on load: about the data (a
#: library's deprecation is not).
KEPT_WARNINGS = (UserWarning, RuntimeWarning)


def cache_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The cache folder (see the module docstring for the order). Not created here."""
    if explicit is not None:
        return Path(explicit).expanduser()
    env = env_path(CACHE_ENV)
    if env is not None:
        return env
    datasets = repo_datasets_dir()
    if datasets is not None and os.access(datasets, os.W_OK):
        return datasets / "cache"
    return Path.home() / ".cache" / "msresnet1d" / "cache"  # beside data/, the downloads: clearing one keeps the other


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """Package version plus a hash of the source of :data:`CODE_MODULES` and of the versions of
    numpy, scipy and wfdb."""
    import scipy
    import wfdb

    libraries = f"numpy {np.__version__}, scipy {scipy.__version__}, wfdb {wfdb.__version__}"
    return versioned_hash([libraries.encode(), *(Path(__file__).with_name(f"{name}.py").read_bytes()
                                                 for name in CODE_MODULES)])


def versioned_hash(parts: Iterable[bytes]) -> str:
    """``<package version>+<the first 12 hex digits of the sha256 of parts, in order>``: a code
    version (this module's, of the arrays it caches; a checkpoint's, of the whole package)."""
    from msresnet1d import __version__

    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return f"{__version__}+{digest.hexdigest()[:12]}"


def cache_key(files: Iterable[Path], params: Mapping[str, object],
              contents: Mapping[Path, bytes] | None = None) -> str:
    """Hex sha256 of the files (signal files, and files over :data:`CONTENT_HASHED_BYTES`, by name,
    size and mtime_ns; others by name and content: see the module docstring), ``params`` and
    :func:`code_version`. ``contents``: the bytes of files the caller has read already (headers),
    hashed as they are rather than read again."""
    stats = []
    for file in map(Path, files):
        if contents is not None and file in contents:
            stats.append((file.name, hashlib.sha256(contents[file]).hexdigest()))
            continue
        stat = file.stat()
        if file.suffix not in SIGNAL_SUFFIXES and S_ISREG(stat.st_mode) and stat.st_size <= CONTENT_HASHED_BYTES:
            stats.append((file.name, hashlib.sha256(file.read_bytes()).hexdigest()))
        else:
            stats.append((file.name, stat.st_size, stat.st_mtime_ns))
    blob = json.dumps([stats, dict(params), code_version()], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def entry_path(folder: Path, database: Path, key: str) -> Path:
    """The entry for ``key`` of arrays of ``database`` (a database folder) in ``folder`` (the cache
    folder's ``beats/`` or ``rhythm/``): ``<the database folder's name>-<the key's first 16 hex
    digits>``, the name cut to its first :data:`ENTRY_NAME_KEPT` characters (a long one would be
    over the file system's limit with its temporary folder's; the key tells entries apart)."""
    return folder / f"{database.name[:ENTRY_NAME_KEPT]}-{key[:16]}"


def save_arrays(entry: Path, key: str, arrays: Mapping[str, np.ndarray],
                notes: Sequence[tuple[str, str]] = ()) -> None:
    """Write ``arrays`` as cache entry ``entry`` (a folder) for ``key``, atomically, with the
    warnings their build gave (``notes``: (category name, message) pairs), to give again on load."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{entry.name}.", suffix=".tmp"))
    try:
        tmp.chmod(masked(0o777))  # mkdtemp makes it private: as a mkdir would make it
        described = {}
        for name, array in arrays.items():
            array = np.ascontiguousarray(array)
            np.save(tmp / f"{name}.npy", array, allow_pickle=False)
            described[name] = {"shape": list(array.shape), "dtype": array.dtype.str, "crc32": zlib.crc32(array)}
        contents = {"key": key, "arrays": described, "warnings": [list(n) for n in notes]}
        (tmp / MANIFEST).write_text(json.dumps(contents), encoding="utf-8")
        if entry.exists():
            if load_arrays(entry, key, warn=False) is not None:  # another process wrote it meanwhile: keep it
                shutil.rmtree(tmp)
                return
            shutil.rmtree(entry)  # a corrupt entry being replaced
        move_folder(tmp, entry)  # its files flushed to disk first: a power cut leaves no entry of empty files
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if load_arrays(entry, key, warn=False) is None:
            raise
        # else another process wrote the same entry first: keep it
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_arrays(entry: Path, key: str, *, warn: bool = True) -> dict[str, np.ndarray] | None:
    """The arrays of cache entry ``entry`` for ``key``, or ``None`` if there is no such entry.

    Arrays are memory-mapped copy-on-write: the CRC-32 check reads each once, after which they are
    served from the page cache rather than copied into this process; writing to them changes this
    process's copy only, never the entry.

    A corrupt or partial entry (a file missing, truncated or not matching the manifest's shape,
    dtype or CRC-32, or another key) gives a warning and ``None``, so that the caller rebuilds it.
    """
    loaded = _load(entry, key, warn=warn)
    return None if loaded is None else loaded[0]


def _load(entry: Path, key: str, *, warn: bool = True) -> tuple[dict[str, np.ndarray], list[tuple[str, str]]] | None:
    """:func:`load_arrays`, and the warnings the entry's build gave (entries written before they
    were kept have none)."""
    if not entry.exists():
        return None
    try:
        manifest = json.loads((entry / MANIFEST).read_text(encoding="utf-8"))
        notes = [(str(category), _printable(str(message))) for category, message in manifest.get("warnings", [])]
        if manifest["key"] != key:
            raise ValueError(f"it holds key {manifest['key'][:16]}..., expected {key[:16]}...")
        arrays = {}
        for name, expected in manifest["arrays"].items():
            if not name.isidentifier():
                raise ValueError(f"its array name {name!r} is not a plain name")
            array = np.load(entry / f"{name}.npy", mmap_mode="c", allow_pickle=False)
            found = {"shape": list(array.shape), "dtype": array.dtype.str, "crc32": zlib.crc32(array)}
            if found != expected:
                raise ValueError(f"{name}.npy has {found}, the manifest says {expected}")
            arrays[name] = np.asarray(array)  # a plain ndarray view of the map
    # JSONDecodeError is a ValueError; an empty .npy (what a power cut can leave) an EOFError
    except (OSError, ValueError, KeyError, TypeError, EOFError) as exc:
        if warn:
            warnings.warn(
                f"cache entry {entry} is corrupt or partial ({type(exc).__name__}: {exc}); rebuilding it",
                RuntimeWarning,
                stacklevel=2,
            )
        return None
    return arrays, notes


def _printable(message: str) -> str:
    """``message`` without control characters but newlines and tabs (an edited manifest's terminal
    escapes would otherwise reach the terminal as given)."""
    return "".join(c for c in message if c in "\n\t" or c.isprintable())


def cached(entry: Path, key: str, build: Callable[[], Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The arrays of cache entry ``entry`` for ``key``, built with ``build()`` and saved first
    if the entry is missing or corrupt. The warnings of the build (a truncated annotation file,
    a flat lead, samples failing their checksums...) are kept with the entry and given again on
    every load, so that a cached database warns as it did when it was read."""
    loaded = _load(entry, key)
    if loaded is not None:
        arrays, notes = loaded
        for category, message in notes:
            warnings.warn(message, _warning_category(category), stacklevel=2)
        return arrays
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # all of them kept with the entry, whatever the filters of this build
        arrays = dict(build())
    for given in caught:  # through the caller's filters, before the entry is saved (-W error: none saved)
        warnings.warn_explicit(given.message, given.category, given.filename, given.lineno)
    try:
        save_arrays(entry, key, arrays, [(given.category.__name__, str(given.message)) for given in caught
                                         if issubclass(given.category, KEPT_WARNINGS)])
    except OSError as e:  # a full disk or a read-only cache: the arrays are built, go on without
        cause = f"{e}: a full disk, or a file-size limit?" if e.errno is None else str(e)  # numpy's says neither
        warnings.warn(f"cache entry {entry} could not be written ({cause}); going on without caching it (point "
                      f"{CACHE_ENV} at a folder with room, or set [data] cache = false)", stacklevel=2)
    else:
        log.debug("cached %s", entry)
    return arrays


def _warning_category(name: str) -> type[Warning]:
    """The built-in warning class of that name (the data layer warns with those), else UserWarning."""
    category = getattr(builtins, name, None)
    return category if isinstance(category, type) and issubclass(category, Warning) else UserWarning
