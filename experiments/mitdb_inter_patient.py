"""MIT-BIH inter-patient experiment: train on DS1 (4 records held out for validation), test once on DS2,
for several seeds; report per-class Se, +P and F1 (AAMI EC57 layout, percent) as mean and standard
deviation over seeds, beside published inter-patient results.

    python experiments/mitdb_inter_patient.py --data-dir /path/to/data --seeds 0 1 2

Each seed is one `msresnet1d train` run (the main-job config unless --config says otherwise) in
<runs>/seed<k>; a finished run is reused, an interrupted one resumed (each run's record in the
results names the code that trained it; reused runs of other code are said). --set may not set
seed, threads or data.data_dir: give --seeds, --threads, --data-dir. Each run tests the epoch
its config selects (the main job: the last, ``select_epoch``; else the best on validation), which
``best.pt`` holds. With two seeds or more the seeds' selected models are also tested as one
ensemble: the mean of their class probabilities, fixed in advance (every seed, equal weights), so
DS2 still chooses nothing. The ensemble's (or the one seed's) figures also get 95% intervals
over DS2's records (the records drawn with replacement: ``record_interval``), since a record, not
a beat, is the independent unit.
Results go to experiments/results/mitdb_inter_patient.json, and beside it two PNGs of the same name:
S F1, V F1 and accuracy of the seeds (mean and standard deviation), their ensemble and the published
methods, against the targets S F1 >= 80 and V F1 >= 93 (``.png``), and the ensemble's (or the one seed's) DS2 confusion
matrix (``_confusion.png``). ``--replot RESULT.json`` draws the first PNG again from a recorded
result, also one recorded before the script tested the seeds' ensemble (and the second when it
holds the ensemble's matrix), without data or runs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from msresnet1d.arguments import (QUIET_HELP, RUNS_INTERRUPTED, add_data_dir, add_seeds, add_set, as_program,
                                  config_or_exit, database_or_exit, output_or_exit, overrides_or_exit, path_flag,
                                  result_or_exit, results_help, script_parser, thread_count, threads_help, write_result,
                                  writing)
from msresnet1d.data import AAMI_CLASSES, DS2
from msresnet1d.training.ensemble import ensemble_predict
from msresnet1d.training.metrics import (classification_report, ec57, format_record_interval, json_safe,
                                         record_interval)
from msresnet1d.training.plots import plot_confusion, plot_scores
from msresnet1d.training.provenance import provenance
from msresnet1d.training.run import recorded_run, warn_other_code

RESULTS = Path(__file__).resolve().parent / "results"

# Published inter-patient results on DS2 (percent), as collected in the project's reference notes.
PUBLISHED = {
    "de Chazal 2004 (weighted LDA)": {"S": {"se": 75.9, "ppv": 38.5}, "V": {"se": 77.7, "ppv": 81.9}, "acc": 86.0},
    "Mar 2011": {"S": {"se": 83.2, "ppv": 33.5}, "V": {"se": 86.8, "ppv": 75.9}, "acc": 89.0},
    "Zhang 2014 (SVM)": {"S": {"se": 79.1, "ppv": 36.0}, "V": {"se": 85.5, "ppv": 92.7}},
    "Niu 2020 (CNN)": {"S": {"f1": 76.6}, "V": {"f1": 89.7}, "acc": 96.4},
    "Farag 2023 (small CNN)": {"S": {"se": 85.3}, "V": {"se": 96.3}, "acc": 98.2},  # no +P, so no F1
}
CLASSES = ("N", "S", "V", "F")
#: The config keys the script sets from its flags, refused in --set (the flag to give instead).
OWNED = {"seed": "--seeds", "threads": "--threads", "data.data_dir": "--data-dir"}
STATS = ("se", "ppv", "f1")
TARGETS = {"S F1": 80.0, "V F1": 93.0}  # the project's targets: above every published method on both


def f1_from(se: float, ppv: float) -> float:
    return 2 * se * ppv / (se + ppv)


def published_f1(figures: dict[str, float]) -> float | None:
    """A published class's F1: its own, else computed from its Se and +P, else None (a gap)."""
    if "f1" in figures:
        return figures["f1"]
    return f1_from(figures["se"], figures["ppv"]) if "se" in figures and "ppv" in figures else None


