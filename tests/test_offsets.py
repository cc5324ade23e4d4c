"""Class offsets fitted on validation predictions (msresnet1d.training.offsets)."""

import numpy as np
import pytest

from msresnet1d.training.metrics import cinc_score, confusion_matrix
from msresnet1d.training.offsets import fit_class_offsets, predict_with_offsets

CLASSES = ["N", "A", "O", "~"]


def cinc(cm: np.ndarray) -> float:
    return cinc_score(cm, CLASSES)


def biased_predictions(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels and softmax probabilities of a model that under-calls class A by 1.5 nats."""
    rng = np.random.default_rng(seed)
    y = rng.choice(4, size=n, p=[0.55, 0.15, 0.25, 0.05])
    logits = 1.5 * np.eye(4)[y] + rng.normal(0, 1, size=(n, 4))
    logits[:, 1] -= 1.5
    p = np.exp(logits)
    return y, p / p.sum(axis=1, keepdims=True)


def test_predict_with_offsets():
    p = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3]])
    np.testing.assert_array_equal(predict_with_offsets(p, np.zeros(3)), [0, 1])
    np.testing.assert_array_equal(predict_with_offsets(p, np.array([0.0, 0.0, 2.0])), [2, 2])  # log 0.1 + 2 > log 0.6
    certain = np.array([[1.0, 0.0]])  # log 0 is clipped: a large enough offset still wins
    np.testing.assert_array_equal(predict_with_offsets(certain, np.array([0.0, 30.0])), [1])
    with pytest.raises(ValueError, match=r"offsets \(K,\), got \(2, 3\) and \(2,\)"):
        predict_with_offsets(p, np.zeros(2))


def test_fitted_offsets_undo_a_bias_and_help_on_new_records():
    y, p = biased_predictions(1500, seed=0)
    offsets = fit_class_offsets(p, y, cinc)
    assert offsets[0] == 0 and 0.8 <= offsets[1] <= 2.2  # A is pushed back up, near the 1.5 taken away
    plain = cinc(confusion_matrix(y, p.argmax(axis=1), 4))
    assert cinc(confusion_matrix(y, predict_with_offsets(p, offsets), 4)) > plain
    y_new, p_new = biased_predictions(1500, seed=1)  # records the offsets were not fitted on
    assert (cinc(confusion_matrix(y_new, predict_with_offsets(p_new, offsets), 4))
            > cinc(confusion_matrix(y_new, p_new.argmax(axis=1), 4)) + 0.02)


def test_offsets_move_only_when_the_score_asks():
    y, p = biased_predictions(200, seed=2)
    np.testing.assert_array_equal(fit_class_offsets(p, y, lambda cm: 1.0), np.zeros(4))  # ties: nearest 0
    assert fit_class_offsets(p, y, cinc, grid=np.array([0.0])).tolist() == [0, 0, 0, 0]


def test_rounds_go_on_while_a_round_moves_an_offset():
    y, p = biased_predictions(1500, seed=0)
    calls = []

    def counted(cm: np.ndarray) -> float:
        calls.append(1)
        return cinc(cm)

    grid = np.linspace(-2, 2, 9)
    per_round = 3 * len(grid)  # each of classes 1-3 tries each value
    moved = fit_class_offsets(p, y, counted, grid=grid, rounds=3)
    assert moved[1] != 0 and len(calls) in (2 * per_round, 3 * per_round)  # a second round: the first moved A
    calls.clear()
    fit_class_offsets(p, y, counted, grid=grid, rounds=1)
    assert len(calls) == per_round
    calls.clear()
    fit_class_offsets(p, y, lambda cm: (calls.append(1), 1.0)[1], grid=grid, rounds=3)
    assert len(calls) == per_round  # nothing moved: one round


def test_fit_class_offsets_rejects_bad_input():
    y, p = biased_predictions(50, seed=3)
    with pytest.raises(ValueError, match="grid must hold 0"):
        fit_class_offsets(p, y, cinc, grid=np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="rounds must be >= 1, got 0"):
        fit_class_offsets(p, y, cinc, rounds=0)
    with pytest.raises(ValueError, match=r"y_true \(N,\), got \(50, 4\) and \(49,\)"):
        fit_class_offsets(p, y[:-1], cinc)
