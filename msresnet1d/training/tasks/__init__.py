"""Tasks: what a config's ``task`` key builds from its ``[data]`` table.

A :class:`Task` holds the training batches, the class names, how to predict on the validation
and test splits, and which records/examples each split holds. Validation always comes from the
training side (held-out records or images), never from the test split. One module a task
(``beats``, ``rhythm``, ``fashion``); ``options`` holds the ``[data]`` defaults and checks,
``base`` the :class:`Task`.

``beats`` (MIT-BIH, AAMI classes, inter-patient) data keys, with defaults:
    data_dir (the database folder, or a folder holding mitdb/; None: $MSRESNET1D_DATA/mitdb,
    else datasets/mitdb, else the download folder ``data_home()``, else, with $MSRESNET1D_DATA
    unset, the embedded sample),
    leads ["MLII"], fs 180 (Hz), window [-0.25, 0.45] (s around the R peak), band [0.5, 40] (Hz),
    rr true (RR features as extra inputs: true for ``RR_DEFAULT``, false, or a list of names from
    ``RR_FEATURES``), train_records (DS1), test_records (DS2) (each record once),
    val_records 4 (a count of DS1 records held out with ``balanced_holdout`` and val_seed, so that
    training keeps >= 75% of every class; or a list of records, each once),
    val_seed 0, representation "signal" | "spectrogram" (2D time-frequency images; options in a
    ``[data.spectrogram]`` table: window_s 0.125, overlap 0.75, max_freq_hz 50, size 32), template true
    (add each lead minus the record's median beat as channels: ``BeatConfig.template``),
    template_from "all" | "regular" (the beats that median is taken over), cache true,
    record_balanced false (draw training beats so that every training record is drawn equally
    often, whatever its beat count: ``optim.record_sample_weights``; not with balanced_sampler),
    annotator "atr" (the extension of the annotation files the beats and their labels are read
    from, ``<record>.atr``: ``BeatConfig.annotator``; ``predict`` reads the same by default);
    training augmentation (``msresnet1d.data.augment.BeatAugment``, each beat's leads, the
    template differences recomputed): scale 0 (amplitude factors drawn from [1 - scale, 1 + scale]),
    noise_std 0 (added Gaussian noise, units of the z-scored signal), shift 0 (largest time shift of
    the window, seconds).
``rhythm`` (CinC 2017, N/A/O/~) data keys:
    data_dir (as for beats, cinc2017/), lead (unset: single-lead records; else the lead to read,
    "A|B" the first of these a record has), fs 150 (Hz, at least 45 with rr), band [0.5, 40] (Hz, as
    for beats; the filter is applied at the record's own rate, before resampling), crop_seconds 30,
    hop_seconds 15 (evaluation windows, at most crop_seconds), folds 5, fold 0 (the test fold of a
    stratified k-fold over records, counted from 0; the cross-validation script names it fold1),
    val_fraction 0.1 (of the training folds, stratified; 0: no validation, the epoch chosen by
    training loss), split_seed (the seed of both splits; resolved to the run's
    ``seed`` when not given, so runs of several seeds on the same folds set it), cache true;
    training augmentation: flip_prob 0 (chance of a
    crop's sign being inverted: handheld single-lead ECGs are often recorded upside down),
    noise_std 0 (std of added Gaussian noise, in units of the record's std: signals are z-scored);
    rr false (RR-interval statistics of each crop or window as extra inputs: true for all of
    ``HRV_FEATURES``, false, or a list of their names; R peaks from ``detect_r_peaks``).
``fashion_mnist`` data keys:
    data_dir, resize null (pixels), val_size 5000 (training images held out), train_size null (train on
    this many of the others only: a quick run of a recipe), normalize "unit" |
    "standardize", crop_padding 0, hflip false, erase_prob 0, download false (fetch the files from
    the mirrors, checksum-verified, when they are not found).
"""

from __future__ import annotations

from typing import Callable

from ..config import TrainConfig
from ..distributed import DistContext
from .base import SplitPredictor, Task
from .beats import beat_task
from .fashion import fashion_task
from .options import (BEAT_DEFAULTS, DATABASES, FASHION_DEFAULTS, RHYTHM_DEFAULTS, TASK_DEFAULTS, TRAINING_ONLY_DATA,
                      beat_config, check_data, check_tta, evaluation_data, model_inputs, resolve_data, rhythm_config,
                      task_classes, trained_length)
from .rhythm import RandomCrops, WindowHRV, rhythm_task

__all__ = [
    "BEAT_DEFAULTS", "DATABASES", "FASHION_DEFAULTS", "RHYTHM_DEFAULTS", "TASK_BUILDERS", "TASK_DEFAULTS",
    "TRAINING_ONLY_DATA", "RandomCrops", "SplitPredictor", "Task", "WindowHRV", "beat_config", "beat_task",
    "build_task", "check_data", "check_tta", "evaluation_data", "fashion_task", "model_inputs", "resolve_data",
    "rhythm_config", "rhythm_task", "task_classes", "trained_length",
]

TASK_BUILDERS: dict[str, Callable[[TrainConfig, DistContext], Task]] = {
    "beats": beat_task, "rhythm": rhythm_task, "fashion_mnist": fashion_task,
}


def build_task(cfg: TrainConfig, dist: DistContext | None = None) -> Task:
    """The task of ``cfg``, its ``[data]`` options checked (:func:`check_data`) before any data is read."""
    check_data(cfg)
    return TASK_BUILDERS[cfg.task](cfg, dist or DistContext())
