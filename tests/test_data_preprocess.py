"""Preprocessing on synthetic signals: resampling at every usual ECG rate, zero-phase band-pass,
normalisation, NaN and flat segments."""

import math
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest

from msresnet1d.data.preprocess import (
    bandpass,
    fill_nan,
    flat_mask,
    lead_positions,
    normalize,
    preprocess_signal,
    resample,
    select_leads,
)

RATES = (128.0, 250.0, 300.0, 360.0, 500.0)


def sine(freq: float, fs: float, seconds: float, channels: int = 1) -> np.ndarray:
    t = np.arange(round(seconds * fs)) / fs
    return np.stack([np.sin(2 * np.pi * freq * t + c) for c in range(channels)])


@pytest.mark.parametrize("fs", RATES)
@pytest.mark.parametrize("target", RATES)
def test_resample_keeps_the_waveform_at_every_rate(fs, target):
    x = sine(5.0, fs, 4.0, channels=2)
    y = resample(x, fs, target)
    assert y.shape == (2, math.ceil(x.shape[1] * target / fs))
    expected = sine(5.0, target, y.shape[1] / target, channels=2)
    interior = slice(round(0.5 * target), -round(0.5 * target))  # away from the edge transients
    assert np.abs(y[:, interior] - expected[:, interior]).max() < 0.02


def test_resample_works_on_any_leading_shape():
    x = np.random.default_rng(0).normal(size=(3, 2, 1000))
    assert resample(x, 500, 250).shape == (3, 2, 500)
    assert resample(x[0, 0], 500, 250).shape == (500,)
    with pytest.raises(ValueError, match="target_fs=0"):
        resample(x, 500, 0)


@pytest.mark.parametrize("target", [360.0, 180.0])  # the same rate copies, another one filters
def test_resample_keeps_float32_and_gives_float64_otherwise_whatever_the_rates(target):
    x = sine(5.0, 360.0, 1.0)
    assert resample(x.astype(np.float32), 360.0, target).dtype == np.float32
    assert resample(x, 360.0, target).dtype == np.float64
    assert resample((100 * x).astype(np.int16), 360.0, target).dtype == np.float64
    resample(x, 360.0, target)[0, 0] = 5.0
    assert x[0, 0] != 5.0  # a new array, the input left alone


def test_bandpass_removes_baseline_wander_and_keeps_the_band_without_phase_shift():
    fs = 360.0
    wander, ecg_band = 0.8 * sine(0.1, fs, 60.0), sine(10.0, fs, 60.0)
    y = bandpass(wander + ecg_band, fs, 0.5, 40.0)
    interior = slice(round(5 * fs), -round(5 * fs))  # away from the filter's edge transients
    assert np.abs(y - ecg_band)[:, interior].max() < 0.01  # drift gone, 10 Hz intact, no delay
    assert np.abs(bandpass(wander, fs, 0.5, None)[:, interior]).max() < 0.01  # high-pass alone


def test_bandpass_rejects_bad_corners_and_short_signals():
    x = sine(10.0, 250.0, 2.0)
    with pytest.raises(ValueError, match=r"high=200 Hz must be above 0 and below fs/2=125 Hz"):
        bandpass(x, 250.0, 0.5, 200)
    with pytest.raises(ValueError, match=re.escape("low=0 Hz must be above 0 and below fs/2=125 Hz (None: no "
                                                   "high-pass)")):
        bandpass(x, 250.0, 0, 40)  # was "between 0 and fs/2", which 0 seemed to be
    with pytest.raises(ValueError, match="low=40 Hz must be below high=30 Hz"):
        bandpass(x, 250.0, 40, 30)
    with pytest.raises(ValueError, match="at least one of low and high"):
        bandpass(x, 250.0, None, None)
    with pytest.raises(ValueError, match="too short"):
        bandpass(x[:, :20], 250.0)
    # corners so close to 0 or fs/2 that scipy cannot start the filter: was numpy's LinAlgError 'Singular matrix'
    for low, high in ((1e-300, 40.0), (None, 1e-10), (0.5, 125 * (1 - 1e-15))):
        with pytest.raises(ValueError, match=rf"^bandpass: corners low={low} Hz, high={high} Hz at fs=250 Hz lie too "
                                             r"close to 0 or fs/2 for scipy's zero-phase Butterworth filter"):
            bandpass(x, 250.0, low, high)
    assert np.isfinite(bandpass(x, 250.0, 125e-8, None)).all()  # 1e-8 x fs/2 still works


