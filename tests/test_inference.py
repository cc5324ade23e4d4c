"""Whole-record inference: windows as the data layer cuts them, streams equal to offline calls
(on a real MIT-BIH record), bounded buffers, clear errors."""

import re
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from msresnet1d.data import read_annotations, read_record
from msresnet1d.data.aami import BEAT_SYMBOLS
from msresnet1d.data.beats import beat_windows, median_beat
from msresnet1d.data.rhythm import sliding_windows, window_starts
from msresnet1d.data.rr import RR_DEFAULT, RR_FEATURES, rr_columns, rr_features
from msresnet1d.inference import (
    BeatStream,
    NonFiniteOutputError,
    Predictions,
    TorchPredictor,
    WindowStream,
    classify_beats,
    classify_windows,
    detect_beats,
    mean_rr,
    median_rr,
)
import msresnet1d.inference
from msresnet1d.models import MSResNet1d, create_model

SAMPLE = Path(__file__).resolve().parents[1] / "datasets" / "mitdb-sample"
FS = 360.0
BEAT_WINDOW = (-90, 162)  # -0.25 s to +0.45 s at 360 Hz, as BeatConfig().offsets


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """These tests run many small batches: on a shared 2-core machine, waking a second OpenMP
    thread for each operation costs more than it gives (the conftest sets 2 before this, and
    restores the count after)."""
    torch.set_num_threads(1)



def tiny_model(extra_features: int = 0) -> MSResNet1d:
    """A small two-lead model with a stem pool (so windows of odd lengths go through every layer kind)."""
    return MSResNet1d(in_channels=2, num_classes=4, kernels=(3, 9), widths=(8, 16), layers=(1, 1), stem_channels=8,
                      stem_pool=True, extra_features=extra_features, zero_init_residual=False).eval()  # fmt: skip


@pytest.fixture(scope="module")
def record_100(mitdb_dir):
    """MIT-BIH record 100: (2, 650000) float32 signal at 360 Hz and its annotated beats (samples)."""
    record = read_record(mitdb_dir / "100", leads=["MLII", "V5"])
    annotations = read_annotations(mitdb_dir / "100")
    beats = annotations.sample[np.isin(annotations.symbol, list(BEAT_SYMBOLS))]
    return record.signal, beats


def inference_example() -> str:
    """The beat-checkpoint example of ``msresnet1d.inference``'s docstring, as code."""
    example = re.search(r'Class names are ``ckpt\["class_names"\]``::\n\n(.*?)\n\n\S', msresnet1d.inference.__doc__,
                        flags=re.S)
    return textwrap.dedent(example.group(1))


def run_stream(stream, signal, chunk_sizes, beats=None):
    """Feed ``signal`` in chunks of the given sizes (cycled); beats all with the first chunk.
    Returns the concatenated output, each emitted position's (samples fed before, after) its
    feed (None for finish), and the largest buffer seen between calls."""
    parts, fed_at, largest, position, i = [], [], 0, 0, 0
    while position < signal.shape[1]:
        size = chunk_sizes[i % len(chunk_sizes)]
        before = stream.samples_fed
        extra = {} if beats is None else {"beats": beats if i == 0 else None}
        part = stream.feed(signal[:, position : position + size], **extra)
        parts.append(part)
        fed_at += [(before, stream.samples_fed)] * len(part)
        largest = max(largest, stream.buffered_samples)
        position, i = position + size, i + 1
    last = stream.finish()
    return Predictions.concatenate([*parts, last]), fed_at + [None] * len(last), largest


