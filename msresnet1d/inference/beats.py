"""Beat mode: a model that labels one window around each beat, over a whole recording.

Given beat positions (sample indices, from annotations or from :func:`detect_beats`), the
window of the beat at sample ``p`` is ``signal[:, p + start : p + stop]``, edge-padded where
it runs off the recording (as :func:`msresnet1d.data.beats.beat_windows` cuts training beats;
a :class:`~msresnet1d.data.beats.BeatConfig` gives ``window=config.offsets`` at ``config.fs``).

A model built with ``extra_features`` also gets the RR features of each beat
(:func:`msresnet1d.data.rr.rr_features`: previous, next, local-mean, record-mean and
record-median RR interval in seconds, their ratios, and the local irregularity), passed
through ``rr_transform`` (e.g. the standardisation used in training). The record's mean and
median RR intervals are only known once the recording has ended, so streams take them as
``record_rr`` and ``record_median_rr``; :func:`classify_beats` computes them from all the
beats, which gives the features of
:func:`~msresnet1d.data.rr.rr_features` on the whole recording.

A model trained with ``BeatConfig(template=True)`` reads each window followed by the window
minus the recording's median beat; likewise a stream takes that median beat as ``template``
and :func:`classify_beats` computes it from the beats (``template=True``; all of them, or the
regular ones with ``template_from="regular"``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import numpy as np
import torch
import wfdb.processing
from torch import nn

from ..data.beats import beat_windows, record_template, with_template
from ..data.rr import CONTEXT_BEATS, RR_FEATURES, check_positions, rr_columns, rr_features
from ..values import is_whole
from .predictor import Predictor, as_predictor
from .stream import Predictions, SampleBuffer, Stream, as_signal, positive_number, whole_number

_PREV, _NEXT, _RECORD, _PREV_OVER_RECORD, _MEDIAN, _PREV_OVER_MEDIAN, _NEXT_OVER_MEDIAN = (
    RR_FEATURES.index(n) for n in ("rr_prev", "rr_next", "rr_record", "prev_over_record", "rr_median",
                                   "prev_over_median", "next_over_median"))
_DEFAULT_COLUMNS = rr_columns(True)  # what rr = true selects: the model input without rr_transform

#: The rates in Hz wfdb's detectors run at (read in wfdb 4.3's ``processing/qrs.py``), as a test of ``fs`` and
#: what it says: xqrs band-passes 5-20 Hz with a Butterworth filter, whose band must lie below fs / 2; gqrs
#: filters in steps of int(0.07 s x round(fs) / 4) samples, which must be at least 1.
_DETECTOR_RATES = {
    "xqrs": (lambda fs: fs > 40, "fs > 40 Hz (its 5-20 Hz band-pass must lie below fs / 2)"),
    "gqrs": (lambda fs: fs >= 57.5, "fs >= 57.5 Hz (its QRS filter step, 0.07 s / 4, must be at least a sample)"),
}

RRTransform = Callable[[np.ndarray], np.ndarray]


class BeatStream(Stream):
    """Beat mode over a recording fed in chunks, with beat positions fed along.

    ``feed(chunk, beats)`` returns the beats whose window is complete (and, for a model with RR
    features, whose next beat is known); ``finish()`` returns the rest (windows edge-padded at
    the recording's end; the last beat's next RR is its previous one). Together they are the
    beats, windows and RR features of :func:`classify_beats` with the same ``record_rr`` and
    ``record_median_rr`` (logits equal up to the float rounding of other batch sizes). Between
    calls the buffer holds the samples from the window start of the first beat not yet emitted (or
    of the earliest beat still to come) on; with all beats fed up front, at most one window.

    Beats may be fed ahead of the samples (e.g. all annotations with the first chunk) or after
    them, ``max_delay`` samples late at most (e.g. from a detector that needs some signal after
    a QRS complex): the beats passed with a chunk must lie at or after
    ``samples_fed - max_delay``, ``samples_fed`` counted before that chunk.

    Args:
        model: a 1D model (eager or TorchScript) or a :class:`Predictor`.
        window: (start, stop) of the window in samples relative to the beat, start <= 0 < stop,
            e.g. (-90, 162) for -0.25 s to +0.45 s at 360 Hz.
        fs: sampling rate of the signal in Hz (for RR features in seconds), finite and > 0.
        record_rr: mean RR interval of the whole recording in seconds, finite and > 0 (RR models
            only).
        record_median_rr: median RR interval of the whole recording in seconds (likewise), for RR models
            whose features include the ``*_median`` columns (``None``: those columns are NaN,
            and a model reading them raises).
        rr_transform: maps the (B, F) RR features (columns
            :data:`~msresnet1d.data.rr.RR_FEATURES`) to the model's (B, E) extra features
            (default: the :data:`~msresnet1d.data.rr.RR_DEFAULT` columns as they are, E = 8).
        max_delay: how late beats may be fed, in samples (>= 0).
        batch_size: beats per model call.
        template: (C, stop - start) finite median beat of the recording, for a model trained with
            ``BeatConfig(template=True)`` (which reads 2C channels: the C fed, then each minus
            ``template``); ``None``: the model reads the fed channels as they are.

    Raises:
        ValueError: bad parameters (``fs``, ``record_rr`` or ``record_median_rr`` not a finite
            number > 0); an RR model without ``fs`` or ``record_rr``; ``record_rr``,
            ``record_median_rr`` or ``rr_transform`` for a model without extra features; no
            ``rr_transform`` for a model with another number of extra features than the 8
            RR_DEFAULT columns; a
            ``template`` whose shape does not fit the window and the model's channels, or that holds
            NaN or inf. Later,
            from ``feed``/``finish``: extra features that are not finite (a model reading the
            ``*_median`` columns without ``record_median_rr``).
        TypeError: an ``rr_transform`` that is not callable.
    """

    def __init__(
        self,
        model: nn.Module | Predictor,
        window: tuple[int, int],
        *,
        fs: float | None = None,
        record_rr: float | None = None,
        record_median_rr: float | None = None,
        rr_transform: RRTransform | None = None,
        max_delay: int = 0,
        batch_size: int = 256,
        template: np.ndarray | None = None,
    ) -> None:
        start, stop = window = _check_window(window)
        fs, record_rr, record_median_rr = _check_rates(fs, record_rr, record_median_rr)
        super().__init__(model, stop - start, batch_size)
        if template is not None:
            template = np.asarray(template, dtype=np.float32)
            channels = self.predictor.in_channels
            if template.ndim != 2 or template.shape[1] != stop - start or 2 * template.shape[0] != channels:
                raise ValueError(
                    f"template must be (C, {stop - start}) = (channels, window samples) with 2C = the model's "
                    f"in_channels={channels}, got shape {template.shape}")
            template = as_signal(template, None, "template")  # NaN would make every beat's scores NaN
            self._buffer = SampleBuffer(template.shape[0])
        self.template = template
        if whole_number(max_delay, "max_delay") < 0:
            raise ValueError(f"max_delay must be >= 0 samples, got {max_delay}")
        self.uses_rr = self.predictor.extra_features > 0
        if self.uses_rr and (fs is None or record_rr is None):
            raise ValueError(
                f"this model takes {self.predictor.extra_features} extra (RR) features: give fs > 0 (Hz, got {fs}) and "
                f"record_rr > 0 (s, got {record_rr}), the recording's mean RR interval (classify_beats computes it "
                "from all beats; a stream cannot know it before the recording ends)"
            )
        if not self.uses_rr and (record_rr is not None or record_median_rr is not None or rr_transform is not None):
            raise ValueError("record_rr, record_median_rr and rr_transform are for models with extra (RR) features; "
                             "this one has none")
        _check_rr_transform(self.predictor.extra_features, rr_transform)
        self.window, self.fs, self.record_rr, self.record_median_rr = (start, stop), fs, record_rr, record_median_rr
        self.rr_transform, self.max_delay = rr_transform, max_delay
        self._pending = np.empty(0, dtype=np.int64)  # fed, not yet emitted
        self._history = np.empty(0, dtype=np.int64)  # the last CONTEXT_BEATS emitted (RR context)
        self._last_fed = -1

    def feed(self, chunk: np.ndarray | torch.Tensor, beats: np.ndarray | None = None) -> Predictions:
        """Add ``chunk`` (C, n) float, the next n samples, and ``beats`` (B,) whole numbers (int,
        or floats such as a table's column), new beat positions in samples from the recording's
        start (increasing, after those fed before); classify the beats that are now complete.

        Raises:
            ValueError: bad ``chunk`` (shape, channels, NaN or inf) or ``beats`` (not 1-D
                whole numbers, not increasing, or later than ``max_delay`` allows); the stream is
                then as before the call.
            RuntimeError: the stream is finished.
        """
        self._check_open()
        earliest = self._earliest_new_beat
        shape = tuple(getattr(chunk, "shape", ()))
        if len(shape) == 2:  # the channels, with hints (the buffer checks the rest, and the channels without them)
            _check_channels(shape, self.predictor.in_channels, self.template is not None, "chunk",
                            "template=, the recording's (C, window samples) median beat "
                            "(msresnet1d.data.beats.median_beat)",
                            None)  # with a template, __init__ made sure the model reads twice its leads
        beats = self._new_beats(beats, earliest)  # checked before the chunk is taken: a refused feed changes nothing
        self._buffer.append(chunk)
        if len(beats):
            self._pending = np.concatenate((self._pending, beats))
            self._last_fed = int(beats[-1])
        # pending beats whose window has ended (they increase: a search, not a pass over all of them)
        count = int(np.searchsorted(self._pending, self._buffer.end - self.window[1], side="right"))
        if self.uses_rr:
            count = min(count, len(self._pending) - 1)  # the last one waits for its next beat
        out = self._emit(max(count, 0))
        first = self._pending[0] if len(self._pending) else self._earliest_new_beat
        self._buffer.discard_before(first + self.window[0])
        return out

    @property
    def _earliest_new_beat(self) -> int:
        """Smallest position a beat fed with the next chunk may have."""
        return max(self._buffer.end - self.max_delay, self._last_fed + 1)

    def finish(self) -> Predictions:
        """Classify the remaining beats and close the stream.

        Raises:
            ValueError: a beat lies at or after the recording's end; an RR model saw one beat only.
                The stream then stays open, its beats kept: feed what it lacks (the samples up to
                the beat, or another beat), then finish.
        """
        self._check_open()
        # refused, the stream stays open: feed the samples it lacks
        _check_beats(self._pending, "BeatStream.finish", self._buffer.end)
        out = self._emit(len(self._pending))
        self._finished = True
        return out

    def _new_beats(self, beats: np.ndarray | None, earliest: int) -> np.ndarray:
        """``beats`` checked as new beats of a feed (increasing, none before ``earliest``)."""
        beats = _check_beats([] if beats is None else beats, "BeatStream.feed")
        if len(beats) and beats[0] < earliest:
            raise ValueError(
                f"beat at sample {beats[0]} comes too late: beats fed now must lie at or after sample {earliest} "
                f"(after the last beat fed, {self._last_fed}, and at most max_delay={self.max_delay} samples before "
                "the samples fed so far)"
            )
        return beats

    def _emit(self, count: int) -> Predictions:
        """Classify the first ``count`` pending beats and drop them from the pending ones."""
        beats = self._pending[:count]
        if self.uses_rr:
            rr = self._rr_features(beats, following=self._pending[count : count + 1])
            out = self._classify(beats, self._cut, self._extra_features(rr), rr)
            self._history = np.concatenate((self._history, beats))[-CONTEXT_BEATS:]
        else:
            out = self._classify(beats, self._cut)
        self._pending = self._pending[count:]
        return out

    def _rr_features(self, beats: np.ndarray, following: np.ndarray) -> np.ndarray:
        """(B, F) RR features of ``beats`` (``following``: the next beat, if known), as
        :func:`rr_features` gives them on the whole recording: they depend only on the
        CONTEXT_BEATS beats before (the local mean, the irregularity) and the beat after (the
        next interval), and the record's mean and median are ``record_rr`` and
        ``record_median_rr`` (NaN when that is not given)."""
        if not len(beats):
            return np.empty((0, len(RR_FEATURES)), dtype=np.float32)
        context = np.concatenate((self._history, beats, following))
        try:
            features = rr_features(context, self.fs)[len(self._history) : len(self._history) + len(beats)]
        except ValueError as exc:
            raise ValueError(f"RR features of this recording: {exc}") from exc
        features[:, _RECORD] = self.record_rr
        features[:, _PREV_OVER_RECORD] = features[:, _PREV] / np.float32(self.record_rr)
        median = np.float32(np.nan if self.record_median_rr is None else self.record_median_rr)
        features[:, _MEDIAN] = median
        features[:, _PREV_OVER_MEDIAN] = features[:, _PREV] / median
        features[:, _NEXT_OVER_MEDIAN] = features[:, _NEXT] / median
        return features

    def _extra_features(self, rr: np.ndarray) -> np.ndarray:
        """The model's (B, E) float32 extra features: ``rr_transform(rr)``, or the RR_DEFAULT columns."""
        extra = rr[:, _DEFAULT_COLUMNS] if self.rr_transform is None else self.rr_transform(rr)
        extra = np.ascontiguousarray(extra, dtype=np.float32)
        if extra.shape != (len(rr), self.predictor.extra_features):
            raise ValueError(
                f"the model takes ({len(rr)}, {self.predictor.extra_features}) extra features here, "
                f"rr_transform gave {extra.shape} from the {rr.shape} RR features"
            )
        if not np.isfinite(extra).all():
            hint = "" if self.record_median_rr is not None else \
                " (this model reads the *_median RR columns: give record_median_rr)"
            raise ValueError(f"the model's extra features are not all finite{hint}")
        return extra

    def _cut(self, beats: np.ndarray) -> np.ndarray:
        """(n, C, stop - start) float32 windows of ``beats`` (increasing), edge-padded at the
        recording's ends."""
        start, stop = self.window
        first = max(beats[0] + start, 0)
        part = self._buffer.between(first, min(beats[-1] + stop, self._buffer.end))
        windows = beat_windows(part, beats - first, start, stop)
        if self.template is not None:
            windows = with_template(windows, self.template)
        return np.ascontiguousarray(windows)


def _check_rr_transform(extra_features: int, rr_transform: RRTransform | None) -> None:
    """Without ``rr_transform`` a model gets the RR_DEFAULT columns as they are: refuse one that
    takes another number of extra features, naming what to pass; and one that is not callable."""
    if rr_transform is not None and not callable(rr_transform):  # was "'int' object is not callable" at the first beats
        raise TypeError(f"rr_transform must be a function of the (B, F) RR features, got {type(rr_transform).__name__}")
    if extra_features and rr_transform is None and extra_features != len(_DEFAULT_COLUMNS):
        raise ValueError(
            f"the model expects {extra_features} extra features per beat, but without rr_transform it gets the "
            f"{len(_DEFAULT_COLUMNS)} RR_DEFAULT columns of the {len(RR_FEATURES)} RR features: pass rr_transform, "
            "selecting and standardising the columns the model was trained on (for a checkpoint: the columns "
            "rr_columns(ckpt['config']['data']['rr']), then ckpt['task_state'] 'rr_mean' and 'rr_std')"
        )


def _check_channels(shape: tuple[int, ...], in_channels: int, template: bool, name: str = "signal",
                    pass_template: str = "template=True",
                    pass_no_template: str | None = "template=False (the default)") -> None:
    """Check that the model reads the channels of a (C, L) signal of ``shape``: C of them, or 2C with a
    ``template`` (each lead, then it minus the template); the error hints at the likely mistake,
    ``pass_template`` / ``pass_no_template`` saying which argument the caller should change (``None``:
    no such hint)."""
    channels, length = shape
    if (2 * channels if template else channels) == in_channels:
        return
    if length < channels:
        hint = f"; {name} must be (C, L) = (channels, samples): is it (L, C)? pass {name}.T"
    elif not template and 2 * channels == in_channels:
        hint = (f"; twice the {name}'s leads, as a model trained with BeatConfig(template=True) reads them (each "
                f"lead, then it minus the record's median beat): pass {pass_template}")
    elif template and channels == in_channels and pass_no_template:
        hint = f"; the model reads the leads alone: pass {pass_no_template}"
    else:
        hint = ""
    reads = f" and a template, so the model would read {2 * channels}" if template else ""
    raise ValueError(f"{name} has {channels} channel(s) (shape (C, L) = {tuple(shape)}){reads}, but the model "
                     f"expects in_channels={in_channels}{hint}")


def _check_beats(beats: np.ndarray, function: str, end: int | None = None) -> np.ndarray:
    """``beats`` as (B,) int64 positions in samples, checked as :func:`~msresnet1d.data.rr.check_positions`
    does (1-D whole numbers; floats such as a table's column too) and >= 0, increasing and, given
    the recording's length ``end`` in samples, < ``end``; a ValueError names ``function``."""
    beats = check_positions(beats, function, "beats")
    if len(beats) and beats[0] < 0:
        raise ValueError(f"{function}: beat positions must be >= 0 samples, got {beats[0]}")
    if (np.diff(beats) <= 0).any():
        raise ValueError(f"{function}: beats must increase; position {beats[1:][np.diff(beats) <= 0][0]} repeats "
                         "or goes back")
    if end is not None and len(beats) and beats[-1] >= end:
        raise ValueError(f"{function}: beat at sample {beats[-1]} lies beyond the recording's end ({end} samples)")
    return beats.astype(np.int64)


def _intervals(beats: np.ndarray, fs: float, function: str) -> np.ndarray:
    beats = _check_beats(beats, function)
    if len(beats) < 2:
        raise ValueError(f"{function}: a record's RR interval needs at least 2 beats, got {len(beats)}")
    return np.diff(beats) / positive_number(fs, "fs", "Hz")


def mean_rr(beats: np.ndarray, fs: float) -> float:
    """Mean RR interval in seconds of increasing beat positions (samples at ``fs`` Hz), as
    :func:`msresnet1d.data.rr.rr_features` computes its ``rr_record`` column. Raises ValueError for
    beats that are not increasing whole sample positions >= 0, fewer than 2 beats, or ``fs`` not
    a finite number > 0."""
    return float(np.mean(_intervals(beats, fs, "mean_rr")))


def median_rr(beats: np.ndarray, fs: float) -> float:
    """Median RR interval in seconds of increasing beat positions (samples at ``fs`` Hz), as
    :func:`msresnet1d.data.rr.rr_features` computes its ``rr_median`` column (errors of :func:`mean_rr`)."""
    return float(np.median(_intervals(beats, fs, "median_rr")))


FEED_SAMPLES = 1 << 16
"""Samples :func:`classify_beats` feeds its stream at a time (3 min at 360 Hz)."""


def classify_beats(
    model: nn.Module | Predictor,
    signal: np.ndarray | torch.Tensor,
    beats: np.ndarray,
    window: tuple[int, int],
    *,
    fs: float | None = None,
    record_rr: float | None = None,
    record_median_rr: float | None = None,
    rr_transform: RRTransform | None = None,
    batch_size: int = 256,
    template: bool | np.ndarray = False,
    template_from: Literal["all", "regular"] = "all",
    rr: np.ndarray | None = None,
) -> Predictions:
    """Beat mode over a whole recording: logits of every beat (see the module docstring).

    Args:
        model: a 1D model (eager or TorchScript) or a :class:`Predictor`.
        signal: (C, L) float recording, preprocessed as the model was trained.
        beats: (B,) increasing beat positions in samples, each in [0, L): whole numbers, int or
            float (a table's column).
        window: (start, stop) samples relative to each beat, start <= 0 < stop.
        fs: sampling rate in Hz, finite and > 0 (needed by RR models, unless ``rr`` is given).
        record_rr: the record-mean RR interval in seconds for RR models, finite and > 0; default
            :func:`mean_rr` of ``beats``.
        record_median_rr: likewise the record-median RR interval; default :func:`median_rr`
            of ``beats``.
        rr_transform: maps the (B, F) RR features to the model's extra features (default: the
            RR_DEFAULT columns as they are).
        batch_size: beats per model call.
        template: for a model trained with ``BeatConfig(template=True)``: ``True`` (the median
            of the beats' windows) or a (C, stop - start) median beat, finite (an array, tensor
            or nested list); ``False``: none.
        template_from: with ``template=True``, the median of ``"all"`` the beats or of the
            ``"regular"`` ones (``BeatConfig.template_from``; their previous RR intervals from
            ``rr`` if given, else from ``beats`` at ``fs``).
        rr: for RR models, (B, F) RR features of ``beats`` (columns
            :data:`~msresnet1d.data.rr.RR_FEATURES`) computed elsewhere, e.g. by
            :func:`~msresnet1d.data.rr.rr_features` from the beat times at the recording's own
            rate, as the training data were (``beats`` at a lower ``fs`` round each interval to
            1 / ``fs`` s); default: computed from ``beats`` at ``fs``.

    Returns:
        :class:`Predictions` with ``sample`` the beat positions (and ``rr`` for RR models).

    Raises:
        ValueError: ``signal`` with other channels than the model reads (C, or C = half of them
            with ``template``); ``template`` neither a boolean nor an array; ``beats`` not 1-D
            whole numbers, not increasing or not in [0, L); ``rr`` not (B, F) or given to a model
            without RR features; no ``rr_transform`` for a model with another number of extra
            features than the 8 RR_DEFAULT columns; the errors of :class:`BeatStream`.
        TypeError: an ``rr_transform`` that is not callable.
        NonFiniteOutputError: a ValueError: the model's logits for a beat are NaN or infinite.
    """
    predictor = as_predictor(model)
    window = _check_window(window)
    fs, record_rr, record_median_rr = _check_rates(fs, record_rr, record_median_rr)
    recording = as_signal(signal, None)
    if template_from not in ("all", "regular"):  # checked without template=True too: a typo is told at once
        raise ValueError(f"template_from must be 'all' or 'regular', got {template_from!r}")
    if isinstance(template, (torch.Tensor, list, tuple)):  # a median beat as the signal may be given
        template = template.detach().cpu().numpy() if isinstance(template, torch.Tensor) else np.asarray(template)
    if not isinstance(template, np.ndarray):  # None is False; a string or a number is refused
        if template is not None and not isinstance(template, (bool, np.bool_)):
            raise ValueError(f"template must be True, False or a (C, L) median beat (an array), got "
                             f"{template!r:.60}")
        template = bool(template)
    _check_channels(recording.shape, predictor.in_channels, template is not False)
    _check_rr_transform(predictor.extra_features, rr_transform)
    beats = _check_beats(beats, "classify_beats", recording.shape[1])
    if rr is not None:
        rr = np.asarray(rr, dtype=np.float32)
        if not predictor.extra_features:
            raise ValueError("rr is for models with extra (RR) features; this one has none (extra_features=0)")
        if rr.shape != (len(beats), len(RR_FEATURES)):
            raise ValueError(f"rr must be ({len(beats)}, {len(RR_FEATURES)}): the {len(RR_FEATURES)} RR features "
                             f"(RR_FEATURES) of each of the {len(beats)} beats; got shape {rr.shape}")
        rr_transform = _given_rr(rr, rr_transform)
        # the stream's own RR features are replaced by the given ones, so they need no sampling rate:
        # without fs it computes them in samples (any positive rate would do)
        fs, record_rr = (1.0, 1.0) if fs is None else (fs, record_rr)
    if predictor.extra_features and fs is not None:
        record_rr = mean_rr(beats, fs) if record_rr is None else record_rr
        record_median_rr = median_rr(beats, fs) if record_median_rr is None else record_median_rr
    if template is True:
        if template_from == "regular" and rr is None and fs is None:
            raise ValueError("template_from='regular' needs fs (Hz) for the beats' RR intervals")
        # the regular beats by the given intervals, as the beats' features are
        features = rr if rr is not None or template_from == "all" else rr_features(beats, fs)
        template = record_template(beat_windows(recording, beats, *window), features, template_from)
    stream = BeatStream(predictor, window, fs=fs, record_rr=record_rr, record_median_rr=record_median_rr,
                        rr_transform=rr_transform, batch_size=batch_size,
                        template=None if template is False else template)
    # fed in chunks, as classify_windows feeds its stream: the stream then holds a chunk, not a copy of the whole
    step = max(window[1] - window[0], FEED_SAMPLES)
    bounds = np.searchsorted(beats, np.arange(0, recording.shape[1] + step, step))
    parts = [stream.feed(recording[:, first:first + step], beats[bounds[i]:bounds[i + 1]])
             for i, first in enumerate(range(0, recording.shape[1], step))]
    out = Predictions.concatenate([*parts, stream.finish()])
    return out if rr is None else Predictions(out.sample, out.logits, rr)


def _check_window(window: tuple[int, int]) -> tuple[int, int]:
    """``window`` = (start, stop) in whole samples relative to the beat, start <= 0 < stop."""
    if np.ndim(window) != 1 or len(window) != 2:
        raise ValueError(f"window must be (start, stop) in samples relative to the beat, got {window!r}")
    start, stop = whole_number(window[0], "window start"), whole_number(window[1], "window stop")
    if not start <= 0 < stop:
        raise ValueError(f"window=(start, stop)={window} samples must hold the beat: start <= 0 < stop")
    return start, stop


def _check_rates(fs: float | None, record_rr: float | None,
                 record_median_rr: float | None) -> tuple[float | None, float | None, float | None]:
    """``fs`` (Hz), ``record_rr`` and ``record_median_rr`` (s) as floats, each ``None`` or a finite number > 0."""
    given = ((fs, "fs", "Hz"), (record_rr, "record_rr", "seconds"), (record_median_rr, "record_median_rr", "seconds"))
    return tuple(None if value is None else positive_number(value, name, unit) for value, name, unit in given)


def _given_rr(rr: np.ndarray, rr_transform: RRTransform | None) -> RRTransform:
    """An ``rr_transform`` for a stream fed every beat of a recording at once: it replaces the
    stream's RR features of each batch by the next rows of ``rr`` (a stream emits its beats in
    order, each once), then applies ``rr_transform`` (default: the RR_DEFAULT columns)."""
    done = 0

    def transform(computed: np.ndarray) -> np.ndarray:
        nonlocal done
        given, done = rr[done : done + len(computed)], done + len(computed)
        return given[:, _DEFAULT_COLUMNS] if rr_transform is None else rr_transform(given)

    return transform


def detect_beats(
    signal: np.ndarray | torch.Tensor, fs: float, *, method: Literal["xqrs", "gqrs"] = "xqrs", channel: int = 0
) -> np.ndarray:
    """QRS complexes found by one of wfdb's detectors on one channel of a whole recording.

    Args:
        signal: (C, L) recording; gqrs expects physical units (mV, as read: its thresholds
            are in uV), xqrs adapts its thresholds to the signal (a preprocessed one will do).
        fs: its sampling rate in Hz: above 40 Hz for xqrs, at least 57.5 Hz for gqrs (the
            lowest rates their filters work at).
        method: ``"xqrs"`` (:func:`wfdb.processing.xqrs_detect`, adaptive thresholds) or
            ``"gqrs"`` (:func:`wfdb.processing.gqrs_detect`, the WFDB gqrs port).
        channel: index of the channel to search.

    Returns:
        (B,) int64 increasing QRS positions in samples, usable as ``beats``. Normal beats lie
        where MIT-BIH annotates them; ventricular ones often do not (over DS2, 46% of them more
        than 14 ms away: ``experiments/detect_offsets.py``), so a beat model trained at the
        annotations reads them shifted.

    Raises:
        ValueError: a bad ``signal`` (as :func:`classify_beats` says), ``channel`` or ``method``;
            ``fs`` not finite or below the method's lowest rate; a signal shorter than 1 s (xqrs
            needs more than three times its 0.1 s QRS filter; wfdb fails on an empty one).
    """
    signal = as_signal(signal, None)
    transposed = "; signal must be (C, L) = (channels, samples): is it (L, C), as wfdb's p_signal? pass signal.T" \
        if signal.shape[1] < signal.shape[0] else ""
    if not is_whole(channel) or not 0 <= channel < signal.shape[0]:
        raise ValueError(f"channel={channel!r} is not one of the signal's {signal.shape[0]} channel(s): expected "
                         f"an index from 0 to {signal.shape[0] - 1}")
    if method not in _DETECTOR_RATES:
        raise ValueError(f"method={method!r}, expected 'xqrs' or 'gqrs'")
    runs_at, needs = _DETECTOR_RATES[method]
    if not runs_at(positive_number(fs, "fs", "Hz")):
        raise ValueError(f"fs={fs!r} Hz is too low for {method}, which needs {needs}")
    if signal.shape[1] < math.ceil(fs):
        raise ValueError(f"signal has {signal.shape[1]} samples; detect_beats needs at least 1 s of it "
                         f"({math.ceil(fs)} samples at fs={fs:g} Hz){transposed}")
    lead = signal[channel].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):  # xqrs on a flat start (its learning window): 0 / 0
        if method == "xqrs":
            found = wfdb.processing.xqrs_detect(lead, fs, verbose=False)
        else:
            found = wfdb.processing.gqrs_detect(sig=lead, fs=fs)
    return np.unique(np.asarray(found, dtype=np.int64))
