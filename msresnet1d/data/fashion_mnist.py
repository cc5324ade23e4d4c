"""Fashion-MNIST (Zalando Research, 2017): 28x28 grey-scale images of 10 clothing classes.

The four original gzip-compressed IDX files are parsed with numpy (no torchvision), checked
against the official MD5s, and served as in-memory tensors:

- :func:`load_fashion_mnist` -> images uint8 (N, 28, 28) in [0, 255], labels int64 (N,) in [0, 9];
  N = 60,000 (``split="train"``) or 10,000 (``split="test"``).
- :class:`FashionMNIST` wraps one split as a ``torch.utils.data.Dataset`` and can hand out a fast
  :class:`~msresnet1d.data.loader.TensorBatchLoader`.
- :class:`ImageBatchTransform` turns a uint8 batch into float32 (B, 1, H, W) with the textbook's
  resize, a normalisation and optional batch-wise augmentation.
- :func:`fashion_mnist_loaders` builds the textbook's (d2l) train and test loaders.

Where the files are looked for, in order (a folder is used when it holds both files of the split,
each as the .gz file or unpacked, without the .gz suffix, as ``gunzip`` leaves it):

1. ``root``, if given: the folder holding the .gz files, or its ``fashion-mnist/``, and nowhere
   else (``msresnet1d train --data-dir``; a folder named explicitly is never replaced by another copy);
2. otherwise ``$MSRESNET1D_DATA/fashion-mnist``;
3. the repository's ``datasets/fashion-mnist`` (:data:`REPO_DATA_DIR`), or in an installed
   package the download folder's ``fashion-mnist/`` (``~/.cache/msresnet1d/data/``);
4. Debian's ``dataset-fashion-mnist`` package, :data:`DEBIAN_DATA_DIR`;
5. only with ``download=True`` (``--set data.download=true``; ``msresnet1d download
   fashion-mnist`` fetches them before a run): the official mirrors
   (:data:`MIRRORS`), into ``root`` if given, else :func:`default_download_dir`:
   ``$MSRESNET1D_DATA/fashion-mnist`` if set, else the folder of 3.

A file is accepted if its MD5 is the official one, or if its decompressed content has the official
uncompressed MD5 (Debian's package rewrites the gzip headers, which changes the file MD5 only); an
unpacked file, if it has the uncompressed MD5. Where both are present the .gz file is read.
Missing, corrupt or undownloadable files raise :class:`~msresnet1d.data.errors.DataError` (or a
subclass) naming the file or the folders; bad arguments raise ``ValueError``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import http.client
import logging
import math
import os
import socket
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..atomic import write_bytes
from ..values import is_whole

from .errors import DataError
from .loader import BatchTransform, TensorBatchLoader
from .locate import DATA_ENV, data_home, env_path, repo_datasets_dir

logger = logging.getLogger(__name__)

Split = Literal["train", "test"]

CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
"""Class names, indexed by label."""

REPO_DATA_DIR: Path | None = None if (_datasets := repo_datasets_dir()) is None else _datasets / "fashion-mnist"
"""The repository's data folder, where downloads go when no ``root`` is given; None in an
installed package (no source checkout), whose downloads go to ``data_home()/fashion-mnist``."""

DEBIAN_DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's ``dataset-fashion-mnist`` package installs the files."""

MIRRORS: tuple[str, ...] = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)
"""Download base URLs (folders), tried in order (``/`` and the file name are appended)."""

_GIVEN = "the folder given"
"""How messages call a folder passed as ``root`` (``--data-dir`` on the command line)."""

IMAGES_MAGIC = 0x00000803
"""IDX magic number of an unsigned-byte array with 3 dimensions (images)."""

LABELS_MAGIC = 0x00000801
"""IDX magic number of an unsigned-byte array with 1 dimension (labels)."""

ERASE_SCALE = (0.02, 0.33)
"""Random erasing: range of the erased area, as a fraction of the image area."""

ERASE_RATIO = (0.3, 3.3)
"""Random erasing: range of the erased rectangle's aspect ratio (height / width)."""


class DataFileError(DataError):
    """A data file is corrupt, truncated, or does not have the official checksum."""


class DownloadError(DataError):
    """The data set is not available locally and could not be downloaded."""