def summarise(reports: list[dict]) -> dict:
    """Mean and standard deviation (over seeds, ddof=1 when >1 seed) of every figure, in percent,
    over the seeds where it is defined (NaN when none is, and the spread NaN when only one of
    several is)."""
    def agg(values: list[float]) -> dict:
        arr = 100 * np.array([np.nan if v is None else v for v in values], dtype=float)  # None: undefined
        defined = arr[np.isfinite(arr)]
        spread = 0.0 if len(arr) == 1 else float(defined.std(ddof=1)) if len(defined) > 1 else float("nan")
        return {"mean": float(defined.mean()) if len(defined) else float("nan"), "std": spread,
                "values": arr.round(2).tolist()}
    out = {"accuracy": agg([r["accuracy"] for r in reports]), "macro_f1": agg([r["macro_f1"] for r in reports])}
    for c in CLASSES:
        out[c] = {s: agg([r["per_class"][c][s] for r in reports]) for s in STATS}
    by_rules = [ec57(r["confusion_matrix"], r["class_names"]) for r in reports]  # from the matrix: older runs too
    out["ec57"] = {c: {s: agg([e[c][s] for e in by_rules]) for s in STATS} for c in ("S", "V")}
    return out


def seed_ensemble(run_dirs: list[Path]) -> dict:
    """DS2 report of the mean class probabilities of the runs' selected models (``best.pt``; one
    run: its model), with ``record_interval``: each class's Se, +P and F1 and the accuracy as
    intervals over DS2's records (percent; :func:`record_interval`)."""
    task, y_true, probabilities = ensemble_predict([d / "checkpoints" / "best.pt" for d in run_dirs])
    report = classification_report(y_true, probabilities, task.class_names, task.scored)
    report["record_interval"] = record_interval(y_true, probabilities.argmax(axis=1), task.groups["test"],
                                                task.class_names)
    return report


def tested_on(records: list[str] | None) -> str:
    """What the runs test on, for titles: ``"DS2 test"``, or how many records a config's own
    ``[data] test_records`` are (the published rows beside them are DS2's)."""
    return "DS2 test" if not records or set(records) == set(DS2) else f"{len(records)} test records"


def plot(summary: dict, n_seeds: int, ensemble: dict | None, path: Path, tested: str = "DS2 test") -> None:
    """S F1, V F1 and accuracy of the seeds (bars with their standard deviation), the ensemble and
    every published method, with the targets, as a PNG titled with its file's stem (a rerun's
    apart from the recorded one)."""
    def figures(d: dict, key: str) -> dict[str, float]:
        return {"S F1": d["S"]["f1"][key], "V F1": d["V"]["f1"][key], "accuracy": d["accuracy"][key]}

    this = f"this work, {n_seeds} seed{'s' if n_seeds > 1 else ''}"
    methods, spreads = {this: figures(summary, "mean")}, {this: figures(summary, "std")}
    if ensemble is not None:
        methods["this work, their ensemble"] = figures(ensemble, "mean")
    for name, pub in PUBLISHED.items():
        scores = {f"{c} F1": published_f1(pub[c]) for c in ("S", "V")} | {"accuracy": pub.get("acc")}
        methods[name] = {score: value for score, value in scores.items() if value is not None}  # a gap if unpublished
    plot_scores(methods, path, TARGETS, spreads, title=f"MIT-BIH inter-patient, {tested} ({path.stem})")


