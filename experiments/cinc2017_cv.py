"""PhysioNet/CinC 2017 rhythm classification (N, A, O, ~): stratified k-fold cross-validation by
record on the available training records, scored by the challenge's own measure.

    MSRESNET1D_DATA=/path/to/data python experiments/cinc2017_cv.py [--folds 5] [--seeds 0 1 2]
        [--tta flip] [--checkpoint last] [--offsets] [--set KEY=VALUE ...]

Fold k (1 to --folds) is one `msresnet1d train` run of the CPU-sized rhythm config
(experiments/configs/cinc2017_cpu.toml unless --config says otherwise) per seed with ``data.fold =
k - 1`` (the config counts folds from 0) and ``data.split_seed`` fixed
(--split-seed), so that every seed sees the same folds: the other folds train, a stratified 10% of
them validates (model selection: each run's best epoch), fold k is tested once. With several
seeds, a fold's prediction is their ensemble (mean class probabilities,
``msresnet1d.training.ensemble``); --tta evaluates with test-time augmentation (default: the
config's ``tta``). A finished run is reused, an interrupted one resumed (runs in
<runs>/seed<s>/fold<k>; each run's record in the results names the code that trained it, and
reused runs of other code are said). --set may not set seed, threads, data.data_dir, data.folds,
data.fold or data.split_seed: give --seeds, --threads, --data-dir, --folds, --only, --split-seed.

Reported: per fold, the validation and test CinC 2017 scores (mean F1 of N, A and O, F1 = 2
correct / (true + predicted)) and per-class test F1 (noise too, outside the mean); across folds,
their mean and standard deviation, and the score of the pooled test confusion matrix (every
record tested exactly once) with its 95% interval when the records are drawn with replacement
(2,000 times; the records taken as independent and the predictions as fixed); with several
seeds, also each seed's own validation mean.
``--checkpoint last`` evaluates every run's last epoch instead of its best: a best epoch's
validation score is a maximum over epochs, biased upward, so comparing it with an ensemble's
favours the single run; last epochs are chosen by no one. ``--offsets`` predicts test records with
class offsets on the log probabilities fitted on the fold's validation records
(``msresnet1d.training.offsets``) and reports, beside the plain validation score, a cross-fitted
one: offsets fitted on one stratified half of the validation records score the other half, and
the other way round (the two halves' confusion matrices summed), so that the offsets are judged
on records they were not fitted on. Results go to experiments/results/cinc2017_cv.json, and the
pooled test confusion matrix to a PNG beside it (the same name ending ``_confusion.png``);
``--replot RESULT.json`` draws that PNG again from a recorded result, without data or runs, and
prints the pooled score's interval (which results recorded before it lack).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold

from msresnet1d.arguments import (QUIET_HELP, RUNS_INTERRUPTED, add_data_dir, add_seeds, add_set, as_program,
                                  config_or_exit, database_or_exit, output_or_exit, overrides_or_exit, path_flag,
                                  result_or_exit, results_help, script_parser, seed_value, thread_count, threads_help,
                                  write_result, writing)
from msresnet1d.data import DataError
from msresnet1d.data.rhythm import CINC_CLASSES, read_reference
from msresnet1d.models.tta import TTA_MODES
from msresnet1d.training.ensemble import load_members, predict_members
from msresnet1d.training.metrics import (bootstrap_confusions, cinc_score, confusion_matrix, json_safe, per_class,
                                        percentile_interval)
from msresnet1d.training.offsets import fit_class_offsets, predict_with_offsets
from msresnet1d.training.plots import plot_confusion
from msresnet1d.training.provenance import provenance
from msresnet1d.training.run import recorded_run, warn_other_code

RESULTS = Path(__file__).resolve().parent / "results" / "cinc2017_cv.json"
#: The config keys the script sets from its flags, refused in --set (the flag to give instead).
OWNED = {"seed": "--seeds", "threads": "--threads", "data.data_dir": "--data-dir", "data.folds": "--folds",
         "data.fold": "--only (the script runs every fold)", "data.split_seed": "--split-seed"}


def score(cm: np.ndarray) -> float:
    """The CinC 2017 score of a (4, 4) confusion matrix."""
    return cinc_score(cm, CINC_CLASSES)


def confusion(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    return confusion_matrix(y_true, y_pred, len(CINC_CLASSES))


def evaluate(checkpoints: list[Path], splits: list[str],
             tta: str | None) -> tuple[list[str], list[tuple[np.ndarray, np.ndarray]]]:
    """The test records' names, in the order their predictions come, and for each split its labels
    (N,) and each checkpoint's class probabilities (M, N, 4), whose mean over M is the
    ensemble's; the data read and the models loaded once."""
    task, members = load_members(checkpoints)
    return task.splits["test_names"], [predict_members(task, members, split, tta) for split in splits]


