"""MSResNet1d: residual stages with parallel branches of different kernel lengths, fused per stage.

At every stage each branch (a stage of residual blocks with its own kernel length and dilation)
reads the same input; the branch outputs are fused and the fused map feeds the next stage:

    stem -> [branch_k1 | branch_k2 | ...] -> fuse -> [branch_k1 | ...] -> fuse -> ... -> pool -> head

``fusion="late"`` instead keeps one independent tower per kernel through all stages and joins
them only at the head (the design of the original Multi-Scale-1D-ResNet), for comparison.
Input (N, C, L) with L >= ``model.min_input_size`` samples, any C fixed at construction.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import nn

from .base import ResidualNetwork
from .blocks import BLOCKS, Shortcut, check_layout, init_weights, make_stage, make_stem, whole_sizes
from .layers import batchnorm, conv, min_input_size
from ..values import is_whole, true_or_false
from .registry import register_model

FUSIONS = ("concat", "sum", "attention", "late")


class ConcatFusion(nn.Module):
    """Concatenate the branches along channels, then 1x1 conv + BN + ReLU back to ``channels``."""

    def __init__(self, num_branches: int, channels: int) -> None:
        super().__init__()
        self.proj = nn.Sequential(conv(1, num_branches * channels, channels, 1), batchnorm(1, channels),
                                  nn.ReLU(inplace=True))

    def forward(self, branches: list[torch.Tensor]) -> torch.Tensor:
        return self.proj(torch.cat(branches, dim=1))


class SumFusion(nn.Module):
    """Element-wise sum of the branches (no parameters)."""

    def __init__(self, num_branches: int, channels: int) -> None:
        super().__init__()

    def forward(self, branches: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(branches, dim=0).sum(dim=0)


class AttentionFusion(nn.Module):
    """Selective-kernel fusion (Li et al. 2019): per channel, a softmax over branches weighs them.

    The weights come from the globally pooled sum of the branches through a small bottleneck
    MLP, so the network chooses per example which kernel length (receptive field) to listen to.
    """

    def __init__(self, num_branches: int, channels: int, reduction: int = 4, min_hidden: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, min_hidden)
        self.num_branches = num_branches
        self.squeeze = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True))
        self.excite = nn.Linear(hidden, num_branches * channels)

    def forward(self, branches: list[torch.Tensor]) -> torch.Tensor:
        stacked = torch.stack(branches, dim=1)  # (N, B, C, L), or (N, B, C, 1, L) in channels-last mode
        summary = stacked.sum(dim=1).flatten(2).mean(dim=-1)  # (N, C)
        logits = self.excite(self.squeeze(summary)).view(stacked.shape[0], self.num_branches, -1)
        weights = torch.softmax(logits, dim=1)  # (N, B, C)
        weights = weights.view(weights.shape + (1,) * (stacked.dim() - 3))
        return (stacked * weights).sum(dim=1)


_FUSION_MODULES = {"concat": ConcatFusion, "sum": SumFusion, "attention": AttentionFusion}


class MultiScaleStage(nn.Module):
    """One stage: parallel branches on the same input, one per (kernel, dilation), then a fusion."""

    def __init__(self, branches: list[nn.Module], fusion: str, channels: int) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.fuse = _FUSION_MODULES[fusion](len(branches), channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse([branch(x) for branch in self.branches])


class LateFusionTowers(nn.Module):
    """Independent towers (one per kernel) on the stem output, concatenated along channels."""

    def __init__(self, towers: list[nn.Module]) -> None:
        super().__init__()
        self.towers = nn.ModuleList(towers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([tower(x) for tower in self.towers], dim=1)


class MSResNet1d(ResidualNetwork):
    """Multi-scale 1D ResNet.

    Args:
        in_channels: leads / channels C of the input (N, C, L).
        num_classes: outputs of the classification head (ignored when ``out_features`` is set; 0:
            no linear layer, as in timm: the model returns the pooled features).
        out_features: build a regression head with this many outputs instead.
        kernels: kernel length of each branch, in samples (odd or even).
        dilations: dilation of each branch (default 1 for all).
        widths / layers: channels and residual blocks per stage (every branch has that width).
        stem_channels / stem_kernel / stem_stride / stem_pool: the shared first convolution's
            output channels, kernel and stride (samples), and its max-pool.
        fusion: ``"concat"`` (concat + 1x1 conv), ``"sum"``, ``"attention"`` (selective kernel)
            per stage, or ``"late"`` (independent towers joined at the head).
        block, preact, separable, shortcut: residual block options (see ``blocks``);
            ``separable`` makes every k-convolution depthwise-separable.
        zero_init_residual: zero-init the last norm of each residual branch (stored: a later
            ``init_weights(model)`` keeps it).
        drop_rate: dropout before the linear layer.
        extra_features: per-example features (e.g. RR intervals) appended after pooling.
        extra_hidden: width of a two-layer MLP the extra features go through first (0 = none).
        feature_drop_rate: modality dropout, the training-time probability of zeroing an
            example's pooled features so that the extra features must carry it alone.
        split_by_extra: class indices whose split the extra features alone decide (the
            waveform gives only the group's total probability; see ``base``), e.g. ``(0, 1)``
            for N and S in AAMI order.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 5,
        out_features: Optional[int] = None,
        kernels: Sequence[int] = (3, 7, 15),
        dilations: Optional[Sequence[int]] = None,
        widths: Sequence[int] = (32, 64, 128),
        layers: Sequence[int] = (1, 1, 1),
        stem_channels: int = 32,
        stem_kernel: int = 7,
        stem_stride: int = 2,
        stem_pool: bool = False,
        fusion: str = "concat",
        block: str = "basic",
        preact: bool = False,
        separable: bool = False,
        shortcut: Shortcut = "conv_bn",
        zero_init_residual: bool = True,
        drop_rate: float = 0.0,
        extra_features: int = 0,
        extra_hidden: int = 0,
        feature_drop_rate: float = 0.0,
        split_by_extra: Sequence[int] = (),
    ) -> None:
        super().__init__()
        size = whole_sizes(sequences=("kernels", "dilations", "widths", "layers"), in_channels=in_channels,
                           kernels=kernels, widths=widths, layers=layers, stem_channels=stem_channels,
                           stem_kernel=stem_kernel, stem_stride=stem_stride,
                           **({} if dilations is None else {"dilations": dilations}))
        in_channels, kernels, widths, layers = size["in_channels"], size["kernels"], size["widths"], size["layers"]
        stem_channels, stem_kernel, stem_stride = size["stem_channels"], size["stem_kernel"], size["stem_stride"]
        dilations = size.get("dilations", (1,) * len(kernels))
        stem_pool, preact, separable, zero_init_residual = true_or_false(
            stem_pool=stem_pool, preact=preact, separable=separable, zero_init_residual=zero_init_residual).values()
        if not kernels or len(dilations) != len(kernels):
            raise ValueError(f"kernels {kernels} and dilations {dilations} must be non-empty and of equal length")
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        check_layout(layers, widths, block)
        if out_features is not None and (not is_whole(out_features) or out_features < 1):
            raise ValueError(f"out_features must be a whole number >= 1 (the regression outputs), got {out_features!r}")
        if out_features is not None and split_by_extra:
            raise ValueError(f"split_by_extra={list(split_by_extra)} divides class probabilities: not for a "
                             f"regression head (out_features={out_features})")
        self.dims, self.in_channels = 1, in_channels
        self.task = "classification" if out_features is None else "regression"
        self.kernels, self.dilations, self.fusion = kernels, dilations, fusion
        # Pre-activation blocks normalise their own input, so the stem ends on the convolution (as in ResNet).
        self.stem, stem_strides = make_stem(1, in_channels, stem_channels, stem_kernel, stem_stride, stem_pool,
                                            norm=not preact)

        expansion = BLOCKS[block].expansion
        block_kwargs = dict(preact=preact, separable=separable, shortcut=shortcut)
        strides = [1] + [2] * (len(widths) - 1)

        def stage(in_ch: int, i: int, kernel: int, dilation: int) -> nn.Sequential:
            return make_stage(block, 1, in_ch, widths[i], layers[i], strides[i], kernel_size=kernel,
                              dilation=dilation, **block_kwargs)

        if fusion == "late":
            towers = []
            for kernel, dilation in zip(kernels, dilations):
                channels = [stem_channels] + [w * expansion for w in widths]
                towers.append(nn.Sequential(*[stage(channels[i], i, kernel, dilation) for i in range(len(widths))]))
            self.stages = LateFusionTowers(towers)
            num_features = len(kernels) * widths[-1] * expansion
        else:
            stages, in_ch = [], stem_channels
            for i in range(len(widths)):
                branches = [stage(in_ch, i, k, d) for k, d in zip(kernels, dilations)]
                in_ch = widths[i] * expansion
                stages.append(MultiScaleStage(branches, fusion, in_ch))
            self.stages = nn.Sequential(*stages)
            num_features = in_ch
        all_strides = stem_strides + strides
        self.min_input_size = min_input_size(all_strides)
        self.total_stride = math.prod(all_strides)
        num_outputs = out_features if out_features is not None else num_classes
        self._build_head(num_features, num_outputs, extra_features, drop_rate, extra_hidden,
                         feature_drop_rate, split_by_extra)
        self.zero_init_residual = zero_init_residual
        init_weights(self)
        if preact:
            # Pre-activation blocks end on a convolution; normalise before pooling.
            self.stages = nn.Sequential(self.stages, batchnorm(1, num_features), nn.ReLU(inplace=True))


