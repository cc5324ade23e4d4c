"""One training run end to end: config -> task -> model -> Trainer -> test -> run folder."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import logging
import math
import os
import random
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..models import ResidualNetwork
from ..models.blocks import init_weights
from ..models.tta import with_tta
from . import distributed, plots
from .config import TrainConfig
from .checkpoint import code_version, load_checkpoint, load_weights
from .configured import checkpoint_config, create_configured_model, resolve_model
from ..atomic import file_version
from .engine import (Trainer, check_run_dir, check_same_config, check_same_world_size, deterministic_cuda,
                     seed_torch, torch_threads)
from .optim import warn_double_balancing
from .tasks import Task, build_task, check_data, model_inputs, resolve_data

log = logging.getLogger(__name__)


def seed_everything(seed: int, device: torch.device = torch.device("cpu")) -> None:
    """Seed Python's, numpy's and torch's generators (a GPU's: :func:`~.engine.seed_torch`)."""
    random.seed(seed)
    np.random.seed(seed)
    seed_torch(seed, device)


@contextlib.contextmanager
def callers_state_kept(device: torch.device) -> Iterator[None]:
    """Within the block, seed and set torch's threads at will: Python's, numpy's and torch's
    global random states (also ``device``'s, a GPU) and the thread count are the caller's again
    after it, as a library call should leave them. On a GPU, the block runs deterministic and
    without TF32 (:func:`~.engine.deterministic_cuda`), and the caller's cuDNN flags come back too."""
    python, numpy = random.getstate(), np.random.get_state()
    try:
        with (torch_threads(None), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []),
              deterministic_cuda(device)):
            yield
    finally:
        random.setstate(python)
        np.random.set_state(numpy)


def load_trained_model(checkpoint: str | os.PathLike[str]) -> ResidualNetwork:
    """The trained model of a checkpoint written by ``msresnet1d train`` (``best.pt`` or ``last.pt``),
    shaped from its config, with the weights it is evaluated with (the moving average when the run kept
    one), in eval mode: a plain module (:class:`~msresnet1d.models.ResidualNetwork`) to run or export
    (:mod:`msresnet1d.export`). Its inputs must be prepared as in training: for beat models, (N, C, L)
    windows (C = 2 x leads with the template channel) and the (N, E) RR features standardised with the
    checkpoint's ``task_state`` ``rr_mean`` and ``rr_std``; for rhythm models with RR statistics, those
    of each window likewise; for Fashion-MNIST models, (N, 1, S, S) float32 images
    ``(uint8 / 255 - pixel_mean) / pixel_std`` with ``task_state`` ``pixel_mean`` and ``pixel_std``
    (0 and 1 for ``normalize = "unit"``), resized as ``data.resize`` says. The config's test-time
    augmentation is not part of the model: for a ``tta = "flip"`` run, wrap it with
    ``msresnet1d.models.tta.with_tta(model, cfg.tta)`` to get what evaluate and predict give.

    Raises:
        FileNotFoundError, ValueError: no checkpoint, one that is not this package's, or
            weights that do not fit the model its config builds.
    """
    return checkpoint_model(load_checkpoint(checkpoint), f"checkpoint {checkpoint}")


def checkpoint_model(ckpt: dict[str, Any], source: str = "the checkpoint",
                     cfg: TrainConfig | None = None) -> ResidualNetwork:
    """:func:`load_trained_model` of a checkpoint already read (``source`` names it in errors;
    ``cfg``: its :func:`~.configured.checkpoint_config`, when the caller has it, else read here).
    The config's model is first built without memory (on the meta device) and checked against
    the weights, so that a config that does not fit them (an edited or made-up file: widths of
    300,000 asked for a terabyte) is refused before any allocation."""
    cfg = checkpoint_config(ckpt, source) if cfg is None else cfg
    check_weights_fit(ckpt, cfg, source)
    in_channels, extra = model_inputs(cfg)
    with torch.random.fork_rng(devices=[]):  # initial weights, replaced at once: none of the caller's random numbers
        model = create_configured_model(cfg, in_channels, len(ckpt["class_names"]), extra)
    return load_weights(model, ckpt, source).eval()