@dataclass(frozen=True)
class _IdxFile:
    filename: str
    magic: int
    shape: tuple[int, ...]
    file_md5: str
    content_md5: str

    @property
    def size(self) -> int:
        """Bytes of the IDX file unpacked: magic, one 32-bit size per axis, the uint8 payload."""
        return 4 + 4 * len(self.shape) + math.prod(self.shape)


_FILES: dict[str, tuple[_IdxFile, _IdxFile]] = {
    "train": (
        _IdxFile(
            "train-images-idx3-ubyte.gz",
            IMAGES_MAGIC,
            (60000, 28, 28),
            "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        ),
        _IdxFile(
            "train-labels-idx1-ubyte.gz",
            LABELS_MAGIC,
            (60000,),
            "25c81989df183df01b3e8a0aad5dffbe",
            "9018921c3c673c538a1fc5bad174d6f9",
        ),
    ),
    "test": (
        _IdxFile(
            "t10k-images-idx3-ubyte.gz",
            IMAGES_MAGIC,
            (10000, 28, 28),
            "bef4ecab320f06d8554ea6380940ec79",
            "8181f5470baa50b63fa0f6fddb340f0a",
        ),
        _IdxFile(
            "t10k-labels-idx1-ubyte.gz",
            LABELS_MAGIC,
            (10000,),
            "bb300cfdad3c16e7a12a480ee83cd310",
            "15d484375f8d13e6eb1aabb0c3f46965",
        ),
    ),
}


def _split_files(split: str) -> tuple[_IdxFile, _IdxFile]:
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return _FILES[split]


# --- IDX parsing and verification -----------------------------------------------------------


def parse_idx(content: bytes, magic: int, shape: tuple[int, ...], source: str) -> np.ndarray:
    """Parse an uncompressed IDX file of unsigned bytes.

    Args:
        content: the whole uncompressed file.
        magic: expected magic number (:data:`IMAGES_MAGIC` or :data:`LABELS_MAGIC`).
        shape: expected dimensions, e.g. (60000, 28, 28).
        source: name of the file, used in error messages.

    Returns:
        A read-only uint8 array of shape ``shape`` viewing ``content``.

    Raises:
        DataFileError: the header is truncated, or the magic number, dimensions or payload size
            differ from the expected ones.
    """
    header_size = 4 + 4 * len(shape)
    if len(content) < header_size:
        raise DataFileError(
            f"{source}: IDX header truncated: expected at least {header_size} bytes, got {len(content)}"
        )
    found_magic = int.from_bytes(content[:4], "big")
    if found_magic != magic:
        raise DataFileError(f"{source}: bad IDX magic number: expected 0x{magic:08x}, got 0x{found_magic:08x}")
    dims = tuple(int.from_bytes(content[4 + 4 * i : 8 + 4 * i], "big") for i in range(len(shape)))
    if dims != shape:
        raise DataFileError(f"{source}: bad IDX dimensions: expected {shape}, got {dims}")
    payload, expected = len(content) - header_size, math.prod(shape)
    if payload != expected:
        raise DataFileError(f"{source}: IDX payload has {payload} bytes, expected {expected} for shape {shape}")
    return np.frombuffer(content, dtype=np.uint8, offset=header_size).reshape(shape)


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _parse_read(content: bytes, spec: _IdxFile, source: str, verb: str) -> np.ndarray:
    """:func:`parse_idx` of ``content``, the first ``spec.size + 1`` bytes read of ``source`` (which
    ``verb`` them): one byte more than the IDX file's size is refused."""
    if len(content) > spec.size:
        raise DataFileError(f"{source}: {verb} more than the {spec.size:,} bytes of the IDX file of shape "
                            f"{spec.shape}: not the official file")
    return parse_idx(content, spec.magic, spec.shape, source)


def _decode(blob: bytes, spec: _IdxFile, source: str) -> np.ndarray:
    """Decompress, parse and checksum one .gz file given as bytes; see :func:`parse_idx`. No more
    than the IDX file's size is decompressed (a small file made to expand is refused, not read)."""
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(blob)) as stream:
            content = stream.read(spec.size + 1)
    except EOFError as exc:
        raise DataFileError(f"{source}: gzip stream truncated ({exc}); the file has {len(blob)} bytes") from exc
    except (OSError, zlib.error) as exc:
        raise DataFileError(f"{source}: not a valid gzip file ({exc})") from exc
    array = _parse_read(content, spec, source, "decompresses to")
    file_md5 = _md5(blob)
    if file_md5 != spec.file_md5:
        content_md5 = _md5(content)
        if content_md5 != spec.content_md5:
            raise DataFileError(
                f"{source}: checksum mismatch: expected file MD5 {spec.file_md5} or decompressed "
                f"MD5 {spec.content_md5}, got file MD5 {file_md5}, decompressed MD5 {content_md5}"
            )
        logger.debug("%s: gzip header differs from the official file; content MD5 matches", source)
    return array


