"""Tasks: what a config's ``task`` key builds from its ``[data]`` table.

A :class:`Task` holds the training batches, the class names, how to predict on the validation
and test splits, and which records/examples each split holds. Validation always comes from the
training side (held-out records or images), never from the test split.

``beats`` (MIT-BIH, AAMI classes, inter-patient) data keys, with defaults:
    data_dir (the database folder, or a folder holding mitdb/; None: $MSRESNET1D_DATA/mitdb,
    else datasets/mitdb, else the download folder ``data_home()``, else the embedded sample),
    leads ["MLII"], fs 180 (Hz), window [-0.25, 0.45] (s around the R peak), band [0.5, 40] (Hz),
    rr true (RR features as extra inputs: true for ``RR_DEFAULT``, false, or a list of names from
    ``RR_FEATURES``), train_records (DS1), test_records (DS2),
    val_records 4 (a count of DS1 records held out with ``balanced_holdout`` and val_seed, so that
    training keeps >= 75% of every class; or a list of records),
    val_seed 0, representation "signal" | "spectrogram" (2D time-frequency images; options in a
    ``[data.spectrogram]`` table: window_s 0.125, overlap 0.75, max_freq_hz 50, size 32), template true
    (add each lead minus the record's median beat as channels: ``BeatConfig.template``),
    template_from "all" | "regular" (the beats that median is taken over), cache true,
    record_balanced false (draw training beats so that every training record is drawn equally
    often, whatever its beat count: ``optim.record_sample_weights``; not with balanced_sampler);
    training augmentation (``msresnet1d.data.augment.BeatAugment``, each beat's leads, the
    template differences recomputed): scale 0 (amplitude factors drawn from [1 - scale, 1 + scale]),
    noise_std 0 (added Gaussian noise, units of the z-scored signal), shift 0 (largest time shift of
    the window, seconds).
``rhythm`` (CinC 2017, N/A/O/~) data keys:
    data_dir (as for beats, cinc2017/), lead (unset: single-lead records; else the lead to read,
    "A|B" the first of these a record has), fs 150 (Hz, at least 45 with rr), crop_seconds 30,
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
    data_dir, resize null (pixels), val_size 5000 (training images held out), normalize "unit" |
    "standardize", crop_padding 0, hflip false, erase_prob 0, download false (fetch the files from
    the mirrors, checksum-verified, when they are not found).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import numbers
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..data.loader import TensorBatchLoader
from ..models.layers import is_whole
from .config import TrainConfig
from .distributed import DistContext
from .metrics import AAMI_SCORED, CINC_SCORED
from .optim import balanced_sample_weights, record_sample_weights

if TYPE_CHECKING:
    from ..data import BeatConfig, RhythmConfig

log = logging.getLogger(__name__)

#: ``f(model, device, adapt_bn=False) -> (labels (N,), probabilities (N, K))`` of one split.
SplitPredictor = Callable[[nn.Module, torch.device], tuple[np.ndarray, np.ndarray]]


@dataclass
class Task:
    """Everything the engine needs to know about the data.

    Attributes:
        train: training batches ``(x, y)`` or ``(x, extra, y)``; has ``set_epoch`` and ``len``.
        train_labels: (N,) int labels of the training examples (class weights, sampler).
        class_names / scored: all class names, and those averaged in macro figures.
        in_channels / input_size / extra_features / dims: what the model must accept
            (dims 1: signals (N, C, L); 2: images (N, C, H, W)).
        predictors: ``{"val": f, "test": f}``, each ``f(model, device) -> (y_true, probabilities)``.
        splits: what each split holds (record names, counts), stored with the metrics.
        groups: ``{split: (N,) array}``, the record of each example where examples come from
            records (beats), in the order the split's predictor returns them.
        test_title: a heading for the results table.
        strip: for ECG beat tasks, what the strip plot needs (``msresnet1d.training.plots``).
        state: tensors fitted on the training split that inference needs again (e.g. the RR
            feature means and standard deviations); saved in every checkpoint.
    """

    train: TensorBatchLoader
    train_labels: np.ndarray
    class_names: list[str]
    scored: list[str]
    in_channels: int
    input_size: int
    extra_features: int
    predictors: dict[str, SplitPredictor]
    splits: dict[str, Any]
    test_title: str
    dims: int = 1
    strip: dict[str, Any] | None = None
    state: dict[str, torch.Tensor] = field(default_factory=dict)
    groups: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def has_validation(self) -> bool:
        return "val" in self.predictors

    def predict(self, model: nn.Module, split: str, device: torch.device,
                adapt_bn: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The labels (N,) and class probabilities (N, K) of ``split``. With ``adapt_bn``, each record's
        examples are predicted with BatchNorm statistics re-estimated on that record (beat tasks only;
        ``msresnet1d.models.adapt``): ``model`` must still have its BatchNorms."""
        if split not in self.predictors:
            raise ValueError(f"this task has no {split!r} split (has {sorted(self.predictors)})")
        if adapt_bn:
            if split not in self.groups:
                raise ValueError(f"per-record BatchNorm adaptation needs several examples of each record (MIT-BIH "
                                 f"beats); this task's {split!r} split has one example a record or none (for one CinC "
                                 "record, msresnet1d predict --adapt-bn adapts to its windows)")
            return self.predictors[split](model, device, adapt_bn=True)
        return self.predictors[split](model, device)


