"""Command-line arguments that the ``msresnet1d`` command and the experiment scripts share: config
files by name, seeds, thread counts, ``--set`` overrides, database folders, and the errors
they give through ``parser.error``; and how they print warnings, errors, interruptions and the
files they write, run as programs."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import select
import signal
import subprocess
import sys
import threading
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, NoReturn

from .atomic import check_target, file_version, write_text
from .data.locate import DATA_ENV, env_path, source_checkout
from .training.config import TrainConfig, load_config, parse_overrides
from .values import MAX_THREADS

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


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's or ``docker stop``'s), raised where Ctrl-C would raise KeyboardInterrupt."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Within the block, SIGTERM stops the program as Ctrl-C does (:class:`Terminated`, a
    KeyboardInterrupt), so that ``finally`` clauses run (a run folder's lock is released); the
    previous handler is back after it. Only in the main thread, which alone may set handlers."""
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        yield
    finally:
        if main_thread:  # None: a handler set outside Python, which signal cannot restore
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def interrupted_status(stop: KeyboardInterrupt) -> int:
    """The exit status of a program stopped by ``stop``, as the shell reports a signal's: 143 for
    SIGTERM (:class:`Terminated`), 130 for Ctrl-C."""
    return 128 + (signal.SIGTERM if isinstance(stop, Terminated) else signal.SIGINT)


#: What an experiment script that trains runs says when it is stopped (:func:`as_program`'s ``interrupted``).
RUNS_INTERRUPTED = ("interrupted: run the same command again to continue (finished runs are reused, the others "
                    "resume)")


def stdout_reader_gone() -> bool:
    """Whether stdout is a pipe (or socket) whose reader has closed it (``| head`` done reading):
    what a BrokenPipeError means there, and not from another pipe (a worker process's, say)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), no stdout or no file descriptor
        return False


def _silence_stdout() -> None:
    """Point stdout at the null device: the pipe its reader closed would make Python's flush at
    exit print an ``Exception ignored`` traceback."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):  # no stdout, or one without a file descriptor (a test's capture)
        pass


@contextlib.contextmanager
def as_program(interrupted: str = "interrupted") -> Iterator[None]:
    """What the ``msresnet1d`` command and the experiment scripts do run as programs (their
    ``main(argv)`` called from Python leaves all of it to Python):

    - each warning is printed once, as one line (``warning: <message>`` on stderr), instead of
      Python's format with its source line for every fold or seed that raises it (under torchrun,
      rank 0 alone: every rank reads the same data); filters (``-W error`` included) apply as
      before;
    - what stdout and stderr cannot encode (a file name that is not UTF-8, say) is printed as
      backslash escapes, where they would raise (their ``strict`` error handler), rather than
      ending a finished command with an encoding error;
    - SIGTERM stops the program as Ctrl-C does (:func:`sigterm_interrupts`); either prints one
      line, ``interrupted`` (the scripts that train runs: :data:`RUNS_INTERRUPTED`), on stderr,
      without a traceback, and exits 130 (Ctrl-C) or 143 (SIGTERM), as the shell reports a signal;
    - a ValueError (a :class:`~msresnet1d.data.DataError` among them: an unknown record, say) or
      an OSError (a folder that cannot be created, a run folder another process trains in) that
      reaches the top is one line, ``error: <message>``, and exit status 1; under ``python -X
      dev`` it keeps its traceback (for a bug's);
    - a reader that stops reading stdout (``msresnet1d info | head``) ends the program without a
      word, exit status 141, as the shell reports a program that SIGPIPE stopped.
    """
    shown: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None) -> None:  # warnings.showwarning's signature
        from .training.distributed import launched_rank  # here: --help and --version import no torch

        if launched_rank() == 0 and str(message) not in shown:
            shown.add(str(message))
            print(f"warning: {message}", file=file or sys.stderr)

    streams = [(stream, stream.errors) for stream in (sys.stdout, sys.stderr)  # not a handler the user chose
               if hasattr(stream, "reconfigure") and stream.errors == "strict"]  # (surrogateescape: the bytes)
    for stream, _ in streams:
        stream.reconfigure(errors="backslashreplace")
    try:
        with warnings.catch_warnings(), sigterm_interrupts():
            warnings.showwarning = show
            yield
            if sys.stdout is not None:  # None: started with stdout closed (>&-)
                sys.stdout.flush()  # a closed pipe is met here, not by Python's flush at exit
    except KeyboardInterrupt as stop:
        print(interrupted, file=sys.stderr)
        raise SystemExit(interrupted_status(stop)) from None
    except (ValueError, OSError) as e:
        if isinstance(e, BrokenPipeError) and stdout_reader_gone():
            _silence_stdout()
            raise SystemExit(128 + 13) from None  # 13: SIGPIPE
        if sys.flags.dev_mode:  # python -X dev: the traceback, for a bug's ValueError
            raise
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        for stream, errors in streams:
            stream.reconfigure(errors=errors)


