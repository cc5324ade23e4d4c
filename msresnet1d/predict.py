"""``msresnet1d predict``: label WFDB records with a trained checkpoint.

Beat models label every beat (positions from an annotation file, or from wfdb's XQRS detector
with ``--detect``); rhythm models label sliding windows and the whole record. Labels are
written as CSV and as a WFDB annotation file (``wfdb.wrann``), so PhysioNet tools (``rdann``,
``bxb``) read them: beats as AAMI class symbols N, S, V, F, Q; rhythm windows as ``+``
annotations whose aux note is the class, e.g. ``(A``. ``--adapt-bn`` re-estimates the model's
BatchNorm statistics on the record's own inputs first (AdaBN, labels unread), for recordings from
another device or gain than the training data. The command's flags are defined in
:mod:`msresnet1d.cli`, so that parsing them imports none of this module's libraries.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import io
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import wfdb
from tqdm.auto import tqdm

from .data import DataError, LeadError, Record, read_annotations, read_record
from .data.aami import BEAT_SYMBOLS, MITBIH_TO_AAMI
from .data.beats import beat_windows, positions_at, record_template
from .data.preprocess import Normalization, fill_nan, shown_leads
from .data.records import preprocess_record, record_label, warn_invalid
from .data.hrv import HRV_FEATURES
from .data.rhythm import RhythmArrays
from .data.rr import check_increasing, rr_columns, rr_features, warn_close_beats
from .inference import NonFiniteOutputError, Predictions, TorchPredictor, classify_beats, classify_windows, detect_beats
from .atomic import FolderNotWritableError, atomic_paths, check_target, write_text
from .arguments import LEADS_TAKE_ALL
from .models.adapt import adapt_batchnorm, shuffled_chunks
from .models.fuse import fuse_batchnorm
from .models.tta import with_tta
from .training.checkpoint import load_checkpoint
from .training.config import TrainConfig
from .training.configured import checkpoint_config
from .training.run import checkpoint_model
from .training.tasks import WindowHRV, beat_config, rhythm_config, trained_length

__all__ = ["Labelled", "beat_positions", "label_windows", "predict_beats", "predict_windows", "record_stem"]


class _InputRecorder:
    """A :class:`~msresnet1d.inference.Predictor` shaped like ``model`` that keeps the batches it
    is given (answering zeros): the inputs the model would see on a record."""

    def __init__(self, model: torch.nn.Module) -> None:
        like = TorchPredictor(model)
        self.in_channels, self.extra_features = like.in_channels, like.extra_features
        self.min_input_size, self.num_outputs = like.min_input_size, like.num_outputs
        self.batches: list[list[torch.Tensor]] = []

    def predict(self, x: np.ndarray, extra: np.ndarray | None = None) -> np.ndarray:
        self.batches.append([torch.from_numpy(x.copy())] + ([] if extra is None else [torch.from_numpy(extra.copy())]))
        return np.zeros((len(x), self.num_outputs), dtype=np.float32)


class _Models:
    """The models ``ckpt`` labels records with, each built on first use: the trained one, and it
    with its BatchNorms folded and the config's test-time augmentation."""

    def __init__(self, ckpt: dict, cfg: TrainConfig, source: str = "the checkpoint") -> None:
        self.ckpt, self.cfg, self.source = ckpt, cfg, source

    @functools.cached_property
    def trained(self) -> torch.nn.Module:
        return checkpoint_model(self.ckpt, self.source, self.cfg)

    @functools.cached_property
    def folded(self) -> torch.nn.Module:
        return with_tta(fuse_batchnorm(self.trained), self.cfg.tta)


#: The models of checkpoints that :func:`_reusing` keeps for a loop over records, by ``id``.
_KEPT: dict[int, _Models] = {}


@contextlib.contextmanager
def _reusing(ckpt: dict, cfg: TrainConfig, source: str = "the checkpoint") -> Iterator[None]:
    """Within the block, every record labelled with ``ckpt`` (this very dict, unchanged) reuses
    one build of its models: building and folding them costs several times the inference on a
    short record (on 100 CinC records: 26 s of 40), as its config (``cfg``, from
    :func:`~msresnet1d.training.configured.checkpoint_config`) is read once. Outside it, each call
    builds its own. ``source`` names the checkpoint in errors."""
    added = id(ckpt) not in _KEPT  # a block inside another reuses the outer one's build (whose ckpt holds the id)
    if added:
        _KEPT[id(ckpt)] = _Models(ckpt, cfg, source)
    try:
        yield
    finally:
        if added:
            del _KEPT[id(ckpt)]


