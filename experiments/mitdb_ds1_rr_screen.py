"""MIT-BIH DS1: how far the RR features alone go, out of fold, beside a cross-validated network.

    python experiments/mitdb_ds1_rr_screen.py --data-dir /path/to/data --runs /work/runs/mitdb-ds1-cv5

A screen, not a variant: it trains no network. It reads the finished runs (their
``metrics.json``, which a run writes last: a run stopped after an epoch is refused, naming it) of
one variant of ``mitdb_ds1_cv.py`` (``--variant``, default ``main``, at their last epoch, as the row
``main+last``; beats and RR features as their config made them) and their folds: each fold's
held-out records are those its runs tested (``data.test_records`` in their config.json), and the
RR models of a fold train on the other folds' records only, so no model sees the records it
predicts. Runs whose folds disagree with --records and --folds (made with other records or
folds) are refused. It scores against that row:

* ``rr_gbm``: scikit-learn's gradient boosting on the runs' RR features alone (``data.rr``: the
  main job's 5 columns), all five classes, trained on the other folds with the main job's
  class weights (1 / sqrt(class frequency)); the same prediction for every seed;
* ``split_<model>``: the network's probabilities, with the division of each beat's N + S
  probability between N and S taken from a binary model of the RR features alone (N and S
  training beats of the other folds, S weighted by sqrt(N count / S count)): ``logistic``
  (logistic regression on standardised features), ``gbm`` (gradient boosting), ``mlp`` (two
  hidden layers of 32, S beats repeated instead of weighted, which it does not take). The network
  still decides V, F, Q against N + S.

Rows are scored and judged as in ``mitdb_ds1_cv.py`` (pooled confusion matrices over folds and
seeds, rules A and SV against the network's row), so the table reads like its tables; but these
rows were not pre-registered variants, and their figures come from the same folds any follow-up
is judged on. Results: experiments/results/mitdb_ds1_rr_screen.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mitdb_ds1_cv import confusion_matrices, decide, rescored, summarise, table  # noqa: E402

from msresnet1d.arguments import (add_data_dir, add_seeds, as_program, database_or_exit, output_or_exit,  # noqa: E402
                                  path_flag, positive_int, records_or_exit, results_help, script_parser, write_result)
from msresnet1d.data import DS1, load_beats  # noqa: E402
from msresnet1d.data.rr import RR_FEATURES, rr_columns  # noqa: E402
from msresnet1d.training.config import TrainConfig  # noqa: E402
from msresnet1d.training.metrics import json_safe  # noqa: E402
from msresnet1d.training.provenance import provenance  # noqa: E402
from msresnet1d.training.run import epoch_train_seconds, is_finished  # noqa: E402
from msresnet1d.training.tasks import beat_config, resolve_data  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "mitdb_ds1_rr_screen.json"
N, S = 0, 1  # AAMI class indices


def rr_gbm(X: np.ndarray, y: np.ndarray, X_test: np.ndarray) -> np.ndarray:
    """(N_test, 5) class probabilities of gradient boosting on RR features, 1/sqrt class weights."""
    counts = np.bincount(y, minlength=5).astype(float)
    # optim.class_weights("inverse_sqrt") up to its scale (mean 1), which moves the trees' fit slightly
    # (S F1 46.1 -> 45.7 here): left unnormalised, as the recorded figures were made
    weights = 1 / np.sqrt(np.maximum(counts, 1))
    model = HistGradientBoostingClassifier(max_iter=200, random_state=0).fit(X, y, sample_weight=weights[y])
    probabilities = np.zeros((len(X_test), 5))
    probabilities[:, model.classes_] = model.predict_proba(X_test)
    return probabilities


def s_share(kind: str, X: np.ndarray, y: np.ndarray, X_test: np.ndarray) -> np.ndarray:
    """(N_test,) P(S | N or S) from a binary model of the N and S training beats' RR features."""
    keep = np.isin(y, (N, S))
    X, is_s = X[keep], (y[keep] == S).astype(int)
    weight = np.sqrt((is_s == 0).sum() / max(is_s.sum(), 1))
    if kind == "mlp":  # MLPClassifier takes no sample weights: repeat the S beats instead
        repeats = np.where(is_s == 1, int(round(weight)), 1)
        model = make_pipeline(StandardScaler(), MLPClassifier((32, 32), max_iter=200, random_state=0))
        model.fit(np.repeat(X, repeats, axis=0), np.repeat(is_s, repeats))
    else:
        sample_weight = np.where(is_s == 1, weight, 1.0)
        model = (make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)) if kind == "logistic"
                 else HistGradientBoostingClassifier(max_iter=200, random_state=0))
        step = "logisticregression__" if kind == "logistic" else ""
        model.fit(X, is_s, **{f"{step}sample_weight": sample_weight})
    return model.predict_proba(X_test)[:, 1]


