"""The ``rhythm`` task: PhysioNet/CinC 2017 records in N, A, O and ~, one fold of a stratified
k-fold over records tested, random crops to train on, whole records (sliding windows) to
evaluate; with ``rr``, each window's RR-interval statistics as extra inputs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from ...data.loader import TensorBatchLoader
from ..config import TrainConfig
from ..distributed import DistContext
from ..metrics import CINC_SCORED
from ..optim import balanced_sample_weights
from .base import SplitPredictor, Task
from .options import DATABASES, resolve_data, rhythm_config, trained_length

if TYPE_CHECKING:
    from ...data.rhythm import RhythmArrays


class WindowHRV:
    """Extra features of windows of one split's records: the RR-interval statistics ``columns``
    of :data:`~msresnet1d.data.hrv.HRV_FEATURES` between the R peaks found in each record
    (:func:`~msresnet1d.data.hrv.detect_r_peaks`, once), standardised with ``mean`` and ``std``
    (given, or fitted on these records' windows by :meth:`fit`: the training split's); a window
    with too few beats gets 0 (the mean).

    ``features(i, starts, length)``: (W, F) float32 for record i's windows ``[start, start +
    length)`` (samples); the signature of :func:`~msresnet1d.data.rhythm.predict_records`'s ``extra``.
    """

    def __init__(self, arrays: RhythmArrays, columns: list[int], mean: np.ndarray | None = None,
                 std: np.ndarray | None = None) -> None:
        from ...data.hrv import detect_r_peaks

        self.arrays, self.columns, self.mean, self.std = arrays, columns, mean, std
        self.peaks = [detect_r_peaks(arrays.signal(i)[0], arrays.config.fs) for i in range(len(arrays))]

    def raw(self, i: int, starts: np.ndarray, length: int) -> np.ndarray:
        from ...data.hrv import windows_hrv

        return windows_hrv(self.peaks[i], starts, length, self.arrays.config.fs)[:, self.columns]

    def fit(self, length: int, hop: int) -> tuple[np.ndarray, np.ndarray]:
        """Set and return the mean and std (F,) of the features of every sliding window
        (``length`` samples, every ``hop``) of these records."""
        from ...data.rhythm import window_starts

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
    ``noise_std`` (in units of the z-scored signal) added, over the whole crop (a short record's
    zero padding too; evaluation pads with exact zeros, at the record's end). With ``features`` (a
    :class:`WindowHRV`), returns ``(crops, features of the crops (B, F))``."""

    def __init__(self, arrays: RhythmArrays, length: int, flip_prob: float = 0.0, noise_std: float = 0.0,
                 features: WindowHRV | None = None) -> None:
        self.arrays, self.length, self.flip_prob, self.noise_std = arrays, length, flip_prob, noise_std
        self.features = features

    def __call__(self, idx: torch.Tensor,
                 generator: torch.Generator) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        from ...data.rhythm import fit_length

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


def rhythm_task(cfg: TrainConfig, dist: DistContext) -> Task:
    """The ``rhythm`` task of ``cfg``: CinC 2017 records in N, A, O and ~, fold ``[data] fold`` of a
    stratified ``folds``-fold split tested, random crops of ``crop_seconds`` (N, 1, L samples at
    ``[data] fs`` Hz) trained on, whole records scored by their sliding windows."""
    from sklearn.model_selection import train_test_split

    from ...data import CINC_CLASSES, HRV_FEATURES, find_database, load_rhythm, predict_records
    from ...data import stratified_kfold
    from ...data.rr import rr_columns

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
    length, hop = trained_length(cfg), round(opts["hop_seconds"] * arrays.config.fs)
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
            probs = predict_records(model, part, opts["crop_seconds"], opts["hop_seconds"], extra=hrv.get(split),
                                    windows_per_call=cfg.eval_batch_size)
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