def _kept(ckpt: dict) -> _Models | None:
    """The models :func:`_reusing` keeps for ``ckpt`` (this very dict), or None outside its block."""
    kept = _KEPT.get(id(ckpt))
    return kept if kept is not None and kept.ckpt is ckpt else None


def _classify(ckpt: dict, cfg: TrainConfig, adapt_bn: bool, record: str,
              run: Callable[[object], Predictions]) -> Predictions:
    """``run(model)`` with the checkpoint's model (BatchNorms folded, the config's TTA); with
    ``adapt_bn``, its BatchNorm statistics first re-estimated on the inputs ``run`` gives it, as
    ``evaluate --adapt-bn`` does on each test record (the same shuffled chunks of
    ``eval_batch_size``).

    Raises:
        NonFiniteOutputError: naming the checkpoint and ``record`` (the record's name), when the
            model's outputs are not finite (as ``evaluate`` refuses them).
    """
    models = _kept(ckpt) or _Models(ckpt, cfg)
    try:
        if not adapt_bn:
            return run(models.folded)
        recorder = _InputRecorder(models.trained)
        run(recorder)
        inputs = [torch.cat(column) for column in zip(*recorder.batches)]  # adapt_batchnorm adapts a copy
        return run(adapt_batchnorm(with_tta(models.trained, cfg.tta), shuffled_chunks(inputs, cfg.eval_batch_size)))
    except NonFiniteOutputError as e:
        raise NonFiniteOutputError(f"{models.source}, record {record}: {e}") from None