def split_n_s(probabilities: np.ndarray, share: np.ndarray) -> np.ndarray:
    """``probabilities`` (..., N_k, 5) with each beat's N + S total divided as ``share`` (N_k,) says."""
    out = probabilities.copy()
    total = out[..., N] + out[..., S]
    out[..., S], out[..., N] = total * share, total * (1 - share)
    return out


def held_out_folds(run_dirs: list[list[Path]], records: list[str]) -> list[list[str]]:
    """Each fold's held-out records as its runs had them: ``data.test_records`` of the config.json
    of ``run_dirs[k][i]`` (fold k, seed i), checked to be one cross-validation of ``records``: the
    same for every seed, the folds disjoint and together ``records``, each run trained on records
    of the other folds only.

    Raises:
        ValueError: naming the fold, the run and what disagrees.
    """
    folds, asked = [], set(records)
    for k, fold in enumerate(run_dirs):
        held = None
        for run in fold:
            data = json.loads((run / "config.json").read_text(encoding="utf-8"))["data"]
            test, train = data.get("test_records"), data.get("train_records")
            if not isinstance(test, list) or not isinstance(train, list):
                raise ValueError(f"{run}/config.json names no list of test and training records: not a run of "
                                 "mitdb_ds1_cv.py")
            if held is not None and test != held:
                raise ValueError(f"fold {k + 1}: {run} holds out {', '.join(test)}, the fold's other runs "
                                 f"{', '.join(held)}: not one cross-validation")
            if set(test) & set(train) or not set(test) | set(train) <= asked:
                raise ValueError(f"fold {k + 1}: {run} trained on {', '.join(train)} and held out {', '.join(test)}: "
                                 f"not a fold of the records asked for ({', '.join(records)})")
            held = test
        if any(set(held) & set(other) for other in folds):
            raise ValueError(f"fold {k + 1}: its runs hold out {', '.join(held)}, which an earlier fold holds out too")
        folds.append(list(held))
    missing = asked - {r for fold in folds for r in fold}
    if missing:
        raise ValueError(f"the runs' {len(folds)} folds hold out no run of {', '.join(sorted(missing))}: they were made "
                         "with other --records or --folds")
    return folds


def build_parser() -> argparse.ArgumentParser:
    """This script's command-line parser (its arguments unchecked beyond their types: ``main`` checks the rest)."""
    parser = script_parser(__doc__)
    add_data_dir(parser, "mitdb/, or mitdb/ itself")
    parser.add_argument("--runs", type=path_flag, required=True, help="the runs folder of mitdb_ds1_cv.py")
    parser.add_argument("--variant", default="main", help="the variant whose runs are read (default main)")
    add_seeds(parser, [0, 1, 2], "its seeds, each once (default 0 1 2)")
    parser.add_argument("--folds", type=positive_int, default=5,
                        help="folds of the records, as the runs had (default 5)")
    parser.add_argument("--records", nargs="+", default=list(DS1), help="the records, as the runs had (default DS1)")
    parser.add_argument("--out", type=path_flag, default=RESULTS, help=results_help(RESULTS))
    return parser


