"""Residual blocks and the stage builder, for 1D signals and 2D images alike.

A block computes ``act(branch(x) + shortcut(x))``. The branch is a chain of convolutions:
two k-convolutions for :class:`BasicBlock`, 1x1 -> k -> 1x1 (expansion 4) for
:class:`Bottleneck`. Post-activation (original ResNet, d2l) orders each unit conv -> BN -> ReLU
and applies ReLU after the sum; pre-activation (ResNet v2) orders BN -> ReLU -> conv and adds
nothing after the sum. The shortcut is ``nn.Identity`` unless the shape changes, so ``forward``
has no branching.
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import torch
from torch import nn

from .layers import avgpool, batchnorm, conv, maxpool, separable_conv
from ..values import MAX_SIZE, MAX_SIZE_RULE, is_whole

Shortcut = Literal["conv", "conv_bn", "avg_conv_bn"]


def make_shortcut(dims: int, in_channels: int, out_channels: int, stride: int, kind: Shortcut) -> nn.Module:
    """Identity when the shape is unchanged (``in_channels == out_channels``, ``stride`` 1), else a
    projection, in ``dims`` (1 or 2) dimensions.

    kind: ``"conv"`` 1x1 strided conv with bias, no BN (d2l); ``"conv_bn"`` 1x1 strided conv + BN
    (torchvision); ``"avg_conv_bn"`` average-pool by the stride, then 1x1 conv + BN (ResNet-D).
    """
    if in_channels == out_channels and stride == 1:
        return nn.Identity()
    if kind == "conv":
        return conv(dims, in_channels, out_channels, 1, stride, bias=True)
    if kind == "conv_bn":
        return nn.Sequential(conv(dims, in_channels, out_channels, 1, stride), batchnorm(dims, out_channels))
    if kind == "avg_conv_bn":
        pool = avgpool(dims, stride) if stride > 1 else nn.Identity()
        return nn.Sequential(pool, conv(dims, in_channels, out_channels, 1), batchnorm(dims, out_channels))
    raise ValueError(f"shortcut must be one of 'conv', 'conv_bn', 'avg_conv_bn', got {kind!r}")


class ResidualBlock(nn.Module):
    """``act(branch(x) + shortcut(x))`` with the branch built from (in, out, kernel, stride) units.

    Subclasses only say which units their branch has. ``last_norm`` is the BN that ends the
    branch (post-activation) or, in pre-activation, the last convolution: zero-initialising it
    makes the block start as the identity (Goyal et al. 2017).

    Args:
        dims: 1 for signals (N, C, L), 2 for images (N, C, H, W).
        units: the branch's convolutions, each (in channels, out channels, kernel size, stride).
        in_channels, out_channels: the block's input and output channels (the shortcut's).
        stride: the block's stride; the output has ceil(L / stride) samples (a side, in 2D).
        dilation: of the convolutions with a kernel over 1 (samples between taps).
        preact: pre-activation (BN -> ReLU -> conv, nothing after the sum) rather than post.
        bias: convolutions with a bias (a BN follows each, so no by default).
        separable: depthwise-separable convolutions where the kernel is over 1.
        shortcut: the projection when the shape changes (:func:`make_shortcut`).
    """

    expansion = 1

    def __init__(
        self,
        dims: int,
        units: list[tuple[int, int, int, int]],
        in_channels: int,
        out_channels: int,
        stride: int,
        dilation: int = 1,
        preact: bool = False,
        bias: bool = False,
        separable: bool = False,
        shortcut: Shortcut = "conv_bn",
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i, (c_in, c_out, k, s) in enumerate(units):
            make = separable_conv if separable and k > 1 else conv
            unit_conv = make(dims, c_in, c_out, k, s, dilation if k > 1 else 1, bias=bias)
            if preact:
                layers += [batchnorm(dims, c_in), nn.ReLU(inplace=False), unit_conv]
            else:
                layers += [unit_conv, batchnorm(dims, c_out)]
                if i < len(units) - 1:
                    layers.append(nn.ReLU(inplace=True))
        self.branch = nn.Sequential(*layers)
        self.shortcut = make_shortcut(dims, in_channels, out_channels, stride, shortcut)
        self.act = nn.Identity() if preact else nn.ReLU(inplace=True)

    def last_norm(self) -> nn.Module:
        """The branch's last BN (post-activation) or convolution (pre-activation): zero it to start as the identity."""
        last = self.branch[-1]
        return last[-1] if isinstance(last, nn.Sequential) else last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.branch(x) + self.shortcut(x))


