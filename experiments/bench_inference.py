"""Benchmark of whole-record inference on one MIT-BIH record (default 100: 30 min, 650,000 samples
x 2 leads at 360 Hz), beat mode and window mode, with randomly initialised (untrained) models:
only the timings mean something, not the labels.

Beat mode: ``msresnet1d_beat`` (2 leads) on a 0.7 s window (-0.25 s to +0.45 s, as ``BeatConfig``)
around every beat annotation of the record, the record preprocessed at each rate of ``--beat-fs``
(360 Hz: as recorded; 180 Hz: the rate the training defaults use). Window mode: ``msresnet1d_small``
(2 leads) on 10 s windows every 5 s, the record preprocessed at each rate of ``--rhythm-fs``.
Inference runs on torch (eager) and on onnxruntime (the model exported by ``export_onnx``), both
with ``--threads`` threads (default 2, as the recorded results were made). Each stage (see ``STAGES``) is timed on its own with ``time.perf_counter``; the
median of the repeats is reported (all times are in the JSON). Exporting the ONNX files and
building the models are not timed. Prints a table; writes experiments/results/bench_inference.json
atomically.

Usage:
    python experiments/bench_inference.py [--data-dir DIR] [--repeats 5] [--threads 2] [--skip-detection]
DIR holds mitdb/; default $MSRESNET1D_DATA.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from msresnet1d import count_flops, create_model
from msresnet1d.arguments import (THREADS_AS_RECORDED, add_data_dir, as_program, database_or_exit, output_or_exit,
                                  path_flag, positive_int, positive_number, records_or_exit, results_help,
                                  script_parser, thread_count, threads_help, write_result)
from msresnet1d.data import BeatConfig, RhythmConfig, read_annotations, read_record
from msresnet1d.data.aami import BEAT_SYMBOLS
from msresnet1d.data.beats import beat_windows
from msresnet1d.data.parallel import usable_cpus
from msresnet1d.data.preprocess import preprocess_signal
from msresnet1d.data.records import Record
from msresnet1d.data.rhythm import sliding_windows
from msresnet1d.export import OnnxPredictor, export_onnx
from msresnet1d.inference import (
    BeatStream,
    Predictions,
    Predictor,
    WindowStream,
    as_predictor,
    classify_beats,
    classify_windows,
    detect_beats,
)
from msresnet1d.training.provenance import load_average, provenance

RESULTS = Path(__file__).resolve().parent / "results" / "bench_inference.json"
LEADS = ("MLII", "V5")
THREADS = 2  # --threads' default: the recorded results' setting
RHYTHM_WINDOW_S, RHYTHM_HOP_S = 10.0, 5.0
STREAM_CHUNK_S = 1.0
BEAT_BATCH, WINDOW_BATCH = 256, 64  # windows per model call

STAGES = {
    "read": "reading the signals with wfdb (read_record, leads MLII and V5)",
    "annotations": "reading the .atr file and keeping the beat annotations (beat mode only)",
    "preprocess": "fill NaN, band-pass 0.5-40 Hz, resample to fs_hz, z-score (preprocess_signal)",
    "inference": "classify_beats / classify_windows on the preprocessed record: cutting the windows and "
                 "running the model in batches",
    "pipeline_total": "read + annotations (beat mode) + preprocess + inference",
    "model_only": "the model alone on the same windows cut beforehand, in the same batches (part of inference)",
    "stream_1s_chunks": "the same inference fed to BeatStream / WindowStream in 1 s chunks (not in the total)",
    "detection": "QRS detection (detect_beats, xqrs and gqrs) on lead MLII at 360 Hz (not in the total)",
}  # fmt: skip


def timed(func: Callable[[], object], repeats: int) -> tuple[object, dict]:
    """Run ``func`` ``repeats`` times: its last result, and the median and all wall times in s."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - start)
    return result, {"median_s": round(statistics.median(times), 4), "all_s": [round(t, 4) for t in times]}


def streamed(stream: BeatStream | WindowStream, signal: np.ndarray, chunk: int, first_feed: dict) -> Predictions:
    """Feed ``signal`` to ``stream`` in chunks of ``chunk`` samples (``first_feed``: keyword
    arguments of the first feed) and collect the outputs."""
    parts = [stream.feed(signal[:, start : start + chunk], **(first_feed if start == 0 else {}))
             for start in range(0, signal.shape[1], chunk)]  # fmt: skip
    return Predictions.concatenate([*parts, stream.finish()])


def model_only(predictor: Predictor, windows: np.ndarray, batch_size: int) -> None:
    """The model alone on windows cut beforehand, ``batch_size`` at a time."""
    for start in range(0, len(windows), batch_size):
        predictor.predict(windows[start : start + batch_size])