def beat_positions(record_path: str | os.PathLike[str], signal: np.ndarray, fs: float,
                   annotator: str | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Beat positions in samples and their annotation symbols: the annotated beats of
    ``annotator``, or XQRS detections on the first lead (symbols None) when ``annotator`` is None."""
    record_path = Path(record_path)
    if annotator is not None:
        try:
            ann = read_annotations(record_path, annotator, signal.shape[-1])
        except DataError as e:  # the annotation file missing (not the record): say how else to find the beats
            if (record_path.parent / f"{record_path.name}.{annotator}").is_file() or \
                    not (record_path.parent / f"{record_path.name}.hea").is_file():
                raise
            raise DataError(f"{e}: name the annotation file that holds its beats (--annotator) or find them with "
                            "--detect") from None
        is_beat = np.isin(ann.symbol, list(BEAT_SYMBOLS))
        return ann.sample[is_beat], ann.symbol[is_beat]
    try:  # WFDB's invalid samples (NaN) interpolated, as preprocessing does: xqrs takes finite values only
        return detect_beats(fill_nan(signal[:1]), fs, method="xqrs", channel=0), None
    except ValueError as e:  # detect_beats' own checks, e.g. a rate too low for its 5-20 Hz filter
        raise ValueError(f"record '{record_label(record_path)}': {e}") from None


class Labelled(NamedTuple):
    """What :func:`predict_beats` or :func:`predict_windows` gives for a record."""

    positions: np.ndarray  # (n,) beats or window starts, in samples at the record's rate
    probabilities: np.ndarray  # (n, K) class probabilities
    fs: float  # the record's sampling rate in Hz
    leads: tuple[str, ...]  # the record's leads the model read, in the model's order


#: Files of a WFDB record: a record path given with one of these extensions means the record.
RECORD_FILE_EXTENSIONS = (".hea", ".dat", ".mat", ".atr")


def record_stem(path: str | os.PathLike[str]) -> Path:
    """A record path without extension (``data/mitdb/100.hea`` -> ``data/mitdb/100``); a
    ValueError for a folder, naming a few of its records."""
    path = Path(path)
    if path.is_dir() and (not path.name or not path.with_name(f"{path.name}.hea").is_file()):  # not a record beside it
        held = sorted(header.stem for header in path.glob("*.hea"))
        raise ValueError(f"record {path} is a folder; give records in it, by their names without extension or "
                         "as header files"
                         + (f" (e.g. {path / held[0]}, or {path / '*.hea'} for all {len(held)}: {', '.join(held[:5])}"
                            + (", ..." if len(held) > 5 else "") + ")" if held else " (it holds no .hea file)"))
    return path.with_suffix("") if path.suffix in RECORD_FILE_EXTENSIONS else path


def _checkpoint_data(ckpt: dict, task: str, function: str) -> tuple[TrainConfig, dict]:
    """The config and resolved ``[data]`` of a checkpoint of ``task``, or a clear error naming ``function``."""
    if not isinstance(ckpt, dict) or "config" not in ckpt:
        raise TypeError(f"{function} takes a checkpoint as load_checkpoint(path) returns it, got "
                        f"{type(ckpt).__name__}" + (f" {ckpt!r}" if isinstance(ckpt, (str, os.PathLike)) else ""))
    other = {"beats": "predict_beats", "rhythm": "predict_windows or label_windows"}
    if ckpt["config"].get("task") != task:
        found = ckpt["config"].get("task")
        raise ValueError(f"{function} labels with a {task} model; this checkpoint is a {found!r} model"
                         + (f" (use {other[found]})" if found in other else ""))
    kept = _kept(ckpt)  # in a loop over records (_reusing): its config, read once
    cfg = kept.cfg if kept is not None else checkpoint_config(ckpt)
    return cfg, cfg.data


def _preprocessed(record: Record, fs: float, band: tuple[float | None, float | None] | None,
                  normalization: Normalization | None) -> np.ndarray:
    """:func:`preprocess_record`, a lead without a valid sample named with the way out."""
    try:
        return preprocess_record(record, fs, band, normalization)
    except LeadError as e:
        raise LeadError(f"{e}; read another with --leads") from None


def _lead_names(leads: Sequence[str] | None) -> Sequence[str] | None:
    if isinstance(leads, str):
        raise TypeError(f"leads is a list of lead names, e.g. [{leads!r}], got the string {leads!r}")
    return leads


def predict_beats(ckpt: dict, record_path: str | os.PathLike[str], annotator: str | None, adapt_bn: bool = False,
                  leads: Sequence[str] | None = None) -> Labelled:
    """Class probabilities of every beat of a record. The RR
    features and the template are computed as for the training data (``load_beats``): RR
    intervals at the record's own rate, the template over the beats that have an AAMI class.
    ``leads``: the record's names of the leads the model reads (``data.leads`` of the checkpoint,
    in that order), for a recording that names them otherwise (``II`` for ``MLII``, say).
    ``record_path``: the record without extension, or one of its files (``100.hea``).
    ``annotator``: the annotation file whose beat annotations place the beats (``"atr"``), or None
    to detect them in the signal (XQRS on the first lead, :func:`beat_positions`). ``adapt_bn``:
    the model's BatchNorm statistics re-estimated on this record's beats before they are
    predicted (:mod:`msresnet1d.models.adapt`; ``predict --adapt-bn``)."""
    cfg, data = _checkpoint_data(ckpt, "beats", "predict_beats")
    record_path, leads = record_stem(record_path), _lead_names(leads)
    if data.get("representation", "signal") != "signal":
        raise ValueError(f"the checkpoint's model reads data.representation = {data['representation']!r}; predict "
                         "runs models of the signal itself (representation 'signal') only")
    beat_cfg = beat_config(data)
    if leads is not None and len(leads) != len(beat_cfg.leads):
        raise ValueError(f"leads (--leads) names {len(leads)} lead(s) ({shown_leads(leads)}); the model reads "
                         f"{len(beat_cfg.leads)}: {', '.join(beat_cfg.leads)}, in that order")
    try:
        record = read_record(record_path, leads=beat_cfg.leads if leads is None else leads)
    except LeadError as e:
        if leads is None:
            raise LeadError(f"{e}; name the record's leads that stand for {', '.join(beat_cfg.leads)} with --leads") from None
        raise
    signal = _preprocessed(record, beat_cfg.fs, beat_cfg.band, beat_cfg.normalization)
    positions, symbols = beat_positions(record_path, record.signal, record.fs, annotator)
    columns = rr_columns(data["rr"])
    needs_rr = bool(columns) or (beat_cfg.template and beat_cfg.template_from == "regular")  # an RR interval
    if len(positions) < 1 + needs_rr:
        notes = (["the model reads RR intervals"] if needs_rr else []) + (
            [f"in its {annotator} annotations: --detect finds beats in the signal"] if annotator else [])
        raise ValueError(f"record '{record.name}': found {len(positions)} beat(s), need at least {1 + needs_rr}"
                         + (f" ({'; '.join(notes)})" if notes else ""))
    where = f"record '{record.name}'" + (f": file {record_path.name}.{annotator}" if annotator else "")
    try:
        check_increasing(positions)
    except ValueError as e:  # two beats at one sample (of two annotation channels, say)
        raise DataError(f"{where}: {e}") from None
    warn_close_beats(positions, record.fs, where)
    first, last = beat_cfg.offsets_at(record.fs)
    warn_invalid(record, "the {} beats in them are labelled from that, not from the recording", positions + first,
                 positions + last)
    centres = positions_at(positions, record.fs, beat_cfg.fs, signal.shape[1])
    collided = np.flatnonzero(np.diff(centres) <= 0)  # beats a sample or so apart, at a higher rate
    if collided.size:
        i = int(collided[0])
        raise DataError(f"{where}: the beats at samples {positions[i]} and {positions[i + 1]} ({record.fs:g} Hz) "
                        f"fall on one sample at the model's {beat_cfg.fs:g} Hz")
    state = ckpt.get("task_state") or {}
    rr_transform = None
    if columns:
        mean, std = state["rr_mean"].numpy(), state["rr_std"].numpy()
        rr_transform = lambda rr: ((rr[:, columns] - mean) / std).astype(np.float32)  # noqa: E731 - training statistics
    rr = rr_features(positions, record.fs) if needs_rr else None
    template = False
    if beat_cfg.template:
        classed = np.ones(len(positions), dtype=bool) if symbols is None else np.isin(symbols, list(MITBIH_TO_AAMI))
        template = record_template(beat_windows(signal, centres[classed], *beat_cfg.offsets),
                                   None if rr is None else rr[classed], beat_cfg.template_from)
    out = _classify(ckpt, cfg, adapt_bn, record.name,
                    lambda model: classify_beats(model, signal, centres, beat_cfg.offsets, fs=beat_cfg.fs,
                                                 rr_transform=rr_transform, template=template,
                                                 rr=rr if columns else None))
    return Labelled(positions, torch.softmax(torch.from_numpy(out.logits), dim=1).numpy(), record.fs, record.leads)


def predict_windows(ckpt: dict, record_path: str | os.PathLike[str], adapt_bn: bool = False,
                    leads: Sequence[str] | None = None) -> Labelled:
    """Class probabilities of a record's sliding windows (positions: their starts).
    ``leads``: the one lead to read from a record with several (default: the run's ``data.lead``,
    else the record's only one). ``adapt_bn``: the model's BatchNorm statistics re-estimated on
    this record's windows first (:mod:`msresnet1d.models.adapt`). A record shorter than one window
    is zero-padded, with a warning."""
    _, data = _checkpoint_data(ckpt, "rhythm", "predict_windows")
    record_path, leads = record_stem(record_path), _lead_names(leads)
    rhythm_cfg = rhythm_config(data)
    if leads is not None and len(leads) != 1:
        raise ValueError(f"leads (--leads) names {len(leads)} leads ({shown_leads(leads)}); the rhythm model reads one")
    if leads is None and rhythm_cfg.lead is not None:
        leads = [rhythm_cfg.lead]
    record = read_record(record_path, leads=leads)
    if record.signal.shape[0] != 1:
        raise ValueError(f"record {record.name}: the rhythm model reads one lead, the record has "
                         f"{record.signal.shape[0]} ({shown_leads(record.leads)}): choose one with --leads")
    starts, probabilities = label_windows(ckpt, record, adapt_bn)
    return Labelled(starts, probabilities, record.fs, record.leads)


def label_windows(ckpt: dict, record: Record, adapt_bn: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A rhythm checkpoint on one recording, as ``predict`` labels a record: the first samples (W,)
    of its sliding windows at ``record.fs`` and their class probabilities (W, K), classes
    ``ckpt["class_names"]``. ``record`` holds one lead's raw (1, T) signal in physical units (mV)
    at ``record.fs`` Hz; for a numpy signal, ``Record("name", signal, fs, ("lead",), ("mV",))``.
    It is preprocessed as in training (band-pass, the run's rate, z-score), each window gets the
    RR statistics of its R peaks standardised with the checkpoint's (models with ``data.rr``), and
    the config's test-time augmentation applies. The record's label is the mean of the window
    probabilities (as evaluation aggregates them). ``adapt_bn``: the model's BatchNorm statistics
    re-estimated on this recording's windows first. A recording shorter than one window is
    zero-padded, with a warning; NaN samples (WFDB's invalid value) are interpolated, with a
    warning counting the windows that reach into them."""
    cfg, data = _checkpoint_data(ckpt, "rhythm", "label_windows")
    rhythm_cfg = rhythm_config(data)
    if record.signal.ndim != 2 or record.signal.shape[0] != 1:
        raise ValueError(f"record {record.name}: the rhythm model reads one lead, (1, T), got shape "
                         f"{record.signal.shape}")
    signal = _preprocessed(record, rhythm_cfg.fs, rhythm_cfg.band, rhythm_cfg.normalization)
    length, hop = trained_length(cfg), round(data["hop_seconds"] * rhythm_cfg.fs)
    # a record shorter than one window: the window classifier warns, and labels it from one zero-padded window
    columns = rr_columns(data["rr"], HRV_FEATURES, HRV_FEATURES)
    extra = None
    if columns:  # the windows' RR statistics, standardised as in training, from the whole record's R peaks
        arrays = RhythmArrays(signal, np.array([0, signal.shape[1]]), np.zeros(1, dtype=np.int64),
                              np.array([record.name]), rhythm_cfg)
        hrv = WindowHRV(arrays, columns, ckpt["task_state"]["rr_mean"].numpy(), ckpt["task_state"]["rr_std"].numpy())
        extra = lambda starts: hrv(0, starts, length)  # noqa: E731
    out = _classify(ckpt, cfg, adapt_bn, record.name,
                    lambda model: classify_windows(model, signal, length, hop, extra=extra,
                                                   batch_size=cfg.eval_batch_size))
    starts = np.round(out.sample * record.fs / rhythm_cfg.fs).astype(np.int64)
    warn_invalid(record, "the {} windows in them are labelled from that, not from the recording", starts,
                 starts + round(data["crop_seconds"] * record.fs))
    return starts, torch.softmax(torch.from_numpy(out.logits), dim=1).numpy()


def output_paths(record_name: str, out_dir: Path, extension: str) -> tuple[Path, Path]:
    """The annotation file ``<out_dir>/<record>.<extension>`` and its CSV (the same name + ``.csv``)."""
    ann_path = out_dir / f"{record_name}.{extension}"
    return ann_path, ann_path.with_name(ann_path.name + ".csv")


def write_outputs(record_name: str, positions: np.ndarray, probabilities: np.ndarray, class_names: list[str],
                  fs: float, out_dir: Path, extension: str, rhythm: bool) -> tuple[Path, Path]:
    """A WFDB annotation file ``<record>.<extension>`` and its CSV (one row a beat or window); both
    are written and flushed to disk before either replaces a file of that name (``wrann`` or a
    full disk failing replaces neither: :func:`~msresnet1d.atomic.atomic_paths`), the two renames
    back to back; returns their paths in :func:`output_paths`' order."""
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = [class_names[i] for i in probabilities.argmax(axis=1)]
    symbols = ["+"] * len(labels) if rhythm else labels
    aux = [f"({label}" for label in labels] if rhythm else None
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["sample", "time_s", "label", *[f"p_{c}" for c in class_names]])
    for pos, label, p in zip(positions, labels, probabilities):
        writer.writerow([int(pos), f"{pos / fs:.3f}", label, *[f"{v:.4f}" for v in p]])
    ann_path, csv_path = output_paths(record_name, out_dir, extension)
    # wrann names its file itself: write it in a temporary folder beside, then move it to its temporary name
    with atomic_paths(ann_path, csv_path) as (tmp, csv_tmp), \
            tempfile.TemporaryDirectory(dir=out_dir, prefix=f".{ann_path.name}.") as folder:
        wfdb.wrann(record_name, extension, np.asarray(positions, dtype=np.int64), symbol=symbols, aux_note=aux,
                   fs=fs, write_dir=folder)
        os.replace(Path(folder) / ann_path.name, tmp)
        csv_tmp.write_text(buffer.getvalue(), encoding="utf-8", newline="")
    return ann_path, csv_path


