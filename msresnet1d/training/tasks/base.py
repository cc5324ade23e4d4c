"""The :class:`Task` that every task builder returns, and the batched predictor of examples held
in memory (MIT-BIH beats, Fashion-MNIST images)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np
import torch
from torch import nn

from ...data.loader import TensorBatchLoader
from ...models.modes import evaluating


class SplitPredictor(Protocol):
    """``f(model, device, adapt_bn=False) -> (labels (N,), probabilities (N, K))`` of one split."""

    def __call__(self, model: nn.Module, device: torch.device,
                 adapt_bn: bool = False) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass
class Task:
    """Everything the engine needs to know about the data.

    Attributes:
        train: training batches ``(x, y)`` or ``(x, extra, y)``; has ``set_epoch`` and ``len``.
        train_labels: (N,) int labels of the training examples (class weights, sampler).
        class_names / scored: all class names, and those averaged in macro figures.
        in_channels / input_size / extra_features / dims: what the model must accept
            (dims 1: signals (N, C, L); 2: images (N, C, H, W)).
        predictors: ``{"val": f, "test": f}``, each ``f(model, device) -> (y_true, probabilities)``.
        splits: what each split holds (record names, counts), stored with the metrics.
        groups: ``{split: (N,) array}``, the record of each example where examples come from
            records (beats), in the order the split's predictor returns them.
        test_title: a heading for the results table.
        strip: for ECG beat tasks, what the strip plot needs (``msresnet1d.training.plots``).
        state: tensors fitted on the training split that inference needs again (e.g. the RR
            feature means and standard deviations); saved in every checkpoint.
    """

    train: TensorBatchLoader
    train_labels: np.ndarray
    class_names: list[str]
    scored: list[str]
    in_channels: int
    input_size: int
    extra_features: int
    predictors: dict[str, SplitPredictor]
    splits: dict[str, Any]
    test_title: str
    dims: int = 1
    strip: dict[str, Any] | None = None
    state: dict[str, torch.Tensor] = field(default_factory=dict)
    groups: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def has_validation(self) -> bool:
        return "val" in self.predictors

    def predict(self, model: nn.Module, split: str, device: torch.device,
                adapt_bn: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The labels (N,) and class probabilities (N, K) of ``split``. With ``adapt_bn``, each record's
        examples are predicted with BatchNorm statistics re-estimated on that record (beat tasks only;
        ``msresnet1d.models.adapt``): ``model`` must still have its BatchNorms."""
        if split not in self.predictors:
            why = ": its run held out no validation data ([data] val_records, val_fraction or val_size 0)" \
                if split == "val" else ""
            raise ValueError(f"this task has no {split!r} split (has {sorted(self.predictors)}){why}")
        if adapt_bn:
            if split not in self.groups:
                raise ValueError(f"per-record BatchNorm adaptation needs several examples of each record (MIT-BIH "
                                 f"beats); this task's {split!r} split has one example a record or none (for one CinC "
                                 "record, msresnet1d predict --adapt-bn adapts to its windows)")
            return self.predictors[split](model, device, adapt_bn=True)
        return self.predictors[split](model, device)


def array_predictor(inputs: list[torch.Tensor], labels: np.ndarray, batch_size: int,
                     transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                     groups: np.ndarray | None = None) -> SplitPredictor:
    """``predict(model, device, adapt_bn=False)``: softmax probabilities of ``inputs`` (the model's
    positional arguments, N examples each) in batches. With ``adapt_bn``, each group of examples
    (``groups``: (N,), e.g. the record of each beat) is predicted by its own copy of the model whose
    BatchNorm statistics were re-estimated on that group's inputs (:func:`adapt_batchnorm`)."""
    def batches(tensors: list[torch.Tensor], device: torch.device, size: int):
        for start in range(0, len(tensors[0]), size):
            batch = [t[start:start + size] for t in tensors]
            if transform is not None:
                batch[0] = transform(batch[0])
            yield [b.to(device) for b in batch]

    def probabilities(model: nn.Module, tensors: list[torch.Tensor], device: torch.device) -> torch.Tensor:
        with evaluating(model), torch.inference_mode():
            return torch.cat([torch.softmax(model(*b).float(), dim=1).cpu() for b in batches(tensors, device,
                                                                                                batch_size)])

    def predict(model: nn.Module, device: torch.device, adapt_bn: bool = False) -> tuple[np.ndarray, np.ndarray]:
        if not adapt_bn:
            return labels, probabilities(model, inputs, device).numpy()
        from ...models.adapt import adapt_batchnorm, shuffled_chunks

        parts = []
        for group in dict.fromkeys(groups.tolist()):  # in order of appearance
            index = torch.from_numpy(np.flatnonzero(groups == group))
            part = [t[index] for t in inputs]
            chunks = shuffled_chunks(part, batch_size)  # each chunk one batch, transformed and moved by batches()
            adapted = adapt_batchnorm(model, (b for chunk in chunks for b in batches(chunk, device, len(chunk[0]))))
            parts.append((index, probabilities(adapted, part, device)))
        out = torch.empty(len(labels), parts[0][1].shape[1])
        for index, p in parts:
            out[index] = p
        return labels, out.numpy()
    return predict
