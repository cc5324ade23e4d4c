"""The model a training config builds: ``cfg.model`` with ``cfg.model_kwargs`` on the inputs and
classes its task gives, the config with every model option recorded (:func:`resolve_model`), and
a checkpoint's config as the commands read it (:func:`checkpoint_config`)."""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import __version__
from ..models import ResidualNetwork, create_model
from .config import TrainConfig, from_source
from .tasks import check_data, model_inputs, resolve_data, task_classes

#: Model options the task sets from its data: a config cannot set them in [model_kwargs].
TASK_SETS = ("in_channels", "num_classes", "extra_features", "out_features")


def create_configured_model(cfg: TrainConfig, in_channels: int, num_classes: int,
                            extra_features: int = 0) -> ResidualNetwork:
    """The config's model (``cfg.model`` with ``cfg.model_kwargs``, in channels-last mode when
    ``cfg.channels_last``) for these input channels, classes and extra per-example features.

    Raises:
        ValueError: naming the model and its ``[model_kwargs]``: an unknown option, a value of the
            wrong kind or out of range, or a model torch cannot allocate."""
    kwargs: dict[str, Any] = {"in_channels": in_channels, "num_classes": num_classes}
    if extra_features:
        kwargs["extra_features"] = extra_features
    taken = sorted(set(cfg.model_kwargs) & {*TASK_SETS})
    if taken:
        raise ValueError(f"config: [model_kwargs] {', '.join(taken)}: set by the task (here in_channels={in_channels}, "
                         f"num_classes={num_classes}, extra_features={extra_features}, a classification head): "
                         "remove the key (the data choose them: for ECG, the leads, classes and [data] rr)")
    try:
        model = create_model(cfg.model, **{**kwargs, **cfg.model_kwargs})
    except (TypeError, ValueError, RuntimeError) as e:  # an unknown option, a value of the wrong kind, a bad
        # value, or sizes torch cannot allocate (a tensor's size past its 64-bit count, or the memory)
        raise ValueError(f"config: model {cfg.model!r} with [model_kwargs] {cfg.model_kwargs}: {e}") from None
    return model.set_channels_last(cfg.channels_last)


def resolve_model(cfg: TrainConfig, check_memory: bool = False) -> TrainConfig:
    """``cfg`` with its ``[model_kwargs]`` completed with every option the model is built with,
    the preset's and the model class's defaults included (as ``[data]`` is by ``resolve_data``), so
    that a run's config.json and checkpoints record them all: a later change of a default does
    not change the model an old checkpoint builds. The options the task sets (:data:`TASK_SETS`)
    stay out. ``cfg`` is kept as it is for a model whose options cannot be recorded so: its
    factory records no arguments (it does not build through ``ResidualNetwork.with_arguments``),
    one is not a JSON value, or the factory does not take them all back to build the same model (a
    user's factory that wraps a preset and sets some itself). Idempotent; the model is built on
    the meta device (no memory, no random numbers): twice, once to learn its options and once to
    check that they build it, or once for a config that records them all already (a run's).
    ``check_memory``: also refuse a model whose training cannot fit in this machine's memory
    (:func:`check_training_memory`), as :func:`~.run.check_config` does.

    Raises:
        ValueError: the model cannot be built from the config (see :func:`create_configured_model`),
            or, with ``check_memory``, cannot be trained in this machine's memory.
    """
    arguments = _arguments(cfg, check_memory)
    if not arguments:
        return cfg
    try:
        options = json.loads(json.dumps({key: value for key, value in arguments.items() if key not in TASK_SETS}))
        resolved = dataclasses.replace(cfg, model_kwargs=options)  # lists, as config.json reads them
        # options that are cfg's own (a run's config) were just built with: no second build
        same = options == cfg.model_kwargs or \
            json.dumps(_arguments(resolved), sort_keys=True) == json.dumps(arguments, sort_keys=True)
    except (TypeError, ValueError):  # not JSON, or the factory refuses what it recorded
        return cfg
    return resolved if same else cfg