def cmd_predict(args: argparse.Namespace) -> int:
    """Label each record given; with several, a record that fails is named and the others are
    still labelled (exit status 1 if any failed). Every output is checked before the first record."""
    if args.threads:
        torch.set_num_threads(args.threads)
    ckpt = load_checkpoint(args.checkpoint)
    cfg = checkpoint_config(ckpt, f"checkpoint {args.checkpoint}")  # its errors name the file
    task = cfg.task
    if task not in ("beats", "rhythm"):
        raise ValueError(f"checkpoint {args.checkpoint} is a {task!r} model; predict labels ECG records "
                         "(beats or rhythm)")
    if task == "rhythm" and (args.detect or args.annotator is not None):
        raise ValueError(f"--detect and --annotator give beat positions, for beat models; {args.checkpoint} is a "
                         "rhythm model, which labels windows of the signal")
    _check_no_record_in_leads(args, cfg)
    if args.summary:
        check_target(args.summary, "--summary")
    # the beats are read where the model's were: the checkpoint's [data] annotator ("atr" for one trained without it)
    annotator = None if task != "beats" or args.detect else args.annotator or cfg.data["annotator"]
    jobs = [_checked_job(record_stem(record), args, annotator) for record in args.record]
    written: dict[Path, Path] = {}
    for record_path, out_dir in jobs:
        target = output_paths(record_path.name, out_dir, args.extension)[0].resolve()
        if target in written:
            raise ValueError(f"records {written[target]} and {record_path} would both write {target}: give each "
                             "record once, or label records of one name from different folders in separate calls")
        written[target] = record_path
    if args.summary:
        _check_summary_spares(Path(args.summary), jobs, args, annotator)
    failed, rows = [], []
    progress = tqdm(jobs, desc="records", unit="record", disable=True if len(jobs) == 1 else None, leave=False)
    with _reusing(ckpt, cfg, f"checkpoint {args.checkpoint}"):  # one build of the model for all the records
        for record_path, out_dir in progress:
            try:
                lines, row = _predict_record(ckpt, task, record_path, out_dir, annotator, args)
            except Exception as e:  # noqa: BLE001 - with several records, one record's failure: named, then the next
                if len(jobs) == 1:
                    raise
                failed.append(record_path.name)
                tqdm.write(f"error: {record_path}: {e}", file=sys.stderr)
                continue
            rows.append(row)
            for line in lines:
                tqdm.write(line)
    if args.summary:  # also with no row (every record failed): no earlier summary is left to be taken for this one's
        write_summary(args.summary, rows, ckpt["class_names"], task)
        tqdm.write(f"wrote {args.summary} ({len(rows)} record{'' if len(rows) == 1 else 's'})")
    if failed:
        others = "; the others were" if len(failed) < len(jobs) else ""
        print(f"error: {len(failed)} of {len(jobs)} records not labelled ({', '.join(failed)}){others}", file=sys.stderr)
        return 1
    return 0


