"""Signal preprocessing: plain functions on numpy arrays, along the last axis.

Arrays have shape (..., L) (typically (C, L): C leads of L samples); rates are in Hz and
durations in seconds. Each function returns a new array and leaves its input alone. Leads are
selected by name (:func:`select_leads`), band-pass filtering is zero-phase (:func:`bandpass`),
resampling polyphase (:func:`resample`), normalisation per record and channel
(:func:`normalize`); :func:`preprocess_signal` chains them for one record.

Invalid samples, explicitly:

* **NaN** (how wfdb reports invalid samples) is replaced by linear interpolation between the
  nearest valid samples on either side (the nearest valid value at the ends), so filters can run.
* **Flat runs** (the value does not change for at least ``flat_seconds``, e.g. a lead off) stay
  in the signal (they are not removed or filled).
* Both are left out of the normalisation statistics, so they neither shrink nor shift the scale
  of the valid part. A channel without any valid sample (e.g. flat throughout) is only centred,
  on the statistic of all its samples, with a warning; so is a channel whose spread is float
  rounding noise (a flat window shorter than ``flat_seconds``, after the band-pass).
"""

from __future__ import annotations

import functools
import math
import numbers
import warnings
from collections.abc import Sequence
from fractions import Fraction
from typing import Literal, get_args

import numpy as np
from scipy import signal as sps

from ..values import is_number

Normalization = Literal["zscore", "robust"]
#: The :func:`normalize` methods.
NORMALIZATIONS: tuple[str, ...] = get_args(Normalization)

#: Interquartile range of a standard normal: IQR / this estimates the standard deviation.
_IQR_OF_NORMAL = 1.3489795

#: A spread at most this fraction of the reference signal's largest magnitude counts as zero: the
#: band-pass leaves float rounding noise of ~1e-13 of a flat input's magnitude.
_NEGLIGIBLE_SPREAD = 1e-9


def _real_scalar(value: object) -> bool:
    """Whether ``value`` is one real number held in an array (numpy's 0-d, a torch scalar)."""
    return np.ndim(value) == 0 and np.issubdtype(np.asarray(value).dtype, np.number) \
        and not np.iscomplexobj(np.asarray(value))


def check_rates(function: str, **rates: float) -> None:
    """Raise ValueError, naming ``function``, unless every rate given as ``name=value`` (Hz) is a
    finite number > 0 (TypeError for one that is not a real number)."""
    for name, value in rates.items():
        if isinstance(value, (bool, np.bool_)) or not (isinstance(value, numbers.Real) or _real_scalar(value)):
            raise TypeError(f"{function}: {name} must be a number (Hz), got {type(value).__name__} {value!r}")
    if not all(0 < value < math.inf for value in rates.values()):
        got = ", ".join(f"{name}={value} Hz" for name, value in rates.items())
        raise ValueError(f"{function}: {'rates' if len(rates) > 1 else 'the rate'} must be finite and positive, "
                         f"got {got}")


def check_signal(signal: np.ndarray, function: str) -> None:
    """Raise ValueError, naming ``function``, unless ``signal`` is 2-D: (C, T), C channels of T samples."""
    if np.ndim(signal) != 2:
        hint = "; for one lead pass signal[None]" if np.ndim(signal) == 1 else ""
        raise ValueError(f"{function}: signal must be (C, T) = (channels, samples), got shape {np.shape(signal)}{hint}")


def check_real(x: np.ndarray, function: str) -> None:
    """Raise TypeError, naming ``function``, unless ``x`` holds real numbers (integers or floats):
    a complex signal would lose its imaginary part to the float conversion."""
    dtype = np.asarray(x).dtype
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise TypeError(f"{function}: x must hold real numbers (integers or floats), got dtype {dtype}")


def shown_leads(leads: Sequence[str]) -> str:
    """Lead names for a message, comma-separated; WFDB allows an empty one, shown as ``(unnamed)``."""
    return ", ".join(lead or "(unnamed)" for lead in leads)