def same_model_call(a: TrainConfig, b: TrainConfig) -> bool:
    """Whether configs ``a`` and ``b`` build their models by the same call (the same task, model,
    ``[model_kwargs]`` and inputs, :func:`~.tasks.model_inputs`): :func:`resolve_model` completes
    them alike, so when one is its answer, the other is complete as it is."""
    return (a.task, a.model, a.model_kwargs, model_inputs(a)) == (b.task, b.model, b.model_kwargs, model_inputs(b))


def _arguments(cfg: TrainConfig, check_memory: bool = False) -> dict[str, Any]:
    """The ``arguments`` of the model ``cfg`` builds (on the meta device), ``{}`` if it keeps none;
    ``check_memory``: :func:`check_training_memory` of that model first."""
    in_channels, extra = model_inputs(cfg)
    with torch.device("meta"):
        model = create_configured_model(cfg, in_channels, len(task_classes(cfg.task)), extra)
    if check_memory:
        check_training_memory(model, cfg)
    return getattr(model, "arguments", None) or {}


def usable_memory() -> int | None:
    """The memory this process may use, in bytes: this machine's, or its container's limit where
    that is lower (Linux cgroups, :func:`cgroup_memory_limit`); None where the system says neither
    (Windows)."""
    try:
        machine = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        machine = None
    known = [n for n in (machine, cgroup_memory_limit()) if n is not None]
    return min(known) if known else None


