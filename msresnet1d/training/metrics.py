"""Classification metrics as the ECG field defines them.

Per class c of a confusion matrix ``cm`` (rows = true class, columns = predicted class):

- sensitivity Se = TP / (TP + FN)        (recall)
- positive predictivity +P = TP / (TP + FP)   (precision)
- specificity Sp = TN / (TN + FP)
- F1 = 2 TP / (2 TP + FP + FN)          (= 2 TP / (true_c + predicted_c), the CinC 2017 form)

AAMI EC57 beat reports give these for N, S, V and F. Q (unclassifiable and paced-fusion beats,
15 beats in DS1 + DS2) is kept as a fifth class for training and counted in accuracy, but its row
is left out of the macro averages, as de Chazal et al. (2004) and most papers since do. A class
with no true and no predicted example gets NaN (undefined), not 0 or 1 (:func:`cinc_score`
alone counts it as 0).

The CinC 2017 challenge score is the mean F1 of N (normal), A (AF) and O (other rhythm); noise
is classified but not averaged.
"""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np

AAMI_SCORED = ("N", "S", "V", "F")
CINC_SCORED = ("N", "A", "O")


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(num_classes, num_classes) int64 counts; rows true, columns predicted."""
    from sklearn.metrics import confusion_matrix as sk_confusion_matrix  # when used: commands start without sklearn

    return sk_confusion_matrix(y_true, y_pred, labels=np.arange(num_classes)).astype(np.int64)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.maximum(den, 1), np.nan)


def per_class(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Se, +P, Sp and F1 for every class of a confusion matrix (K, K), or of each of a stack of
    them (..., K, K), as float arrays (..., K) (NaN = undefined)."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    true = cm.sum(axis=-1)
    predicted = cm.sum(axis=-2)
    fp, fn = predicted - tp, true - tp
    tn = cm.sum(axis=(-2, -1))[..., None] - tp - fp - fn
    return {"se": _ratio(tp, true), "ppv": _ratio(tp, predicted), "sp": _ratio(tn, tn + fp),
            "f1": _ratio(2 * tp, true + predicted), "support": true}


def macro_auc(y_true: np.ndarray, probabilities: np.ndarray, classes: Sequence[int] | None = None) -> float:
    """One-vs-rest ROC AUC averaged over ``classes`` (indices; default all) that are present in
    ``y_true``: the scored ones, as macro-F1 averages (NaN if fewer than two classes are present)."""
    from sklearn.metrics import roc_auc_score

    present = np.unique(y_true)
    if len(present) < 2:
        return float("nan")
    averaged = [c for c in present if classes is None or c in classes]
    return float(np.mean([roc_auc_score(y_true == c, probabilities[:, c]) for c in averaged])) if averaged \
        else float("nan")


def check_probabilities(probabilities: np.ndarray) -> None:
    """Raise ValueError, naming how many and the first, when rows of (N, K) ``probabilities`` are
    not finite: argmax would call them class 0, and the AUC fail with sklearn's bare "Input
    contains NaN"."""
    bad = ~np.isfinite(probabilities).all(axis=1)
    if bad.any():
        raise ValueError(f"{int(bad.sum()):,} of {len(bad):,} rows of probabilities are not finite (the first, row "
                         f"{int(np.flatnonzero(bad)[0])}): the model's outputs overflowed (weights grown too large or "
                         "not finite: a learning rate too high?)")


