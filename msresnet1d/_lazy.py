"""The module ``__getattr__`` and ``__dir__`` of the packages that import their modules on first
use (``msresnet1d``, ``msresnet1d.data``, ``msresnet1d.training``): ``msresnet1d --help`` and the
torch-free config need none of them."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Collection, Mapping
from typing import Any


def lazy_attributes(package: str, namespace: dict[str, Any], submodules: Collection[str],
                    exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package`` (its ``__name__``; ``namespace``: its
    ``globals()``): each of ``submodules`` is imported when first asked for (``msresnet1d.training.run``
    works after ``import msresnet1d.training``), and each name of ``exports`` is taken from the
    submodule it maps to (``{"DataError": "errors"}``), imported then; ``dir()`` lists them all."""

    def __getattr__(name: str) -> Any:
        if name in submodules:
            return importlib.import_module(f".{name}", package)
        if name in exports:
            return getattr(importlib.import_module(f".{exports[name]}", package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports) | set(submodules))

    return __getattr__, __dir__