def _options(data: dict[str, Any], defaults: dict[str, Any], task: str, table: str = "[data]") -> dict[str, Any]:
    unknown = sorted(set(data) - set(defaults))
    if unknown:
        raise ValueError(f"{table} of task {task!r}: unknown key(s) {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(defaults))}")
    return {**defaults, **data}


def _array_predictor(inputs: list[torch.Tensor], labels: np.ndarray, batch_size: int,
                     transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                     groups: np.ndarray | None = None) -> SplitPredictor:
    """``predict(model, device, adapt_bn=False)``: softmax probabilities of ``inputs`` (the model's
    positional arguments, N examples each) in batches. With ``adapt_bn``, each group of examples
    (``groups``: (N,), e.g. the record of each beat) is predicted by its own copy of the model whose
    BatchNorm statistics were re-estimated on that group's inputs (:func:`adapt_batchnorm`)."""
    def batches(tensors: list[torch.Tensor], device: torch.device, size: int):
        for start in range(0, len(tensors[0]), size):
            batch = [t[start:start + size] for t in tensors]
            if transform is not None:
                batch[0] = transform(batch[0])
            yield [b.to(device) for b in batch]

    def probabilities(model: nn.Module, tensors: list[torch.Tensor], device: torch.device) -> torch.Tensor:
        model.eval()
        with torch.inference_mode():
            return torch.cat([torch.softmax(model(*b).float(), dim=1).cpu() for b in batches(tensors, device,
                                                                                                batch_size)])

    def predict(model: nn.Module, device: torch.device, adapt_bn: bool = False) -> tuple[np.ndarray, np.ndarray]:
        if not adapt_bn:
            return labels, probabilities(model, inputs, device).numpy()
        from ..models.adapt import adapt_batchnorm, shuffled_chunks

        parts = []
        for group in dict.fromkeys(groups.tolist()):  # in order of appearance
            index = torch.from_numpy(np.flatnonzero(groups == group))
            part = [t[index] for t in inputs]
            chunks = shuffled_chunks(part, batch_size)  # each chunk one batch, transformed and moved by batches()
            adapted = adapt_batchnorm(model, (b for chunk in chunks for b in batches(chunk, device, len(chunk[0]))))
            parts.append((index, probabilities(adapted, part, device)))
        out = torch.empty(len(labels), parts[0][1].shape[1])
        for index, p in parts:
            out[index] = p
        return labels, out.numpy()
    return predict


# ---------------------------------------------------------------------------------- beats
BEAT_DEFAULTS: dict[str, Any] = {
    "data_dir": None, "leads": ["MLII"], "fs": 180.0, "window": [-0.25, 0.45], "band": [0.5, 40.0], "rr": True,
    "train_records": None, "test_records": None, "val_records": 4, "val_seed": 0, "representation": "signal",
    "template": True, "template_from": "all", "scale": 0.0, "noise_std": 0.0, "shift": 0.0,
    "spectrogram": {"window_s": 0.125, "overlap": 0.75, "max_freq_hz": 50.0, "size": 32},
    "cache": True, "record_balanced": False,
}


def beat_config(data: dict[str, Any]) -> BeatConfig:
    """The :class:`~msresnet1d.data.BeatConfig` of a beat task's resolved ``[data]`` options."""
    from ..data import BeatConfig

    return BeatConfig(leads=tuple(data["leads"]), fs=float(data["fs"]), window=tuple(data["window"]),
                      band=tuple(data["band"]) if data["band"] else None, template=bool(data["template"]),
                      template_from=data["template_from"])


