"""Compare beat classifiers on the MIT-BIH inter-patient split, all trained by the shared engine.

Every model is trained with its suite's base config (:data:`BASE_CONFIGS`; all: DS1 to train
with 4 DS1 records held out for validation, DS2 tested once, the same seed, 10 epochs of AdamW
with a one-cycle schedule) plus the overrides of its entry in :data:`SUITES`. Three suites:

``--suite compare`` (default), four model families on the main job's config
(experiments/configs/mitdb_beats.toml):

- ``msresnet1d``: MSResNet1d with concat fusion at every stage (``msresnet1d_beat``);
- ``msresnet1d_late``: the same branches fused only at the head (``fusion="late"``);
- ``resnet1d``: the single-scale ResNet1d (``resnet1d_beat``, kernel 7);
- ``resnet2d_spec``: a 2D ResNet-18 layout (2-2-2-2 basic blocks) narrowed to widths 8-16-32-64,
  stem 8 channels without max-pool, on 32x32 log-spectrograms of the beats
  (``data.representation = "spectrogram"``), of the same order of cost as ``msresnet1d``: about
  178 k parameters and 4.7 MFLOPs per beat, against 102 k and 2.2 MFLOPs for ``msresnet1d`` on the
  main job's config (experiments/results/compare_models.json).

``--suite main_ablation``, one change at a time from the main job itself: undilated branches
(kernels 3/7/15) and single-scale ones (kernel 7 or 15) against the dilated multi-scale 3/3/3,
fusion per stage by concat (the main job's), sum or attention against late fusion,
depthwise-separable branches, the RR features straight into the linear layer or none at all, and
no template channel. Results go to experiments/results/main_ablation.json.

``--suite ablation``, the older ablation, one change at a time from a base
(experiments/configs/mitdb_beats_ablation.toml: kernels 3/7/15, the template of all beats, all 8
RR features joining the linear layer directly): the same kinds of change, then the steps to the
main job (its last row, ``main_job``: the keys in which the main job's file differs from the base's).
Results go to experiments/results/ablation.json.

``--seeds S [S ...]`` trains every model with each seed (runs in ``<runs>/seed<S>/<model>``, where
``--seed S --runs <runs>/seed<S>`` puts them, so single-seed invocations can share the work), and the
table gives each figure's mean ± standard deviation over the seeds. ``--checkpoint last`` tests each
run's last epoch (``last.pt``, its validation score from log.csv) whichever epoch the run selected:
runs trained with ``select_epoch = "best"`` then give what they would with ``"last"``.

For each model it reports the parameter count, forward FLOPs per example (2 x multiply-adds of
convolutions and linear layers, :func:`msresnet1d.models.count_flops`, the RR features included),
training time (the sum of ``train_seconds`` in the run's log.csv: training batches only,
including the loader's per-batch transform such as the spectrogram, excluding validation; and
per epoch), and the DS2 test metrics (or those of ``--set data.test_records``) of the epoch the
run's config selects (``best.pt``): accuracy, macro-F1 of N, S, V, F, and F1, sensitivity (Se)
and positive predictivity (+P) of S and V.

It prints one comparison table (markdown) and writes everything to
experiments/results/<compare_models|main_ablation|ablation>.json (or ``--out``, a .json file) once
every model has been tested. After each model, the results so far go to ``<name>.partial.json``
beside it (removed when the table is complete), so an interrupted run leaves its partial results
there and never a partial table under the final name. Each model's run folder (checkpoints,
log.csv, metrics.json, plots) is kept under ``--runs`` (default ``runs/<suite>``, with ``--seed S``
``runs/<suite>/seed<S>``, as ``--seeds`` lays them out); a finished one is
reused and an interrupted one resumed (``msresnet1d.training.run.train_or_reuse``: same config or
an error), so running the same command again continues where it stopped, several invocations with
the same ``--runs`` and different ``--models`` can share the work, and a last one over all of them
writes the whole table (``wall_seconds`` is null for a reused run; ``train_seconds`` comes from its
log.csv either way). Before 2026-12-07 ``--out`` named the runs folder (default
``runs/<suite>/<timestamp>``, a new one each time) and ``--json`` the results file, the opposite of
the other scripts: ``--json`` is still read as ``--out``, with a warning, and an ``--out`` that is a
folder or does not end in .json is refused.

Usage:
    MSRESNET1D_DATA=/path/to/data python experiments/compare_models.py [--suite compare|main_ablation|ablation]
        [--epochs N] [--seed S | --seeds S ...] [--models msresnet1d resnet1d ...] [--runs runs/compare]
        [--out results.json] [--checkpoint selected|last] [--threads 1] [--quiet]
MIT-BIH is --data-dir or $MSRESNET1D_DATA (the folder holding mitdb/, or mitdb/ itself); with
neither, or a folder without MIT-BIH, the script stops before any work. The embedded 3-minute
sample is used only when named: --data-dir datasets/mitdb-sample (a smoke run, not a result).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from msresnet1d.atomic import write_text
from msresnet1d.arguments import (QUIET_HELP, RUNS_INTERRUPTED, add_data_dir, add_seeds, add_set, as_program,
                                  config_or_exit, database_or_exit, output_or_exit, overrides_or_exit, partial_path,
                                  path_flag, positive_int, script_parser, seed_value, thread_count, threads_help,
                                  write_result)
from msresnet1d.data import DS2
from msresnet1d.models import count_flops, count_parameters
from msresnet1d.training.config import TrainConfig, load_config
from msresnet1d.training.ensemble import load_members, predict_members
from msresnet1d.training.metrics import classification_report, json_safe
from msresnet1d.training.provenance import data_digest_or_error, load_average, provenance
from msresnet1d.training.run import build_model, recorded_run, warn_other_code
from msresnet1d.training.tasks import build_task

HERE = Path(__file__).resolve().parent
CONFIGS = HERE / "configs"


def _flat(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A config as dotted keys (``model_kwargs.kernels``), the form ``--set`` takes."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        out |= _flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value}
    return out


def _changes(base: Path, target: Path) -> dict[str, Any]:
    """The overrides that turn config file ``base`` into ``target``: the keys whose values differ."""
    old, new = (_flat(load_config(path).to_dict()) for path in (base, target))
    if set(old) - set(new):
        raise ValueError(f"{target} lacks keys of {base}: {sorted(set(old) - set(new))}")
    return {key: value for key, value in new.items() if old.get(key) != value}


# suite -> name -> (description, config overrides on top of the suite's base config, BASE_CONFIGS)
SUITES: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {
    "compare": {
        "msresnet1d": ("MSResNet1d, concat fusion per stage", {"model": "msresnet1d_beat"}),
        "msresnet1d_late": ("MSResNet1d, late fusion", {"model": "msresnet1d_beat", "model_kwargs.fusion": "late"}),
        "resnet1d": ("ResNet1d, single scale", {"model": "resnet1d_beat"}),
        "resnet2d_spec": ("2D ResNet (2-2-2-2, widths 8-64) on 32x32 spectrograms", {
            "model": "resnet18", "model_kwargs.dims": 2, "model_kwargs.widths": [8, 16, 32, 64],
            "model_kwargs.stem_channels": 8, "model_kwargs.stem_pool": False, "data.representation": "spectrogram",
            # the 2D stem's own size, not the main job's, which is sized for its 1D signal at 360 Hz
            "model_kwargs.stem_kernel": 7, "model_kwargs.stem_stride": 2,
        }),
    },
    # One change at a time from the ablation's base (configs/mitdb_beats_ablation.toml:
    # msresnet1d_beat with kernels 3/7/15, concat fusion, the template channel, all 8 RR features
    # into the linear layer); the last two rows are the steps from there to the main job. Every
    # run with the same seed, split and schedule.
    "ablation": {
        "base": ("base: kernels 3/7/15, concat fusion, template, 8 RR features, linear head", {}),
        "single_k7": ("single scale: one branch, kernel 7", {"model_kwargs.kernels": [7]}),
        "single_k15": ("single scale: one branch, kernel 15", {"model_kwargs.kernels": [15]}),
        "sum": ("fusion per stage: sum", {"model_kwargs.fusion": "sum"}),
        "attention": ("fusion per stage: attention (selective kernel)", {"model_kwargs.fusion": "attention"}),
        "late": ("late fusion: independent towers joined at the head", {"model_kwargs.fusion": "late"}),
        "no_rr": ("without RR features", {"data.rr": False}),
        "no_template": ("without the template channel", {"data.template": False}),
        "separable": ("depthwise-separable branch convolutions", {"model_kwargs.separable": True}),
        "dilated": ("dilated branches: kernel 3, dilations 1/3/7 (receptive fields 3/7/15)",
                    {"model_kwargs.kernels": [3, 3, 3], "model_kwargs.dilations": [1, 3, 7]}),
        "rr_head": ("RR features through an MLP (8-32-32), modality dropout 0.3 of the pooled features",
                    {"model_kwargs.extra_hidden": 32, "model_kwargs.feature_drop_rate": 0.3}),
        "main_job": ("the main job: rr_head with the 4 dimensionless RR ratios and rr_irregularity only, "
                     "the template from the regular beats, dilated branches, channels-last convolutions, "
                     "the last epoch tested, the records at 360 Hz with a 13/4 stem",
                     _changes(CONFIGS / "mitdb_beats_ablation.toml", CONFIGS / "mitdb_beats.toml")),
    },
    # One change at a time from the main job itself (configs/mitdb_beats.toml: dilated branches
    # 3/3/3 with dilations 1/3/7, concat fusion per stage, the template of the regular beats, the
    # 5 RR features through the head's MLP with modality dropout, channels-last convolutions, the
    # records at 360 Hz with a 13/4 stem).
    "main_ablation": {
        "main_job": ("the main job", {}),
        "kernels_3_7_15": ("undilated branches: kernels 3/7/15 (the same receptive fields)",
                           {"model_kwargs.kernels": [3, 7, 15], "model_kwargs.dilations": [1, 1, 1]}),
        "single_k7": ("single scale: one branch, kernel 7", {"model_kwargs.kernels": [7], "model_kwargs.dilations": [1]}),
        "single_k15": ("single scale: one branch, kernel 15",
                       {"model_kwargs.kernels": [15], "model_kwargs.dilations": [1]}),
        "sum": ("fusion per stage: sum", {"model_kwargs.fusion": "sum"}),
        "attention": ("fusion per stage: attention (selective kernel)", {"model_kwargs.fusion": "attention"}),
        "late": ("late fusion: independent towers joined at the head", {"model_kwargs.fusion": "late"}),
        "separable": ("depthwise-separable branch convolutions", {"model_kwargs.separable": True}),
        "rr_linear": ("RR features straight into the linear layer (no MLP, no modality dropout)",
                      {"model_kwargs.extra_hidden": 0, "model_kwargs.feature_drop_rate": 0.0}),
        "no_rr": ("without RR features", {"data.rr": False, "model_kwargs.extra_hidden": 0,
                                          "model_kwargs.feature_drop_rate": 0.0}),
        "no_template": ("without the template channel", {"data.template": False}),
    },
}
#: The config keys the script sets from its flags, refused in --set (the flag to give instead).
OWNED = {"seed": "--seed or --seeds", "threads": "--threads", "data.data_dir": "--data-dir", "epochs": "--epochs"}
# MSResNet1d's branch options (the main job's dilated branches): the single-branch families have none
BRANCH_KWARGS = ("kernels", "dilations")


def suite_config(base: Path, overrides: dict[str, Any]) -> TrainConfig:
    """The base config with one suite entry's overrides; MSResNet1d's branch options are dropped
    for the other model families, which take the rest of the main job's model options."""
    cfg = load_config(base, overrides)
    if cfg.model != "msresnet1d_beat":
        kept = {k: v for k, v in cfg.model_kwargs.items() if k not in BRANCH_KWARGS}
        cfg = dataclasses.replace(cfg, model_kwargs=kept)
    return cfg


