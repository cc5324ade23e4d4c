"""Dimension-generic building layers: one factory per layer kind, chosen by ``dims`` (1 or 2).

Signals are (N, C, L) for ``dims=1`` and images (N, C, H, W) for ``dims=2``. Kernel sizes,
strides and dilations are in samples (or pixels).

The 1D layers also take a signal as a one-row image (N, C, 1, L) and then compute the same result
with the (1, k) 2D kernel and the same parameters: in channels-last memory format oneDNN's 2D
convolutions are faster on a CPU than its 1D ones (``ResidualNetwork.set_channels_last``).
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn


class Conv1d(nn.Conv1d):
    """``nn.Conv1d`` that also takes (N, C, 1, L), as the (1, k) 2D convolution with its weights."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.padding, tuple) or self.padding_mode != "zeros":
            raise ValueError(f"Conv1d needs an int zero padding in samples, got padding={self.padding!r}, "
                             f"padding_mode={self.padding_mode!r}")
        self.stride_2d: Tuple[int, int] = (1, self.stride[0])
        self.padding_2d: Tuple[int, int] = (0, self.padding[0])
        self.dilation_2d: Tuple[int, int] = (1, self.dilation[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            y = F.conv2d(x, self.weight.unsqueeze(2), self.bias, self.stride_2d, self.padding_2d,
                         self.dilation_2d, self.groups)
            # with one input channel both layouts are the same and conv2d returns NCHW: keep NHWC
            return y.contiguous(memory_format=torch.channels_last) if x.is_contiguous(
                memory_format=torch.channels_last) else y
        return self._conv_forward(x, self.weight, self.bias)


class BatchNorm1d(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` that also takes (N, C, 1, L) (statistics per channel C either way)."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() not in (2, 3, 4):
            raise ValueError(f"expected a 2-D (N, C), 3-D (N, C, L) or 4-D (N, C, 1, L) input, got {input.dim()}-D")


class Pool1d(nn.Module):
    """1D pooling computed by a 2D pooling layer with (1, k) windows on (N, C, 1, L): same result
    as the 1D layer, but ``torch.export`` keeps the length dynamic (the 1D kernels specialise it)."""

    def __init__(self, pool: nn.Module) -> None:
        super().__init__()
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            return self.pool(x)
        return self.pool(x.unsqueeze(2)).squeeze(2)


_CONV = {1: Conv1d, 2: nn.Conv2d}
_BATCHNORM = {1: BatchNorm1d, 2: nn.BatchNorm2d}
_PAD = {1: nn.ConstantPad1d, 2: nn.ConstantPad2d}  # pads the last axis only: 4-D (N, C, 1, L) too


def check_dims(dims: int) -> int:
    if dims not in _CONV:
        raise ValueError(f"dims must be 1 (signals, N x C x L) or 2 (images, N x C x H x W), got {dims!r}")
    return dims


def batchnorm(dims: int, channels: int) -> nn.Module:
    return _BATCHNORM[check_dims(dims)](channels)


def maxpool(dims: int, kernel_size: int, stride: int) -> nn.Module:
    if check_dims(dims) == 2:
        return nn.MaxPool2d(kernel_size, stride, padding=kernel_size // 2)
    return Pool1d(nn.MaxPool2d((1, kernel_size), (1, stride), (0, kernel_size // 2)))


def avgpool(dims: int, stride: int) -> nn.Module:
    """Average pooling with window = stride (ResNet-D shortcut); ceil mode keeps ceil(L / stride)."""
    if check_dims(dims) == 2:
        return nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False)
    return Pool1d(nn.AvgPool2d((1, stride), (1, stride), ceil_mode=True, count_include_pad=False))


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

    The ``dilation * (kernel_size - 1)`` zeros are split evenly inside the convolution when their
    number is even (odd kernels); when odd (even kernels, dilation odd), the extra zero goes on
    the right, in an explicit pad layer in front.
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


def check_dtype(x: torch.Tensor, dtype: torch.dtype, what: str) -> None:
    """Raise ValueError unless ``x`` (``what``: "input", "extra features") has the model's
    parameter ``dtype``, naming both (call it in eager mode only: TorchScript prints dtypes as
    numbers and keeps PyTorch's own error)."""
    if x.dtype != dtype:
        hint = " (numpy arrays are float64 by default)" if x.dtype == torch.float64 else ""
        raise ValueError(f"{what} of dtype {x.dtype}, the model's parameters are {dtype}: convert it with "
                         f".to({dtype}){hint}")


def check_tensor(x: object, what: str) -> None:
    """Raise TypeError unless ``x`` (``what``: "the input", "extra", ...) is a tensor, with the
    conversion for a numpy array (call it in eager mode only)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(x).__name__}"
                        + (": convert it with torch.from_numpy(x).float()" if type(x).__module__ == "numpy" else ""))


def check_input(x: torch.Tensor, dims: int, in_channels: int, min_size: int) -> None:
    """Raise ValueError unless x is (N, in_channels, *spatial) with every spatial size >= min_size
    (TypeError for an input that is not a tensor)."""
    if not torch.jit.is_scripting():
        check_tensor(x, "the input")
    if x.dim() != dims + 2:
        layout = "(N, C, L)" if dims == 1 else "(N, C, H, W)"
        raise ValueError(f"expected a {dims + 2}-D input {layout}, got shape {list(x.shape)}")
    if x.shape[1] != in_channels:
        if x.shape[-1] == in_channels:  # channels last: (N, L, C) or (N, H, W, C)
            order = "(0, 2, 1)" if dims == 1 else "(0, 3, 1, 2)"
            hint = f"; channels come second: is it channels-last? pass x.permute{order}"
        else:
            hint = f"; build the model with in_channels={x.shape[1]} or select {in_channels} channel(s)"
        raise ValueError(f"expected {in_channels} input channel(s), got {x.shape[1]} (input shape {list(x.shape)}){hint}")
    if min(x.shape[2:]) < min_size:
        unit = "samples" if dims == 1 else "pixels"
        raise ValueError(
            f"input too short: spatial size {list(x.shape[2:])}, this model needs at least {min_size} "
            f"{unit} per axis"
        )