def plain_score(y_true: np.ndarray, probabilities: np.ndarray) -> float:
    """The CinC score of the most probable classes."""
    return score(confusion(y_true, probabilities.argmax(axis=1)))


def cross_fitted_score(y_true: np.ndarray, probabilities: np.ndarray, seed: int = 0) -> float:
    """The CinC score of validation predictions made with class offsets fitted on the other
    stratified half of the validation records (both halves' confusion matrices summed)."""
    halves = StratifiedKFold(2, shuffle=True, random_state=seed).split(probabilities, y_true)
    return score(sum(confusion(y_true[b], predict_with_offsets(probabilities[b], fit_class_offsets(
        probabilities[a], y_true[a], score))) for a, b in halves))


def pooled_interval(cm: np.ndarray, draws: int = 2000, level: float = 0.95, seed: int = 0) -> dict:
    """Percentile intervals of the CinC score and per-class F1 of a pooled (4, 4) test confusion
    matrix when its records are drawn with replacement, ``draws`` times. A record is one
    (true, predicted) pair, one count of the matrix, so the matrix holds all there is to draw.
    The records are taken as independent (CinC 2017 gives no patient identifiers) and the
    predictions as fixed: the interval is that of the test sample, not of training again."""
    true, predicted = np.nonzero(cm := np.asarray(cm))
    y_true, y_pred = np.repeat(true, cm[true, predicted]), np.repeat(predicted, cm[true, predicted])
    cms = bootstrap_confusions(y_true, y_pred, np.arange(len(y_true)), len(CINC_CLASSES), draws, seed)
    f1 = percentile_interval(per_class(cms)["f1"], level)
    return {"level": level, "draws": draws, "records": len(y_true),
            "cinc_score": percentile_interval(np.array([score(c) for c in cms]), level).tolist(),
            "f1": {c: f1[i].tolist() for i, c in enumerate(CINC_CLASSES)}}


def interval_line(interval: dict) -> str:
    """One line of :func:`pooled_interval`: the CinC score's bounds."""
    low, high = interval["cinc_score"]
    return (f"{100 * interval['level']:.0f}% interval of the pooled CinC score over its {interval['records']:,} "
            f"records (drawn with replacement, {interval['draws']:,} times): {low:.3f}-{high:.3f}")


def scores(cm: np.ndarray) -> dict:
    """The CinC score and per-class F1 of a (4, 4) confusion matrix."""
    f1 = per_class(cm)["f1"]
    return {"cinc_score": cinc_score(cm, CINC_CLASSES),
            "f1": {c: float(np.nan_to_num(f1[i])) for i, c in enumerate(CINC_CLASSES)}}


def summarise(confusions: list[np.ndarray], val_scores: list[float]) -> dict:
    """Per-fold and pooled CinC scores and per-class F1 from the folds' (4, 4) test confusion
    matrices, with the folds' validation CinC scores."""
    folds, pooled = [scores(cm) for cm in confusions], np.sum(confusions, axis=0)
    values = np.array([f["cinc_score"] for f in folds])
    for fold, val in zip(folds, val_scores):
        fold["val_cinc_score"] = val
    return {"folds": folds, "cinc_score_mean": float(values.mean()),
            "cinc_score_std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "val_cinc_score_mean": float(np.mean(val_scores)),
            "pooled": scores(pooled), "pooled_confusion_matrix": pooled.tolist(),
            "pooled_interval": pooled_interval(pooled)}


