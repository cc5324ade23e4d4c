"""Suggestions for misspelt names in error messages (``epoch`` for ``epochs``, ``kernals`` for
``kernels``): the closest known name by :func:`difflib.get_close_matches`, if one is close."""

from __future__ import annotations

import difflib
from typing import Iterable


def did_you_mean(names: Iterable[str], known: Iterable[str]) -> str:
    """`` (did you mean 'epochs'?)`` for one unknown name with a close known one; for several,
    each close match with the name it is for (`` (did you mean 'epochs' for 'epoch', 'fs' for
    'fss'?)``); an empty string when none is close, and for a name that is not a string (a model
    given as ``3``: no spelling to mend)."""
    names, known = list(names), sorted(known)
    matches = {name: close[0] for name in names
               if isinstance(name, str) and (close := difflib.get_close_matches(name, known, n=1))}
    if not matches:
        return ""
    if len(names) == 1:
        return f" (did you mean {matches[names[0]]!r}?)"
    return f" (did you mean {', '.join(f'{match!r} for {name!r}' for name, match in matches.items())}?)"