def classification_report(
    y_true: np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    scored: Sequence[str] | None = None,
) -> dict:
    """Everything a run reports, as plain JSON-able values.

    Args:
        y_true: (N,) int class indices.
        probabilities: (N, K) class probabilities (rows sum to 1); a row that is not finite
            raises ``ValueError``, naming how many.
        class_names: K names, in index order.
        scored: the classes averaged in ``macro_f1`` and ``macro_auc`` (default all).

    Returns a dict with ``accuracy``, ``macro_f1``, ``macro_auc``, ``confusion_matrix`` and
    ``per_class`` {name: {se, ppv, sp, f1, support}}; plus ``cinc_score`` when the classes are
    CinC 2017's, and ``ec57`` (:func:`ec57`: S and V by EC57's rules) when they are AAMI's.
    """
    y_true = np.asarray(y_true)
    check_probabilities(probabilities)
    y_pred = probabilities.argmax(axis=1)
    cm = confusion_matrix(y_true, y_pred, len(class_names))
    stats = per_class(cm)
    scored = list(scored) if scored is not None else list(class_names)
    scored_idx = [class_names.index(c) for c in scored]
    report = {
        "n": int(len(y_true)),
        "accuracy": float(np.trace(cm) / max(cm.sum(), 1)),
        "macro_f1": float(np.nanmean(stats["f1"][scored_idx])) if np.isfinite(stats["f1"][scored_idx]).any()
        else float("nan"),
        "macro_auc": macro_auc(y_true, probabilities, scored_idx),
        "scored_classes": scored,
        "class_names": list(class_names),
        "confusion_matrix": cm.tolist(),
        "per_class": {name: {k: float(v[i]) for k, v in stats.items()} for i, name in enumerate(class_names)},
    }
    if set(CINC_SCORED) <= set(class_names):
        report["cinc_score"] = cinc_score(cm, class_names)
    if set(AAMI_SCORED) <= set(class_names):
        report["ec57"] = ec57(cm, class_names)
    return report


#: EC57's gross statistics, as PhysioNet's ``bxb`` computes them: per ectopic class, the
#: reference classes whose beats called that class are not false positives (a fusion beat is
#: partly ventricular; Q beats are unclassifiable).
EC57_EXCUSED: dict[str, tuple[str, ...]] = {"S": ("Q",), "V": ("F", "Q")}


def ec57(cm: np.ndarray, class_names: Sequence[str]) -> dict[str, dict[str, float]]:
    """S's and V's Se, +P and F1 with :data:`EC57_EXCUSED` beats not counted against +P
    (Se is unchanged; EC57 defines no F1, it is derived from its Se and +P). :func:`per_class`
    is one-vs-rest: it counts every beat called S or V that is not, F and Q included.

    Only the counting rules are ``bxb``'s: the classes are ``cm``'s (de Chazal's mapping, where
    ``bxb`` counts escape beats e and j as S), and so are the beats (``bxb`` skips each record's
    first 5 minutes by default)."""
    names = list(class_names)
    out = {}
    for ectopic, excused in EC57_EXCUSED.items():
        c = names.index(ectopic)
        counted = np.array(cm, dtype=np.float64)
        for name in excused:
            if name in names:
                counted[names.index(name), c] = 0  # neither a hit nor a false positive of this class
        stats = per_class(counted)
        out[ectopic] = {key: float(stats[key][c]) for key in ("se", "ppv", "f1")}
    return out


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (an undefined metric) replaced by None, so that
    ``json.dumps`` writes strict JSON (``null``, not ``NaN``)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def cinc_score(cm: np.ndarray, class_names: Sequence[str]) -> float:
    """PhysioNet/CinC 2017 score: mean over N, A, O of F1 = 2 correct / (true + predicted).

    A class with no true and no predicted record (possible only in a small subset) counts as 0,
    where the challenge's formula is 0/0 and :func:`per_class` gives NaN: the score stays a
    number that validation can compare."""
    f1 = per_class(cm)["f1"]
    return float(np.mean([np.nan_to_num(f1[list(class_names).index(c)]) for c in CINC_SCORED]))