def replot(report: dict, out: Path) -> None:
    """The PNGs of a recorded result ``out`` (:func:`main`'s JSON) drawn again beside it: the scores,
    and the ensemble's confusion matrix when the result holds one (a single seed's is not kept, and
    a result recorded before the script tested the seeds' ensemble, without ``ensemble_percent``,
    has none: said). Says each path written (:func:`~msresnet1d.arguments.writing`)."""
    tested = tested_on(report["config"]["data"].get("test_records"))
    ensemble = report.get("ensemble_percent")
    with writing(out.with_suffix(".png")) as png:
        plot(report["summary_percent"], len(report["runs"]), ensemble, png, tested)
    confusion = out.with_name(out.stem + "_confusion.png")
    if ensemble is None:
        why = "one seed's is not kept" if len(report["runs"]) == 1 else "recorded before the seeds' ensemble was tested"
        print(f"{out} holds no ensemble's confusion matrix ({why}): {confusion.name} not drawn")
        return
    with writing(confusion) as png:
        plot_confusion(np.asarray(ensemble["confusion_matrix"]), AAMI_CLASSES, png,
                       title=f"MIT-BIH {tested}, ensemble of {len(report['runs'])} seeds")


def table(summary: dict, n_seeds: int, ensemble: dict | None = None) -> str:
    """Markdown tables of :func:`summarise` over the seeds, with the :func:`summarise` of their
    ensemble (one report) as a second row."""
    def cell(d: dict, n: int = n_seeds) -> str:
        if d["mean"] is None or not np.isfinite(d["mean"]):
            return "-"  # undefined in every seed
        if n > 1 and d["std"] is not None and np.isfinite(d["std"]):
            return f"{d['mean']:.1f} ± {d['std']:.1f}"
        return f"{d['mean']:.1f}" + (" (1 seed)" if n > 1 else "")

    def row(label: str, figures: dict, n: int) -> str:
        cells = [cell(figures[c][s], n) for c in ("S", "V") for s in STATS] + [cell(figures["accuracy"], n)]
        return f"| {label} | " + " | ".join(cells) + " |"

    lines = ["| method | S Se | S +P | S F1 | V Se | V +P | V F1 | accuracy |", "|---|---|---|---|---|---|---|---|",
             row(f"**this work** ({n_seeds} seed{'s' if n_seeds > 1 else ''})", summary, n_seeds)]
    if ensemble is not None:
        lines.append(row(f"ensemble of the {n_seeds} seeds", ensemble, 1))
    for name, pub in PUBLISHED.items():
        published = []
        for c in ("S", "V"):
            p = pub[c]
            f1 = published_f1(p)
            published += [f"{p['se']:.1f}" if "se" in p else "", f"{p['ppv']:.1f}" if "ppv" in p else "",
                          "" if f1 is None else f"{f1:.1f}" + ("" if "f1" in p else "*")]
        lines.append(f"| {name} | {' | '.join(published)} | {pub.get('acc', '')} |")
    lines.append("\n\\* F1 computed here from the published Se and +P.")
    lines.append("\nPer class (mean over seeds, percent):\n")
    lines.append("| class | Se | +P | F1 |\n|---|---|---|---|")
    for c in CLASSES:
        lines.append(f"| {c} | {cell(summary[c]['se'])} | {cell(summary[c]['ppv'])} | {cell(summary[c]['f1'])} |")
    lines.append(f"\nmacro-F1 (N, S, V, F) {cell(summary['macro_f1'])}")
    lines.append("\nS and V by EC57's rules (F and Q beats called V, Q beats called S not counted against +P; "
                 "the table above counts them, one class against the rest):\n")
    lines.append("| | S +P | S F1 | V +P | V F1 |\n|---|---|---|---|---|")
    for label, figures, n in [("seeds", summary, n_seeds)] + ([("ensemble", ensemble, 1)] if ensemble else []):
        cells = [cell(figures["ec57"][c][s], n) for c in ("S", "V") for s in ("ppv", "f1")]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """This script's command-line parser (its arguments unchecked beyond their types: ``main`` checks the rest)."""
    parser = script_parser(__doc__)
    add_data_dir(parser, "mitdb/, or mitdb/ itself")
    parser.add_argument("--config", type=path_flag, default="mitdb_beats", help="config name or path")
    add_seeds(parser, [0, 1, 2], "training seeds, each once (default 0 1 2); several: also their ensemble")
    parser.add_argument("--runs", type=path_flag, default="runs/mitdb-inter-patient",
                        help="folder of the per-seed runs")
    add_set(parser, OWNED)
    parser.add_argument("--threads", type=thread_count, default=0,
                        help=threads_help(0, "as msresnet1d train has it", "torch threads of every run"))
    parser.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    parser.add_argument("--out", type=path_flag, default=RESULTS / "mitdb_inter_patient.json",
                        help=results_help(RESULTS / "mitdb_inter_patient.json"))
    parser.add_argument("--replot", type=path_flag, metavar="RESULT.json",
                        help="only draw the PNGs of a recorded result again, beside it (no data, no runs)")
    return parser