def beat_task(cfg: TrainConfig, dist: DistContext) -> Task:
    from ..data import AAMI_CLASSES, DS1, DS2, balanced_holdout, find_database, load_beats, resolve_leads
    from ..data.augment import BeatAugment
    from ..data.rr import rr_columns
    from ..data.spectrogram import Spectrogram

    opts = resolve_data(cfg).data
    db_dir = find_database(DATABASES["beats"], opts["data_dir"])
    beat_cfg = beat_config(opts)
    train_records = list(opts["train_records"] or DS1)
    test_records = list(opts["test_records"] or DS2)
    if set(train_records) & set(test_records):
        raise ValueError(f"train and test records overlap: {sorted(set(train_records) & set(test_records))}")
    train_all = load_beats(train_records, db_dir=db_dir, config=beat_cfg, cache=opts["cache"])
    test = load_beats(test_records, db_dir=db_dir, config=beat_cfg, cache=opts["cache"])
    val = opts["val_records"]
    if isinstance(val, numbers.Integral):
        by_record = {r: train_all.y[train_all.record == r] for r in train_records}
        val = balanced_holdout(by_record, val, seed=opts["val_seed"])[1] if val else []
    missing = sorted(set(val) - set(train_records))
    if missing:
        raise ValueError(f"val_records {missing} are not training records: validation comes from training patients")
    fit_records = [r for r in train_records if r not in val]
    fit, held = train_all.from_records(fit_records), train_all.from_records(val)
    if len(fit) == 0:
        raise ValueError(f"no training beats in records {fit_records} of {db_dir}")

    # RR features standardised with the training beats' statistics (no peeking at val/test).
    columns = rr_columns(opts["rr"])
    rr_mean, rr_std = fit.rr[:, columns].mean(axis=0), fit.rr[:, columns].std(axis=0) + 1e-6

    def inputs(arrays) -> list[torch.Tensor]:
        """[windows (N, C, L)] and, with RR features, [.., standardised RR (N, F)]."""
        out = [torch.from_numpy(np.ascontiguousarray(arrays.X))]
        if columns:
            out.append(torch.from_numpy(((arrays.rr[:, columns] - rr_mean) / rr_std).astype(np.float32)))
        return out

    transform = None
    input_size, dims = beat_cfg.length, 1
    if opts["representation"] == "spectrogram":
        spec_opts = opts["spectrogram"]
        spec = Spectrogram(fs=beat_cfg.fs, standardize=True, **spec_opts)
        transform = lambda x, generator=None: spec(x)  # noqa: E731 - a BatchTransform
        input_size, dims = spec_opts["size"], 2
    train_transform = transform
    if opts["scale"] or opts["noise_std"] or opts["shift"]:
        shift = round(opts["shift"] * beat_cfg.fs)
        if not 0 <= shift < beat_cfg.length:
            raise ValueError(f"[data] shift={opts['shift']} s ({shift} samples at {beat_cfg.fs:g} Hz) must be >= 0 "
                             f"and shorter than the window ({beat_cfg.length} samples)")
        augment = BeatAugment(len(beat_cfg.leads), beat_cfg.template, scale=opts["scale"],
                              noise_std=opts["noise_std"], shift=shift)
        train_transform = augment if transform is None else (
            lambda x, generator: transform(augment(x, generator)))  # a BatchTransform: augment, then the spectrogram

    scored = list(AAMI_SCORED)  # Q (8 DS1 beats) is not scored, and not balanced by the sampler
    weights = (balanced_sample_weights(fit.y, [AAMI_CLASSES.index(c) for c in scored]) if cfg.balanced_sampler
               else record_sample_weights(fit.record) if opts["record_balanced"] else None)
    fit_inputs, test_inputs = inputs(fit), inputs(test)
    loader = TensorBatchLoader(fit_inputs[0], torch.from_numpy(fit.y), cfg.batch_size, shuffle=True,
                               transform=train_transform, seed=cfg.seed, extra=fit_inputs[1] if columns else None,
                               sample_weights=weights, rank=dist.rank, world_size=dist.world_size)
    predictors = {"test": _array_predictor(test_inputs, test.y, cfg.eval_batch_size, transform, test.record)}
    if len(held):
        predictors["val"] = _array_predictor(inputs(held), held.y, cfg.eval_batch_size, transform, held.record)
    sample_note = " (embedded sample)" if "sample" in db_dir.name else ""
    splits = {"database": str(db_dir), "train_records": fit_records, "val_records": list(val),
              "test_records": test_records, "train_beats": fit.class_counts(), "val_beats": held.class_counts(),
              "test_beats": test.class_counts()}
    if any("|" in lead for lead in beat_cfg.leads):  # which of the alternatives each record gave
        splits["leads"] = {r: resolve_leads(db_dir / r, beat_cfg.leads) for r in train_records + test_records}
    return Task(
        train=loader, train_labels=fit.y, class_names=list(AAMI_CLASSES), scored=scored,
        in_channels=beat_cfg.channels, input_size=input_size, extra_features=len(columns),
        predictors=predictors, dims=dims,
        splits=splits,
        test_title=f"MIT-BIH inter-patient test ({len(test_records)} records, {len(test)} beats){sample_note}",
        strip={"db_dir": db_dir, "beats": test, "inputs": test_inputs, "transform": transform},
        state={"rr_mean": torch.from_numpy(rr_mean), "rr_std": torch.from_numpy(rr_std)} if columns else {},
        groups={"test": test.record, "val": held.record},
    )


