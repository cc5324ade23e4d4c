"""Time-frequency images of 1D signals, for 2D baselines on ECG.

:class:`Spectrogram` turns a batch of signals (N, C, L) into log-magnitude short-time Fourier
transform images (N, C, F, T), where F counts frequency bins from 0 Hz up to ``max_freq_hz`` and
T counts windows. It calls :func:`scipy.signal.spectrogram` once on the whole batch (scipy works
on the last axis), so there is no Python loop over signals. It also fits the
:class:`~msresnet1d.data.loader.BatchTransform` protocol, so it can be the ``transform`` of a
:class:`~msresnet1d.data.loader.TensorBatchLoader` over signals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.signal
import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class Spectrogram:
    """Log-magnitude spectrogram: signals (N, C, L) -> float32 images (N, C, F, T).

    The magnitude is ``|STFT|`` of each Hann-windowed (``window``) segment with its mean removed,
    scaled as an amplitude spectrum in the signal's units (a sine of amplitude A has a peak of
    about A / 2). Windows are ``round(window_s * fs)`` samples long and start every
    ``nperseg - noverlap`` samples; no padding, so T = 1 + (L - nperseg) // (nperseg - noverlap).

    Args:
        fs: sampling rate of the signals, Hz.
        window_s: window length, seconds.
        overlap: overlap of consecutive windows, as a fraction of the window, in [0, 1).
        max_freq_hz: keep bins at frequencies <= this (Hz, at most the Nyquist frequency fs / 2);
            None keeps all nperseg // 2 + 1 bins.
        scale: ``"log1p"`` -> ``log(1 + magnitude)``; ``"db"`` -> ``10 * log10(magnitude**2 + eps)``
            (dB relative to one signal unit squared).
        eps: floor inside the logarithm of ``"db"``; must be > 0.
        size: resize each (F, T) image to (size, size) with bilinear interpolation (antialiased,
            since it usually shrinks the frequency axis); None keeps (F, T).
        standardize: give each (n, c) image zero mean and unit standard deviation (after resizing).
        window: a window name understood by :func:`scipy.signal.get_window`.
    """

    fs: float
    window_s: float
    overlap: float = 0.5
    max_freq_hz: float | None = None
    scale: Literal["log1p", "db"] = "log1p"
    eps: float = 1e-10
    size: int | None = None
    standardize: bool = False
    window: str = "hann"

    def __post_init__(self) -> None:
        if self.fs <= 0:
            raise ValueError(f"fs must be > 0 Hz, got {self.fs}")
        if self.window_s <= 0:
            raise ValueError(f"window_s must be > 0 s, got {self.window_s}")
        if self.nperseg < 2:
            raise ValueError(
                f"window_s * fs must give at least 2 samples, got {self.window_s} s * {self.fs} Hz"
                f" = {self.nperseg} samples"
            )
        if not 0.0 <= self.overlap < 1.0:
            raise ValueError(f"overlap must be in [0, 1), got {self.overlap}")
        if self.noverlap >= self.nperseg:
            raise ValueError(
                f"overlap {self.overlap} rounds to {self.noverlap} of {self.nperseg} samples: windows would not advance"
            )
        nyquist = self.fs / 2
        if self.max_freq_hz is not None and not 0 < self.max_freq_hz <= nyquist:
            raise ValueError(f"max_freq_hz must be in (0, {nyquist}] Hz (fs / 2), got {self.max_freq_hz}")
        if self.scale not in ("log1p", "db"):
            raise ValueError(f"scale must be 'log1p' or 'db', got {self.scale!r}")
        if self.eps <= 0:
            raise ValueError(f"eps must be > 0, got {self.eps}")
        if self.size is not None and self.size < 1:
            raise ValueError(f"size must be >= 1 or None, got {self.size}")

    @property
    def nperseg(self) -> int:
        """Window length in samples."""
        return round(self.window_s * self.fs)

    @property
    def noverlap(self) -> int:
        """Overlap of consecutive windows in samples."""
        return round(self.overlap * self.nperseg)

    def _stft(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Frequencies (F,) Hz, window centres (T,) s and magnitudes (..., F, T), cropped."""
        if x.shape[-1] < self.nperseg:
            raise ValueError(
                f"signals have {x.shape[-1]} samples, fewer than one window of {self.nperseg} "
                f"samples ({self.window_s} s at {self.fs} Hz)"
            )
        freqs, times, magnitude = scipy.signal.spectrogram(
            x,
            fs=self.fs,
            window=self.window,
            nperseg=self.nperseg,
            noverlap=self.noverlap,
            scaling="spectrum",
            mode="magnitude",
            axis=-1,
        )
        if self.max_freq_hz is not None:
            keep = freqs <= self.max_freq_hz
            freqs, magnitude = freqs[keep], magnitude[..., keep, :]
        return freqs, times, magnitude

    def axes(self, length: int) -> tuple[np.ndarray, np.ndarray]:
        """Frequencies (F,) in Hz and window centres (T,) in s for signals of ``length`` samples.

        These label the image rows and columns before any resize.
        """
        freqs, times, _ = self._stft(np.zeros(length))
        return freqs, times

    def __call__(self, x: Tensor | np.ndarray, generator: torch.Generator | None = None) -> Tensor:
        """Spectrogram images of a batch.

        Args:
            x: signals (N, C, L), L samples at ``fs`` Hz.
            generator: unused (deterministic); accepted for the ``BatchTransform`` protocol.

        Returns:
            float32 tensor (N, C, F, T), or (N, C, size, size) if ``size`` is set.
        """
        signals = x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
        if signals.ndim != 3:
            raise ValueError(f"expected signals (N, C, L), got shape {signals.shape}")
        _, _, magnitude = self._stft(signals)
        if self.scale == "log1p":
            image = np.log1p(magnitude)
        else:
            image = 10.0 * np.log10(magnitude**2 + self.eps)
        out = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
        if self.size is not None:
            size = (self.size, self.size)
            out = F.interpolate(out, size, mode="bilinear", align_corners=False, antialias=True)
        if self.standardize:
            mean = out.mean(dim=(-2, -1), keepdim=True)
            std = out.std(dim=(-2, -1), correction=0, keepdim=True)
            std = std.clamp_min(torch.finfo(torch.float32).eps)
            out = (out - mean) / std
        return out
