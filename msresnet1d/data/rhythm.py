"""Rhythm dataset (PhysioNet/CinC Challenge 2017 style): one label per variable-length record.

Labels come from the database's ``REFERENCE.csv`` (UTF-8, ``A00001,N`` per line, no header), classes
:data:`CINC_CLASSES`. Records are preprocessed whole
(:func:`~msresnet1d.data.preprocess.preprocess_signal`) and kept end to end in one array
(:class:`RhythmArrays`), cached on disk as one entry.

Training sees fixed-length random crops (cut batch by batch by the training task,
``msresnet1d.training.tasks.RandomCrops``; :class:`RhythmDataset` gives the same crops as a
``torch.utils.data.Dataset`` for other training loops); evaluation covers each whole
record with sliding windows and aggregates the window predictions (:func:`sliding_windows`,
:func:`aggregate_windows`, :func:`predict_records`). Crop and window lengths are in seconds,
except in the array helpers :func:`fit_length` and :func:`sliding_windows` (samples).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch

from ..models.layers import check_tensor
from ..models.modes import evaluating
from .cache import cache_dir as resolve_cache_dir
from .cache import cached, entry_path
from .errors import DataError
from .locate import RECORD_NAME_RULE, find_database, is_record_name, list_records
from .parallel import process_map
from .preprocess import Normalization, canonical_band, check_preprocessing, check_signal
from .records import preprocess_record, read_record, records_key, warn_invalid

log = logging.getLogger(__name__)

CINC_CLASSES: tuple[str, ...] = ("N", "A", "O", "~")  # normal, AF, other rhythm, noisy

Aggregation = Literal["mean_probability", "mean_logit"]


@dataclass(frozen=True)
class RhythmConfig:
    """How records are prepared.

    Attributes:
        lead: lead name to keep; ``None`` accepts single-lead records only.
        fs: output sampling rate in Hz (records at other rates are resampled).
        band: band-pass corners (low, high) in Hz; ``None``: no filter.
        normalization: per-record normalisation (``"zscore"``, ``"robust"`` or ``None``).

    Raises:
        TypeError: ``fs`` not a number.
        ValueError: ``fs`` not finite and > 0, an unknown normalisation, a band that is not two
            numbers (either may be None) or corners no rate can filter, before a record is read
            (each record's own rate is checked when it is read).
    """

    lead: str | None = None
    fs: float = 300.0
    band: tuple[float | None, float | None] | None = (0.5, 40.0)
    normalization: Normalization | None = "zscore"

    def __post_init__(self) -> None:
        object.__setattr__(self, "band", canonical_band(self.band, "RhythmConfig"))  # canonical, for equal cache keys
        check_preprocessing("RhythmConfig", self.fs, self.band, self.normalization)
        object.__setattr__(self, "fs", float(self.fs))


@dataclass(frozen=True)
class RhythmArrays:
    """N variable-length records, stored end to end.

    Attributes:
        data: (C, S) float32, all records one after the other (S = total samples).
        offsets: (N + 1,) int64; record i is ``data[:, offsets[i]:offsets[i + 1]]``.
        y: (N,) int64 class index into :data:`CINC_CLASSES`.
        record: (N,) str record names.
        config: the :class:`RhythmConfig` used.
    """

    data: np.ndarray
    offsets: np.ndarray
    y: np.ndarray
    record: np.ndarray
    config: RhythmConfig

    def __len__(self) -> int:
        return len(self.y)

    def signal(self, i: int) -> np.ndarray:
        """Record i, (C, T_i) float32 (a view)."""
        return self.data[:, self.offsets[i] : self.offsets[i + 1]]

    @property
    def lengths(self) -> np.ndarray:
        """(N,) record lengths in samples at ``config.fs``."""
        return np.diff(self.offsets)

    def class_counts(self) -> dict[str, int]:
        """Records per class, every class listed."""
        counts = np.bincount(self.y, minlength=len(CINC_CLASSES))
        return dict(zip(CINC_CLASSES, map(int, counts), strict=True))

    def select(self, index: np.ndarray) -> RhythmArrays:
        """The records at ``index`` (a boolean mask or integer indices, e.g. one fold), repacked."""
        index = np.asarray(index)
        if index.dtype == bool:
            if index.shape != self.y.shape:
                raise ValueError(f"RhythmArrays.select: a mask of shape {index.shape} for {len(self)} records")
            index = np.flatnonzero(index)
        pieces = [self.signal(i) for i in index]
        offsets = np.concatenate(([0], np.cumsum([p.shape[1] for p in pieces]))).astype(np.int64)
        data = np.concatenate(pieces, axis=1) if pieces else self.data[:, :0]
        return dataclasses.replace(self, data=data, offsets=offsets, y=self.y[index], record=self.record[index])


def read_reference(db_dir: str | os.PathLike[str]) -> dict[str, str]:
    """Labels from ``<db_dir>/REFERENCE.csv``: record name -> class, in file order. The file is
    UTF-8 text, with or without a byte-order mark.

    Raises:
        DataError: missing file, not UTF-8 (UTF-16, Latin-1...), a line that is not
            ``name,label``, an unknown label, a record listed twice, or a name that is not one
            record of the folder written one way (an absolute path, one through ``..``,
            ``./A00001``: :func:`~msresnet1d.data.locate.is_record_name`).
    """
    path = Path(db_dir) / "REFERENCE.csv"
    if not path.is_file():
        raise DataError(f"database {db_dir}: file REFERENCE.csv is missing")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"database {db_dir}: file REFERENCE.csv is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} "
                        f"at position {exc.start}): it must be UTF-8 (or ASCII), '<record>,<label>' lines") from None
    labels: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = [field.strip() for field in line.split(",")]
        if len(fields) != 2 or fields[1] not in CINC_CLASSES:
            raise DataError(
                f"database {db_dir}: REFERENCE.csv line {number} is {line!r}, expected "
                f"'<record>,<label>' with a label among {', '.join(CINC_CLASSES)}"
            )
        if not is_record_name(fields[0]):
            raise DataError(f"database {db_dir}: REFERENCE.csv line {number} names record {fields[0]!r}: each must be "
                            f"{RECORD_NAME_RULE}")
        if fields[0] in labels:
            raise DataError(f"database {db_dir}: REFERENCE.csv line {number} lists record {fields[0]} again")
        labels[fields[0]] = fields[1]
    if not labels:
        raise DataError(f"database {db_dir}: REFERENCE.csv lists no record")
    return labels


def record_signal(path: str | os.PathLike[str], config: RhythmConfig = RhythmConfig()) -> np.ndarray:
    """One record read and preprocessed: (C, T) float32 at ``config.fs`` Hz (not cached). Samples
    the record lacks (WFDB's invalid value) are interpolated, with a warning saying how much of the
    record they are."""
    path = Path(path)
    record = read_record(path, leads=None if config.lead is None else [config.lead])
    if config.lead is None and len(record.leads) != 1:
        raise DataError(
            f"record '{record.name}' has {len(record.leads)} leads ({', '.join(record.leads)}); "
            "name one in RhythmConfig.lead"
        )
    warn_invalid(record, "the record is trained on and scored from that, not from the recording")
    return preprocess_record(record, config.fs, config.band, config.normalization)


def _build(db_dir: Path, labels: dict[str, str], config: RhythmConfig, workers: int | None) -> dict[str, np.ndarray]:
    names = list(labels)
    signals = process_map(
        functools.partial(record_signal, config=config), [db_dir / n for n in names], workers, f"rhythm {db_dir.name}"
    )
    offsets = np.concatenate(([0], np.cumsum([s.shape[1] for s in signals]))).astype(np.int64)
    return {
        "data": np.concatenate(signals, axis=1),
        "offsets": offsets,
        "y": np.array([CINC_CLASSES.index(labels[n]) for n in names], dtype=np.int64),
        "record": np.array(names, dtype=str),
    }


def load_rhythm(
    db_dir: str | os.PathLike[str] | None = None,
    config: RhythmConfig = RhythmConfig(),
    *,
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    workers: int | None = None,
) -> RhythmArrays:
    """Every record listed in ``REFERENCE.csv``, preprocessed, with its label (a warning names
    the database's records that have no row there: they are left out).

    Args:
        db_dir: database folder; default ``find_database("cinc2017")``.
        config: lead and preprocessing.
        cache: reuse and store the arrays on disk (one entry per database and config, see
            :mod:`.cache`); cached arrays come back memory-mapped copy-on-write.
        cache_dir: cache folder; default :func:`~msresnet1d.data.cache.cache_dir`.
        workers: processes reading the records when they are not cached (default: the usable
            CPUs, at most 4; 1 reads them in this process).

    Raises:
        DataError: bad ``REFERENCE.csv``, or a listed record missing, unreadable, or whose lead has
            no valid sample (all WFDB invalid values).
    """
    db_dir = Path(db_dir).expanduser() if db_dir is not None else find_database("cinc2017")
    labels = read_reference(db_dir)
    unlabelled = [name for name in list_records(db_dir) if name not in labels]
    if unlabelled:
        warnings.warn(f"database {db_dir}: {len(unlabelled)} record(s) without a row in REFERENCE.csv left out "
                      f"({', '.join(unlabelled[:5])}{', ...' if len(unlabelled) > 5 else ''})", stacklevel=2)
    if cache:
        key = records_key(db_dir, labels, dataclasses.asdict(config), [db_dir / "REFERENCE.csv"])
        entry = entry_path(resolve_cache_dir(cache_dir) / "rhythm", db_dir, key)
        arrays = cached(entry, key, functools.partial(_build, db_dir, labels, config, workers))
    else:
        arrays = _build(db_dir, labels, config, workers)
    log.info("loaded %d records of %s", len(arrays["y"]), db_dir)
    return RhythmArrays(config=config, **arrays)


def fit_length(signal: np.ndarray, length: int, offset: int = 0) -> np.ndarray:
    """(C, length) from a (C, T) signal: ``signal[:, offset:offset + length]`` when T >= length,
    else the whole signal placed at ``offset`` in zeros (zero = the mean after z-scoring).
    Lengths and ``offset`` are in samples; ``0 <= offset <= |T - length|`` and ``signal`` 2-D,
    else ``ValueError``."""
    check_signal(signal, "fit_length")
    channels, total = signal.shape
    if not 0 <= offset <= abs(total - length):
        raise ValueError(f"fit_length: offset={offset} must be in [0, |T - length|] = [0, {abs(total - length)}] "
                         f"for length={length} and a signal of T={total} samples")
    if total >= length:
        return signal[:, offset : offset + length]
    out = np.zeros((channels, length), dtype=signal.dtype)
    out[:, offset : offset + total] = signal
    return out


class RhythmDataset(torch.utils.data.Dataset):
    """Fixed-length random crops for training.

    Item ``i`` is ``(signal, label)``: signal (C, L) float32 tensor with L = ``crop_seconds``
    at ``arrays.config.fs``, label int64 scalar tensor. A longer record is cropped at a random
    offset; a shorter one is zero-padded around a random offset. The offset comes from torch's
    random generator, which ``DataLoader`` seeds per worker, so any ``num_workers`` works.
    """

    def __init__(self, arrays: RhythmArrays, crop_seconds: float = 30.0) -> None:
        self.arrays = arrays
        self.length = round(crop_seconds * arrays.config.fs)

    def __len__(self) -> int:
        return len(self.arrays)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        signal = self.arrays.signal(i)
        slack = abs(signal.shape[1] - self.length)
        offset = int(torch.randint(slack + 1, ()))
        crop = np.ascontiguousarray(fit_length(signal, self.length, offset))
        return torch.from_numpy(crop), torch.tensor(self.arrays.y[i], dtype=torch.int64)


def window_starts(total: int, length: int, hop: int) -> np.ndarray:
    """(W,) first samples of the windows :func:`sliding_windows` cuts from a record of ``total``
    samples: every ``hop`` samples, plus one ending at the record's end if needed; ``[0]`` for
    a record no longer than ``length``. That last window can nearly repeat the one before (a
    record one sample longer than ``length`` gives starts 0 and 1), so the record's end then
    counts about twice in :func:`aggregate_windows`' mean; the recorded CinC 2017 results were
    scored so.

    Raises:
        ValueError: ``length`` or ``hop`` is not positive, or ``hop > length`` (windows further
            apart would leave samples out).
    """
    if length <= 0 or hop <= 0:
        raise ValueError(f"window_starts: length={length} and hop={hop} samples must be positive")
    if hop > length:
        raise ValueError(f"window_starts: hop={hop} samples is more than length={length}: windows further apart "
                         "would leave samples out")
    if total <= length:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, total - length + 1, hop)
    if starts[-1] != total - length:
        starts = np.append(starts, total - length)
    return starts


def sliding_windows(signal: np.ndarray, length: int, hop: int) -> np.ndarray:
    """Windows covering a whole (C, T) record: (W, C, length), in samples.

    Windows start at :func:`window_starts`, so every sample is covered. A record shorter than
    ``length`` gives one zero-padded window.

    Raises:
        ValueError: ``signal`` not 2-D (C, T), or the errors of :func:`window_starts`.
    """
    check_signal(signal, "sliding_windows")
    starts = window_starts(signal.shape[1], length, hop)
    if signal.shape[1] <= length:
        return fit_length(signal, length)[None]
    views = np.lib.stride_tricks.sliding_window_view(signal, length, axis=1)  # (C, T-L+1, L)
    return views[:, starts].transpose(1, 0, 2)


def aggregate_windows(logits: torch.Tensor, method: Aggregation = "mean_probability") -> torch.Tensor:
    """One record's class probabilities (K,) from its window logits (W, K).

    ``"mean_probability"`` averages the windows' softmax; ``"mean_logit"`` takes the softmax of
    the mean logits.

    Raises:
        TypeError: ``logits`` not a tensor.
        ValueError: ``logits`` not (W, K) with at least one window, or an unknown ``method``.
    """
    check_tensor(logits, "aggregate_windows: logits")
    if logits.ndim != 2 or len(logits) == 0:
        raise ValueError(f"aggregate_windows: logits must be (W, K), the class logits of W >= 1 windows, got shape "
                         f"{tuple(logits.shape)}")
    if method == "mean_probability":
        return logits.softmax(dim=-1).mean(dim=0)
    if method == "mean_logit":
        return logits.mean(dim=0).softmax(dim=-1)
    raise ValueError(f"aggregate_windows: method={method!r}, expected 'mean_probability' or 'mean_logit'")


@torch.no_grad()
def predict_records(
    model: torch.nn.Module,
    arrays: RhythmArrays,
    window_seconds: float = 30.0,
    hop_seconds: float = 15.0,
    method: Aggregation = "mean_probability",
    records_per_batch: int = 32,
    extra: Callable[[int, np.ndarray, int], np.ndarray] | None = None,
    windows_per_call: int = 256,
) -> torch.Tensor:
    """Whole-record class probabilities (N, K): every record cut into sliding windows
    (``window_seconds`` long, every ``hop_seconds``), the model run on them in eval mode
    ((B, C, L) float32 in, (B, K) logits out; ``records_per_batch`` records' windows at a time,
    at most ``windows_per_call`` windows a model call, so that long records, a 24 h Holter's
    5,759 windows say, do not hold every window's activations at once), and the windows
    aggregated per record.

    ``extra(i, starts, length)``, when given, returns the extra features (W, F) of record i's
    windows (first samples ``starts``, ``length`` samples), passed as the model's second input.

    Raises:
        ValueError: ``hop_seconds > window_seconds`` (windows further apart would leave samples out).
    """
    if windows_per_call < 1:
        raise ValueError(f"predict_records: windows_per_call={windows_per_call} must be >= 1")
    if hop_seconds > window_seconds:
        raise ValueError(f"predict_records: hop_seconds={hop_seconds} is more than window_seconds={window_seconds}: "
                         "windows further apart would leave samples out")
    fs = arrays.config.fs
    length, hop = round(window_seconds * fs), round(hop_seconds * fs)
    device = next(model.parameters(), torch.empty(0)).device
    results = []
    with evaluating(model):
        for start in range(0, len(arrays), records_per_batch):
            batch = range(start, min(start + records_per_batch, len(arrays)))
            windows = [sliding_windows(arrays.signal(i), length, hop) for i in batch]
            inputs = [torch.from_numpy(np.concatenate(windows))]
            if extra is not None:
                inputs.append(torch.from_numpy(np.concatenate(
                    [extra(i, window_starts(int(arrays.lengths[i]), length, hop), length) for i in batch])))
            logits = torch.cat([model(*[t[i:i + windows_per_call].to(device) for t in inputs]).float().cpu()
                                for i in range(0, len(inputs[0]), windows_per_call)])
            results += [aggregate_windows(part, method) for part in logits.split([len(w) for w in windows])]
    return torch.stack(results)