def bench_backends(
    model: torch.nn.Module,
    onnx_path: Path,
    offline: Callable[[object], Predictions],
    stream: Callable[[object], BeatStream | WindowStream],
    windows: np.ndarray,
    batch_size: int,
    signal: np.ndarray,
    chunk: int,
    first_feed: dict,
    args: argparse.Namespace,
) -> list[dict]:
    """Offline inference, the model alone on the same ``windows`` (N, C, L) cut beforehand (the
    difference is what cutting and batching cost), and streamed inference, timed with torch and
    with onnxruntime; the stream must give the offline windows and labels."""
    runners = {"torch": model, "onnxruntime": OnnxPredictor(export_onnx(model, onnx_path), threads=args.threads or None)}
    rows = []
    for backend, runner in runners.items():
        expected, inference = timed(functools.partial(offline, runner), args.repeats)
        _, model_times = timed(functools.partial(model_only, as_predictor(runner), windows, batch_size), args.repeats)
        output, stream_times = timed(
            lambda runner=runner: streamed(stream(runner), signal, chunk, first_feed), args.stream_repeats
        )
        assert np.array_equal(output.sample, expected.sample) and np.array_equal(output.labels, expected.labels)
        rows.append({"backend": backend, "windows": len(expected), "inference": inference, "model_only": model_times,
                     "stream_1s_chunks": stream_times})  # fmt: skip
    return rows


def bench_beats(record: Record, beats: np.ndarray, fs: float, folder: Path, args: argparse.Namespace) -> list[dict]:
    config = BeatConfig(leads=LEADS, fs=fs)
    preprocess = functools.partial(preprocess_signal, record.signal, record.fs, target_fs=fs, band=config.band,
                                   normalization=config.normalization, name=record.name)  # fmt: skip
    signal, preprocess_times = timed(preprocess, args.repeats)
    positions = np.minimum(np.round(beats * (fs / record.fs)).astype(np.int64), signal.shape[1] - 1)
    model = create_model("msresnet1d_beat", in_channels=len(LEADS)).eval()
    rows = bench_backends(
        model, folder / f"beat-{fs:g}.onnx",
        lambda runner: classify_beats(runner, signal, positions, config.offsets, batch_size=BEAT_BATCH),
        lambda runner: BeatStream(runner, config.offsets, batch_size=BEAT_BATCH),
        np.ascontiguousarray(beat_windows(signal, positions, *config.offsets)), BEAT_BATCH,
        signal, round(STREAM_CHUNK_S * fs), {"beats": positions}, args,
    )  # fmt: skip
    gflop = count_flops(model, (1, len(LEADS), config.length)) * len(positions) / 1e9
    common = {"mode": "beat", "model": "msresnet1d_beat", "fs_hz": fs, "window_samples": config.length,
              "gflop": round(gflop, 2), "preprocess": preprocess_times}  # fmt: skip
    return [{**common, **row} for row in rows]


def bench_windows(record: Record, fs: float, folder: Path, args: argparse.Namespace) -> list[dict]:
    config = RhythmConfig(fs=fs)
    preprocess = functools.partial(preprocess_signal, record.signal, record.fs, target_fs=fs, band=config.band,
                                   normalization=config.normalization, name=record.name)  # fmt: skip
    signal, preprocess_times = timed(preprocess, args.repeats)
    window, hop = round(RHYTHM_WINDOW_S * fs), round(RHYTHM_HOP_S * fs)
    model = create_model("msresnet1d_small", in_channels=len(LEADS)).eval()
    rows = bench_backends(
        model, folder / f"rhythm-{fs:g}.onnx",
        lambda runner: classify_windows(runner, signal, window, hop, batch_size=WINDOW_BATCH),
        lambda runner: WindowStream(runner, window, hop, batch_size=WINDOW_BATCH),
        np.ascontiguousarray(sliding_windows(signal, window, hop)), WINDOW_BATCH,
        signal, round(STREAM_CHUNK_S * fs), {}, args,
    )  # fmt: skip
    gflop = count_flops(model, (1, len(LEADS), window)) * rows[0]["windows"] / 1e9
    common = {"mode": "window", "model": "msresnet1d_small", "fs_hz": fs, "window_samples": window,
              "hop_samples": hop, "gflop": round(gflop, 2), "preprocess": preprocess_times}  # fmt: skip
    return [{**common, **row} for row in rows]


def bench_detection(record: Record, repeats: int) -> dict:
    lead = record.signal[[record.leads.index("MLII")]]
    results = {}
    for method in ("xqrs", "gqrs"):
        found, times = timed(lambda method=method: detect_beats(lead, record.fs, method=method), repeats)
        results[method] = {**times, "beats_found": len(found)}
    return results


