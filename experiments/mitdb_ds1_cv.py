"""MIT-BIH DS1 cross-validation: compare configs on every DS1 patient, with DS2 left untouched.

    python experiments/mitdb_ds1_cv.py --data-dir /path/to/data \\
        --variant main --variant ema ema_decay=0.995 --variant inverse class_weights=inverse

Why: the main job selects on 4 held-out DS1 records, which hold 83 S beats; with seed noise of
several points of S F1, that cannot rank configs. Here DS1's 22 records are split into folds by
record (``record_kfold``: whole records, every class spread over the folds as evenly as whole
records allow; deterministic: its seed only breaks ties, and every seed gives DS1 the same folds,
so the script takes no fold seed). For fold k, each variant is one ``msresnet1d train`` run of
the config (the main job's unless --config says otherwise, plus the variant's KEY=VALUE
overrides) with ``data.train_records`` = DS1 minus fold k and ``data.test_records`` = fold k.
Inside, the run holds out 4 of its own training records for validation and tests the epoch its
config selects, as the main job does (the main job's ``select_epoch = "last"``: the last epoch; a
config with ``"best"``: the best one on those 4 records), so each DS1 beat is predicted once by a
model that never saw that patient. DS2 is never loaded.

Every fold is trained once per seed (--seeds, default 0 1 2; the fold assignment and each run's
inner validation records stay the same, only the training seed changes).

Reported per variant: per-class Se, +P and F1 of the pooled out-of-fold confusion matrix (all DS1
beats, once per seed), its macro-F1 over N, S, V, F (the main job's monitor) and the mean of its S
and V F1, the same two figures for each fold (mean over the seeds), and the pooled macro-F1 of
each seed alone.

Decision rule, fixed before the first run: a variant replaces the baseline (the first --variant, or
the row --baseline names) when its pooled macro-F1 is higher by more than 1 point *and* its
macro-F1 is higher in at least 4 of 5 folds (in general, all folds but one). With several seeds
the rule reads the seed-pooled figures. (Seeds were added after the first runs, with one seed: the
seed alone moved the baseline's pooled macro-F1 by +2.7 and -2.5 points, as much as the first
variant's gain.)
A second rule, rule SV, was added on 2026-12-04 before the runs of the variants it first judged
(``irr``, ``irrmed``, ``fd5`` in experiments/README.md): issue 7's targets are S F1 and V F1, while macro-F1
also averages F F1, which rests on 415 DS1 beats, 378 of them in record 208. Rule SV keeps a
variant when the pooled mean of its S F1 and V F1 is higher by more than 1 point, that mean is
higher in all folds but one, *and* its pooled macro-F1 is not lower by more than 1 point.
With --offsets, each variant also gets a "<name>+offsets" row: class offsets on the log
probabilities (``msresnet1d.training.offsets``, fitted to the pooled macro-F1) predict each fold,
fitted on the out-of-fold probabilities of the other folds (every seed's), so no beat is predicted
with offsets fitted on its own record; the rule then judges that row against the baseline's plain one.
With --adapt-bn, each variant also gets a "<name>+adabn" row: the same runs, each held-out record
predicted with the BatchNorm statistics re-estimated on that record's own beats, labels unread
(``msresnet1d.models.adapt``, test-time adaptation to the patient); judged the same way. With
--last-epoch, a "<name>+last" row scores the same runs' last epoch (``last.pt``) instead of the one
their config selects (``best.pt``): for runs with ``select_epoch = "best"`` (e.g. ``--set
'select_epoch="best"'``), the epoch chosen on the inner validation records; for the main job's
``"last"``, the same weights.
With --ensemble NAME MEMBER MEMBER..., a row NAME averages the class probabilities of its members,
equally weighted. A member is a variant's row, plain (selected epoch) or "+last", and "@j" shifts its
seeds: row seed i takes that member's seed (i + j) modulo the number of seeds. So
``--ensemble pair main+last main+last@1`` pairs each seed's runs with the next seed's, and
``--ensemble mixed main+last other+last`` pairs the two variants' runs of the same seed: two
ensembles of the same size, judged by the same rules.

Runs go to <runs>/<variant>/seed<s>/fold<k>; a finished run is reused, an interrupted one
resumed. A variant's name is that folder (one plain folder name) and may not end as the rows
above do (+offsets, +adabn, +last); neither --set nor a variant may set what the script sets
(seed, threads, data.data_dir, data.train_records, data.test_records: give --seeds, --threads,
--data-dir, --records and --folds). Every run's config (and any run already in its folder) is
checked before the first trains. A quick test on a few --records needs ``--set
data.val_records=1`` (each run holds out 4 of its training records for validation), e.g.
``--records 118 209 220 223 --folds 2 --seeds 0 --set data.val_records=1 --set epochs=2``.
Results: experiments/results/mitdb_ds1_cv.json, and beside it the same name with .png
(each variant's macro-F1 per fold and its pooled S, V and F F1, the baseline drawn thicker);
``--replot RESULT.json`` draws that PNG again from a recorded result, without data or runs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from msresnet1d.arguments import (FOLDER_NAME_RULE, QUIET_HELP, RUNS_INTERRUPTED, add_data_dir, add_seeds, add_set,
                                  as_program, check_not_owned, config_or_exit, database_or_exit, folder_name,
                                  output_or_exit, overrides_or_exit, path_flag, positive_int, records_or_exit,
                                  result_or_exit, results_help, script_parser, thread_count, threads_help, write_result,
                                  writing)
from msresnet1d.data import DS1, RR_FEATURES, load_beats, patient_index, record_kfold
from msresnet1d.training.config import parse_overrides
from msresnet1d.training.ensemble import load_members, predict_members
from msresnet1d.training.metrics import confusion_matrix, json_safe, per_class
from msresnet1d.training.offsets import fit_class_offsets, predict_with_offsets
from msresnet1d.training.plots import plot_variants
from msresnet1d.training.provenance import provenance
from msresnet1d.training.run import recorded_run, warn_other_code
from msresnet1d.training.tasks import beat_config, resolve_data

RESULTS = Path(__file__).resolve().parent / "results" / "mitdb_ds1_cv.json"
CLASSES = ("N", "S", "V", "F")  # the scored AAMI classes, the first four of the five
MIN_GAIN = 1.0  # points of pooled macro-F1, and of (S F1 + V F1) / 2 for rule SV (see above)
#: The config keys the script sets from its flags, refused in --set and --variant (the flag to give instead).
OWNED = {"seed": "--seeds", "threads": "--threads", "data.data_dir": "--data-dir",
         "data.train_records": "--records and --folds", "data.test_records": "--records and --folds"}
#: The rows each variant's runs give besides its own (--offsets, --adapt-bn, --last-epoch), by their names' suffixes.
DERIVED_ROWS = ("+offsets", "+adabn", "+last")


def pooled_scores(cm: np.ndarray) -> dict:
    """Percent Se, +P and F1 of each scored class, their macro-F1 and ``sv_f1`` (the mean of S F1
    and V F1, rule SV's figure), from a (5, 5) confusion matrix. As in the runs' reports, an
    undefined figure is NaN (a fold without F beats where none is predicted) and the means average
    the defined F1s."""
    stats = per_class(cm)
    out = {c: {s: round(100 * float(stats[s][i]), 2) for s in ("se", "ppv", "f1")} for i, c in enumerate(CLASSES)}
    out["macro_f1"] = _mean_defined([out[c]["f1"] for c in CLASSES])
    out["sv_f1"] = _mean_defined([out[c]["f1"] for c in ("S", "V")])
    return out


def _mean_defined(values: list[float]) -> float:
    """Mean of the defined (non-NaN) values, rounded to 0.01; NaN if none is."""
    defined = [v for v in values if np.isfinite(v)]
    return round(float(np.mean(defined)), 2) if defined else float("nan")


def _gain(baseline: dict, variant: dict, score: str) -> tuple[float, int]:
    """Pooled gain of ``score`` (a key of ``pooled``) and the folds where ``fold_<score>`` is higher."""
    better = sum(v > b for v, b in zip(variant[f"fold_{score}"], baseline[f"fold_{score}"]))
    return round(variant["pooled"][score] - baseline["pooled"][score], 2), better


def decide(baseline: dict, variant: dict) -> dict:
    """Both decision rules applied to two variants' results (``pooled`` and the per-fold figures):
    the script's rule on macro-F1, and rule SV on the mean of S F1 and V F1 (macro-F1 at most 1
    point lower)."""
    folds = len(baseline["fold_macro_f1"])
    gain, better = _gain(baseline, variant, "macro_f1")
    sv_gain, sv_better = _gain(baseline, variant, "sv_f1")
    return {"pooled_gain": gain, "folds_better": better,
            "replaces_baseline": bool(gain > MIN_GAIN and better >= folds - 1),
            "sv_gain": sv_gain, "sv_folds_better": sv_better,
            "replaces_baseline_sv": bool(sv_gain > MIN_GAIN and sv_better >= folds - 1 and gain >= -MIN_GAIN)}


def table(variants: dict[str, dict]) -> str:
    """The variants' markdown table: pooled Se, +P, F1, the macro-F1s and each rule's verdict
    against the baseline (the row without a ``decision``)."""
    lines = ["| variant | S Se | S +P | S F1 | V Se | V +P | V F1 | F F1 | macro-F1 pooled | pooled, each seed | "
             "macro-F1 per fold (mean ± std) | folds better | replaces baseline | (S F1 + V F1) / 2 pooled | "
             "folds better | rule SV |", "|---|" + "---:|" * 15]
    for name, v in variants.items():
        p, folds = v["pooled"], np.array(v["fold_macro_f1"])
        d = v.get("decision")
        verdict = ["(baseline)", ""] if d is None else [str(d["folds_better"]), "yes" if d["replaces_baseline"] else "no"]
        sv = ["", ""] if d is None else [str(d["sv_folds_better"]), "yes" if d["replaces_baseline_sv"] else "no"]
        cells = [f"{p[c][s]:.1f}" for c in ("S", "V") for s in ("se", "ppv", "f1")] + [f"{p['F']['f1']:.1f}"]
        seeds = " / ".join(f"{m:.1f}" for m in v["seed_macro_f1"].values())
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {p['macro_f1']:.1f} | {seeds} | "
                     f"{folds.mean():.1f} ± {folds.std(ddof=1) if len(folds) > 1 else 0.0:.1f} | "
                     + " | ".join(verdict) + f" | {p['sv_f1']:.1f} | " + " | ".join(sv) + " |")
    return "\n".join(lines)


def macro_f1(cm: np.ndarray) -> float:
    """Percent macro-F1 over N, S, V, F of a (5, 5) confusion matrix (the rule's figure)."""
    return pooled_scores(cm)["macro_f1"]


def _fold_means(confusions: np.ndarray) -> dict[str, list[float]]:
    """``fold_macro_f1`` and ``fold_sv_f1``: each fold's figure, mean over the seeds, from (seeds, folds,
    5, 5) confusion matrices; NaN when undefined for every seed."""
    runs = [[pooled_scores(cm) for cm in fold] for fold in confusions.transpose(1, 0, 2, 3)]
    return {f"fold_{score}": [_mean_defined([run[score] for run in fold]) for fold in runs]
            for score in ("macro_f1", "sv_f1")}


def cross_fitted_offsets(probabilities: list[np.ndarray], labels: list[np.ndarray]) -> tuple[np.ndarray, list]:
    """Leave-one-fold-out class offsets. ``probabilities[k]`` is fold k's (seeds, N_k, 5) out-of-fold
    probabilities, one row of beats per seed, and ``labels[k]`` its (N_k,) classes. Fold k is
    predicted with offsets fitted on every other fold (all seeds); returns the (seeds, folds, 5, 5)
    confusion matrices and each fold's offsets."""
    seeds, folds = len(probabilities[0]), len(labels)
    confusions, offsets = np.zeros((seeds, folds, 5, 5), dtype=np.int64), []
    for k in range(folds):
        others = [j for j in range(folds) if j != k]
        fitted = fit_class_offsets(np.concatenate([probabilities[j].reshape(-1, 5) for j in others]),
                                   np.concatenate([np.tile(labels[j], seeds) for j in others]), macro_f1)
        offsets.append(fitted.round(2).tolist())
        for i in range(seeds):
            confusions[i, k] = confusion_matrix(labels[k], predict_with_offsets(probabilities[k][i], fitted), 5)
    return confusions, offsets


def rescored(run_dirs: list[list[Path]], modes: list[str]
             ) -> tuple[dict[str, list[tuple[np.ndarray, np.ndarray]]], list[np.ndarray]]:
    """The runs ``run_dirs[k][i]`` (fold k, seed i) predicting their own held-out fold (each run's
    test split) anew, one task built a fold, in each of ``modes``: ``"best"`` (the selected
    checkpoints, ``best.pt``), ``"adabn"`` (the same, BatchNorm statistics re-estimated on each
    held-out record), ``"last"`` (``last.pt``). Returns, per mode, each fold's labels (N_k,) and its
    seeds' class probabilities (seeds, N_k, 5); and each fold's record of every beat (N_k,)."""
    predicted: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {mode: [] for mode in modes}
    records = []
    files = {mode: "last" if mode == "last" else "best" for mode in modes}
    which = list(dict.fromkeys(files.values()))
    for fold in run_dirs:
        task, members = load_members([d / "checkpoints" / f"{w}.pt" for w in which for d in fold])
        groups = {w: members[j * len(fold):(j + 1) * len(fold)] for j, w in enumerate(which)}
        for mode in modes:
            predicted[mode].append(predict_members(task, groups[files[mode]], adapt_bn=mode == "adabn"))
        records.append(task.groups["test"])
    return predicted, records


#: RR ratios whose medians ``per_record`` gives for the S beats called N and the N beats called S.
RR_SHOWN = ("prev_over_local", "prev_over_record")


def per_record(predicted: list[tuple[np.ndarray, np.ndarray]], records: list[np.ndarray],
               rr_of: dict[str, np.ndarray]) -> dict[str, dict]:
    """Each held-out record's (5, 5) confusion matrix (rows true N, S, V, F, Q), summed over the
    seeds, from ``rescored``'s lists of one mode and its records; and the medians of the
    :data:`RR_SHOWN` ratios of its S beats called N and of its N beats called S (each beat once a
    seed), from ``rr_of``: each record's (n, F) RR features (``RR_FEATURES``), beats in time order
    as the held-out split has them."""
    columns = [RR_FEATURES.index(name) for name in RR_SHOWN]
    cms: dict[str, np.ndarray] = {}
    errors: dict[str, dict[str, list]] = {}
    for (y, probabilities), record in zip(predicted, records):
        for p in probabilities:
            for r in dict.fromkeys(record.tolist()):
                mine = record == r
                truth, guess, rr = y[mine], p[mine].argmax(axis=1), rr_of[r][:, columns]
                cms[r] = cms.get(r, 0) + confusion_matrix(truth, guess, 5)
                lost = errors.setdefault(r, {"s_as_n": [], "n_as_s": []})
                lost["s_as_n"].append(rr[(truth == 1) & (guess == 0)])
                lost["n_as_s"].append(rr[(truth == 0) & (guess == 1)])
    out = {}
    for r in sorted(cms):
        medians = {}
        for kind, parts in errors[r].items():
            beats = np.concatenate(parts)
            medians[kind] = dict(zip(RR_SHOWN, np.median(beats, axis=0).tolist())) if len(beats) else None
        out[r] = {"confusion_matrix": cms[r].tolist(), "rr_medians": medians}
    return out


def format_per_record(rows: dict[str, dict], row: str) -> str:
    """Where S and V beats are lost, record by record (counts summed over seeds), with the RR
    ratios (:data:`RR_SHOWN`, medians) of the S beats called N and the N beats called S."""
    shown = "/".join(name.removeprefix("prev_over_") for name in RR_SHOWN)
    lines = [f"per record, {row} (beats summed over seeds; RR: median {shown} of those beats):",
             f"{'record':<8}{'beats':>7}{'S':>7}{'S found':>9}{'S as N':>8}{'RR':>11}{'N as S':>8}{'RR':>11}"
             f"{'V':>7}{'V found':>9}{'N as V':>8}"]
    for r, found in rows.items():
        cm, medians = np.asarray(found["confusion_matrix"]), found["rr_medians"]
        rr = {k: "/".join(f"{v:.2f}" for v in m.values()) if m else "-" for k, m in medians.items()}
        lines.append(f"{r:<8}{cm.sum():>7}{cm[1].sum():>7}{cm[1, 1]:>9}{cm[1, 0]:>8}{rr['s_as_n']:>11}{cm[0, 1]:>8}"
                     f"{rr['n_as_s']:>11}{cm[2].sum():>7}{cm[2, 2]:>9}{cm[0, 2]:>8}")
    return "\n".join(lines)


def confusion_matrices(predicted: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The (seeds, folds, 5, 5) confusion matrices of each fold's labels and its seeds' class
    probabilities (``rescored``'s lists)."""
    out = np.zeros((len(predicted[0][1]), len(predicted), 5, 5), dtype=np.int64)
    for k, (y, probabilities) in enumerate(predicted):
        for i, p in enumerate(probabilities):
            out[i, k] = confusion_matrix(y, p.argmax(axis=1), 5)
    return out


def summarise(confusions: np.ndarray, seeds: list[int], **extra) -> dict:
    """A variant's pooled scores, per-fold and per-seed macro-F1 from its (seeds, folds, 5, 5)
    out-of-fold confusion matrices."""
    return {**extra, "pooled": pooled_scores(confusions.sum(axis=(0, 1))),
            "pooled_confusion_matrix": confusions.sum(axis=(0, 1)).tolist(),
            **_fold_means(confusions),
            "seed_macro_f1": {seed: macro_f1(c.sum(axis=0)) for seed, c in zip(seeds, confusions)}}


def parse_ensembles(items: list[list[str]], variants: dict[str, dict], taken: list[str]) -> dict[str, list]:
    """``[[name, member, ...], ...]`` -> {name: [(variant, mode, shift), ...]}, mode ``"best"`` or ``"last"``;
    a member reads ``VARIANT[+last][@SHIFT]`` and names a --variant; ``taken``: the other rows' names."""
    ensembles: dict[str, list] = {}
    for name, *members in items:
        if name in ensembles or name in taken or len(members) < 2:
            raise ValueError(f"--ensemble {name!r}: a new row name, then two or more members")
        ensembles[name] = []
        for member in members:
            row, _, shift = member.partition("@")
            variant, mode = (row[:-len("+last")], "last") if row.endswith("+last") else (row, "best")
            if variant not in variants or (shift and not shift.isdigit()):
                raise ValueError(f"--ensemble {name}: member {member!r} is not VARIANT[+last][@SHIFT] with "
                                 f"VARIANT one of {', '.join(variants)} and SHIFT a whole number")
            ensembles[name].append((variant, mode, int(shift or 0)))
    return ensembles


def ensemble_confusions(members: list[list[tuple[np.ndarray, np.ndarray]]], shifts: list[int]) -> np.ndarray:
    """(seeds, folds, 5, 5) confusion matrices of equally weighted ensembles: ``members[j]`` holds, per fold,
    the labels (N_k,) and seeds' class probabilities (seeds, N_k, 5) of member j (``rescored``'s lists),
    and row i averages member j's seed (i + shifts[j]) modulo the number of seeds."""
    seeds, folds = len(members[0][0][1]), len(members[0])
    out = np.zeros((seeds, folds, 5, 5), dtype=np.int64)
    for k in range(folds):
        y = members[0][k][0]
        if any(not np.array_equal(m[k][0], y) for m in members):
            raise ValueError(f"ensemble members disagree on fold {k + 1}'s beats: they must read the same beats")
        for i in range(seeds):
            p = np.mean([m[k][1][(i + shift) % seeds] for m, shift in zip(members, shifts)], axis=0)
            out[i, k] = confusion_matrix(y, p.argmax(axis=1), 5)
    return out


def parse_variants(items: list[list[str]]) -> dict[str, dict]:
    """``[[name, KEY=VALUE, ...], ...]`` -> {name: overrides}, names distinct, each one plain
    folder name (its runs' folder under --runs) not ending as a derived row's does
    (:data:`DERIVED_ROWS`), and no override of a key the script sets (:data:`OWNED`)."""
    variants: dict[str, dict] = {}
    for name, *settings in items:
        if name in variants or "=" in name:
            raise ValueError(f"--variant {name!r}: each variant starts with a new name (no '=')")
        if not folder_name(name):
            raise ValueError(f"--variant {name!r}: a variant's name is the folder of its runs under --runs, one folder "
                             f"name ({FOLDER_NAME_RULE})")
        if name.endswith(DERIVED_ROWS):
            raise ValueError(f"--variant {name!r}: names ending in {', '.join(DERIVED_ROWS)} are the rows the "
                             "variants' runs give with --offsets, --adapt-bn and --last-epoch: choose another name")
        variants[name] = parse_overrides(settings)
        check_not_owned(variants[name], OWNED, f"--variant {name}:")
    return variants


def build_parser() -> argparse.ArgumentParser:
    """This script's command-line parser (its arguments unchecked beyond their types: ``main`` checks the rest)."""
    parser = script_parser(__doc__)
    add_data_dir(parser, "mitdb/, or mitdb/ itself")
    parser.add_argument("--config", type=path_flag, default="mitdb_beats",
                        help="config name or path (default: the main job)")
    parser.add_argument("--variant", action="append", nargs="+", metavar=("NAME", "KEY=VALUE"),
                        help="a variant: its name and config overrides; the first is the baseline (required but "
                             "with --replot)")
    parser.add_argument("--folds", type=positive_int, default=5, help="folds of DS1 records (default 5)")
    add_seeds(parser, [0, 1, 2], "training seeds, each once (default 0 1 2)")
    parser.add_argument("--records", nargs="+", default=list(DS1), help="the records to cross-validate (default DS1)")
    parser.add_argument("--runs", type=path_flag, default="runs/mitdb-ds1-cv", help="folder of the runs")
    add_set(parser, OWNED, "config overrides for every variant")
    parser.add_argument("--threads", type=thread_count, default=0,
                        help=threads_help(0, "as msresnet1d train has it", "torch threads of every run"))
    parser.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    parser.add_argument("--offsets", action="store_true",
                        help="also score each variant with class offsets fitted on the other folds")
    parser.add_argument("--adapt-bn", action="store_true",
                        help="also score each variant with BatchNorm statistics re-estimated on each held-out record")
    parser.add_argument("--last-epoch", action="store_true",
                        help="also score each variant's runs at their last epoch (last.pt) instead of the one their "
                             "config selects (best.pt; the same weights with select_epoch='last')")
    parser.add_argument("--ensemble", action="append", nargs="+", default=[], metavar=("NAME", "MEMBER"),
                        help="a row averaging its members' probabilities; MEMBER = VARIANT[+last][@SEED_SHIFT]")
    parser.add_argument("--per-record", metavar="ROW", action="append", default=[],
                        help="also each held-out record's confusion matrix for the row VARIANT, VARIANT+last or "
                             "VARIANT+adabn (where S and V beats are lost); repeatable")
    parser.add_argument("--baseline", metavar="ROW",
                        help="the row the others are judged against, e.g. main+last (default: the first variant)")
    parser.add_argument("--out", type=path_flag, default=RESULTS, help=results_help(RESULTS))
    parser.add_argument("--replot", type=path_flag, metavar="RESULT.json",
                        help="only draw the PNG of a recorded result again, beside it (no data, no runs)")
    return parser


def main(argv: list[str] | None = None) -> dict:
    started = time.time()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threads:  # the evaluations too: train gives the caller's thread count back when it returns
        torch.set_num_threads(args.threads)
    if args.replot:
        def replot(report: dict) -> None:
            with writing(Path(args.replot).with_suffix(".png")) as png:
                plot_report(report, png)

        return result_or_exit(parser, args.replot, replot)
    if not args.variant:
        parser.error("the following arguments are required: --variant (unless --replot)")
    args.out = output_or_exit(parser, args.out)
    db_dir = database_or_exit(parser, "mitdb", args.data_dir)
    records_or_exit(parser, db_dir, args.records)
    patients = len(set(patient_index(list(dict.fromkeys(args.records)))))
    if not 2 <= args.folds <= patients:
        parser.error(f"--folds must be in [2, {patients}] (the number of patients: 201 and 202 are one), got {args.folds}")
    suffixes = [""] + [suffix for flag, suffix in zip((args.offsets, args.adapt_bn, args.last_epoch), DERIVED_ROWS)
                       if flag]
    common = overrides_or_exit(parser, args.set, OWNED)
    try:
        variants = parse_variants(args.variant)
        rows = [name + suffix for name in variants for suffix in suffixes]
        ensembles = parse_ensembles(args.ensemble, variants, rows)
    except ValueError as e:
        parser.error(str(e))
    rows += list(ensembles)
    if args.baseline and args.baseline not in rows:
        parser.error(f"--baseline {args.baseline}: not a row of this table ({', '.join(rows)})")
    row_modes = {"": "best", "+last": "last", "+adabn": "adabn"}
    wanted: dict[str, list[tuple[str, str]]] = {}  # variant -> (row, mode) to break down by record
    for row in args.per_record:
        name, suffix = next(((row[:-len(s)], s) for s in ("+last", "+adabn") if row.endswith(s)), (row, ""))
        if name not in variants:
            parser.error(f"--per-record {row}: not VARIANT, VARIANT+last or VARIANT+adabn of the variants "
                         f"({', '.join(variants)})")
        wanted.setdefault(name, []).append((row, row_modes[suffix]))
    common |= {"threads": args.threads, "data.data_dir": str(db_dir)}

    base = resolve_data(config_or_exit(parser, args.config, common))
    for overrides in variants.values():  # before the data load: a bad variant is told at once
        config_or_exit(parser, args.config, {**common, **overrides})
    beats = load_beats(args.records, db_dir=base.data["data_dir"], config=beat_config(base.data), cache=base.data["cache"])
    folds = record_kfold({r: beats.y[beats.record == r] for r in args.records}, args.folds)
    run_dirs = {name: [[Path(args.runs) / name / f"seed{seed}" / f"fold{k + 1}" for seed in args.seeds]
                       for k in range(len(folds))] for name in variants}  # variant -> fold -> seed
    configs = {name: [[config_or_exit(parser, args.config, {
        **common, **overrides, "seed": seed, "data.train_records": [r for r in args.records if r not in held],
        "data.test_records": held}, run_dir=run_dirs[name][k][i]) for i, seed in enumerate(args.seeds)]
        for k, held in enumerate(folds)] for name, overrides in variants.items()}  # every run's, before any trains
    results: dict[str, dict] = {}
    flagged = [mode for flag, mode in ((args.offsets, "best"), (args.adapt_bn, "adabn"), (args.last_epoch, "last"))
               if flag]
    predictions: dict[tuple[str, str], list] = {}  # (variant, mode) -> rescored's list, for the ensembles
    by_record: dict[str, dict[str, list]] = {}
    every_run: list[dict] = []
    for name, overrides in variants.items():
        modes = list(dict.fromkeys(flagged + [m for members in ensembles.values() for v, m, _ in members if v == name]
                                   + [mode for _, mode in wanted.get(name, [])]))
        confusions, runs = np.zeros((len(args.seeds), len(folds), 5, 5), dtype=np.int64), []  # seed, fold
        for i, seed in enumerate(args.seeds):
            for k in range(len(folds)):
                run = recorded_run(configs[name][k][i], run_dirs[name][k][i], quiet=args.quiet)
                result = run.metrics
                confusions[i, k] = result["test"]["confusion_matrix"]
                runs.append({"seed": seed, "fold": k + 1, "best_epoch": result["best_epoch"],
                             "val_records": result["splits"]["val_records"],
                             "train_s": round(sum(run.epoch_seconds), 1),
                             "wall_s_this_invocation": round(run.wall_seconds, 1), **run.record})
        every_run += runs
        results[name] = summarise(confusions, args.seeds, overrides=overrides, runs=runs)
        if modes:  # each fold's held-out beats, predicted by its runs of every seed (one task a fold)
            predicted, held_records = rescored(run_dirs[name], modes)
            predictions |= {(name, mode): predicted[mode] for mode in modes}
            for row, mode in wanted.get(name, []):
                by_record[row] = per_record(predicted[mode], held_records,
                                            {r: beats.rr[beats.record == r] for r in args.records})
        if args.offsets:
            fitted, offsets = cross_fitted_offsets([p for _, p in predicted["best"]], [y for y, _ in predicted["best"]])
            results[f"{name}+offsets"] = summarise(fitted, args.seeds, overrides=overrides, fold_offsets=offsets)
        if args.adapt_bn:
            results[f"{name}+adabn"] = summarise(confusion_matrices(predicted["adabn"]), args.seeds, overrides=overrides)
        if args.last_epoch:
            results[f"{name}+last"] = summarise(confusion_matrices(predicted["last"]), args.seeds, overrides=overrides)
    warn_other_code(every_run)
    for name, members in ensembles.items():
        confusions = ensemble_confusions([predictions[v, mode] for v, mode, _ in members], [j for *_, j in members])
        results[name] = summarise(confusions, args.seeds, members=[f"{v}{'+last' * (mode == 'last')}@{j}"
                                                                   for v, mode, j in members])
    baseline = args.baseline or next(iter(results))
    for name, v in results.items():
        if name != baseline:
            v["decision"] = decide(results[baseline], v)
    text = table(results)
    print(text)
    for row, matrices in by_record.items():
        print("\n" + format_per_record(matrices, row))
    report = json_safe({"config": base.to_dict() | {"seed": args.seeds}, "folds": folds,
                        "fold_beats": [beats.from_records(f).class_counts() for f in folds], "baseline": baseline,
                        "min_gain": MIN_GAIN, "variants": results, "table_markdown": text,
                        "per_record": by_record, "provenance": provenance(__file__, argv, started, [db_dir])})
    write_result(args.out, json.dumps(report, indent=2) + "\n")
    with writing(args.out.with_suffix(".png")) as png:
        plot_report(report, png)
    return report


def plot_report(report: dict, path: Path) -> None:
    """The variants of a result (as :func:`main` writes it) side by side, the baseline marked."""
    seeds = report["config"]["seed"]
    plot_variants(report["variants"], path, baseline=report.get("baseline"),
                  title=f"MIT-BIH DS1, {len(report['folds'])}-fold cross-validation by record, seeds "
                        f"{', '.join(map(str, seeds if isinstance(seeds, list) else [seeds]))}")


if __name__ == "__main__":
    with as_program(RUNS_INTERRUPTED):
        main()