def recorded_result(path: str | Path) -> Path | None:
    """``path`` relative to the repository (:func:`~msresnet1d.data.locate.source_checkout`) when
    it is one of the repository's recorded results: under its ``experiments/results/`` and tracked
    by git (so that ``git checkout`` restores it), else None."""
    if _checkout is None:
        return None
    try:
        inside = Path(path).resolve().relative_to(_checkout.resolve())
    except ValueError:
        return None
    if inside.parts[:2] != ("experiments", "results") or len(inside.parts) <= 2:
        return None
    try:  # a file of one's own there, or a source tree without .git (an sdist), is no recorded result
        tracked = subprocess.run(["git", "-C", str(_checkout), "ls-files", "--error-unmatch", inside.as_posix()],
                                 capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):  # no git
        return None
    return inside if tracked else None


@contextlib.contextmanager
def writing(path: str | Path) -> Iterator[Path]:
    """Around the writing of an output file ``path`` (a results file, a PNG) by the block: after
    it, prints ``wrote <path>`` if the block wrote it (a plot without matplotlib is not drawn);
    when the file replaced one of the repository's recorded results (:func:`recorded_result`),
    the line says so, and how git restores it."""
    path = Path(path)
    before = file_version(path)
    yield path
    after = file_version(path)
    if after is None or after == before:
        return
    inside = recorded_result(path) if before is not None else None
    if inside is None:
        print(f"wrote {path}")
        return
    git = "git" if Path.cwd().resolve() == _checkout.resolve() else f"git -C {_checkout}"
    print(f"wrote {path}: it replaced the repository's recorded result ({git} checkout -- {inside.as_posix()} "
          "restores it)")


def write_result(path: str | Path, text: str) -> None:
    """Write an experiment script's results file ``path`` (atomically: :func:`~msresnet1d.atomic.write_text`)
    and say so (:func:`writing`)."""
    with writing(path):
        write_text(path, text)


