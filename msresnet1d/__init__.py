"""msresnet1d: multi-scale residual networks for signals, with the textbook 2D ResNet as a baseline."""

from .models import MSResNet1d, ResNet, count_flops, count_parameters, create_model, list_models, summary

__version__ = "0.1.0"

__all__ = ["MSResNet1d", "ResNet", "__version__", "count_flops", "count_parameters", "create_model",
           "list_models", "summary"]