@pytest.mark.parametrize("call, message", [
    (lambda x: resample(x, math.nan, 180.0), "resample: rates must be finite and positive, got fs=nan Hz, "
                                             "target_fs=180.0 Hz"),
    (lambda x: resample(x, 360.0, math.inf), "resample: rates must be finite and positive, got fs=360.0 Hz, "
                                             "target_fs=inf Hz"),
    (lambda x: bandpass(x, 0.0), "bandpass: the rate must be finite and positive, got fs=0.0 Hz"),
    (lambda x: flat_mask(x, 0.0), "flat_mask: the rate must be finite and positive, got fs=0.0 Hz"),
    (lambda x: preprocess_signal(x, -360.0, band=None), "preprocess_signal: the rate must be finite and positive, "
                                                        "got fs=-360.0 Hz"),
    (lambda x: preprocess_signal(x, 360.0, target_fs=math.nan), "preprocess_signal: rates must be finite and "
                                                                "positive, got fs=360.0 Hz, target_fs=nan Hz"),
    (lambda x: preprocess_signal(x[0, 0], 360.0), "preprocess_signal: x must be (C, L) or (..., L) samples, "
                                                  "got shape ()"),
])
def test_preprocessing_refuses_rates_that_are_not_finite_and_positive_and_a_signal_without_samples(call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call(sine(10.0, 360.0, 2.0))
    with pytest.raises(TypeError, match=re.escape("resample: target_fs must be a number (Hz), got str '180'")):
        resample(sine(10.0, 360.0, 2.0), 360.0, "180")
    with pytest.raises(TypeError, match=re.escape("resample: fs must be a number (Hz), got bool True")):
        resample(sine(10.0, 360.0, 2.0), True, 180.0)  # not 1 Hz
    assert resample(sine(10.0, 360.0, 2.0), np.float32(360.0), np.array(180.0)).shape[-1] == 360  # numpy numbers
    complex_signal = sine(10.0, 360.0, 2.0) * (1 + 1j)  # its imaginary part was dropped with a numpy warning
    for call in (lambda: resample(complex_signal, 360.0, 180.0), lambda: preprocess_signal(complex_signal, 360.0)):
        with pytest.raises(TypeError, match=r"x must hold real numbers \(integers or floats\), got dtype complex128"):
            call()


def test_normalize_per_channel_zscore_and_robust():
    rng = np.random.default_rng(0)
    x = rng.normal(loc=[[3.0], [-1.0]], scale=[[2.0], [0.5]], size=(2, 5000))
    z = normalize(x)
    np.testing.assert_allclose(z.mean(axis=-1), 0, atol=1e-9)
    np.testing.assert_allclose(z.std(axis=-1), 1, atol=1e-9)
    r = normalize(x, "robust")
    np.testing.assert_allclose(np.median(r, axis=-1), 0, atol=1e-9)
    assert np.all(np.abs(np.subtract(*np.percentile(r, [75, 25], axis=-1)) - 1.349) < 0.01)
    with pytest.raises(ValueError, match="method='minmax'"):
        normalize(x, "minmax")


def test_normalize_leaves_excluded_samples_out_of_the_statistics():
    x = np.random.default_rng(1).normal(size=(1, 4000))
    x[0, :1000] = 500.0  # e.g. a saturated stretch
    exclude = np.zeros_like(x, dtype=bool)
    exclude[0, :1000] = True
    z = normalize(x, exclude=exclude)
    assert abs(z[0, 1000:].std() - 1) < 1e-9


def test_normalize_only_centres_a_flat_channel_with_a_warning():
    x = np.vstack([np.full(100, 7.0), np.arange(100.0)])
    with pytest.warns(RuntimeWarning, match="1 channel"):
        z = normalize(x)
    np.testing.assert_array_equal(z[0], 0.0)


@pytest.mark.parametrize("normalization", ["zscore", "robust"])
def test_preprocess_centres_a_channel_without_valid_samples(normalization):
    # A constant channel is one flat run: no sample is valid, so it is centred on all of them.
    x = np.vstack([np.full(3600, 2.5), np.sin(np.arange(3600) / 20)])
    with pytest.warns(RuntimeWarning, match="1 channel.*only centred"):
        out = preprocess_signal(x, 360.0, band=None, normalization=normalization)
    np.testing.assert_array_equal(out[0], 0.0)


@pytest.mark.parametrize("level", [1.0, 1000.0])
def test_preprocess_treats_the_filter_noise_of_a_short_flat_window_as_zero_spread(level):
    # 0.7 s flat: too short for a flat run, and the band-pass leaves ~1e-13 float noise that a
    # z-score would blow up to unit scale.
    x = np.full((1, 252), level)
    with pytest.warns(RuntimeWarning, match="1 channel.*zero spread; they are only centred"):
        out = preprocess_signal(x, 360.0, target_fs=180.0)
    np.testing.assert_allclose(out, 0.0, atol=1e-9)


def test_normalize_measures_negligible_spread_against_the_reference():
    noise = 1e-13 * np.sin(np.arange(100.0))
    with pytest.warns(RuntimeWarning, match="1 channel"):
        normalize(noise[None], reference=np.ones((1, 300)))
    assert abs(normalize(noise[None]).std() - 1) < 1e-9  # without a reference, x is its own reference
    # NaN samples (left out of the statistics) do not make the reference's magnitude NaN
    x = np.random.default_rng(0).standard_normal((2, 1000))
    x[0, 100:150] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = normalize(x, exclude=np.isnan(x))
    assert abs(np.nanstd(out[0]) - 1) < 1e-9 and abs(out[1].std() - 1) < 1e-9


def test_fill_nan_interpolates_inside_and_extends_at_the_ends():
    x = np.arange(10.0)[None].repeat(2, axis=0)
    x[0, [0, 1, 4, 5, 9]] = np.nan
    x[1] = np.nan
    y = fill_nan(x)
    np.testing.assert_array_equal(y[0], [2, 2, 2, 3, 4, 5, 6, 7, 8, 8])
    np.testing.assert_array_equal(y[1], 0.0)


def test_flat_mask_marks_long_constant_runs_only():
    fs = 100.0
    x = np.sin(np.arange(1000) / 7.0)
    x[200:400] = 0.25  # 2 s flat: lead off
    x[600:650] = 0.5  # 0.5 s flat: shorter than 1 s
    mask = flat_mask(x, fs, min_seconds=1.0)
    assert mask[200:400].all() and mask.sum() == 200


def test_flat_mask_agrees_with_a_sample_by_sample_count_on_random_signals():
    def reference(row: np.ndarray, min_run: int) -> np.ndarray:  # each sample's run, walked one by one
        mask, start = np.zeros(len(row), dtype=bool), 0
        for i in range(1, len(row) + 1):
            if i == len(row) or not row[i] == row[i - 1]:  # NaN never equals: a run of its own
                mask[start:i] = i - start >= min_run
                start = i
        return mask

    rng = np.random.default_rng(0)
    for _ in range(200):
        x = rng.integers(0, 3, size=(2, int(rng.integers(1, 120)))).astype(float)
        x[0, rng.integers(0, x.shape[1])] = np.nan
        if rng.random() < 0.2:
            x[1] = 1.0  # a flat lead, runs to both ends
        for fs, seconds in ((2.0, 1.0), (5.0, 1.0), (1.0, 3.0)):
            min_run = max(2, round(seconds * fs))
            expected = np.stack([reference(row, min_run) for row in x]) if x.shape[1] >= min_run else \
                np.zeros(x.shape, dtype=bool)
            np.testing.assert_array_equal(flat_mask(x, fs, seconds), expected)


def test_preprocess_handles_nan_and_flat_segments_and_changes_rate():
    fs = 360.0
    x = sine(7.0, fs, 20.0, channels=2) + 0.5
    x[0, 1000:1100] = np.nan
    x[1, 3600:7200] = 0.5  # 10 s flat
    y = preprocess_signal(x, fs, target_fs=180.0, band=(0.5, 40.0), normalization="zscore")
    assert y.dtype == np.float32 and y.shape == (2, 3600)
    assert np.isfinite(y).all()
    valid = np.ones(3600, dtype=bool)
    valid[1800:3600] = False
    assert abs(y[1, valid].std() - 1) < 0.05  # the flat half does not shrink the scale


def test_select_leads_by_name():
    x = np.arange(12.0).reshape(2, 3, 2)  # 2 items, 3 leads, 2 samples
    np.testing.assert_array_equal(select_leads(x, ["V5", "MLII", "V1"], ["MLII"]), x[:, [1]])
    assert lead_positions(("V5", "MLII"), ("MLII", "V5")) == [1, 0]
    with pytest.raises(ValueError, match=re.escape("no lead 'V2' (leads: V5, MLII, V1)")):
        select_leads(x, ["V5", "MLII", "V1"], ["MLII", "V2"])


def test_missing_lead_error_shows_unnamed_leads():
    # WFDB allows a signal without a description: wfdb reads its name as None or "".
    with pytest.raises(ValueError, match=re.escape("no lead 'V1' (leads: MLII, (unnamed), (unnamed))")):
        lead_positions(["MLII", None, ""], ["V1"])
    with pytest.raises(ValueError, match=re.escape("one lead twice (leads: MLII, (unnamed))")):
        lead_positions(["MLII", None], ["MLII", "MLII|V1"])


def test_lead_alternatives_take_the_first_available():
    assert lead_positions(("MLII", "V1"), ("MLII", "V1|V2|V5")) == [0, 1]
    assert lead_positions(("V5", "MLII"), ("MLII", "V1|V2|V5")) == [1, 0]
    assert lead_positions(("MLII", "V2", "V1"), ("V1|V2",)) == [2]
    with pytest.raises(ValueError, match=re.escape("no lead 'V2|V4' (leads: MLII, V1)")):
        lead_positions(("MLII", "V1"), ("MLII", "V2|V4"))
    with pytest.raises(ValueError, match=re.escape("leads ['MLII', 'MLII|V1'] select ['MLII', 'MLII']: one lead twice")):
        lead_positions(("MLII", "V1"), ("MLII", "MLII|V1"))


def test_preprocess_without_filter_or_normalisation_is_a_plain_resample():
    x = sine(3.0, 250.0, 4.0)
    np.testing.assert_allclose(preprocess_signal(x, 250.0, band=None, normalization=None), x, atol=1e-6)


def test_the_signal_helpers_import_no_torch():
    """preprocess took its number check from the models' layers, which import torch: 1.2 s more."""
    code = "import sys\nimport msresnet1d.data.preprocess\nprint('torch' in sys.modules)"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert found.stdout == "False\n"