# ---------------------------------------------------------------------------------- rhythm
RHYTHM_DEFAULTS: dict[str, Any] = {
    "data_dir": None, "lead": None, "fs": 150.0, "crop_seconds": 30.0, "hop_seconds": 15.0, "folds": 5, "fold": 0,
    "val_fraction": 0.1, "split_seed": None, "cache": True, "flip_prob": 0.0, "noise_std": 0.0, "rr": False,
}


class WindowHRV:
    """Extra features of windows of one split's records: the RR-interval statistics ``columns``
    of :data:`~msresnet1d.data.hrv.HRV_FEATURES` between the R peaks found in each record
    (:func:`~msresnet1d.data.hrv.detect_r_peaks`, once), standardised with ``mean`` and ``std``
    (given, or fitted on these records' windows by :meth:`fit`: the training split's); a window
    with too few beats gets 0 (the mean).

    ``features(i, starts, length)``: (W, F) float32 for record i's windows ``[start, start +
    length)`` (samples); the signature of :func:`~msresnet1d.data.rhythm.predict_records`'s ``extra``.
    """

    def __init__(self, arrays, columns: list[int], mean: np.ndarray | None = None,
                 std: np.ndarray | None = None) -> None:
        from ..data.hrv import detect_r_peaks

        self.arrays, self.columns, self.mean, self.std = arrays, columns, mean, std
        self.peaks = [detect_r_peaks(arrays.signal(i)[0], arrays.config.fs) for i in range(len(arrays))]

    def raw(self, i: int, starts: np.ndarray, length: int) -> np.ndarray:
        from ..data.hrv import windows_hrv

        return windows_hrv(self.peaks[i], starts, length, self.arrays.config.fs)[:, self.columns]

    def fit(self, length: int, hop: int) -> tuple[np.ndarray, np.ndarray]:
        """Set and return the mean and std (F,) of the features of every sliding window
        (``length`` samples, every ``hop``) of these records."""
        from ..data.rhythm import window_starts

        values = np.concatenate([self.raw(i, window_starts(int(n), length, hop), length)
                                 for i, n in enumerate(self.arrays.lengths)])
        self.mean, self.std = np.nanmean(values, axis=0), np.nanstd(values, axis=0) + 1e-6
        return self.mean, self.std

    def __call__(self, i: int, starts: np.ndarray, length: int) -> np.ndarray:
        return np.nan_to_num((self.raw(i, starts, length) - self.mean) / self.std).astype(np.float32)


