"""The ``msresnet1d`` command: train, evaluate, predict, info.

``msresnet1d train`` with no arguments is the main job: MIT-BIH inter-patient beat
classification (DS1 -> DS2) with the multi-scale beat model, on the full database when it is
found ($MSRESNET1D_DATA/mitdb, datasets/mitdb or the download folder) and on the embedded sample
otherwise.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import signal
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

from .models.tta import TTA_MODES
from .training.config import TrainConfig, load_config, parse_overrides
from .training.distributed import launched_rank
from .training.engine import TrainingError

CONFIG_DIR = Path(__file__).resolve().parents[1] / "experiments" / "configs"


def _resolve_config(name: str | None) -> Path | None:
    """A path, or the name of a file in experiments/configs (with or without .toml)."""
    if name is None:
        return None
    path = Path(name)
    if path.is_file():
        return path
    for candidate in (CONFIG_DIR / name, CONFIG_DIR / f"{name}.toml"):
        if candidate.is_file():
            return candidate
    known = sorted(p.stem for p in CONFIG_DIR.glob("*.toml")) if CONFIG_DIR.is_dir() else []
    raise SystemExit(f"error: config {name!r} not found (a file path, or one of: {', '.join(known) or 'none'})")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for flag in ("model", "epochs", "batch_size", "lr", "seed", "device", "threads", "name"):
        if getattr(args, flag, None) is not None:
            values[flag] = getattr(args, flag)
    if getattr(args, "bf16", False):
        values["bf16"] = True
    if getattr(args, "data_dir", None):
        values["data.data_dir"] = args.data_dir
    try:
        settings = parse_overrides(getattr(args, "set", None) or [])
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    for key, value in settings.items():
        if key in values and values[key] != value:
            flag = "--" + ("data-dir" if key == "data.data_dir" else key.replace("_", "-"))
            raise SystemExit(f"error: {flag} {values[key]} and --set {key}={value} disagree: give one")
    return values | settings


# ------------------------------------------------------------- shared by the experiment scripts
def script_parser(doc: str) -> argparse.ArgumentParser:
    """An experiment script's parser, described by the first paragraph of its docstring ``doc``."""
    return argparse.ArgumentParser(description=" ".join(doc.split("\n\n")[0].split()))


def results_help(path: Path) -> str:
    """``--out``'s help for a script whose default output is the recorded result ``path``."""
    return f"results file (default experiments/results/{path.name}, the recorded one: give another path to keep it)"


def _mitdb_headers() -> tuple[str, ...]:
    from .data.locate import expected_checksums

    return tuple(sorted(file for file in expected_checksums("mitdb") if file.endswith(".hea")))


#: database -> (files of which a copy holds at least one, what they are): :func:`database_or_exit`
#: refuses a folder of other WFDB records (the CinC 2017 folder given for MIT-BIH, say) before any work.
DATABASE_MARKERS: dict[str, tuple[Callable[[], tuple[str, ...]], str]] = {
    "mitdb": (_mitdb_headers, "the header of an MIT-BIH record, 100.hea to 234.hea"),
    "cinc2017": (lambda: ("REFERENCE.csv",), "REFERENCE.csv, the CinC 2017 labels"),
}


def database_or_exit(parser: argparse.ArgumentParser, name: str, folder: str | Path | None) -> Path:
    """The database ``name`` in ``folder`` (``--data-dir`` or ``$MSRESNET1D_DATA``: the database
    folder or a folder holding it), or ``parser.error`` saying what is missing: no folder, no
    WFDB records, or records without the database's marker file (:data:`DATABASE_MARKERS`)."""
    from .data import DataError, find_database

    if not folder:
        parser.error(f"give --data-dir or set MSRESNET1D_DATA (the folder holding {name}/, or {name}/ itself)")
    try:
        found = find_database(name, folder)
    except DataError as e:
        parser.error(str(e))
    if name not in DATABASE_MARKERS:
        return found
    markers, what = DATABASE_MARKERS[name]

    def marked(candidate: Path) -> bool:
        return any((candidate / marker).is_file() for marker in markers())

    if not marked(found) and marked(Path(folder) / name):
        found = Path(folder) / name  # stray records beside the database's own folder
    if not marked(found):
        parser.error(f"database '{name}': {found} holds WFDB records but not {what}: not the {name} "
                     f"database; give the folder holding {name}/, or {name}/ itself")
    return found


