"""The ``fashion_mnist`` task: the textbook image baseline, validation images held out from the
60,000 training images, the 10,000 test images tested."""

from __future__ import annotations

import torch

from ...data.loader import TensorBatchLoader
from ..config import TrainConfig
from ..distributed import DistContext
from ..optim import balanced_sample_weights
from .base import Task, array_predictor
from .options import resolve_data


def fashion_task(cfg: TrainConfig, dist: DistContext) -> Task:
    """The ``fashion_mnist`` task of ``cfg``: images (N, 1, S, S), S = ``[data] resize`` or 28,
    ``val_size`` of the 60,000 training images held out (drawn by ``cfg.seed``), the others trained
    on (the first ``train_size`` of them in that draw, when set: a quick run of a recipe), the
    10,000 test images tested."""
    from ...data.fashion_mnist import CLASS_NAMES, ImageBatchTransform, load_fashion_mnist, pixel_mean_std

    opts = resolve_data(cfg).data
    images, labels = load_fashion_mnist(opts["data_dir"], "train", opts["download"])
    test_images, test_labels = load_fashion_mnist(opts["data_dir"], "test", opts["download"])
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(cfg.seed))
    val_idx, fit_idx = order[:opts["val_size"]], order[opts["val_size"]:]
    fit_idx = fit_idx[:opts["train_size"]]  # None: all of them
    mean, std = pixel_mean_std(images[fit_idx]) if opts["normalize"] == "standardize" else (0.0, 1.0)
    augment = ImageBatchTransform(opts["resize"], mean, std, opts["crop_padding"], opts["hflip"], opts["erase_prob"])
    plain = ImageBatchTransform(opts["resize"], mean, std)
    weights = balanced_sample_weights(labels[fit_idx].numpy()) if cfg.balanced_sampler else None
    loader = TensorBatchLoader(images[fit_idx], labels[fit_idx], cfg.batch_size, shuffle=True, transform=augment,
                               seed=cfg.seed, sample_weights=weights, rank=dist.rank, world_size=dist.world_size)
    evaluate = lambda x: plain(x, torch.Generator())  # noqa: E731 - deterministic transform
    predictors = {"test": array_predictor([test_images], test_labels.numpy(), cfg.eval_batch_size, evaluate)}
    if len(val_idx):
        predictors["val"] = array_predictor([images[val_idx]], labels[val_idx].numpy(), cfg.eval_batch_size,
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