def lead_positions(available: Sequence[str], wanted: Sequence[str]) -> list[int]:
    """Positions of the leads named ``wanted`` among the names ``available``, in ``wanted``'s
    order. An entry may give alternatives separated by ``|``: ``"V1|V2|V4|V5"`` takes the first
    of them that is available (MIT-BIH's second lead is V1 in most records, V2, V4 or V5 in some).

    Raises:
        ValueError: an absent lead (naming it and the available ones, an unnamed one as
            ``(unnamed)``), or two entries that select the same lead.
    """
    positions, missing = [], []
    for entry in wanted:
        found = [lead for lead in entry.split("|") if lead in available]
        if found:
            positions.append(list(available).index(found[0]))
        else:
            missing.append(entry)
    if missing:
        raise ValueError(f"no lead {', '.join(map(repr, missing))} (leads: {shown_leads(available)})")
    if len(set(positions)) != len(positions):
        chosen = [available[i] for i in positions]
        raise ValueError(f"leads {list(wanted)} select {chosen}: one lead twice (leads: {shown_leads(available)})")
    return positions


def select_leads(x: np.ndarray, leads: Sequence[str], wanted: Sequence[str]) -> np.ndarray:
    """The channels of ``x`` (..., C, L) named ``wanted``, given the C channel names ``leads``:
    (..., len(wanted), L). Select by name, never by position: MIT-BIH record 114 has MLII
    second. Raises ``ValueError`` when a lead is absent."""
    return x[..., lead_positions(leads, wanted), :]


def fill_nan(x: np.ndarray) -> np.ndarray:
    """Replace NaN by linear interpolation along the last axis (nearest valid value at the ends).

    A channel that is all NaN becomes all zeros. Returns float64 (..., L).
    """
    out = np.array(x, dtype=np.float64)
    missing = np.isnan(out)
    if not missing.any():
        return out
    rows, rows_missing = out.reshape(-1, out.shape[-1]), missing.reshape(-1, out.shape[-1])
    positions = np.arange(out.shape[-1])
    for row, row_missing in zip(rows, rows_missing, strict=True):
        if row_missing.all():
            row[:] = 0.0
        elif row_missing.any():
            row[row_missing] = np.interp(positions[row_missing], positions[~row_missing], row[~row_missing])
    return out


def flat_mask(x: np.ndarray, fs: float, min_seconds: float = 1.0) -> np.ndarray:
    """Boolean (..., L): True on samples inside runs of at least ``min_seconds`` (at ``fs`` Hz)
    over which the value stays exactly the same (digitised data repeats exactly when flat).

    Raises:
        ValueError: ``fs`` not a finite rate > 0 (at 0 Hz every repeat would count as flat).
    """
    check_rates("flat_mask", fs=fs)
    min_run = max(2, round(min_seconds * fs))
    x = np.asarray(x)
    mask = np.zeros(x.shape, dtype=bool)
    if x.shape[-1] < min_run:
        return mask
    same = np.zeros(x.shape[-1] + 1, dtype=np.int8)  # same[i + 1]: sample i + 1 repeats sample i (NaN never does)
    bounds = np.zeros(x.shape[-1] + 1, dtype=np.int8)
    for row, row_mask in zip(x.reshape(-1, x.shape[-1]), mask.reshape(-1, x.shape[-1]), strict=True):
        np.equal(row[1:], row[:-1], out=same[1:-1].view(bool))
        edges = np.flatnonzero(np.diff(same))  # of the runs of repeats only: a byte a sample, no index a sample
        first, last = edges[0::2], edges[1::2]  # samples first..last are one value
        long = last - first + 1 >= min_run
        bounds[:] = 0
        bounds[first[long]] += 1  # +1 where a long run starts, -1 after it ends: their running sum marks it
        bounds[last[long] + 1] -= 1  # (a run may start where the previous one ends: two updates, not one)
        np.cumsum(bounds[:-1], dtype=np.int8, out=row_mask.view(np.int8))
    return mask


