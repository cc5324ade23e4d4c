"""PNG plots: a run's learning curves, its test confusion matrix, an ECG strip with labels, a
comparison of config variants across cross-validation folds, and scores beside published ones.

matplotlib is an optional extra (``pip install msresnet1d[plot]``); without it plots are
skipped with one log line. Figures are drawn with ``matplotlib.figure.Figure``, not pyplot: the
caller's backend (a notebook's) is left alone and no figure stays registered, whatever fails.
Every figure is written to a temporary file and renamed.
"""

from __future__ import annotations

import functools
import logging
import textwrap
from pathlib import Path
from typing import Sequence

import numpy as np

from ..atomic import atomic_path

log = logging.getLogger(__name__)


@functools.cache
def _figure_class():
    """matplotlib's ``Figure``, or None when matplotlib cannot be imported (said once per process)."""
    try:
        from matplotlib.figure import Figure
    except ImportError as e:  # not installed, or an import broken off earlier (e.g. by Ctrl-C)
        log.warning("matplotlib could not be imported (%s): no plots (pip install 'msresnet1d[plot]')", e)
        return None
    return Figure


def have_matplotlib() -> bool:
    """Whether plots can be drawn (matplotlib imports); if not, a log warning says so, once."""
    return _figure_class() is not None


def _figure(width: float, height: float):
    """A new ``matplotlib.figure.Figure`` of that size in inches, or None without matplotlib."""
    figure = _figure_class()
    return None if figure is None else figure(figsize=(width, height))


def _save(fig, path: Path) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")


def plot_curves(rows: Sequence[dict[str, float]], path: Path, tested_epoch: int | None = None) -> None:
    """Training loss, and the training accuracy (d2l's "train acc", dashed) with the validation
    metrics (each its own marker), against the epoch; ``tested_epoch`` (1-based), the epoch whose
    weights were tested, is marked on both. A rhythm run's validation macro-F1, which is its CinC
    score (the mean F1 of N, A and O), is drawn once, as the CinC score."""
    fig = _figure(10, 3.6) if rows else None
    if fig is None:
        return
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in rows]
    ax_loss, ax_metric = fig.subplots(1, 2)
    ax_loss.plot(epochs, [r["train_loss"] for r in rows], marker="o")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="loss")
    trained = "train_accuracy" in rows[0]  # logs of runs before it have none
    if trained:
        ax_metric.plot(epochs, [r["train_accuracy"] for r in rows], marker="o", linestyle="--", color="grey",
                       label="train accuracy")
    shown = [k for k in rows[0] if k.startswith("val_") and not (k == "val_macro_f1" and "val_cinc_score" in rows[0])]
    for key, marker in zip(shown, "s^Dvx*"):
        ax_metric.plot(epochs, [r[key] for r in rows], marker=marker, label=f"val {key[4:].replace('_', ' ')}")
    ax_metric.set(xlabel="epoch", ylabel="accuracy, validation metrics" if trained else "validation metrics",
                  title="training accuracy, validation" if trained else "validation (no training accuracy logged)",
                  ylim=(0, 1))
    for ax in (ax_loss, ax_metric):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # one epoch: one tick
        if tested_epoch is not None:
            ax.axvline(tested_epoch, color="black", linewidth=0.8, linestyle=":",
                       label="tested epoch" if ax is ax_metric else None)
    if ax_metric.lines:
        ax_metric.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def plot_confusion(cm: np.ndarray, class_names: Sequence[str], path: Path, title: str = "") -> None:
    """Counts and row shares (each true class's Se on the diagonal), each row shaded by its share,
    so rare classes stay visible; the true classes' supports label the rows, and a class absent
    from the data (support 0) is hatched. A long ``title`` is wrapped."""
    size = 1.0 + 0.7 * len(class_names)
    fig = _figure(size + 1, size)
    if fig is None:
        return
    cm = np.asarray(cm)
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    ax = fig.subplots()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    support = cm.sum(axis=1)
    for i in range(len(class_names)):
        if not support[i]:
            ax.axhspan(i - 0.5, i + 0.5, facecolor="none", edgecolor="grey", hatch="//", linewidth=0)
        for j in range(len(class_names)):
            shown = f"{cm[i, j]:,}" + (f"\n{100 * share[i, j]:.0f}%" if support[i] else "")
            ax.text(j, i, shown, ha="center", va="center", fontsize=7,
                    color="white" if share[i, j] > 0.5 else "black")
    ax.set(xticks=range(len(class_names)), yticks=range(len(class_names)), xticklabels=class_names,
           yticklabels=[f"{name} (n={n:,})" for name, n in zip(class_names, support)], xlabel="predicted",
           ylabel="true", title=textwrap.fill(title, 50))
    if max(map(len, class_names)) > 3:  # names longer than a column is wide (Fashion-MNIST's "T-shirt/top")
        for label in ax.get_xticklabels():
            label.set(rotation=45, ha="right", rotation_mode="anchor")
    fig.colorbar(image, ax=ax, label="share of true class")
    fig.tight_layout()
    _save(fig, path)