def check_weights_fit(ckpt: dict[str, Any], cfg: TrainConfig, source: str = "the checkpoint") -> None:
    """Raise ValueError (:func:`~.checkpoint.load_weights`'s, naming ``source``) unless the weights
    of ``ckpt`` fit the model ``cfg`` builds, checked on a model built on the meta device: no
    memory is taken, however large the config's model."""
    in_channels, extra = model_inputs(cfg)
    with torch.device("meta"):
        load_weights(create_configured_model(cfg, in_channels, len(ckpt["class_names"]), extra), ckpt, source,
                     assign=True)


def build_model(cfg: TrainConfig, task: Task) -> ResidualNetwork:
    """The config's model, shaped and checked for the task, freshly initialised."""
    model = create_configured_model(cfg, task.in_channels, len(task.class_names), task.extra_features)
    if model.dims != task.dims:
        layout = "(N, C, L) signals" if task.dims == 1 else "(N, C, H, W) images"
        raise ValueError(f"model {cfg.model!r} is {model.dims}-D but task {cfg.task!r} gives {layout}; "
                         f"pick a {task.dims}-D model (msresnet1d info lists them)")
    if model.min_input_size > task.input_size:
        unit = "samples" if task.dims == 1 else "pixels per axis"
        sets = {"beats": "data.fs x the length of data.window", "rhythm": "data.fs x data.crop_seconds",
                "fashion_mnist": "data.resize, or 28"}[cfg.task]
        raise ValueError(f"model {cfg.model!r} needs inputs of at least {model.min_input_size} {unit}, "
                         f"the task gives {task.input_size} ({sets}): raise it, or pick a smaller model")
    if cfg.init == "xavier":
        init_weights(model, scheme="xavier")
    return model


def warn_absent_classes(task: Task) -> None:
    """Warn when a scored class has no training example (a config's ``train_records`` without
    any of its beats, say): the model cannot learn it, so its test Se and F1 are 0 and the macro
    figures carry that 0."""
    counts = np.bincount(task.train_labels, minlength=len(task.class_names))
    absent = [name for name in task.scored if counts[task.class_names.index(name)] == 0]
    if absent:
        records = task.splits.get("train_records")  # the beat task's names (the rhythm task's count)
        where = f"the training records {', '.join(records)}" if isinstance(records, list) and records else \
            "the training split"
        warnings.warn(f"class{'es' if len(absent) > 1 else ''} {', '.join(absent)}: no example in {where} "
                      f"({len(task.train_labels)} examples): the model cannot learn "
                      f"{'them' if len(absent) > 1 else 'it'}, so {'their' if len(absent) > 1 else 'its'} test "
                      "Se and F1 will be 0 and the macro figures count that 0", stacklevel=2)


def drop_a_last_batch_of_one(model: nn.Module, task: Task) -> None:
    """BatchNorm cannot train on a single value per channel: when the model's last stage sees one
    position of each input (28x28 images in ResNet-18) and the last training batch of an epoch
    would hold one example, that batch is left out (one example an epoch, a different one each
    epoch); batches of one, or fewer than two examples a process, are refused. Other models,
    beat windows among them, keep every batch.

    Raises:
        ValueError: ``batch_size`` 1, or fewer than 2 training examples per process, for such a model.
    """
    if math.ceil(task.input_size / model.total_stride) ** task.dims > 1:
        return
    loader = task.train
    per_rank = loader.x.shape[0] // loader.world_size
    if loader.batch_size < 2 or per_rank < 2:
        unit = "samples" if task.dims == 1 else "pixels"
        raise ValueError(f"batch_size={loader.batch_size} with {per_rank} training example(s) per process: BatchNorm "
                         "needs 2 or more values per channel in training, and this model's last stage sees one position "
                         f"of a {task.input_size}-{unit} input: use batch_size >= 2 and at least 2 training examples "
                         "per process")
    if per_rank % loader.batch_size == 1:
        loader.drop_last = True


def check_config(cfg: TrainConfig) -> TrainConfig:
    """Check what can be checked of ``cfg`` without its data, as :func:`train` does first: the
    ``[data]`` options (``check_data``), then ``[model_kwargs]`` by building the model (on the meta
    device: no memory) on the inputs and classes the task will give, and its size against the
    memory this process may use (:func:`~.configured.check_training_memory`). For scripts that build many
    configs: every one is checked before the first run trains. Returns ``cfg`` with every data and
    model option written out, defaults included, as the run folder records it.

    Raises:
        ValueError: naming the bad key, its value and what it must be.
    """
    check_data(cfg)
    return resolve_model(resolve_data(cfg), check_memory=True)