def _parse_unpacked(path: Path, spec: _IdxFile) -> np.ndarray:
    """An unpacked IDX file parsed (:func:`parse_idx`) and checked against the uncompressed MD5."""
    with open(path, "rb") as f:
        content = f.read(spec.size + 1)
    array = _parse_read(content, spec, str(path), "holds")
    if _md5(content) != spec.content_md5:
        raise DataFileError(f"{path}: checksum mismatch: expected MD5 {spec.content_md5} (the official file "
                            f"unpacked), got {_md5(content)}")
    return array


def _file_in(folder: Path, spec: _IdxFile) -> Path | None:
    """``spec``'s file in ``folder``: the .gz file, else the file unpacked, else None."""
    return next((path for path in (folder / spec.filename, folder / spec.filename.removesuffix(".gz"))
                 if path.is_file()), None)


def present_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The files of the four in ``folder`` that it holds (each .gz, else unpacked): those
    :func:`load_fashion_mnist` reads there."""
    return [path for specs in _FILES.values() for spec in specs if (path := _file_in(Path(folder), spec))]


def _read(folder: Path, spec: _IdxFile) -> np.ndarray:
    """``spec``'s file in ``folder`` (:func:`_file_in`), decoded and checked (:func:`_decode`, or
    :func:`_parse_unpacked` for an unpacked file); a bad one's error says how to mend it."""
    path = _file_in(folder, spec)
    if path is None:  # gone since the folder was chosen
        raise DataError(f"{folder}: {spec.filename} not found (nor unpacked)")
    try:
        if path.name != spec.filename:
            return _parse_unpacked(path, spec)
        return _decode(path.read_bytes(), spec, str(path))
    except DataFileError as e:
        raise DataFileError(f"{e}. Delete it and fetch it again: msresnet1d download fashion-mnist --data-dir "
                            f"{path.parent} (download=True in Python), or copy the official file there") from None


# --- Locating and downloading ---------------------------------------------------------------


def search_dirs(root: str | os.PathLike[str] | None = None) -> list[tuple[str, Path]]:
    """The folders searched for the files, in order, each with a description: ``root`` and its
    ``fashion-mnist/`` alone when ``root`` is given (a folder named explicitly is never replaced
    by another copy), else the default places."""
    if root is not None:
        root = Path(root).expanduser()
        return [(_GIVEN, root), (f"{_GIVEN}'s fashion-mnist/", root / "fashion-mnist")]
    dirs = []
    env = env_path(DATA_ENV)
    if env is not None:
        dirs.append((f"${DATA_ENV}/fashion-mnist", env / "fashion-mnist"))
    dirs.append(_own_dir())
    dirs.append(("Debian package dataset-fashion-mnist", DEBIAN_DATA_DIR))
    return dirs


def split_dir(split: str, root: str | os.PathLike[str] | None = None) -> Path | None:
    """The first of :func:`search_dirs` holding both files of ``split`` (``"train"`` or
    ``"test"``; each .gz or unpacked), or ``None``."""
    specs = _split_files(split)
    return next((d for _, d in search_dirs(root) if all(_file_in(d, spec) for spec in specs)), None)


def default_download_dir() -> Path:
    """Where a download goes when no folder is given: ``$MSRESNET1D_DATA/fashion-mnist`` if the
    variable is set (the first place looked in), else :data:`REPO_DATA_DIR` in a source checkout,
    else (an installed package) the download folder's ``fashion-mnist/``
    (:func:`~msresnet1d.data.locate.data_home`, as for PhysioNet databases); each is searched."""
    env = env_path(DATA_ENV)
    return env / "fashion-mnist" if env is not None else _own_dir()[1]


