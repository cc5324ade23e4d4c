"""Evaluate one checkpoint or several as an ensemble: the mean of their class probabilities.

Several seeds of one config disagree a lot on rare classes (MIT-BIH's S beats:
docs/results.md); their average is steadier than any one of them. The checkpoints must share the task,
its data options (augmentation aside: it only changes training batches) and what was fitted on the
training split (e.g. the RR standardisation), so that one task gives every model the same inputs;
their models, and how they were trained, may differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..models.fuse import fuse_batchnorm
from ..models.tta import with_tta
from ..data.errors import DataError
from ..data.locate import find_database
from .checkpoint import check_compatible, load_checkpoint, load_weights
from .config import TrainConfig
from .configured import checkpoint_config
from .distributed import DistContext
from .engine import check_same_splits, database_folder
from .tasks import DATABASES, Task, build_task, check_tta, evaluation_data


def _config(ckpt: dict, path: Path, data_dir: str | None) -> TrainConfig:
    """The checkpoint's config to evaluate with: its database folder replaced by ``data_dir`` if
    given, and no download (a file someone else made must not send this machine to the network:
    ``msresnet1d download`` fetches the data)."""
    saved = dict(ckpt["config"])
    saved["data"] = dict(saved.get("data") or {})
    if data_dir:
        saved["data"]["data_dir"] = data_dir
    if saved["data"].get("download"):
        saved["data"]["download"] = False
    return checkpoint_config({**ckpt, "config": saved}, f"checkpoint {path}")


def _inputs(cfg: TrainConfig) -> dict:
    """What decides a member's evaluation inputs: the task and its evaluation data options, the
    database as the folder found (a root holding it, or none given, may name the same one)."""
    data = evaluation_data(cfg)
    if data.get("data_dir"):
        folder = database_folder(cfg.task, data["data_dir"])  # None: compared as written; the task build says why
    else:
        try:  # the default places, as the task searches them
            folder = find_database(DATABASES[cfg.task]).resolve() if cfg.task in DATABASES else None
        except DataError:
            folder = None
    if folder is not None:
        data["data_dir"] = str(folder)
    return {"task": cfg.task, "data": data}


def ensemble_predict(checkpoints: Sequence[str | Path], split: str = "test", data_dir: str | None = None,
                     tta: str | None = None, adapt_bn: bool = False) -> tuple[Task, np.ndarray, np.ndarray]:
    """The task, the labels (N,) and the mean class probabilities (N, K) of the checkpoints'
    models on ``split``: :func:`member_predictions` averaged over the models (``data_dir`` and
    ``tta`` as :func:`load_members` takes them, ``adapt_bn`` as :func:`predict_members` does)."""
    task, y_true, members = member_predictions(checkpoints, split, data_dir, tta, adapt_bn)
    return task, y_true, np.mean(members, axis=0)


def member_predictions(checkpoints: Sequence[str | Path], split: str = "test", data_dir: str | None = None,
                       tta: str | None = None, adapt_bn: bool = False) -> tuple[Task, np.ndarray, np.ndarray]:
    """The task, the labels (N,) and each checkpoint's class probabilities (M, N, K) of the
    checkpoints' M models on ``split``: :func:`load_members` (with ``data_dir`` and ``tta``), then
    :func:`predict_members` (with ``tta`` and ``adapt_bn``)."""
    task, members = load_members(checkpoints, data_dir, tta)
    y_true, probabilities = predict_members(task, members, split, tta, adapt_bn)
    return task, y_true, probabilities


def load_members(checkpoints: Sequence[str | Path], data_dir: str | None = None,
                 tta: str | None = None) -> tuple[Task, list[tuple[nn.Module, TrainConfig]]]:
    """The task, built once, and each checkpoint's model (eval mode, on the device) with its config.

    Args:
        checkpoints: one or more checkpoint files written by ``msresnet1d train``.
        data_dir: the database folder, instead of the one in the checkpoints' configs.
        tta: the test-time augmentation the models will be evaluated with, checked against each
            before the data loads (:func:`~msresnet1d.training.tasks.check_tta`); default: each
            member's own config's.

    Raises:
        ValueError: no checkpoint, or one that disagrees with the first on the task, the data
            options (augmentation aside), the class names or the state fitted on the training
            split; a ``tta`` that makes no sense for a member.
    """
    if not checkpoints:
        raise ValueError("an ensemble needs at least one checkpoint")
    from .run import build_model, check_weights_fit

    paths = [Path(p) for p in checkpoints]
    ckpts = [load_checkpoint(p) for p in paths]
    cfgs = [_config(ckpt, path, data_dir) for ckpt, path in zip(ckpts, paths)]
    for cfg in cfgs:
        check_tta(cfg, tta)
    first = cfgs[0]
    first_inputs = _inputs(first)
    for path, ckpt, cfg in zip(paths[1:], ckpts[1:], cfgs[1:]):
        if cfg.task != first.task:
            raise ValueError(f"checkpoint {path} is a {cfg.task!r} model, {paths[0]} a {first.task!r} one: an "
                             "ensemble averages models of one task")
        check_compatible({"config": _inputs(cfg)}, first_inputs, path, ("task", "data"),
                         labels=("it has", f"{paths[0]} has"))
        if ckpt["class_names"] != ckpts[0]["class_names"]:
            raise ValueError(f"checkpoint {path} has classes {ckpt['class_names']}, {paths[0]} has "
                             f"{ckpts[0]['class_names']}")
    for path, ckpt, cfg in zip(paths, ckpts, cfgs):  # before the data load, and before any allocation
        check_weights_fit(ckpt, cfg, f"checkpoint {path}")
    try:
        task = build_task(first, DistContext())
    except DataError as e:
        what = "training images" if first.task == "fashion_mnist" else "training records"
        alone = "" if first.task == "fashion_mnist" else "; to label records alone, use msresnet1d predict"
        raise DataError(f"{e} (evaluate rebuilds the run's splits from its config, {what} too: the statistics "
                        f"fitted on them must match the checkpoint's{alone})") from None
    device = DistContext().device
    members = []
    for path, ckpt, cfg in zip(paths, ckpts, cfgs):
        check_same_splits(ckpt, task, f"checkpoint {path}")
        where = task.splits.get("database", "the data found")
        for key, value in task.state.items():
            saved = ckpt["task_state"].get(key)
            if key.startswith("pixel_"):  # Fashion-MNIST: each seed draws its own training split, so its own
                # statistics (differences ~1e-4; every member reads the first's); older checkpoints have none
                if saved is not None and not torch.allclose(saved, value, rtol=0, atol=1e-3):
                    raise ValueError(f"checkpoint {path}: its {key} {saved.item():.6f} is not this task's "
                                     f"{value.item():.6f} (from {where}): it was trained on other images")
            elif saved is None or not torch.equal(saved, value):
                raise ValueError(f"checkpoint {path}: its {key} (fitted on the training split) differs from "
                                 f"this task's, built from the database in {where}: it "
                                 "was trained on other data (give --data-dir the database it trained on)")
        with torch.random.fork_rng(devices=[]):  # initial weights, replaced at once: none of the caller's draws
            model = build_model(cfg, task)
        load_weights(model, ckpt, f"checkpoint {path}")
        members.append((model.to(device).eval(), cfg))
    return task, members


def predict_members(task: Task, members: Sequence[tuple[nn.Module, TrainConfig]], split: str = "test",
                    tta: str | None = None, adapt_bn: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The labels (N,) and each member's class probabilities (M, N, K) on ``split`` (``"test"`` or
    ``"val"``) of ``task``; members as :func:`load_members` returns them, left unchanged. Each model
    runs with its BatchNorms folded, or with ``adapt_bn`` re-estimated on each record's examples
    (:meth:`Task.predict`).

    Args:
        tta: test-time augmentation (``msresnet1d.models.tta.TTA_MODES``) for every model;
            default: each member's own config's ``tta``.

    Raises:
        ValueError: ``split="val"`` for Fashion-MNIST members of different seeds (each run draws
            its validation images by its seed, so each trained on the others' validation images).
    """
    seeds = sorted({cfg.seed for _, cfg in members if cfg.task == "fashion_mnist"})
    if split == "val" and len(seeds) > 1:
        raise ValueError(f"Fashion-MNIST runs draw their validation images by their seed; these members (seeds "
                         f"{seeds}) trained on each other's validation images: score the test split instead")
    for _, cfg in members:
        check_tta(cfg, tta)
    device = DistContext().device
    probabilities = []
    for model, cfg in members:
        model = model if adapt_bn else fuse_batchnorm(model)
        y_true, p = task.predict(with_tta(model, cfg.tta if tta is None else tta), split, device, adapt_bn)
        probabilities.append(p)
    return y_true, np.stack(probabilities)
