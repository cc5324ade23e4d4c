"""Class offsets chosen on validation records: predict ``argmax(log p + b)`` instead of ``argmax(p)``.

A network trained with class weights (or on a class mix unlike the one it is scored on) puts its
decision boundaries where its loss wanted them, not where a score of the whole confusion matrix,
such as the CinC 2017 score (mean F1 of N, A and O), is highest. One additive offset per class on
the log probabilities moves the boundaries without retraining. The offsets are fitted on
validation predictions, never on test ones; with few validation records they can fit noise, so
judge them by cross-fitting (fit on one part of the validation records, score on the other).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .metrics import confusion_matrix

DEFAULT_GRID = np.round(np.arange(-2.0, 2.0001, 0.1), 10)


def _log(probabilities: np.ndarray) -> np.ndarray:
    return np.log(np.clip(probabilities, 1e-12, None))  # a probability of 0 stays finite


def predict_with_offsets(probabilities: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(N,) class indices ``argmax(log p + offsets)`` of (N, K) class probabilities and (K,) offsets."""
    probabilities, offsets = np.asarray(probabilities, dtype=np.float64), np.asarray(offsets, dtype=np.float64)
    if probabilities.ndim != 2 or offsets.shape != (probabilities.shape[1],):
        raise ValueError(f"predict_with_offsets: probabilities must be (N, K) and offsets (K,), got "
                         f"{probabilities.shape} and {offsets.shape}")
    return (_log(probabilities) + offsets).argmax(axis=1)


def fit_class_offsets(
    probabilities: np.ndarray,
    y_true: np.ndarray,
    score: Callable[[np.ndarray], float],
    grid: np.ndarray = DEFAULT_GRID,
    rounds: int = 3,
) -> np.ndarray:
    """(K,) offsets on the log probabilities that maximise ``score`` of the confusion matrix.

    Coordinate ascent: class 0's offset stays 0 (only differences matter); each round tries every
    ``grid`` value for each other class in turn, keeping the others, and takes the best one (ties:
    the value nearest 0, so that offsets move only when the score asks for it). Stops after
    ``rounds`` rounds or when a round changes nothing.

    Args:
        probabilities: (N, K) class probabilities of N validation examples.
        y_true: (N,) int class indices.
        score: maps a (K, K) confusion matrix (rows true, columns predicted) to a number to
            maximise, e.g. ``lambda cm: cinc_score(cm, CINC_CLASSES)``.
        grid: candidate offsets (natural-log units); must hold 0.
        rounds: at most this many passes over the classes.
    """
    probabilities, y_true = np.asarray(probabilities, dtype=np.float64), np.asarray(y_true)
    if probabilities.ndim != 2 or y_true.shape != (len(probabilities),):
        raise ValueError(f"fit_class_offsets: probabilities must be (N, K) and y_true (N,), got "
                         f"{probabilities.shape} and {y_true.shape}")
    grid = np.asarray(grid, dtype=np.float64)
    if not np.any(grid == 0):
        raise ValueError("fit_class_offsets: the grid must hold 0 (no offset)")
    if rounds < 1:
        raise ValueError(f"fit_class_offsets: rounds must be >= 1, got {rounds}")
    k, log_p = probabilities.shape[1], _log(probabilities)
    order = grid[np.argsort(np.abs(grid), kind="stable")]  # nearest 0 first: argmax keeps the first of ties
    offsets = np.zeros(k)
    for _ in range(rounds):
        before = offsets.copy()
        for c in range(1, k):
            values = []
            for value in order:
                offsets[c] = value
                values.append(score(confusion_matrix(y_true, (log_p + offsets).argmax(axis=1), k)))
            offsets[c] = order[int(np.argmax(values))]
        if np.array_equal(offsets, before):
            break
    return offsets