def _own_dir() -> tuple[str, Path]:
    """The package's own folder for the files, described: :data:`REPO_DATA_DIR` in a source
    checkout, else (an installed package) the download folder's ``fashion-mnist/``."""
    if REPO_DATA_DIR is not None:
        return "repository datasets/fashion-mnist", REPO_DATA_DIR
    return "download folder", data_home() / "fashion-mnist"


def _not_found_message(split: str, dirs: list[tuple[str, Path]], downloaded: bool = False) -> str:
    names = [spec.filename for spec in _split_files(split)]
    lines = [f"Fashion-MNIST {split} split not found: looked for {' and '.join(names)} in"]
    for label, folder in dirs:
        missing = [spec.filename for spec in _split_files(split) if not _file_in(folder, spec)]
        lines.append(f"  - {folder} ({label}): missing {', '.join(missing)} (neither .gz nor unpacked)")
    given = [folder for label, folder in dirs if label == _GIVEN]
    download = "msresnet1d download fashion-mnist" + "".join(f" --data-dir {folder}" for folder in given)
    if given:
        supply = "Put the files in that folder (or its fashion-mnist/)"
    else:
        supply = (f"Supply the files by passing root=<folder holding them> (--data-dir on the command line), setting "
                  f"{DATA_ENV}=<folder holding fashion-mnist/>, copying them to {default_download_dir()}, installing "
                  "Debian's dataset-fashion-mnist package")
    lines.append(supply + ("." if downloaded else f", or download them: {download} (download=True in Python)."))
    return "\n".join(lines)


def _not_worth_retrying(exc: BaseException, another_mirror: bool) -> str | None:
    """Why asking the same mirror again would not help, or None: the host name does not exist
    (DNS's definite answer, EAI_NONAME; a temporary DNS failure, EAI_AGAIN, is retried), the
    server's answer is final (HTTP 4xx: no such file, forbidden; not 408 or 429, which ask to come
    back), or the connection stalled for the whole timeout while ``another_mirror`` can be tried
    (the last mirror is asked again: a stall may pass)."""
    reason = getattr(exc, "reason", None)
    if isinstance(reason, socket.gaierror) and reason.errno == socket.EAI_NONAME:
        return "an unknown host name"
    if isinstance(exc, urllib.error.HTTPError) and 400 <= exc.code < 500 and exc.code not in (408, 429):
        return f"HTTP {exc.code}, the server's final answer"
    if another_mirror and (isinstance(exc, TimeoutError) or isinstance(reason, TimeoutError)):  # socket.timeout too
        return "a stalled connection, with another mirror to try"
    return None


def _fetch(
    spec: _IdxFile,
    dest: Path,
    mirrors: Sequence[str],
    retries: int,
    timeout_s: float,
    backoff_s: float,
) -> None:
    """Download one file into ``dest``, verified, trying each mirror ``retries`` times."""
    failures = []
    for number, mirror in enumerate(mirrors, 1):
        url = mirror.rstrip("/") + "/" + spec.filename
        for attempt in range(1, retries + 1):
            try:
                with urllib.request.urlopen(url, timeout=timeout_s) as response:
                    blob = response.read()
                _decode(blob, spec, "downloaded data")
                write_bytes(dest / spec.filename, blob, suffix=".part")
                logger.info("downloaded %s (%d bytes) into %s", url, len(blob), dest)
                return
            except (OSError, http.client.HTTPException, DataFileError) as exc:
                final = _not_worth_retrying(exc, another_mirror=number < len(mirrors))
                failures.append(f"{url} (attempt {attempt}/{retries}): {exc}" + (f" ({final}: not retried)" if final
                                                                                  else ""))
                logger.info("download failed: %s", failures[-1])  # all of them are in the error raised at the end
                if final:
                    break
                if attempt < retries:
                    time.sleep(backoff_s * attempt)
    raise DownloadError(f"could not download {spec.filename}:\n  " + "\n  ".join(failures))