def plot_variants(variants: dict[str, dict], path: Path, classes: Sequence[str] = ("S", "V", "F"),
                  title: str = "", baseline: str | None = None) -> None:
    """Config variants side by side: each one's macro-F1 per fold (left; the ``baseline``, by
    default the first variant, drawn thicker) and its pooled F1 of ``classes`` (right). ``variants`` maps a name to
    ``{"fold_macro_f1": [...], "pooled": {class: {"f1": ...}, "macro_f1": ...}}`` in percent, as
    ``experiments/mitdb_ds1_cv.py`` reports them; each <name> has its own colour and marker (tab20's
    colours beyond ten names), and a ``"<name>+<method>"`` variant shares them, dashed and hatched."""
    fig = _figure(12, 4) if variants else None
    if fig is None:
        return
    import matplotlib

    names = list(variants)
    baseline = names[0] if baseline is None else baseline
    bases = list(dict.fromkeys(name.split("+")[0] for name in names))
    ax_folds, ax_f1 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.4]})
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        base = bases.index(name.split("+")[0])
        color = f"C{base}" if len(bases) <= 10 else matplotlib.colormaps["tab20"](base % 20)
        derived = "+" in name
        folds = variants[name]["fold_macro_f1"]
        ax_folds.plot(range(1, len(folds) + 1), folds, marker="osD^v<>ph*"[base % 10], color=color,
                      ls="--" if derived else "-",
                      lw=3 if name == baseline else 1.2,
                      label=f"{name} ({variants[name]['pooled']['macro_f1']:.1f} pooled"
                            f"{', baseline' if name == baseline else ''})")
        f1 = [variants[name]["pooled"][c]["f1"] for c in classes]
        ax_f1.bar(np.arange(len(classes)) + (i - (len(names) - 1) / 2) * width, f1, width, color=color,
                  hatch="//" if derived else None, edgecolor="white" if derived else None)
    ax_folds.set(xlabel="fold", ylabel="macro-F1 (%), mean over seeds", title="macro-F1 per fold",
                 xticks=range(1, len(variants[names[0]]["fold_macro_f1"]) + 1))
    ax_f1.set(xticks=range(len(classes)), xticklabels=classes, ylabel="F1 (%), pooled over folds and seeds",
              title="pooled F1 per class", ylim=(0, 100))
    fig.legend(*ax_folds.get_legend_handles_labels(), loc="lower center", ncol=min(len(names), 4), fontsize=8,
               bbox_to_anchor=(0.5, -0.02 - 0.05 * ((len(names) + 3) // 4)))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)


def plot_scores(methods: dict[str, dict[str, float]], path: Path, targets: dict[str, float] | None = None,
                spreads: dict[str, dict[str, float]] | None = None, title: str = "") -> None:
    """Grouped bars: for each score (e.g. ``"S F1"``), one bar per method in ``methods`` (name ->
    {score: value}, in percent; a missing score leaves a gap marked "n/a"). ``spreads`` gives error
    bars (name -> {score: standard deviation}; that method's legend entry says "mean ± SD"),
    ``targets`` a dashed line per score."""
    scores = list(dict.fromkeys(score for values in methods.values() for score in values))
    fig = _figure(4 + 1.2 * len(scores) * max(len(methods), 3) / 3, 4) if methods else None
    if fig is None:
        return
    ax = fig.subplots()
    width = 0.8 / len(methods)
    for i, (name, values) in enumerate(methods.items()):
        x = [j + (i - (len(methods) - 1) / 2) * width for j, score in enumerate(scores) if score in values]
        y = [values[score] for score in scores if score in values]
        err = [(spreads or {}).get(name, {}).get(score, 0.0) for score in scores if score in values]
        ax.bar(x, y, width, yerr=err if any(err) else None, capsize=3, color=f"C{i % 10}",
               label=f"{name} (mean ± SD)" if any(err) else name)
        for j, score in enumerate(scores):
            if score not in values:
                ax.text(j + (i - (len(methods) - 1) / 2) * width, 1, "n/a", ha="center", va="bottom", fontsize=7,
                        rotation=90, color="grey")
    for j, score in enumerate(scores):
        if targets and score in targets:
            ax.hlines(targets[score], j - 0.45, j + 0.45, colors="black", linestyles="--",
                      label="target" if j == min(k for k, s in enumerate(scores) if s in targets) else None)
    ax.set(xticks=range(len(scores)), xticklabels=scores, ylabel="percent", ylim=(0, 100), title=title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    _save(fig, path)


def plot_ecg_strip(signal: np.ndarray, fs: float, beats: np.ndarray, true: Sequence[str], predicted: Sequence[str],
                   path: Path, title: str = "", lead: str = "", start_s: float = 0.0, units: str = "") -> None:
    """A strip of one lead, (L,) samples at ``fs`` Hz in ``units`` (e.g. mV), starting ``start_s``
    seconds into its record (the time axis is the record's), with each beat's true label above and
    the predicted label below (a wrong one bold, vermillion and underlined by a marker, which does
    not rest on hue alone). ``beats``: sample positions in the strip. NaN samples are gaps."""
    fig = _figure(14, 3.4)
    if fig is None:
        return
    t = start_s + np.arange(len(signal)) / fs
    ax = fig.subplots()
    ax.plot(t, signal, color="black", linewidth=0.7)  # a NaN sample (WFDB's invalid value) is a gap
    finite = signal[np.isfinite(signal)]
    top, bottom = (finite.max(), finite.min()) if finite.size else (1.0, -1.0)
    span = top - bottom or 1.0
    for pos, y_true, y_pred in zip(beats, true, predicted):
        at = start_s + pos / fs
        ax.text(at, top + 0.12 * span, y_true, ha="center", fontsize=9, color="#0072B2")
        wrong = y_true != y_pred
        ax.text(at, bottom - 0.18 * span, y_pred, ha="center", fontsize=9, fontweight="bold" if wrong else "normal",
                color="#D55E00" if wrong else "black")
        if wrong:
            ax.plot(at, bottom - 0.24 * span, marker="^", color="#D55E00", markersize=5)
    ax.set(xlabel="time in the record (s)", ylabel=f"{lead or 'signal'}" + (f" ({units})" if units else ""),
           title=(f"{title}: " if title else "") + "true labels above (blue), predicted below (wrong: bold, ^)",
           ylim=(bottom - 0.3 * span, top + 0.3 * span))
    fig.tight_layout()
    _save(fig, path)
