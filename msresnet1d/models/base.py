"""What every network here shares: input checks, the pooled head, and the timm-style interface.

``forward(x) == forward_head(forward_features(x))``. ``forward_features`` returns the last
feature map (N, F, L') or (N, F, H', W'); ``forward_head`` pools it globally, optionally
appends extra per-example features (e.g. RR intervals, (N, E), standardised by the caller;
with ``extra_hidden=H`` first through a two-layer MLP E -> H -> H), and applies the linear
layer (with ``num_classes=0``, as in timm, there is none: the model returns the pooled features).
``feature_drop_rate=p`` is modality dropout: in training, each example's pooled
features are zeroed with probability p, so the head must also predict from the extra features
alone and cannot ignore them once the waveform fits the training set. ``split_by_extra=(i, j,
...)`` lets the extra features alone divide the probability of a group of classes: the linear
layer gives the group's total (the log-sum-exp of its logits), a second linear layer on the
extra features (after the MLP) how it splits, so the waveform never tells those classes apart.
On MIT-BIH, N and S beats differ in timing, not shape, and the net learns the training patients'
shapes instead. Training needs more than one value per channel at the last stage for BatchNorm:
batch size x last-stage positions >= 2 (a forward in training mode with fewer raises ValueError
saying so; in eval mode any batch runs).

``set_channels_last()`` runs the convolutions in channels-last (NHWC) memory format, which
oneDNN computes faster on a CPU; a 1D model then runs its layers as (1, k) 2D layers on the
input seen as (N, C, 1, L), its parameters, state dict and checkpoints as they are; a 2D model
also stores its parameters channels-last. Inputs and outputs keep their shapes; results agree to
float32 rounding.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Optional, Self

import torch
from torch import nn

from .layers import check_dtype, check_input, check_tensor
from ..values import MAX_SIZE, MAX_SIZE_RULE, is_number, is_whole, true_or_false


def _autocast_on(device_type: str) -> bool:
    """Whether autocast is on for ``device_type`` (torch >= 2.2; no autocast for the meta device)."""
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 takes no device type: one function a device
        return torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled()
    except RuntimeError:  # a device type autocast does not know (meta)
        return False


def _autocast_dtype(device_type: str) -> torch.dtype:
    """The dtype autocast computes in on ``device_type`` (torch >= 2.4 asks by device type)."""
    try:
        return torch.get_autocast_dtype(device_type)
    except AttributeError:  # torch < 2.4
        return torch.get_autocast_cpu_dtype() if device_type == "cpu" else torch.get_autocast_gpu_dtype()


class ResidualNetwork(nn.Module):
    """Base class: subclasses set ``dims``, ``in_channels``, ``min_input_size`` (samples) and
    ``total_stride`` (input samples per output position of the last stage), build
    ``self.stem`` and ``self.stages``, then call ``_build_head``."""

    __jit_unused_properties__ = ["num_classes"]  # eager only: TorchScript has no isinstance for modules
    if TYPE_CHECKING:  # set by subclasses and _build_head; declared for type checkers only (TorchScript
        # would read class annotations as attribute types)
        dims: int
        in_channels: int
        min_input_size: int
        total_stride: int
        num_features: int
        extra_features: int

    def __init__(self) -> None:
        super().__init__()
        self.channels_last = False
        self.arguments: dict[str, Any] = {}

    @classmethod
    def with_arguments(cls, **kwargs: Any) -> Self:
        """``cls(**kwargs)``, its :attr:`arguments` every keyword argument it was built with,
        the constructor's defaults included (a subclass's ``**kwargs`` as the names given; ``{}``
        for a model built otherwise). The presets build so: a training config records them all
        (``model_kwargs``), so that a later change of a default does not change the model a
        checkpoint builds. The arguments describe the model as built (not after
        :meth:`reset_classifier`)."""
        model = cls(**kwargs)
        signature = inspect.signature(cls)
        bound = signature.bind(**kwargs)
        bound.apply_defaults()
        for name, value in bound.arguments.items():
            kind = signature.parameters[name].kind
            if kind is inspect.Parameter.VAR_KEYWORD:
                model.arguments.update(value)
            elif kind is not inspect.Parameter.VAR_POSITIONAL:  # none given: only keywords are
                model.arguments[name] = value
        return model

    def set_channels_last(self, enable: bool = True) -> "ResidualNetwork":
        """Run the convolutions in channels-last memory format (``enable=False``: the default
        layout again); returns the model. 2D models also store their parameters that way."""
        self.channels_last = bool(enable)
        if self.dims == 2:
            self.to(memory_format=torch.channels_last if enable else torch.contiguous_format)
        return self

    def _build_head(self, num_features: int, num_outputs: int, extra_features: int, drop_rate: float,
                    extra_hidden: int = 0, feature_drop_rate: float = 0.0,
                    split_by_extra: Sequence[int] = ()) -> None:
        if not is_whole(num_outputs) or num_outputs < 0:
            raise ValueError(f"the head needs a whole number >= 0 of outputs (num_classes or out_features; "
                             f"0: no linear layer), got {num_outputs!r}")
        for name, value in (("extra_features", extra_features), ("extra_hidden", extra_hidden)):
            if not is_whole(value) or value < 0:
                raise ValueError(f"{name} must be a whole number >= 0, got {value!r}")
        for name, value in (("num_classes or out_features", num_outputs), ("extra_features", extra_features),
                            ("extra_hidden", extra_hidden)):
            if value > MAX_SIZE:
                raise ValueError(f"{name} must be {MAX_SIZE_RULE}, got {value!r}")
        for name, rate in (("drop_rate", drop_rate), ("feature_drop_rate", feature_drop_rate)):
            if not (is_number(rate) and 0 <= rate < 1):
                raise ValueError(f"{name} must be a probability in [0, 1), got {rate!r}")
        if extra_hidden and not extra_features:
            raise ValueError(f"extra_hidden={extra_hidden} must be 0 without extra features "
                             f"(extra_features={extra_features})")
        if feature_drop_rate and not extra_features:
            raise ValueError(f"feature_drop_rate={feature_drop_rate} must be 0 without extra features "
                             f"(extra_features={extra_features}): it drops the pooled features in favour of them")
        if isinstance(split_by_extra, (str, numbers.Number)):
            raise ValueError(f"split_by_extra must be a sequence of class indices, got {split_by_extra!r}")
        split = list(split_by_extra)
        if split and (not extra_features or len(split) < 2 or len(set(split)) != len(split) or not all(
                is_whole(i) and 0 <= i < num_outputs for i in split)):
            raise ValueError(f"split_by_extra={list(split_by_extra)} must be empty or at least 2 distinct class indices "
                             f"in [0, {num_outputs}), with extra features (extra_features={extra_features})")
        self.num_features = num_features
        self.extra_features = extra_features
        self.feature_drop_rate = feature_drop_rate
        self.extra_mlp = (nn.Sequential(nn.Linear(extra_features, extra_hidden), nn.ReLU(inplace=True),
                                        nn.Linear(extra_hidden, extra_hidden), nn.ReLU(inplace=True))
                          if extra_hidden else nn.Identity())
        self.head_features = num_features + (extra_hidden or extra_features)
        self.dropout = nn.Dropout(drop_rate)
        self._build_classifier(num_outputs, [int(i) for i in split])

    def _build_classifier(self, num_classes: int, split: list[int], like: Optional[nn.Module] = None) -> None:
        """The linear layer (``nn.Identity`` for 0 classes) and the ``split_by_extra`` group, on the
        device and in the dtype of the parameters of ``like`` (PyTorch's defaults without it)."""
        like_param = next(like.parameters()) if like is not None else torch.empty(0)
        factory = dict(device=like_param.device, dtype=like_param.dtype)
        self.fc = nn.Linear(self.head_features, num_classes, **factory) if num_classes else nn.Identity()
        self.split_by_extra = tuple(split)
        self.split_fc = nn.Linear(self.head_features - self.num_features, len(split), **factory) if split else None
        # (G, K) selection of the group's logits, and (K,) 1 for the classes outside it: matrix products
        # instead of indexing, so that TorchScript and ONNX export see plain operations; built on the
        # CPU, also under torch.device("meta") (where indexing would import sympy: a second)
        select = torch.zeros(len(split), num_classes, device="cpu")
        select[torch.arange(len(split), device="cpu"), torch.tensor(split, dtype=torch.long, device="cpu")] = 1.0
        self.register_buffer("split_select", select.to(**factory), persistent=False)
        keep = torch.ones(num_classes, device="cpu") - select.sum(dim=0)
        self.register_buffer("split_keep", keep.to(**factory), persistent=False)

    @torch.jit.unused
    def _check_dtype(self, x: torch.Tensor, what: str) -> None:
        """``x`` in the parameters' dtype, or, under autocast, in autocast's (which casts every
        layer's inputs: ``x.bfloat16()`` inside ``torch.autocast("cpu", dtype=torch.bfloat16)``)."""
        if _autocast_on(x.device.type) and x.dtype == _autocast_dtype(x.device.type):
            return
        check_dtype(x, next(self.parameters()).dtype, what)

    @torch.jit.unused
    def _check_batch_norm_values(self, x: torch.Tensor) -> None:
        """Raise ValueError when a stage's BatchNorm trains and the last stage would see one value
        per channel (one input whose every axis is at most ``total_stride``), which torch refuses
        without saying what to change. Frozen (eval-mode) or fused BatchNorms, and empty batches,
        run as torch runs them. Every stage's BatchNorms are looked at (a late-fusion model's
        towers have no last stage), so a model whose last stage alone is frozen is refused too."""
        positions = math.prod(math.ceil(size / self.total_stride) for size in x.shape[2:])
        if x.shape[0] * positions == 1 and any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training
                                               for m in self.stages.modules()):
            unit = "samples" if self.dims == 1 else "pixels on a side"
            raise ValueError(f"training on {x.shape[0]} input(s) of shape {list(x.shape[1:])}: BatchNorm needs 2 or "
                             f"more values per channel, and the last stage sees {positions} position(s) of each input "
                             f"(total stride {self.total_stride}): train on batches of 2 or more, or on inputs longer "
                             f"than {self.total_stride} {unit} (in eval mode any batch runs)")

    @torch.jit.unused
    def _check_head_inputs(self, features: torch.Tensor, extra: Optional[torch.Tensor]) -> None:
        """What :meth:`forward_head` reads, checked in eager mode: tensors, and the feature map of
        :meth:`forward_features` (N, num_features, *spatial) in the model's dtype (under autocast,
        whatever dtype autocast gave it)."""
        check_tensor(features, "features")
        if extra is not None:
            check_tensor(extra, "extra")
        if features.dim() != self.dims + 2 or features.shape[1] != self.num_features:
            layout = "L'" if self.dims == 1 else "H', W'"
            raise ValueError(f"forward_head takes the feature map of forward_features, (N, num_features="
                             f"{self.num_features}, {layout}); got shape {list(features.shape)}")
        self._check_dtype(features, "features")  # under autocast, bf16 features from float32 weights pass

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, *spatial) -> last feature map (N, num_features, *spatial')."""
        check_input(x, self.dims, self.in_channels, self.min_input_size)
        if not torch.jit.is_scripting():
            self._check_dtype(x, "input")
            self._check_batch_norm_values(x)  # BatchNorms may train in an eval-mode model (adapt_batchnorm)
        if not self.channels_last:
            return self.stages(self.stem(x))
        if self.dims == 1:
            x = x.unsqueeze(2)  # (N, C, 1, L): the 1D layers compute the same with their 2D kernels
        features = self.stages(self.stem(x.contiguous(memory_format=torch.channels_last)))
        return features.squeeze(2) if self.dims == 1 else features

    def forward_head(
        self, features: torch.Tensor, extra: Optional[torch.Tensor] = None, pre_logits: bool = False
    ) -> torch.Tensor:
        """Feature map -> logits (N, num_classes); with ``pre_logits``, what the linear layer reads:
        the pooled features and, with ``extra``, the extra features after the MLP,
        (N, num_features + (extra_hidden or extra_features))."""
        if not torch.jit.is_scripting():
            self._check_head_inputs(features, extra)
            true_or_false(pre_logits=pre_logits)  # "no" would give the pre-logits
        x = features.flatten(2).mean(dim=-1)  # global average pool over L (or H, W)
        if self.training and self.feature_drop_rate > 0:
            keep = torch.rand(x.shape[0], 1, device=x.device) >= self.feature_drop_rate
            x = x * keep.to(x.dtype)
        hidden: Optional[torch.Tensor] = None
        if extra is not None:
            if not self.extra_features:
                raise ValueError(f"this model takes no extra features (extra_features=0), got extra of shape "
                                 f"{list(extra.shape)}")
            if extra.dim() != 2 or extra.shape[1] != self.extra_features or extra.shape[0] != x.shape[0]:
                raise ValueError(
                    f"extra features must have shape ({x.shape[0]}, {self.extra_features}), "
                    f"got {list(extra.shape)}"
                )
            if not torch.jit.is_scripting():
                self._check_dtype(extra, "extra features")
            hidden = self.extra_mlp(extra)
            x = torch.cat([x, hidden], dim=1)
        elif self.extra_features > 0:
            raise ValueError(f"this model was built with extra_features={self.extra_features}: pass extra")
        if pre_logits:
            return x
        logits = self.fc(self.dropout(x))
        if self.split_fc is not None and hidden is not None:
            group = logits @ self.split_select.t()  # (N, G)
            within = torch.log_softmax(self.split_fc(hidden), dim=1)
            logits = logits * self.split_keep + (torch.logsumexp(group, dim=1, keepdim=True) + within) @ self.split_select
        return logits

    def forward(self, x: torch.Tensor, extra: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Input (N, C, L) (1D; samples) or (N, C, H, W) (2D), and the extra features (N, E) of a
        model built with them -> logits (N, num_classes): ``forward_head(forward_features(x), extra)``."""
        return self.forward_head(self.forward_features(x), extra)

    @property
    def num_classes(self) -> int:
        """Outputs of the linear layer (classes, or ``out_features`` of a regression head), as in
        timm; 0 without one (``reset_classifier(0)``)."""
        return self.fc.out_features if isinstance(self.fc, nn.Linear) else 0

    def get_classifier(self) -> nn.Module:
        """The linear layer that gives the logits (timm's name for it; ``nn.Identity`` without one)."""
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the linear layer by a fresh one with ``num_classes`` outputs, on the model's
        device and in its dtype. As in timm, ``num_classes=0`` removes it: the model then returns
        the pooled features after ``drop_rate``'s dropout (in eval mode, or with no dropout,
        ``forward_head(..., pre_logits=True)``), (N, num_features + (extra_hidden or
        extra_features)). The new classes are another task's: a ``split_by_extra`` group is
        dropped."""
        if not is_whole(num_classes) or num_classes < 0:
            raise ValueError(f"num_classes must be a whole number >= 0 (0: no linear layer), got {num_classes!r}")
        self._build_classifier(int(num_classes), [], like=self)
