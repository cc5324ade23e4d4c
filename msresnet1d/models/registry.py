"""Model registry: ``create_model(name, **kwargs)`` and ``list_models()`` (timm style)."""

from __future__ import annotations

import fnmatch
import inspect
import typing
from typing import Callable, TypeVar

from torch import nn

from ..spelling import did_you_mean
from .base import ResidualNetwork

_MODELS: dict[str, Callable[..., nn.Module]] = {}
F = TypeVar("F", bound=Callable[..., nn.Module])


def register_model(fn: F) -> F:
    """Decorator: register a factory function under its own name."""
    if fn.__name__ in _MODELS:
        raise ValueError(f"a model named {fn.__name__!r} is already registered")
    _MODELS[fn.__name__] = fn
    return fn


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style pattern (e.g. ``"msresnet1d_*"``), sorted."""
    return sorted(name for name in _MODELS if fnmatch.fnmatch(name, pattern))


def create_model(name: str, **kwargs) -> ResidualNetwork:
    """Build a registered model; keyword arguments override the preset (``in_channels``,
    ``num_classes``, ...). Every preset builds a :class:`~msresnet1d.models.base.ResidualNetwork`
    (``forward_features``, ``forward_head``, ``reset_classifier``, ``min_input_size``, ...), as
    the package's training and inference expect of a model; a registered factory that builds
    anything else is refused (TypeError)."""
    _check_known(name)
    try:
        model = _MODELS[name](**kwargs)
    except TypeError as e:
        unknown = sorted(set(kwargs) - model_options(name)) if "unexpected keyword argument" in str(e) else []
        if not unknown:
            raise
        raise TypeError(f"model {name!r} takes no option {', '.join(map(repr, unknown))}"
                        f"{did_you_mean(unknown, model_options(name))}; its options: "
                        f"{', '.join(sorted(model_options(name)))}") from None
    if not isinstance(model, ResidualNetwork):
        raise TypeError(f"model {name!r}: its factory built a {type(model).__name__}, not a "
                        "msresnet1d.models.base.ResidualNetwork (forward_features, min_input_size, ...), which the "
                        "package's training, inference and export use")
    return model


def _check_known(name: str) -> None:
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}{did_you_mean([name], _MODELS)}; available: "
                         f"{', '.join(list_models())}")


def model_options(name: str) -> set[str]:
    """The keyword arguments ``create_model(name, ...)`` accepts: its factory's own and, where the
    factory passes ``**kwargs`` on, those of the model class it builds."""
    def named(fn: Callable) -> set[str]:
        return {p.name for p in inspect.signature(fn).parameters.values()
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - {"self"}

    _check_known(name)
    factory = _MODELS[name]
    options = named(factory)
    if any(p.kind is p.VAR_KEYWORD for p in inspect.signature(factory).parameters.values()):
        options |= named(_built_class(factory).__init__)
    return options


def _built_class(factory: Callable[..., nn.Module]) -> type:
    """The class ``factory`` builds: its return annotation when that names a model class more
    precise than ``nn.Module`` (every preset here: no model is built to see), else the class of
    a model it builds with its defaults (a user's factory annotated loosely, or not at all)."""
    try:
        built = typing.get_type_hints(factory).get("return")
    except Exception:  # noqa: BLE001 - an annotation that does not resolve (a TYPE_CHECKING-only name)
        built = None
    if isinstance(built, type) and issubclass(built, nn.Module) and built is not nn.Module:
        return built
    return type(factory())
