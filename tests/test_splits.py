import numpy as np
import pytest

from msresnet1d.data import balanced_holdout


def test_balanced_holdout_keeps_rare_classes_in_training():
    # Record "f" holds nearly all of class 2; a plain random hold-out could take it.
    labels = {name: np.array([0] * 90 + [1] * 10) for name in "abcd"}
    labels.update({name: np.array([0] * 90 + [2] * 8) for name in "egh"})
    labels["f"] = np.array([0] * 50 + [2] * 60)
    labels.update({name: np.zeros(90, dtype=int) for name in "ijklmn"})
    for seed in range(20):
        train, val = balanced_holdout(labels, 2, max_share=0.25, min_beats=5, seed=seed)
        assert "f" not in val and len(val) == 2 and sorted(train + val) == sorted(labels)
        held = np.bincount(np.concatenate([labels[n] for n in val]), minlength=3)
        assert 5 <= held[1] <= 10 and 5 <= held[2] <= 21  # validation sees every class, training keeps 75%


def test_balanced_holdout_falls_back_to_the_closest_draw_with_a_warning():
    labels = {"a": np.array([1] * 10), "b": np.array([0] * 10), "c": np.array([0] * 9 + [1])}
    with pytest.warns(UserWarning, match="closest"):
        train, val = balanced_holdout(labels, 1, tries=50)
    assert val == ["c"] and train == ["a", "b"]  # c takes the smallest share of each class