BASE_CONFIGS = {"compare": CONFIGS / "mitdb_beats.toml", "ablation": CONFIGS / "mitdb_beats_ablation.toml",
                "main_ablation": CONFIGS / "mitdb_beats.toml"}
RESULTS = {"compare": HERE / "results" / "compare_models.json", "ablation": HERE / "results" / "ablation.json",
           "main_ablation": HERE / "results" / "main_ablation.json"}


class _WithZeroExtra(nn.Module):
    """Calls ``model(x, zeros)`` so that :func:`count_flops`, which passes one input, runs a model
    built with extra per-example features (the RR intervals) through its whole head."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        extra = x.new_zeros(len(x), self.model.extra_features) if self.model.extra_features else None
        return self.model(x, extra)


def profile(cfg: TrainConfig) -> dict[str, Any]:
    """Parameters and forward FLOPs of one example of the model exactly as the engine builds it
    for this config's task (also checks the config before any long training starts)."""
    task = build_task(cfg)
    model = build_model(cfg, task)
    shape = [1, task.in_channels] + [task.input_size] * task.dims
    return {"parameters": count_parameters(model), "flops_per_example": count_flops(_WithZeroExtra(model), shape),
            "input_shape": shape, "extra_features": task.extra_features}


def percent(value: float | None) -> str:
    """A fraction in percent; "-" for an undefined one (NaN, or None as metrics.json stores it)."""
    return f"{100 * value:.1f}" if value is not None and np.isfinite(value) else "-"