def rescore(predicted: dict[str, str], labels: dict[str, str]) -> dict:
    """The pooled scores (:func:`scores`), confusion matrix and interval of recorded test
    predictions (record -> class) against other labels of the same records (record -> class:
    another version of ``REFERENCE.csv``, say).

    Raises:
        ValueError: a record predicted has no label there.
    """
    missing = sorted(set(predicted) - set(labels))
    if missing:
        raise ValueError(f"no label for {len(missing)} of the {len(predicted)} records predicted "
                         f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''})")
    index = {c: i for i, c in enumerate(CINC_CLASSES)}
    cm = confusion(np.array([index[labels[name]] for name in predicted]),
                   np.array([index[c] for c in predicted.values()]))
    return {**scores(cm), "confusion_matrix": cm.tolist(), "interval": pooled_interval(cm)}


def table(summary: dict) -> str:
    lines = ["| fold | validation | CinC score | F1 N | F1 A | F1 O | F1 ~ |", "|---|---:|---:|---:|---:|---:|---:|"]
    rows = [(str(k + 1), f) for k, f in enumerate(summary["folds"])] + [("pooled", summary["pooled"])]
    for name, f in rows:
        val = f"{f['val_cinc_score']:.3f}" if "val_cinc_score" in f else ""
        lines.append(f"| {name} | {val} | {f['cinc_score']:.3f} | "
                     + " | ".join(f"{f['f1'][c]:.3f}" for c in CINC_CLASSES) + " |")
    lines.append(f"\nCinC 2017 score over {len(summary['folds'])} folds: {summary['cinc_score_mean']:.3f} ± "
                 f"{summary['cinc_score_std']:.3f} (mean ± std); pooled {summary['pooled']['cinc_score']:.3f}; "
                 f"validation mean {summary['val_cinc_score_mean']:.3f}\n{interval_line(summary['pooled_interval'])}")
    return "\n".join(lines)


def plot_pooled(report: dict, out: Path) -> None:
    """The pooled test confusion matrix of a report, as ``<out stem>_confusion.png`` beside ``out``
    (said: :func:`~msresnet1d.arguments.writing`)."""
    summary = report["summary"]
    with writing(out.with_name(out.stem + "_confusion.png")) as path:
        plot_confusion(np.asarray(summary["pooled_confusion_matrix"]), CINC_CLASSES, path,
                       title=f"CinC 2017, {len(summary['folds'])} test folds pooled ({out.stem})")


