"""RR-interval features of beats: the rhythm context that tells S beats from N beats.

All intervals are in seconds. For beat i, ``rr_prev`` is the time since beat i-1 and
``rr_next`` the time to beat i+1. The first beat of a record has no previous interval and
takes its next one; the last beat has no next interval and takes its previous one.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from .preprocess import check_rates

#: Columns of :func:`rr_features`: four intervals in seconds, four dimensionless ratios, the
#: dimensionless irregularity of the rhythm around the beat, and the record's median interval
#: with two ratios to it.
RR_FEATURES: tuple[str, ...] = (
    "rr_prev",  # s, from the previous beat
    "rr_next",  # s, to the next beat
    "rr_local",  # s, mean rr_prev of the last LOCAL_BEATS beats (this one included)
    "rr_record",  # s, mean interval of the whole record
    "prev_over_local",
    "next_over_local",
    "prev_over_record",
    "next_over_prev",  # > 1 after a premature beat (compensatory pause)
    # median of |rr_prev - the previous beat's rr_prev| over the last LOCAL_BEATS beats, over rr_local:
    # high in atrial fibrillation (every interval differs), low in a regular rhythm with a few early beats
    "rr_irregularity",
    # the record's median interval is its dominant rhythm: unlike the mean, it is not pulled down
    # by runs of premature beats nor up by pauses
    "rr_median",  # s, median interval of the whole record
    "prev_over_median",
    "next_over_median",
)

LOCAL_BEATS = 10

#: Beats before a beat that its features depend on (the local mean and the irregularity).
CONTEXT_BEATS = LOCAL_BEATS + 1

#: The four interval ratios: they describe the rhythm around a beat without identifying the
#: patient by heart rate (rr_record, in seconds, is one number per record).
RR_RATIOS: tuple[str, ...] = RR_FEATURES[4:8]

#: What ``rr = true`` selects: the intervals and ratios (the later columns are chosen by name, so
#: that configs and checkpoints saying ``true`` keep their meaning).
RR_DEFAULT: tuple[str, ...] = RR_FEATURES[:8]


def check_positions(positions: np.ndarray, function: str, name: str) -> np.ndarray:
    """``positions`` (samples) as a 1-D int64 array (whole numbers stored as floats too, as a table
    read with pandas gives them; (0,) when empty), or a ValueError naming ``function`` and its
    argument ``name``: sample positions are whole numbers, within int64 (an unsigned array's
    differences would wrap around)."""
    positions = np.asarray(positions)
    if positions.shape == (0,):  # [] is float64 to numpy: no positions, not a wrong type
        return positions.astype(np.int64)
    whole = np.issubdtype(positions.dtype, np.integer) or (
        np.issubdtype(positions.dtype, np.floating) and np.isfinite(positions).all()
        and (positions == np.round(positions)).all())
    if positions.ndim != 1 or not whole:
        raise ValueError(f"{function}: {name} must be a 1-D array of whole sample positions (integers), got "
                         f"{positions.dtype} of shape {positions.shape}")
    if positions.dtype.kind in "uf" and (np.abs(positions.astype(np.float64)) >= 2.0 ** 63).any():
        raise ValueError(f"{function}: {name} holds a position beyond int64's range, {positions.max()}")
    return positions.astype(np.int64)


#: Seconds between two beats below which no heart beats (a rate above 400/min): closer beats are
#: warned about. MIT-BIH's closest annotated beats are 0.25 s apart (record 203), and XQRS
#: (``predict --detect``) finds none closer than 0.2 s.
MIN_RR_S = 0.15


def warn_close_beats(samples: np.ndarray, fs: float, where: str) -> None:
    """Warn, naming ``where`` (the record and its annotation file), when any of the (B,) increasing
    beat positions ``samples`` (at ``fs`` Hz) follows the previous one by less than
    :data:`MIN_RR_S`: annotations given twice, or a header's sampling rate other than the
    recording's, would otherwise be labelled without a word."""
    close = np.diff(samples) < MIN_RR_S * fs
    if close.any():
        first = samples[1:][close][0]
        warnings.warn(f"{where}: {close.sum()} beat(s) less than {MIN_RR_S:g} s after the previous one (a rate "
                      f"above {60 / MIN_RR_S:.0f}/min, which no heart beats at), first at sample {first}: beats "
                      f"annotated twice, or a sampling rate ({fs:g} Hz in the header) other than the recording's?",
                      stacklevel=3)