def _check_summary_spares(summary: Path, jobs: list[tuple[Path, Path]], args: argparse.Namespace,
                          annotator: str | None) -> None:
    """``--summary`` is none of the outputs (``--summary labels/100.pred.csv``), none of the files
    the records are read from (``--summary 100.atr``) and not the checkpoint."""
    def same(path: Path) -> bool:
        return summary.resolve() == path.resolve() or (summary.exists() and path.exists()
                                                        and os.path.samefile(summary, path))

    if same(Path(args.checkpoint)):
        raise ValueError(f"--summary {summary} is the checkpoint: name another file")
    for record_path, out_dir in jobs:
        read = [record_path.parent / f"{record_path.name}.hea",
                *(path for path, _ in _read_files(record_path, annotator))]
        written = list(output_paths(record_path.name, out_dir, args.extension))
        for paths, what in ((written, "one of the outputs"), (read, "a file")):
            if any(same(path) for path in paths):
                raise ValueError(f"--summary {summary} would overwrite {what} of record {record_path}: name another "
                                 "file")


def _check_no_record_in_leads(args: argparse.Namespace, cfg: TrainConfig) -> None:
    """No record taken as a lead name, as in ``predict best.pt 100 --leads MLII 101``."""
    expected = 1 if cfg.task == "rhythm" else len(beat_config(cfg.data).leads)
    taken = [name for name in (args.leads or [])[expected:]
             if name and (Path(name).is_file() or Path(f"{name}.hea").is_file())]
    if taken:
        raise ValueError(f"--leads took {', '.join(taken)} as lead names, where the model reads {expected} lead(s); "
                         + LEADS_TAKE_ALL)


