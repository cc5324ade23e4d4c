"""What kind of number a parameter holds, for the checks of every layer of the package (no
torch import: the data helpers use them too)."""

from __future__ import annotations

import numbers


def is_whole(value: object) -> bool:
    """An integer (numpy's too), not a bool (a subclass of int) nor a float."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """A real number (numpy's too, NaN and infinities included), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
