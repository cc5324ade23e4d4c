"""msresnet1d: multi-scale residual networks for signals, with the textbook 2D ResNet as a baseline."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import _lazy

__version__ = "0.1.0"

__all__ = ["MSResNet1d", "ResNet", "__version__", "count_flops", "count_parameters", "create_model",
           "list_models", "summary"]

# the subpackages and modules users import; ``msresnet1d.data`` works after ``import msresnet1d`` too
_SUBMODULES = ("cli", "data", "export", "inference", "models", "predict", "sklearn", "training")

if TYPE_CHECKING:  # the names of __all__, imported on first use (the tests hold the two lists together)
    from .models import MSResNet1d, ResNet, count_flops, count_parameters, create_model, list_models
    from .models.summary import summary  # the function: "from .models import summary" names the module to mypy


# the models' API and the submodules, imported (with torch) when first used: ``msresnet1d --help`` needs none of it
__getattr__, __dir__ = _lazy.lazy_attributes(__name__, globals(), _SUBMODULES,
                                             {name: "models" for name in __all__ if name != "__version__"})