def assert_same_predictions(actual: Predictions, expected: Predictions) -> None:
    np.testing.assert_array_equal(actual.sample, expected.sample)
    np.testing.assert_allclose(actual.logits, expected.logits, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(actual.labels, expected.labels)
    if expected.rr is None:
        assert actual.rr is None
    else:
        np.testing.assert_allclose(actual.rr, expected.rr, rtol=1e-6, atol=0)


# Window mode ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "length, window, hop, starts",
    [(25, 10, 4, [0, 4, 8, 12, 15]),  # grid ends early: one window ending at the last sample
     (22, 10, 4, [0, 4, 8, 12]),  # grid ends on the last sample
     (10, 10, 3, [0]),
     (7, 10, 3, [0])],  # shorter than one window: zero-padded, with a warning
)
def test_windows_are_those_of_the_data_layer(length, window, hop, starts):
    model = tiny_model()
    signal = np.random.default_rng(0).standard_normal((2, length)).astype(np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predictions = classify_windows(model, signal, window, hop)
    short = f"the recording is {length} samples long, shorter than one window ({window} samples): labelled from " \
            "one zero-padded window"
    assert [str(w.message) for w in caught] == ([short] if length < window else [])
    assert predictions.sample.tolist() == starts
    expected = model(torch.from_numpy(np.ascontiguousarray(sliding_windows(signal, window, hop)))).detach().numpy()
    np.testing.assert_allclose(predictions.logits, expected, atol=1e-5, rtol=0)


def test_window_stream_equals_offline_on_a_mitdb_record(record_100):
    signal, _ = record_100
    model = tiny_model()
    window, hop = 3600, 1800  # 10 s every 5 s
    offline = classify_windows(model, signal, window, hop)
    assert len(offline) == (signal.shape[1] - window) // hop + 2  # the grid, plus the window ending the record
    for chunks in ([360], [7777], [1, 5000, 17, 30000, 2]):  # 1 s, odd sizes, mixed
        streamed, fed_at, largest = run_stream(WindowStream(model, window, hop), signal, chunks)
        assert_same_predictions(streamed, offline)
        # Emitted by the very chunk that completed the window; finish() only adds the last window.
        for start, at in zip(streamed.sample[:-1], fed_at[:-1], strict=True):
            assert at is not None and at[0] < start + window <= at[1]
        assert fed_at[-1] is None
        assert largest <= window  # what the window ending at the record's end may need


def test_record_label_averages_window_probabilities():
    predictions = Predictions(np.arange(3), np.array([[2.0, 0.0], [0.0, 0.1], [0.0, 0.2]], np.float32))
    probabilities = np.exp(predictions.logits) / np.exp(predictions.logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(predictions.record_probabilities(), probabilities.mean(axis=0), rtol=1e-6)
    assert predictions.labels.tolist() == [0, 1, 1]
    assert predictions.record_label() == 0  # one confident window outweighs two hesitant ones
    assert predictions.record_label("mean_logit") == 0
    with pytest.raises(ValueError, match="no windows"):
        Predictions(np.empty(0, np.int64), np.empty((0, 2), np.float32)).record_probabilities()


# Beat mode ------------------------------------------------------------------------------------


def test_beats_are_cut_and_described_as_in_the_data_layer():
    rng = np.random.default_rng(1)
    signal = rng.standard_normal((2, 3000)).astype(np.float32)
    beats = np.array([0, 40, 400, 700, 1100, 1300, 1700, 2100, 2500, 2800, 2950, 2999])  # both edges padded
    model = tiny_model(extra_features=len(RR_DEFAULT))
    predictions = classify_beats(model, signal, beats, BEAT_WINDOW, fs=FS, batch_size=5)
    expected_rr = rr_features(beats, FS)
    np.testing.assert_allclose(predictions.rr, expected_rr, rtol=1e-6, atol=0)
    windows = torch.from_numpy(np.ascontiguousarray(beat_windows(signal, beats, *BEAT_WINDOW)))
    # without rr_transform the model takes the RR_DEFAULT columns, as a config's rr = true trains it
    expected = model(windows, torch.from_numpy(expected_rr[:, :len(RR_DEFAULT)])).detach().numpy()
    np.testing.assert_allclose(predictions.logits, expected, atol=1e-5, rtol=0)
    assert predictions.sample.tolist() == beats.tolist()


def test_rr_transform_feeds_the_model():
    signal = np.random.default_rng(2).standard_normal((2, 2000)).astype(np.float32)
    beats = np.arange(100, 1900, 300)
    model = create_model("msresnet1d_beat", in_channels=2, extra_features=2).eval()

    def first_two_standardised(rr):
        return (rr[:, :2] - 0.8) / 0.1

    predictions = classify_beats(model, signal, beats, BEAT_WINDOW, fs=FS, rr_transform=first_two_standardised)
    windows = torch.from_numpy(np.ascontiguousarray(beat_windows(signal, beats, *BEAT_WINDOW)))
    extra = torch.from_numpy(first_two_standardised(rr_features(beats, FS)))
    np.testing.assert_allclose(predictions.logits, model(windows, extra).detach().numpy(), atol=1e-5, rtol=0)
    columns = len(RR_FEATURES)
    with pytest.raises(ValueError, match=rf"takes \(5, 2\) extra features here, rr_transform gave \(5, {columns}\)"):
        classify_beats(model, signal, beats, BEAT_WINDOW, fs=FS, rr_transform=lambda rr: rr)
    # refused up front, not at the first beats
    for make in (lambda t: classify_beats(model, signal, beats, BEAT_WINDOW, fs=FS, rr_transform=t),
                 lambda t: BeatStream(model, BEAT_WINDOW, fs=FS, record_rr=0.8, rr_transform=t)):
        with pytest.raises(TypeError, match=r"^rr_transform must be a function of the \(B, F\) RR features, got int$"):
            make(3)
    # RR features given (e.g. from the beat times at the record's own rate) replace the computed ones, in order
    given = rr_features(beats, FS) * np.linspace(0.8, 1.2, len(beats), dtype=np.float32)[:, None]
    fed = classify_beats(model, signal, beats, BEAT_WINDOW, fs=FS, rr_transform=first_two_standardised, rr=given,
                         batch_size=2)
    extra = torch.from_numpy(first_two_standardised(given))
    np.testing.assert_allclose(fed.logits, model(windows, extra).detach().numpy(), atol=1e-5, rtol=0)
    np.testing.assert_array_equal(fed.rr, given)
    assert not np.allclose(fed.logits, predictions.logits, atol=1e-4)
    # given RR features need no sampling rate (nor record_rr): the stream's own are replaced
    unrated = classify_beats(model, signal, beats, BEAT_WINDOW, rr_transform=first_two_standardised, rr=given)
    np.testing.assert_allclose(unrated.logits, fed.logits, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match=r"give fs > 0 \(Hz, got None\)"):
        classify_beats(model, signal, beats, BEAT_WINDOW, rr_transform=first_two_standardised)
    with pytest.raises(ValueError, match=r"rr must be \(6, \d+\): the \d+ RR features \(RR_FEATURES\) of each of the 6 beats"):
        classify_beats(model, signal, beats, BEAT_WINDOW, fs=FS, rr=given[:4], rr_transform=first_two_standardised)
    with pytest.raises(ValueError, match=r"rr is for models with extra \(RR\) features; this one has none"):
        classify_beats(create_model("msresnet1d_beat", in_channels=2).eval(), signal, beats, BEAT_WINDOW, rr=given)
    # the template of the regular beats is taken over the beats the given RR intervals call regular
    prev, one = RR_FEATURES.index("rr_prev"), np.random.default_rng(3).standard_normal((1, 9000)).astype(np.float32)
    beats = np.arange(100, 8900, 300)  # 30 beats: enough regular ones for a template of their own
    premature = rr_features(beats, FS)
    premature[::3, prev] *= 0.5  # every third beat premature by the given intervals, none by the beat times
    windows = beat_windows(one, beats, *BEAT_WINDOW)
    kwargs = {"fs": FS, "rr": premature, "rr_transform": first_two_standardised}
    from_given = classify_beats(model, one, beats, BEAT_WINDOW, template=True, template_from="regular", **kwargs)
    expected = classify_beats(model, one, beats, BEAT_WINDOW, template=median_beat(windows, premature[:, prev]), **kwargs)
    np.testing.assert_allclose(from_given.logits, expected.logits, atol=1e-6, rtol=0)
    of_all = classify_beats(model, one, beats, BEAT_WINDOW, template=median_beat(windows), **kwargs)
    assert not np.allclose(from_given.logits, of_all.logits, atol=1e-4)


def test_beat_stream_with_rr_equals_offline_on_a_mitdb_record(record_100):
    signal, beats = record_100
    model = tiny_model(extra_features=len(RR_DEFAULT))
    record_rr = mean_rr(beats, FS)
    offline = classify_beats(model, signal, beats, BEAT_WINDOW, fs=FS)
    np.testing.assert_allclose(offline.rr, rr_features(beats, FS), rtol=1e-6, atol=0)
    for chunks in ([7777], [1, 5000, 17, 30000, 2]):
        stream = BeatStream(model, BEAT_WINDOW, fs=FS, record_rr=record_rr, record_median_rr=median_rr(beats, FS))
        streamed, fed_at, largest = run_stream(stream, signal, chunks, beats)
        assert_same_predictions(streamed, offline)
        # Every beat but the last (whose next RR interval is only known at the end) is emitted
        # by the chunk that completed its window.
        for beat, at in zip(streamed.sample[:-1], fed_at[:-1], strict=True):
            assert at is not None and at[0] < beat + BEAT_WINDOW[1] <= at[1]
        assert fed_at[-1] is None
        assert largest <= BEAT_WINDOW[1] - BEAT_WINDOW[0]  # the start of the next beat's window


def test_beat_stream_reads_the_median_rr_columns_from_record_median_rr(record_100):
    signal, beats = record_100
    columns = rr_columns(["prev_over_local", "prev_over_median", "next_over_median"])
    model = tiny_model(extra_features=len(columns))

    def select(rr):
        return rr[:, columns]

    offline = classify_beats(model, signal, beats, BEAT_WINDOW, fs=FS, rr_transform=select)
    np.testing.assert_allclose(offline.rr, rr_features(beats, FS), rtol=1e-6, atol=0)
    assert median_rr(beats, FS) == pytest.approx(np.median(np.diff(beats)) / FS)
    stream = BeatStream(model, BEAT_WINDOW, fs=FS, record_rr=mean_rr(beats, FS),
                        record_median_rr=median_rr(beats, FS), rr_transform=select)
    assert_same_predictions(run_stream(stream, signal, [5000, 13], beats)[0], offline)
    stream = BeatStream(model, BEAT_WINDOW, fs=FS, record_rr=mean_rr(beats, FS), rr_transform=select)
    with pytest.raises(ValueError, match="reads the \\*_median RR columns: give record_median_rr"):
        run_stream(stream, signal, [5000], beats)
    with pytest.raises(ValueError, match=r"record_median_rr must be a finite number > 0 \(seconds\), got 0\.0$"):
        BeatStream(model, BEAT_WINDOW, fs=FS, record_rr=0.8, record_median_rr=0.0)


def test_template_models_read_each_beat_and_its_difference_to_the_median_beat(record_100):
    signal, beats = record_100
    lead = signal[:1]  # one lead in, two channels (the lead, the lead minus the median beat) to the model
    model = tiny_model(extra_features=len(RR_DEFAULT))
    windows = beat_windows(lead, beats, *BEAT_WINDOW)
    template = np.median(windows, axis=0)
    by_hand = torch.from_numpy(np.ascontiguousarray(np.concatenate([windows, windows - template], axis=1)))
    offline = classify_beats(model, lead, beats, BEAT_WINDOW, fs=FS, template=True)
    extra = torch.from_numpy(rr_features(beats, FS)[:, :len(RR_DEFAULT)])
    np.testing.assert_allclose(offline.logits, model(by_hand, extra).detach().numpy(), atol=1e-4, rtol=0)
    stream = BeatStream(model, BEAT_WINDOW, fs=FS, record_rr=mean_rr(beats, FS), record_median_rr=median_rr(beats, FS),
                        template=median_beat(windows))
    assert_same_predictions(run_stream(stream, lead, [5000, 13], beats)[0], offline)
    with pytest.raises(ValueError, match=r"template must be \(C, 252\).*in_channels=2, got shape \(2, 252\)"):
        BeatStream(model, BEAT_WINDOW, fs=FS, record_rr=1.0, template=np.zeros((2, 252)))
    # fed as many leads as it reads
    with pytest.raises(ValueError, match=r"signal has 2 channel\(s\) \(shape \(C, L\) = \(2, \d+\)\) and a template, "
                                         r"so the model would read 4, but the model expects in_channels=2; the "
                                         r"model reads the leads alone: pass template=False"):
        classify_beats(model, signal, beats, BEAT_WINDOW, fs=FS, template=True)
    # template_from="regular": the median of the beats that are not premature
    rr_prev = rr_features(beats, FS)[:, RR_FEATURES.index("rr_prev")]
    regular = classify_beats(model, lead, beats, BEAT_WINDOW, fs=FS, template=True, template_from="regular")
    stream = BeatStream(model, BEAT_WINDOW, fs=FS, record_rr=mean_rr(beats, FS), record_median_rr=median_rr(beats, FS),
                        template=median_beat(windows, rr_prev))
    assert_same_predictions(run_stream(stream, lead, [5000, 13], beats)[0], regular)
    assert np.abs(regular.logits - offline.logits).max() > 1e-4  # 10 x the tolerance: another template
    with pytest.raises(ValueError, match="template_from='regular' needs fs"):
        classify_beats(model, lead, beats, BEAT_WINDOW, template=True, template_from="regular")


@pytest.mark.parametrize("max_delay", [0, 1000])
def test_beats_fed_with_or_after_their_samples(max_delay):
    rng = np.random.default_rng(3)
    signal = rng.standard_normal((2, 20_000)).astype(np.float32)
    beats = np.cumsum(rng.integers(200, 400, size=70))
    beats = beats[beats < signal.shape[1]]
    model = tiny_model()
    offline = classify_beats(model, signal, beats, BEAT_WINDOW)
    stream, parts, chunk = BeatStream(model, BEAT_WINDOW, max_delay=max_delay), [], 700
    for start in range(0, signal.shape[1], chunk):
        # A detector's output: the beats in this chunk, or max_delay samples behind it.
        lag = max_delay // 2
        new = beats[(beats >= start - lag) & (beats < start + chunk - lag)]
        parts.append(stream.feed(signal[:, start : start + chunk], new))
        # The next beat's window, or what a beat fed max_delay samples late needs.
        assert stream.buffered_samples <= max(BEAT_WINDOW[1], max_delay) - BEAT_WINDOW[0]
    assert_same_predictions(Predictions.concatenate([*parts, stream.finish()]), offline)


def test_detect_beats_finds_the_annotated_beats(record_100):
    signal, beats = record_100
    minutes = signal[:, : int(120 * FS)]
    reference = beats[beats < minutes.shape[1]]
    for method in ("xqrs", "gqrs"):
        found = detect_beats(minutes, FS, method=method)
        nearest = np.abs(found[None, :] - reference[:, None]).min(axis=1)
        assert np.mean(nearest <= 0.05 * FS) >= 0.99, method  # within 50 ms
        assert abs(len(found) - len(reference)) <= 2, method


@pytest.mark.parametrize("fs, method, message", [
    (0, "xqrs", r"fs must be a finite number > 0 \(Hz\), got 0$"),  # was wfdb's ZeroDivisionError
    (np.nan, "gqrs", r"fs must be a finite number > 0 \(Hz\), got nan$"),
    (-5.0, "xqrs", r"fs must be a finite number > 0 \(Hz\), got -5\.0$"),  # was scipy's "0 < Wn < 1"
    (40, "xqrs", r"fs=40 Hz is too low for xqrs, which needs fs > 40 Hz \(its 5-20 Hz band-pass"),
    (57.4, "gqrs", r"fs=57\.4 Hz is too low for gqrs, which needs fs >= 57\.5 Hz"),  # was a bare Exception
])
def test_detect_beats_names_a_rate_its_detector_cannot_run_at(fs, method, message):
    with pytest.raises(ValueError, match=message):
        detect_beats(np.zeros((1, 4000)), fs, method=method)


def test_detect_beats_runs_from_the_lowest_rates_and_one_second_on():
    rng = np.random.default_rng(3)
    for fs, method in ((40.5, "xqrs"), (57.5, "gqrs"), (FS, "xqrs"), (FS, "gqrs")):
        second = int(np.ceil(fs))  # samples
        assert detect_beats(rng.standard_normal((1, second)), fs, method=method).dtype == np.int64
        with pytest.raises(ValueError, match=rf"signal has {second - 1} samples; detect_beats needs at least 1 s of "
                                             rf"it \({second} samples at fs={fs:g} Hz\)"):
            detect_beats(rng.standard_normal((1, second - 1)), fs, method=method)
    with pytest.raises(ValueError, match=r"signal has 0 samples"):  # was numpy's "zero-size array to reduction"
        detect_beats(np.zeros((1, 0)), FS)
    message = ("signal has 2 samples; detect_beats needs at least 1 s of it (360 samples at fs=360 Hz); signal must "
               "be (C, L) = (channels, samples): is it (L, C), as wfdb's p_signal? pass signal.T")
    with pytest.raises(ValueError, match=re.escape(message)):
        detect_beats(rng.standard_normal((3600, 2)), FS)  # wfdb.rdrecord(...).p_signal as it is
    flat_start = np.zeros((1, 180 * int(FS)))  # a lead flat but for one spike: xqrs divided 0 by 0 learning on it
    flat_start[0, 30000] = 2.0
    with warnings.catch_warnings():
        warnings.filterwarnings("error", category=RuntimeWarning)  # numpy's unnamed "divide by zero encountered"
        assert detect_beats(flat_start, FS).tolist() == [30000]
        assert detect_beats(flat_start, FS, method="gqrs").size == 0


# Backends --------------------------------------------------------------------------------------


@pytest.mark.filterwarnings(r"ignore:`torch\.jit\.\w+` is deprecated:DeprecationWarning")
def test_scripted_and_onnx_models_run_the_same_inference(tmp_path):
    pytest.importorskip("onnxruntime")
    from msresnet1d.export import OnnxPredictor, export_onnx, export_torchscript

    signal = np.random.default_rng(4).standard_normal((2, 5000)).astype(np.float32)
    beats = np.arange(50, 5000, 290)
    model = tiny_model(extra_features=len(RR_DEFAULT))
    expected = classify_beats(model, signal, beats, BEAT_WINDOW, fs=FS)
    scripted = torch.jit.load(str(export_torchscript(model, tmp_path / "m.pt")))
    onnx = OnnxPredictor(export_onnx(model, tmp_path / "m.onnx"), threads=1)
    for backend in (scripted, onnx):
        np.testing.assert_allclose(
            classify_beats(backend, signal, beats, BEAT_WINDOW, fs=FS).logits, expected.logits, atol=1e-4, rtol=0
        )
    traced = torch.jit.load(str(export_torchscript(model, tmp_path / "t.pt", method="trace")))
    with pytest.raises(ValueError, match="no attribute in_channels.*script the model"):
        TorchPredictor(traced)


def test_a_model_without_parameters_is_run_in_float32_on_the_cpu():
    class Mean(torch.nn.Module):  # a baseline with nothing to learn: next(parameters()) was a bare StopIteration
        in_channels, min_input_size, extra_features = 1, 1, 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(-1)

    predictor = TorchPredictor(Mean())
    assert (predictor.device, predictor.dtype, predictor.num_outputs) == (torch.device("cpu"), torch.float32, 1)
    np.testing.assert_allclose(predictor.predict(np.ones((2, 1, 8), np.float32)), [[1.0], [1.0]])


# Errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "signal, message",
    [(np.zeros(5000), r"2-D \(C, L\).*got shape \(5000,\); for a single channel pass signal\[None\]"),
     (np.zeros((3, 5000)), r"3 channel\(s\).*expects in_channels=2"),
     (np.zeros((5000, 2)), r"5000 channel\(s\).*is it \(L, C\)\? transpose it"),
     (np.zeros((2, 5000), dtype=complex), "real numbers, got dtype complex128"),
     (np.where(np.arange(5000) == 1234, np.nan, 0.0)[None].repeat(2, 0), r"nan at channel 0, sample 1234"),
     (np.full((2, 5000), np.inf), r"inf at channel 0, sample 0"),
     (torch.zeros(2, 5000, 1), r"2-D \(C, L\).*got shape \(2, 5000, 1\)"),
     (np.zeros((2, 0)), "recording is empty")],
)
def test_bad_signals_are_named(signal, message):
    with pytest.raises(ValueError, match=message):
        classify_windows(tiny_model(), signal, 1000, 500)


def test_non_finite_sample_position_counts_across_chunks():
    stream = WindowStream(tiny_model(), 1000, 500)
    stream.feed(np.zeros((2, 700), np.float32))
    chunk = np.zeros((2, 700), np.float32)
    chunk[1, 10] = np.nan
    with pytest.raises(ValueError, match="chunk holds nan at channel 1, sample 710"):
        stream.feed(chunk)


def test_bad_parameters_are_named():
    model, rr_model = tiny_model(), tiny_model(extra_features=len(RR_DEFAULT))
    signal = np.zeros((2, 4000), np.float32)
    short = model.min_input_size - 1
    with pytest.raises(ValueError, match=rf"windows of {short} samples.*minimum input of {model.min_input_size}"):
        WindowStream(model, short, 5)
    with pytest.raises(ValueError, match="hop must be >= 1"):
        WindowStream(model, 1000, 0)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        WindowStream(model, 1000, 500, batch_size=0)
    with pytest.raises(ValueError, match="takes 8 extra features per window: give extra"):
        WindowStream(rr_model, 1000, 500)
    with pytest.raises(ValueError, match=r"start <= 0 < stop"):
        BeatStream(model, (10, 200))
    with pytest.raises(ValueError, match=r"give fs > 0.*record_rr > 0"):
        BeatStream(rr_model, BEAT_WINDOW, fs=FS)
    with pytest.raises(ValueError, match="for models with extra \\(RR\\) features; this one has none"):
        BeatStream(model, BEAT_WINDOW, record_rr=0.8)
    with pytest.raises(ValueError, match="at least 2 beats, got 1"):
        classify_beats(rr_model, signal, np.array([100]), BEAT_WINDOW, fs=FS)
    with pytest.raises(ValueError, match="beat at sample 4000 lies beyond the recording's end"):
        classify_beats(model, signal, np.array([100, 4000]), BEAT_WINDOW)
    with pytest.raises(ValueError, match="beat positions must be >= 0 samples, got -5"):
        classify_beats(model, signal, np.array([-5, 400]), BEAT_WINDOW)
    with pytest.raises(ValueError, match="position 300 repeats or goes back"):
        classify_beats(model, signal, np.array([100, 400, 300]), BEAT_WINDOW)
    with pytest.raises(ValueError, match=r"classify_beats: beats must be a 1-D array of whole sample positions "
                                         r"\(integers\), got float64 of shape"):
        classify_beats(model, signal, np.array([100.5, 400.0]), BEAT_WINDOW)
    # whole numbers stored as floats (a column read with pandas) are positions, as data.rr takes them
    np.testing.assert_array_equal(classify_beats(model, signal, np.array([100.0, 400.0]), BEAT_WINDOW).logits,
                                  classify_beats(model, signal, np.array([100, 400]), BEAT_WINDOW).logits)
    assert len(classify_beats(model, signal, [], BEAT_WINDOW).sample) == 0  # no beats (a flat record's detection)
    for rr in (mean_rr, median_rr):  # what a stream's record_rr comes from: the same checks
        with pytest.raises(ValueError, match="position 100 repeats or goes back"):
            rr(np.array([400, 100]), FS)
        with pytest.raises(ValueError, match=f"{rr.__name__}: beats must be a 1-D array of whole sample positions"):
            rr(np.array([100.0, 400.5]), FS)
        assert rr(np.array([100.0, 400.0]), FS) == rr(np.array([100, 400]), FS)
    with pytest.raises(ValueError, match="channel=2 is not one of the signal's 2 channel"):
        detect_beats(signal, FS, channel=2)
    with pytest.raises(ValueError, match=r"channel=1.5 is not one of the signal's 2 channel\(s\): expected an index"):
        detect_beats(signal, FS, channel=1.5)  # was an IndexError from numpy
    with pytest.raises(ValueError, match="method='pan_tompkins', expected 'xqrs' or 'gqrs'"):
        detect_beats(signal, FS, method="pan_tompkins")
    with pytest.raises(TypeError, match="torch.nn.Module or a Predictor"):
        classify_windows("model.pt", signal, 1000, 500)
    # lengths are whole samples: seconds (the config's unit) or floats are named, not left to numpy
    with pytest.raises(ValueError, match=r"window start must be a whole number of samples, got -0\.25 \(seconds x "):
        classify_beats(model, signal, np.array([100, 400]), (-0.25, 0.45))
    with pytest.raises(ValueError, match=r"window stop must be a whole number of samples, got 81\.0"):
        BeatStream(model, (-45, 81.0))
    with pytest.raises(ValueError, match=r"window must be a whole number of samples, got 3000\.0"):
        classify_windows(model, signal, 3000.0, 1500)
    with pytest.raises(ValueError, match=r"hop must be a whole number of samples, got 1500\.0"):
        WindowStream(model, 3000, 1500.0)
    with pytest.raises(ValueError, match=r"max_delay must be a whole number of samples, got 0\.5"):
        BeatStream(model, BEAT_WINDOW, max_delay=0.5)
    with pytest.raises(ValueError, match=r"window must be \(start, stop\) in samples relative to the beat, got \(45,\)"):
        BeatStream(model, (45,))
    with pytest.raises(ValueError, match=r"window must be \(start, stop\) in samples relative to the beat, got 90"):
        classify_beats(model, signal, np.array([100, 400]), 90)
    with pytest.raises(ValueError, match=r"batch_size must be a whole number of windows, got 64\.0$"):
        classify_windows(model, signal, 600, 300, batch_size=64.0)
    assert len(classify_windows(model, signal, np.int64(1000), np.int64(500)).sample) == 7  # numpy integers are fine
    beats = np.array([500, 1000, 1500])
    with pytest.raises(ValueError, match=r"rr must be \(3, 12\): the 12 RR features \(RR_FEATURES\) of each of the 3 "
                                         r"beats; got shape \(3, 8\)"):
        classify_beats(rr_model, signal, beats, BEAT_WINDOW, rr=rr_features(beats, FS)[:, :8])


@pytest.mark.parametrize("name, value, unit", [
    ("fs", np.nan, "Hz"), ("fs", np.inf, "Hz"), ("fs", 0, "Hz"), ("fs", -360.0, "Hz"), ("fs", "360", "Hz"),
    ("record_rr", np.inf, "seconds"), ("record_rr", np.nan, "seconds"), ("record_rr", 0.0, "seconds"),
    ("record_median_rr", np.nan, "seconds"), ("record_median_rr", np.inf, "seconds"),
])  # fmt: skip
def test_rates_and_rr_intervals_must_be_finite_and_positive(name, value, unit):
    # named where they are received, not as an error of the RR features they would give (an IndexError,
    # "beat positions must increase", "give record_median_rr", divide-by-zero warnings)
    model, signal, beats = tiny_model(extra_features=len(RR_DEFAULT)), np.zeros((2, 4000), np.float32), np.arange(200, 4000, 400)
    given = {"fs": FS, "record_rr": 1.0, name: value}
    message = rf"{name} must be a finite number > 0 \({unit}\), got {re.escape(repr(value))}$"
    with pytest.raises(ValueError, match=message):
        BeatStream(model, BEAT_WINDOW, **given)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's divide-by-zero warning is not the answer
        with pytest.raises(ValueError, match=message):
            classify_beats(model, signal, beats, BEAT_WINDOW, **{name: value})
    if name == "fs":
        for function in (mean_rr, median_rr):
            with pytest.raises(ValueError, match=message):
                function(beats, value)


@pytest.mark.parametrize("signal, template, message", [
    (np.zeros((1, 4000)), False, r"signal has 1 channel\(s\) \(shape \(C, L\) = \(1, 4000\)\), but the model expects "
                                 r"in_channels=2; twice the signal's leads, as a model trained with "
                                 r"BeatConfig\(template=True\) reads them .*: pass template=True"),
    (np.zeros((4000, 1)), True, r"signal has 4000 channel\(s\) \(shape \(C, L\) = \(4000, 1\)\) and a template, so the "
                                r"model would read 8000, but .*: is it \(L, C\)\? pass signal.T"),
    (np.zeros((4000, 2)), False, r"signal has 4000 channel\(s\).*: is it \(L, C\)\? pass signal.T"),
])  # fmt: skip
def test_classify_beats_names_a_signal_with_other_channels_than_the_model_reads(signal, template, message):
    # checked before the beats, which a transposed signal of one or two samples would not hold
    with pytest.raises(ValueError, match=message):
        classify_beats(tiny_model(), signal, np.array([100, 3000]), BEAT_WINDOW, fs=FS, template=template)


@pytest.mark.parametrize("template", ["yes", "False", 1])
def test_classify_beats_refuses_a_template_that_is_neither_a_boolean_nor_an_array(template):
    """template='False' was taken as True (each beat and its difference to the median beat)."""
    with pytest.raises(ValueError, match=rf"^template must be True, False or a \(C, L\) median beat \(an array\), "
                                         rf"got {re.escape(repr(template))}$"):
        classify_beats(tiny_model(), np.zeros((1, 4000)), np.array([100, 3000]), BEAT_WINDOW, fs=FS,
                       template=template)
    classify_beats(tiny_model(), np.zeros((1, 4000)), np.array([1000, 3000]), BEAT_WINDOW, fs=FS,
                   template=np.True_)  # numpy's booleans are booleans


def test_classify_beats_takes_a_median_beat_as_a_tensor_or_a_list_too():
    # as the signal may be given: they were refused as "template must be True or False"
    model, signal, beats = tiny_model(), np.random.default_rng(0).standard_normal((1, 4000)), np.array([1000, 3000])
    median = np.random.default_rng(1).standard_normal((1, BEAT_WINDOW[1] - BEAT_WINDOW[0])).astype(np.float32)
    expected = classify_beats(model, signal, beats, BEAT_WINDOW, fs=FS, template=median).logits
    for given in (torch.from_numpy(median), median.tolist()):
        np.testing.assert_array_equal(classify_beats(model, signal, beats, BEAT_WINDOW, fs=FS, template=given).logits,
                                      expected)
    with pytest.raises(ValueError, match="template_from must be 'all' or 'regular', got 'foo'"):  # was taken
        classify_beats(model, signal, beats, BEAT_WINDOW, template=median, template_from="foo")


@pytest.mark.parametrize("chunk, template, message", [
    (np.zeros((1, 4000)), None, r"chunk has 1 channel\(s\) \(shape \(C, L\) = \(1, 4000\)\), but the model expects "
                                r"in_channels=2; twice the chunk's leads, .*: pass template=, the recording's "
                                r"\(C, window samples\) median beat"),
    (np.zeros((4000, 2)), None, r"chunk has 4000 channel\(s\).*: is it \(L, C\)\? pass chunk.T"),
    (np.zeros((2, 4000)), np.zeros((1, 252)), r"chunk has 2 channel\(s\) \(shape \(C, L\) = \(2, 4000\)\) and a "
                                              r"template, so the model would read 4, but the model expects in_channels=2$"),
])  # fmt: skip
def test_beat_stream_names_a_chunk_with_other_channels_than_the_model_reads(chunk, template, message):
    stream = BeatStream(tiny_model(), BEAT_WINDOW, template=template)
    with pytest.raises(ValueError, match=message):
        stream.feed(chunk, np.array([100]))
    assert stream.samples_fed == 0  # nothing was taken


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_a_template_with_nan_or_inf_is_refused(value):
    # as a signal is: NaN in the template would give every beat NaN scores, hence class 0
    model, signal = tiny_model(), np.random.default_rng(2).standard_normal((1, 4000)).astype(np.float32)
    template = np.zeros((1, 252), np.float32)
    template[0, 7] = value
    with pytest.raises(ValueError, match=rf"template holds {value} at channel 0, sample 7"):
        classify_beats(model, signal, np.array([300, 1000, 3000]), BEAT_WINDOW, template=template)
    with pytest.raises(ValueError, match=rf"template holds {value} at channel 0, sample 7"):
        BeatStream(model, BEAT_WINDOW, template=template)


def test_no_template_may_be_said_with_none_or_a_numpy_boolean():
    model, signal, beats = tiny_model(), np.zeros((2, 4000), np.float32), np.array([100, 3000])
    expected = classify_beats(model, signal, beats, BEAT_WINDOW, fs=FS).logits
    for template in (None, np.False_):
        np.testing.assert_array_equal(classify_beats(model, signal, beats, BEAT_WINDOW, fs=FS, template=template).logits,
                                      expected)


def test_a_model_that_does_not_read_the_default_rr_columns_needs_rr_transform():
    model, signal, beats = tiny_model(extra_features=5), np.zeros((2, 4000), np.float32), np.array([100, 1000, 3000])
    message = (r"the model expects 5 extra features per beat, but without rr_transform it gets the 8 RR_DEFAULT "
               r"columns of the 12 RR features: pass rr_transform, selecting and standardising")
    with pytest.raises(ValueError, match=message):
        classify_beats(model, signal, beats, BEAT_WINDOW, fs=FS)
    with pytest.raises(ValueError, match=message):
        classify_beats(model, signal, beats, BEAT_WINDOW, rr=rr_features(beats, FS))
    with pytest.raises(ValueError, match=message):
        BeatStream(model, BEAT_WINDOW, fs=FS, record_rr=1.0)


def test_beat_stream_refuses_beats_it_can_no_longer_cut():
    stream = BeatStream(tiny_model(), BEAT_WINDOW, max_delay=100)
    stream.feed(np.zeros((2, 1000), np.float32), np.array([500]))
    with pytest.raises(ValueError, match=r"beat at sample 899 comes too late.*at or after sample 900"):
        stream.feed(np.zeros((2, 1000), np.float32), np.array([899]))
    patient = BeatStream(tiny_model(), BEAT_WINDOW, max_delay=5000)
    patient.feed(np.zeros((2, 1000), np.float32), np.array([500]))
    with pytest.raises(ValueError, match=r"beat at sample 400 comes too late.*at or after sample 501"):
        patient.feed(np.zeros((2, 10), np.float32), np.array([400]))
    stream.finish()
    with pytest.raises(RuntimeError, match="finished"):
        stream.feed(np.zeros((2, 10), np.float32))


def test_a_beat_is_classified_by_the_feed_that_completes_its_window():
    stream = BeatStream(tiny_model(), BEAT_WINDOW)  # no RR features: no beat waits for the next one
    beats = np.array([200, 500, 800])
    out = stream.feed(np.zeros((2, 500 + BEAT_WINDOW[1]), np.float32), beats)  # 500's window ends at the end
    assert out.sample.tolist() == [200, 500]
    assert stream.feed(np.zeros((2, 800 + BEAT_WINDOW[1] - 1 - 662), np.float32)).sample.tolist() == []  # one short
    assert stream.feed(np.zeros((2, 1), np.float32)).sample.tolist() == [800]


def test_window_models_with_extra_features_get_them_from_the_window_starts():
    model = tiny_model(extra_features=2)
    signal = np.random.default_rng(1).standard_normal((2, 2500)).astype(np.float32)
    window, hop = 1000, 400
    seen = []

    def extra(starts: np.ndarray) -> np.ndarray:  # features that depend on where the window starts
        seen.append(starts.copy())
        return np.stack([starts / 1000.0, np.cos(starts)], axis=1)

    starts = window_starts(signal.shape[1], window, hop)
    offline = classify_windows(model, signal, window, hop, extra=extra)
    assert offline.sample.tolist() == starts.tolist() and np.concatenate(seen).tolist() == starts.tolist()
    windows = torch.from_numpy(np.ascontiguousarray(sliding_windows(signal, window, hop)))
    expected = model(windows, torch.from_numpy(extra(starts).astype(np.float32))).detach().numpy()
    np.testing.assert_allclose(offline.logits, expected, atol=1e-5, rtol=0)
    streamed, _, _ = run_stream(WindowStream(model, window, hop, extra=extra), signal, [700])
    assert_same_predictions(streamed, offline)
    assert not np.allclose(classify_windows(model, signal, window, hop, extra=lambda s: extra(s) + 1).logits,
                           offline.logits, atol=1e-3)  # the features reach the model
    with pytest.raises(ValueError, match="takes 2 extra features per window: give extra"):
        WindowStream(model, window, hop)
    with pytest.raises(ValueError, match="extra is for models with extra features per window; this one has none"):
        WindowStream(tiny_model(), window, hop, extra=extra)
    with pytest.raises(ValueError, match=r"takes \(4, 2\) extra features for these windows, extra gave \(4, 1\)"):
        classify_windows(model, signal, window, hop, extra=lambda s: extra(s)[:, :1])
    with pytest.raises(ValueError, match="extra features are not all finite"):
        classify_windows(model, signal, window, hop, extra=lambda s: extra(s) * np.nan)


@pytest.mark.parametrize("spoil", ["nan_weight", "negative_running_var"])
def test_non_finite_outputs_are_refused_not_labelled_class_0(spoil):
    # NaN weights, or a negative BatchNorm running variance (the square root of it is NaN): NaN logits, whose argmax
    # would call every window class 0
    model = tiny_model()
    with torch.no_grad():
        if spoil == "nan_weight":
            model.fc.weight.fill_(float("nan"))
        else:
            next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)).running_var[0] = -1.0
    signal = np.random.default_rng(0).standard_normal((2, 4000)).astype(np.float32)
    message = r"outputs are not finite \(NaN or inf\) for the window at sample {}: its weights or BatchNorm"
    with pytest.raises(NonFiniteOutputError, match=message.format(0)):
        classify_windows(model, signal, 1000, 500, batch_size=3)
    with pytest.raises(NonFiniteOutputError, match=message.format(500)):
        classify_beats(model, signal, np.array([500, 1500, 2500]), BEAT_WINDOW)
    with pytest.raises(ValueError, match=message.format(0)):
        WindowStream(model, 1000, 500).feed(signal[:, :3000])