#: :func:`bandpass`'s Butterworth order (of each of its two passes), as :func:`preprocess_signal` filters.
FILTER_ORDER = 4
#: Flat runs at least this long (seconds) are left out of :func:`preprocess_signal`'s normalisation statistics.
FLAT_SECONDS = 1.0


def bandpass(
    x: np.ndarray, fs: float, low: float | None = 0.5, high: float | None = 40.0, order: int = FILTER_ORDER
) -> np.ndarray:
    """Zero-phase Butterworth filter (``sosfiltfilt``) along the last axis.

    Args:
        x: (..., L) signal sampled at ``fs`` Hz.
        fs: sampling rate in Hz.
        low: high-pass corner in Hz (removes baseline wander); ``None`` for a low-pass only.
        high: low-pass corner in Hz; ``None`` for a high-pass only (baseline removal alone).
        order: filter order of each pass (the zero-phase result has twice the attenuation).

    Returns:
        Filtered float64 (..., L), no phase shift (beat peaks stay where they are).

    Raises:
        ValueError: ``fs`` not a finite rate > 0, corners :func:`check_band` refuses or so close to
            0 or fs/2 that scipy cannot start the filter, or a signal too short for the filter.
    """
    check_band(fs, low, high)
    sos = _butterworth(order, low, high, fs)
    padlen = 3 * (2 * len(sos) + 1)
    if x.shape[-1] <= padlen:
        raise ValueError(
            f"bandpass: signal of {x.shape[-1]} samples is too short for this zero-phase filter "
            f"(needs more than {padlen} samples, {padlen / fs:.3f} s at {fs:g} Hz)"
        )
    try:
        return sps.sosfiltfilt(sos, x, axis=-1, padlen=padlen)
    except np.linalg.LinAlgError as e:  # sosfilt_zi: a corner <= ~1e-9 x fs/2, or within ~1e-13 x fs/2 of fs/2
        raise ValueError(f"bandpass: corners low={low} Hz, high={high} Hz at fs={fs:g} Hz lie too close to 0 or fs/2 "
                         f"for scipy's zero-phase Butterworth filter ({e}); move them inwards, or give None for a "
                         "corner not wanted") from None


def canonical_band(band: Sequence[float | None] | None,
                   owner: str = "band") -> tuple[float | None, float | None] | None:
    """``band`` (low, high) Hz as a tuple of floats (``None`` kept), so that equal configurations
    give equal cache keys: ``(0.5, 40)`` and ``[0.5, 40.0]`` are one band.

    Raises:
        ValueError: naming ``owner``, ``band`` is neither None nor two entries, each a number or
            None (the corners' values are :func:`check_band`'s).
    """
    if band is None:
        return None
    if not (isinstance(band, (tuple, list, np.ndarray)) and len(band) == 2
            and all(f is None or is_number(f) for f in band)):
        raise ValueError(f"{owner}: band must be (low, high) in Hz (either may be None) or None, got {band!r}")
    return tuple(None if f is None else float(f) for f in band)  # type: ignore[return-value]


def check_band(fs: float | None, low: float | None, high: float | None) -> None:
    """Raise ValueError unless ``fs`` is a finite rate > 0 and (``low``, ``high``) Hz are
    band-pass corners :func:`bandpass` can design at ``fs`` Hz: at least one given, each above 0
    and below fs/2, low below high. ``fs`` None: corners some rate can filter (each finite and
    > 0), as a configuration's band is checked before the rate of a record is known."""
    if fs is not None:
        check_rates("bandpass", fs=fs)
    nyquist = math.inf if fs is None else fs / 2
    within = "finite and positive" if fs is None else f"above 0 and below fs/2={nyquist:g} Hz"
    if low is None and high is None:
        raise ValueError("bandpass: give at least one of low and high (Hz)")
    if low is not None and not 0 < low < nyquist:
        raise ValueError(f"bandpass: low={low} Hz must be {within} (None: no high-pass)")
    if high is not None and not 0 < high < nyquist:
        raise ValueError(f"bandpass: high={high} Hz must be {within}" + ("" if fs is None else f" (fs={fs:g})"))
    if low is not None and high is not None and low >= high:
        raise ValueError(f"bandpass: low={low} Hz must be below high={high} Hz")


