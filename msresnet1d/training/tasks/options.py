"""A task's ``[data]`` table: its defaults, the checks of its values, and what follows from it
without reading any data (the model's inputs, the classes, the database read). The keys and
their meaning are listed in :mod:`msresnet1d.training.tasks`."""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ...values import ANNOTATOR_RULE, is_annotator, is_number, is_whole
from ...spelling import did_you_mean
from ..config import TrainConfig

if TYPE_CHECKING:
    from ...data import BeatConfig, RhythmConfig


BEAT_DEFAULTS: dict[str, Any] = {
    "data_dir": None, "leads": ["MLII"], "fs": 180.0, "window": [-0.25, 0.45], "band": [0.5, 40.0], "rr": True,
    "train_records": None, "test_records": None, "val_records": 4, "val_seed": 0, "representation": "signal",
    "template": True, "template_from": "all", "scale": 0.0, "noise_std": 0.0, "shift": 0.0,
    "spectrogram": {"window_s": 0.125, "overlap": 0.75, "max_freq_hz": 50.0, "size": 32},
    "cache": True, "record_balanced": False, "annotator": "atr",
}

RHYTHM_DEFAULTS: dict[str, Any] = {
    "data_dir": None, "lead": None, "fs": 150.0, "band": [0.5, 40.0], "crop_seconds": 30.0, "hop_seconds": 15.0,
    "folds": 5, "fold": 0, "val_fraction": 0.1, "split_seed": None, "cache": True, "flip_prob": 0.0,
    "noise_std": 0.0, "rr": False,
}

FASHION_DEFAULTS: dict[str, Any] = {
    "data_dir": None, "resize": None, "val_size": 5000, "train_size": None, "normalize": "unit", "crop_padding": 0,
    "hflip": False, "erase_prob": 0.0, "download": False,
}


def beat_config(data: dict[str, Any]) -> BeatConfig:
    """The :class:`~msresnet1d.data.BeatConfig` of a beat task's resolved ``[data]`` options."""
    from ...data import BeatConfig

    return BeatConfig(leads=tuple(data["leads"]), fs=float(data["fs"]), window=tuple(data["window"]),
                      band=_band_corners(data), template=bool(data["template"]),
                      template_from=data["template_from"], annotator=data["annotator"])


def rhythm_config(data: dict[str, Any]) -> RhythmConfig:
    """How a rhythm run's ``[data]`` options (resolved) prepare records: its lead, rate and band
    (each record z-scored, :class:`~msresnet1d.data.RhythmConfig`'s normalisation)."""
    from ...data import RhythmConfig

    return RhythmConfig(lead=data["lead"], fs=float(data["fs"]), band=_band_corners(data))


def _band_corners(data: dict[str, Any]) -> tuple[float | None, float | None] | None:
    """``[data] band`` as the data configs take it: (low, high) Hz, or None for no filter."""
    return tuple(data["band"]) if data["band"] else None


TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "beats": BEAT_DEFAULTS, "rhythm": RHYTHM_DEFAULTS, "fashion_mnist": FASHION_DEFAULTS,
}

#: The WFDB database each ECG task reads (``[data] data_dir`` is found with ``find_database(name, data_dir)``).
DATABASES: dict[str, str] = {"beats": "mitdb", "rhythm": "cinc2017"}

#: The highest ``[data] fs`` (Hz) of the ECG tasks: at 10 kHz the DS1 beats' windows (one lead and
#: its template) hold about 3 GB; at 1 MHz one lead of one MIT-BIH record, resampled, holds 14 GB
#: (such runs ended in numpy's traceback, or were killed by the system without a message).
MAX_FS = 10_000.0

# [data] keys that only change the training batches (augmentation, sampling): evaluation never reads
# them, so checkpoints that differ only in these still see the same inputs and can form an ensemble
TRAINING_ONLY_DATA: dict[str, tuple[str, ...]] = {
    "beats": ("scale", "noise_std", "shift", "record_balanced"), "rhythm": ("flip_prob", "noise_std"),
    "fashion_mnist": ("crop_padding", "hflip", "erase_prob"),
}


def evaluation_data(cfg: TrainConfig) -> dict[str, Any]:
    """The resolved ``[data]`` options that decide what a model sees on the validation and test
    splits: all of them but the task's training-only keys (:data:`TRAINING_ONLY_DATA`)."""
    skip = TRAINING_ONLY_DATA[cfg.task]
    return {k: v for k, v in resolve_data(cfg).data.items() if k not in skip}