def test_window_mode_refuses_a_hop_that_skips_samples_and_extra_features_that_are_not_a_function():
    model, signal = tiny_model(), np.zeros((2, 4000), np.float32)
    # as a training config refuses hop_seconds > crop_seconds
    for run in (lambda: classify_windows(model, signal, 1000, 1001), lambda: WindowStream(model, 1000, 1001)):
        with pytest.raises(ValueError, match=r"hop must be at most window=1000 samples, got 1001: windows further "
                                             r"apart would leave samples out"):
            run()
    assert len(classify_windows(model, signal, 1000, 1000)) == 4  # windows end to end
    with pytest.raises(TypeError, match=r"extra must be a function of the windows' first samples \(n,\) returning "
                                        r"their \(n, E\) features, got ndarray; for features computed beforehand"):
        classify_windows(tiny_model(extra_features=2), signal, 1000, 500, extra=np.zeros((7, 2), np.float32))
    stream = WindowStream(model, 1000, 500)
    assert not len(stream.feed(signal[:, :600]))
    with pytest.warns(UserWarning, match=r"the recording is 600 samples long, shorter than one window \(1000 "
                                         r"samples\): labelled from one zero-padded window"):
        assert len(stream.finish()) == 1


def test_classify_beats_checks_the_beats_before_cutting_the_template():
    model, signal = tiny_model(), np.zeros((1, 4000), np.float32)  # template models read 2C = 2 channels
    for template_from in ("all", "regular"):
        with pytest.raises(ValueError, match=r"beat at sample 4000 lies beyond the recording's end \(4000 samples\)"):
            classify_beats(model, signal, np.array([100, 4000]), BEAT_WINDOW, fs=FS, template=True,
                           template_from=template_from)
    with pytest.raises(ValueError, match="position 300 repeats or goes back"):
        classify_beats(model, signal, np.array([100, 400, 300]), BEAT_WINDOW, template=True)
    with pytest.raises(ValueError, match="whole sample positions"):
        classify_beats(model, signal, np.array([[100, 400]]), BEAT_WINDOW, template=True)
    stream = BeatStream(model, BEAT_WINDOW)
    stream.feed(np.zeros((2, 1000), np.float32), np.array([500, 1000]))
    with pytest.raises(ValueError, match=r"beat at sample 1000 lies beyond the recording's end \(1000 samples\)"):
        stream.finish()


