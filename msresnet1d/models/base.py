"""What every network here shares: input checks, the pooled head, and the timm-style interface.

``forward(x) == forward_head(forward_features(x))``. ``forward_features`` returns the last
feature map (N, F, L') or (N, F, H', W'); ``forward_head`` pools it globally, optionally
appends extra per-example features (e.g. RR intervals, (N, E), standardised by the caller;
with ``extra_hidden=H`` first through a two-layer MLP E -> H -> H), and applies the linear
layer. ``feature_drop_rate=p`` is modality dropout: in training, each example's pooled
features are zeroed with probability p, so the head must also predict from the extra features
alone and cannot ignore them once the waveform fits the training set. Training needs more than
one value per channel at the last stage for BatchNorm: batch size x last-stage positions >= 2.

``set_channels_last()`` runs the convolutions in channels-last (NHWC) memory format, which
oneDNN computes faster on a CPU; a 1D model then runs its layers as (1, k) 2D layers on the
input seen as (N, C, 1, L). Parameters, state dict, checkpoints, inputs and outputs stay as they
are; results agree to float32 rounding.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .layers import check_dtype, check_input


class ResidualNetwork(nn.Module):
    """Base class: subclasses set ``dims``, ``in_channels``, ``min_input_size`` (samples) and
    ``total_stride`` (input samples per output position of the last stage), build
    ``self.stem`` and ``self.stages``, then call ``_build_head``."""

    def __init__(self) -> None:
        super().__init__()
        self.channels_last = False

    def set_channels_last(self, enable: bool = True) -> "ResidualNetwork":
        """Run the convolutions in channels-last memory format (``enable=False``: the default
        layout again); returns the model. 2D models also store their parameters that way."""
        self.channels_last = bool(enable)
        if self.dims == 2:
            self.to(memory_format=torch.channels_last if enable else torch.contiguous_format)
        return self

    def _build_head(self, num_features: int, num_outputs: int, extra_features: int, drop_rate: float,
                    extra_hidden: int = 0, feature_drop_rate: float = 0.0) -> None:
        if num_outputs < 1:
            raise ValueError(f"the head needs at least 1 output, got {num_outputs}")
        if extra_features < 0:
            raise ValueError(f"extra_features must be >= 0, got {extra_features}")
        if extra_hidden < 0 or (extra_hidden and not extra_features):
            raise ValueError(f"extra_hidden={extra_hidden} must be >= 0, and 0 without extra features "
                             f"(extra_features={extra_features})")
        if not 0 <= feature_drop_rate < 1 or (feature_drop_rate and not extra_features):
            raise ValueError(f"feature_drop_rate={feature_drop_rate} must be in [0, 1), and 0 without extra features "
                             f"(extra_features={extra_features}): it drops the pooled features in favour of them")
        self.num_features = num_features
        self.extra_features = extra_features
        self.feature_drop_rate = feature_drop_rate
        self.extra_mlp = (nn.Sequential(nn.Linear(extra_features, extra_hidden), nn.ReLU(inplace=True),
                                        nn.Linear(extra_hidden, extra_hidden), nn.ReLU(inplace=True))
                          if extra_hidden else nn.Identity())
        self.head_features = num_features + (extra_hidden or extra_features)
        self.dropout = nn.Dropout(drop_rate)
        self.fc = nn.Linear(self.head_features, num_outputs)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, *spatial) -> last feature map (N, num_features, *spatial')."""
        check_input(x, self.dims, self.in_channels, self.min_input_size)
        check_dtype(x, self.fc.weight.dtype, "input")
        if not self.channels_last:
            return self.stages(self.stem(x))
        if self.dims == 1:
            x = x.unsqueeze(2)  # (N, C, 1, L): the 1D layers compute the same with their 2D kernels
        features = self.stages(self.stem(x.contiguous(memory_format=torch.channels_last)))
        return features.squeeze(2) if self.dims == 1 else features

    def forward_head(
        self, features: torch.Tensor, extra: Optional[torch.Tensor] = None, pre_logits: bool = False
    ) -> torch.Tensor:
        """Feature map -> logits (N, num_outputs), or the pooled embedding when ``pre_logits``."""
        x = features.flatten(2).mean(dim=-1)  # global average pool over L (or H, W)
        if self.training and self.feature_drop_rate > 0:
            keep = torch.rand(x.shape[0], 1, device=x.device) >= self.feature_drop_rate
            x = x * keep.to(x.dtype)
        if extra is not None:
            if extra.dim() != 2 or extra.shape[1] != self.extra_features or extra.shape[0] != x.shape[0]:
                raise ValueError(
                    f"extra features must have shape ({x.shape[0]}, {self.extra_features}), "
                    f"got {list(extra.shape)}"
                )
            check_dtype(extra, self.fc.weight.dtype, "extra features")
            x = torch.cat([x, self.extra_mlp(extra)], dim=1)
        elif self.extra_features > 0:
            raise ValueError(f"this model was built with extra_features={self.extra_features}: pass extra")
        if pre_logits:
            return x
        return self.fc(self.dropout(x))

    def forward(self, x: torch.Tensor, extra: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.forward_head(self.forward_features(x), extra)

    @property
    def num_classes(self) -> int:
        """Outputs of the linear layer (classes, or ``out_features`` of a regression head), as in timm."""
        return self.fc.out_features

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the linear layer by a fresh one with ``num_classes`` >= 1 outputs, on the old
        one's device and in its dtype (timm's ``num_classes=0``, no classifier, is not supported)."""
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.fc = nn.Linear(self.head_features, num_classes, device=self.fc.weight.device, dtype=self.fc.weight.dtype)
