"""The single-scale ResNet for 1D signals and 2D images (one class; ``dims`` chooses)."""

from __future__ import annotations

import math
from typing import Sequence

from torch import nn

from .base import ResidualNetwork
from .blocks import BLOCKS, Shortcut, check_layout, init_weights, make_stage, make_stem, whole_sizes
from .layers import batchnorm, check_dims, min_input_size
from .registry import register_model
from ..values import true_or_false


class ResNet(ResidualNetwork):
    """Stem (k-conv/stride + BN + ReLU [+ 3/2 max-pool]) -> residual stages -> global pool -> linear.

    Args:
        layers: blocks per stage, e.g. (2, 2, 2, 2) for ResNet-18.
        block: ``"basic"`` or ``"bottleneck"``.
        widths: channels per stage (before the bottleneck expansion).
        dims: 1 for signals (N, C, L), 2 for images (N, C, H, W).
        in_channels: C, the input channels (leads, or 1 for grey images).
        num_classes: outputs of the linear layer (0: none, as in timm; the model returns the
            pooled features).
        stem_channels / stem_kernel / stem_stride / stem_pool: the first convolution's output
            channels, kernel and stride (samples, or pixels per axis for images) and the max-pool.
        kernel_size: kernel of the k-convolutions in the blocks (samples, or pixels per axis).
        preact: pre-activation blocks (ResNet v2) with a final BN-ReLU.
        bias: biases on every convolution (the d2l network has them).
        shortcut: projection kind where the shape changes (see ``make_shortcut``).
        zero_init_residual: zero-init the last norm of each residual branch (stored: a later
            ``init_weights(model)`` keeps it).
        drop_rate: dropout probability before the linear layer (0 = none, as in d2l).
        extra_features: per-example features appended after pooling (0 = none).
        extra_hidden: width of a two-layer MLP the extra features go through first (0 = none).
        feature_drop_rate: modality dropout, the training-time probability of zeroing an
            example's pooled features so that the extra features must carry it alone.
        split_by_extra: class indices whose split the extra features alone decide (the
            waveform gives only the group's total probability; see ``base``), e.g. ``(0, 1)``
            for N and S in AAMI order.
    """

    def __init__(
        self,
        layers: Sequence[int] = (2, 2, 2, 2),
        block: str = "basic",
        widths: Sequence[int] = (64, 128, 256, 512),
        dims: int = 2,
        in_channels: int = 3,
        num_classes: int = 1000,
        stem_channels: int = 64,
        stem_kernel: int = 7,
        stem_stride: int = 2,
        stem_pool: bool = True,
        kernel_size: int = 3,
        preact: bool = False,
        bias: bool = False,
        shortcut: Shortcut = "conv_bn",
        zero_init_residual: bool = False,
        drop_rate: float = 0.0,
        extra_features: int = 0,
        extra_hidden: int = 0,
        feature_drop_rate: float = 0.0,
        split_by_extra: Sequence[int] = (),
    ) -> None:
        super().__init__()
        size = whole_sizes(sequences=("widths", "layers"), in_channels=in_channels, kernel_size=kernel_size,
                           widths=widths, layers=layers, stem_channels=stem_channels, stem_kernel=stem_kernel,
                           stem_stride=stem_stride)
        in_channels, kernel_size, widths, layers, stem_channels, stem_kernel, stem_stride = size.values()
        stem_pool, preact, bias, zero_init_residual = true_or_false(
            stem_pool=stem_pool, preact=preact, bias=bias, zero_init_residual=zero_init_residual).values()
        check_layout(layers, widths, block)
        self.dims = check_dims(dims)
        self.in_channels = in_channels
        # Pre-activation blocks normalise their own input, so the stem ends on the convolution.
        self.stem, strides = make_stem(dims, in_channels, stem_channels, stem_kernel, stem_stride, stem_pool,
                                       bias=bias, norm=not preact)
        stages, channels = [], stem_channels
        for i, (num_blocks, width) in enumerate(zip(layers, widths)):
            stride = 1 if i == 0 else 2
            stages.append(make_stage(block, dims, channels, width, num_blocks, stride, kernel_size=kernel_size,
                                     preact=preact, bias=bias, shortcut=shortcut))
            channels = width * BLOCKS[block].expansion
            strides.append(stride)
        if preact:
            stages.append(nn.Sequential(batchnorm(dims, channels), nn.ReLU(inplace=True)))
        self.stages = nn.Sequential(*stages)
        self.min_input_size = min_input_size(strides)
        self.total_stride = math.prod(strides)
        self._build_head(channels, num_classes, extra_features, drop_rate, extra_hidden,
                         feature_drop_rate, split_by_extra)
        self.zero_init_residual = zero_init_residual
        init_weights(self)


