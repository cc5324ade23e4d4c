"""Window (rhythm) mode: a model that labels fixed-length windows, slid over a whole recording.

The windows are those of :func:`msresnet1d.data.rhythm.sliding_windows`, with which rhythm
models are evaluated: ``window`` samples long, starting every ``hop`` samples from sample 0;
when the last of them does not end at the recording's last sample, one more window ending there
is added, so every sample is covered (``hop`` is at most ``window``, as a training config's
``hop_seconds`` is at most its ``crop_seconds``); a recording shorter than one window gives a
single window, zero-padded at its end (zero is the mean of a z-scored signal), with a warning.

Each window gets logits, hence a label (:attr:`Predictions.labels`); the recording's label
averages the windows' probabilities (:meth:`Predictions.record_label`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from ..data.rhythm import fit_length
from .predictor import Predictor
from .stream import Predictions, Stream, as_signal, whole_number


class WindowStream(Stream):
    """Window mode over a recording fed in chunks.

    ``feed(chunk)`` returns the windows the chunk completes (a window is emitted as soon as its
    last sample has been fed); ``finish()`` returns the window ending at the recording's end if
    the hop grid does not end there. Together they are the windows of :func:`classify_windows`
    on the whole recording (logits equal up to the float rounding of other batch sizes).
    Between calls the buffer holds at most the last ``window`` samples (during a call, plus
    the new chunk).

    Args:
        model: a 1D model (eager or TorchScript) or a :class:`Predictor`.
        window: window length in samples (at the signal's rate), at least the model's
            ``min_input_size``.
        hop: samples between the starts of consecutive windows, 1 to ``window`` (< window:
            overlap; more would leave samples out).
        batch_size: windows per model call (bounds memory: batch_size x C x window floats in).
        extra: for a model with E extra features per window (e.g. the rhythm task's RR-interval
            statistics): a function of the windows' first samples (n,) that returns their
            features (n, E), standardised as in training. Only for such models.

    Raises:
        ValueError: bad window, hop (also hop > window) or batch_size; a model with extra
            features and no ``extra``, or ``extra`` for a model without them.
        TypeError: ``extra`` is not callable.
    """

    def __init__(self, model: nn.Module | Predictor, window: int, hop: int, *, batch_size: int = 64,
                 extra: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        window, hop = whole_number(window, "window"), whole_number(hop, "hop")
        super().__init__(model, window, batch_size)
        if hop < 1:
            raise ValueError(f"hop must be >= 1 sample, got {hop}")
        if hop > window:
            raise ValueError(f"hop must be at most window={window} samples, got {hop}: windows further apart would "
                             "leave samples out")
        if extra is not None and not callable(extra):
            raise TypeError(f"extra must be a function of the windows' first samples (n,) returning their (n, E) "
                            f"features, got {type(extra).__name__}; for features computed beforehand, pass a "
                            "function that looks them up by start")
        if self.predictor.extra_features and extra is None:
            raise ValueError(f"this model takes {self.predictor.extra_features} extra features per window: give "
                             "extra, a function of the windows' first samples (n,) returning them (n, E)")
        if extra is not None and not self.predictor.extra_features:
            raise ValueError("extra is for models with extra features per window; this one has none")
        self.window, self.hop, self.extra = window, hop, extra
        self._next = 0  # start of the next window on the hop grid

    def feed(self, chunk: np.ndarray | torch.Tensor) -> Predictions:
        """Add ``chunk`` (C, n) float, the next n samples, and classify the windows it completes.

        Raises:
            ValueError: ``chunk`` is not (C, n) with the model's C, or holds NaN or inf.
            RuntimeError: the stream is finished.
        """
        self._check_open()
        self._buffer.append(chunk)
        end = self._buffer.end
        count = max(0, (end - self.window - self._next) // self.hop + 1)
        starts = self._next + self.hop * np.arange(count, dtype=np.int64)
        out = self._classify(starts, self._cut, self._features(starts))
        self._next += count * self.hop
        self._buffer.discard_before(min(self._next, end - self.window))
        return out

    def finish(self) -> Predictions:
        """Classify the window ending at the recording's last sample, if no window ends there
        yet (zero-padded, with a warning, if the whole recording is shorter than one window);
        close the stream.

        Raises:
            ValueError: no samples were fed.
        """
        self._check_open()
        end = self._buffer.end
        if end == 0:
            raise ValueError("the recording is empty: no samples were fed")
        if end < self.window:
            warnings.warn(f"the recording is {end} samples long, shorter than one window ({self.window} samples): "
                          "labelled from one zero-padded window", stacklevel=2)
        last = max(end - self.window, 0)
        if self._next > 0 and self._next - self.hop == last:
            last_window = np.empty(0, dtype=np.int64)
        else:
            last_window = np.array([last], dtype=np.int64)
        tail = self._buffer.between(last, end)
        out = self._classify(last_window, lambda starts: fit_length(tail, self.window)[None],
                             self._features(last_window))
        self._finished = True  # after the checks: a refused finish leaves the stream open
        return out

    def _features(self, starts: np.ndarray) -> np.ndarray | None:
        """The (n, E) float32 extra features of the windows at ``starts``, or None for a model without."""
        if self.extra is None or not len(starts):
            return None
        features = np.ascontiguousarray(self.extra(starts), dtype=np.float32)
        if features.shape != (len(starts), self.predictor.extra_features):
            raise ValueError(f"the model takes ({len(starts)}, {self.predictor.extra_features}) extra features "
                             f"for these windows, extra gave {features.shape}")
        if not np.isfinite(features).all():
            raise ValueError("the windows' extra features are not all finite")
        return features

    def _cut(self, starts: np.ndarray) -> np.ndarray:
        """(n, C, window) float32 windows starting at ``starts`` (increasing, all complete)."""
        part = self._buffer.between(starts[0], starts[-1] + self.window)
        views = np.lib.stride_tricks.sliding_window_view(part, self.window, axis=1)  # (C, positions, window)
        return np.ascontiguousarray(views.transpose(1, 0, 2)[starts - starts[0]])


def classify_windows(
    model: nn.Module | Predictor,
    signal: np.ndarray | torch.Tensor,
    window: int,
    hop: int,
    *,
    batch_size: int = 64,
    extra: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Predictions:
    """Window mode over a whole recording: logits of every window (see the module docstring).

    Args:
        model: a 1D model (eager or TorchScript) or a :class:`Predictor`.
        signal: (C, L) float recording, already preprocessed as the model was trained (rate,
            filter, normalisation).
        window, hop: window length and hop in samples, 1 <= hop <= window.
        batch_size: windows per model call.
        extra: a model's extra features per window, as a function of the windows' first
            samples (see :class:`WindowStream`).

    Returns:
        :class:`Predictions` with ``sample`` the first sample of each window.

    Raises:
        ValueError: wrong shape or channel count, NaN or inf, an empty signal, or bad parameters.
        NonFiniteOutputError: a ValueError: the model's logits for a window are NaN or infinite.
        TypeError: ``extra`` is not callable.

    Warns:
        UserWarning: the signal is shorter than one window (it is labelled from one zero-padded
            window).
    """
    stream = WindowStream(model, window, hop, batch_size=batch_size, extra=extra)
    signal = as_signal(signal, stream.predictor.in_channels)  # its errors name the signal, not a chunk
    chunk = max(window, batch_size * hop)  # about a batch of windows a feed: the stream keeps no copy of the whole
    parts = [stream.feed(signal[:, start:start + chunk]) for start in range(0, signal.shape[1], chunk)]
    return Predictions.concatenate([*parts, stream.finish()])