class BasicBlock(ResidualBlock):
    """Two k-convolutions (the d2l ``Residual`` and torchvision ``BasicBlock``); stride on the first.
    ``channels`` is the output's; ``kwargs`` go to :class:`ResidualBlock` (``dilation``, ``preact``...)."""

    expansion = 1

    def __init__(self, dims: int, in_channels: int, channels: int, stride: int = 1, kernel_size: int = 3,
                 **kwargs) -> None:
        units = [(in_channels, channels, kernel_size, stride), (channels, channels, kernel_size, 1)]
        super().__init__(dims, units, in_channels, channels, stride, **kwargs)


class Bottleneck(ResidualBlock):
    """1x1 reduce -> k-convolution (carries the stride) -> 1x1 expand by 4 (ResNet-50 v1.5).
    ``channels`` is the k-convolution's (the output has 4x); ``kwargs`` go to :class:`ResidualBlock`."""

    expansion = 4

    def __init__(self, dims: int, in_channels: int, channels: int, stride: int = 1, kernel_size: int = 3,
                 **kwargs) -> None:
        out_channels = channels * self.expansion
        units = [(in_channels, channels, 1, 1), (channels, channels, kernel_size, stride),
                 (channels, out_channels, 1, 1)]
        super().__init__(dims, units, in_channels, out_channels, stride, **kwargs)