def check_increasing(samples: np.ndarray) -> None:
    """Raise a ValueError at the first of the (B,) beat positions ``samples`` that does not
    increase (two beats at one sample, as two annotation channels may hold)."""
    repeats = samples[1:][np.diff(samples) <= 0]
    if len(repeats):
        raise ValueError(f"beat positions must increase; first repeat at sample {repeats[0]:.0f}")


def rr_columns(selection: bool | Sequence[str], features: Sequence[str] = RR_FEATURES,
               default: Sequence[str] = RR_DEFAULT) -> list[int]:
    """Indices into ``features`` (:data:`RR_FEATURES`, or the rhythm task's
    :data:`~msresnet1d.data.hrv.HRV_FEATURES`) of a selection: ``True`` the ``default`` names
    (:data:`RR_DEFAULT`, the first eight), ``False`` none, or names.

    Raises:
        ValueError: an unknown or repeated name, or a bare string instead of a list of names.
    """
    if isinstance(selection, str):
        raise ValueError(f"RR features must be true, false or a list of names, got the string {selection!r} "
                         f"(for one feature write [{selection!r}])")
    if isinstance(selection, bool):
        selection = default if selection else []
    names = list(selection)
    unknown = [n for n in names if n not in features]
    if unknown or len(set(names)) != len(names):
        raise ValueError(f"RR features must be true, false or distinct names of {', '.join(features)}; "
                         f"got {names}" + (f" (unknown: {', '.join(map(repr, unknown))})" if unknown
                                           else " (repeated)"))
    return [list(features).index(n) for n in names]


def rr_features(beat_samples: np.ndarray, fs: float) -> np.ndarray:
    """RR features of every beat of one record.

    Args:
        beat_samples: (B,) increasing beat positions in samples (integers), every beat of the
            record (classes outside the AAMI table included: they still bound intervals).
        fs: sampling rate of ``beat_samples`` in Hz.

    Returns:
        (B, 12) float32, columns :data:`RR_FEATURES`.

    Raises:
        ValueError: positions not 1-D integers, fewer than two beats, positions not increasing,
            or ``fs`` not a finite rate > 0.
    """
    samples = check_positions(beat_samples, "rr_features", "beat_samples").astype(np.float64)
    check_rates("rr_features", fs=fs)
    if samples.size < 2:
        raise ValueError(f"RR features need at least 2 beats, got {samples.size}")
    check_increasing(samples)
    intervals = np.diff(samples) / fs
    prev = np.concatenate((intervals[:1], intervals))
    nxt = np.concatenate((intervals, intervals[-1:]))
    cumulative = np.concatenate(([0.0], np.cumsum(prev)))
    first = np.maximum(np.arange(prev.size) + 1 - LOCAL_BEATS, 0)
    local = (cumulative[1:] - cumulative[first]) / (np.arange(prev.size) + 1 - first)
    record = np.full_like(prev, intervals.mean())
    median = np.full_like(prev, np.median(intervals))
    change = np.abs(np.diff(prev, prepend=prev[0]))  # the first beat has no previous interval: 0
    recent = np.lib.stride_tricks.sliding_window_view(
        np.concatenate((np.full(LOCAL_BEATS - 1, np.nan), change)), LOCAL_BEATS)
    irregularity = np.nanmedian(recent, axis=1) / local  # windows at the record's start hold fewer beats
    columns = (prev, nxt, local, record, prev / local, nxt / local, prev / record, nxt / prev, irregularity,
               median, prev / median, nxt / median)
    return np.stack(columns, axis=1).astype(np.float32)
