"""The ``msresnet1d`` command: train, evaluate, predict, export, info, download.

``msresnet1d train`` with no arguments is the main job: MIT-BIH inter-patient beat
classification (DS1 -> DS2) with the multi-scale beat model, on the full database when it is
found ($MSRESNET1D_DATA/mitdb, datasets/mitdb or the download folder) and, when
$MSRESNET1D_DATA is unset, on the embedded sample otherwise.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

from . import __version__, arguments
from .arguments import (LEADS_TAKE_ALL, QUIET_HELP, THREADS_HELP, path_flag, positive_seconds, resolve_config,
                        seed_value, thread_count)
from .training.config import TTA_MODES, load_config, parse_overrides
from .values import ANNOTATOR_RULE, is_annotator


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


MAIN_JOB = "mitdb_beats"


def _train_config_path(name: str | None) -> Path:
    """``--config``, else the main job's file. An installed package (no experiments/configs) has
    no main job to train: refused, rather than training the built-in defaults (all 8 RR
    features, no head MLP or modality dropout) in a folder named as the main job."""
    if name is None and (arguments.CONFIG_DIR is None or not (arguments.CONFIG_DIR / f"{MAIN_JOB}.toml").is_file()):
        raise SystemExit(f"error: msresnet1d train without --config trains the main job, whose config "
                         f"experiments/configs/{MAIN_JOB}.toml is in the repository, which an installed package does "
                         "not ship: clone the repository and pip install -e . there (the quick start), or give "
                         "--config <file> (a copy of it, say)")
    return resolve_config(name or MAIN_JOB)


def _resume_hint(run_dir: Path, before: str = "", after: str = "") -> str | None:
    """Where a stopped run's last completed epoch is and the command that continues it, with
    ``before`` and ``after`` beside the command; None when the run saved no checkpoint."""
    last = run_dir / "checkpoints" / "last.pt"
    if not last.is_file():
        return None
    return (f"the last completed epoch is in {last} ({before}continue with msresnet1d train --out {run_dir} "
            f"--resume{after})")


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from .training.distributed import launched_rank
    from .training.run import train

    if args.resume and not args.out:
        raise SystemExit("error: --resume needs --out (the run folder to continue)")
    # --resume without --config continues the run with its own config (flags on top, checked by the resume)
    if args.resume and args.config is None:
        config_path = Path(args.out) / "config.json"
        if not config_path.is_file():
            raise SystemExit(f"error: --resume: {config_path} not found, so {args.out} holds no run to continue "
                             "(start one there with --config, or without --resume)")
    else:
        config_path = _train_config_path(args.config)
    cfg = load_config(config_path, _overrides(args), check=True)
    if not args.out and not arguments.folder_name(cfg.name):
        raise SystemExit(f"error: run name {cfg.name!r} must be one folder name for runs/<name>/<time> "
                         f"({arguments.FOLDER_NAME_RULE}): give another --name, or the run folder with --out")
    run_dir = Path(args.out) if args.out else Path("runs") / cfg.name / time.strftime("%Y%m%d-%H%M%S")
    start = time.perf_counter()
    try:
        with arguments.sigterm_interrupts():  # a scheduler's or docker's stop ends a run as Ctrl-C does
            train(cfg, run_dir, resume=args.resume, quiet=args.quiet)
    except KeyboardInterrupt as stop:
        if launched_rank() == 0:  # under torchrun, rank 0 alone: the others may be stopped because one rank failed
            hint = _resume_hint(run_dir)
            print(f"interrupted: {hint}" if hint else
                  f"interrupted before the first epoch finished: no checkpoint was saved in {run_dir}", file=sys.stderr)
        return arguments.interrupted_status(stop)
    except torch.cuda.OutOfMemoryError as e:  # torch.OutOfMemoryError since torch 2.5, a RuntimeError
        smaller = "--set eval_batch_size=<smaller> if validation or the test ran out"
        if launched_rank() != 0:  # under torchrun the rank that ran out says so; rank 0 alone how to go on
            print(f"error: rank {launched_rank()}: out of GPU memory ({e})", file=sys.stderr)
            return 1
        hint = _resume_hint(run_dir, after=f", adding {smaller}")
        print(f"error: out of GPU memory ({e})\n"
              + (f"{hint}; a training step that ran out needs a smaller --batch-size, in a new run (another --out)"
                 if hint else f"before the first epoch finished, so no checkpoint was saved in {run_dir}: train "
                 f"again with a smaller --batch-size, or {smaller}"), file=sys.stderr)
        return 1
    except OSError as e:  # a full disk (Python's ENOSPC, or torch's writer, which has no errno): say how to go on
        from .training.checkpoint import DISK_FULL_HINT

        if e.errno == errno.ENOSPC or DISK_FULL_HINT in str(e):  # only then ask for last.pt: under a run folder
            hint = _resume_hint(run_dir, before="once there is room, ")  # whose name is too long, that raises again
            if hint:
                raise OSError(f"{e}; {hint}") from e
        raise
    if not args.quiet and launched_rank() == 0:
        print(f"wall time: {time.perf_counter() - start:.0f} s")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import torch

    from .data.locate import is_embedded_sample
    from .training.checkpoint import load_checkpoint
    from .training.ensemble import ensemble_predict
    from .training.metrics import (classification_report, format_per_group, format_record_interval, format_report,
                                   json_safe, per_group, record_interval)

    if args.threads:
        torch.set_num_threads(args.threads)
    first_task = load_checkpoint(args.checkpoint[0])["config"]["task"] if args.per_record or args.adapt_bn else None
    if args.per_record and first_task != "beats":
        raise SystemExit("error: --per-record: only beat models have several examples of each record")
    if args.adapt_bn and first_task != "beats":  # refused before the data loads
        raise SystemExit(f"error: --adapt-bn adapts BatchNorm to each record's several examples, for beat models; "
                         f"{args.checkpoint[0]} is a {first_task!r} model, "
                         + ("of images without records" if first_task == "fashion_mnist" else "one example a record")
                         + (" (for one CinC record, msresnet1d predict --adapt-bn adapts to its windows)"
                            if first_task == "rhythm" else ""))
    if args.json:
        args.json = _json_target(args.json, args.checkpoint)
    task, y_true, probabilities = ensemble_predict(args.checkpoint, args.split, args.data_dir, args.tta,
                                                   args.adapt_bn)
    report = classification_report(y_true, probabilities, task.class_names, task.scored)
    what = args.checkpoint[0] if len(args.checkpoint) == 1 else (
        f"ensemble of {len(args.checkpoint)} checkpoints (mean probabilities)")
    how = [f"tta {args.tta}"] * bool(args.tta) + ["BatchNorm adapted to each record"] * args.adapt_bn
    database = task.splits.get("database")
    sample = (" (the embedded sample, not the full database)" if database and is_embedded_sample(database, "mitdb")
              else "")
    print(format_report(report, f"{what} on the {args.split} split ({len(y_true)} examples"
                                + "".join(f", {h}" for h in how) + "):"
                                + (f"\ndata: {database}{sample}" if database else "")))
    report["evaluated"] = {"checkpoints": [str(Path(c).resolve()) for c in args.checkpoint], "split": args.split,
                           "tta": args.tta, "adapt_bn": args.adapt_bn, "database": database}
    if args.per_record:
        report["per_record"] = per_group(y_true, probabilities.argmax(axis=1), task.groups[args.split],
                                         task.class_names)
        print(format_per_group(report["per_record"], task.class_names, "\nper record (Se % (beats) of each class):"))
        report["record_interval"] = record_interval(y_true, probabilities.argmax(axis=1), task.groups[args.split],
                                                    task.class_names)
        print(format_record_interval(report["record_interval"], task.scored, f"the {args.split} figures"))
    if args.json:
        from .atomic import write_text

        write_text(args.json, json.dumps(json_safe(report), indent=2) + "\n")
    return 0


def _json_target(path: str, checkpoints: Sequence[str]) -> Path:
    """``evaluate --json``'s file, checked before the evaluation: writable, and none of the files
    it reads or that its runs need (:func:`_check_not_kept`)."""
    from .atomic import check_target

    target = check_target(path, "--json")
    _check_not_kept(target, f"--json {path}", checkpoints, "this evaluation")
    return target


def _check_not_kept(target: Path, what: str, checkpoints: Sequence[str], reader: str) -> None:
    """Refuse ``target`` (``what`` names it) if it is a file that ``reader`` reads or that its runs
    need: each of ``checkpoints``, and in a run folder (``<run>/checkpoints/x.pt``) the run's own
    files, :data:`~msresnet1d.training.engine.RUN_FILES` and its lock, and checkpoints (files
    ``torch.save`` wrote: a TorchScript file exported there may be written again)."""
    from .training.checkpoint import is_torch_save_file
    from .training.engine import RUN_FILES, RUN_LOCK

    if target.exists():
        for checkpoint in map(Path, checkpoints):
            kept = [checkpoint]
            if checkpoint.parent.name == "checkpoints":
                run = checkpoint.parent.parent
                kept += [run / name for name in (*RUN_FILES, RUN_LOCK)]
                kept += [path for path in checkpoint.parent.glob("*.pt") if is_torch_save_file(path)]
            for file in kept:
                if file.exists() and target.samefile(file):
                    raise ValueError(f"{what} would overwrite {file}, which {reader} reads or its run needs: give "
                                     "another file")


def cmd_info(args: argparse.Namespace) -> int:
    import torch

    from . import __version__
    from .data import DataError, find_database
    from .data.locate import expected_checksums, is_embedded_sample
    from .models import count_flops, count_parameters, create_model, list_models

    print(f"msresnet1d {__version__}, torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")
    print(f"\n{'model':<18}{'dims':>5}{'classes':>8}{'params':>13}{'MFLOPs':>10}{'min. input':>12}  "
          "(1 channel, the default classes; MFLOPs of 1D models per 1,000 samples, of 2D ones at 224x224)")
    for name in list_models():
        with torch.random.fork_rng(devices=[]):  # the weights' random numbers: the caller's generator stays
            model = create_model(name, in_channels=1)  # on the CPU (the meta device would import torch._dynamo)
        shape = (1, 1, 1000) if model.dims == 1 else (1, 1, 224, 224)
        print(f"{name:<18}{model.dims:>5}{model.num_classes:>8}{count_parameters(model):>13,}"
              f"{count_flops(model, shape) / 1e6:>10,.1f}{model.min_input_size:>12}")
    print("\ndatasets:")
    for name in ("mitdb", "cinc2017"):
        with warnings.catch_warnings(record=True):  # the fallback's warning: the note says it
            warnings.simplefilter("always")
            try:
                where = str(find_database(name))
            except DataError as e:
                where = f"not found ({str(e).splitlines()[0]})"
        notes = ["embedded sample"] if is_embedded_sample(where, name) else []
        if name == "mitdb" and not notes and not where.startswith("not found"):
            expected = expected_checksums("mitdb")  # by its files: a copied RECORDS lists all 48 anyway
            records = {file.split(".")[0] for file in expected}
            missing = {file.split(".")[0] for file in expected if not (Path(where) / file).is_file()}
            if missing:  # a partial copy: train would stop at the first record it lacks
                notes.append(f"{len(records) - len(missing)} of its {len(records)} records; missing "
                             f"{', '.join(sorted(missing)[:5])}{', ...' if len(missing) > 5 else ''}")
        if name == "mitdb" and (notes or where.startswith("not found")):
            notes.append("msresnet1d download mitdb fetches the full database")
        print(f"  {name:<14}{where}" + (f" ({'; '.join(notes)})" if notes else ""))
    from .data.fashion_mnist import split_dir

    train, test = split_dir("train"), split_dir("test")
    if train is None:
        found = "not found (msresnet1d download fashion-mnist fetches it)"
    elif train == test:
        found = str(train)
    else:
        found = f"train {train}, test {test or 'not found'}"
    print(f"  {'fashion-mnist':<14}{found}")
    return 0


DOWNLOADABLE = ("mitdb", "fashion-mnist")


def cmd_download(args: argparse.Namespace) -> int:
    """Fetch MIT-BIH (wfdb's downloader, PhysioNet's SHA-256 checked) or Fashion-MNIST (its mirrors,
    the official MD5s checked) into ``<root>/<name>``: ``--data-dir``, else where ``train`` looks
    without flags. A copy already there is checked instead; then says whether ``train`` finds it."""
    from .data.locate import DATA_ENV, env_path

    root = args.data_dir or env_path(DATA_ENV)
    fetch = _download_mitdb if args.name == "mitdb" else _download_fashion_mnist
    folder, found = fetch(Path(root) if root else None, bool(args.data_dir), args.timeout)
    if found is not None and Path(found).resolve() == folder.resolve():
        print("msresnet1d train finds it there without --data-dir")
    else:
        where = f"finds {found} first" if found is not None else "does not look there by itself"
        print(f"msresnet1d train {where}: pass --data-dir {folder.parent} (or set MSRESNET1D_DATA={folder.parent})")
    return 0


def _download_mitdb(root: Path | None, given: bool, timeout: float) -> tuple[Path, Path | None]:
    """``download mitdb``: the folder it is in, and the one ``train`` finds without flags (or None)."""
    from .data import DataError, find_database
    from .data.locate import data_home, download_database, expected_checksums, holds_records, verify_checksums

    folder = (root or data_home()) / "mitdb"
    if given and holds_records(root):  # --data-dir names the database folder itself, as train allows
        folder = root
    expected = expected_checksums("mitdb")
    if folder.is_dir() and any(folder.iterdir()):  # a copy, or part of one: checked, never added to
        try:
            verify_checksums(folder, expected)
        except DataError as e:
            raise DataError(f"{e}; to download it again, move {folder} away first") from None
        print(f"mitdb is already in {folder}: its {len(expected)} files match PhysioNet's SHA-256")
    else:
        download_database("mitdb", folder, timeout_s=timeout)
        print(f"mitdb downloaded into {folder}: {len(expected)} files, each matching PhysioNet's SHA-256")
    with warnings.catch_warnings():  # the embedded sample's warning: the caller's line says it
        warnings.simplefilter("ignore")
        try:
            return folder, find_database("mitdb")
        except DataError:
            return folder, None


def _download_fashion_mnist(root: Path | None, given: bool, timeout: float) -> tuple[Path, Path | None]:
    """``download fashion-mnist``: the folder it is in, and the one ``train`` finds without flags (or None)."""
    from .data.fashion_mnist import (DownloadError, default_download_dir, download_fashion_mnist, load_fashion_mnist,
                                     present_files, split_dir)

    folder = root / "fashion-mnist" if root else default_download_dir()
    # --data-dir names the files' folder itself when it holds any of them (one deleted to be fetched again, say)
    if given and present_files(root):
        folder = root
    try:
        download_fashion_mnist(folder, timeout_s=timeout)
    except DownloadError as e:
        raise DownloadError(f"{e}\nSupply the files by hand: put the four .gz files of "
                            f"https://github.com/zalandoresearch/fashion-mnist in {folder}") from e
    for split in ("train", "test"):
        load_fashion_mnist(folder, split)  # each file's MD5, also of files that were there
    print(f"fashion-mnist is in {folder}: its 4 files match the official MD5s")
    return folder, split_dir("train")


def _add_train_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=path_flag,
                   help="TOML config: a path or a name in experiments/configs (default: the main job; with --resume, "
                        "the run folder's config.json)")
    p.add_argument("--out", type=path_flag, help="run folder (default runs/<name>/<timestamp>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint, with its config (flags that change it "
                        "are refused)")
    p.add_argument("--data-dir", type=path_flag,
                   help="database folder, or a folder holding it (mitdb/, cinc2017/, fashion-mnist/; sets "
                        "data.data_dir)")
    p.add_argument("--model", help="registered model name (msresnet1d info lists them)")
    p.add_argument("--epochs", type=int, help="training epochs (default: the config's)")
    p.add_argument("--batch-size", type=int, help="examples per training step (default: the config's)")
    p.add_argument("--lr", type=float, help="peak learning rate (default: the config's)")
    p.add_argument("--seed", type=seed_value,
                   help="seed of the initialisation, shuffling and augmentation (default: the config's)")
    p.add_argument("--device", help="cpu, cuda, cuda:N or auto (default: the config's device)")
    p.add_argument("--threads", type=thread_count,
                   help="torch threads (default: the config's threads; 0: PyTorch's default; on a shared machine, 1)")
    p.add_argument("--name", help="run name (default: the config's name), the folder under runs/ without --out")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast of the training steps")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override any config key, e.g. --set weight_decay=0.05 --set model_kwargs.fusion=attention (a "
                        "table value, model_kwargs={...}, replaces the config's table; dotted keys and --data-dir "
                        "then set entries on top of it)")
    p.add_argument("--quiet", action="store_true", help=QUIET_HELP)


#: File endings ``msresnet1d export`` takes the format from.
EXPORT_SUFFIXES = {".onnx": "onnx", ".pt": "torchscript", ".pth": "torchscript", ".ts": "torchscript", ".pt2": "pt2"}


def cmd_export(args: argparse.Namespace) -> int:
    """``export``: a checkpoint's model, with its test-time augmentation, as an ONNX, TorchScript or
    ``torch.export`` (.pt2) file carrying :func:`~msresnet1d.export.checkpoint_metadata`."""
    from .export import checkpoint_metadata, export_onnx, export_program, export_torchscript, program_min_length
    from .models.tta import with_tta
    from .training.checkpoint import is_torch_save_file, load_checkpoint
    from .training.configured import checkpoint_config
    from .training.run import checkpoint_model
    from .training.tasks import trained_length

    kind = args.format or EXPORT_SUFFIXES.get(Path(args.output).suffix.lower())
    if kind is None:
        raise ValueError(f"{args.output}: give --format onnx, torchscript or pt2 (or a file ending in "
                         f"{', '.join(EXPORT_SUFFIXES)})")
    if args.opset is not None and kind != "onnx":
        raise ValueError(f"--opset is an ONNX option; {args.output} is a {kind} file")
    output = Path(args.output)  # path_flag expanded a leading ~
    if output.is_file() and is_torch_save_file(output):  # the checkpoint exported, too
        raise ValueError(f"{args.output} is a checkpoint (torch.save's): the export would replace it; give another "
                         "file (a TorchScript file ends in .pt too)")
    _check_not_kept(output, f"export to {args.output}", [args.checkpoint], "this export")
    ckpt = load_checkpoint(args.checkpoint)
    source = f"checkpoint {args.checkpoint}"
    cfg = checkpoint_config(ckpt, source)  # defaults too
    model = with_tta(checkpoint_model(ckpt, source, cfg), cfg.tta)
    metadata = checkpoint_metadata(ckpt)
    if kind == "onnx":
        path = export_onnx(model, args.output, metadata=metadata, **({} if args.opset is None else {"opset": args.opset}))
    elif kind == "pt2":
        path = export_program(model, args.output, metadata=metadata)
    else:
        path = export_torchscript(model, args.output, metadata=metadata)
    extra = f" and extra (N, {model.extra_features})" if model.extra_features else ""
    print(f"exported {args.checkpoint} to {path} ({kind}): inputs signal (N, {model.in_channels}, L) at "
          f"{cfg.data['fs']:g} Hz, L = {trained_length(cfg)} as in training (any L >= "
          f"{program_min_length(model) if kind == 'pt2' else model.min_input_size} runs)"
          f"{extra}, outputs (N, {len(ckpt['class_names'])}) "
          + ("logits" if cfg.tta == "none" else f"log-probabilities (tta {cfg.tta!r}: the log of the mean softmax of "
             "the input and its sign-inverted copy)")
          + f" of {', '.join(ckpt['class_names'])}; the file's "
          "metadata holds the config and training statistics its inputs are prepared with")
    return 0


def annotation_extension(value: str) -> str:
    """``--extension``: WFDB annotation file extensions are ASCII letters only, and not ``hea``."""
    if not re.fullmatch("[A-Za-z]+", value):
        raise argparse.ArgumentTypeError(f"{value!r}: a WFDB annotation extension is ASCII letters only, e.g. pred")
    if value.lower() == "hea":
        raise argparse.ArgumentTypeError("'hea' is the extension of a record's header file: choose another, e.g. pred")
    return value


def annotator_extension(value: str) -> str:
    """``--annotator``: the extension of an annotation file to read (as ``data.annotator``)."""
    if not is_annotator(value):
        raise argparse.ArgumentTypeError(f"{value!r}: an annotator is {ANNOTATOR_RULE}")
    return value


def _add_predict_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="label WFDB records: per-beat or per-window labels, CSV + WFDB annotations",
                       missing_hints={"record": ("--leads", LEADS_TAKE_ALL)})
    p.add_argument("checkpoint", help="a checkpoint file written by msresnet1d train (best.pt or last.pt)")
    p.add_argument("record", nargs="+", help="WFDB record paths, e.g. data/mitdb/100 (or data/mitdb/100.hea); "
                                            "several, e.g. data/mitdb/*.hea: one that fails is named, the others "
                                            "are labelled")
    beats = p.add_mutually_exclusive_group()
    beats.add_argument("--annotator", type=annotator_extension,
                       help="extension of the annotation file with the beat positions (beat models; default: the "
                            "checkpoint's [data] annotator, which is atr unless the model was trained on another, e.g. "
                            "ann for <record>.ann)")
    beats.add_argument("--detect", action="store_true", help="find beats with wfdb's XQRS detector instead")
    p.add_argument("--out-dir", type=path_flag, help="where to write (default: next to the record)")
    p.add_argument("--adapt-bn", action="store_true",
                   help="re-estimate the BatchNorm statistics on this record's own inputs first (AdaBN, as evaluate "
                        "--adapt-bn does per test record): for a recording from another device or gain")
    p.add_argument("--leads", nargs="+", metavar="NAME",
                   help="the record's names of the leads the model reads, in the order of the checkpoint's data.leads "
                        "(e.g. --leads II for a model trained on MLII; '' for a lead without a description; a rhythm "
                        "model: the one lead to read)")
    p.add_argument("--summary", type=path_flag, metavar="CSV",
                   help="also write one row a record labelled to this CSV file: a rhythm model's record label "
                        "and mean window probabilities (CinC 2017's answer), a beat model's count of each class")
    p.add_argument("--threads", type=thread_count, help=THREADS_HELP)
    p.add_argument("--extension", default="pred", type=annotation_extension,
                   help="annotation file extension, letters only (default pred)")
    p.set_defaults(func=_cmd_predict)


def _cmd_predict(args: argparse.Namespace) -> int:
    from .predict import cmd_predict  # wfdb, the inference and training code: imported to run, not to parse

    return cmd_predict(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="msresnet1d", description=__doc__.splitlines()[0].replace("``", ""))
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    parser.add_argument("--version", action="version", version=f"msresnet1d {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=arguments.HintedParser)
    p = sub.add_parser("train", help="train a model (no arguments: the MIT-BIH main job)")
    _add_train_flags(p)
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("evaluate", help="evaluate a checkpoint, or several as an ensemble, on the test (or val) split")
    p.add_argument("checkpoint", nargs="+",
                   help="one checkpoint, or several of one task and data: their mean probabilities")
    p.add_argument("--split", default="test", choices=("test", "val"),
                   help="the checkpoint config's test split (default) or its validation split")
    p.add_argument("--data-dir", type=path_flag,
                   help="database folder, or a folder holding it (default: the checkpoint config's data_dir if it "
                        "names one, else found as train finds it, $MSRESNET1D_DATA included)")
    p.add_argument("--tta", choices=TTA_MODES,
                   help="test-time augmentation: 'flip' averages the probabilities of x and -x "
                        "(default: the checkpoint's config)")
    p.add_argument("--adapt-bn", action="store_true",
                   help="re-estimate the BatchNorm statistics on each record's own beats before predicting it "
                        "(test-time adaptation to the patient, labels unread; beat tasks)")
    p.add_argument("--json", type=path_flag, help="also write the metrics to this JSON file")
    p.add_argument("--per-record", action="store_true", help="also each record's accuracy and Se of every class, "
                                                             "and 95%% intervals of the figures over the records "
                                                             "(drawn with replacement; beat models)")
    p.add_argument("--threads", type=thread_count, help=THREADS_HELP)
    p.set_defaults(func=cmd_evaluate)
    p = sub.add_parser("info", help="models, parameters and the datasets found")
    p.set_defaults(func=cmd_info)
    p = sub.add_parser("download", help="fetch MIT-BIH from PhysioNet or Fashion-MNIST from its mirrors, verified "
                                         "by checksum")
    p.add_argument("name", choices=DOWNLOADABLE,
                   help="the data set (CinC 2017 is a zip file to supply by hand: see docs/data.md in the repository)")
    p.add_argument("--data-dir", type=path_flag,
                   help="the folder to hold <name>/ (default: $MSRESNET1D_DATA if set, else for mitdb the download "
                        "folder, datasets/downloads/ or ~/.cache/msresnet1d/data/, and for fashion-mnist datasets/, or "
                        "~/.cache/msresnet1d/data/ in an installed package)")
    p.add_argument("--timeout", type=positive_seconds, default=60.0,
                   help="seconds a stalled connection is waited for (default 60); then an MIT-BIH download fails, "
                        "and a Fashion-MNIST one tries its next mirror")
    p.set_defaults(func=cmd_download)
    p = sub.add_parser("export", help="a checkpoint's 1D model as an ONNX, TorchScript or torch.export file, with its "
                                       "classes, config and training statistics as the file's metadata")
    p.add_argument("checkpoint", help="a checkpoint of msresnet1d train (best.pt or last.pt)")
    p.add_argument("output", type=path_flag, help="the file to write: .onnx, .pt / .pth / .ts for TorchScript, or .pt2 "
                                                  "for torch.export")
    p.add_argument("--format", choices=("onnx", "torchscript", "pt2"), help="default: from the output's ending")
    p.add_argument("--opset", type=int, help="ONNX opset (default 17)")
    p.set_defaults(func=cmd_export)
    _add_predict_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The ``msresnet1d`` command on ``argv`` (default: the program's arguments); returns its exit
    status. Run as the program (no ``argv``), it prints each warning once, as one line (under
    torchrun, rank 0 alone: every rank reads the same data), as the experiment scripts do
    (:func:`~msresnet1d.arguments.as_program`). Called from Python (``argv`` given), it
    leaves the caller's logging (the root logger's handlers and level) and torch's thread count
    (``--threads``; when torch was imported before the call) as they were."""
    if argv is None:
        with arguments.as_program():
            return _run(sys.argv[1:])
    handlers, level = logging.root.handlers[:], logging.root.level
    torch = sys.modules.get("torch")  # imported by the command if needed: --help and --version import none
    threads = torch.get_num_threads() if torch is not None else None
    try:
        return _run(argv)
    finally:
        logging.root.handlers[:] = handlers
        logging.root.setLevel(level)
        if torch is not None:
            torch.set_num_threads(threads)