@register_model
def resnet18_d2l(in_channels: int = 1, num_classes: int = 10, dims: int = 2, **kwargs) -> ResNet:
    """The d2l ResNet-18 exactly: 7x7/2 stem with bias + BN + ReLU + 3x3/2 max-pool, four stages of
    two basic blocks (64-128-256-512, conv biases on, 1x1 shortcut without BN), global pool, linear.
    11,178,378 parameters for 1 channel and 10 classes."""
    kwargs = {"bias": True, "shortcut": "conv", **kwargs}
    return _resnet((2, 2, 2, 2), "basic", dims, in_channels, num_classes, **kwargs)


def _resnet(preset_layers: tuple[int, ...], preset_block: str, dims: int, in_channels: int, num_classes: int,
            /, **kwargs) -> ResNet:
    """A preset's layout, which ``layers=`` / ``block=`` in ``kwargs`` override."""
    kwargs = {"layers": preset_layers, "block": preset_block, **kwargs}
    return ResNet.with_arguments(dims=dims, in_channels=in_channels, num_classes=num_classes, **kwargs)


@register_model
def resnet18(in_channels: int = 3, num_classes: int = 1000, dims: int = 2, **kwargs) -> ResNet:
    """ResNet-18 (torchvision layout: no conv bias, 1x1 conv + BN shortcut); ``dims=1`` for signals."""
    return _resnet((2, 2, 2, 2), "basic", dims, in_channels, num_classes, **kwargs)


@register_model
def resnet34(in_channels: int = 3, num_classes: int = 1000, dims: int = 2, **kwargs) -> ResNet:
    """ResNet-34; ``dims=1`` for signals."""
    return _resnet((3, 4, 6, 3), "basic", dims, in_channels, num_classes, **kwargs)


@register_model
def resnet50(in_channels: int = 3, num_classes: int = 1000, dims: int = 2, **kwargs) -> ResNet:
    """ResNet-50 (bottleneck blocks, stride on the k-convolution); ``dims=1`` for signals."""
    return _resnet((3, 4, 6, 3), "bottleneck", dims, in_channels, num_classes, **kwargs)


@register_model
def resnet1d_beat(in_channels: int = 1, num_classes: int = 5, dims: int = 1, **kwargs) -> ResNet:
    """Single-scale beat model: the one-kernel counterpart of ``msresnet1d_beat`` (stem 7/2 + pool,
    kernel 7, widths 24-48-96, one block a stage), for ablations on ~0.7 s beat windows. Like every
    ResNet preset it keeps ``zero_init_residual=False`` (torchvision's default), where the
    ``msresnet1d`` presets but ``_late`` zero-init the last norm of each residual branch: a
    comparison of the two differs in that too (``zero_init_residual=True`` to match)."""
    kwargs = {"widths": (24, 48, 96), "stem_channels": 24, "stem_kernel": 7, "stem_pool": True, "kernel_size": 7,
              **kwargs}
    return _resnet((1, 1, 1), "basic", dims, in_channels, num_classes, **kwargs)