def _cell(values: list[float], fmt) -> str:
    """One value, or the mean ± sample standard deviation of several (one a seed; undefined ones left out)."""
    defined = [v for v in values if v is not None and np.isfinite(v)]
    if len(values) == 1 or not defined:
        return fmt(values[0] if len(values) == 1 else None)
    if len(defined) == 1:
        return f"{fmt(defined[0])} (1 of {len(values)} seeds)"
    return f"{fmt(float(np.mean(defined)))} ± {fmt(float(np.std(defined, ddof=1))).lstrip()}"


def seed_runs(run: dict[str, Any]) -> list[dict[str, Any]]:
    """A model's run records: one, or one a seed (``--seeds``)."""
    return list(run["seeds"].values()) if "seeds" in run else [run]


def comparison_table(runs: dict[str, dict[str, Any]]) -> str:
    """One markdown row per model; metrics in percent ("-" = undefined, e.g. +P of a class
    never predicted), mean ± standard deviation over the seeds when there are several. "val
    macro-F1" is the validation score of the selected epoch, the only figure a choice between
    the rows may rest on (the DS2 columns are the test)."""
    header = ["model", "params", "MFLOPs/beat", "train s", "s/epoch", "val macro-F1", "acc", "macro-F1", "S F1",
              "V F1", "S Se", "S +P", "V Se", "V +P"]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    seconds = lambda v: "-" if v is None else f"{v:.0f}"  # noqa: E731
    tenths = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    columns = [(lambda r: r["train_seconds"], seconds), (lambda r: r["seconds_per_epoch"], tenths),
               (lambda r: r["best_val_score"], percent), (lambda r: r["test"]["accuracy"], percent),
               (lambda r: r["test"]["macro_f1"], percent)]
    columns += [(lambda r, c=c, s=stat: r["test"]["per_class"][c][s], percent)
                for c, stat in (("S", "f1"), ("V", "f1"), ("S", "se"), ("S", "ppv"), ("V", "se"), ("V", "ppv"))]
    for name, run in runs.items():
        each = seed_runs(run)
        cells = [name, f"{each[0]['parameters']:,}", f"{each[0]['flops_per_example'] / 1e6:.2f}"]
        cells += [_cell([get(r) for r in each], fmt) for get, fmt in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def last_epoch_results(run_dirs: list[Path], monitor: str) -> list[dict[str, Any]]:
    """Finished runs' DS2 test metrics and validation scores at their last epoch (``last.pt`` and
    the last row of ``log.csv``), as if they had been trained with ``select_epoch = "last"``. The
    runs (one model's seeds: the same data) share one task, built once."""
    task, members = load_members([run_dir / "checkpoints" / "last.pt" for run_dir in run_dirs])
    y_true, probabilities = predict_members(task, members)
    results = []
    for run_dir, p in zip(run_dirs, probabilities):
        with open(run_dir / "log.csv", newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        results.append({"test": json_safe(classification_report(y_true, p, task.class_names, task.scored)),
                        "best_epoch": len(rows), "best_val_score": float(rows[-1][f"val_{monitor}"])})
    return results


def build_parser() -> argparse.ArgumentParser:
    """This script's command-line parser (its arguments unchecked beyond their types: :func:`parse_args` checks the
    rest)."""
    parser = script_parser(__doc__)
    add_data_dir(parser, "mitdb/, or mitdb/ itself", "; the embedded sample only when named: datasets/mitdb-sample")
    parser.add_argument("--epochs", type=positive_int, help="epochs per model (default: the main job's, 10)")
    seeds = parser.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=seed_value, help="seed of every run (default: the main job's, 0)")
    add_seeds(seeds, None, "several seeds, each once: runs in <runs>/seed<S>/<model> (the folder --seed S --runs "
                           "<runs>/seed<S> uses), the table's figures their mean ± standard deviation")
    parser.add_argument("--threads", type=thread_count, default=1, help=threads_help(
        1, "the training times of its table comparable from model to model on a shared machine",
        "torch threads of every run"))
    parser.add_argument("--suite", choices=list(SUITES), default="compare",
                        help="compare: four model families; main_ablation: one change at a time from the main "
                             "job; ablation: the same from an older base")
    parser.add_argument("--models", nargs="+", choices=sorted({n for suite in SUITES.values() for n in suite}),
                        help="subset of the suite to train (default: all of it)")
    parser.add_argument("--runs", type=path_flag,
                        help="runs folder, one sub-folder a model (default runs/<suite>, with --seed S "
                             "runs/<suite>/seed<S>: the same command again reuses its finished runs)")
    parser.add_argument("--out", type=path_flag,
                        help="results file (.json), written at the end (default experiments/results/"
                             "<compare_models|main_ablation|ablation>.json, the recorded one: give another path to "
                             "keep it); the results so far in <name>.partial.json beside it")
    parser.add_argument("--json", type=path_flag, help="deprecated: the former name of --out")
    add_set(parser, OWNED, "override a config key for every model, e.g. --set data.val_seed=1")
    parser.add_argument("--checkpoint", choices=("selected", "last"), default="selected",
                        help="test each run's selected epoch (best.pt, as its config selects; default) or its last "
                             "epoch (last.pt: runs trained with select_epoch='best' scored as if trained with 'last')")
    parser.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The arguments, checked, with ``configs`` (seed -> model -> its run's config, every one
    checked before any training); a usage error for anything wrong."""
    parser = build_parser()
    args = parser.parse_args(argv)
    suite = SUITES[args.suite]
    args.models = args.models or list(suite)
    unknown = [name for name in args.models if name not in suite]
    if unknown:
        parser.error(f"--models {', '.join(unknown)}: not in suite {args.suite!r} (it has {', '.join(suite)})")
    if args.json is not None:
        if args.out is not None:
            parser.error("give the results file with --out alone (--json is its former name; the runs folder, which "
                         "--out named before 2026-12-07, is --runs)")
        warnings.warn("--json is the former name of --out (the results file): give --out; the runs folder is --runs")
        args.out = args.json
    if args.out is not None and (Path(args.out).is_dir() or Path(args.out).suffix != ".json"):
        parser.error(f"--out {args.out}: --out is the results file now, a .json file (it named the runs folder before "
                     "2026-12-07): give the runs folder with --runs, and --out a .json path or nothing")
    args.out = output_or_exit(parser, args.out or RESULTS[args.suite], partial=True)
    # one folder a seed, as --seeds lays them out: a single --seed S reuses <runs>/seed<S> of an earlier --seeds
    args.runs = Path(args.runs or Path("runs") / args.suite / ("" if args.seed is None else f"seed{args.seed}"))
    db_dir = database_or_exit(parser, "mitdb", args.data_dir)
    common: dict[str, Any] = {"threads": args.threads, "data.data_dir": str(db_dir)}
    if args.epochs is not None:
        common["epochs"] = args.epochs
    given = overrides_or_exit(parser, args.set, OWNED)
    # every run's config, checked before the first trains
    seeds = args.seeds or [args.seed]  # [None]: the config's own seed
    args.configs = {seed: {name: config_or_exit(parser, BASE_CONFIGS[args.suite],
                                                {**suite[name][1], **given, **common,
                                                 **({} if seed is None else {"seed": seed})},
                                                load=suite_config, run_dir=run_folder(args, seed, name))
                           for name in args.models} for seed in seeds}
    return args


def run_folder(args: argparse.Namespace, seed: int | None, name: str) -> Path:
    """Model ``name``'s run folder: ``<runs>/<name>``, or ``<runs>/seed<S>/<name>`` with ``--seeds``."""
    return (args.runs / f"seed{seed}" if args.seeds else args.runs) / name


def main(argv: list[str] | None = None) -> dict[str, Any]:
    started = time.time()
    args = parse_args(argv)
    if args.threads:  # the evaluations too: train gives the caller's thread count back when it returns
        torch.set_num_threads(args.threads)
    runs, suite, base, configs = args.runs, SUITES[args.suite], BASE_CONFIGS[args.suite], args.configs
    seeds = list(configs)
    first = configs[seeds[0]]
    db_dir = first[args.models[0]].data["data_dir"]  # the database every run reads (parse_args checked it)
    data = [data_digest_or_error(db_dir)]  # hashed once, not after every run
    profiles = {name: profile(cfg) for name, cfg in first.items()}  # the seed changes neither
    used_seeds = [c[args.models[0]].seed for c in configs.values()]
    report: dict[str, Any] = {
        "suite": args.suite, "base_config": str(base.relative_to(HERE.parent)),
        "epochs": first[args.models[0]].epochs, "seed": used_seeds if args.seeds else used_seeds[0],
        "threads": args.threads, "checkpoint": args.checkpoint,
        "load_average_start": load_average(), "runs_folder": str(runs), "runs": {},
    }
    for seed, seed_configs in configs.items():
        for name, cfg in seed_configs.items():
            run_dir = run_folder(args, seed, name)
            run = recorded_run(cfg, run_dir, quiet=args.quiet)
            result, seconds = run.metrics, run.epoch_seconds
            report["splits"] = result["splits"]  # the same for every model and seed: same config keys
            if args.checkpoint == "last":  # scored below, once every seed of the model has trained
                result = result | {"test": None, "best_epoch": None, "best_val_score": None}
            record = {
                "description": suite[name][0], "model": cfg.model, "model_kwargs": cfg.model_kwargs,
                "representation": cfg.data.get("representation", "signal"), "run_dir": str(run_dir), **profiles[name],
                "epochs_run": len(seconds), "best_epoch": result["best_epoch"],
                "best_val_score": result["best_val_score"], "train_seconds": sum(seconds),
                "seconds_per_epoch": sum(seconds) / len(seconds),
                "wall_seconds": None if run.reused else run.wall_seconds, **run.record, "test": result["test"],
            }
            if args.seeds:
                report["runs"].setdefault(name, {"seeds": {}})["seeds"][str(seed)] = record
            else:
                report["runs"][name] = record
            report["load_average_end"] = load_average()
            report["provenance"] = provenance(__file__, argv, started, data)
            write_text(partial_path(args.out), json.dumps(json_safe(report), indent=2) + "\n")
    warn_other_code([record for run in report["runs"].values() for record in seed_runs(run)])
    if args.checkpoint == "last":  # the last epoch's weights, whichever epoch the runs selected
        for name in args.models:
            runs = report["runs"][name]
            records = [runs["seeds"][str(seed)] for seed in seeds] if args.seeds else [runs]
            scored = last_epoch_results([Path(record["run_dir"]) for record in records], first[name].monitor)
            for record, last in zip(records, scored):
                record.update(last)
    splits = report["splits"]
    seed_text = f"seeds {', '.join(map(str, report['seed']))}" if args.seeds else f"seed {report['seed']}"
    ds2 = set(splits["test_records"]) == set(DS2)
    split = "inter-patient, DS1 -> DS2" if ds2 else "split by record (the config's records)"
    print(f"\nMIT-BIH {split}: {splits['database']}; {len(splits['train_records'])} training records, "
          f"validation {', '.join(splits['val_records'])}, {len(splits['test_records'])} test records "
          f"({sum(splits['test_beats'].values())} beats); {report['epochs']} epochs, {seed_text}, "
          f"{args.threads} thread(s); load average {report['load_average_start']} -> {report['load_average_end']}")
    report["table_markdown"] = comparison_table(report["runs"])
    report["provenance"] = provenance(__file__, argv, started, data)
    print(report["table_markdown"])
    tested = "DS2 beats" if ds2 else f"the beats of the {len(splits['test_records'])} test records"
    print(f"test metrics in % of {tested}; '-' = undefined (Se: no beats of the class; +P: class never predicted; "
          "F1: both)" + ("; mean ± standard deviation over the seeds" if args.seeds else ""))
    print(f"run folders in {runs}")
    write_result(args.out, json.dumps(json_safe(report), indent=2) + "\n")
    partial_path(args.out).unlink(missing_ok=True)
    return report


if __name__ == "__main__":
    with as_program(RUNS_INTERRUPTED):
        main()
