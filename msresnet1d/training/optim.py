"""Optimizers, learning-rate schedules and losses, built from a :class:`TrainConfig`."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .config import TrainConfig


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW or SGD (with ``momentum``). Weight decay applies to weights of convolutions and
    linear layers only, not to biases and norm parameters (the usual practice)."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    return torch.optim.AdamW(groups, lr=cfg.lr)


#: The share of a run that warm-up takes when ``warmup_epochs`` is not shorter than the run.
WARMUP_SHARE = 0.3


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig,
                    steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-step schedule: one-cycle (warm-up fraction = warmup_epochs / epochs; torch's
    ``OneCycleLR``, which also cycles SGD's momentum or AdamW's beta1 from 0.95 down to 0.85 and
    back, against the rate, so a config's ``momentum`` is not used with it: SGD's other than 0.9
    warns), cosine decay after a linear warm-up of ``warmup_epochs``, or constant (also one-cycle's stand-in when a
    run has fewer than 4 steps). A warm-up as long as the run or longer (a recipe shortened with
    ``--epochs``), which would raise the rate until the end, becomes :data:`WARMUP_SHARE` of the
    run (30%, one-cycle's usual share), with a warning."""
    total = cfg.epochs * steps_per_epoch
    warmup_epochs = cfg.warmup_epochs
    warms_up = cfg.schedule == "cosine" or (cfg.schedule == "onecycle" and total >= 4)
    if warms_up and warmup_epochs >= cfg.epochs:
        warmup_epochs = WARMUP_SHARE * cfg.epochs
        run = f"{cfg.epochs} epoch{'s' * (cfg.epochs != 1)}"
        warnings.warn(f"warmup_epochs={cfg.warmup_epochs:g} is not shorter than the run ({run}): the learning rate "
                      f"would rise until the end; warming up over the first {warmup_epochs:g} epochs "
                      f"({WARMUP_SHARE:.0%}) instead. Set warmup_epochs below epochs to choose.", stacklevel=2)
    warmup = min(int(warmup_epochs * steps_per_epoch), total - 1)
    if cfg.schedule == "onecycle" and total >= 4:
        if cfg.optimizer == "sgd" and not math.isclose(cfg.momentum, 0.9, rel_tol=1e-6):  # a float32 0.9 too
            warnings.warn(f"momentum = {cfg.momentum:g} is not used: schedule 'onecycle' cycles SGD's momentum from "
                          "0.95 down to 0.85 and back, against the learning rate (torch's OneCycleLR); for a fixed "
                          "momentum choose schedule 'cosine' or 'constant'", stacklevel=2)
        # OneCycleLR needs at least two steps in each of its rising and falling phases.
        pct = min(max(warmup / total, 2 / total), (total - 2) / total)
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=total, pct_start=pct)
    if cfg.schedule == "cosine":
        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            progress = (step - warmup) / max(total - warmup, 1)
            return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def class_weights(labels: np.ndarray, num_classes: int, kind: str, scored: Sequence[int] | None = None,
                  unscored: str = "rarity") -> torch.Tensor | None:
    """Loss weights from the training labels: 1/frequency or 1/sqrt(frequency), mean 1 over the
    classes present; absent classes get weight 0. ``"none"`` -> None. With ``scored`` (class
    indices) and ``unscored="majority"``, a present class outside ``scored`` gets the weight of
    the most frequent scored class instead of its own (MIT-BIH's Q, 8 DS1 beats, would otherwise
    weigh about 76 times an N beat)."""
    if kind == "none":
        return None
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(num_classes)
    power = 1.0 if kind == "inverse" else 0.5
    weights[present] = 1.0 / counts[present] ** power
    if unscored == "majority" and scored is not None:
        majority = max(scored, key=lambda c: counts[c])
        weights[present & ~np.isin(np.arange(num_classes), scored)] = weights[majority]
    elif unscored != "rarity":
        raise ValueError(f"unscored must be 'rarity' or 'majority' (with scored classes), got {unscored!r}")
    weights[present] /= weights[present].mean()
    return torch.tensor(weights, dtype=torch.float32)


def weighted_cross_entropy(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None,
                           label_smoothing: float = 0.0) -> torch.Tensor:
    """Per-example cross-entropy (N,) against the smoothed target, times the example's class
    weight ``weight[target]``: a class weight says how much that class's examples count, and
    smoothing spreads ``label_smoothing`` of each target evenly over the classes.

    ``F.cross_entropy(weight=..., label_smoothing=...)`` differs: it weights the smoothed part of
    every class c by ``weight[c]``, so a very rare class (MIT-BIH's Q, 8 DS1 beats) pulls every
    example towards it. Without smoothing the two are the same."""
    ce = F.cross_entropy(logits, target, reduction="none", label_smoothing=label_smoothing)
    return ce if weight is None else ce * weight[target]


