"""Inference-time folding of BatchNorm into the convolution before it.

In eval mode a BatchNorm after a convolution is an affine map per output channel, so it can be
folded into that convolution's weights and bias: one layer less to run, the same outputs to
float32 rounding.
"""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

_CONVS = (nn.Conv1d, nn.Conv2d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def _last_conv(module: nn.Module) -> nn.Module | None:
    """The convolution that produces ``module``'s output: itself, or the last layer of a
    Sequential (a padding layer followed by a convolution, see ``layers.conv``)."""
    if isinstance(module, nn.Sequential) and len(module):
        module = module[-1]
    return module if isinstance(module, _CONVS) else None


def fuse_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` in which every BatchNorm that directly follows a
    convolution inside an ``nn.Sequential`` is folded into it and replaced by ``nn.Identity``.

    For inference only: the copy has no BatchNorm statistics left to update. ``model`` itself is
    not changed. BatchNorms before a convolution (pre-activation) are left as they are.
    """
    fused = copy.deepcopy(model).eval()
    for sequence in [m for m in fused.modules() if isinstance(m, nn.Sequential)]:
        for i in range(1, len(sequence)):
            conv, norm = _last_conv(sequence[i - 1]), sequence[i]
            if conv is None or not isinstance(norm, _NORMS) or not norm.track_running_stats:
                continue
            conv.weight, conv.bias = fuse_conv_bn_weights(conv.weight, conv.bias, norm.running_mean,
                                                          norm.running_var, norm.eps, norm.weight, norm.bias)
            sequence[i] = nn.Identity()
    return fused
