"""The textbook's layer-by-layer shape printout, generalised, and a FLOP count."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from .base import ResidualNetwork
from ..values import is_whole
from .modes import evaluating
from .tta import SignFlipAverage

#: The name of the row :func:`summary` adds for the global pooling inside ``forward_head``.
POOL_ROW = "(global average pool)"


def _input_shape(input_shape: Sequence[int] | torch.Tensor) -> tuple[int, ...]:
    """A shape, or an example input's (d2l passes ``torch.rand(1, 1, 224, 224)``), as a tuple of ints."""
    if isinstance(input_shape, torch.Tensor):
        return tuple(input_shape.shape)
    shape = tuple(input_shape) if isinstance(input_shape, Sequence) and not isinstance(input_shape, str) else None
    if not shape or not all(is_whole(n) and n >= 1 for n in shape):
        raise ValueError(f"input_shape must be a shape such as (1, 1, 360) = (N, C, L) or (1, 1, 224, 224) = "
                         f"(N, C, H, W), or an example input tensor; got {input_shape!r}")
    return tuple(int(n) for n in shape)


def _check_model(model: object, function: str) -> None:
    """A TypeError naming ``function`` unless ``model`` is a module (a model's name, say)."""
    if not isinstance(model, nn.Module):
        shown = f" {model!r:.40}" if isinstance(model, str) else ""
        raise TypeError(f"{function}: model must be a torch.nn.Module, got {type(model).__name__}{shown} (build one "
                        "with msresnet1d.models.create_model(name))")


def _run_with_hooks(model: nn.Module, input_shape: Sequence[int] | torch.Tensor, modules: dict[str, nn.Module],
                    hook) -> None:
    input_shape = _input_shape(input_shape)
    handles = [m.register_forward_hook(hook(name)) for name, m in modules.items()]
    try:
        param = next(model.parameters(), None)
        like = {"dtype": param.dtype, "device": param.device} if param is not None else {}
        x = torch.zeros(*input_shape, **like)
        extra = getattr(model, "extra_features", 0)
        inputs = (x, torch.zeros(input_shape[0], extra, **like)) if extra else (x,)
        with torch.no_grad(), evaluating(model):
            model(*inputs)
    finally:
        for h in handles:
            h.remove()


def summary(model: nn.Module, input_shape: Sequence[int] | torch.Tensor, depth: int = 2,
            print_fn: Callable[[str], object] = print) -> list[tuple[str, tuple, int]]:
    """Print, for each layer down to ``depth`` levels, its type, output shape and parameter count.

    ``input_shape`` includes the batch, e.g. (1, 1, 360) or (1, 1, 224, 224) (or an example input
    tensor, whose shape alone is used: the layers run on zeros); a model with extra
    per-example features gets zeros for them. The networks here pool globally inside
    ``forward_head``: a ``(global average pool)`` row shows its (N, F) output. A 1D model in
    channels-last mode runs its layers on (N, C, 1, L); its shapes are shown as (N, C, L).
    Returns the rows as (name, output shape, parameters); the pooling row's name,
    :data:`POOL_ROW`, is no module's. A module run twice in one forward shows its first output;
    a :class:`~msresnet1d.models.tta.SignFlipAverage` (test-time augmentation, which runs its
    model on ``x`` and ``-x``) is shown as the model it wraps, whose output shape it keeps.
    """
    _check_model(model, "summary")
    if not is_whole(depth) or depth < 1:
        raise ValueError(f"summary: depth must be a whole number >= 1 (levels of layers shown), got {depth!r}")
    if not callable(print_fn):
        raise TypeError(f"summary: print_fn must be callable (print, a logger's info, ...), got {print_fn!r:.40}")
    if isinstance(model, SignFlipAverage):
        model = model.model
    modules = {name: m for name, m in model.named_modules() if name and name.count(".") < depth}
    rows: list[tuple[str, tuple, int]] = []
    recorded: set[str] = set()
    squeeze = getattr(model, "dims", 0) == 1 and getattr(model, "channels_last", False)

    def hook(name: str):
        def record(module: nn.Module, inputs, output) -> None:
            if isinstance(output, torch.Tensor) and name not in recorded:
                recorded.add(name)
                shape = tuple(output.shape)
                if squeeze and len(shape) == 4 and shape[2] == 1:
                    shape = shape[:2] + shape[3:]
                rows.append((name, shape, sum(p.numel() for p in module.parameters())))
        return record

    _run_with_hooks(model, input_shape, modules, hook)
    order = {name: i for i, name in enumerate(modules)}
    rows.sort(key=lambda row: order[row[0]])  # hooks fire children first; print parents first
    types = {name: type(m).__name__ for name, m in modules.items()}
    stages = [i for i, (name, _, _) in enumerate(rows) if name.split(".")[0] == "stages"]
    if isinstance(model, ResidualNetwork) and stages:
        pooled = (rows[stages[-1]][1][0], model.num_features)
        rows.insert(stages[-1] + 1, (POOL_ROW, pooled, 0))
        types[POOL_ROW] = "mean over " + ("L" if model.dims == 1 else "H, W")
    width = max([len("layer")] + [len(n) + 2 * n.count(".") for n, _, _ in rows])
    kind = max([len("type")] + [len(types[n]) for n, _, _ in rows])
    print_fn(f"{'layer':<{width}}  {'type':<{kind}}  {'output shape':<24}{'params':>12}")
    for name, shape, params in rows:
        label = "  " * name.count(".") + name
        print_fn(f"{label:<{width}}  {types[name]:<{kind}}  {str(shape):<24}{params:>12,}")
    total = sum(p.numel() for p in model.parameters())
    print_fn(f"{'total':<{width}}  {'':<{kind}}  {'':<24}{total:>12,}")
    return rows


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not) of ``model``."""
    _check_model(model, "count_parameters")
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, input_shape: Sequence[int] | torch.Tensor) -> int:
    """Forward FLOPs (2 x multiply-accumulates of convolutions and linear layers) for one input
    of ``input_shape`` (batch included). BN, activations and pooling are not counted."""
    _check_model(model, "count_flops")
    macs = 0
    layers = {name: m for name, m in model.named_modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))}

    def hook(name: str):
        def record(module: nn.Module, inputs, output) -> None:
            nonlocal macs
            if isinstance(module, nn.Linear):
                macs += output.numel() * module.in_features
            else:
                per_output = module.in_channels // module.groups
                for k in module.kernel_size:
                    per_output *= k
                macs += output.numel() * per_output
        return record

    _run_with_hooks(model, input_shape, layers, hook)
    return 2 * macs
