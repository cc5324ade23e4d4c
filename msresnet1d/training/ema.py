"""Exponential moving average of a model's weights, the model that validation and test then run.

The weights at the end of an epoch are one noisy point of the optimisation path; their moving
average over the last few hundred steps is steadier, and so is the epoch that validation picks.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class WeightEMA:
    """A copy of ``model`` holding the moving average of its parameters and BatchNorm statistics.

    After optimizer step t, ``update`` sets ``average <- d * average + (1 - d) * weights`` with
    ``d = min(decay, (1 + t) / (10 + t))``: the warm-up keeps the first steps from being
    dominated by the initial weights (TensorFlow's ExponentialMovingAverage with num_updates).
    Integer buffers (BatchNorm's batch counter) are copied. With ``decay`` d the average spans
    about 1 / (1 - d) steps.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"ema_decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for average, current in zip(self.module.state_dict().values(), model.state_dict().values(), strict=True):
            if average.dtype.is_floating_point:
                average.lerp_(current, 1 - d)
            else:
                average.copy_(current)

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
