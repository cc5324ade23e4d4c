"""What both inference modes share: signal checks, :class:`Predictions`, and the stream core.

A stream is fed successive chunks (C, n) of one recording, any n, and returns the predictions
each chunk completes; ``finish()`` returns the rest. It keeps only the samples that windows
still to come can need (:class:`SampleBuffer`), and runs the model ``batch_size`` windows at a
time, so memory does not grow with the recording. Sample positions are counted from the
recording's first sample, across chunks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..data.rhythm import Aggregation, aggregate_windows
from ..values import is_number, is_whole
from .predictor import Predictor, as_predictor


def as_signal(
    signal: np.ndarray | torch.Tensor, channels: int | None, name: str = "signal", offset: int = 0
) -> np.ndarray:
    """``signal`` as a (C, L) float32 numpy array, checked.

    Args:
        signal: (C, L) array or tensor of real numbers, C channels of L samples.
        channels: the C the model expects (``None``: any).
        name: what error messages call the argument.
        offset: position of ``signal``'s first sample in the recording, for error messages.

    Raises:
        ValueError: not 2-D, wrong channel count, not real numbers, or a NaN or infinite value.
    """
    if isinstance(signal, torch.Tensor):
        signal = signal.detach().cpu().numpy()
    signal = np.asarray(signal)
    if signal.ndim != 2:
        hint = "; for a single channel pass signal[None]" if signal.ndim == 1 else ""
        raise ValueError(f"{name} must be 2-D (C, L) = (channels, samples), got shape {signal.shape}{hint}")
    if channels is not None and signal.shape[0] != channels:
        hint = " (is it (L, C)? transpose it)" if signal.shape[1] == channels else ""
        raise ValueError(
            f"{name} has {signal.shape[0]} channel(s) (shape (C, L) = {signal.shape}) but the model expects "
            f"in_channels={channels}{hint}"
        )
    if not (np.issubdtype(signal.dtype, np.integer) or np.issubdtype(signal.dtype, np.floating)):
        raise ValueError(f"{name} must hold real numbers, got dtype {signal.dtype}")
    signal = np.asarray(signal, dtype=np.float32)
    finite = np.isfinite(signal)
    if not finite.all():
        channel, sample = (int(i[0]) for i in np.nonzero(~finite))
        raise ValueError(
            f"{name} holds {signal[channel, sample]} at channel {channel}, sample {offset + sample}; replace NaN and "
            "infinite values first (e.g. msresnet1d.data.preprocess.fill_nan interpolates NaN)"
        )
    return signal


def whole_number(value: object, name: str, unit: str = "samples") -> int:
    """``value`` as an int, or a ValueError naming ``name`` and its ``unit`` (lengths here count
    samples, not seconds)."""
    if not is_whole(value):
        hint = " (seconds x the rate in Hz, rounded)" if unit == "samples" else ""
        raise ValueError(f"{name} must be a whole number of {unit}, got {value!r}{hint}")
    return int(value)


def positive_number(value: object, name: str, unit: str) -> float:
    """``value`` as a float, or a ValueError naming ``name`` unless it is a finite real number > 0
    (in ``unit``: rates in Hz, intervals in seconds)."""
    if not (is_number(value) and 0 < value < math.inf):
        raise ValueError(f"{name} must be a finite number > 0 ({unit}), got {value!r}")
    return float(value)


class NonFiniteOutputError(ValueError):
    """The model's logits for some windows are NaN or infinite (weights or BatchNorm statistics
    that are not finite, a negative running variance, or an overflow): their argmax would call
    them class 0, so no window is labelled from them."""


def check_finite_logits(logits: np.ndarray, samples: np.ndarray) -> None:
    """Raise :class:`NonFiniteOutputError`, naming the first such window's sample, when rows of
    the (N, K) ``logits`` of the windows at ``samples`` (N,) are not all finite."""
    bad = ~np.isfinite(logits).all(axis=1)
    if bad.any():
        raise NonFiniteOutputError(
            f"the model's outputs are not finite (NaN or inf) for the window at sample "
            f"{int(samples[np.flatnonzero(bad)[0]])}: its weights or BatchNorm statistics are not finite (or a "
            "running variance is negative), or its outputs overflowed; nothing is labelled from them"
        )


@dataclass(frozen=True)
class Predictions:
    """Model outputs for N windows of a recording, in time order.

    Attributes:
        sample: (N,) int64 position in samples from the recording's start: the first sample of
            each window (window mode) or the beat position (beat mode).
        logits: (N, K) float32.
        rr: (N, F) float32 RR features given to the model (before ``rr_transform``), columns
            :data:`msresnet1d.data.rr.RR_FEATURES`, in beat mode with a model that takes them;
            otherwise ``None``.
    """

    sample: np.ndarray
    logits: np.ndarray
    rr: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.sample)

    @property
    def layout(self) -> str:
        """What the parts of one output share: the number of classes K and of RR features F."""
        return f"{self.logits.shape[1]} classes, " + ("no RR features" if self.rr is None else
                                                      f"{self.rr.shape[1]} RR features")

    @property
    def labels(self) -> np.ndarray:
        """(N,) int64 class of each window: the argmax of its logits."""
        return self.logits.argmax(axis=1)

    @property
    def probabilities(self) -> np.ndarray:
        """(N, K) float32 softmax of the logits."""
        return torch.from_numpy(self.logits).softmax(dim=1).numpy()

    def record_probabilities(self, method: Aggregation = "mean_probability") -> np.ndarray:
        """(K,) float32 class probabilities of the whole recording from its windows, by
        :func:`msresnet1d.data.rhythm.aggregate_windows`: ``"mean_probability"`` (default) averages
        the windows' softmax, ``"mean_logit"`` is the softmax of the mean logits.

        Raises:
            ValueError: no windows.
        """
        if not len(self):
            raise ValueError("record_probabilities: there are no windows to aggregate")
        return aggregate_windows(torch.from_numpy(self.logits), method).numpy()

    def record_label(self, method: Aggregation = "mean_probability") -> int:
        """Class of the whole recording: the argmax of :meth:`record_probabilities`."""
        return int(self.record_probabilities(method).argmax())

    @classmethod
    def concatenate(cls, parts: Sequence[Predictions]) -> Predictions:
        """The predictions of consecutive ``parts`` (e.g. the outputs of a stream) as one."""
        if not parts:
            raise ValueError("concatenate: give at least one Predictions")
        for i, part in enumerate(parts):  # a mismatch was numpy's error, or dropped the RR features
            if not isinstance(part, Predictions):
                raise TypeError(f"concatenate: part {i} is a {type(part).__name__}, not Predictions")
            if part.layout != parts[0].layout:
                raise ValueError(f"concatenate: part {i} has {part.layout}, part 0 {parts[0].layout}: give parts of "
                                 "one recording and one model")
        rr = None if parts[0].rr is None else np.concatenate([p.rr for p in parts])
        return cls(np.concatenate([p.sample for p in parts]), np.concatenate([p.logits for p in parts]), rr)


class SampleBuffer:
    """The samples ``[start, end)`` of a (C, ·) recording fed chunk by chunk; ``end`` is the
    number of samples fed so far."""

    def __init__(self, channels: int) -> None:
        self.channels = channels
        self.data = np.empty((channels, 0), dtype=np.float32)
        self.start = 0

    @property
    def end(self) -> int:
        return self.start + self.data.shape[1]

    def append(self, chunk: np.ndarray | torch.Tensor) -> None:
        """Check ``chunk`` (C, n) with :func:`as_signal` and add it after the last sample."""
        chunk = as_signal(chunk, self.channels, "chunk", offset=self.end)
        self.data = np.concatenate((self.data, chunk), axis=1)

    def discard_before(self, sample: int) -> None:
        """Forget the samples before position ``sample``."""
        keep_from = min(max(sample - self.start, 0), self.data.shape[1])
        self.data = self.data[:, keep_from:]
        self.start += keep_from

    def between(self, first: int, stop: int) -> np.ndarray:
        """(C, stop - first) view of the samples at positions ``[first, stop)``."""
        assert self.start <= first <= stop <= self.end, (first, stop, self.start, self.end)
        return self.data[:, first - self.start : stop - self.start]


class Stream:
    """Base of :class:`~msresnet1d.inference.WindowStream` and :class:`~msresnet1d.inference.BeatStream`:
    the model, the buffer, batching, and the open/finished state."""

    def __init__(self, model: nn.Module | Predictor, window_length: int, batch_size: int) -> None:
        self.predictor = as_predictor(model)
        batch_size = whole_number(batch_size, "batch_size", "windows")
        if window_length < self.predictor.min_input_size:
            raise ValueError(
                f"windows of {window_length} samples are shorter than this model's minimum input of "
                f"{self.predictor.min_input_size} samples"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 window, got {batch_size}")
        self.batch_size = batch_size
        self._buffer = SampleBuffer(self.predictor.in_channels)
        self._finished = False

    @property
    def samples_fed(self) -> int:
        """Samples fed so far (per channel)."""
        return self._buffer.end

    @property
    def buffered_samples(self) -> int:
        """Samples (per channel) held for windows still to come."""
        return self._buffer.data.shape[1]

    def _check_open(self) -> None:
        if self._finished:
            raise RuntimeError(f"this {type(self).__name__} is finished; start a new one for another recording")

    def _classify(
        self,
        samples: np.ndarray,
        cut: Callable[[np.ndarray], np.ndarray],
        extra: np.ndarray | None = None,
        rr: np.ndarray | None = None,
    ) -> Predictions:
        """Run the model on the windows at ``samples``, ``batch_size`` at a time.

        ``cut(samples[i:j])`` returns their windows (j - i, C, L) float32; ``extra`` (N, E) are
        the per-window extra features and ``rr`` what :class:`Predictions` reports of them.

        Raises:
            NonFiniteOutputError: the model's logits for a window are NaN or infinite.
        """
        logits = [np.empty((0, self.predictor.num_outputs), dtype=np.float32)]
        for i in range(0, len(samples), self.batch_size):
            batch = slice(i, i + self.batch_size)
            logits.append(self.predictor.predict(cut(samples[batch]), None if extra is None else extra[batch]))
        out = np.concatenate(logits)
        check_finite_logits(out, samples)
        return Predictions(samples.astype(np.int64), out, rr)