def _number(v: Any) -> bool:
    return is_number(v) and math.isfinite(v)


def _lead_names(v: Any) -> bool:
    return _names(v) and len(v) > 0 and all(a and a == a.strip() for lead in v for a in lead.split("|"))


def _names(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v)


def _record_names(v: Any) -> bool:
    """A list of records of the database folder (no absolute path, nothing through ``..``), each
    written one way (:func:`~msresnet1d.data.locate.is_record_name`)."""
    from ...data.locate import is_record_name

    return _names(v) and all(map(is_record_name, v))


def _pair(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and len(v) == 2 and all(map(_number, v)) and v[0] < v[1]


def _band(v: Any) -> bool:
    """No filter (unset, false, []), or [low, high] in Hz where either corner may be unset (null)."""
    if v is None or v is False or (isinstance(v, (list, tuple)) and len(v) == 0):
        return True
    if not isinstance(v, (list, tuple)) or len(v) != 2 or v[0] is v[1] is None:
        return False
    if not all(f is None or (_number(f) and f > 0) for f in v):  # a corner at 0 Hz: no filter can have it
        return False
    return v[0] is None or v[1] is None or v[0] < v[1]


def _rr_names(features: Sequence[str]) -> Callable[[Any], bool]:
    def valid(v: Any) -> bool:  # what rr_columns takes: true, false or distinct names of features
        from ...data.rr import rr_columns

        if not isinstance(v, (bool, list, tuple)):
            return False
        try:
            rr_columns(v, features, features)
        except ValueError:
            return False
        return True
    return valid


def _data_rules() -> dict[str, dict[str, tuple[Callable[[Any], bool], str]]]:
    """Per task, per ``[data]`` key: a test of a value and what it must be (for the message)."""
    from ...data.hrv import HRV_FEATURES
    from ...data.rr import RR_FEATURES

    path = (lambda v: v is None or isinstance(v, str), "a folder path (or unset)")
    flag = (lambda v: isinstance(v, bool), "true or false")
    nonneg = (lambda v: _number(v) and v >= 0, "a number >= 0")
    positive = (lambda v: _number(v) and v > 0, "a number > 0")
    rate = (lambda v: _number(v) and 0 < v <= MAX_FS,
            f"a rate in Hz > 0 and at most {MAX_FS:,g} (the records are resampled to it: ECG needs far less, and "
            "the data of a higher one outgrow memory)")
    seed = (lambda v: is_whole(v) and v >= 0, "a whole number >= 0")
    band = (_band, "[low, high] in Hz, 0 < low < high, either corner null (open), or unset/false (none)")
    records = (lambda v: v is None or (_record_names(v) and len(v) > 0 and len(set(v)) == len(v)),
               'a non-empty list of record names as strings ("101"), each record once, each in the database folder '
               "(no absolute path or ..) and written one way ('101', not './101'); leave it out for the default split")
    return {
        "beats": {
            "data_dir": path, "leads": (_lead_names, 'a non-empty list of lead names, an entry "V1|V5" the first of these a record has '
                                   "(no spaces or empty names around |)"),
            "fs": rate, "window": (_pair, "[start, stop] in seconds, start < stop"),
            "band": band,
            "rr": (_rr_names(RR_FEATURES), f"true, false or a list of distinct names of {', '.join(RR_FEATURES)}"),
            "train_records": records, "test_records": records,
            "val_records": (lambda v: (is_whole(v) and v >= 0) or (_record_names(v) and len(set(v)) == len(v)),
                            'a whole number >= 0 or a list of record names as strings ("101"), each once'),
            "val_seed": seed, "representation": (lambda v: v in ("signal", "spectrogram"), "'signal' or 'spectrogram'"),
            "template": flag, "template_from": (lambda v: v in ("all", "regular"), "'all' or 'regular'"),
            "scale": (lambda v: _number(v) and 0 <= v < 1, "a number in [0, 1) (amplitude factors 1 - scale to 1 + scale)"),
            "noise_std": nonneg, "shift": nonneg,
            "spectrogram": (lambda v: isinstance(v, dict), "a table of spectrogram options"), "cache": flag,
            "record_balanced": flag,
            "annotator": (is_annotator, f"the extension of the records' annotation files, {ANNOTATOR_RULE}"),
        },
        "rhythm": {
            "data_dir": path, "fs": rate, "band": band, "crop_seconds": positive, "hop_seconds": positive,
            "lead": (lambda v: v is None or (isinstance(v, str) and _lead_names([v])),
                     'a lead name, or "A|B" the first of these a record has (or unset: single-lead records only)'),
            "folds": (lambda v: is_whole(v) and v >= 2, "a whole number >= 2"),
            "fold": (lambda v: is_whole(v) and v >= 0, "a whole number >= 0 (below folds)"),
            "val_fraction": (lambda v: _number(v) and 0 <= v < 1, "a number in [0, 1)"),
            "split_seed": (lambda v: v is None or (is_whole(v) and v >= 0), "a whole number >= 0 (or unset: the run's seed)"),
            "cache": flag, "flip_prob": (lambda v: _number(v) and 0 <= v <= 1, "a number in [0, 1]"),
            "noise_std": nonneg,
            "rr": (_rr_names(HRV_FEATURES), f"true, false or a list of distinct names of {', '.join(HRV_FEATURES)}"),
        },
        "fashion_mnist": {
            "data_dir": path, "resize": (lambda v: v is None or (is_whole(v) and v > 0), "a whole number > 0 (or unset)"),
            "val_size": (lambda v: is_whole(v) and 0 <= v <= 59_998,
                         "a whole number in [0, 59998]: training keeps at least 2 of the 60,000 training images"),
            "train_size": (lambda v: v is None or (is_whole(v) and 2 <= v <= 60_000),
                           "a whole number in [2, 60000] (or unset: every training image not held out)"),
            "normalize": (lambda v: v in ("unit", "standardize"), "'unit' or 'standardize'"),
            "crop_padding": (lambda v: is_whole(v) and v >= 0, "a whole number >= 0"), "hflip": flag,
            "erase_prob": (lambda v: _number(v) and 0 <= v <= 1, "a number in [0, 1]"), "download": flag,
        },
    }


def check_tta(cfg: TrainConfig, tta: str | None = None) -> None:
    """Raise ValueError for a test-time augmentation ``tta`` (default: ``cfg.tta``) that makes no
    sense for the model of ``cfg``: the sign flip is for ECG leads of arbitrary polarity, fed as
    signals; not for images (an inverted image is no garment), nor for beats fed as spectrograms
    (the flip would invert the spectrogram image, not the signal)."""
    tta = cfg.tta if tta is None else tta
    if tta == "none":
        return
    if cfg.task == "fashion_mnist":
        raise ValueError(f"tta {tta!r} averages each input with its sign-inverted copy, for ECG leads of arbitrary "
                         "polarity; a Fashion-MNIST image inverted is not the same garment: use tta 'none'")
    if cfg.task == "beats" and resolve_data(cfg).data["representation"] == "spectrogram":
        raise ValueError(f"tta {tta!r} averages each input with its sign-inverted copy, but this model reads beats "
                         "as spectrograms ([data] representation 'spectrogram'): the flip would invert the spectrogram "
                         "image, not the signal (whose spectrogram does not change with its sign): use tta 'none'")


def check_data(cfg: TrainConfig) -> None:
    """Check the type and range of every ``[data]`` option of ``cfg`` that can be checked without
    the data (a rhythm task's ``fold`` against ``folds`` too); ranges that depend on the data (e.g.
    a window longer than a record) are checked when it is loaded.

    Raises:
        ValueError: naming the first bad key, its value and what it must be.
    """
    from ...data.hrv import MIN_FS

    check_tta(cfg)
    data = resolve_data(cfg).data
    for key, (valid, expected) in _data_rules()[cfg.task].items():
        if not valid(data[key]):
            raise ValueError(f"config: [data] {key} must be {expected}, got {data[key]!r}")
    if cfg.task == "rhythm" and data["fold"] >= data["folds"]:
        raise ValueError(f"config: [data] fold must be below folds ({data['folds']}), got {data['fold']}")
    if cfg.task == "rhythm" and data["hop_seconds"] > data["crop_seconds"]:
        raise ValueError(f"config: [data] hop_seconds must be at most crop_seconds ({data['crop_seconds']} s), got "
                         f"{data['hop_seconds']}: evaluation windows would leave samples out")
    if cfg.task == "rhythm" and data["rr"] not in (False, []) and data["fs"] < MIN_FS:
        raise ValueError(f"config: [data] fs must be at least {MIN_FS:g} Hz with rr (the R-peak detector's 5-20 Hz "
                         f"band), got {data['fs']}")
    if cfg.task == "fashion_mnist" and data["train_size"] and data["val_size"] + data["train_size"] > 60_000:
        raise ValueError(f"config: [data] train_size must be at most the {60_000 - data['val_size']:,} training images "
                         f"val_size={data['val_size']} leaves, got {data['train_size']}")
    if cfg.task == "beats":
        beat_config(data)  # the window against the rate
        start, stop = data["window"]
        if data["shift"] >= stop - start:
            raise ValueError(f"config: [data] shift must be shorter than the window (window = {data['window']}: "
                             f"{stop - start:g} s), got {data['shift']!r}")
        if data["record_balanced"] and cfg.balanced_sampler:
            raise ValueError("config: [data] record_balanced and balanced_sampler both choose how training beats "
                             "are drawn (by record, by class): set one of them")
        if data["representation"] == "spectrogram":
            from ...data.spectrogram import Spectrogram

            try:
                Spectrogram(fs=float(data["fs"]), **data["spectrogram"])
            except (TypeError, ValueError) as e:
                raise ValueError(f"config: [data.spectrogram] {e}") from None


def _options(data: dict[str, Any], defaults: dict[str, Any], task: str, table: str = "[data]") -> dict[str, Any]:
    unknown = sorted(set(data) - set(defaults))
    if unknown:
        raise ValueError(f"{table} of task {task!r}: unknown key(s) {', '.join(unknown)}"
                         f"{did_you_mean(unknown, defaults)}; "
                         f"known: {', '.join(sorted(defaults))}")
    return {**defaults, **data}



def resolve_data(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with its ``[data]`` table completed from the task's defaults (nested tables such
    as ``[data.spectrogram]`` too), so that a run's config.json and checkpoints record every data
    option, not only those given: a later change of a default does not change what an old run
    means. A rhythm task's ``split_seed`` left unset becomes the run's ``seed`` (the splits of
    runs made before the key existed). Idempotent; unknown keys are ValueErrors naming them."""
    defaults = TASK_DEFAULTS[cfg.task]
    data = _options(cfg.data, defaults, cfg.task)
    for key, default in defaults.items():
        if isinstance(default, dict):
            if data[key] is not None and not isinstance(data[key], dict):
                raise ValueError(f"config: [data] {key} must be a table of options ({', '.join(default)}), "
                                 f"got {data[key]!r}")
            data[key] = _options(data[key] or {}, default, cfg.task, f"[data.{key}]")
    if cfg.task == "rhythm" and data["split_seed"] is None:
        data["split_seed"] = cfg.seed
    return dataclasses.replace(cfg, data=data)


def model_inputs(cfg: TrainConfig) -> tuple[int, int]:
    """(in_channels, extra_features) of the model ``cfg`` trains, from its ``[data]`` options
    alone: the :class:`Task`'s ``in_channels`` and ``extra_features`` without reading any data."""
    from ...data.hrv import HRV_FEATURES
    from ...data.rr import rr_columns

    data = resolve_data(cfg).data
    if cfg.task == "beats":
        return beat_config(data).channels, len(rr_columns(data["rr"]))
    if cfg.task == "rhythm":
        return 1, len(rr_columns(data["rr"], HRV_FEATURES, HRV_FEATURES))
    return 1, 0


def trained_length(cfg: TrainConfig) -> int:
    """The input length L, in samples, a 1D model of ``cfg`` trains on: a beat window (``window``
    x ``fs``), or a rhythm crop and evaluation window (``crop_seconds`` x ``fs``, rounded: the
    rhythm task and ``predict`` take it from here)."""
    data = resolve_data(cfg).data
    if cfg.task == "beats":
        return beat_config(data).length
    if cfg.task == "rhythm":
        return round(data["crop_seconds"] * data["fs"])
    raise ValueError(f"task {cfg.task!r} trains no 1D model on signals")


def task_classes(task: str) -> tuple[str, ...]:
    """The classes a task's model predicts, in output order: the :class:`Task`'s ``class_names``."""
    from ...data import AAMI_CLASSES, CINC_CLASSES
    from ...data.fashion_mnist import CLASS_NAMES

    return tuple({"beats": AAMI_CLASSES, "rhythm": CINC_CLASSES, "fashion_mnist": CLASS_NAMES}[task])