def format_report(report: dict, title: str = "") -> str:
    """A per-class table (percent) in the AAMI EC57 layout and a line naming its columns, then
    accuracy and macro figures."""
    lines = [title] if title else []
    width = max(8, *(len(name) + 2 for name in report["per_class"]))  # "T-shirt/top" needs more than 8
    lines.append(f"{'class':<{width}}{'support':>9}{'Se':>8}{'+P':>8}{'Sp':>8}{'F1':>8}")
    for name, s in report["per_class"].items():
        mark = "" if name in report["scored_classes"] else "  (not in macro)"
        cells = "".join(f"{100 * s[k]:>8.1f}" if np.isfinite(s[k]) else f"{'-':>8}" for k in ("se", "ppv", "sp", "f1"))
        lines.append(f"{name:<{width}}{int(s['support']):>9}{cells}{mark}")
    lines.append("(percent: Se sensitivity = recall, +P positive predictivity = precision, Sp specificity)")
    summary = f"accuracy {100 * report['accuracy']:.1f}   macro-F1 {100 * report['macro_f1']:.1f}"
    if len(report["scored_classes"]) < len(report["per_class"]):  # say which classes, when not all
        summary += f" ({','.join(report['scored_classes'])})"
    if np.isfinite(report["macro_auc"]):
        summary += f"   macro AUC {report['macro_auc']:.3f}"
    if "cinc_score" in report:
        summary += f"   CinC 2017 score {report['cinc_score']:.3f}"
    lines.append(summary)
    if "ec57" in report:
        cells = "   ".join(f"{c} +P {100 * v['ppv']:.1f} F1 {100 * v['f1']:.1f}" for c, v in report["ec57"].items()
                           if np.isfinite(v["ppv"]))
        if cells:
            lines.append(f"by EC57's rules (F and Q beats called V, Q beats called S not counted against +P): {cells}")
    return "\n".join(lines)


def per_group(y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray, class_names: Sequence[str]) -> list[dict]:
    """For each group (e.g. the record of each beat; in order of first appearance): its size,
    accuracy, and for every class it holds, the count and Se (fraction of them predicted as
    that class). Where a class is lost, record by record."""
    y_true, y_pred, groups = np.asarray(y_true), np.asarray(y_pred), np.asarray(groups)
    if not len(y_true) == len(y_pred) == len(groups):
        raise ValueError(f"per_group: {len(y_true)} labels, {len(y_pred)} predictions and {len(groups)} groups")
    rows = []
    for group in dict.fromkeys(groups.tolist()):
        mine = groups == group
        cm = confusion_matrix(y_true[mine], y_pred[mine], len(class_names))
        stats = per_class(cm)
        held = [k for k in range(len(class_names)) if stats["support"][k] > 0]
        rows.append({"group": group, "n": int(mine.sum()), "accuracy": float(np.trace(cm) / cm.sum()),
                     "counts": {class_names[k]: int(stats["support"][k]) for k in held},
                     "se": {class_names[k]: float(stats["se"][k]) for k in held}})
    return rows


def bootstrap_confusions(y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray, num_classes: int,
                         draws: int = 2000, seed: int = 0) -> np.ndarray:
    """(draws, K, K) confusion matrices of bootstrap samples of whole groups (the record of each
    example): each draw takes as many groups as there are, with replacement, and pools their
    confusion matrices.

    In an inter-patient test the records, not the beats, are the independent units: one record
    can hold most of a class (MIT-BIH's 232 holds 1,382 of DS2's 1,837 S beats), so resampling
    beats would give far too narrow an interval.
    """
    y_true, y_pred, groups = np.asarray(y_true), np.asarray(y_pred), np.asarray(groups)
    if not len(y_true) == len(y_pred) == len(groups) > 0:
        raise ValueError(f"bootstrap: {len(y_true)} labels, {len(y_pred)} predictions and {len(groups)} "
                         "groups; expected as many of each, at least one")
    if isinstance(draws, bool) or not isinstance(draws, (int, np.integer)) or draws < 1:
        raise ValueError(f"bootstrap: draws must be a whole number >= 1, got {draws!r}")
    names, index = np.unique(groups, return_inverse=True)
    by_group = np.zeros((len(names), num_classes, num_classes), dtype=np.int64)
    np.add.at(by_group, (index, y_true, y_pred), 1)
    drawn = np.random.default_rng(seed).multinomial(len(names), np.full(len(names), 1 / len(names)), size=draws)
    return np.tensordot(drawn, by_group, axes=1)


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise ValueError(f"bootstrap: level must lie in (0, 1), got {level!r}")


