"""PhysioNet/CinC 2017 rhythm classification (N, A, O, ~): stratified k-fold cross-validation by
record on the available training records, scored by the challenge's own measure.

    MSRESNET1D_DATA=/path/to/data python experiments/cinc2017_cv.py [--folds 5] [--set KEY=VALUE ...]

Fold k is one `msresnet1d train` run of the rhythm config (experiments/configs/cinc2017_rhythm.toml
unless --config says otherwise) with ``data.fold = k``: the other folds train, a stratified 10% of
them validates (model selection), fold k is tested once. A finished fold is reused, an
interrupted one resumed (runs in <runs>/fold<k>).

Reported: per fold, the CinC 2017 score (mean F1 of N, A and O, F1 = 2 correct / (true +
predicted)) and per-class F1 (noise too, outside the mean); across folds, their mean and standard
deviation, and the score of the pooled confusion matrix (every record tested exactly once).
Results go to experiments/results/cinc2017_cv.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from msresnet1d.atomic import write_text
from msresnet1d.cli import _resolve_config
from msresnet1d.data.rhythm import CINC_CLASSES
from msresnet1d.training.config import load_config, parse_overrides
from msresnet1d.training.metrics import cinc_score, per_class
from msresnet1d.training.run import epoch_train_seconds, train_or_reuse

RESULTS = Path(__file__).resolve().parent / "results" / "cinc2017_cv.json"


def summarise(confusions: list[np.ndarray]) -> dict:
    """Per-fold and pooled CinC scores and per-class F1 from the folds' (4, 4) confusion matrices."""
    def scores(cm: np.ndarray) -> dict:
        f1 = per_class(cm)["f1"]
        return {"cinc_score": cinc_score(cm, CINC_CLASSES),
                "f1": {c: float(np.nan_to_num(f1[i])) for i, c in enumerate(CINC_CLASSES)}}

    folds = [scores(cm) for cm in confusions]
    values = np.array([f["cinc_score"] for f in folds])
    return {"folds": folds, "cinc_score_mean": float(values.mean()),
            "cinc_score_std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "pooled": scores(np.sum(confusions, axis=0)), "pooled_confusion_matrix": np.sum(confusions, axis=0).tolist()}


def table(summary: dict) -> str:
    lines = ["| fold | CinC score | F1 N | F1 A | F1 O | F1 ~ |", "|---|---:|---:|---:|---:|---:|"]
    rows = [(str(k + 1), f) for k, f in enumerate(summary["folds"])] + [("pooled", summary["pooled"])]
    for name, f in rows:
        lines.append(f"| {name} | {f['cinc_score']:.3f} | " + " | ".join(f"{f['f1'][c]:.3f}" for c in CINC_CLASSES) + " |")
    lines.append(f"\nCinC 2017 score over {len(summary['folds'])} folds: {summary['cinc_score_mean']:.3f} ± "
                 f"{summary['cinc_score_std']:.3f} (mean ± std); pooled {summary['pooled']['cinc_score']:.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("MSRESNET1D_DATA"),
                        help="folder holding cinc2017/ (default $MSRESNET1D_DATA)")
    parser.add_argument("--config", default="cinc2017_rhythm", help="config name or path")
    parser.add_argument("--folds", type=int, default=5, help="k of the stratified k-fold (default 5)")
    parser.add_argument("--only", type=int, nargs="+", metavar="K", help="run only these folds (1-based), no summary")
    parser.add_argument("--runs", default="runs/cinc2017-cv", help="folder of the per-fold runs")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config overrides")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if not args.data_dir:
        parser.error("give --data-dir or set MSRESNET1D_DATA (the folder holding cinc2017/)")
    if args.folds < 2:
        parser.error(f"--folds must be >= 2, got {args.folds}")
    try:
        overrides = parse_overrides(args.set)
    except ValueError as e:
        parser.error(str(e))
    folds = [k - 1 for k in args.only] if args.only else list(range(args.folds))
    if any(not 0 <= k < args.folds for k in folds):
        parser.error(f"--only takes folds 1 to {args.folds}")
    confusions, runs = [], []
    for k in folds:
        fold_keys = {"threads": args.threads, "data.folds": args.folds, "data.fold": k,
                     "data.data_dir": str(Path(args.data_dir) / "cinc2017")}
        cfg = load_config(_resolve_config(args.config), {**overrides, **fold_keys})
        start = time.perf_counter()
        run_dir = Path(args.runs) / f"fold{k + 1}"
        result = train_or_reuse(cfg, run_dir, quiet=args.quiet)
        confusions.append(np.array(result["test"]["confusion_matrix"]))
        runs.append({"fold": k + 1, "best_epoch": result["best_epoch"],
                     "test_records": result["splits"]["test_records"],
                     "train_s": round(sum(epoch_train_seconds(run_dir)), 1),
                     "wall_s_this_invocation": round(time.perf_counter() - start, 1)})
    if args.only:
        return {"runs": runs}
    summary = summarise(confusions)
    text = table(summary)
    print(text)
    report = {"config": cfg.to_dict() | {"data": {**cfg.data, "fold": "each"}}, "runs": runs, "summary": summary,
              "table_markdown": text}
    write_text(args.out, json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