def main(argv: list[str] | None = None) -> dict | None:
    started = time.time()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threads:  # the evaluations too: train gives the caller's thread count back when it returns
        torch.set_num_threads(args.threads)
    if args.replot:
        return result_or_exit(parser, args.replot, lambda r: replot(r, Path(args.replot)))
    output_or_exit(parser, args.out)
    db_dir = database_or_exit(parser, "mitdb", args.data_dir)
    overrides = overrides_or_exit(parser, args.set, OWNED)
    run_dirs = {seed: Path(args.runs) / f"seed{seed}" for seed in args.seeds}
    configs = {seed: config_or_exit(parser, args.config, {**overrides, "seed": seed, "threads": args.threads,
                                                          "data.data_dir": str(db_dir)}, run_dir=run_dirs[seed])
               for seed in args.seeds}  # every one checked before the first trains
    reports, runs = [], []
    for seed, cfg in configs.items():
        run_dir = run_dirs[seed]
        run = recorded_run(cfg, run_dir, quiet=args.quiet)
        result = run.metrics
        reports.append(result["test"])
        runs.append({"seed": seed, "run_dir": str(run_dir), "best_epoch": result["best_epoch"],
                     "best_val_score": result["best_val_score"], "train_s": round(sum(run.epoch_seconds), 1),
                     "wall_s_this_invocation": round(run.wall_seconds, 1), **run.record})
    warn_other_code(runs)
    summary = summarise(reports)
    tested = seed_ensemble([Path(r["run_dir"]) for r in runs])  # the ensemble, or the one seed's model
    ensemble = tested if len(runs) > 1 else None
    ensemble_percent = None if ensemble is None else {
        **summarise([ensemble]), "confusion_matrix": json_safe(ensemble["confusion_matrix"])}
    what = f"ensemble of {len(runs)} seeds" if ensemble is not None else f"seed {args.seeds[0]}"
    text = (table(summary, len(reports), ensemble_percent) + "\n\n"
            + format_record_interval(tested["record_interval"], ("S", "V"), "the " * (ensemble is not None) + what))
    print(text)
    out, tested_records = Path(args.out), tested_on(cfg.data.get("test_records"))
    with writing(out.with_suffix(".png")) as png:
        plot(summary, len(reports), ensemble_percent, png, tested_records)
    shown = reports[0] if ensemble is None else ensemble
    with writing(out.with_name(out.stem + "_confusion.png")) as png:
        plot_confusion(np.asarray(shown["confusion_matrix"]), shown["class_names"], png,
                       title=f"MIT-BIH {tested_records}, {what}")
    write_result(args.out, json.dumps(json_safe({"config": cfg.to_dict() | {"seed": args.seeds}, "runs": runs,
                                               "summary_percent": summary, "ensemble_percent": ensemble_percent,
                                               "record_interval_percent": {"of": what, **tested["record_interval"]},
                                               "published_percent": PUBLISHED, "table_markdown": text,
                                               "provenance": provenance(__file__, argv, started, [db_dir])}),
                                    indent=2) + "\n")


if __name__ == "__main__":
    with as_program(RUNS_INTERRUPTED):
        main()
