import numpy as np
import pytest
from sklearn.model_selection import StratifiedGroupKFold

from msresnet1d.data import DS1, DS2, SAME_PATIENT, balanced_holdout, record_kfold, split_by_record


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


def test_records_of_one_patient_stay_on_one_side():
    # MIT-BIH 201 and 202 are the same patient: a split of all records must not separate them.
    names = sorted(DS1 + DS2)
    rng = np.random.default_rng(0)
    labels = {n: rng.integers(0, 3, 50) for n in names}
    for seed in range(40):
        train, test = split_by_record(names, 0.25, seed=seed)
        assert len(test) == 11 and sorted(train + test) == names
        assert ("201" in test) == ("202" in test), seed
        train, val = balanced_holdout(labels, 4, seed=seed)
        assert len(val) == 4 and ("201" in val) == ("202" in val), seed
    for seed in range(10):
        folds = record_kfold(labels, 5, seed=seed)
        assert sorted(sum(folds, [])) == names
        assert any({"201", "202"} <= set(fold) for fold in folds), seed
    with pytest.raises(ValueError, match=r"no 1 test records of whole patients"):
        split_by_record(["201", "202"], 1)
    with pytest.raises(ValueError, match=r"n_splits must be in \[2, 2\] \(the number of patients\), got 3"):
        record_kfold({n: labels[n] for n in ("100", "201", "202")}, 3)


def test_splits_without_both_records_of_a_patient_are_those_of_the_records_alone():
    # DS1 holds 201 only and DS2 202 only: their splits are the plain ones by record.
    assert SAME_PATIENT == {"202": "201"} and "201" in DS1 and "202" in DS2
    for records in (DS1, DS2):
        names = sorted(records)
        for seed in range(5):
            order = np.random.default_rng(seed).permutation(len(names))
            test = sorted(names[i] for i in order[:5])
            assert split_by_record(records, 5, seed=seed) == ([n for n in names if n not in test], test)
        labels = {n: np.arange(len(n) + int(n) % 7) % 3 for n in names}
        y = np.concatenate([labels[n] for n in names])
        groups = np.repeat(np.arange(len(names)), [len(labels[n]) for n in names])
        plain = StratifiedGroupKFold(5, shuffle=True, random_state=0).split(y, y, groups)
        assert record_kfold(labels, 5, seed=0) == [sorted(names[g] for g in np.unique(groups[t])) for _, t in plain]