class RandomCrops:
    """BatchTransform: record indices (B,) -> random fixed-length crops (B, C, L) of those records
    (zero-padded when shorter), offsets drawn from the batch generator; then, for augmentation,
    each crop's sign inverted with probability ``flip_prob`` and Gaussian noise of std
    ``noise_std`` (in units of the z-scored signal) added. With ``features`` (a
    :class:`WindowHRV`), returns ``(crops, features of the crops (B, F))``."""

    def __init__(self, arrays, length: int, flip_prob: float = 0.0, noise_std: float = 0.0,
                 features: WindowHRV | None = None) -> None:
        self.arrays, self.length, self.flip_prob, self.noise_std = arrays, length, flip_prob, noise_std
        self.features = features

    def __call__(self, idx: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        from ..data.rhythm import fit_length

        lengths = self.arrays.lengths[idx.numpy()]
        slack = np.abs(lengths - self.length)
        offsets = (torch.rand(len(idx), generator=generator).numpy() * (slack + 1)).astype(np.int64)
        crops = torch.from_numpy(np.stack([fit_length(self.arrays.signal(int(i)), self.length, int(o))
                                           for i, o in zip(idx, offsets)]))
        if self.flip_prob:
            flip = torch.rand(len(idx), generator=generator) < self.flip_prob
            crops = torch.where(flip[:, None, None], -crops, crops)
        if self.noise_std:
            crops = crops + self.noise_std * torch.randn(crops.shape, generator=generator)
        if self.features is None:
            return crops
        starts = np.where(lengths >= self.length, offsets, 0)  # a padded crop holds its whole record
        extra = np.concatenate([self.features(int(i), starts[j:j + 1], self.length) for j, i in enumerate(idx)])
        return crops, torch.from_numpy(extra)


def rhythm_config(data: dict[str, Any]) -> RhythmConfig:
    """How a rhythm run's ``[data]`` options (resolved) prepare records: its lead and rate."""
    from ..data import RhythmConfig

    return RhythmConfig(lead=data["lead"], fs=float(data["fs"]))


def rhythm_task(cfg: TrainConfig, dist: DistContext) -> Task:
    from sklearn.model_selection import train_test_split

    from ..data import CINC_CLASSES, HRV_FEATURES, find_database, load_rhythm, predict_records
    from ..data import stratified_kfold
    from ..data.rr import rr_columns

    opts = resolve_data(cfg).data
    flip_prob, noise_std = float(opts["flip_prob"]), float(opts["noise_std"])
    db_dir = find_database(DATABASES["rhythm"], opts["data_dir"])
    arrays = load_rhythm(db_dir, rhythm_config(opts), cache=opts["cache"])
    try:
        folds = stratified_kfold(arrays.y, opts["folds"], seed=opts["split_seed"])
    except ValueError as e:  # more folds than records of a class
        raise ValueError(f"config: [data] folds={opts['folds']} for the {len(arrays)} records of {db_dir}: {e}") from None
    train_idx, test_idx = folds[opts["fold"]]
    try:
        fit_idx, val_idx = train_test_split(train_idx, test_size=opts["val_fraction"], stratify=arrays.y[train_idx],
                                            random_state=opts["split_seed"]) if opts["val_fraction"] else \
            (train_idx, np.empty(0, dtype=np.int64))
    except ValueError as e:  # a validation share too small to hold every class
        raise ValueError(f"config: [data] val_fraction={opts['val_fraction']} of the {len(train_idx)} training "
                         f"records: {e}") from None
    fit, held, test = arrays.select(np.sort(fit_idx)), arrays.select(np.sort(val_idx)), arrays.select(test_idx)
    length, hop = round(opts["crop_seconds"] * arrays.config.fs), round(opts["hop_seconds"] * arrays.config.fs)
    columns = rr_columns(opts["rr"], HRV_FEATURES, HRV_FEATURES)
    hrv, state = {}, {}
    if columns:  # standardised with the training windows' statistics (no peeking at val/test)
        hrv["fit"] = WindowHRV(fit, columns)
        mean, std = hrv["fit"].fit(length, hop)
        hrv |= {"val": WindowHRV(held, columns, mean, std), "test": WindowHRV(test, columns, mean, std)}
        state = {"rr_mean": torch.from_numpy(mean), "rr_std": torch.from_numpy(std)}
    scored = list(CINC_SCORED)  # the CinC score's classes; noisy records keep their natural share
    weights = balanced_sample_weights(fit.y, [CINC_CLASSES.index(c) for c in scored]) if cfg.balanced_sampler else None
    crops = RandomCrops(fit, length, flip_prob, noise_std, hrv.get("fit"))
    loader = TensorBatchLoader(torch.arange(len(fit)), torch.from_numpy(fit.y), cfg.batch_size, shuffle=True,
                               transform=crops, seed=cfg.seed, sample_weights=weights,
                               rank=dist.rank, world_size=dist.world_size)

    def predictor(part, split: str) -> SplitPredictor:
        def predict(model: nn.Module, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
            probs = predict_records(model, part, opts["crop_seconds"], opts["hop_seconds"], extra=hrv.get(split))
            return part.y, probs.float().numpy()
        return predict

    predictors = {"test": predictor(test, "test")}
    if len(held):
        predictors["val"] = predictor(held, "val")
    return Task(
        train=loader, train_labels=fit.y, class_names=list(CINC_CLASSES), scored=scored, in_channels=1,
        input_size=length, extra_features=len(columns), predictors=predictors, state=state,
        splits={"database": str(db_dir), "fold": opts["fold"], "folds": opts["folds"],
                "train_records": len(fit), "val_records": len(held), "test_records": len(test),
                "test_names": test.record.tolist()},
        test_title=f"CinC 2017 fold {opts['fold'] + 1}/{opts['folds']} test ({len(test)} records)",
    )


# ---------------------------------------------------------------------------------- images
FASHION_DEFAULTS: dict[str, Any] = {
    "data_dir": None, "resize": None, "val_size": 5000, "normalize": "unit", "crop_padding": 0, "hflip": False,
    "erase_prob": 0.0, "download": False,
}


def fashion_task(cfg: TrainConfig, dist: DistContext) -> Task:
    from ..data.fashion_mnist import CLASS_NAMES, ImageBatchTransform, load_fashion_mnist, pixel_mean_std

    opts = resolve_data(cfg).data
    images, labels = load_fashion_mnist(opts["data_dir"], "train", opts["download"])
    test_images, test_labels = load_fashion_mnist(opts["data_dir"], "test", opts["download"])
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(cfg.seed))
    val_idx, fit_idx = order[:opts["val_size"]], order[opts["val_size"]:]
    mean, std = pixel_mean_std(images[fit_idx]) if opts["normalize"] == "standardize" else (0.0, 1.0)
    augment = ImageBatchTransform(opts["resize"], mean, std, opts["crop_padding"], opts["hflip"], opts["erase_prob"])
    plain = ImageBatchTransform(opts["resize"], mean, std)
    weights = balanced_sample_weights(labels[fit_idx].numpy()) if cfg.balanced_sampler else None
    loader = TensorBatchLoader(images[fit_idx], labels[fit_idx], cfg.batch_size, shuffle=True, transform=augment,
                               seed=cfg.seed, sample_weights=weights, rank=dist.rank, world_size=dist.world_size)
    evaluate = lambda x: plain(x, torch.Generator())  # noqa: E731 - deterministic transform
    predictors = {"test": _array_predictor([test_images], test_labels.numpy(), cfg.eval_batch_size, evaluate)}
    if len(val_idx):
        predictors["val"] = _array_predictor([images[val_idx]], labels[val_idx].numpy(), cfg.eval_batch_size,
                                             evaluate)
    size = opts["resize"] or images.shape[-1]
    return Task(
        train=loader, train_labels=labels[fit_idx].numpy(), class_names=list(CLASS_NAMES),
        scored=list(CLASS_NAMES), in_channels=1, input_size=size, extra_features=0, predictors=predictors,
        dims=2, splits={"train_images": len(fit_idx), "val_images": len(val_idx), "test_images": len(test_labels)},
        test_title=f"Fashion-MNIST test ({len(test_labels)} images, {size}x{size})",
        # what a loaded model's inputs need: (uint8 / 255 - pixel_mean) / pixel_std ((0, 1) with normalize "unit")
        state={"pixel_mean": torch.tensor(mean, dtype=torch.float64), "pixel_std": torch.tensor(std, dtype=torch.float64)},
    )


TASK_BUILDERS: dict[str, Callable[[TrainConfig, DistContext], Task]] = {
    "beats": beat_task, "rhythm": rhythm_task, "fashion_mnist": fashion_task,
}


TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "beats": BEAT_DEFAULTS, "rhythm": RHYTHM_DEFAULTS, "fashion_mnist": FASHION_DEFAULTS,
}


