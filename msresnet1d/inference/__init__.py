"""Whole-record inference: a trained 1D model run over a full recording, offline or streamed.

Two modes, each an offline function on a whole (C, L) recording and a stream fed successive
chunks of it, whose outputs together are the same windows with the same logits:

* window (rhythm) mode, :mod:`.windows`: sliding windows of ``window`` samples every ``hop``
  samples, one label per window and one per recording (mean of the windows' probabilities):
  :func:`classify_windows`, :class:`WindowStream`;
* beat mode, :mod:`.beats`: one window around each given beat, optionally with RR-interval
  features: :func:`classify_beats`, :class:`BeatStream`; beats from annotations or from
  :func:`detect_beats`.

Windows are cut and classified ``batch_size`` at a time, so memory beyond the recording itself is
bounded by a batch (and, for streams, by what future windows need), not by the recording's
length; the one exception is ``classify_beats(..., template=True)``, which first holds every
beat's window (B x C x window float32s, about 50 MB for 100,000 beats of 126 samples) and a padded
copy of the signal to take their median. Signals must already
be preprocessed as the model was trained (rate, band-pass, normalisation): every length here is
in samples at that rate. Models are eager or TorchScript ``nn.Module`` s, or any
:class:`Predictor`, such as an ONNX model loaded with :class:`msresnet1d.export.OnnxPredictor`.

A beat checkpoint of ``msresnet1d train`` on a MIT-BIH record, with its inputs prepared as in
training (and as ``msresnet1d predict`` prepares them): its leads, rate, band-pass and window
(``beat_config``), the template channels (each lead minus the record's median beat: a model of
one lead has ``in_channels=2``) and the RR features its config names, standardised with the
training statistics. Class names are ``ckpt["class_names"]``::

    import numpy as np
    from msresnet1d.data import positions_at, preprocess_record, read_annotations, read_record, rr_columns, rr_features
    from msresnet1d.data.aami import BEAT_SYMBOLS
    from msresnet1d.inference import classify_beats
    from msresnet1d.training.checkpoint import load_checkpoint
    from msresnet1d.training.run import checkpoint_model
    from msresnet1d.training.tasks import beat_config

    ckpt = load_checkpoint("runs/beats/checkpoints/best.pt")
    model, data = checkpoint_model(ckpt), ckpt["config"]["data"]
    beat_cfg = beat_config(data)
    record = read_record("data/mitdb/208", leads=beat_cfg.leads)
    signal = preprocess_record(record, beat_cfg.fs, beat_cfg.band, beat_cfg.normalization)  # (C, L') at beat_cfg.fs
    ann = read_annotations("data/mitdb/208", "atr")
    beats = ann.sample[np.isin(ann.symbol, list(BEAT_SYMBOLS))]  # or detect_beats(record.signal, record.fs)
    centres = positions_at(beats, record.fs, beat_cfg.fs, signal.shape[1])  # the beats at beat_cfg.fs
    columns = rr_columns(data["rr"])  # the RR features the model reads
    mean, std = ckpt["task_state"]["rr_mean"].numpy(), ckpt["task_state"]["rr_std"].numpy()
    out = classify_beats(model, signal, centres, beat_cfg.offsets, fs=beat_cfg.fs,
                         rr=rr_features(beats, record.fs),  # at the record's own rate, as in training
                         rr_transform=lambda rr: (rr[:, columns] - mean) / std,
                         template=beat_cfg.template, template_from=beat_cfg.template_from)
    labels = [ckpt["class_names"][k] for k in out.labels]  # and out.probabilities (B, K)

(A checkpoint trained with ``data.rr = false`` takes neither ``rr`` nor ``rr_transform``. The
template here is the median over the beats given, the regular ones among them with
``template_from="regular"`` (the main job's); training takes it over those with an AAMI class,
which differs only on records with the rare symbols ``?``, ``B``, ``n`` or ``r``.)

A model whose logits for a window are NaN or infinite (weights or BatchNorm statistics that are
not finite, say) raises :class:`NonFiniteOutputError` (a ValueError) rather than answer class 0
for it.

A rhythm model on a live source of (C, n) chunks, any n::

    stream = WindowStream(model, window=3000, hop=1500)
    for chunk in source:
        handle(stream.feed(chunk))  # the windows this chunk completed
    handle(stream.finish())
"""

from .beats import BeatStream, classify_beats, detect_beats, mean_rr, median_rr
from .predictor import Predictor, TorchPredictor, as_predictor
from .stream import NonFiniteOutputError, Predictions
from .windows import WindowStream, classify_windows

__all__ = [
    "BeatStream", "NonFiniteOutputError", "Predictions", "Predictor", "TorchPredictor", "WindowStream", "as_predictor",
    "classify_beats", "classify_windows", "detect_beats", "mean_rr", "median_rr",
]