class CrossEntropyLoss(nn.Module):
    """Class-weighted, label-smoothed cross-entropy (see :func:`weighted_cross_entropy`); the
    batch loss is the weighted mean, as ``nn.CrossEntropyLoss(weight=...)``'s."""

    def __init__(self, weight: torch.Tensor | None = None, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing
        self.register_buffer("weight", weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        losses = weighted_cross_entropy(logits, target, self.weight, self.label_smoothing)
        return losses.mean() if self.weight is None else losses.sum() / self.weight[target].sum()


class FocalLoss(CrossEntropyLoss):
    """Focal loss (Lin et al. 2017): :func:`weighted_cross_entropy` scaled by (1 - p_true)^gamma;
    a plain mean over the batch (as torchvision's ``sigmoid_focal_loss`` with reduction
    ``"mean"``), not :class:`CrossEntropyLoss`'s weighted mean: with class weights the two differ
    by the batch's mean weight even at gamma 0, so the loss's scale follows the batch's classes
    (the recorded focal runs used this mean)."""

    def __init__(self, gamma: float = 2.0, weight: torch.Tensor | None = None, label_smoothing: float = 0.0) -> None:
        super().__init__(weight, label_smoothing)
        self.gamma = gamma

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ce = weighted_cross_entropy(logits, target, self.weight, self.label_smoothing)
        p_true = torch.softmax(logits.float(), dim=1).gather(1, target[:, None]).squeeze(1)
        return ((1 - p_true) ** self.gamma * ce).mean()


def record_sample_weights(records: np.ndarray) -> torch.Tensor:
    """Per-example sampling probabilities (N,), summing to 1, that draw every record (patient)
    equally often: an example has probability 1 / (number of records x its record's count), so
    that a record with 3,000 beats weighs no more in training than one with 1,500. The classes
    are drawn as they come in each record."""
    _, index, counts = np.unique(np.asarray(records), return_inverse=True, return_counts=True)
    if not len(counts):
        raise ValueError("record_sample_weights: no examples")
    return torch.tensor(1.0 / (len(counts) * counts[index]), dtype=torch.float64)


def build_loss(cfg: TrainConfig, labels: np.ndarray, num_classes: int, scored: Sequence[int] | None = None) -> nn.Module:
    """The loss ``cfg`` asks for, class-weighted from the training ``labels``; ``scored``: the
    indices of the classes the task scores (for ``cfg.unscored_weight``)."""
    weight = class_weights(labels, num_classes, cfg.class_weights, scored, cfg.unscored_weight)
    if cfg.loss == "focal":
        return FocalLoss(cfg.focal_gamma, weight, cfg.label_smoothing)
    return CrossEntropyLoss(weight, cfg.label_smoothing)


def warn_double_balancing(cfg: TrainConfig) -> None:
    """Warn when ``cfg`` corrects class imbalance twice: the balanced sampler draws the scored
    classes equally often, and ``class_weights`` then weighs their rare examples up again."""
    if cfg.balanced_sampler and cfg.class_weights != "none":
        warnings.warn(f"balanced_sampler draws the classes equally often and class_weights = {cfg.class_weights!r} "
                      "weighs the rare ones up again: the imbalance is corrected twice, so the rarest classes "
                      "dominate the loss; set class_weights = \"none\" for the sampler alone", stacklevel=2)


def balanced_sample_weights(labels: np.ndarray, classes: Sequence[int] | None = None) -> torch.Tensor:
    """Per-example sampling probabilities (N,), summing to 1, that draw each of ``classes``
    (default: every class present) equally often: an example of one has probability ~ 1 / its
    class's count. Examples of the other classes keep their natural share, 1 / N each, so that an
    unscored class with a handful of examples (MIT-BIH's Q: 8 DS1 beats) is not drawn as often as
    each scored one."""
    labels = np.asarray(labels)
    counts = np.bincount(labels)
    balanced = np.flatnonzero(counts) if classes is None else np.intersect1d(np.flatnonzero(counts), classes)
    if not len(balanced):
        raise ValueError(f"balanced_sample_weights: none of the classes {list(classes or [])} is in the labels")
    weights = np.full(len(labels), 1.0 / len(labels))
    chosen = np.isin(labels, balanced)
    weights[chosen] = (1.0 - weights[~chosen].sum()) / len(balanced) / counts[labels[chosen]]
    return torch.tensor(weights, dtype=torch.float64)
