"""Test-time BatchNorm adaptation (AdaBN: Li et al., "Adaptive batch normalization for practical
domain adaptation", Pattern Recognition 80, 2018).

In eval mode a BatchNorm normalises with the mean and variance its input had over the training
set. When the test examples come from another domain (in MIT-BIH inter-patient evaluation,
another patient), those statistics can be re-estimated on the domain's own unlabeled inputs:
the weights stay as trained, only the running mean and variance change. No labels are read.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Iterator, Sequence

import torch
from torch import nn

from .fuse import _NORMS
from ..values import is_whole


def adapt_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor | Sequence[torch.Tensor]]) -> nn.Module:
    """An eval-mode copy of ``model`` whose BatchNorm running statistics are those of ``batches``.

    Each BatchNorm's running mean and variance are reset and re-estimated as the cumulative
    average over the batches (``momentum=None``), with only the BatchNorms in training mode
    (dropout and modality dropout stay off). ``model`` itself is not changed.

    Args:
        model: a model with BatchNorm layers that track running statistics.
        batches: the target domain's inputs, each a tensor x (N, C, L) or a sequence of the
            model's positional arguments, e.g. ``(x, extra)`` with extra (N, E).
            Batches of equal size weigh equally; shuffle the examples first if their order drifts.

    Raises:
        ValueError: ``model`` has no such BatchNorm, ``batches`` is empty, or a batch holds
            other than the model's arguments (e.g. a labelled loader's ``(x, y)``).
        TypeError: a batch is not a tensor or a sequence of tensors (a numpy array, say).
    """
    adapted = copy.deepcopy(model).eval()
    norms = [m for m in adapted.modules() if isinstance(m, _NORMS) and m.track_running_stats]
    if not norms:
        raise ValueError(f"{type(model).__name__} has no BatchNorm layer with running statistics to adapt "
                         "(a model with its BatchNorms folded into the convolutions cannot be adapted)")
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    seen = 0
    with torch.no_grad():
        for batch in batches:
            adapted(*_arguments(batch, seen, getattr(model, "extra_features", None)))
            seen += 1
    if not seen:
        raise ValueError("adapt_batchnorm got no batches: the target domain has no examples")
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return adapted.eval()


def _arguments(batch: object, index: int, extra_features: int | None) -> tuple[torch.Tensor, ...]:
    """The model's positional arguments in ``batch`` (a tensor x, or a sequence ``(x, extra)``)."""
    arguments = (batch,) if isinstance(batch, torch.Tensor) else batch
    if not isinstance(arguments, (list, tuple)) or not all(isinstance(a, torch.Tensor) for a in arguments):
        raise TypeError(f"batch {index}: expected a tensor x or a sequence (x, extra) of tensors, got "
                        f"{type(batch).__name__}" + (" (convert it with torch.from_numpy)"
                                                      if type(batch).__module__ == "numpy" else ""))
    expected = None if extra_features is None else 1 + (extra_features > 0)
    if expected is not None and len(arguments) != expected:
        hint = ("x alone: this model takes no extra features, and a labelled loader's (x, y) gives labels, which "
                "adaptation does not read" if expected == 1 else f"(x, extra) with extra (N, {extra_features})")
        raise ValueError(f"batch {index} holds {len(arguments)} tensors; give {hint}")
    return tuple(arguments)


def shuffled_chunks(tensors: Sequence[torch.Tensor], batch_size: int, seed: int = 0) -> Iterator[list[torch.Tensor]]:
    """One domain's examples (each tensor (N, ...), the model's positional inputs) for
    :func:`adapt_batchnorm`: in a fixed shuffled order (``seed``), in the fewest chunks of at most
    ``batch_size`` examples, k = ceil(N / batch_size), each of ceil(N / k) but the last, which may
    hold up to k - 1 fewer (N = 70, batch_size 32: 24, 24, 22), so that every chunk weighs about as
    much.

    Raises:
        ValueError: no tensor, tensors of different lengths N, no example, or ``batch_size`` < 1.
    """
    if not tensors or len({len(t) for t in tensors}) != 1:
        raise ValueError(f"shuffled_chunks: give tensors of one length N, got lengths {[len(t) for t in tensors]}")
    if not (is_whole(batch_size) and batch_size >= 1):
        raise ValueError(f"shuffled_chunks: batch_size must be a whole number >= 1, got {batch_size!r}")
    n = len(tensors[0])
    if n == 0:
        raise ValueError("shuffled_chunks: no examples (N = 0): nothing to adapt to")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    chunk = math.ceil(n / math.ceil(n / batch_size))
    return ([t[order[start:start + chunk]] for t in tensors] for start in range(0, n, chunk))  # checked up front