def cgroup_memory_limit(cgroups: Path = Path("/proc/self/cgroup"), root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """The lowest memory limit, in bytes, of this process's control group and the groups above it
    (cgroups v2's ``memory.max``, v1's ``memory.limit_in_bytes``: a container's or a job
    scheduler's limit); None without one (no limit set, not Linux, or the files unreadable).
    ``cgroups`` lists this process's groups, ``root`` is where the cgroup file system is mounted."""
    try:
        lines = cgroups.read_text().splitlines()
    except OSError:
        return None
    limits = []
    for line in lines:
        if line.count(":") < 2:
            continue
        _, controllers, group = line.split(":", 2)
        if controllers == "":  # v2, one hierarchy: <root>/<group>/memory.max
            base, name = root, "memory.max"
        elif "memory" in controllers.split(","):  # v1: <root>/memory/<group>/memory.limit_in_bytes
            base, name = root / "memory", "memory.limit_in_bytes"
        else:
            continue
        parts = [part for part in Path(group).parts if part != "/"]
        for depth in range(len(parts) + 1):  # the group and each above it (in a container: often only "/")
            try:
                value = (base.joinpath(*parts[:depth]) / name).read_text().strip()
            except (OSError, ValueError):
                continue
            if value.isdigit() and int(value) < 2**62:  # else no limit: "max" (v2), about 2**63 (v1)
                limits.append(int(value))
    return min(limits) if limits else None


def check_training_memory(model: nn.Module, cfg: TrainConfig) -> None:
    """Raise ValueError, naming the config's model, when the copies of ``model``'s weights that
    training with ``cfg`` keeps (the weights, their gradients, AdamW's two moments, the moving
    average of ``ema_decay``) alone exceed :func:`usable_memory`. ``model`` may be on the meta
    device: only its parameters' sizes are read. Such a run would otherwise load its data, then
    swap until the system stopped it (Linux's out-of-memory killer, without a message)."""
    memory = usable_memory()
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    kept = {"the weights": 1, "their gradients": 1}
    if cfg.optimizer == "adamw":
        kept["AdamW's 2 moments"] = 2
    if cfg.ema_decay > 0:
        kept["the moving average"] = 1
    copies = sum(kept.values())
    if memory is not None and copies * weights > memory:
        count = sum(p.numel() for p in model.parameters())
        raise ValueError(f"config: model {cfg.model!r} with [model_kwargs] {cfg.model_kwargs} has {count:,} "
                         f"parameters ({weights / 2**30:.1f} GiB): training keeps {copies} copies of them "
                         f"({', '.join(kept)}), {copies * weights / 2**30:.1f} GiB, more than the "
                         f"{memory / 2**30:.1f} GiB of memory this process may use: choose smaller widths or fewer "
                         "blocks")


def checkpoint_config(ckpt: dict[str, Any], source: str = "the checkpoint") -> TrainConfig:
    """The config of a checkpoint as :func:`~.checkpoint.load_checkpoint` returns it, its
    ``[data]`` and ``[model_kwargs]`` completed (:func:`~.tasks.resolve_data`,
    :func:`resolve_model`), checked against its ``task_state``: a model with extra (RR) features
    needs the ``rr_mean`` and ``rr_std`` its inputs are standardised with. A checkpoint written by
    another release of msresnet1d (its ``code``) warns, naming both releases.

    Its ``class_names`` must be the task's classes, in their order, and its ``rr_mean`` and
    ``rr_std`` (E,) floating-point tensors for the model's E extra features, finite, the
    deviations > 0.

    Raises:
        ValueError: naming ``source``, and both releases if they differ: a config this version
            cannot read (an unknown key or model option, a bad value), class names other than the
            task's, or statistics missing or not as above (naming the key).
    """
    written = str(ckpt.get("code", "")).split("+")[0]
    other_release = f" (written by msresnet1d {written}; this is {__version__})" if written not in ("", __version__) \
        else ""
    if other_release:
        warnings.warn(f"{source} was written by msresnet1d {written}; this is {__version__}: the code that "
                      "prepares its inputs may have changed since")  # said once a source, however many calls
    try:
        cfg = TrainConfig.from_dict(ckpt["config"])
        check_data(cfg)  # types and ranges: a data_dir that is no path, say, is named here, not in pathlib
        cfg = resolve_model(resolve_data(cfg))
    except ValueError as e:
        raise ValueError(from_source(e, source) + other_release) from None
    classes = list(task_classes(cfg.task))
    if ckpt["class_names"] != classes:  # its outputs would be named otherwise than the model was trained on
        raise ValueError(f"{source}: its class_names are {ckpt['class_names']}; a {cfg.task} model's classes are "
                         f"{classes}, in that order (msresnet1d train writes them so: an edited file?){other_release}")
    extra = model_inputs(cfg)[1]
    missing = [key for key in ("rr_mean", "rr_std") if extra and key not in ckpt["task_state"]]
    if missing:
        raise ValueError(f"{source}: its task_state has no {' or '.join(missing)}, the statistics its model's extra "
                         f"(RR) features are standardised with (msresnet1d train writes them){other_release}")
    for key in ("rr_mean", "rr_std") if extra else ():
        problem = _statistics_problem(ckpt["task_state"][key], extra, positive=key == "rr_std")
        if problem:
            raise ValueError(f"{source}: its task_state {key} {problem} (msresnet1d train writes them so: an edited "
                             f"file?){other_release}")
    return cfg


def _statistics_problem(values: torch.Tensor, extra: int, positive: bool) -> str | None:
    """What in ``values``, a mean (or with ``positive`` a standard deviation) of each of a model's
    ``extra`` features, is not as training writes it: a (extra,) floating-point tensor, finite
    (and > 0), or None."""
    if tuple(values.shape) != (extra,):
        return (f"has shape {tuple(values.shape)}, not ({extra},): one value for each of the model's {extra} "
                "extra (RR) features")
    if not values.is_floating_point():
        return f"holds {str(values.dtype).removeprefix('torch.')} values, not floating-point ones"
    bad = ~torch.isfinite(values) | (values <= 0 if positive else False)
    if bad.any():
        first = int(bad.nonzero()[0, 0])
        what = "a standard deviation must be finite and > 0" if positive else "a mean must be finite"
        return f"holds {float(values[first])} at {first}: {what}"
    return None
