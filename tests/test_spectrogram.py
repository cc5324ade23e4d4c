"""Spectrogram images of synthetic sinusoids: peak frequency, shapes, options and errors."""

import numpy as np
import pytest
import torch

from msresnet1d.data.loader import TensorBatchLoader
from msresnet1d.data.spectrogram import Spectrogram

FS = 360.0  # Hz, as in MIT-BIH


def _sines(freqs_hz: list[float], seconds: float = 10.0, amplitude: float = 1.0) -> np.ndarray:
    """One channel per frequency: (1, C, L) float32."""
    t = np.arange(round(seconds * FS)) / FS
    waves = [amplitude * np.sin(2 * np.pi * f * t) for f in freqs_hz]
    return np.stack(waves)[None].astype(np.float32)


@pytest.mark.parametrize("scale", ["log1p", "db"])
def test_sine_peaks_in_its_frequency_bin(scale):
    spec = Spectrogram(fs=FS, window_s=1.0, max_freq_hz=50.0, scale=scale)
    freqs, _ = spec.axes(3600)
    images = spec(_sines([10.0, 25.0]))
    peaks = freqs[images[0].mean(dim=-1).argmax(dim=-1).numpy()]
    assert peaks.tolist() == [10.0, 25.0]


def test_amplitude_spectrum_units():
    spec = Spectrogram(fs=FS, window_s=1.0, overlap=0.0, scale="db")
    images = spec(_sines([10.0], amplitude=3.0))
    assert images.max().item() == pytest.approx(20 * np.log10(1.5), abs=1e-3)  # A / 2 in dB


def test_shapes_and_axes():
    spec = Spectrogram(fs=FS, window_s=0.5, overlap=0.75, max_freq_hz=40.0)
    assert (spec.nperseg, spec.noverlap) == (180, 135)
    x = np.random.default_rng(0).standard_normal((4, 2, 1000)).astype(np.float32)
    images = spec(x)
    freqs, times = spec.axes(1000)
    n_windows = 1 + (1000 - 180) // 45
    assert images.shape == (4, 2, len(freqs), n_windows) and images.dtype == torch.float32
    assert len(times) == n_windows
    assert freqs[0] == 0.0 and freqs[-1] <= 40.0 and freqs[1] == pytest.approx(2.0)
    assert times[0] == pytest.approx(90 / FS) and np.allclose(np.diff(times), 45 / FS)


def test_batch_equals_signal_by_signal_and_accepts_tensors():
    spec = Spectrogram(fs=FS, window_s=0.5, max_freq_hz=60.0)
    x = np.random.default_rng(1).standard_normal((3, 2, 900)).astype(np.float32)
    whole = spec(torch.from_numpy(x))
    one_by_one = torch.cat([spec(x[i : i + 1]) for i in range(3)])
    assert torch.allclose(whole, one_by_one)
    assert torch.equal(whole, spec(x))


def test_resize_and_standardize():
    spec = Spectrogram(fs=FS, window_s=1.0, max_freq_hz=50.0, size=32, standardize=True)
    images = spec(_sines([5.0, 10.0, 30.0]))
    assert images.shape == (1, 3, 32, 32)
    assert torch.allclose(images.mean(dim=(-2, -1)), torch.zeros(1, 3), atol=1e-5)
    assert torch.allclose(images.std(dim=(-2, -1), correction=0), torch.ones(1, 3), atol=1e-4)


def test_silence_gives_the_db_floor_and_finite_standardized_values():
    silence = np.zeros((2, 1, 720), dtype=np.float32)
    db = Spectrogram(fs=FS, window_s=1.0, scale="db", eps=1e-6)(silence)
    assert torch.allclose(db, torch.tensor(-60.0))
    standardized = Spectrogram(fs=FS, window_s=1.0, standardize=True)(silence)
    assert torch.equal(standardized, torch.zeros(2, 1, 181, 3))


def test_is_a_batch_transform_for_the_loader():
    x = torch.from_numpy(_sines([10.0, 20.0, 30.0])[0][:, None, :])  # (3, 1, 3600)
    spec = Spectrogram(fs=FS, window_s=1.0, size=16)
    loader = TensorBatchLoader(x, torch.arange(3), batch_size=2, transform=spec)
    assert [tuple(xb.shape) for xb, _ in loader] == [(2, 1, 16, 16), (1, 1, 16, 16)]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(fs=0.0, window_s=1.0), "fs must be > 0 Hz, got 0.0"),
        (dict(fs=FS, window_s=-1.0), "window_s must be > 0 s, got -1.0"),
        (dict(fs=FS, window_s=0.001), r"at least 2 samples, got 0.001 s \* 360.0 Hz = 0 samples"),
        (dict(fs=FS, window_s=1.0, overlap=1.0), r"overlap must be in \[0, 1\), got 1.0"),
        (dict(fs=FS, window_s=1.0, overlap=-0.1), r"overlap must be in \[0, 1\), got -0.1"),
        (dict(fs=10.0, window_s=1.0, overlap=0.99), "overlap 0.99 rounds to 10 of 10 samples"),
        (dict(fs=FS, window_s=1.0, max_freq_hz=200.0), r"max_freq_hz must be in \(0, 180.0\] Hz"),
        (dict(fs=FS, window_s=1.0, max_freq_hz=0.0), r"max_freq_hz must be in \(0, 180.0\] Hz"),
        (dict(fs=FS, window_s=1.0, scale="power"), "scale must be 'log1p' or 'db', got 'power'"),
        (dict(fs=FS, window_s=1.0, eps=0.0), "eps must be > 0, got 0.0"),
        (dict(fs=FS, window_s=1.0, size=0), "size must be >= 1 or None, got 0"),
    ],
)
def test_bad_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Spectrogram(**kwargs)


def test_bad_inputs():
    spec = Spectrogram(fs=FS, window_s=1.0)
    with pytest.raises(ValueError, match=r"expected signals \(N, C, L\), got shape \(2, 720\)"):
        spec(np.zeros((2, 720)))
    with pytest.raises(ValueError, match=r"signals have 300 samples, fewer than one window of 360"):
        spec(np.zeros((1, 1, 300)))