def download_fashion_mnist(
    dest: str | os.PathLike[str],
    splits: Sequence[Split] = ("train", "test"),
    mirrors: Sequence[str] = MIRRORS,
    retries: int = 3,
    timeout_s: float = 60.0,
    backoff_s: float = 2.0,
) -> Path:
    """Download the files of ``splits`` that ``dest`` lacks (neither .gz nor unpacked), verifying
    each before it appears (with a progress bar over the files).

    ``mirrors`` are folder URLs, with or without a trailing ``/`` (``<mirror>/<file name>`` is
    fetched). Each file is fetched whole with ``urllib``, checked (gzip, IDX header, MD5), then
    written to a temporary file in ``dest`` and moved into place with ``os.replace``: a failed
    download leaves no file behind. Mirrors are tried in order, each up to ``retries`` times, sleeping
    ``backoff_s * attempt`` seconds between attempts; a mirror is tried once when asking again
    would not help: its host name does not exist (DNS's definite answer, which a machine offline
    also gets), it answers HTTP 4xx (404: no such file), or it stalls for ``timeout_s`` seconds
    (which bound each wait for a connection or for data) while another mirror remains: the last
    mirror is asked again after a stall.

    Returns:
        ``dest`` as a Path.

    Raises:
        DownloadError: some file could not be fetched from any mirror; lists every attempt.
    """
    if retries < 1:
        raise ValueError(f"retries must be >= 1, got {retries}")
    folder = Path(dest)
    missing = [spec for split in splits for spec in _split_files(split) if _file_in(folder, spec) is None]
    for spec in tqdm(missing, desc="downloading Fashion-MNIST", unit="file", disable=None, leave=False):
        _fetch(spec, folder, mirrors, retries, timeout_s, backoff_s)
    return folder


# --- Loading ----------------------------------------------------------------------------------


def load_fashion_mnist(
    root: str | os.PathLike[str] | None = None, split: Split = "train", download: bool = False
) -> tuple[Tensor, Tensor]:
    """Load one split, verified (see the module docstring for where files are looked for).

    Returns:
        images: uint8 tensor (N, 28, 28), pixel values 0..255 (0 = background);
        labels: int64 tensor (N,), values 0..9 indexing :data:`CLASS_NAMES`.
        N = 60,000 for ``"train"`` and 10,000 for ``"test"``.

    Raises:
        DataError: no folder holds the split and ``download`` is False; lists the folders.
        DownloadError: ``download`` is True and the download failed; lists folders and attempts.
        DataFileError: a file found is corrupt or fails its checksum.
    """
    images_spec, labels_spec = _split_files(split)
    dirs = search_dirs(root)
    folder = split_dir(split, root)
    if folder is None:
        if not download:
            raise DataError(_not_found_message(split, dirs))
        dest = Path(root) if root is not None else default_download_dir()
        try:
            folder = download_fashion_mnist(dest, splits=(split,))
        except DownloadError as exc:
            message = f"{_not_found_message(split, dirs, downloaded=True)}\nDownload into {dest} failed: {exc}"
            raise DownloadError(message) from exc
    logger.info("loading Fashion-MNIST %s split from %s", split, folder)
    images = _read(folder, images_spec)
    labels = _read(folder, labels_spec)
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


def pixel_mean_std(images: Tensor) -> tuple[float, float]:
    """Mean and standard deviation of all pixels of uint8 ``images`` (N, ...), in [0, 1] units.

    Exact (computed from the 256-bin histogram), e.g. about (0.2860, 0.3530) for the training set.
    """
    if images.dtype != torch.uint8:
        raise ValueError(f"images must be uint8, got {images.dtype}")
    counts = torch.bincount(images.reshape(-1), minlength=256).double()
    values = torch.arange(256, dtype=torch.float64) / 255.0
    mean = float((counts * values).sum() / counts.sum())
    var = float((counts * (values - mean) ** 2).sum() / counts.sum())
    return mean, var**0.5


# --- Batch transforms ------------------------------------------------------------------------


def _random_crop(x: Tensor, padding: int, generator: torch.Generator) -> Tensor:
    """Zero-pad (B, C, H, W) by ``padding`` pixels per side; crop H x W at random offsets."""
    b, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding)).flatten(2)  # (B, C, Hp * Wp)
    padded_w = w + 2 * padding
    top = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
    left = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
    window = (torch.arange(h)[:, None] * padded_w + torch.arange(w)).reshape(-1)  # (H * W,)
    index = (top * padded_w + left)[:, None] + window  # (B, H * W), flat offsets into padded
    return padded.gather(2, index[:, None, :].expand(b, c, h * w)).reshape(b, c, h, w)


