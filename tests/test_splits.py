import numpy as np
import pytest

from msresnet1d.data import balanced_holdout, record_kfold


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


def test_record_kfold_splits_whole_records_and_spreads_each_class():
    # 10 records hold class 1 (equally), 5 class 2; the other 5 only class 0.
    labels = {f"r{i:02d}": np.array([0] * 80 + [1] * 20) for i in range(10)}
    labels.update({f"s{i}": np.array([0] * 70 + [2] * 30) for i in range(5)})
    labels.update({f"t{i}": np.zeros(100, dtype=int) for i in range(5)})
    for seed in range(3):
        folds = record_kfold(labels, n_splits=5, seed=seed)
        assert len(folds) == 5 and sorted(sum(folds, [])) == sorted(labels)  # disjoint, every record once
        for fold in folds:
            assert fold == sorted(fold) and len(fold) == 4
            counts = np.bincount(np.concatenate([labels[n] for n in fold]), minlength=3)
            assert counts[1] == 40 and counts[2] == 30  # 2 class-1 records and 1 class-2 record in each fold
    assert record_kfold(labels, 5, seed=0) == record_kfold(dict(reversed(labels.items())), 5, seed=0)
    with pytest.raises(ValueError, match=r"n_splits must be in \[2, 20\].*got 21"):
        record_kfold(labels, 21)
