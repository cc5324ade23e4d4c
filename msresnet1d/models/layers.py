"""Dimension-generic building layers: one factory per layer kind, chosen by ``dims`` (1 or 2).

Signals are (N, C, L) for ``dims=1`` and images (N, C, H, W) for ``dims=2``. Kernel sizes,
strides and dilations are in samples (or pixels).
"""

from __future__ import annotations

import torch
from torch import nn

_CONV = {1: nn.Conv1d, 2: nn.Conv2d}
_BATCHNORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}

_AVGPOOL = {1: nn.AvgPool1d, 2: nn.AvgPool2d}
_PAD = {1: nn.ConstantPad1d, 2: nn.ConstantPad2d}


def check_dims(dims: int) -> int:
    if dims not in _CONV:
        raise ValueError(f"dims must be 1 (signals, N x C x L) or 2 (images, N x C x H x W), got {dims!r}")
    return dims


def batchnorm(dims: int, channels: int) -> nn.Module:
    return _BATCHNORM[check_dims(dims)](channels)


class MaxPool1d(nn.Module):
    """1D max-pooling computed by the 2D kernel on (N, C, 1, L): same result as ``nn.MaxPool1d``,
    but ``torch.export`` keeps the length dynamic (its 1D kernel specialises the length)."""

    def __init__(self, kernel_size: int, stride: int, padding: int) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d((1, kernel_size), (1, stride), (0, padding))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x.unsqueeze(2)).squeeze(2)


_MAXPOOL = {1: MaxPool1d, 2: nn.MaxPool2d}


def maxpool(dims: int, kernel_size: int, stride: int) -> nn.Module:
    return _MAXPOOL[check_dims(dims)](kernel_size, stride, padding=kernel_size // 2)


def avgpool(dims: int, stride: int) -> nn.Module:
    """Average pooling with window = stride (ResNet-D shortcut); ceil mode keeps ceil(L / stride)."""
    return _AVGPOOL[check_dims(dims)](stride, stride, ceil_mode=True, count_include_pad=False)


def conv(
    dims: int,
    in_channels: int,
    out_channels: int,
    kernel_size: int = 3,
    stride: int = 1,
    dilation: int = 1,
    groups: int = 1,
    bias: bool = False,
) -> nn.Module:
    """Convolution with 'same'-style padding: output length is ceil(L / stride) for odd and even kernels.

    Odd kernels use symmetric padding inside the convolution; even kernels need one more zero on
    the right, so they get an explicit pad layer in front.
    """
    check_dims(dims)
    total = dilation * (kernel_size - 1)
    layer = _CONV[dims](in_channels, out_channels, kernel_size, stride, padding=total // 2,
                        dilation=dilation, groups=groups, bias=bias)
    if total % 2 == 0:
        return layer
    return nn.Sequential(_PAD[dims]((0, 1) * dims, 0.0), layer)


def separable_conv(
    dims: int, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
    dilation: int = 1, bias: bool = False,
) -> nn.Module:
    """Depthwise k-convolution followed by a pointwise 1x1 convolution (MobileNet style)."""
    return nn.Sequential(
        conv(dims, in_channels, in_channels, kernel_size, stride, dilation, groups=in_channels, bias=False),
        conv(dims, in_channels, out_channels, 1, bias=bias),
    )


def min_input_size(strides: list[int]) -> int:
    """Smallest input length (samples) for which every downsampling layer sees at least `stride`
    samples, so that no output position is computed from padding alone.

    With 'same' padding a layer of stride s maps n samples to ceil(n / s).
    """
    size = 1
    for stride in reversed([s for s in strides if s > 1]):
        # Need n >= stride and ceil(n / stride) >= size (what the next layer needs).
        size = max(stride, (size - 1) * stride + 1)
    return size


def check_input(x: torch.Tensor, dims: int, in_channels: int, min_size: int) -> None:
    """Raise ValueError unless x is (N, in_channels, *spatial) with every spatial size >= min_size."""
    if x.dim() != dims + 2:
        layout = "(N, C, L)" if dims == 1 else "(N, C, H, W)"
        raise ValueError(f"expected a {dims + 2}-D input {layout}, got shape {list(x.shape)}")
    if x.shape[1] != in_channels:
        raise ValueError(
            f"expected {in_channels} input channel(s), got {x.shape[1]} (input shape {list(x.shape)}); "
            f"build the model with in_channels={x.shape[1]} or select {in_channels} channel(s)"
        )
    if min(x.shape[2:]) < min_size:
        raise ValueError(
            f"input too short: spatial size {list(x.shape[2:])}, this model needs at least {min_size} "
            "samples per axis"
        )