BLOCKS: dict[str, type[BasicBlock | Bottleneck]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


def whole_sizes(*, sequences: tuple[str, ...] = (), **sizes: object) -> dict[str, int | tuple[int, ...]]:
    """``sizes`` (channels, kernels, strides, dilations, widths, blocks: an integer, numpy's
    included, as a parameter grid gives them) as Python ints in [1, 2**31]
    (:data:`~msresnet1d.values.MAX_SIZE`), tuples for sequences, so that the layers and attributes
    built from them are plain (TorchScript needs it). The sizes named in ``sequences`` (one per
    branch or stage) must be sequences of integers, the others one integer.

    Raises:
        ValueError: naming the first size that is not a whole number in [1, 2**31] (or a sequence
            of them), or that is a sequence where one integer is expected or the other way round.
    """
    out: dict[str, int | tuple[int, ...]] = {}
    for name, value in sizes.items():
        several = np.ndim(value) > 0  # a sequence or an array; a string or a 0-d array is one value
        if name in sequences and not several:
            raise ValueError(f"{name} must be a sequence of integers >= 1, got {value!r} (for one, write ({value!r},))")
        if several and name not in sequences:
            raise ValueError(f"{name} must be one integer >= 1, not a sequence, got {value!r}")
        values = value.ravel().tolist() if isinstance(value, np.ndarray) else list(value) if several else [value]
        shown = tuple(values) if several else value
        if not all(is_whole(v) and v >= 1 for v in values):
            raise ValueError(f"{name} must be {'integers' if several else 'an integer'} >= 1, got {shown!r}")
        if any(v > MAX_SIZE for v in values):
            raise ValueError(f"{name} must be {MAX_SIZE_RULE}, got {shown!r}")
        out[name] = tuple(int(v) for v in values) if several else int(values[0])
    return out


def check_layout(layers: Sequence[int], widths: Sequence[int], block: str) -> None:
    """Validate a stage layout: one width per stage and a known block kind."""
    if len(layers) != len(widths) or not layers:
        raise ValueError(f"layers {tuple(layers)} and widths {tuple(widths)} must be non-empty and of equal length")
    if not isinstance(block, str) or block not in BLOCKS:
        raise ValueError(f"block must be one of {sorted(BLOCKS)}, got {block!r}")


def make_stem(dims: int, in_channels: int, channels: int, kernel_size: int, stride: int, pool: bool,
              bias: bool = False, norm: bool = True) -> tuple[nn.Sequential, list[int]]:
    """First convolution (+ BN + ReLU when ``norm``) (+ 3/2 max-pool when ``pool``).

    Returns the stem and its strides, which fix the network's minimum input size.
    """
    layers = [conv(dims, in_channels, channels, kernel_size, stride, bias=bias)]
    layers += [batchnorm(dims, channels), nn.ReLU(inplace=True)] if norm else []
    layers += [maxpool(dims, 3, 2)] if pool else []
    return nn.Sequential(*layers), [stride] + ([2] if pool else [])


def make_stage(
    block: str | type[BasicBlock | Bottleneck],
    dims: int,
    in_channels: int,
    channels: int,
    num_blocks: int,
    stride: int = 1,
    **block_kwargs,
) -> nn.Sequential:
    """A stage of ``num_blocks`` residual blocks (d2l's ``resnet_block``, generalised).

    The first block takes the stride and the change of width (and so gets a projection
    shortcut); the others keep the shape (identity shortcut). Returns an ``nn.Sequential`` whose
    output has ``channels * block.expansion`` channels and length ceil(L / stride). ``block`` is a
    :data:`BLOCKS` name or a block class (these, or a subclass of one: built as
    ``block(dims, in_channels, channels, stride, **block_kwargs)``); ``dims`` and ``block_kwargs``
    go to every block (:class:`ResidualBlock`'s options).
    """
    if isinstance(block, str) and block not in BLOCKS:
        raise ValueError(f"block must be one of {sorted(BLOCKS)} or a block class, got {block!r}")
    block_cls = BLOCKS[block] if isinstance(block, str) else block
    if num_blocks < 1:
        raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
    blocks = [block_cls(dims, in_channels, channels, stride, **block_kwargs)]
    out_channels = channels * block_cls.expansion
    blocks += [block_cls(dims, out_channels, channels, 1, **block_kwargs) for _ in range(num_blocks - 1)]
    return nn.Sequential(*blocks)


def init_weights(model: nn.Module, zero_init_residual: bool | None = None, scheme: str = "kaiming") -> None:
    """Initialise convolutions and linear layers, BN to unit scale and zero shift, and optionally a
    zero last norm in every residual branch so each block starts as the identity.

    zero_init_residual: that zero last norm; ``None``: the model's own ``zero_init_residual``
        (what it was built with; ``False`` if it has none), so re-initialising keeps it.
    scheme: ``"kaiming"`` (normal, fan_out, ReLU; linear layers keep PyTorch's default) or
    ``"xavier"`` (uniform on convolutions and linear layers, as the d2l training recipe does; their
    biases are zeroed too, where d2l keeps PyTorch's default bias initialisation).
    A model on the meta device is left as it is.
    """
    if scheme not in ("kaiming", "xavier"):
        raise ValueError(f"init must be 'kaiming' or 'xavier', got {scheme!r}")
    # a model of shapes only (built under torch.device("meta")) has no values to set; torch's init
    # functions would also import sympy for its meta tensors, a second
    if all(p.is_meta for p in model.parameters()):
        return
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            if scheme == "xavier":
                nn.init.xavier_uniform_(m.weight)
            elif not isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None and (scheme == "xavier" or not isinstance(m, nn.Linear)):
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    if zero_init_residual is None:
        zero_init_residual = getattr(model, "zero_init_residual", False)
    if zero_init_residual:
        for m in model.modules():
            if isinstance(m, ResidualBlock):
                nn.init.zeros_(m.last_norm().weight)