#: The WFDB database each ECG task reads (``[data] data_dir`` is found with ``find_database(name, data_dir)``).
DATABASES: dict[str, str] = {"beats": "mitdb", "rhythm": "cinc2017"}

# [data] keys that only change the training batches (augmentation, sampling): evaluation never reads
# them, so checkpoints that differ only in these still see the same inputs and can form an ensemble
TRAINING_ONLY_DATA: dict[str, tuple[str, ...]] = {
    "beats": ("scale", "noise_std", "shift", "record_balanced"), "rhythm": ("flip_prob", "noise_std"),
    "fashion_mnist": ("crop_padding", "hflip", "erase_prob"),
}


def evaluation_data(cfg: TrainConfig) -> dict[str, Any]:
    """The resolved ``[data]`` options that decide what a model sees on the validation and test
    splits: all of them but the task's training-only keys (:data:`TRAINING_ONLY_DATA`)."""
    skip = TRAINING_ONLY_DATA[cfg.task]
    return {k: v for k, v in resolve_data(cfg).data.items() if k not in skip}


def _number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _lead_names(v: Any) -> bool:
    return _names(v) and len(v) > 0 and all(a and a == a.strip() for lead in v for a in lead.split("|"))


def _names(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v)


def _pair(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and len(v) == 2 and all(map(_number, v)) and v[0] < v[1]


def _band(v: Any) -> bool:
    """No filter (unset, false, []), or [low, high] in Hz where either corner may be unset (null)."""
    if v is None or v is False or (isinstance(v, (list, tuple)) and len(v) == 0):
        return True
    if not isinstance(v, (list, tuple)) or len(v) != 2 or v[0] is v[1] is None:
        return False
    if not all(f is None or (_number(f) and f >= 0) for f in v):
        return False
    return v[0] is None or v[1] is None or v[0] < v[1]


def _rr_names(features: Sequence[str]) -> Callable[[Any], bool]:
    def valid(v: Any) -> bool:  # what rr_columns takes: true, false or distinct names of features
        from ..data.rr import rr_columns

        if not isinstance(v, (bool, list, tuple)):
            return False
        try:
            rr_columns(v, features, features)
        except ValueError:
            return False
        return True
    return valid


def _data_rules() -> dict[str, dict[str, tuple[Callable[[Any], bool], str]]]:
    """Per task, per ``[data]`` key: a test of a value and what it must be (for the message)."""
    from ..data.hrv import HRV_FEATURES
    from ..data.rr import RR_FEATURES

    path = (lambda v: v is None or isinstance(v, str), "a folder path (or unset)")
    flag = (lambda v: isinstance(v, bool), "true or false")
    nonneg = (lambda v: _number(v) and v >= 0, "a number >= 0")
    positive = (lambda v: _number(v) and v > 0, "a number > 0")
    seed = (lambda v: is_whole(v) and v >= 0, "a whole number >= 0")
    records = (lambda v: v is None or (_names(v) and len(v) > 0),
               'a non-empty list of record names as strings ("101"); leave it out for the default split')
    return {
        "beats": {
            "data_dir": path, "leads": (_lead_names, 'a non-empty list of lead names, an entry "V1|V5" the first of these a record has '
                                   "(no spaces or empty names around |)"),
            "fs": positive, "window": (_pair, "[start, stop] in seconds, start < stop"),
            "band": (_band, "[low, high] in Hz, 0 <= low < high, either corner null (open), or unset/false (none)"),
            "rr": (_rr_names(RR_FEATURES), f"true, false or a list of distinct names of {', '.join(RR_FEATURES)}"),
            "train_records": records, "test_records": records,
            "val_records": (lambda v: (is_whole(v) and v >= 0) or _names(v),
                            'a whole number >= 0 or a list of record names as strings ("101")'),
            "val_seed": seed, "representation": (lambda v: v in ("signal", "spectrogram"), "'signal' or 'spectrogram'"),
            "template": flag, "template_from": (lambda v: v in ("all", "regular"), "'all' or 'regular'"),
            "scale": (lambda v: _number(v) and 0 <= v < 1, "a number in [0, 1) (amplitude factors 1 - scale to 1 + scale)"),
            "noise_std": nonneg, "shift": nonneg,
            "spectrogram": (lambda v: isinstance(v, dict), "a table of spectrogram options"), "cache": flag,
            "record_balanced": flag,
        },
        "rhythm": {
            "data_dir": path, "fs": positive, "crop_seconds": positive, "hop_seconds": positive,
            "lead": (lambda v: v is None or (isinstance(v, str) and _lead_names([v])),
                     'a lead name, or "A|B" the first of these a record has (or unset: single-lead records only)'),
            "folds": (lambda v: is_whole(v) and v >= 2, "a whole number >= 2"),
            "fold": (lambda v: is_whole(v) and v >= 0, "a whole number >= 0 (below folds)"),
            "val_fraction": (lambda v: _number(v) and 0 <= v < 1, "a number in [0, 1)"),
            "split_seed": (lambda v: v is None or (is_whole(v) and v >= 0), "a whole number >= 0 (or unset: the run's seed)"),
            "cache": flag, "flip_prob": (lambda v: _number(v) and 0 <= v <= 1, "a number in [0, 1]"),
            "noise_std": nonneg,
            "rr": (_rr_names(HRV_FEATURES), f"true, false or a list of distinct names of {', '.join(HRV_FEATURES)}"),
        },
        "fashion_mnist": {
            "data_dir": path, "resize": (lambda v: v is None or (is_whole(v) and v > 0), "a whole number > 0 (or unset)"),
            "val_size": (lambda v: is_whole(v) and 0 <= v <= 59_998,
                         "a whole number in [0, 59998]: training keeps at least 2 of the 60,000 training images"),
            "normalize": (lambda v: v in ("unit", "standardize"), "'unit' or 'standardize'"),
            "crop_padding": (lambda v: is_whole(v) and v >= 0, "a whole number >= 0"), "hflip": flag,
            "erase_prob": (lambda v: _number(v) and 0 <= v <= 1, "a number in [0, 1]"), "download": flag,
        },
    }


def check_tta(task: str, tta: str) -> None:
    """Raise ValueError for a test-time augmentation that makes no sense for ``task``: the sign
    flip is for ECG leads of arbitrary polarity, not for images (an inverted image is no garment)."""
    if task == "fashion_mnist" and tta != "none":
        raise ValueError(f"tta {tta!r} averages each input with its sign-inverted copy, for ECG leads of arbitrary "
                         "polarity; a Fashion-MNIST image inverted is not the same garment: use tta 'none'")


def check_data(cfg: TrainConfig) -> None:
    """Check the type and range of every ``[data]`` option of ``cfg`` that can be checked without
    the data (a rhythm task's ``fold`` against ``folds`` too); ranges that depend on the data (e.g.
    a window longer than a record) are checked when it is loaded.

    Raises:
        ValueError: naming the first bad key, its value and what it must be.
    """
    from ..data.hrv import MIN_FS

    check_tta(cfg.task, cfg.tta)
    data = resolve_data(cfg).data
    for key, (valid, expected) in _data_rules()[cfg.task].items():
        if not valid(data[key]):
            raise ValueError(f"config: [data] {key} must be {expected}, got {data[key]!r}")
    if cfg.task == "rhythm" and data["fold"] >= data["folds"]:
        raise ValueError(f"config: [data] fold must be below folds ({data['folds']}), got {data['fold']}")
    if cfg.task == "rhythm" and data["hop_seconds"] > data["crop_seconds"]:
        raise ValueError(f"config: [data] hop_seconds must be at most crop_seconds ({data['crop_seconds']} s), got "
                         f"{data['hop_seconds']}: evaluation windows would leave samples out")
    if cfg.task == "rhythm" and data["rr"] not in (False, []) and data["fs"] < MIN_FS:
        raise ValueError(f"config: [data] fs must be at least {MIN_FS:g} Hz with rr (the R-peak detector's 5-20 Hz "
                         f"band), got {data['fs']}")
    if cfg.task == "beats":
        beat_config(data)  # the window against the rate
        if data["record_balanced"] and cfg.balanced_sampler:
            raise ValueError("config: [data] record_balanced and balanced_sampler both choose how training beats "
                             "are drawn (by record, by class): set one of them")
        if data["representation"] == "spectrogram":
            from ..data.spectrogram import Spectrogram

            try:
                Spectrogram(fs=float(data["fs"]), **data["spectrogram"])
            except (TypeError, ValueError) as e:
                raise ValueError(f"config: [data.spectrogram] {e}") from None


def resolve_data(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with its ``[data]`` table completed from the task's defaults (nested tables such
    as ``[data.spectrogram]`` too), so that a run's config.json and checkpoints record every data
    option, not only those given: a later change of a default does not change what an old run
    means. A rhythm task's ``split_seed`` left unset becomes the run's ``seed`` (the splits of
    runs made before the key existed). Idempotent; unknown keys are ValueErrors naming them."""
    defaults = TASK_DEFAULTS[cfg.task]
    data = _options(cfg.data, defaults, cfg.task)
    for key, default in defaults.items():
        if isinstance(default, dict):
            if data[key] is not None and not isinstance(data[key], dict):
                raise ValueError(f"config: [data] {key} must be a table of options ({', '.join(default)}), "
                                 f"got {data[key]!r}")
            data[key] = _options(data[key] or {}, default, cfg.task, f"[data.{key}]")
    if cfg.task == "rhythm" and data["split_seed"] is None:
        data["split_seed"] = cfg.seed
    return dataclasses.replace(cfg, data=data)


def model_inputs(cfg: TrainConfig) -> tuple[int, int]:
    """(in_channels, extra_features) of the model ``cfg`` trains, from its ``[data]`` options
    alone: the :class:`Task`'s ``in_channels`` and ``extra_features`` without reading any data."""
    from ..data.hrv import HRV_FEATURES
    from ..data.rr import rr_columns

    data = resolve_data(cfg).data
    if cfg.task == "beats":
        return beat_config(data).channels, len(rr_columns(data["rr"]))
    if cfg.task == "rhythm":
        return 1, len(rr_columns(data["rr"], HRV_FEATURES, HRV_FEATURES))
    return 1, 0


def task_classes(task: str) -> tuple[str, ...]:
    """The classes a task's model predicts, in output order: the :class:`Task`'s ``class_names``."""
    from ..data import AAMI_CLASSES, CINC_CLASSES
    from ..data.fashion_mnist import CLASS_NAMES

    return tuple({"beats": AAMI_CLASSES, "rhythm": CINC_CLASSES, "fashion_mnist": CLASS_NAMES}[task])


def build_task(cfg: TrainConfig, dist: DistContext | None = None) -> Task:
    """The task of ``cfg``, its ``[data]`` options checked (:func:`check_data`) before any data is read."""
    check_data(cfg)
    return TASK_BUILDERS[cfg.task](cfg, dist or DistContext())
