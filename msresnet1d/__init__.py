"""msresnet1d: multi-scale residual networks for signals, with the textbook 2D ResNet as a baseline."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["MSResNet1d", "ResNet", "__version__", "count_flops", "count_parameters", "create_model",
           "list_models", "summary"]

# the subpackages and modules users import; ``msresnet1d.data`` works after ``import msresnet1d`` too
_SUBMODULES = ("cli", "data", "export", "inference", "models", "predict", "sklearn", "training")

if TYPE_CHECKING:
    from .models import MSResNet1d, ResNet, count_flops, count_parameters, create_model, list_models, summary


def __getattr__(name: str) -> Any:
    """The models' API and the submodules, imported (with torch) when first used: ``msresnet1d --help``
    needs none of it."""
    if name in __all__:
        return getattr(importlib.import_module(".models", __name__), name)
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | set(_SUBMODULES))
