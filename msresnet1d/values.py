"""What kind of number a parameter holds, for the checks of every layer of the package (no
torch import: the data helpers use them too)."""

from __future__ import annotations

import numbers
import re

import numpy as np

#: The largest size a model option may hold (channels, widths, kernels, strides, dilations, blocks,
#: hidden units): larger ones overflow torch's tensor sizes or any machine's memory.
MAX_SIZE = 2**31

#: What a size past :data:`MAX_SIZE` is told, after "<name> must be ".
MAX_SIZE_RULE = "at most 2**31 (larger layers overflow torch's sizes)"

#: The most torch threads a run, a command's ``--threads`` or an estimator's ``n_jobs`` may ask
#: for: more than any machine's cores, and past it the system runs out of memory for them.
MAX_THREADS = 1024


def is_whole(value: object) -> bool:
    """An integer (numpy's too), not a bool (a subclass of int) nor a float."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """A real number (numpy's too, NaN and infinities included), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def true_or_false(**flags: object) -> dict[str, bool]:
    """``flags`` (boolean options by name) as Python bools: each must be ``True`` or ``False``
    (numpy's booleans too), not a string such as ``"False"`` nor a number, which Python would
    take as true or false by their emptiness.

    Raises:
        ValueError: naming the first option that is not a boolean, and its value.
    """
    for name, value in flags.items():
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"{name} must be True or False, got {value!r}")
    return {name: bool(value) for name, value in flags.items()}


#: What an annotator (a WFDB annotation file's extension) must be, after "an annotator is".
ANNOTATOR_RULE = "letters, digits or _, not hea (e.g. 'atr': <record>.atr)"


def is_annotator(value: object) -> bool:
    """A WFDB annotation file's extension: ASCII letters, digits or _, and not a header's ``hea``."""
    return isinstance(value, str) and re.fullmatch(r"\w+", value, re.ASCII) is not None and value.lower() != "hea"