def train(cfg: TrainConfig, run_dir: str | Path, resume: bool = False, quiet: bool = False,
          flag: str = "--out") -> dict:
    """Train, select on validation, test once; returns the metrics dict (also in metrics.json).
    With ``resume``, continue the interrupted run in ``run_dir``; a finished one (its
    ``metrics.json`` there) is left as it is, and its metrics returned. ``quiet``: no progress
    bars or per-epoch lines (the test table and the run folder are still printed). The seeds
    and ``cfg.threads`` are the run's: the caller's random states and thread count are restored
    when it returns, and a process group the caller made is left to it. ``flag``: the command's
    flag naming ``run_dir``, which the refusals of a used or busy folder advise choosing another of."""
    dist = distributed.setup(cfg.device)
    with callers_state_kept(dist.device):  # the seeds and threads below are the run's alone
        trainer = None
        try:
            if cfg.threads:
                torch.set_num_threads(cfg.threads)  # until train returns
            cfg = check_config(cfg)  # before the data load; every option written out, for the run folder
            last_ckpt, last_version = None, None  # checkpoints/last.pt, read before the data load, for the resume
            if dist.is_main and not (resume and is_finished(run_dir)):  # a finished run is said so below, read-only too
                check_run_dir(run_dir, resume, flag)  # a used or unwritable --out refused before the data load
            if resume:
                check_same_run(cfg, run_dir)  # a changed config refused before the data load, too
                if is_finished(run_dir):
                    return _finished_run(run_dir, dist)
                last = Path(run_dir) / "checkpoints" / "last.pt"
                if last.is_file():  # another number of processes refused before the data load, too
                    last_version, last_ckpt = file_version(last), load_checkpoint(last)
                    check_same_world_size(last_ckpt, dist.world_size, last)
            seed_everything(cfg.seed, dist.device)
            if cfg.data.get("data_dir"):  # as an absolute path: a resume or evaluate from another folder finds it
                data_dir = os.path.abspath(os.path.expanduser(cfg.data["data_dir"]))
                cfg = dataclasses.replace(cfg, data={**cfg.data, "data_dir": data_dir})
            task = build_task(cfg, dist)
            if dist.is_main:
                warn_absent_classes(task)
                warn_double_balancing(cfg)
            model = build_model(cfg, task)
            drop_a_last_batch_of_one(model, task)
            trainer = Trainer(model, cfg, task, run_dir, dist, quiet)
            trainer.prepare_run_dir(resume, flag)  # holds the folder's lock until the run ends: one train at a time
            if resume and dist.weighted_mean(float(is_finished(run_dir)), float(dist.is_main)):  # rank 0's view
                return _finished_run(run_dir, dist)  # another resume finished it during this one's data load
            if resume:
                trainer.resume(last_ckpt, last_version)
                last_ckpt = None  # not held through the run
            trainer.write_config()
            trainer.fit()
            result = trainer.test()
            if dist.is_main:
                write_plots(trainer, result)
                trainer.write_metrics(result)  # last: a folder holding metrics.json is a finished run
                print(trainer.summary_table(result))
                print(f"run folder: {trainer.run_dir}")
            return result
        finally:
            if trainer is not None:
                trainer.release_run_dir()
            distributed.teardown(dist)


def _finished_run(run_dir: str | Path, dist: distributed.DistContext) -> dict:
    """The metrics of the finished run in ``run_dir``, said: nothing to continue, and the test split is not scored
    again."""
    metrics = Path(run_dir) / "metrics.json"
    if dist.is_main:
        print(f"{metrics.parent} holds a finished run ({metrics.name} is written last): nothing to resume; "
              "msresnet1d evaluate scores its checkpoints again")
    return json.loads(metrics.read_text(encoding="utf-8"))


