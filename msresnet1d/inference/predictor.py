"""What the inference loops run: a :class:`Predictor` maps a batch of windows to logits.

A predictor takes windows (N, C, L) float32 (N windows, C channels, L samples) and optional
per-window extra features (N, E) float32, and returns logits (N, K) float32, all numpy. Eager
and TorchScript models are wrapped by :class:`TorchPredictor`; an exported ONNX model loaded
with :class:`msresnet1d.export.OnnxPredictor` is a predictor as it is.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from ..models.modes import evaluating

#: Attributes a model needs to be run by :class:`TorchPredictor`.
_MODEL_ATTRIBUTES = ("in_channels", "min_input_size", "extra_features")


@runtime_checkable
class Predictor(Protocol):
    """A 1D classifier run on numpy batches.

    Attributes:
        in_channels: channels C of the windows.
        extra_features: per-window extra features E (e.g. RR intervals); 0 for none.
        min_input_size: shortest window length L the model accepts, in samples.
        num_outputs: logits K per window.
    """

    in_channels: int
    extra_features: int
    min_input_size: int
    num_outputs: int

    def predict(self, x: np.ndarray, extra: np.ndarray | None = None) -> np.ndarray:
        """(N, C, L) float32 windows and (N, E) float32 extra features or ``None`` -> (N, K) float32 logits."""
        ...


class TorchPredictor:
    """An eager or scripted msresnet1d 1D model as a :class:`Predictor`: run in eval mode, without
    autograd, on the device of its parameters.

    The model must have the attributes ``in_channels``, ``min_input_size`` and
    ``extra_features``: every 1D model of :func:`msresnet1d.create_model` has them, and
    :class:`~msresnet1d.models.tta.SignFlipAverage` around one, also after ``torch.jit.script``
    and ``torch.jit.load``; a ``torch.jit.trace`` result does not. ``num_outputs`` comes from one
    call on a zero input of the minimum length.

    Raises:
        ValueError: an attribute is missing, or the model is not 1D.
    """

    def __init__(self, model: nn.Module) -> None:
        missing = [name for name in _MODEL_ATTRIBUTES if not hasattr(model, name)]
        if missing:
            raise ValueError(
                f"model {type(model).__name__} has no attribute {', '.join(missing)}; whole-record inference needs "
                f"{', '.join(_MODEL_ATTRIBUTES)} (traced TorchScript loses them: script the model instead, or export "
                "it to ONNX and load it with msresnet1d.export.OnnxPredictor)"
            )
        if getattr(model, "dims", 1) != 1:
            raise ValueError(f"whole-record inference needs a 1D model (input (N, C, L)), got dims={model.dims}")
        self.model = model
        self.in_channels = int(model.in_channels)
        self.min_input_size = int(model.min_input_size)
        self.extra_features = int(model.extra_features)
        like = next(model.parameters(), torch.zeros(()))  # a model without parameters: float32 on the CPU
        self.device, self.dtype = like.device, like.dtype  # float32 inputs are cast to the model's dtype
        self.num_outputs = self.predict(np.zeros((1, self.in_channels, max(self.min_input_size, 1)), np.float32),
                                        np.zeros((1, self.extra_features), np.float32) if self.extra_features else None
                                        ).shape[1]

    def predict(self, x: np.ndarray, extra: np.ndarray | None = None) -> np.ndarray:
        """(N, C, L) float32 windows, (N, E) float32 extra features or ``None`` -> (N, K) float32 logits."""
        inputs = [torch.from_numpy(x).to(self.device, self.dtype)]
        if extra is not None:
            inputs.append(torch.from_numpy(extra).to(self.device, self.dtype))
        with torch.inference_mode(), evaluating(self.model):
            return self.model(*inputs).float().cpu().numpy()


def as_predictor(model: nn.Module | Predictor) -> Predictor:
    """``model`` as a :class:`Predictor`: an ``nn.Module`` (eager or TorchScript) is wrapped in
    :class:`TorchPredictor`, a predictor is returned as it is.

    Raises:
        TypeError: ``model`` is neither.
    """
    if isinstance(model, nn.Module):
        return TorchPredictor(model)
    if isinstance(model, Predictor):
        return model
    raise TypeError(
        f"model must be a torch.nn.Module or a Predictor (such as msresnet1d.export.OnnxPredictor), "
        f"got {type(model).__name__}"
    )