def main(argv: list[str] | None = None) -> dict:
    started = time.time()
    parser = build_parser()
    args = parser.parse_args(argv)
    output_or_exit(parser, args.out)
    db_dir = database_or_exit(parser, "mitdb", args.data_dir)
    records_or_exit(parser, db_dir, args.records)
    run_dirs = [[Path(args.runs) / args.variant / f"seed{s}" / f"fold{k + 1}" for s in args.seeds]
                for k in range(args.folds)]
    unfinished = [d for fold in run_dirs for d in fold if not is_finished(d)]
    if unfinished:
        shown = [f"{d} (stopped after epoch {len(epoch_train_seconds(d))})" if (d / "log.csv").is_file() else
                 f"{d} (not started)" for d in unfinished[:3]]
        parser.error(f"{len(unfinished)} run(s) not finished (no metrics.json, which a run writes last): "
                     f"{', '.join(shown)}{' ...' if len(unfinished) > 3 else ''}: run mitdb_ds1_cv.py --variant "
                     f"{args.variant} (with its settings) and these --runs, --seeds, --folds and --records first: it "
                     "trains the missing runs and resumes the stopped ones")
    try:
        folds = held_out_folds(run_dirs, args.records)
    except ValueError as e:
        parser.error(f"--runs {args.runs}: {e}")
    # the beats and RR features as the runs had them (their config), read from this database folder
    saved = json.loads((run_dirs[0][0] / "config.json").read_text(encoding="utf-8"))
    cfg = resolve_data(TrainConfig.from_dict({**saved, "data": {**saved["data"], "data_dir": str(db_dir)}}))
    beats = load_beats(args.records, db_dir=db_dir, config=beat_config(cfg.data), cache=cfg.data["cache"])
    columns = rr_columns(cfg.data["rr"])
    predicted, held_records = rescored(run_dirs, ["last"])
    rows: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {f"{args.variant}+last": predicted["last"]}
    for k, ((y, probabilities), records) in enumerate(zip(predicted["last"], held_records)):
        order = list(dict.fromkeys(records))  # the held-out beats, in the task's order: record by record
        if set(order) != set(folds[k]):
            raise SystemExit(f"fold {k + 1}: the runs' checkpoints hold out {order}, their config.json {folds[k]}")
        X_test = np.concatenate([beats.rr[beats.record == r][:, columns] for r in order])
        if not np.array_equal(np.concatenate([beats.y[beats.record == r] for r in order]), y):
            raise SystemExit(f"fold {k + 1}: the runs' held-out beats are not those of {order} as loaded here")
        train = ~np.isin(beats.record, folds[k])
        X, y_train = beats.rr[train][:, columns], beats.y[train]
        gbm = rr_gbm(X, y_train, X_test)
        rows.setdefault("rr_gbm", []).append((y, np.repeat(gbm[None], len(args.seeds), axis=0)))
        for kind in ("logistic", "gbm", "mlp"):
            rows.setdefault(f"split_{kind}", []).append((y, split_n_s(probabilities, s_share(kind, X, y_train, X_test))))
    baseline = f"{args.variant}+last"
    results = {name: summarise(confusion_matrices(predictions), args.seeds) for name, predictions in rows.items()}
    for name, v in results.items():
        if name != baseline:
            v["decision"] = decide(results[baseline], v)
    text = table(results)
    print(text)
    report = json_safe({"config": cfg.to_dict() | {"seed": args.seeds}, "runs": args.runs, "variant": args.variant,
                        "folds": folds, "rr_columns": [RR_FEATURES[i] for i in columns], "baseline": baseline,
                        "variants": results, "table_markdown": text,
                        "provenance": provenance(__file__, argv, started, [db_dir])})
    write_result(args.out, json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    with as_program():
        main()