def test_the_module_example_classifies_beats_as_predict_does(tmp_path):
    # A one-epoch run of the beat task: template channels, and a subset of the RR columns
    # standardised with the training statistics: the example must prepare both.
    from msresnet1d.predict import predict_beats
    from msresnet1d.training.config import TrainConfig
    from msresnet1d.training.run import train

    rr = ["prev_over_local", "next_over_local", "prev_over_record", "next_over_prev", "rr_irregularity"]
    cfg = TrainConfig.from_dict({
        "name": "tiny", "task": "beats", "epochs": 1, "batch_size": 128, "threads": 1,
        "model_kwargs": {"widths": [8, 16, 16], "stem_channels": 8, "kernels": [3, 9]},
        "data": {"data_dir": str(SAMPLE), "train_records": ["101", "106", "118", "119"], "val_records": ["106"],
                 "test_records": ["100"], "rr": rr, "template": True, "template_from": "regular", "cache": False},
    })
    train(cfg, tmp_path / "run", quiet=True)
    checkpoint = tmp_path / "run" / "checkpoints" / "best.pt"
    code = inference_example().replace("runs/beats/checkpoints/best.pt", str(checkpoint))
    namespace: dict = {}
    exec(compile(code.replace("data/mitdb/208", str(SAMPLE / "208")), "inference example", "exec"), namespace)
    reference = predict_beats(namespace["ckpt"], SAMPLE / "208", "atr")
    np.testing.assert_allclose(namespace["out"].probabilities, reference.probabilities, atol=1e-5, rtol=0)
    assert namespace["labels"] == [namespace["ckpt"]["class_names"][k] for k in reference.probabilities.argmax(1)]
    # the Python entry takes a record as the CLI does (a str, or one of its files), and says what is wrong
    from msresnet1d.data import DataError
    from msresnet1d.predict import predict_windows

    np.testing.assert_array_equal(predict_beats(namespace["ckpt"], str(SAMPLE / "208.hea"), "atr").positions,
                                  reference.positions)
    with pytest.raises(DataError, match=r"208\.nope is missing.*name the annotation file .* or find them with --detect"):
        predict_beats(namespace["ckpt"], str(SAMPLE / "208"), "nope")
    with pytest.raises(TypeError, match=r"predict_beats takes a checkpoint as load_checkpoint\(path\) returns it, got str"):
        predict_beats(str(checkpoint), SAMPLE / "208", "atr")
    with pytest.raises(TypeError, match=r"leads is a list of lead names, e\.g\. \['MLII'\], got the string 'MLII'"):
        predict_beats(namespace["ckpt"], SAMPLE / "208", "atr", leads="MLII")
    with pytest.raises(ValueError, match=r"predict_windows labels with a rhythm model; this checkpoint is a 'beats' "
                                         r"model \(use predict_beats\)"):
        predict_windows(namespace["ckpt"], SAMPLE / "208")


