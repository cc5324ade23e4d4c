"""Models: the dimension-generic ResNet, the multi-scale MSResNet1d, the registry and summaries."""

from .base import ResidualNetwork
from .blocks import BasicBlock, Bottleneck, ResidualBlock, make_shortcut, make_stage
from .msresnet import MSResNet1d
from .registry import create_model, list_models, register_model
from .resnet import ResNet
from .summary import count_flops, count_parameters, summary

__all__ = [
    "BasicBlock", "Bottleneck", "MSResNet1d", "ResNet", "ResidualBlock", "ResidualNetwork", "count_flops",
    "count_parameters",
    "create_model", "list_models", "make_shortcut", "make_stage", "register_model", "summary",
]