def percentile_interval(values: np.ndarray, level: float = 0.95) -> np.ndarray:
    """The central ``level`` percentile interval of ``values`` (draws, ...) along the draws:
    (..., 2) low and high bounds; NaN draws (a statistic undefined in them) are left out, and
    a statistic undefined in every draw gets NaN bounds."""
    _check_level(level)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.moveaxis(np.nanpercentile(values, [100 * (1 - level) / 2, 100 * (1 + level) / 2], axis=0), 0, -1)


def group_bootstrap(y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray, num_classes: int,
                    draws: int = 2000, level: float = 0.95, seed: int = 0) -> dict[str, np.ndarray]:
    """Percentile intervals of every class's Se, +P and F1 and of the accuracy over
    :func:`bootstrap_confusions`. A draw in which a statistic is undefined (no true or no
    predicted example of the class) is left out of that statistic's interval.

    Returns:
        fractions: ``"se"``, ``"ppv"``, ``"f1"`` (num_classes, 2) low and high bounds, NaN for a
        class never defined; ``"accuracy"`` (2,).
    """
    _check_level(level)  # before the draws
    cms = bootstrap_confusions(y_true, y_pred, groups, num_classes, draws, seed)
    stats = per_class(cms)
    return {**{stat: percentile_interval(stats[stat], level) for stat in ("se", "ppv", "f1")},
            "accuracy": percentile_interval(np.trace(cms, axis1=1, axis2=2) / cms.sum(axis=(1, 2)), level)}


def record_interval(y_true: np.ndarray, y_pred: np.ndarray, records: np.ndarray, class_names: Sequence[str],
                    draws: int = 2000, level: float = 0.95, seed: int = 0) -> dict:
    """:func:`group_bootstrap` over the records of the examples, in percent, ready for JSON:
    ``{"level", "draws", "records", "accuracy": [low, high], <class>: {"se", "ppv", "f1": [low, high]}}``."""
    interval = group_bootstrap(y_true, y_pred, records, len(class_names), draws, level, seed)
    bounds = lambda values: [round(100 * float(v), 1) for v in values]  # noqa: E731
    return {"level": level, "draws": draws, "records": len(np.unique(np.asarray(records))),
            "accuracy": bounds(interval["accuracy"]),
            **{name: {stat: bounds(interval[stat][k]) for stat in ("se", "ppv", "f1")}
               for k, name in enumerate(class_names)}}


def format_record_interval(interval: dict, names: Sequence[str], what: str) -> str:
    """One line of :func:`record_interval`: the F1 of the classes ``names`` and the accuracy."""
    def span(bounds: list[float]) -> str:
        return "-" if not np.isfinite(bounds).all() else f"{bounds[0]:.1f}-{bounds[1]:.1f}"
    cells = [f"{name} F1 {span(interval[name]['f1'])}" for name in names] + [f"accuracy {span(interval['accuracy'])}"]
    return (f"{100 * interval['level']:.0f}% interval of {what} over {interval['records']} records (the records "
            f"drawn with replacement, {interval['draws']:,} times): {', '.join(cells)}")


def format_per_group(rows: list[dict], class_names: Sequence[str], title: str = "") -> str:
    """:func:`per_group` as a table: one row a group, "Se% (count)" for every class."""
    lines = [title] if title else []
    lines.append(f"{'record':<8}{'beats':>7}{'acc':>7}" + "".join(f"{name:>14}" for name in class_names))
    for row in rows:
        cells = "".join(f"{100 * row['se'][n]:>7.1f} ({row['counts'][n]:>4})" if n in row["counts"] else f"{'-':>14}"
                        for n in class_names)
        lines.append(f"{row['group']:<8}{row['n']:>7}{100 * row['accuracy']:>7.1f}{cells}")
    return "\n".join(lines)