def _msresnet(in_channels: int, num_classes: int, defaults: dict, kwargs: dict) -> MSResNet1d:
    return MSResNet1d.with_arguments(in_channels=in_channels, num_classes=num_classes, **{**defaults, **kwargs})


@register_model
def msresnet1d_beat(in_channels: int = 1, num_classes: int = 5, **kwargs) -> MSResNet1d:
    """Beat-sized (~0.5-1 s windows): stem 7/2 + pool, kernels 3/7/15, widths 16-32-64, one block a
    stage, concat fusion (small and fast: beats are short)."""
    defaults = dict(widths=(16, 32, 64), stem_channels=16, stem_pool=True)
    return _msresnet(in_channels, num_classes, defaults, kwargs)


@register_model
def msresnet1d_small(in_channels: int = 1, num_classes: int = 4, **kwargs) -> MSResNet1d:
    """Rhythm, small: stem 15/2 + pool, kernels 3/9/19, widths 32-64-96-128, one block a stage."""
    defaults = dict(kernels=(3, 9, 19), widths=(32, 64, 96, 128), layers=(1, 1, 1, 1), stem_kernel=15,
                    stem_pool=True)
    return _msresnet(in_channels, num_classes, defaults, kwargs)


@register_model
def msresnet1d_base(in_channels: int = 1, num_classes: int = 4, **kwargs) -> MSResNet1d:
    """Rhythm, base: stem 15/2 + pool, kernels 3/9/19, widths 48-96-144-192, one block a stage."""
    defaults = dict(kernels=(3, 9, 19), widths=(48, 96, 144, 192), layers=(1, 1, 1, 1), stem_channels=48,
                    stem_kernel=15, stem_pool=True)
    return _msresnet(in_channels, num_classes, defaults, kwargs)


@register_model
def msresnet1d_large(in_channels: int = 1, num_classes: int = 4, **kwargs) -> MSResNet1d:
    """Rhythm, large: stem 15/2 + pool, kernels 3/9/19, widths 64-96-128-192, two blocks a stage."""
    defaults = dict(kernels=(3, 9, 19), widths=(64, 96, 128, 192), layers=(2, 2, 2, 2), stem_channels=64,
                    stem_kernel=15, stem_pool=True)
    return _msresnet(in_channels, num_classes, defaults, kwargs)


@register_model
def msresnet1d_late(in_channels: int = 1, num_classes: int = 5, **kwargs) -> MSResNet1d:
    """The original Multi-Scale-1D-ResNet design: three independent towers (kernels 3/5/7, widths
    64-128-256) after a shared 7/2 stem + pool, joined only at the head."""
    defaults = dict(kernels=(3, 5, 7), widths=(64, 128, 256), layers=(1, 1, 1), stem_channels=64,
                    stem_pool=True, fusion="late", zero_init_residual=False)
    return _msresnet(in_channels, num_classes, defaults, kwargs)