def partial_path(path: str | Path) -> Path:
    """Where a script's results so far go while it runs (``<name>.partial.json`` beside its
    results file ``path``), so that an interrupted one never leaves a partial result under the
    final name; the script removes it once it writes ``path``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.partial{path.suffix}")


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


def output_or_exit(parser: argparse.ArgumentParser, path: str | Path, flag: str = "--out",
                   partial: bool = False) -> Path:
    """An experiment script's results file ``path`` (``flag`` names it), checked before any run
    trains (:func:`~msresnet1d.atomic.check_target`: not a folder nor write-protected, its folder creatable), or
    ``parser.error`` saying why it could not be written; else the results would be lost at the end.
    With ``partial``, for a script that writes its results so far as it goes, their file
    (:func:`partial_path`) is checked too: a name that fits the file system's limit may not fit
    with ``.partial`` added."""
    try:
        checked = check_target(path, flag)
        if partial:
            check_target(partial_path(path), f"{flag}'s partial results file")
    except ValueError as e:
        parser.error(str(e))
    return checked


def result_or_exit(parser: argparse.ArgumentParser, path: Path, use: Callable[[Any], object],
                   flag: str = "--replot") -> dict:
    """The recorded result (JSON) at ``path`` that ``--replot`` (or another ``flag``) reads again,
    after ``use(result)`` did the flag's work with it (drew its PNGs, or read the keys the flag
    needs); ``parser.error`` naming the file when it cannot be read or ``use`` fails on what it
    holds (a key missing, a value of another type or shape: KeyError, TypeError, ValueError...): it
    is not a result of this script, was changed, or was recorded before it held what ``flag``
    reads. A PNG drawn before the failure is whole (:mod:`~msresnet1d.atomic`)."""
    import json

    try:
        result = json.loads(Path(path).read_text(encoding="utf-8"))
        use(result)
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
        parser.error(f"{flag} {path}: not a result of this script, a changed one, or one recorded before it held "
                     f"what {flag} reads ({type(e).__name__}: {e})")
    return result


def check_not_owned(overrides: dict[str, Any], owned: dict[str, str], where: str = "--set") -> None:
    """Raise ValueError when ``overrides`` (``--set``'s, or a variant's: ``where``) set a config key
    that the script sets itself from one of its flags (``owned``: key -> that flag, what to give
    instead); the script's value or the override would otherwise be dropped without a word. A
    table's keys count as dotted ones (``data={"fold": 1}`` sets ``data.fold``)."""
    keys = [f"{key}.{inner}" if isinstance(value, dict) else key
            for key, value in overrides.items() for inner in (value if isinstance(value, dict) else [None])]
    taken = [key for key in keys if key in owned]
    if taken:
        raise ValueError("; ".join(f"{where} {key}: the script sets it itself, give {owned[key]} instead"
                                   for key in taken))


def add_set(parser: argparse.ArgumentParser, owned: dict[str, str], help: str = "config overrides") -> None:
    """An experiment script's ``--set KEY=VALUE`` (repeatable) on ``parser``, its help naming the
    keys the script sets itself (``owned``, refused by :func:`overrides_or_exit`)."""
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help=f"{help}; not {', '.join(dict.fromkeys(owned))}, which the script sets from its flags")


def overrides_or_exit(parser: argparse.ArgumentParser, items: list[str],
                      owned: dict[str, str] | None = None) -> dict[str, Any]:
    """``--set KEY=VALUE`` items as config overrides (:func:`parse_overrides`), or ``parser.error``:
    also for a key the script sets itself (``owned``: key -> the flag to give instead,
    :func:`check_not_owned`)."""
    try:
        overrides = parse_overrides(items)
        check_not_owned(overrides, owned or {})
    except ValueError as e:
        parser.error(str(e))
    return overrides


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


def add_data_dir(parser: Any, holds: str, default_note: str = "") -> None:
    """An experiment script's ``--data-dir``: a folder that ``holds`` what the help says, ``~``
    expanded (:func:`path_flag`); by default ``$MSRESNET1D_DATA`` as the package reads it (empty is
    unset, ``~`` expanded), ``default_note`` said after it in the help."""
    parser.add_argument("--data-dir", type=path_flag, default=env_path(DATA_ENV),
                        help=f"folder holding {holds} (default $MSRESNET1D_DATA{default_note})")


def add_seeds(parser: Any, default: list[int] | None, help: str) -> None:
    """An experiment script's ``--seeds`` on ``parser`` (or a group of it): one or more distinct
    seeds (:func:`seed_value`), a seed given twice refused with ``parser.error``."""
    parser.add_argument("--seeds", type=seed_value, nargs="+", default=default, action=_DistinctSeeds,
                        metavar="SEED", help=help)


#: ``--threads``' help in ``msresnet1d``'s commands; an experiment script's is :func:`threads_help`'s.
THREADS_HELP = "torch threads (0 or unset: PyTorch's default; on a shared machine, 1)"