class _LogFormatter(logging.Formatter):
    """Warnings and errors logged as the command prints the others (``warning: ...``, as
    :func:`~msresnet1d.arguments.as_program` shows Python's), with the logger's name when it is
    another library's (``warning: wfdb.io: ...``); ``-v``'s INFO lines with their
    logger's name."""

    def format(self, record: logging.LogRecord) -> str:
        if record.levelno >= logging.WARNING:
            ours = record.name.partition(".")[0] in ("msresnet1d", "root")
            return f"{record.levelname.lower()}: {'' if ours else record.name + ': '}{record.getMessage()}"
        return super().format(record)


def _run(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    from .training.distributed import launched_rank  # after parsing: --help and --version import no torch
    from .training.engine import TrainingError

    level = logging.INFO if args.verbose else logging.WARNING
    handler = logging.StreamHandler()
    handler.setFormatter(_LogFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level if launched_rank() == 0 else max(level, logging.ERROR),  # warned once, by rank 0
                        handlers=[handler])
    if args.command is None:
        build_parser().print_help()
        return 2
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError, OSError, TrainingError) as e:
        if isinstance(e, BrokenPipeError) and arguments.stdout_reader_gone():
            raise  # stdout's reader stopped (| head): not the command's error (run as the program: exit 141)
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as stop:  # SIGTERM too, run as the program (as_program)
        print("interrupted", file=sys.stderr)
        return arguments.interrupted_status(stop)


if __name__ == "__main__":
    sys.exit(main())
