"""Heart-rate variability of a window: R peaks found in a single-lead ECG, and statistics of the
RR intervals inside a window, the rhythm context that tells atrial fibrillation (irregularly
irregular intervals) from a normal rhythm.

The detector (:func:`detect_r_peaks`) is a plain energy detector in the manner of Pan and
Tompkins (1985): band-pass 5-20 Hz, squared slope, a 120 ms moving average, peaks at least
250 ms apart (at most 240 beats a minute) and at least 0.15 of the 90th percentile of the
peak heights. The squared slope ignores the lead's polarity (handheld recordings are often
inverted). On the 46 MIT-BIH records with an MLII lead, preprocessed to 100 Hz as the CinC
config reads them, it finds 99.3% of the annotated beats within 150 ms, 99.7% of its peaks
being beats (the threshold 0.15 was chosen there among 0.3, 0.2 and 0.15). It takes well under
a millisecond for 30 s at 100 Hz, and is made for interval statistics over many beats, not
for beat-by-beat annotation.

Intervals and positions: samples in, seconds in the features.
"""

from __future__ import annotations

import numpy as np
from scipy import signal as sps

from .preprocess import check_rates

#: Columns of :func:`window_hrv`; all dimensionless except ``mean_rr`` (seconds).
HRV_FEATURES: tuple[str, ...] = (
    "mean_rr",  # s, mean interval
    "cv_rr",  # standard deviation over the mean
    "rmssd_over_mean",  # root mean square of successive differences, over the mean
    "pnn50",  # fraction of successive differences over 50 ms
    "irregular_fraction",  # fraction of intervals more than 15% off the previous one
    "mad_over_median",  # median |successive difference| over the median interval (robust to ectopics)
    "min_over_median",
    "max_over_median",
)

#: Fewest intervals a window needs for its statistics; with fewer, :func:`window_hrv` gives NaN.
MIN_INTERVALS = 3

#: Lowest sampling rate in Hz :func:`detect_r_peaks` accepts (its 5-20 Hz band needs room below fs/2).
MIN_FS = 45.0


def detect_r_peaks(ecg: np.ndarray, fs: float) -> np.ndarray:
    """R-peak positions (samples, increasing int64) in one lead ``ecg`` (T,) sampled at ``fs`` Hz.

    Raises:
        ValueError: ``ecg`` not one-dimensional, ``fs`` not a finite rate or too low for the
            5-20 Hz band (< 45 Hz), or NaN/inf samples.
    """
    ecg = np.asarray(ecg, dtype=np.float64)
    if ecg.ndim != 1:
        raise ValueError(f"detect_r_peaks: ecg must be one lead (T,), got shape {ecg.shape}")
    check_rates("detect_r_peaks", fs=fs)
    if fs < MIN_FS:
        raise ValueError(f"detect_r_peaks: fs={fs} Hz is too low for the 5-20 Hz QRS band (need >= {MIN_FS:g} Hz)")
    if not np.isfinite(ecg).all():
        raise ValueError("detect_r_peaks: ecg holds NaN or inf")
    pad = round(fs)  # sosfiltfilt needs a few times the filter order; short inputs give no peaks
    if ecg.size <= pad:
        return np.empty(0, dtype=np.int64)
    sos = sps.butter(2, (5.0, 20.0), btype="bandpass", fs=fs, output="sos")
    slope = np.gradient(sps.sosfiltfilt(sos, ecg)) ** 2
    width = max(1, round(0.12 * fs))
    energy = np.convolve(slope, np.ones(width) / width, mode="same")
    peaks, props = sps.find_peaks(energy, distance=max(1, round(0.25 * fs)), height=0.0)
    if peaks.size == 0:
        return peaks.astype(np.int64)
    heights = props["peak_heights"]
    return peaks[heights >= 0.15 * np.percentile(heights, 90)].astype(np.int64)


def window_hrv(peaks: np.ndarray, fs: float) -> np.ndarray:
    """Statistics :data:`HRV_FEATURES` (8,) float32 of the intervals between ``peaks`` (samples,
    increasing, the R peaks inside one window, at ``fs`` Hz); all NaN with fewer than
    :data:`MIN_INTERVALS` intervals.

    Raises:
        ValueError: ``peaks`` not 1-D or not increasing, or ``fs`` not a finite rate > 0.
    """
    peaks = np.asarray(peaks, dtype=np.float64)
    check_rates("window_hrv", fs=fs)
    if peaks.ndim != 1:
        raise ValueError(f"window_hrv: peaks must be 1-D (P,) sample positions, got shape {peaks.shape}")
    rr = np.diff(peaks) / fs
    not_increasing = np.flatnonzero(~(rr > 0))
    if not_increasing.size:
        i = not_increasing[0]
        raise ValueError(f"window_hrv: peaks must increase, got peaks[{i + 1}]={peaks[i + 1]:g} after {peaks[i]:g}")
    if rr.size < MIN_INTERVALS:
        return np.full(len(HRV_FEATURES), np.nan, dtype=np.float32)
    mean, median = rr.mean(), np.median(rr)
    diff = np.diff(rr)
    features = (mean, rr.std() / mean, np.sqrt(np.mean(diff**2)) / mean, np.mean(np.abs(diff) > 0.05),
                np.mean(np.abs(rr[1:] / rr[:-1] - 1) > 0.15), np.median(np.abs(diff)) / median,
                rr.min() / median, rr.max() / median)
    return np.array(features, dtype=np.float32)


def windows_hrv(peaks: np.ndarray, starts: np.ndarray, length: int, fs: float) -> np.ndarray:
    """:func:`window_hrv` of every window ``[start, start + length)`` (samples) of one record
    whose R peaks are ``peaks``: (W, 8) float32."""
    peaks = np.asarray(peaks)
    lo, hi = np.searchsorted(peaks, starts), np.searchsorted(peaks, np.asarray(starts) + length)
    return np.stack([window_hrv(peaks[a:b], fs) for a, b in zip(lo, hi)]) if len(lo) else np.empty(
        (0, len(HRV_FEATURES)), dtype=np.float32)