def check_preprocessing(owner: str, fs: float, band: tuple[float | None, float | None] | None,
                        normalization: Normalization | None) -> None:
    """Raise ValueError, naming ``owner`` (a configuration), unless its output rate ``fs`` is finite
    and > 0, ``band`` is None or (low, high) corners :func:`check_band` accepts at some rate (the
    filter runs at each record's own rate, checked when the record is read; ``band`` as
    :func:`canonical_band` gives it) and ``normalization`` is None or one of :data:`NORMALIZATIONS`."""
    check_rates(owner, fs=fs)
    if normalization is not None and normalization not in NORMALIZATIONS:
        raise ValueError(f"{owner}: normalization must be 'zscore', 'robust' or None, got {normalization!r}")
    if band is None:
        return
    try:
        check_band(None, *band)
    except ValueError as e:
        raise ValueError(f"{owner}: band={band}: {e}") from None


@functools.lru_cache(maxsize=32)
def _butterworth(order: int, low: float | None, high: float | None, fs: float) -> np.ndarray:
    """Second-order sections of a Butterworth filter (designs are cached: records share them)."""
    if low is None:
        return sps.butter(order, high, btype="lowpass", fs=fs, output="sos")
    if high is None:
        return sps.butter(order, low, btype="highpass", fs=fs, output="sos")
    return sps.butter(order, [low, high], btype="bandpass", fs=fs, output="sos")


def resample(x: np.ndarray, fs: float, target_fs: float) -> np.ndarray:
    """Resample along the last axis from ``fs`` to ``target_fs`` Hz with ``resample_poly``
    (polyphase, anti-aliased). The ratio up/down is taken from the rates' decimal values, as the
    nearest fraction whose denominator is at most 10,000 (360 -> 250 Hz is exactly 25/36).
    Output length: ``ceil(L * up / down)``, which is ``ceil(L * target_fs / fs)`` whenever that
    fraction is exact (not for 360 -> 100.00001 Hz, read as 5/18). Output type: float32 for
    float32 ``x``, else float64 (integers too), whatever the rates (``fs == target_fs`` copies).

    Raises:
        ValueError: ``fs`` or ``target_fs`` not a finite rate > 0.
        TypeError: ``x`` not real numbers (complex, say).
    """
    check_rates("resample", fs=fs, target_fs=target_fs)
    check_real(x, "resample")
    ratio = (Fraction(str(target_fs)) / Fraction(str(fs))).limit_denominator(10_000)
    x = np.asarray(x)
    dtype = np.float32 if x.dtype == np.float32 else np.float64
    if ratio == 1:
        return x.astype(dtype)
    return sps.resample_poly(x.astype(dtype, copy=False), ratio.numerator, ratio.denominator, axis=-1)