def _random_hflip(x: Tensor, generator: torch.Generator) -> Tensor:
    """Mirror each image of (B, C, H, W) left-right with probability 1/2."""
    flip = torch.rand(x.shape[0], generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def _random_erase(x: Tensor, prob: float, generator: torch.Generator) -> Tensor:
    """Set one random rectangle of each image of (B, C, H, W) to 0, with probability ``prob``.

    Area fraction in :data:`ERASE_SCALE`, aspect ratio (log-uniform) in :data:`ERASE_RATIO`; the
    rectangle's sides are clipped to the image instead of re-drawing.
    """
    b, _, h, w = x.shape
    apply = torch.rand(b, generator=generator) < prob
    area = h * w * torch.empty(b).uniform_(*ERASE_SCALE, generator=generator)
    log_lo, log_hi = math.log(ERASE_RATIO[0]), math.log(ERASE_RATIO[1])
    ratio = torch.exp(torch.empty(b).uniform_(log_lo, log_hi, generator=generator))
    eh = torch.sqrt(area * ratio).round().clamp(1, h).long()
    ew = torch.sqrt(area / ratio).round().clamp(1, w).long()
    top = (torch.rand(b, generator=generator) * (h - eh + 1)).long()
    left = (torch.rand(b, generator=generator) * (w - ew + 1)).long()
    rows = torch.arange(h)[None, :]
    cols = torch.arange(w)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < (top + eh)[:, None]) & apply[:, None]  # (B, H)
    in_cols = (cols >= left[:, None]) & (cols < (left + ew)[:, None])  # (B, W)
    mask = in_rows[:, None, :, None] & in_cols[:, None, None, :]  # (B, 1, H, W)
    return torch.where(mask, 0.0, x)


@dataclass(frozen=True)
class ImageBatchTransform:
    """uint8 images (B, H, W) or (B, 1, H, W) -> float32 (B, 1, S, S), all on the whole batch.

    Steps, in order: scale to [0, 1] (/255, as ``ToTensor``); random crop of the zero-padded
    image (``crop_padding`` pixels, at the input resolution); random horizontal flip; bilinear
    resize to ``resize`` x ``resize`` (``F.interpolate``, ``align_corners=False``; antialiased
    when it shrinks the image, as the textbook's ``transforms.Resize`` (PIL bilinear) does, so
    that 28 -> 14 averages neighbouring pixels instead of dropping some; upsampling, as the
    textbook's 28 -> 96, is plain bilinear interpolation either way); ``(x - mean) / std``;
    random erasing (value 0, i.e. the mean after standardisation).

    The resize runs per batch on the fly: precomputing 60,000 images at 96x96 would take 2.2 GB
    as float32, while resizing a batch of 256 costs milliseconds.

    Args:
        resize: output side S in pixels, or None to keep the input size.
        mean, std: normalisation in [0, 1] pixel units; (0, 1) keeps x / 255 (the textbook).
        crop_padding: pixels of zero padding per side for the random crop; 0 disables it.
        hflip: random horizontal flip with probability 1/2.
        erase_prob: probability of random erasing per image; 0 disables it.
    """

    resize: int | None = None
    mean: float = 0.0
    std: float = 1.0
    crop_padding: int = 0
    hflip: bool = False
    erase_prob: float = 0.0

    def __post_init__(self) -> None:
        if self.resize is not None and not (is_whole(self.resize) and self.resize >= 1):
            raise ValueError(f"resize must be a whole number of pixels >= 1, or None, got {self.resize!r}")
        if self.std <= 0:
            raise ValueError(f"std must be > 0, got {self.std}")
        if not (is_whole(self.crop_padding) and self.crop_padding >= 0):
            raise ValueError(f"crop_padding must be a whole number of pixels >= 0, got {self.crop_padding!r}")
        if not 0.0 <= self.erase_prob <= 1.0:
            raise ValueError(f"erase_prob must be in [0, 1], got {self.erase_prob}")

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        if x.dim() != 4 or x.shape[1] != 1:
            raise ValueError(f"expected images (B, H, W) or (B, 1, H, W), got shape {tuple(x.shape)}")
        if x.dtype != torch.uint8:  # float images are already scaled, and would be divided by 255 again
            raise ValueError(f"expected uint8 images (pixel values 0..255, as load_fashion_mnist gives), got {x.dtype}")
        x = x.float() / 255.0
        if self.crop_padding:
            x = _random_crop(x, self.crop_padding, generator)
        if self.hflip:
            x = _random_hflip(x, generator)
        if self.resize is not None:
            size = (self.resize, self.resize)
            shrink = self.resize < max(x.shape[-2:])  # antialiasing changes nothing when upsampling
            x = F.interpolate(x, size, mode="bilinear", align_corners=False, antialias=shrink)
        if (self.mean, self.std) != (0.0, 1.0):
            x = (x - self.mean) / self.std
        if self.erase_prob:
            x = _random_erase(x, self.erase_prob, generator)
        return x


