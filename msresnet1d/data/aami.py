"""MIT-BIH beat symbols and the AAMI EC57 classes, as mapped by de Chazal et al. (2004).

=====  ==========================================  =========================
class  meaning                                      MIT-BIH symbols
=====  ==========================================  =========================
N      normal and bundle branch block beats,        N, L, R, e, j
       atrial and nodal escape beats
S      supraventricular ectopic beats               A, a, J, S
V      ventricular ectopic beats                    V, E
F      fusion of ventricular and normal             F
Q      paced, paced fusion, unclassifiable          /, f, Q
=====  ==========================================  =========================

This module follows the mapping of de Chazal, O'Dwyer and Reilly (IEEE TBME 51(7), 2004), as
do most papers since. PhysioNet's ``bxb`` differs: when it reports supraventricular beats it
counts e, j and n as S (its own ``amap``), so figures from ``bxb`` and from this mapping differ
for records with escape beats; say which mapping a figure uses. This module leaves n, B and r
unmapped (none of them occurs in MIT-BIH).

Other WFDB beat codes (B, n, r, ?) are beats but outside this table: they count for the
RR intervals of their neighbours but get no class and no window. Every other annotation
(rhythm changes '+', noise '~', artefacts '|', flutter waves '!', comments '"', non-conducted
P waves 'x', ...) is not a beat and is ignored.
"""

from __future__ import annotations

import numpy as np

AAMI_CLASSES: tuple[str, ...] = ("N", "S", "V", "F", "Q")

MITBIH_TO_AAMI: dict[str, str] = {
    "N": "N", "L": "N", "R": "N", "e": "N", "j": "N",
    "A": "S", "a": "S", "J": "S", "S": "S",
    "V": "V", "E": "V",
    "F": "F",
    "/": "Q", "f": "Q", "Q": "Q",
}  # fmt: skip

#: WFDB beat codes that the AAMI table above leaves out.
UNMAPPED_BEAT_SYMBOLS: frozenset[str] = frozenset({"B", "n", "r", "?"})

#: All annotation symbols that mark a beat (QRS complex).
BEAT_SYMBOLS: frozenset[str] = frozenset(MITBIH_TO_AAMI) | UNMAPPED_BEAT_SYMBOLS


def aami_labels(symbols: np.ndarray) -> np.ndarray:
    """AAMI class indices (into :data:`AAMI_CLASSES`) of MIT-BIH beat symbols, (n,) int64.

    Raises ``KeyError`` for a symbol outside :data:`MITBIH_TO_AAMI`.
    """
    index = {symbol: AAMI_CLASSES.index(cls) for symbol, cls in MITBIH_TO_AAMI.items()}
    return np.array([index[s] for s in symbols], dtype=np.int64)