def _checked_job(record_path: Path, args: argparse.Namespace, annotator: str | None) -> tuple[Path, Path]:
    """``(record, output folder)``, its outputs checked: writable, and none of the record's own files."""
    out_dir = Path(args.out_dir) if args.out_dir else record_path.parent
    target, target_csv = output_paths(record_path.name, out_dir, args.extension)
    for kept, what in _read_files(record_path, annotator):  # first: the advice that fits, even in a read-only folder
        # os.path.exists, not Path.exists: a name over the file system's limit is False here (Path's raises
        # Errno 36), and check_target below refuses it in one line
        if os.path.exists(target) and kept.exists() and os.path.samefile(target, kept):  # links too
            raise ValueError(f"--extension {args.extension} would overwrite {kept}, {what}: choose another "
                             "--extension or --out-dir")
    for output in (target, target_csv):  # both checked before the work and the writes
        try:
            check_target(output, "output")
        except FolderNotWritableError as e:
            if args.out_dir:
                raise
            raise ValueError(f"{e} (the record's folder: write elsewhere with --out-dir)") from None
    return record_path, out_dir


def write_summary(path: str | os.PathLike[str], rows: list[tuple[Path, np.ndarray]], class_names: list[str],
                  task: str) -> None:
    """``predict --summary``: one CSV row a record labelled, ``record,path,`` then, for a rhythm
    model, ``windows,label,p_<class>...`` (the record's label and the mean of its windows'
    probabilities, unrounded: the label is their argmax, the CinC 2017 answer), for a beat
    model ``beats,<class>...`` (how many beats were labelled as each class). ``rows`` holds
    each record's path and its (B, K) probabilities."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    if task == "rhythm":
        writer.writerow(["record", "path", "windows", "label", *[f"p_{c}" for c in class_names]])
        for record_path, probabilities in rows:
            mean = probabilities.mean(axis=0)
            writer.writerow([record_path.name, record_path, len(probabilities), class_names[int(mean.argmax())],
                             *[repr(float(v)) for v in mean]])
    else:
        writer.writerow(["record", "path", "beats", *class_names])
        for record_path, probabilities in rows:
            counts = np.bincount(probabilities.argmax(axis=1), minlength=len(class_names))
            writer.writerow([record_path.name, record_path, len(probabilities), *counts.tolist()])
    write_text(path, buffer.getvalue())


def _predict_record(ckpt: dict, task: str, record_path: Path, out_dir: Path, annotator: str | None,
                    args: argparse.Namespace) -> tuple[list[str], tuple[Path, np.ndarray]]:
    """Label one record and write its two files; returns the lines that say what was done, and
    the record's path and (B, K) probabilities for :func:`write_summary`."""
    if task == "beats":
        positions, probabilities, fs, leads = predict_beats(ckpt, record_path, annotator, args.adapt_bn, args.leads)
    else:
        positions, probabilities, fs, leads = predict_windows(ckpt, record_path, args.adapt_bn, args.leads)
    ann_path, csv_path = write_outputs(record_path.name, positions, probabilities, ckpt["class_names"], fs, out_dir,
                                       args.extension, rhythm=task == "rhythm")
    labels, counts = np.unique(probabilities.argmax(axis=1), return_counts=True)
    summary = ", ".join(f"{ckpt['class_names'][i]} {n}" for i, n in zip(labels, counts))
    kind = ("window" if task == "rhythm" else "beat") + ("" if len(positions) == 1 else "s")
    lines = [f"{record_path.name}: {len(positions)} {kind} labelled from {shown_leads(leads)} ({summary})"]
    if task == "rhythm":
        lines.append(f"record label: {ckpt['class_names'][int(probabilities.mean(axis=0).argmax())]} "
                     "(mean window probability)")
    return lines + [f"wrote {csv_path} and {ann_path}"], (record_path, probabilities)


def _read_files(record_path: Path, annotator: str | None) -> list[tuple[Path, str]]:
    """The record's files besides its header that predict must not overwrite, each with what it
    is: the annotations the beats are read from, the reference annotations, the signal files."""
    return [(record_path.parent / f"{record_path.name}.{extension}", what) for extension, what in (
        (annotator, "the annotations predict reads the beats from"), ("atr", "the record's reference annotations"))
        if extension] + [(record_path.parent / name, "one of the record's signal files") for name in
                         _signal_files(record_path)]


def _signal_files(record_path: Path) -> list[str]:
    """The signal file names the record's header lists (none if it cannot be read: reading the
    record will then say why)."""
    try:
        return [name for name in wfdb.rdheader(str(record_path)).file_name or [] if name]
    except Exception:  # noqa: BLE001 - wfdb raises several kinds for a bad or missing header
        return []
