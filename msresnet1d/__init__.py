"""msresnet1d: multi-scale residual networks for signals, with the textbook 2D ResNet as a baseline."""

__version__ = "0.1.0"