def normalize(
    x: np.ndarray,
    method: Normalization = "zscore",
    exclude: np.ndarray | None = None,
    reference: np.ndarray | None = None,
) -> np.ndarray:
    """Per-channel normalisation along the last axis (one record at a time: per-record).

    Args:
        x: (..., L) signal.
        method: ``"zscore"`` (subtract the mean, divide by the standard deviation) or
            ``"robust"`` (subtract the median, divide by IQR / 1.349, insensitive to artefacts).
        exclude: optional boolean (..., L), True on samples to leave out of the statistics
            (NaN-filled or flat samples). They are still normalised.
        reference: (..., L0) the signal ``x`` was computed from (e.g. before band-pass
            filtering; any length L0), default ``x``: a spread of at most 1e-9 x its channel's
            largest magnitude counts as zero (float rounding noise, which a z-score would blow
            up to unit scale).

    A channel whose statistics are undefined (no included sample, or zero spread) is only
    centred (scale 1), with a warning; without any included sample, on the mean (zscore) or
    median (robust) of all its samples. Returns float64 (..., L), whatever ``x``'s type
    (:func:`preprocess_signal` gives float32).
    """
    x = np.asarray(x, dtype=np.float64)
    if method not in NORMALIZATIONS:
        raise ValueError(f"normalize: method={method!r}, expected 'zscore' or 'robust'")
    masked = exclude is not None and exclude.any()
    values = np.where(exclude, np.nan, x) if masked else x
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-excluded channels give NaN
        if method == "zscore":
            mean, std = (np.nanmean, np.nanstd) if masked else (np.mean, np.std)
            centre, scale = mean(values, axis=-1, keepdims=True), std(values, axis=-1, keepdims=True)
            plain_centre = np.mean
        else:
            percentile = np.nanpercentile if masked else np.percentile
            plain_centre = np.median
            q25, centre, q75 = percentile(values, [25, 50, 75], axis=-1, keepdims=True)
            scale = (q75 - q25) / _IQR_OF_NORMAL
    reference = x if reference is None else np.asarray(reference, dtype=np.float64)
    negligible = _NEGLIGIBLE_SPREAD * np.nanmax(np.abs(reference), axis=-1, keepdims=True, initial=0.0)
    undefined = ~(scale > negligible)  # also catches NaN
    if undefined.any():
        warnings.warn(
            f"normalize: {int(undefined.sum())} channel(s) have no valid samples or zero spread; they are only centred",
            RuntimeWarning,
            stacklevel=2,
        )
        centre = np.where(np.isnan(centre), plain_centre(x, axis=-1, keepdims=True), centre)
        scale = np.where(undefined, 1.0, scale)
    return (x - centre) / scale


def preprocess_signal(
    x: np.ndarray,
    fs: float,
    *,
    target_fs: float | None = None,
    band: tuple[float | None, float | None] | None = (0.5, 40.0),
    normalization: Normalization | None = "zscore",
    flat_seconds: float = FLAT_SECONDS,
    name: str = "signal",
) -> np.ndarray:
    """The standard chain for one record: fill NaN, band-pass, resample, normalise.

    Args:
        x: (C, L) or (..., L) raw signal at ``fs`` Hz.
        fs: its sampling rate in Hz.
        target_fs: output rate in Hz (``None``: keep ``fs``).
        band: (low, high) band-pass corners in Hz for :func:`bandpass` (``None``: no filter).
        normalization: :func:`normalize` method (``None``: none).
        flat_seconds: minimum duration in seconds of a flat run left out of the statistics.
        name: what warnings call the signal (e.g. the record, ``'mitdb/100'``).

    Returns:
        float32 (..., L') with ``L' = ceil(L * target_fs / fs)`` (as :func:`resample` says).

    Raises:
        ValueError: ``x`` without a sample axis (0-d), ``fs`` or ``target_fs`` not a finite rate
            > 0, or the errors of :func:`bandpass` and :func:`normalize`.
        TypeError: ``x`` not real numbers (complex, say).
    """
    if np.ndim(x) == 0:
        raise ValueError(f"preprocess_signal: x must be (C, L) or (..., L) samples, got shape {np.shape(x)}")
    check_rates("preprocess_signal", fs=fs, **({} if target_fs is None else {"target_fs": target_fs}))
    check_real(x, "preprocess_signal")
    invalid = np.isnan(x) | flat_mask(x, fs, flat_seconds)
    out = raw = fill_nan(x)
    if band is not None:
        out = bandpass(out, fs, *band)
    if target_fs is not None and target_fs != fs:
        out = resample(out, fs, target_fs)
        nearest = np.minimum((np.arange(out.shape[-1]) * (fs / target_fs)).astype(np.int64), x.shape[-1] - 1)
        invalid = invalid[..., nearest]
    if normalization is not None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = normalize(out, normalization, exclude=invalid, reference=raw)
        for warning in caught:
            warnings.warn(f"{name}: {warning.message}", warning.category, stacklevel=2)
    return out.astype(np.float32)