class _MeanPredictor:
    """A numpy Predictor: each window's mean as its one logit (so tracemalloc sees all it allocates)."""

    in_channels, extra_features, min_input_size, num_outputs = 1, 0, 1, 1

    def predict(self, x: np.ndarray, extra: np.ndarray | None = None) -> np.ndarray:
        return x.mean(axis=(1, 2))[:, None]


def test_classify_windows_keeps_no_copy_of_the_whole_recording():
    # the stream was fed the whole signal at once, so its buffer copied all of it (8 MB here); it is fed a batch
    # of windows at a time, and the windows are those of the whole signal still
    import tracemalloc

    signal = np.random.default_rng(0).standard_normal((1, 2_000_000)).astype(np.float32)
    tracemalloc.start()
    try:
        out = classify_windows(_MeanPredictor(), signal, window=3000, hop=1500, batch_size=16)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    starts = window_starts(signal.shape[1], 3000, 1500)
    np.testing.assert_array_equal(out.sample, starts)
    np.testing.assert_allclose(out.logits[:, 0], [signal[0, s:s + 3000].mean() for s in starts], rtol=1e-5, atol=1e-6)
    assert peak < signal.nbytes / 3, f"{peak / 1e6:.1f} MB for a {signal.nbytes / 1e6:.0f} MB recording"  # 2 MB: a finiteness mask


