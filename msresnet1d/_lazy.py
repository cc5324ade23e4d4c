"""The module ``__getattr__`` and ``__dir__`` of the packages that import their modules on first
use (``msresnet1d``, ``msresnet1d.data``, ``msresnet1d.training``): ``msresnet1d --help`` and the
torch-free config need none of them."""

from __future__ import annotations

import ast
import importlib
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any


def type_checking_exports(init_file: str) -> dict[str, str]:
    """``{name: module}`` of the ``from .module import name`` statements under ``if TYPE_CHECKING:``
    in a package's ``__init__.py`` (``init_file``, its ``__file__``): the names it exports lazily, in
    one list that type checkers read and :func:`lazy_attributes` imports from (``module`` relative
    to the package, ``"models.summary"`` say)."""
    tree = ast.parse(Path(init_file).read_text(encoding="utf-8"), init_file)
    return {alias.asname or alias.name: statement.module
            for node in tree.body
            if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
            for statement in node.body if isinstance(statement, ast.ImportFrom) and statement.level == 1
            and statement.module
            for alias in statement.names}


def lazy_attributes(package: str, namespace: dict[str, Any], submodules: Collection[str],
                    exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package`` (its ``__name__``; ``namespace``: its
    ``globals()``): each of ``submodules`` is imported when first asked for (``msresnet1d.training.run``
    works after ``import msresnet1d.training``), and each name of ``exports`` is taken from the
    submodule it maps to (``{"DataError": "errors"}``, :func:`type_checking_exports`), imported then;
    ``dir()`` lists them all."""

    def __getattr__(name: str) -> Any:
        if name in submodules:
            return importlib.import_module(f".{name}", package)
        if name in exports:
            return getattr(importlib.import_module(f".{exports[name]}", package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports) | set(submodules))

    return __getattr__, __dir__
