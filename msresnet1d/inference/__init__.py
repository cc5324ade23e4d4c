"""Whole-record inference: a trained 1D model run over a full recording, offline or streamed.

Two modes, each an offline function on a whole (C, L) recording and a stream fed successive
chunks of it, whose outputs together are the same windows with the same logits:

* window (rhythm) mode, :mod:`.windows`: sliding windows of ``window`` samples every ``hop``
  samples, one label per window and one per recording (mean of the windows' probabilities):
  :func:`classify_windows`, :class:`WindowStream`;
* beat mode, :mod:`.beats`: one window around each given beat, optionally with RR-interval
  features: :func:`classify_beats`, :class:`BeatStream`; beats from annotations or from
  :func:`detect_beats`.

Windows are cut and classified ``batch_size`` at a time, so memory is bounded by a batch (and,
for streams, by what future windows need), not by the recording's length. Signals must already
be preprocessed as the model was trained (rate, band-pass, normalisation): every length here is
in samples at that rate. Models are eager or TorchScript ``nn.Module`` s, or any
:class:`Predictor`, such as an ONNX model loaded with :class:`msresnet1d.export.OnnxPredictor`.

A beat model trained at 180 Hz with standardised RR features (``rr_mean``, ``rr_std``)::

    record = read_record(path, leads=["MLII"])
    signal = preprocess_signal(record.signal, record.fs, target_fs=180.0)
    beats = detect_beats(signal, 180.0)  # or annotations, converted to samples at 180 Hz
    out = classify_beats(model, signal, beats, BeatConfig(fs=180.0).offsets, fs=180.0,
                         rr_transform=lambda rr: (rr - rr_mean) / rr_std)
    out.sample, out.labels, out.probabilities

A rhythm model on a live source of (C, n) chunks, any n::

    stream = WindowStream(model, window=3000, hop=1500)
    for chunk in source:
        handle(stream.feed(chunk))  # the windows this chunk completed
    handle(stream.finish())
"""

from .beats import BeatStream, classify_beats, detect_beats, mean_rr, median_rr
from .predictor import Predictor, TorchPredictor, as_predictor
from .stream import Predictions
from .windows import WindowStream, classify_windows

__all__ = [
    "BeatStream", "Predictions", "Predictor", "TorchPredictor", "WindowStream", "as_predictor", "classify_beats",
    "classify_windows", "detect_beats", "mean_rr", "median_rr",
]