def build_parser() -> argparse.ArgumentParser:
    """This script's command-line parser (its arguments unchecked beyond their types: ``main`` checks the rest)."""
    parser = script_parser(__doc__)
    add_data_dir(parser, "cinc2017/, or cinc2017/ itself")
    parser.add_argument("--config", type=path_flag, default="cinc2017_cpu",
                        help="config name or path (default cinc2017_cpu, the CPU-sized one; cinc2017_rhythm is about 4 "
                             "hours a fold on 2 cores)")
    parser.add_argument("--folds", type=int, default=5, help="k of the stratified k-fold (default 5)")
    add_seeds(parser, [0], "training seeds, each once (default 0); several: their ensemble")
    parser.add_argument("--split-seed", type=seed_value, default=0, help="seed of the folds and validation split")
    parser.add_argument("--tta", choices=TTA_MODES, help="test-time augmentation (default: the config's)")
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best",
                        help="evaluate each run's best.pt (the epoch validation chose, default) or last.pt "
                             "(the last epoch: unselected, so its validation score is unbiased)")
    parser.add_argument("--offsets", action="store_true",
                        help="predict test records with class offsets fitted on validation; report their "
                             "cross-fitted validation score")
    parser.add_argument("--only", type=int, nargs="+", metavar="K", help="run only these folds (1-based), no summary")
    parser.add_argument("--runs", type=path_flag, default="runs/cinc2017-cv", help="folder of the per-fold runs")
    add_set(parser, OWNED)
    parser.add_argument("--threads", type=thread_count, default=0,
                        help=threads_help(0, "as msresnet1d train has it", "torch threads of every run"))
    parser.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    parser.add_argument("--out", type=path_flag, default=RESULTS, help=results_help(RESULTS))
    parser.add_argument("--replot", type=path_flag, metavar="RESULT.json",
                        help="only draw the confusion PNG of a recorded result again and print its pooled score's "
                             "interval over the records (no data, no runs)")
    parser.add_argument("--rescore", type=path_flag, nargs=2, metavar=("RESULT.json", "LABELS_DIR"),
                        help="only score a recorded result's test predictions (which results of this version hold) "
                             "against the REFERENCE.csv in LABELS_DIR: other labels of the same records, such as "
                             "another version of them (no data, no runs)")
    return parser