#: Why a benchmark's ``--threads`` default is its own (:func:`threads_help`'s ``why``).
THREADS_AS_RECORDED = "as the recorded result was timed, so that figures compare with it"


def threads_help(default: int | str, why: str, what: str = "torch threads",
                 zero: str | None = "PyTorch's default") -> str:
    """An experiment script's ``--threads`` help: ``what`` the flag sets, what 0 means (``zero``;
    None for a flag that takes no count), the script's ``default`` and ``why`` it has it (a
    benchmark pins its threads, :data:`THREADS_AS_RECORDED`); with a default of 0,
    :data:`THREADS_HELP`'s advice for a shared machine."""
    if default == 0:
        return f"{what} (default 0: {zero}, {why}; on a shared machine, 1)"
    return f"{what} ({'' if zero is None else f'0: {zero}; '}default {default}: {why})"


#: ``--quiet``'s help in ``msresnet1d train`` and the experiment scripts that print their runs' progress.
QUIET_HELP = "no progress bars or per-epoch lines"


def path_flag(value: str) -> str:
    """A file or folder flag's value, a leading ``~`` expanded (the shell leaves ``--out=~/runs``
    as it is): not empty (``--config "$CFG"`` with CFG unset would otherwise mean the flag's
    default, e.g. another config)."""
    if not value:
        raise argparse.ArgumentTypeError("empty: give a path (an unset shell variable?), or leave the flag out")
    return os.path.expanduser(value)


#: What :func:`folder_name` asks of a name, for errors.
FOLDER_NAME_RULE = ('not empty, no / \\ < > : " | ? * or control character, not ending in . or a space, not a name '
                    "Windows reserves such as CON or COM1")


def folder_name(name: str) -> bool:
    """Whether ``name`` is one folder name on every system (runs copy across): no separator, none
    of the characters Windows refuses, no trailing dot or space (Windows drops them: also no . or
    ..), and none of its device names."""
    return (bool(name.strip()) and not re.search(r'[/\\<>:"|?*\x00-\x1f]', name) and name == name.rstrip(". ")
            and not re.fullmatch(r"(con|prn|aux|nul|com[1-9]|lpt[1-9])(\..*)?", name, re.IGNORECASE))


def _positive(value: str, what: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and number > 0):
        raise argparse.ArgumentTypeError(f"{value!r}: {what} > 0")
    return number


def positive_seconds(value: str) -> float:
    """A duration flag: a number of seconds > 0."""
    return _positive(value, "a number of seconds")


def positive_number(value: str) -> float:
    """A rate or size flag (Hz, say): a finite number > 0."""
    return _positive(value, "a number")


def positive_int(value: str) -> int:
    """A count flag (repeats, batches): a whole number >= 1."""
    if not re.fullmatch("[0-9]+", value) or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r}: a whole number >= 1")
    return int(value)


def records_or_exit(parser: argparse.ArgumentParser, db_dir: Path, records: list[str], flag: str = "--records"
                    ) -> None:
    """``parser.error`` naming the records of ``records`` (``flag``'s) that ``db_dir`` does not
    hold (no ``<record>.hea`` there), before any work."""
    missing = [record for record in dict.fromkeys(records) if not (Path(db_dir) / f"{record}.hea").is_file()]
    if missing:
        parser.error(f"{flag}: no record {', '.join(missing)} in {db_dir} (no {missing[0]}.hea there)")


def thread_count(value: str) -> int:
    """``--threads``: torch threads, a whole number in [0, :data:`~msresnet1d.values.MAX_THREADS`]
    (0: PyTorch's default)."""
    if not re.fullmatch("[0-9]+", value) or int(value) > MAX_THREADS:
        raise argparse.ArgumentTypeError(f"{value!r}: torch threads are a whole number >= 0 (0: PyTorch's "
                                         f"default), at most {MAX_THREADS}")
    return int(value)
