"""A model's training/eval mode, switched for a block of code and restored after it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Run the block with ``model`` in eval mode (BatchNorm running statistics, no dropout),
    then restore the mode each of its modules had, also when the block raises (a model being
    fine-tuned with some layers frozen in eval mode keeps them so)."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training