def main(argv: list[str] | None = None) -> dict:
    started = time.time()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threads:  # the evaluations too: train gives the caller's thread count back when it returns
        torch.set_num_threads(args.threads)
    if args.rescore and args.replot:
        parser.error("give --rescore or --replot, not both (each reads one recorded result and runs nothing else)")
    if args.rescore:
        path, labels_dir = Path(args.rescore[0]), args.rescore[1]
        report = result_or_exit(parser, path, lambda r: r["test_predictions"].items(), "--rescore")
        try:
            found = rescore(report["test_predictions"], read_reference(labels_dir))
        except ValueError as e:  # DataError too: a bad or missing REFERENCE.csv
            parser.error(f"--rescore {labels_dir}: {e}")
        labels = Path(labels_dir) / "REFERENCE.csv"
        print(f"{path} rescored against {labels}: pooled CinC score {found['cinc_score']:.4f} (recorded "
              f"{report['summary']['pooled']['cinc_score']:.4f}); F1 "
              + ", ".join(f"{c} {f:.3f}" for c, f in found["f1"].items()) + "\n" + interval_line(found["interval"]))
        return found
    if args.replot:
        def replot(report: dict) -> None:
            plot_pooled(report, Path(args.replot))
            print(interval_line(pooled_interval(report["summary"]["pooled_confusion_matrix"])))

        return result_or_exit(parser, args.replot, replot)
    if not args.only:  # --only writes no results file
        output_or_exit(parser, args.out)
    db_dir = database_or_exit(parser, "cinc2017", args.data_dir)
    if args.folds < 2:
        parser.error(f"--folds must be >= 2, got {args.folds}")
    try:
        counts = Counter(read_reference(db_dir).values())
    except DataError as e:
        parser.error(str(e))
    if args.folds > max(counts.values()):
        parser.error(f"--folds {args.folds}: a stratified fold needs records of a class in each fold, and the largest "
                     f"class of {db_dir / 'REFERENCE.csv'} has {max(counts.values())} "
                     f"({', '.join(f'{c} {n}' for c, n in counts.items())}): give fewer folds")
    overrides = overrides_or_exit(parser, args.set, OWNED)
    folds = [k - 1 for k in args.only] if args.only else list(range(args.folds))
    if any(not 0 <= k < args.folds for k in folds):
        parser.error(f"--only takes folds 1 to {args.folds}")
    run_dirs = {(k, seed): Path(args.runs) / f"seed{seed}" / f"fold{k + 1}" for k in folds for seed in args.seeds}
    configs = {(k, seed): config_or_exit(parser, args.config, {
        **overrides, "threads": args.threads, "seed": seed, "data.folds": args.folds, "data.fold": k,
        "data.split_seed": args.split_seed, "data.data_dir": str(db_dir)}, run_dir=run_dir)
        for (k, seed), run_dir in run_dirs.items()}  # every one checked before the first trains
    confusions, val_scores, seed_val_scores, runs, fitted, predicted = [], [], [], [], [], {}
    for k in folds:
        checkpoints = []
        for seed in args.seeds:
            cfg, run_dir = configs[k, seed], run_dirs[k, seed]
            run = recorded_run(cfg, run_dir, quiet=args.quiet)
            result = run.metrics
            checkpoints.append(run_dir / "checkpoints" / f"{args.checkpoint}.pt")
            runs.append({"fold": k + 1, "seed": seed, "best_epoch": result["best_epoch"],
                         "best_val_score": result["best_val_score"], "test_records": result["splits"]["test_records"],
                         "train_s": round(sum(run.epoch_seconds), 1),
                         "wall_s_this_invocation": round(run.wall_seconds, 1), **run.record})
        if args.only:
            continue
        names, ((y_val, val_members), (y_test, test_members)) = evaluate(checkpoints, ["val", "test"], args.tta)
        p_val, p_test = val_members.mean(axis=0), test_members.mean(axis=0)
        val_scores.append(plain_score(y_val, p_val))
        if args.offsets:
            offsets = fit_class_offsets(p_val, y_val, score)
            fitted.append({"offsets": dict(zip(CINC_CLASSES, offsets.tolist())),
                           "val_cinc_score_cross_fitted": cross_fitted_score(y_val, p_val, args.split_seed)})
            y_pred = predict_with_offsets(p_test, offsets)
        else:
            y_pred = p_test.argmax(axis=1)
        confusions.append(confusion(y_test, y_pred))
        predicted |= {name: CINC_CLASSES[c] for name, c in zip(names, y_pred, strict=True)}
        if len(checkpoints) > 1:  # each seed alone, on validation: what the ensemble adds
            seed_val_scores.append([plain_score(y_val, p) for p in val_members])
    warn_other_code(runs)
    if args.only:
        print(f"trained or reused fold(s) {', '.join(map(str, args.only))}: each run's result is in its "
              f"metrics.json under {args.runs} (--only writes no results file; all folds give the summary)")
        return {"runs": runs}
    summary = summarise(confusions, val_scores)
    text = table(summary)
    if fitted:
        for fold, extra in zip(summary["folds"], fitted):
            fold.update(extra)
        crossed = float(np.mean([f["val_cinc_score_cross_fitted"] for f in fitted]))
        summary["val_cinc_score_cross_fitted_mean"] = crossed
        text += (f"\ntest predicted with class offsets fitted on validation; validation with offsets fitted on "
                 f"the other half (cross-fitted): mean {crossed:.3f} "
                 f"(without offsets {summary['val_cinc_score_mean']:.3f})")
    if seed_val_scores:
        per_seed = np.mean(seed_val_scores, axis=0)
        summary["val_cinc_score_mean_per_seed"] = dict(zip(map(str, args.seeds), per_seed.tolist()))
        text += ("\nvalidation mean of each seed alone: "
                 + ", ".join(f"seed {s} {v:.3f}" for s, v in zip(args.seeds, per_seed))
                 + f" (their mean {per_seed.mean():.3f})")
    print(text)
    report = json_safe({"config": cfg.to_dict() | {"seed": args.seeds, "data": {**cfg.data, "fold": "each"}},
                        "tta": args.tta or cfg.tta, "checkpoint": args.checkpoint, "offsets": args.offsets,
                        "runs": runs, "summary": summary, "table_markdown": text,
                        "test_predictions": dict(sorted(predicted.items())),
                        "provenance": provenance(__file__, argv, started, [db_dir])})
    write_result(args.out, json.dumps(report, indent=2) + "\n")
    plot_pooled(report, Path(args.out))
    return report


if __name__ == "__main__":
    with as_program(RUNS_INTERRUPTED):
        main()