def test_beat_windows_gathers_without_an_index_array():
    import tracemalloc

    signal = np.random.default_rng(1).standard_normal((2, 400_000)).astype(np.float32)
    centres = np.arange(50, 400_000 - 100, 40)
    tracemalloc.start()
    try:
        windows = beat_windows(signal, centres, -90, 162)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert windows.shape == (len(centres), 2, 252)
    np.testing.assert_array_equal(windows[7], signal[:, centres[7] - 90:centres[7] + 162])
    # the windows and a padded copy of the signal, not also an int64 (N, 252) index (twice the windows' bytes)
    assert peak < 1.3 * (windows.nbytes + signal.nbytes), f"{peak / 1e6:.1f} MB"


def test_classify_beats_keeps_no_copy_of_the_whole_recording():
    # it fed its stream the whole signal, whose buffer copied it (1.2x the recording at its peak)
    import tracemalloc

    signal = np.random.default_rng(0).standard_normal((1, 2_000_000)).astype(np.float32)
    beats = np.arange(100, 2_000_000 - 200, 2_500)
    tracemalloc.start()
    try:
        out = classify_beats(_MeanPredictor(), signal, beats, (-100, 200), batch_size=64)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(out.sample, beats)
    np.testing.assert_allclose(out.logits[:, 0], [signal[0, b - 100:b + 200].mean() for b in beats], rtol=1e-5,
                               atol=1e-6)
    assert peak < signal.nbytes / 3, f"{peak / 1e6:.1f} MB for a {signal.nbytes / 1e6:.0f} MB recording"


