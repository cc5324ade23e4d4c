"""Test-time augmentation: a classifier's probabilities averaged over transformed copies of its input.

Single-lead ECGs from handheld devices (PhysioNet/CinC 2017) are often recorded upside down, so
a rhythm model is trained on sign-flipped crops (``[data] flip_prob``); at test time
:class:`SignFlipAverage` asks the model about both polarities and averages the answers.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from ..training.config import TTA_MODES  # kept with the config's other choices, which need no torch

#: What a wrapper copies from its model: fixed by the architecture (``reset_classifier`` keeps them).
SHAPE_ATTRIBUTES: tuple[str, ...] = ("in_channels", "min_input_size", "total_stride", "extra_features", "dims")


class SignFlipAverage(nn.Module):
    """``model`` asked about ``x`` and ``-x``: the output is the log of the mean of the two
    softmaxes, so its softmax (what evaluation and inference take) is the mean class
    probability of the two views, and its argmax their consensus.

    Input (N, C, L) or (N, C, H, W) and optional extra features ``extra`` (e.g. RR features
    (N, F), passed to both calls unchanged); output (N, K) float32 log-probabilities, finite
    also where a class's probability underflows float32 (a logit gap over about 100). Attributes
    it does not have itself are the wrapped model's (``fc``, ``forward_features``, ...); the
    architecture's shape constants (``in_channels``, ``min_input_size``, ``total_stride``,
    ``extra_features``, ``dims``) are copied onto it, so that ``torch.jit.script`` keeps them and
    whole-record inference (``msresnet1d.inference``) and export run it, scripted or not, like the
    model. It starts in the model's mode (train or eval), so restoring its mode (e.g.
    :func:`msresnet1d.models.modes.evaluating`) restores the model's.
    """

    def __init__(self, model: nn.Module) -> None:
        if getattr(model, "num_classes", None) == 0:
            raise ValueError("SignFlipAverage averages class probabilities, but this model has no classifier "
                             "(num_classes=0, e.g. after reset_classifier(0)): its outputs are features")
        if getattr(model, "task", None) == "regression":
            raise ValueError("SignFlipAverage averages class probabilities, but this model has a regression head "
                             "(out_features): its outputs are values, not logits")
        super().__init__()
        self.model = model
        for name in SHAPE_ATTRIBUTES:
            if hasattr(model, name):
                setattr(self, name, getattr(model, name))
        self.training = model.training  # not train(), which would set every layer of the model to it

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "model":
                raise
            return getattr(self.model, name)

    def set_channels_last(self, enable: bool = True) -> "SignFlipAverage":
        """The wrapped model's :meth:`~msresnet1d.models.base.ResidualNetwork.set_channels_last`;
        returns this wrapper (not the model, which would drop the averaging from a chained call)."""
        self.model.set_channels_last(enable)
        return self

    def forward(self, x: torch.Tensor, extra: Optional[torch.Tensor] = None) -> torch.Tensor:
        views = [self.model(x, extra), self.model(-x, extra)]
        # log(mean(softmax)) as a log-sum-exp of log-softmaxes: finite where a softmax underflows to 0
        return torch.logsumexp(torch.stack([v.float().log_softmax(dim=-1) for v in views]), dim=0) - math.log(2.0)


def with_tta(model: nn.Module, tta: str = "none") -> nn.Module:
    """``model`` for inference with the test-time augmentation ``tta`` (one of
    :data:`TTA_MODES`): itself for ``"none"``, wrapped in :class:`SignFlipAverage` for ``"flip"``."""
    if tta == "none":
        return model
    if tta == "flip":
        return SignFlipAverage(model)
    raise ValueError(f"tta must be one of {TTA_MODES}, got {tta!r}")