class FashionMNIST(Dataset[tuple[Tensor, Tensor]]):
    """One split of Fashion-MNIST, held in memory (see :func:`load_fashion_mnist`).

    ``dataset[i]`` is ``(image, label)``: float32 (1, 28, 28) in [0, 1] and an int64 scalar, for
    use with ``torch.utils.data.DataLoader``. For training prefer :meth:`loader`, which builds
    whole batches by indexing.

    Attributes:
        images: uint8 (N, 28, 28). labels: int64 (N,). classes: :data:`CLASS_NAMES`.
    """

    classes = CLASS_NAMES

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        split: Split = "train",
        download: bool = False,
    ) -> None:
        self.split = split
        self.images, self.labels = load_fashion_mnist(root, split, download)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.images[index].unsqueeze(0).float() / 255.0, self.labels[index]

    def loader(
        self,
        batch_size: int,
        shuffle: bool = False,
        transform: BatchTransform = ImageBatchTransform(),
        drop_last: bool = False,
        seed: int = 0,
    ) -> TensorBatchLoader:
        """A :class:`TensorBatchLoader` yielding ``(transform(images[idx]), labels[idx])``.

        With the default transform: float32 (B, 1, 28, 28) in [0, 1] and int64 (B,).
        """
        return TensorBatchLoader(self.images, self.labels, batch_size, shuffle, transform, drop_last, seed)


def fashion_mnist_loaders(
    batch_size: int,
    resize: int | None = None,
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    normalize: Literal["unit", "standardize"] = "unit",
    crop_padding: int = 0,
    hflip: bool = False,
    erase_prob: float = 0.0,
    seed: int = 0,
) -> tuple[TensorBatchLoader, TensorBatchLoader]:
    """Train and test loaders as in the textbook (d2l ``load_data_fashion_mnist``).

    Both yield float32 (B, 1, S, S) images (S = ``resize`` or 28) and int64 (B,) labels. The
    train loader shuffles (seeded by ``seed``) and applies the augmentation options; the test
    loader keeps the file order and does not augment. ``normalize="unit"`` divides by 255 only
    (the textbook's ``ToTensor``); ``"standardize"`` also subtracts the training-set pixel mean
    and divides by its standard deviation (:func:`pixel_mean_std`), for both loaders.

    Args:
        root, download: where the files are and whether to fetch missing ones
            (:func:`load_fashion_mnist`; default: found as :func:`split_dir` says).
        crop_padding, hflip, erase_prob: the training loader's augmentation
            (:class:`ImageBatchTransform`): random crops after ``crop_padding`` pixels of zero
            padding a side (0: none), horizontal flips with probability 1/2, random erasing with
            probability ``erase_prob`` an image.
    """
    if normalize not in ("unit", "standardize"):
        raise ValueError(f"normalize must be 'unit' or 'standardize', got {normalize!r}")
    ImageBatchTransform(resize, 0.0, 1.0, crop_padding, hflip, erase_prob)  # its checks, before 70,000 images are read
    train = FashionMNIST(root, "train", download)
    test = FashionMNIST(root, "test", download)
    mean, std = pixel_mean_std(train.images) if normalize == "standardize" else (0.0, 1.0)
    train_transform = ImageBatchTransform(resize, mean, std, crop_padding, hflip, erase_prob)
    test_transform = ImageBatchTransform(resize, mean, std)
    return (
        train.loader(batch_size, shuffle=True, transform=train_transform, seed=seed),
        test.loader(batch_size, shuffle=False, transform=test_transform, seed=seed),
    )