def test_a_refused_feed_or_finish_leaves_the_stream_as_it_was():
    # the chunk was taken before its beats were refused (feeding it again counted its samples twice), and a
    # refused finish closed the stream, its other beats lost
    signal = np.random.default_rng(2).standard_normal((2, 3000)).astype(np.float32)
    model = tiny_model()
    whole = classify_beats(model, signal, np.array([500, 1400, 1500, 2500, 2650]), BEAT_WINDOW)
    stream = BeatStream(model, BEAT_WINDOW)
    parts = [stream.feed(signal[:, :1000], np.array([500]))]
    with pytest.raises(ValueError, match="beats must increase"):
        stream.feed(signal[:, 1000:2000], np.array([1500, 1400]))
    assert stream.samples_fed == 1000
    parts.append(stream.feed(signal[:, 1000:2000], np.array([1400, 1500])))
    parts.append(stream.feed(signal[:, 2000:2600], np.array([2500, 2650])))  # fed before their samples
    with pytest.raises(ValueError, match=r"beat at sample 2650 lies beyond the recording's end \(2600 samples\)"):
        stream.finish()
    parts += [stream.feed(signal[:, 2600:]), stream.finish()]
    out = Predictions.concatenate(parts)
    np.testing.assert_array_equal(out.sample, whole.sample)
    np.testing.assert_allclose(out.logits, whole.logits, atol=1e-5)
    k = out.logits.shape[1]
    with_rr = Predictions(np.array([1]), np.zeros((1, k), np.float32), np.zeros((1, 8), np.float32))
    other_k = Predictions(np.array([1]), np.zeros((1, k + 1), np.float32))
    for bad, problem in (([out, with_rr], f"part 1 has {k} classes, 8 RR features, part 0 {k} classes, no RR features"),
                         ([out, other_k], f"part 1 has {k + 1} classes, no RR features, part 0 {k} classes")):
        with pytest.raises(ValueError, match=re.escape(f"concatenate: {problem}")):  # the first was rr dropped silently
            Predictions.concatenate(bad)
    with pytest.raises(TypeError, match="concatenate: part 1 is a ndarray, not Predictions"):
        Predictions.concatenate([out, out.logits])
    windows = WindowStream(tiny_model(), window=1000, hop=500)
    with pytest.raises(ValueError, match="the recording is empty"):
        windows.finish()
    fed = windows.feed(signal[:, :1500])  # still open after the refused finish
    assert len(fed.sample) + len(windows.finish().sample) == 2
    with pytest.raises(RuntimeError, match="finished"):
        windows.finish()


def test_classifying_restores_each_modules_own_mode():
    # a model fine-tuned with a frozen (eval-mode) BatchNorm had it switched to training by a call in between
    model = tiny_model().train()
    frozen = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d))
    frozen.eval()
    classify_beats(model, np.zeros((2, 1000), np.float32), np.array([100]), BEAT_WINDOW)
    assert not frozen.training and all(m.training for m in model.modules() if m is not frozen)