def is_finished(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds a finished run: its ``metrics.json``, which :func:`train` writes
    last (``checkpoints/last.pt`` is written every epoch: an interrupted run has one too)."""
    return (Path(run_dir) / "metrics.json").is_file()


def train_or_reuse(cfg: TrainConfig, run_dir: str | Path, quiet: bool = False) -> dict:
    """The metrics of the run in ``run_dir``: read from its ``metrics.json`` when the run has
    finished (:func:`is_finished`), else trained (resumed from ``checkpoints/last.pt`` when it was
    interrupted). For experiment scripts that run many configs and may be stopped and started
    again; what trained a reused run is :func:`run_code`'s, and :func:`warn_other_code` says when
    it is not this code.

    Raises:
        ValueError: the finished run was made with another config (on the keys a resume checks).
        FileExistsError: another process trains in ``run_dir`` (the advice names a script's --runs).
    """
    run_dir = Path(run_dir)
    if is_finished(run_dir):
        check_same_run(cfg, run_dir)
    else:
        # a script's run folders are under its --runs: the advice of a used or busy one names it
        train(cfg, run_dir, resume=(run_dir / "checkpoints" / "last.pt").exists(), quiet=quiet, flag="--runs")
    return json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))


def run_code(run_dir: str | Path) -> str | None:
    """The code (:func:`~.checkpoint.code_version`) that trained the last epoch of the run in
    ``run_dir``: the ``code`` of its ``checkpoints/last.pt``, else of its ``best.pt``; None when
    neither is there, names one (written before checkpoints named their code) or can be read (a
    damaged copy: the run's figures, in its metrics.json, are still reused). A run resumed under
    other code was trained by both (the resume warns); this is the later."""
    for name in ("last.pt", "best.pt"):
        path = Path(run_dir) / "checkpoints" / name
        if path.is_file():
            try:
                return load_checkpoint(path).get("code")
            except (ValueError, OSError, RuntimeError):  # not a checkpoint, truncated, unreadable
                continue
    return None


@dataclasses.dataclass(frozen=True)
class RecordedRun:
    """A run of an experiment script, trained or reused (:func:`recorded_run`): what its results
    record of it."""

    #: The run's metrics (its metrics.json, :func:`train`'s dict).
    metrics: dict[str, Any]
    #: Whether the run had finished before the call, so that its metrics were read, not trained.
    reused: bool
    #: The code that trained it (:func:`run_code`).
    code: str | None
    #: Seconds the call took, reading a reused run's metrics included.
    wall_seconds: float
    #: Seconds each epoch spent training (:func:`epoch_train_seconds`), resumed epochs included.
    epoch_seconds: list[float]

    @property
    def record(self) -> dict[str, Any]:
        """The ``reused`` and ``code`` entries of the run's record in a script's results, which
        :func:`warn_other_code` reads from the records of all its runs."""
        return {"reused": self.reused, "code": self.code}


def recorded_run(cfg: TrainConfig, run_dir: str | Path, quiet: bool = False) -> RecordedRun:
    """:func:`train_or_reuse` the run in ``run_dir``, timed, with what an experiment script's
    results record of it: whether it was reused, the code that trained it, its epochs' seconds.
    The script calls :func:`warn_other_code` on the records of all its runs once they are done.

    Raises:
        ValueError, FileExistsError: :func:`train_or_reuse`'s.
    """
    start, reused = time.perf_counter(), is_finished(run_dir)
    metrics = train_or_reuse(cfg, run_dir, quiet=quiet)
    wall = time.perf_counter() - start
    return RecordedRun(metrics, reused, run_code(run_dir), wall, epoch_train_seconds(run_dir))


def warn_other_code(runs: list[dict[str, Any]]) -> None:
    """One warning for an experiment script's finished runs that it reused (run records with
    ``reused`` true) and other code trained (their ``code``, :func:`run_code`, is not this
    :func:`~.checkpoint.code_version`), naming how many and the versions: the results mix their
    figures with this code's. Nothing when every reused run is this code's."""
    current = code_version()
    reused = [run for run in runs if run["reused"]]
    other = Counter(f"msresnet1d {run['code']}" if run["code"] else "code its checkpoints do not name (older, or "
                    "damaged)" for run in reused if run["code"] != current)
    if other:
        count = sum(other.values())
        versions = ", ".join(f"{version} ({n} run{'s' * (n > 1)})" for version, n in other.items())
        mix = "are of other code than" if count == len(runs) else "mix figures of other code with"
        warnings.warn(f"{count} of the {len(reused)} finished runs reused {'was' if count == 1 else 'were'} trained by "
                      f"other code: {versions}; this is msresnet1d {current}: the results {mix} this code's (each "
                      "run's code is in the results' runs; train them again in a new --runs folder for figures of "
                      "one version)", stacklevel=2)


def check_same_run(cfg: TrainConfig, run_dir: str | Path) -> None:
    """Raise ValueError if the run in ``run_dir`` (its ``config.json``, if it has one) was made with
    another config than ``cfg``, on the keys a resume checks (:func:`~.engine.check_same_config`:
    the database folder resolved, not its spelling)."""
    path = Path(run_dir) / "config.json"
    if path.is_file():
        check_same_config(TrainConfig.from_dict(json.loads(path.read_text(encoding="utf-8")), str(path)), cfg, path,
                          f"the run in {run_dir} (its config.json)")


def epoch_train_seconds(run_dir: str | Path) -> list[float]:
    """Seconds each epoch of a run spent training: its ``log.csv``'s ``train_seconds`` column
    (resumed epochs included; evaluation and data loading not counted). Unlike the wall time of
    a call to :func:`train_or_reuse`, it survives reuse of a finished run."""
    with open(Path(run_dir) / "log.csv", newline="", encoding="utf-8") as f:
        return [float(row["train_seconds"]) for row in csv.DictReader(f)]


def write_plots(trainer: Trainer, result: dict) -> None:
    """The run's PNGs. A plot that fails (an exception, not an interruption) is a warning: the
    run's results, which the caller writes next, do not depend on it."""
    if not plots.have_matplotlib():
        return
    run_dir, task = trainer.run_dir, trainer.task
    report = result["test"]
    drawings = [
        ("curves.png", lambda path: plots.plot_curves(trainer.history.rows, path, trainer.history.best_epoch + 1)),
        ("confusion_matrix.png", lambda path: plots.plot_confusion(np.array(report["confusion_matrix"]),
                                                                    task.class_names, path, task.test_title)),
    ]
    if task.strip is not None:  # labelled as the test labels them: with the config's test-time augmentation
        drawings.append(("ecg_strip.png", lambda path: ecg_strip(with_tta(trainer.evaluated, trainer.cfg.tta), task,
                                                                 path)))
    for name, draw in drawings:
        try:
            draw(run_dir / name)
        except Exception as e:  # noqa: BLE001 - a figure is not worth a finished run
            warnings.warn(f"{name} could not be drawn ({type(e).__name__}: {e}); the run's results are kept",
                          stacklevel=2)


def ecg_strip(model: nn.Module, task: Task, path: Path, seconds: float = 10.0) -> None:
    """Plot the ``seconds`` of test signal, over every test record, that hold the most non-N
    beats (the first such window; windows start 0.5 s before a beat), with true and predicted beat
    labels (``model``'s, on the device its parameters are on)."""
    from ..data import read_record
    from ..data.records import read_header

    beats, strip = task.strip["beats"], task.strip
    abnormal = (beats.y != task.class_names.index("N")).astype(np.int64)
    best = (-1, "", 0.0)  # abnormal beats in the window, record, window start in the record's samples
    for record in dict.fromkeys(beats.record.tolist()):
        rows = np.flatnonzero(beats.record == record)
        positions = beats.sample[rows]  # in time order within a record, at the record's own rate
        fs = read_header(Path(strip["db_dir"]) / record).fs
        starts = positions - 0.5 * fs
        held = np.concatenate(([0], np.cumsum(abnormal[rows])))
        counts = held[np.searchsorted(positions, starts + seconds * fs)] - held[np.searchsorted(positions, starts)]
        if counts.max() > best[0]:
            best = (int(counts.max()), record, float(starts[int(np.argmax(counts))]))
    _, record, first = best
    signal = read_record(Path(strip["db_dir"]) / record, leads=list(beats.config.leads[:1]))
    fs, span = signal.fs, int(seconds * signal.fs)
    start = max(0, min(int(round(first)), signal.signal.shape[1] - span))
    in_record = np.flatnonzero(beats.record == record)
    positions = beats.sample[in_record]
    chosen = in_record[(positions >= start) & (positions < start + span)]
    inputs = [t[torch.from_numpy(chosen)] for t in strip["inputs"]]
    if strip["transform"] is not None:
        inputs[0] = strip["transform"](inputs[0])
    device = next(model.parameters()).device  # the training device: a GPU run's model is on its GPU
    model.eval()
    with torch.inference_mode():
        predicted = model(*(t.to(device) for t in inputs)).argmax(dim=1).cpu().numpy()
    plots.plot_ecg_strip(signal.signal[0, start:start + span], fs, beats.sample[chosen] - start,
                         [task.class_names[i] for i in beats.y[chosen]], [task.class_names[i] for i in predicted],
                         path, title=f"record {record}, {start / fs:.1f}-{(start + span) / fs:.1f} s",
                         lead=signal.leads[0], start_s=start / fs, units=signal.units[0])