def overrides_or_exit(parser: argparse.ArgumentParser, items: list[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` items as config overrides (:func:`parse_overrides`), or ``parser.error``."""
    try:
        return parse_overrides(items)
    except ValueError as e:
        parser.error(str(e))


def config_or_exit(parser: argparse.ArgumentParser, config: str | Path | None, overrides: dict[str, Any],
                   load: Callable[[Path | None, dict[str, Any]], TrainConfig] = load_config,
                   run_dir: str | Path | None = None) -> TrainConfig:
    """``load(config, overrides)`` (default :func:`load_config`; ``config`` a path or a name in
    experiments/configs), checked as ``train`` checks it before reading any data
    (:func:`~msresnet1d.training.run.check_config`) and, given ``run_dir``, against the run
    already there (:func:`~msresnet1d.training.run.check_same_run`, which a reuse or resume would
    refuse later); else ``parser.error`` naming the bad key. An experiment script builds every
    run's config with it before the first run trains."""
    from .training.run import check_config, check_same_run

    try:
        cfg = load(_resolve_config(str(config)) if config is not None else None, overrides)
        check_config(cfg)
    except (ValueError, FileNotFoundError) as e:
        parser.error(str(e))
    if run_dir is not None:
        try:
            check_same_run(cfg, run_dir)
        except ValueError as e:
            parser.error(f"{e}: {run_dir} holds a run of another config; give the settings it was made with, "
                         "or another runs folder")
    return cfg


def seed_value(value: str) -> int:
    """``--seed`` / ``--seeds``: a training seed, a whole number from 0 to 2**32 - 1 (NumPy's range)."""
    if not re.fullmatch("[0-9]+", value) or int(value) >= 2**32:
        raise argparse.ArgumentTypeError(f"{value!r}: a seed is a whole number from 0 to 2**32 - 1")
    return int(value)


class _DistinctSeeds(argparse.Action):
    """Stores the seeds, refusing one given twice (it would count twice in a mean over seeds)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        if len(set(values)) != len(values):
            parser.error(f"{option_string}: each seed once, got {list(values)}")
        setattr(namespace, self.dest, list(values))


def add_seeds(parser: Any, default: list[int] | None, help: str) -> None:
    """An experiment script's ``--seeds`` on ``parser`` (or a group of it): one or more distinct
    seeds (:func:`seed_value`), a seed given twice refused with ``parser.error``."""
    parser.add_argument("--seeds", type=seed_value, nargs="+", default=default, action=_DistinctSeeds,
                        metavar="SEED", help=help)


MAIN_JOB = "mitdb_beats"


def _train_config_path(name: str | None) -> Path | None:
    """``--config``, else the main job's file; without experiments/configs (an installed wheel),
    the built-in defaults, with a warning: they differ from the main job (all 8 RR features, no
    head MLP or modality dropout)."""
    if name is not None or (CONFIG_DIR / f"{MAIN_JOB}.toml").is_file():
        return _resolve_config(name or MAIN_JOB)
    print(f"warning: {CONFIG_DIR / MAIN_JOB}.toml not found (not a source checkout); training with the built-in "
          "defaults, which differ from the main job (see its config file in the repository)", file=sys.stderr)
    return None


THREADS_HELP = "torch threads (0 or unset: PyTorch's default; on a shared machine, 1)"


def thread_count(value: str) -> int:
    """``--threads``: torch threads, a whole number >= 0 (0: PyTorch's default)."""
    if not re.fullmatch("[0-9]+", value):
        raise argparse.ArgumentTypeError(f"{value!r}: torch threads are a whole number >= 0 (0: PyTorch's default)")
    return int(value)


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's or ``docker stop``'s), raised where Ctrl-C would raise KeyboardInterrupt."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


def cmd_train(args: argparse.Namespace) -> int:
    from .training.run import train

    if args.resume and not args.out:
        raise SystemExit("error: --resume needs --out (the run folder to continue)")
    # --resume without --config continues the run with its own config (flags on top, checked by the resume)
    config_path = _train_config_path(args.config)
    if args.resume and args.config is None:
        config_path = Path(args.out) / "config.json"
        if not config_path.is_file():
            raise SystemExit(f"error: --resume: {config_path} not found, so {args.out} holds no run to continue "
                             "(start one there with --config, or without --resume)")
    cfg = load_config(config_path, _overrides(args))
    run_dir = Path(args.out) if args.out else Path("runs") / cfg.name / time.strftime("%Y%m%d-%H%M%S")
    start = time.perf_counter()
    # a scheduler's or docker's stop ends a run as Ctrl-C does (signal handlers belong to the main thread)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        train(cfg, run_dir, resume=args.resume, quiet=args.quiet)
    except KeyboardInterrupt as stop:
        last = run_dir / "checkpoints" / "last.pt"
        if last.is_file():
            print(f"interrupted: the last completed epoch is in {last} "
                  f"(continue with msresnet1d train --out {run_dir} --resume)", file=sys.stderr)
        else:
            print(f"interrupted before the first epoch finished: no checkpoint was saved in {run_dir}",
                  file=sys.stderr)
        return 128 + (signal.SIGTERM if isinstance(stop, Terminated) else signal.SIGINT)  # as the shell reports it
    finally:
        if main_thread:  # None: a handler set outside Python, which signal cannot restore
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
    if not args.quiet and launched_rank() == 0:
        print(f"wall time: {time.perf_counter() - start:.0f} s")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import torch

    from .data.locate import is_embedded_sample
    from .training.checkpoint import load_checkpoint
    from .training.ensemble import ensemble_predict
    from .training.metrics import classification_report, format_per_group, format_report, json_safe, per_group

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.per_record and load_checkpoint(args.checkpoint[0])["config"]["task"] != "beats":
        raise SystemExit("error: --per-record: only beat models have several examples of each record")
    task, y_true, probabilities = ensemble_predict(args.checkpoint, args.split, args.data_dir, args.tta,
                                                   args.adapt_bn)
    report = classification_report(y_true, probabilities, task.class_names, task.scored)
    what = args.checkpoint[0] if len(args.checkpoint) == 1 else (
        f"ensemble of {len(args.checkpoint)} checkpoints (mean probabilities)")
    how = [f"tta {args.tta}"] * bool(args.tta) + ["BatchNorm adapted to each record"] * args.adapt_bn
    database = task.splits.get("database")
    sample = " (the embedded sample, not the full database)" if database and is_embedded_sample(database, "mitdb") else ""
    print(format_report(report, f"{what} on the {args.split} split ({len(y_true)} examples"
                                + "".join(f", {h}" for h in how) + "):"
                                + (f"\ndata: {database}{sample}" if database else "")))
    report["evaluated"] = {"checkpoints": [str(Path(c).resolve()) for c in args.checkpoint], "split": args.split,
                           "tta": args.tta, "adapt_bn": args.adapt_bn, "database": database}
    if args.per_record:
        report["per_record"] = per_group(y_true, probabilities.argmax(axis=1), task.groups[args.split],
                                         task.class_names)
        print(format_per_group(report["per_record"], task.class_names, "\nper record (Se % (beats) of each class):"))
    if args.json:
        from .atomic import write_text

        write_text(args.json, json.dumps(json_safe(report), indent=2) + "\n")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import torch

    from . import __version__
    from .data import DataError, find_database
    from .models import count_flops, count_parameters, create_model, list_models

    print(f"msresnet1d {__version__}, torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")
    print(f"\n{'model':<18}{'dims':>5}{'params':>13}{'MFLOPs':>10}{'min. input':>12}  "
          "(1 channel; MFLOPs of 1D models per 1,000 samples, of 2D ones at 224x224)")
    for name in list_models():
        model = create_model(name, in_channels=1)
        shape = (1, 1, 1000) if model.dims == 1 else (1, 1, 224, 224)
        print(f"{name:<18}{model.dims:>5}{count_parameters(model):>13,}{count_flops(model, shape) / 1e6:>10,.1f}"
              f"{model.min_input_size:>12}")
    print("\ndatasets:")
    for name in ("mitdb", "cinc2017"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                where = str(find_database(name))
            except DataError as e:
                where = f"not found ({str(e).splitlines()[0]})"
        note = " (embedded sample)" if caught else ""
        print(f"  {name:<14}{where}{note}")
    from .data.fashion_mnist import split_dir

    train, test = split_dir("train"), split_dir("test")
    if train is None:
        found = "not found"
    elif train == test:
        found = str(train)
    else:
        found = f"train {train}, test {test or 'not found'}"
    print(f"  {'fashion-mnist':<14}{found}")
    return 0


def _add_train_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML config: a path or a name in experiments/configs (default: the main job; "
                                     "with --resume, the run folder's config.json)")
    p.add_argument("--out", help="run folder (default runs/<name>/<timestamp>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint, with its config (flags that change it "
                        "are refused)")
    p.add_argument("--data-dir", help="database folder, or a folder holding it (mitdb/, cinc2017/...; "
                                      "sets data.data_dir)")
    p.add_argument("--model", help="registered model name (msresnet1d info lists them)")
    p.add_argument("--epochs", type=int, help="training epochs (default: the config's)")
    p.add_argument("--batch-size", type=int, help="examples per training step (default: the config's)")
    p.add_argument("--lr", type=float, help="peak learning rate (default: the config's)")
    p.add_argument("--seed", type=int, help="seed of the initialisation, shuffling and augmentation (default: the config's)")
    p.add_argument("--device", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--threads", type=thread_count, help=THREADS_HELP)
    p.add_argument("--name", help="run name")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override any config key, e.g. --set data.fs=360 --set model_kwargs.fusion=attention")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="msresnet1d", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("train", help="train a model (no arguments: the MIT-BIH main job)")
    _add_train_flags(p)
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("evaluate", help="evaluate a checkpoint, or several as an ensemble, on the test (or val) split")
    p.add_argument("checkpoint", nargs="+", help="one checkpoint, or several of one task and data: their mean probabilities")
    p.add_argument("--split", default="test", choices=("test", "val"),
                   help="the checkpoint config's test split (default) or its validation split")
    p.add_argument("--data-dir", help="database folder, or a folder holding it (default: the checkpoint config's "
                                      "data_dir if it names one, else found as train finds it, $MSRESNET1D_DATA "
                                      "included)")
    p.add_argument("--tta", choices=TTA_MODES,
                   help="test-time augmentation: 'flip' averages the probabilities of x and -x "
                        "(default: the checkpoint's config)")
    p.add_argument("--adapt-bn", action="store_true",
                   help="re-estimate the BatchNorm statistics on each record's own beats before predicting it "
                        "(test-time adaptation to the patient, labels unread; beat tasks)")
    p.add_argument("--json", help="also write the metrics to this JSON file")
    p.add_argument("--per-record", action="store_true", help="also each record's accuracy and Se of every class "
                                                             "(beat models)")
    p.add_argument("--threads", type=thread_count, help=THREADS_HELP)
    p.set_defaults(func=cmd_evaluate)
    p = sub.add_parser("info", help="models, parameters and the datasets found")
    p.set_defaults(func=cmd_info)
    from .predict import add_parser as add_predict_parser

    add_predict_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The ``msresnet1d`` command on ``argv`` (default: the program's arguments); returns its exit
    status. Run as the program (no ``argv``), it prints each warning once, as one line (under
    torchrun, rank 0 alone: every rank reads the same data)."""
    if argv is not None:
        return _run(argv)
    shown: set[str] = set()
    main_rank = launched_rank() == 0

    def show(message, category, filename, lineno, file=None, line=None) -> None:  # warnings.showwarning's signature
        if main_rank and str(message) not in shown:
            shown.add(str(message))
            print(f"warning: {message}", file=file or sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        return _run(sys.argv[1:])


def _run(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.command is None:
        build_parser().print_help()
        return 2
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError, OSError, TrainingError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
