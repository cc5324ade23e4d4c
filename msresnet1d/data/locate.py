"""Where databases live: search order, the embedded sample fallback and PhysioNet downloads.

A *database* is a folder of WFDB records (``mitdb/``, ``cinc2017/``). :func:`find_database`
looks for one, in this order:

1. an explicit ``path``: the database folder itself, or a root holding ``<name>/`` (an error
   if it is neither);
2. ``$MSRESNET1D_DATA/<name>`` (``MSRESNET1D_DATA`` is a root holding ``mitdb/``, ``cinc2017/``...);
3. the repository's ``datasets/<name>`` (only in a source checkout, where ``datasets/`` exists);
4. ``<data home>/<name>``, where downloads go (see :func:`data_home`);
5. with ``download=True``: a download from PhysioNet into the data home;
6. otherwise, for ``mitdb`` only and when ``MSRESNET1D_DATA`` is not set: the embedded
   3-minute sample ``datasets/mitdb-sample``, with a warning, so that examples and smoke runs
   work offline. A set ``MSRESNET1D_DATA`` asks for the real database, so its absence is an error
   rather than a run on the sample.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import posixpath
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from tqdm.auto import tqdm

from .errors import DataError
from ..atomic import masked, move_folder

log = logging.getLogger(__name__)

DATA_ENV = "MSRESNET1D_DATA"

#: Databases that :func:`download_database` can fetch, as PhysioNet ``<project>/<version>``: the
#: version whose files the checksums of :data:`CHECKSUMS_DIR` list (a newer one would fail them).
PHYSIONET_PROJECTS: dict[str, str] = {"mitdb": "mitdb/1.0.0"}

#: Per downloadable database, ``<name>.sha256`` lists the SHA-256 of every file a download must
#: hold (``sha256sum`` format, from PhysioNet's own SHA256SUMS.txt).
CHECKSUMS_DIR = Path(__file__).resolve().parent / "checksums"

#: Embedded stand-ins used when the full database is not found (name -> folder in datasets/).
EMBEDDED_SAMPLES: dict[str, str] = {"mitdb": "mitdb-sample"}

#: Where each known database comes from, for error messages.
SOURCES: dict[str, str] = {
    "mitdb": "https://physionet.org/content/mitdb/1.0.0/",
    "cinc2017": "https://physionet.org/content/challenge-2017/1.0.0/ (training2017.zip; its training2017/ "
    "folder, with REFERENCE.csv, becomes cinc2017/)",
}


def env_path(variable: str) -> Path | None:
    """The folder environment variable ``variable`` names, a leading ``~`` expanded (the shell
    does not expand it in a quoted value or an ``.env`` file), or ``None`` when unset or empty."""
    value = os.environ.get(variable)
    return Path(value).expanduser() if value else None


def _how_to_supply(name: str, target: Path) -> str:
    return (
        f"Supply the data yourself: put the database folder at {target} (or set {DATA_ENV} to a folder "
        f"holding '{name}/'), or pass its path explicitly. Source: {SOURCES.get(name, 'https://physionet.org')}"
    )


def _how_to_download(name: str) -> str:
    return (f" Or download it (into {data_home() / name}, where it is found): msresnet1d download {name}, or "
            f"msresnet1d.data.download_database({name!r}) in Python." if name in PHYSIONET_PROJECTS else "")


@functools.lru_cache(maxsize=1)
def source_checkout() -> Path | None:
    """The repository this package runs from (a clone, installed editable or not at all): the
    folder above the package, when its ``pyproject.toml`` names the project ``msresnet1d``; None
    for an installed wheel or sdist, where that folder is ``site-packages``, whose ``datasets/``
    and ``experiments/`` would be other packages (Hugging Face's ``datasets``). Read once: the
    package does not move while it runs."""
    root = Path(__file__).resolve().parents[2]
    try:
        project = (root / "pyproject.toml").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return root if re.search(r'^name\s*=\s*"msresnet1d"\s*$', project, re.MULTILINE) else None


def repo_datasets_dir() -> Path | None:
    """The repository's ``datasets/`` folder, or ``None`` outside a source checkout (an installed
    wheel: :func:`source_checkout`)."""
    root = source_checkout()
    return root / "datasets" if root is not None and (root / "datasets").is_dir() else None


def data_home() -> Path:
    """Folder that receives downloads: ``$MSRESNET1D_DATA`` if set, else the repository's
    ``datasets/downloads/`` if ``datasets/`` is writable, else ``~/.cache/msresnet1d/data``."""
    env = env_path(DATA_ENV)
    if env is not None:
        return env
    datasets = repo_datasets_dir()
    if datasets is not None and os.access(datasets, os.W_OK):
        return datasets / "downloads"
    return Path.home() / ".cache" / "msresnet1d" / "data"


#: What :func:`is_record_name` refuses, for messages.
RECORD_NAME_RULE = ("a relative path inside the database folder (not absolute, not through ..), written one way "
                    "('100', not './100', '100/' or ' 100')")


def is_record_name(name: object) -> bool:
    """Whether ``name`` names a record inside a database folder, written one way only: a
    non-empty string, a relative path (PhysioNet's ``RECORDS`` may name sub-folders) without a
    ``..`` part, so that no record read from a config, checkpoint or ``RECORDS`` file lies outside
    the folder; and without ``.`` or empty parts or surrounding spaces, so that a record listed
    twice, or on both sides of a split, under two spellings (``A00001`` and ``./A00001``) is
    caught as one."""
    if not isinstance(name, str) or not name.strip() or "\0" in name or name != name.strip():
        return False
    parts = name.replace("\\", "/").split("/")
    return not (re.match(r"^[A-Za-z]:", name) or {"..", ".", ""} & set(parts))


def list_records(db_dir: str | os.PathLike[str]) -> list[str]:
    """Record names of a database folder: the lines of its ``RECORDS`` file if there is one,
    else the stems of its ``*.hea`` files, sorted. A ``RECORDS`` line naming a folder (``sub/``,
    PhysioNet's nested layout) stands for the records of that folder's own ``RECORDS``, named
    ``sub/<record>``.

    Raises :class:`DataError` if the folder does not exist or holds no record, if a ``RECORDS``
    names one outside it (an absolute path, or one through ``..``) or not written one way
    (``./100``: :func:`is_record_name`), or if a folder it names has no ``RECORDS``.
    """
    db_dir = Path(db_dir)
    if not db_dir.is_dir():
        raise DataError(f"database folder {db_dir} does not exist")
    if (db_dir / "RECORDS").is_file():
        names = _listed(db_dir, "", set(), None)
    else:
        names = sorted(path.stem for path in db_dir.glob("*.hea"))
    if not names:
        raise DataError(f"no WFDB records in {db_dir}: no RECORDS file and no .hea files")
    return names


def _listed(db_dir: Path, folder: str, seen: set[Path], listed_in: Path | None) -> list[str]:
    """The records ``<db_dir>/<folder>RECORDS`` lists (``folder`` named in ``listed_in``),
    relative to ``db_dir``, its folders' ``RECORDS`` followed (each folder once). Read as UTF-8
    with or without a byte-order mark (which a Windows editor writes, and which would otherwise
    begin the first name)."""
    records_file = db_dir / folder / "RECORDS"
    if not records_file.is_file():
        raise DataError(f"{records_file} is missing: {listed_in} lists folder {folder}, whose RECORDS file names "
                        "its records")
    seen.add(records_file.resolve())
    names = []
    for line in records_file.read_text(encoding="utf-8-sig").splitlines():
        if not line.strip():
            continue
        name = folder + line.strip()
        is_folder = name.endswith("/")  # any spelling of a folder inside, read as its plain one ("./": this folder)
        if is_folder:
            name = posixpath.normpath(name)
        if not (is_record_name(name) or (is_folder and name == ".")):
            raise DataError(f"{records_file} names record {line.strip()!r}: a RECORDS file lists the folder's own "
                            f"records, each {RECORD_NAME_RULE}")
        if not is_folder:
            names.append(name)
        elif (db_dir / name / "RECORDS").resolve() not in seen:  # a folder listing itself, or listed twice
            names.extend(_listed(db_dir, "" if name == "." else name + "/", seen, records_file))
    return names


def holds_records(path: Path) -> bool:
    """Whether folder ``path`` holds WFDB records (a ``RECORDS`` file or ``.hea`` files)."""
    return path.is_dir() and ((path / "RECORDS").is_file() or any(path.glob("*.hea")))


def find_database(name: str, path: str | os.PathLike[str] | None = None, *, download: bool = False) -> Path:
    """Folder of database ``name`` (e.g. ``"mitdb"``), searched in the order given in the module
    docstring. ``path``: the database folder, or a folder holding ``<name>/``; when given, the only
    place looked in. ``download``: fetch the database (:func:`download_database`, MIT-BIH only)
    when it is found nowhere, rather than falling back to the embedded sample. Raises
    :class:`DataError`, saying how to supply the data, when nothing is found."""
    if path is not None:
        path = Path(path).expanduser()
        if not path.exists():
            where = "" if path.is_absolute() else f" (a relative path is taken from the current folder, {Path.cwd()})"
            raise DataError(f"database '{name}': {path} does not exist{where}")
        for candidate in (path, path / name):
            if holds_records(candidate):
                return candidate
        raise DataError(f"database '{name}': {path} is not a folder of WFDB records, nor a folder holding "
                        f"'{name}/' with them")
    candidates = []
    env = env_path(DATA_ENV)
    if env is not None:
        candidates.append(env / name)
    datasets = repo_datasets_dir()
    if datasets is not None:
        candidates.append(datasets / name)
    candidates.append(data_home() / name)
    candidates = list(dict.fromkeys(candidates))
    for candidate in candidates:
        if holds_records(candidate):
            log.info("database '%s' found at %s", name, candidate)
            return candidate
    if download:
        return download_database(name)
    if env is not None:
        hint = (f" ({env} looks like the database folder itself: set {DATA_ENV} to the folder holding it)"
                if env.name == name else "")
        sample_note = (f"; the embedded sample is used only when {DATA_ENV} is unset" if name in EMBEDDED_SAMPLES
                       else "")
        raise DataError(
            f"database '{name}' not found (looked in {', '.join(map(str, candidates))}). {DATA_ENV} is set to "
            f"{env}, which holds no '{name}/' of WFDB records{hint}{sample_note}. "
            + _how_to_supply(name, data_home() / name) + _how_to_download(name)
        )
    sample = embedded_sample(name)
    if sample is not None:
        if holds_records(sample):
            warnings.warn(
                f"database '{name}' not found (looked in {', '.join(map(str, candidates))}); "
                f"using the embedded sample {sample} (first minutes of each record only). "
                f"For the full database set {DATA_ENV} to a folder holding '{name}/'." + _how_to_download(name),
                stacklevel=2,
            )
            return sample
    only_in_clone = (f" (the embedded sample of '{name}' that runs without it is in a clone of the repository only, "
                     "not in an installed package: clone it and pip install -e . there)"
                     if name in EMBEDDED_SAMPLES and sample is None else "")
    raise DataError(
        f"database '{name}' not found (looked in {', '.join(map(str, candidates))}){only_in_clone}. "
        + _how_to_supply(name, data_home() / name) + _how_to_download(name)
    )


def expected_checksums(name: str) -> dict[str, str]:
    """File name -> SHA-256 (hex) of every file a download of ``name`` must hold
    (:data:`CHECKSUMS_DIR`)."""
    lines = (CHECKSUMS_DIR / f"{name}.sha256").read_text(encoding="utf-8").splitlines()
    return {file: digest for digest, file in (line.split() for line in lines if line and not line.startswith("#"))}


def has_published_headers(folder: str | os.PathLike[str], records: Iterable[str], name: str = "mitdb") -> bool:
    """Whether the header of each of ``records`` in ``folder`` is database ``name``'s published
    one (:func:`expected_checksums`): a record it does not list, or a missing header, is not."""
    expected, folder = expected_checksums(name), Path(folder)
    return all(f"{record}.hea" in expected and (folder / f"{record}.hea").is_file()
               and hashlib.sha256((folder / f"{record}.hea").read_bytes()).hexdigest() == expected[f"{record}.hea"]
               for record in records)


def verify_checksums(folder: str | os.PathLike[str], expected: dict[str, str]) -> None:
    """Check that ``folder`` holds every file of ``expected`` (name -> SHA-256 hex) with that digest.

    Raises:
        DataError: naming the missing files, or each file whose digest differs (expected, found).
    """
    folder = Path(folder)
    missing = sorted(f for f in expected if not (folder / f).is_file())
    if missing:
        raise DataError(f"{folder}: {len(missing)} of {len(expected)} files missing ({', '.join(missing[:5])}"
                        + (", ..." if len(missing) > 5 else "") + ")")
    wrong = []
    for file, digest in expected.items():
        found = hashlib.sha256((folder / file).read_bytes()).hexdigest()
        if found != digest:
            wrong.append(f"{file}: SHA-256 {found}, expected {digest}")
    if wrong:
        raise DataError(f"{folder}: {len(wrong)} files differ from the published checksums ({'; '.join(wrong)})")


def changed_files(folder: str | os.PathLike[str], records: Iterable[str], name: str = "mitdb",
                  extensions: Sequence[str] = (".hea", ".atr")) -> list[str]:
    """The files ``<record><extension>`` in ``folder`` that differ from the published ones of
    database ``name`` (:func:`expected_checksums`; files it does not list, or absent, are not
    compared). Headers and annotations by default: small, and what sets the rate, gains, leads
    and labels read."""
    expected, folder = expected_checksums(name), Path(folder)
    files = [f"{record}{extension}" for record in records for extension in extensions]
    return [file for file in files if file in expected and (folder / file).is_file()
            and hashlib.sha256((folder / file).read_bytes()).hexdigest() != expected[file]]


def embedded_sample(name: str) -> Path | None:
    """The repository's embedded sample folder of database ``name`` (:data:`EMBEDDED_SAMPLES`), or
    None (no sample of it, or an installed wheel without ``datasets/``)."""
    datasets = repo_datasets_dir()
    return datasets / EMBEDDED_SAMPLES[name] if name in EMBEDDED_SAMPLES and datasets is not None else None


def is_embedded_sample(folder: str | os.PathLike[str], name: str) -> bool:
    """Whether ``folder`` is the repository's embedded sample of database ``name``."""
    sample = embedded_sample(name)
    return sample is not None and Path(folder).resolve() == sample.resolve()


@contextlib.contextmanager
def _wfdb_timeout(timeout_s: float) -> Iterator[None]:
    """Within the block, wfdb's HTTP requests that set no timeout (all of them, in wfdb 4) give
    up after ``timeout_s`` seconds of connecting or of waiting for data, so that a stalled
    connection ends in an error instead of hanging. wfdb keeps one ``requests`` session; its
    adapters are swapped for ones with this default and restored afterwards."""
    import requests.adapters
    from wfdb.io import _url

    class TimeoutAdapter(requests.adapters.HTTPAdapter):
        def send(self, request, timeout=None, **kwargs):  # type: ignore[override]
            return super().send(request, timeout=timeout_s if timeout is None else timeout, **kwargs)

    session = _url._get_session()
    saved = dict(session.adapters)
    for prefix in ("http://", "https://"):  # wfdb's own pool limits, kept
        session.mount(prefix, TimeoutAdapter(pool_maxsize=2, pool_block=True))
    try:
        yield
    finally:
        for adapter in session.adapters.values():
            adapter.close()
        session.adapters.clear()
        session.adapters.update(saved)


def download_database(name: str, target: str | os.PathLike[str] | None = None, *,
                      timeout_s: float = 60.0) -> Path:
    """Download PhysioNet database ``name`` with wfdb's downloader (``dl_full_file``, file by file,
    with a progress bar) into ``target`` (default ``data_home() / name``) and return ``target``.

    The files fetched are those of :func:`expected_checksums`, from the version they are the
    checksums of (:data:`PHYSIONET_PROJECTS`), under wfdb's ``config.db_index_url``
    (``https://physionet.org/files/``). They go to a temporary folder next to ``target`` and are
    checked against their published SHA-256 before that folder is flushed to disk and renamed into place;
    a failed or corrupt download leaves nothing behind and raises :class:`DataError` saying how
    to supply the data by hand. A connection that stalls for ``timeout_s`` seconds (connecting,
    or between two pieces of data: a slow but moving download is not cut) fails the download.
    """
    from wfdb.io import download as wfdb_download

    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be > 0 seconds, got {timeout_s!r}")
    target = Path(target) if target is not None else data_home() / name
    if name not in PHYSIONET_PROJECTS:
        raise DataError(
            f"database '{name}' cannot be downloaded automatically (known: "
            f"{', '.join(sorted(PHYSIONET_PROJECTS))}). " + _how_to_supply(name, target)
        )
    if holds_records(target):
        raise DataError(f"database '{name}' is already at {target} (find_database({name!r}) finds it there); "
                        "to download it again, move that folder away first")
    if target.exists() and not target.is_dir():
        raise DataError(f"database '{name}': download target {target} is a file, not a folder")
    if target.exists() and any(target.iterdir()):
        raise DataError(f"database '{name}': download target {target} exists and is not empty")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a file where a folder must go, or no permission
        file = next((p for p in (target.parent, *target.parent.parents) if p.exists() and not p.is_dir()), None)
        why = f"{file} is a file, not a folder" if file is not None else f"{e.strerror}: {e.filename}"
        raise DataError(f"database '{name}': cannot make the folder {target.parent} to download into ({why})") from None
    partial = Path(tempfile.mkdtemp(prefix=f".{name}-", suffix=".partial", dir=target.parent))
    url = posixpath.join(wfdb_download.config.db_index_url, PHYSIONET_PROJECTS[name], "")
    log.info("downloading '%s' from %s into %s", name, url, partial)
    expected = expected_checksums(name)
    try:
        with _wfdb_timeout(timeout_s):
            for file in tqdm(expected, desc=f"downloading {name}", unit="file", disable=None, leave=False):
                wfdb_download.dl_full_file(url + file, str(partial / file))
        verify_checksums(partial, expected)
    except BaseException as exc:  # network, HTTP and file errors all end the same way; Ctrl-C leaves nothing either
        shutil.rmtree(partial, ignore_errors=True)
        if not isinstance(exc, Exception):
            raise
        raise DataError(
            f"could not download database '{name}' from PhysioNet ({type(exc).__name__}: {exc}; the temporary "
            f"folder {partial} and what it held are deleted). " + _how_to_supply(name, target)
        ) from exc
    os.chmod(partial, masked(0o777))  # mkdtemp makes it 0700: give the usual permissions, as a mkdir would
    try:
        if target.exists():
            target.rmdir()  # empty, checked above
        move_folder(partial, target)
    except OSError as exc:  # a full disk found by a flush, say: nothing is left behind either
        shutil.rmtree(partial, ignore_errors=True)
        raise DataError(f"could not move the download of database '{name}' into {target} ({exc}; the temporary "
                        f"folder {partial} and what it held are deleted). " + _how_to_supply(name, target)) from exc
    log.info("database '%s' downloaded to %s", name, target)
    return target
