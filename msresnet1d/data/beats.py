"""Beat dataset (MIT-BIH style): one window per annotated beat, AAMI class labels, RR features.

For each record: read the leads by name, preprocess the whole record once (band-pass, resample,
normalise: :func:`~msresnet1d.data.preprocess.preprocess_signal`), then cut a window around every
beat whose symbol is in the AAMI table (:mod:`~msresnet1d.data.aami`). Windows are given in
seconds relative to the annotation, so they mean the same at every rate: at ``fs`` Hz, window
``(start, stop)`` covers samples ``[c + round(start * fs), c + round(stop * fs))`` around the
beat's sample ``c``. A window that runs off either end of the record is padded with the edge
value, so no beat is dropped and class counts equal the published ones.

In-memory arrays (:class:`BeatArrays`) are what training loops should use; :class:`BeatDataset`
wraps them for a ``DataLoader``. The arrays of each (records, config) are cached on disk (:mod:`.cache`).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from .aami import AAMI_CLASSES, BEAT_SYMBOLS, MITBIH_TO_AAMI, aami_labels
from .cache import cache_dir as resolve_cache_dir
from .cache import cached, entry_path
from .errors import DataError
from .locate import changed_files, find_database, has_published_headers, is_embedded_sample, list_records
from .parallel import process_map
from .preprocess import Normalization, canonical_band, check_preprocessing, check_rates, check_signal
from .records import preprocess_record, read_annotations, read_record, record_label, records_key, warn_invalid
from .rr import RR_FEATURES, check_positions, rr_features, warn_close_beats
from .splits import DS1, DS2, PACED_RECORDS
from ..values import is_number

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BeatConfig:
    """How beats are cut.

    Attributes:
        leads: lead names, in output channel order (selected by name, never by position); an
            entry ``"V1|V2|V4|V5"`` takes the first of these each record has.
        fs: output sampling rate in Hz; records at other rates are resampled.
        window: (start, stop) in seconds relative to the beat annotation; start < stop.
        band: band-pass corners (low, high) in Hz, either may be ``None``; ``None``: no filter.
        normalization: per-record normalisation (``"zscore"``, ``"robust"`` or ``None``).
        annotator: annotation file extension holding the beat labels.
        template: append, after the leads, each lead minus the record's median beat (the
            median over its AAMI beat windows, sample by sample: mostly the patient's
            normal beat), so C = 2 x len(leads). No labels are used; the whole record is.
        template_from: which beats the median beat is taken over: ``"all"``, or ``"regular"``
            (those not premature, see :func:`regular_beats`), so that a record where premature
            beats are the majority (MIT-BIH 232) still gets its sinus beat as the template.

    Raises:
        TypeError: ``leads`` a bare string (give a tuple, e.g. ``("MLII",)``), or ``fs`` not a
            number.
        ValueError: any other attribute out of its range, before a record is read: a repeated
            lead, an unknown normalisation, a band or window that is not two numbers, corners no
            rate can filter (each record's own rate, which the filter runs at, is checked when it
            is read), a window under one sample.
    """

    leads: tuple[str, ...] = ("MLII",)
    fs: float = 360.0
    window: tuple[float, float] = (-0.25, 0.45)
    band: tuple[float | None, float | None] | None = (0.5, 40.0)
    normalization: Normalization | None = "zscore"
    annotator: str = "atr"
    template: bool = False
    template_from: Literal["all", "regular"] = "all"

    def __post_init__(self) -> None:
        if isinstance(self.leads, str):  # a bare string would be its letters, each a lead
            raise TypeError(f"BeatConfig: leads is a tuple of lead names, e.g. ({self.leads!r},), got the string "
                            f"{self.leads!r}")
        if not (isinstance(self.window, (tuple, list, np.ndarray)) and len(self.window) == 2
                and all(map(is_number, self.window))):
            raise ValueError(f"BeatConfig: window must be (start, stop) in seconds from the beat, got {self.window!r}")
        # canonical types, so that equal configurations give equal cache keys
        object.__setattr__(self, "leads", tuple(self.leads))
        object.__setattr__(self, "band", canonical_band(self.band, "BeatConfig"))
        check_preprocessing("BeatConfig", self.fs, self.band, self.normalization)
        object.__setattr__(self, "fs", float(self.fs))
        object.__setattr__(self, "window", (float(self.window[0]), float(self.window[1])))
        if not self.window[0] < self.window[1]:
            raise ValueError(f"BeatConfig: window={self.window} s must have start < stop")
        if self.length < 1:
            raise ValueError(f"BeatConfig: window={self.window} s is shorter than one sample at fs={self.fs:g} Hz")
        if not self.leads:
            raise ValueError("BeatConfig: leads must name at least one lead")
        if len(set(self.leads)) != len(self.leads):
            raise ValueError(f"BeatConfig: leads={list(self.leads)} names a lead twice")
        if self.template_from not in ("all", "regular"):
            raise ValueError(f"BeatConfig: template_from must be 'all' or 'regular', got {self.template_from!r}")

    @property
    def offsets(self) -> tuple[int, int]:
        """(start, stop) of the window in samples at ``fs``, relative to the beat."""
        return self.offsets_at(self.fs)

    def offsets_at(self, rate: float) -> tuple[int, int]:
        """(start, stop) of the window in samples at ``rate`` Hz (a record's own), relative to the beat."""
        return round(self.window[0] * rate), round(self.window[1] * rate)

    @property
    def length(self) -> int:
        """Window length L in samples at ``fs``."""
        start, stop = self.offsets
        return stop - start

    @property
    def channels(self) -> int:
        """Channels C of each window: the leads, and as many template differences."""
        return len(self.leads) * (2 if self.template else 1)


@dataclass(frozen=True)
class BeatArrays:
    """All beats of some records, as whole arrays (N beats, C leads, L samples, F RR features).

    Attributes:
        X: (N, C, L) float32 windows (preprocessed signal; C = ``config.channels``).
        rr: (N, F) float32 RR features, columns :data:`~msresnet1d.data.rr.RR_FEATURES`; NaN for
            the beat of a record that has only one (no interval).
        y: (N,) int64 AAMI class index into :data:`~msresnet1d.data.aami.AAMI_CLASSES`.
        record: (N,) str record name of each beat.
        sample: (N,) int64 annotation position in samples at the record's original rate.
        symbol: (N,) str original MIT-BIH beat symbol.
        config: the :class:`BeatConfig` the windows were cut with.
    """

    X: np.ndarray
    rr: np.ndarray
    y: np.ndarray
    record: np.ndarray
    sample: np.ndarray
    symbol: np.ndarray
    config: BeatConfig

    def __len__(self) -> int:
        return len(self.y)

    def class_counts(self) -> dict[str, int]:
        """Beats per AAMI class, every class listed."""
        counts = np.bincount(self.y, minlength=len(AAMI_CLASSES))
        return dict(zip(AAMI_CLASSES, map(int, counts), strict=True))

    def select(self, index: np.ndarray) -> BeatArrays:
        """The beats at ``index`` (a boolean mask or integer indices), as new arrays."""
        fields = ("X", "rr", "y", "record", "sample", "symbol")
        return dataclasses.replace(self, **{f: getattr(self, f)[index] for f in fields})

    def from_records(self, records: Iterable[str]) -> BeatArrays:
        """The beats of the named records (e.g. a validation hold-out)."""
        return self.select(np.isin(self.record, list(records)))


def beat_windows(signal: np.ndarray, centres: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Windows ``signal[:, c + start : c + stop]`` for every centre ``c``, edge-padded.

    Args:
        signal: (C, T) signal.
        centres: (N,) positions in samples, each in [0, T).
        start, stop: window bounds in samples relative to the centre (start < stop).

    Returns:
        (N, C, stop - start) array of ``signal``'s dtype: one gather from a sliding-window view of
        the padded signal (no loop, and no (N, stop - start) index array).

    Raises:
        ValueError: ``signal`` not 2-D, ``centres`` not 1-D integers in [0, T), or ``start >= stop``.
    """
    check_signal(signal, "beat_windows")
    centres = check_positions(centres, "beat_windows", "centres")
    if not start < stop:
        raise ValueError(f"beat_windows: start={start} must be below stop={stop} (samples relative to the centre)")
    first, last = (centres.min(), centres.max()) if len(centres) else (0, 0)
    if first < 0 or last >= signal.shape[1]:
        raise ValueError(f"beat_windows: centres must lie in [0, T) = [0, {signal.shape[1]}) samples, got "
                         f"{first if first < 0 else last}")
    before, after = max(0, -start), max(0, stop)
    padded = np.pad(signal, ((0, 0), (before, after)), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, stop - start, axis=1)  # (C, T', W), a view
    return windows[:, centres + (start + before)].transpose(1, 0, 2)


REGULAR_RR_FRACTION = 0.9  # a beat is regular when its previous interval is >= 0.9 x the record's mean
MIN_REGULAR_BEATS = 10


def regular_beats(rr_prev: np.ndarray) -> np.ndarray:
    """(N,) bool: the beats of one record that are not premature, i.e. whose previous RR
    interval (``rr_prev``, (N,) seconds) is at least :data:`REGULAR_RR_FRACTION` of the
    record's mean; all beats when fewer than :data:`MIN_REGULAR_BEATS` qualify."""
    regular = rr_prev >= REGULAR_RR_FRACTION * rr_prev.mean()
    return regular if regular.sum() >= MIN_REGULAR_BEATS else np.ones(len(rr_prev), dtype=bool)


def median_beat(windows: np.ndarray, rr_prev: np.ndarray | None = None) -> np.ndarray:
    """(C, L) sample-by-sample median of the (N, C, L) windows of one record (N >= 1); with
    ``rr_prev`` ((N,) s, each beat's previous RR interval), of its :func:`regular_beats` only."""
    if len(windows) == 0:
        raise ValueError("a median beat needs at least one window")
    if rr_prev is not None:
        if len(rr_prev) != len(windows):
            raise ValueError(f"rr_prev has {len(rr_prev)} intervals for {len(windows)} windows")
        windows = windows[regular_beats(np.asarray(rr_prev))]
    return np.median(windows, axis=0).astype(windows.dtype)


def positions_at(samples: np.ndarray, fs: float, target_fs: float, length: int) -> np.ndarray:
    """(B,) int64 sample positions at ``fs`` Hz moved to ``target_fs`` Hz (rounded), clipped to a
    signal of ``length`` samples: beat centres in a resampled recording. Raises ValueError for a
    rate that is not finite and > 0."""
    check_rates("positions_at", fs=fs, target_fs=target_fs)
    return np.minimum(np.round(np.asarray(samples) * (target_fs / fs)).astype(np.int64), length - 1)


def record_template(windows: np.ndarray, rr: np.ndarray | None, template_from: str) -> np.ndarray:
    """(C, L) median beat of one record from the (N, C, L) windows of its AAMI-classed beats and
    their (N, F) RR features (:data:`~msresnet1d.data.rr.RR_FEATURES`; not read, may be None, for
    ``"all"``): over all of them (``template_from="all"``) or over the regular ones
    (``"regular"``, :func:`regular_beats`) - as training builds it (:attr:`BeatConfig.template_from`),
    ``msresnet1d predict`` and ``classify_beats`` too.

    Raises:
        ValueError: ``template_from`` is neither, or is ``"regular"`` without ``rr``.
    """
    if template_from not in ("all", "regular"):
        raise ValueError(f"template_from must be 'all' or 'regular', got {template_from!r}")
    if template_from == "all":
        return median_beat(windows, None)
    if rr is None:
        raise ValueError("template_from='regular' needs the beats' RR features (rr): they tell the regular beats")
    return median_beat(windows, rr[:, RR_FEATURES.index("rr_prev")])


def with_template(windows: np.ndarray, template: np.ndarray) -> np.ndarray:
    """(N, 2C, L): the (N, C, L) windows, then the windows minus the (C, L) ``template``."""
    return np.concatenate([windows, windows - template[None]], axis=1)


def record_beats(path: str | os.PathLike[str], config: BeatConfig = BeatConfig()) -> dict[str, np.ndarray]:
    """Windows, RR features and labels of the AAMI beats of one record (not cached). A record of
    fewer than 2 beats has no RR interval: a warning names it, and its beats' RR features are NaN
    (:func:`with_rr_features` leaves such records out). Beats of the
    WFDB beat codes outside the AAMI table (B, n, r, ?) bound their neighbours' RR intervals but
    get no window: a warning names the record and counts them per symbol. Another counts the
    windows that reach into samples the record lacks (WFDB's invalid value, interpolated).

    Returns:
        ``{"X": (n, C, L) float32, "rr": (n, F) float32, "y": (n,) int64, "sample": (n,) int64,
        "symbol": (n,) str}``, beats in time order.
    """
    path = Path(path)
    name = record_label(path)
    record = read_record(path, leads=config.leads)
    annotations = read_annotations(path, config.annotator, record.signal.shape[1])
    is_beat = np.isin(annotations.symbol, list(BEAT_SYMBOLS))
    samples, symbols = annotations.sample[is_beat], annotations.symbol[is_beat]
    if len(samples) < 2:  # no interval: a record whose RR features a model reads is left out by its run
        outcome = "the RR features of its beat are NaN" if len(samples) else "no beat from it"
        warnings.warn(f"record '{name}': {len(samples)} beat(s) in {path.name}.{config.annotator}, fewer than the 2 RR "
                      f"intervals need: {outcome}", stacklevel=2)
        rr = np.full((len(samples), len(RR_FEATURES)), np.nan, dtype=np.float32)
    else:
        try:
            rr = rr_features(samples, record.fs)
        except ValueError as exc:
            raise DataError(f"record '{name}': file {path.name}.{config.annotator}: {exc}") from exc
        warn_close_beats(samples, record.fs, f"record '{name}': file {path.name}.{config.annotator}")
    if np.ceil(record.signal.shape[1] * config.fs / record.fs) < config.length:
        raise DataError(
            f"record '{name}' is shorter than one beat window: {record.signal.shape[1]} samples "
            f"({record.signal.shape[1] / record.fs:.3f} s at {record.fs:g} Hz) < window "
            f"{config.window[1] - config.window[0]:.3f} s"
        )
    signal = preprocess_record(record, config.fs, config.band, config.normalization, name)
    keep = np.isin(symbols, list(MITBIH_TO_AAMI))
    _warn_unclassed(name, symbols[~keep])
    first, last = config.offsets_at(record.fs)
    warn_invalid(record, "the {} beat windows that reach into them are cut from that, not from the recording "
                 "(trained on and scored so)", samples[keep] + first, samples[keep] + last, name=name)
    centres = positions_at(samples[keep], record.fs, config.fs, signal.shape[1])
    windows = beat_windows(signal, centres, *config.offsets)
    if config.template:  # a record without AAMI beats has no median beat, and no window to subtract it from
        template = (record_template(windows, rr[keep], config.template_from) if len(windows)
                    else np.zeros(windows.shape[1:], dtype=windows.dtype))
        windows = with_template(windows, template)
    return {
        "X": np.ascontiguousarray(windows),
        "rr": rr[keep],
        "y": aami_labels(symbols[keep]),
        "sample": samples[keep],
        "symbol": symbols[keep],
    }


def with_rr_features(beats: BeatArrays, what: str) -> tuple[BeatArrays, list[str]]:
    """``beats`` less the records without RR features (fewer than 2 beats: NaN, see
    :func:`record_beats`), for a model that reads them, and the names of those records, which a
    warning names too. ``what`` names the beats in messages (``"test"``).

    Raises:
        DataError: every record of ``beats`` lacks RR features.
    """
    lacking = np.isnan(beats.rr).any(axis=1)
    names = list(dict.fromkeys(beats.record[lacking].tolist()))
    if not names:
        return beats, []
    if lacking.all():
        raise DataError(f"{what} records: every one with beats ({', '.join(names)}) has fewer than 2 beats, too few "
                        "for the RR features the model reads ([data] rr): set rr = false, or give longer records")
    warnings.warn(f"{what} records: {', '.join(names)} left out ({int(lacking.sum())} beat(s)): fewer than 2 beats, "
                  "too few for the RR features the model reads ([data] rr)", stacklevel=2)
    return beats.select(~lacking), names


def _warn_unclassed(name: str, symbols: np.ndarray) -> None:
    """Warn, naming record ``name`` and the count of each symbol, about its beats whose ``symbols``
    are WFDB beat codes outside the AAMI table (:data:`~msresnet1d.data.aami.UNMAPPED_BEAT_SYMBOLS`):
    they get no window, so they are neither trained on nor scored (``predict`` labels them)."""
    if not len(symbols):
        return
    found, counts = np.unique(symbols, return_counts=True)
    order = np.argsort(-counts, kind="stable")
    listed = [f"{counts[i]} labelled {found[i]}" for i in order]
    listed[0] = f"{counts[order[0]]} beat{'s' if counts[order[0]] > 1 else ''} labelled {found[order[0]]}"
    verb = "are" if counts.sum() > 1 else "is"
    warnings.warn(f"record '{name}': {', '.join(listed)} {verb} outside the AAMI classes (de Chazal's mapping): no "
                  "window, not trained on or scored", stacklevel=2)


def _build(db_dir: Path, names: list[str], config: BeatConfig, workers: int | None) -> dict[str, np.ndarray]:
    paths = [db_dir / name for name in names]
    parts = process_map(functools.partial(record_beats, config=config), paths, workers, f"beats {db_dir.name}")
    arrays = {field: np.concatenate([part[field] for part in parts]) for field in parts[0]}
    arrays["record"] = np.repeat(np.array(names, dtype=str), [len(part["y"]) for part in parts])
    return arrays


def default_records(db_dir: str | os.PathLike[str]) -> list[str]:
    """The records :func:`load_beats` reads from ``db_dir`` when none are named: the database's
    (:func:`~msresnet1d.data.locate.list_records`, in its order), less MIT-BIH's paced records
    (:data:`~msresnet1d.data.splits.PACED_RECORDS`) when they are MIT-BIH's: the folder lists all
    48 MIT-BIH records (a resampled copy, say), or the record's header is MIT-BIH 1.0.0's published
    one (SHA-256 in ``msresnet1d/data/checksums/mitdb.sha256``). Records of those names in another
    database are read like any other. The records left out are logged (INFO), by name."""
    db_dir = Path(db_dir)
    names = list_records(db_dir)
    whole_mitdb = set(DS1 + DS2 + PACED_RECORDS) <= set(names)
    paced = [name for name in names if name in PACED_RECORDS and (whole_mitdb or has_published_headers(db_dir, [name]))]
    if paced:
        log.info("%s: MIT-BIH's paced records %s left out (name records to read them)", db_dir, ", ".join(paced))
    return [name for name in names if name not in paced]


def load_beats(
    records: Sequence[str] | None = None,
    *,
    db_dir: str | os.PathLike[str] | None = None,
    config: BeatConfig = BeatConfig(),
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    workers: int | None = None,
) -> BeatArrays:
    """Beats of ``records`` as one :class:`BeatArrays`.

    Args:
        records: record names, e.g. :data:`~msresnet1d.data.splits.DS1`; ``None``: the database's
            records (:func:`~msresnet1d.data.locate.list_records`, in its order) except MIT-BIH's
            paced ones (:data:`~msresnet1d.data.splits.PACED_RECORDS`; 102 and 104 have no MLII)
            when the folder is MIT-BIH (:func:`default_records`), i.e. on MIT-BIH the 44
            inter-patient records, DS1 + DS2.
        db_dir: database folder; default ``find_database("mitdb")`` (which may fall back to the
            embedded sample, with a warning, when ``$MSRESNET1D_DATA`` is unset).
        config: windows and preprocessing.
        cache: reuse and store the arrays on disk, one entry per (records, config) (see
            :mod:`.cache`); cached arrays come back memory-mapped copy-on-write.
        cache_dir: cache folder; default :func:`~msresnet1d.data.cache.cache_dir`.
        workers: processes reading the records when they are not cached (default: the usable
            CPUs, at most 4; 1 reads them in this process).

    Raises:
        DataError: a record is missing, malformed, lacks a lead or has one without a valid sample
            (all WFDB invalid values), or is shorter than a window.
    """
    db_dir = Path(db_dir).expanduser() if db_dir is not None else find_database("mitdb")
    names = list(records) if records is not None else default_records(db_dir)
    if not names:
        raise DataError(f"database {db_dir}: no records requested")
    # the header and the annotations read (another annotator's files are not MIT-BIH's: not compared)
    changed = [] if is_embedded_sample(db_dir, "mitdb") else changed_files(db_dir, names,
                                                                           extensions=(".hea", f".{config.annotator}"))
    if changed:  # the sample's headers differ by design (its records are cut short)
        warnings.warn(f"{db_dir}: {len(changed)} file(s) differ from MIT-BIH 1.0.0's published ones "
                      f"({', '.join(changed[:5])}{', ...' if len(changed) > 5 else ''}; SHA-256 in "
                      "msresnet1d/data/checksums/mitdb.sha256): a changed header or annotation file changes the rate, "
                      "leads or labels read, so figures on this copy do not compare with the literature's",
                      stacklevel=2)
    build = functools.partial(_build, db_dir, names, config, workers)
    if cache:
        key = records_key(db_dir, names, {"records": names, **dataclasses.asdict(config)})
        arrays = cached(entry_path(resolve_cache_dir(cache_dir) / "beats", db_dir, key), key, build)
    else:
        arrays = build()
    log.info("loaded %d beats from %d records of %s", len(arrays["y"]), len(names), db_dir)
    return BeatArrays(config=config, **arrays)


def load_inter_patient(
    db_dir: str | os.PathLike[str] | None = None,
    config: BeatConfig = BeatConfig(),
    *,
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    workers: int | None = None,
) -> tuple[BeatArrays, BeatArrays]:
    """(train, test) beats of de Chazal's inter-patient split: DS1 and DS2, paced records out.
    ``db_dir``, ``config``, ``cache``, ``cache_dir`` and ``workers`` are :func:`load_beats`'s, for
    both; each set is cached on its own."""
    db_dir = Path(db_dir).expanduser() if db_dir is not None else find_database("mitdb")
    kwargs = dict(db_dir=db_dir, config=config, cache=cache, cache_dir=cache_dir, workers=workers)
    return load_beats(DS1, **kwargs), load_beats(DS2, **kwargs)


class BeatDataset(torch.utils.data.Dataset):
    """Beats for a ``DataLoader``.

    Item ``i`` is ``(signal, label)``: signal (C, L) float32 tensor, label int64 scalar tensor;
    with ``with_rr=True`` it is ``(signal, rr, label)``, rr (F,) float32. Works with any
    ``num_workers`` (workers started by fork share the arrays; spawned or forkserver ones, the
    default on macOS and Windows, and on Linux from Python 3.14, each get a copy).
    """

    def __init__(self, beats: BeatArrays, with_rr: bool = False) -> None:
        self.beats = beats
        self.with_rr = with_rr

    def __len__(self) -> int:
        return len(self.beats)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        signal = torch.from_numpy(self.beats.X[i])
        label = torch.tensor(self.beats.y[i], dtype=torch.int64)
        if self.with_rr:
            return signal, torch.from_numpy(self.beats.rr[i]), label
        return signal, label
