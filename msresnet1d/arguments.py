"""Command-line arguments that the ``msresnet1d`` command and the experiment scripts share: config
files by name, seeds, thread counts, ``--set`` overrides, database folders, and the errors
they give through ``parser.error``; and how they print warnings and output run as programs."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, NoReturn

from .data.locate import source_checkout
from .training.config import TrainConfig, load_config, parse_overrides

#: What ``predict``'s errors say of ``--leads``, which takes every name after it (argparse's ``nargs="+"``).
LEADS_TAKE_ALL = ("--leads takes every name after it, records too: give the records before --leads, or end its "
                  "names with --, e.g. predict best.pt --leads II -- data/mitdb/100")

#: The repository's experiment configs (None in an installed package, which does not ship them).
CONFIG_DIR = None if (_checkout := source_checkout()) is None else _checkout / "experiments" / "configs"


def resolve_config(name: str | None) -> Path | None:
    """A path, or the name of a file in experiments/configs (with or without .toml)."""
    if name is None:
        return None
    path = Path(name)
    if path.is_file():
        return path
    for candidate in (CONFIG_DIR / name, CONFIG_DIR / f"{name}.toml") if CONFIG_DIR is not None else ():
        if candidate.is_file():
            return candidate
    if path.is_dir():
        raise SystemExit(f"error: config {name!r} is a folder; give a config file (.toml, or a run's config.json)")
    if CONFIG_DIR is None or not CONFIG_DIR.is_dir():
        raise SystemExit(f"error: config {name!r} not found: no such file, and the configs named by name are those of "
                         "the repository's experiments/configs/, which an installed package does not ship (clone the "
                         "repository and pip install -e . there, or give the file's path)")
    known = sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))
    raise SystemExit(f"error: config {name!r} not found (a file path, or one of: {', '.join(known) or 'none'})")


@contextlib.contextmanager
def as_program() -> Iterator[None]:
    """What the ``msresnet1d`` command and the experiment scripts do run as programs (their
    ``main(argv)`` called from Python leaves both to Python):

    - each warning is printed once, as one line (``warning: <message>`` on stderr), instead of
      Python's format with its source line for every fold or seed that raises it (under torchrun,
      rank 0 alone: every rank reads the same data); filters (``-W error`` included) apply as
      before;
    - what stdout and stderr cannot encode (a file name that is not UTF-8, say) is printed as
      backslash escapes rather than ending a finished command with an encoding error.
    """
    shown: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None) -> None:  # warnings.showwarning's signature
        from .training.distributed import launched_rank  # here: --help and --version import no torch

        if launched_rank() == 0 and str(message) not in shown:
            shown.add(str(message))
            print(f"warning: {message}", file=file or sys.stderr)

    streams = [(stream, stream.errors) for stream in (sys.stdout, sys.stderr) if hasattr(stream, "reconfigure")]
    for stream, _ in streams:
        stream.reconfigure(errors="backslashreplace")
    try:
        with warnings.catch_warnings():
            warnings.showwarning = show
            yield
    finally:
        for stream, errors in streams:
            stream.reconfigure(errors=errors)


class HintedParser(argparse.ArgumentParser):
    """An ArgumentParser whose "arguments are required" error carries a hint per missing argument
    when a flag that explains it was given (``missing_hints``: the argument's name -> (the flag,
    what to say)), e.g. how an option took the argument."""

    def __init__(self, *args, missing_hints: dict[str, tuple[str, str]] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.missing_hints = missing_hints or {}
        self._given: list[str] = []

    def parse_known_args(self, args=None, namespace=None):  # noqa: ANN001, ANN201 - argparse's signature
        self._given = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        if message.startswith("the following arguments are required:"):
            missing = message.split(":", 1)[1].replace(",", " ").split()
            hints = [hint for name, (flag, hint) in self.missing_hints.items()
                     if name in missing and any(_spells(token, flag) for token in self._given)]
            message = "; ".join([message, *hints])
        super().error(message)


def _spells(token: str, flag: str) -> bool:
    """Whether the command-line word ``token`` gives option ``flag`` with its values after it:
    the flag or an abbreviation argparse accepts (``--lead`` for ``--leads``), without ``=``."""
    return token.startswith("--") and len(token) > 2 and "=" not in token and flag.startswith(token)


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


def output_or_exit(parser: argparse.ArgumentParser, path: str | Path, flag: str = "--out") -> Path:
    """An experiment script's results file ``path`` (``flag`` names it), checked before any run
    trains (:func:`~msresnet1d.atomic.check_target`: not a folder nor write-protected, its folder creatable), or
    ``parser.error`` saying why it could not be written; else the results would be lost at the end."""
    from .atomic import check_target

    try:
        return check_target(path, flag)
    except ValueError as e:
        parser.error(str(e))


def result_or_exit(parser: argparse.ArgumentParser, path: Path, check: Callable[[Any], object],
                   flag: str = "--replot") -> dict:
    """The recorded result (JSON) at ``path`` that ``--replot`` (or another ``flag``) reads again,
    or ``parser.error`` when it cannot be read or ``check(result)`` fails (reading the keys the
    flag needs, it raises KeyError, TypeError...): the file is not a result of this script, or
    one recorded before it held them."""
    import json

    try:
        result = json.loads(Path(path).read_text(encoding="utf-8"))
        check(result)
    except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
        parser.error(f"{flag} {path}: not a result of this script, or one recorded before it held what {flag} "
                     f"reads ({type(e).__name__}: {e})")
    return result


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
        cfg = load(resolve_config(str(config)) if config is not None else None, overrides)
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


THREADS_HELP = "torch threads (0 or unset: PyTorch's default; on a shared machine, 1)"


def path_flag(value: str) -> str:
    """A file or folder flag's value, a leading ``~`` expanded (the shell leaves ``--out=~/runs``
    as it is): not empty (``--config "$CFG"`` with CFG unset would otherwise mean the flag's
    default, e.g. another config)."""
    if not value:
        raise argparse.ArgumentTypeError("empty: give a path (an unset shell variable?), or leave the flag out")
    return os.path.expanduser(value)


def positive_seconds(value: str) -> float:
    """A duration flag: a number of seconds > 0."""
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise argparse.ArgumentTypeError(f"{value!r}: a number of seconds > 0")
    return seconds


def thread_count(value: str) -> int:
    """``--threads``: torch threads, a whole number >= 0 (0: PyTorch's default)."""
    if not re.fullmatch("[0-9]+", value):
        raise argparse.ArgumentTypeError(f"{value!r}: torch threads are a whole number >= 0 (0: PyTorch's default)")
    return int(value)