def print_table(report: dict) -> None:
    print(f"{report['record']}: {report['samples']} samples x {len(LEADS)} leads at {report['fs_hz']:g} Hz, "
          f"{report['beats']} beats; {report['weights']}; {report['threads'] or 'the default number of'} threads; "
          f"medians of {report['repeats']} runs")
    print(f"read {report['read']['median_s']:.3f} s, annotations {report['annotations']['median_s']:.3f} s")
    print(f"{'mode':6} {'fs Hz':>5} {'backend':11} {'windows':>7} {'GFLOP':>6} {'prep s':>7} {'infer s':>8} "
          f"{'model s':>7} {'GFLOP/s':>7} {'total s':>8} {'stream s':>8}")
    for row in report["rows"]:
        infer = row["inference"]["median_s"]
        print(f"{row['mode']:6} {row['fs_hz']:5g} {row['backend']:11} {row['windows']:7d} {row['gflop']:6.1f} "
              f"{row['preprocess']['median_s']:7.3f} {infer:8.3f} {row['model_only']['median_s']:7.3f} "
              f"{row['gflop'] / infer:7.1f} "
              f"{row['pipeline_total_s']:8.3f} {row['stream_1s_chunks']['median_s']:8.3f}")
    for method, result in report.get("detection", {}).items():
        print(f"detection {method}: {result['median_s']:.3f} s, {result['beats_found']} beats found")
    machine = report["machine"]
    print(f"load average before/after: {machine['load_average_before']} / {machine['load_average_after']}")


def build_parser() -> argparse.ArgumentParser:
    """This script's command-line parser (its arguments unchecked beyond their types: ``main`` checks the rest)."""
    parser = script_parser(__doc__)
    add_data_dir(parser, "mitdb/, or mitdb/ itself")
    parser.add_argument("--record", default="100")
    parser.add_argument("--repeats", type=positive_int, default=5, help="timed runs of each stage (median reported)")
    parser.add_argument("--stream-repeats", type=positive_int, default=3, help="timed runs of each stream")
    parser.add_argument("--beat-fs", type=positive_number, nargs="+", default=[360.0, 180.0],
                        help="beat-mode rates in Hz")
    parser.add_argument("--rhythm-fs", type=positive_number, nargs="+", default=[360.0, 100.0],
                        help="window-mode rates in Hz")
    parser.add_argument("--threads", type=thread_count, default=THREADS,
                        help=threads_help(THREADS, THREADS_AS_RECORDED, "torch and onnxruntime threads",
                                          "their defaults"))
    parser.add_argument("--skip-detection", action="store_true", help="do not time the QRS detectors")
    parser.add_argument("--out", type=path_flag, default=RESULTS, help=results_help(RESULTS))
    return parser


def main(argv: list[str] | None = None) -> None:
    started = time.time()
    parser = build_parser()
    args = parser.parse_args(argv)
    output_or_exit(parser, args.out)
    db_dir = database_or_exit(parser, "mitdb", args.data_dir)
    records_or_exit(parser, db_dir, [args.record], "--record")
    path = db_dir / args.record
    if args.threads:
        torch.set_num_threads(args.threads)
    report: dict = {
        "weights": "random initialisation (untrained): timings only",
        "record": f"mitdb/{args.record}",
        "stages": STAGES,
        "repeats": args.repeats,
        "stream_repeats": args.stream_repeats,
        "threads": args.threads,
        "machine": {
            "cpus_usable": usable_cpus(),
            "load_average_before": load_average(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
            "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "unset (libgomp default: threads spin while waiting)"),
        },
    }
    record, report["read"] = timed(lambda: read_record(path, leads=LEADS), args.repeats)
    annotations, report["annotations"] = timed(lambda: read_annotations(path), args.repeats)
    beats = annotations.sample[np.isin(annotations.symbol, list(BEAT_SYMBOLS))]
    report.update(samples=record.signal.shape[1], fs_hz=record.fs, beats=len(beats), rows=[])
    with tempfile.TemporaryDirectory(prefix="bench-inference-") as folder:
        for fs in args.beat_fs:
            report["rows"] += bench_beats(record, beats, fs, Path(folder), args)
        for fs in args.rhythm_fs:
            report["rows"] += bench_windows(record, fs, Path(folder), args)
    for row in report["rows"]:
        stages = ["read", "annotations"] if row["mode"] == "beat" else ["read"]
        total = sum(report[s]["median_s"] for s in stages)
        row["pipeline_total_s"] = round(total + row["preprocess"]["median_s"] + row["inference"]["median_s"], 4)
    if not args.skip_detection:
        report["detection"] = bench_detection(record, args.repeats)
    report["machine"]["load_average_after"] = load_average()
    report["provenance"] = provenance(__file__, argv, started, [path.parent])
    print_table(report)
    write_result(args.out, json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    with as_program():
        main()
