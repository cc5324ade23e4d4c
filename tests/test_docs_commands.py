"""Every command the project's Markdown (README.md, docs/*.md, experiments/README.md) shows for the
``msresnet1d`` command or an experiment script parses with today's parser, so that the docs cannot
drift from the code (a flag renamed or dropped, a subcommand gone). Nothing runs: each command's
words go to the real parser (``msresnet1d.cli.build_parser()``, a script's ``build_parser()``) and
to the checks of the arguments alone that run before any data is read, where they are functions
of their own: ``--config`` names a file or a config of experiments/configs (``resolve_config``);
``msresnet1d train``'s config, ``--set`` and flags give a config whose every key and value passes
the checks train makes before reading data (``load_config(..., check=True)``); a script's ``--set`` does
not set a key the script sets itself (``overrides_or_exit``); mitdb_ds1_cv's ``--variant`` and
``--ensemble`` are well formed (``parse_variants``, ``parse_ensembles``).

What is read:

- Fenced ``bash``, ``sh`` and ``shell`` blocks, whole, and ``console`` blocks' lines that start with
  ``$ `` (the others are output). A block right after the line ``<!-- as run at COMMIT; not parsed -->``
  is a record of a command run at an older commit, which today's parser need not take.
- Inline code spans that start as a command (``msresnet1d ...``, ``python experiments/x.py ...``).
  Prose names a command partly (``msresnet1d evaluate --adapt-bn``): there, a missing required
  argument is no error, and a span this test does not recognise is no command; every flag and
  subcommand given must still exist.

As a POSIX shell reads them: ``\\`` at a line's end continues the command; quotes and backslashes as
in the shell; ``#`` at a word's start comments out the rest of the line; ``&&``, ``||``, ``;``, ``|``
and ``&`` separate commands; redirections (``> log``, ``2>&1``) and a leading ``nohup`` are
dropped; leading ``NAME=value`` words are the command's environment, and a line of them alone sets
shell variables for the document's later blocks and its prose (``$NAME``, ``${NAME}``; no word
splitting but of an unquoted expansion); globs are left as they are.

Placeholders: ``<word>`` (e.g. ``<record>``, ``runs/<name>/best.pt``) and ``$NAME`` of a variable
the document does not set (e.g. ``$MSRESNET1D_DATA``) stand for a value: each becomes the dummy
:data:`DUMMY` ("1": a number, a name and a path to every parser; a flag with choices needs one of
them written out), and a command holding one has its ``--config`` not looked up. A word ``...``
stands for more arguments and is dropped.

Commands of other programs (``pip``, ``pytest``, ``python -c``, ``head``) are not checked; one that
runs ``python``, ``torchrun`` (whose own options go through torch's parser) or an experiments/
script in a way not recognised here fails in a fenced block, so that a new form is not skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Callable

import pytest

from msresnet1d import arguments, cli
from msresnet1d.training.config import load_config
from test_experiments import SCRIPTS, _load_script

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "experiments" / "README.md"]
DUMMY = "1"  # what a placeholder becomes
FENCE = re.compile(r"^( *)```[ \t]*(\w*)[^\n]*\n(.*?)^\1```", flags=re.M | re.S)  # indented in a list item too
SHELLS = ("bash", "sh", "shell", "console")
NOT_PARSED = re.compile(r"<!-- as run at [0-9a-f]{7,40}; not parsed -->")
INLINE = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", flags=re.S)
PLACEHOLDER = re.compile(r"<[A-Za-z][\w.-]*>")
VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
ASSIGNMENT = re.compile(r"[A-Za-z_]\w*=")
REDIRECT = re.compile(r"(?:[0-9]?>>?|&>>?|<)(&[0-9-])?")
SCRIPT = re.compile(r"(?:\./)?experiments/(\w+)\.py")
PYTHON = re.compile(r"python(?:3(?:\.\d+)?)?")
CLI_MODULES = ("msresnet1d", "msresnet1d.cli")
PYTHON_FLAGS = ("-u", "-O", "-OO", "-B", "-E", "-s", "-I", "-P")  # python's own options before the script
PYTHON_OPTIONS = ("-X", "-W")  # python's own options that take a value


@dataclass(frozen=True)
class Command:
    """A command of a document: where it is (``doc`` relative to the repository, 1-based ``line``
    of its first word), its ``words`` after the shell's reading, whether it came from prose
    (``inline``) and held a placeholder."""

    doc: str
    line: int
    words: tuple[str, ...]
    inline: bool
    placeholder: bool

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}: {' '.join(self.words)}"


class _Reader:
    """A shell's reading of ``text`` (see the module's docstring) into :class:`Command`s;
    ``variables`` holds the document's shell variables, updated by assignment lines."""

    def __init__(self, doc: str, text: str, first_line: int, variables: dict[str, str], inline: bool) -> None:
        self.doc, self.text, self.line, self.variables, self.inline = doc, text, first_line, variables, inline
        self.commands: list[Command] = []
        self.words: list[str] = []
        self.word: list[str] | None = None  # None: between words
        self.start_line = first_line
        self.placeholder = False
        self.drop_next = False  # the word after a redirection is its target

    def read(self) -> list[Command]:
        text, i = self.text, 0
        while i < len(text):
            c = text[i]
            if text.startswith("\\\n", i):
                i, self.line = i + 2, self.line + 1
            elif c == "\\":
                self._add(text[i + 1:i + 2])
                i += 2
            elif c == "'":
                end = text.find("'", i + 1)
                if end < 0:
                    raise self._unclosed("'")
                self._add(text[i + 1:end])
                self.line += text.count("\n", i, end)
                i = end + 1
            elif c == '"':
                i = self._double_quoted(i + 1)
            elif c == "$" and VARIABLE.match(text, i):
                i = self._expand(VARIABLE.match(text, i), quoted=False)
            elif c == "<" and PLACEHOLDER.match(text, i):
                self._add(DUMMY)
                self.placeholder = True
                i = PLACEHOLDER.match(text, i).end()
            elif self.word is None and REDIRECT.match(text, i):
                self._end_word()
                match = REDIRECT.match(text, i)
                self.drop_next = match.group(1) is None  # 2>&1 has its target
                i = match.end()
            elif c == "#" and self.word is None:
                i = text.find("\n", i) if "\n" in text[i:] else len(text)
            elif c in " \t":
                self._end_word()
                i += 1
            elif c in "\n;&|":
                self._end_command()
                i += 2 if text.startswith(("&&", "||"), i) else 1
                self.line += c == "\n"
            else:
                self._add(c)
                i += 1
        self._end_command()
        return self.commands

    def _add(self, chars: str) -> None:
        if self.word is None:
            self.word = []
            if not self.words:
                self.start_line = self.line
        self.word.append(chars)

    def _end_word(self) -> None:
        if self.word is not None:
            if self.drop_next:
                self.drop_next = False
            else:
                self.words.append("".join(self.word))
            self.word = None

    def _unclosed(self, quote: str) -> ValueError:
        return ValueError(f"{self.doc}:{self.line}: a {quote} that is not closed")

    def _double_quoted(self, i: int) -> int:
        self._add("")  # "" is a word
        text, start = self.text + "\0", i  # \0: the end, not a quote
        while text[i] != '"':
            if text[i] == "\0":
                raise self._unclosed('"')
            if text[i] == "\\" and text[i + 1] in '"\\$`\n':
                self._add("" if text[i + 1] == "\n" else text[i + 1])
                i += 2
            elif text[i] == "$" and VARIABLE.match(text, i):
                i = self._expand(VARIABLE.match(text, i), quoted=True)
            elif text[i] == "<" and PLACEHOLDER.match(text, i):
                self._add(DUMMY)
                self.placeholder = True
                i = PLACEHOLDER.match(text, i).end()
            else:
                self._add(text[i])
                i += 1
        self.line += text.count("\n", start, i)
        return i + 1

    def _expand(self, match: re.Match[str], quoted: bool) -> int:
        name = match.group(1) or match.group(2)
        if name not in self.variables:
            self._add(DUMMY)
            self.placeholder = True
        elif quoted:
            self._add(self.variables[name])
        else:  # an unquoted expansion is split into words
            parts = self.variables[name].split()
            for k, part in enumerate(parts):
                if k:
                    self._end_word()
                self._add(part)
        return match.end()

    def _end_command(self) -> None:
        self._end_word()
        words = [word for word in self.words if word != "..."]
        placeholder = self.placeholder or len(words) < len(self.words)
        self.words, self.placeholder, self.drop_next = [], False, False
        if words and all(ASSIGNMENT.match(word) for word in words):  # NAME=value alone: shell variables
            self.variables.update(word.split("=", 1) for word in words)
            return
        while words and (ASSIGNMENT.match(words[0]) or words[0] == "nohup"):  # its environment
            words.pop(0)
        if words:
            self.commands.append(Command(self.doc, self.start_line, tuple(words), self.inline, placeholder))


def _console_commands(block: str) -> str:
    """A ``console`` block's commands: its ``$ `` lines and their continuations, the output blanked
    (the lines keep their numbers)."""
    kept, continued = [], False
    for line in block.split("\n"):
        if continued or line.startswith("$ "):
            kept.append(line if continued else line[2:])
            continued = line.endswith("\\")
        else:
            kept.append("")
    return "\n".join(kept)


def commands_of(doc: str, markdown: str) -> list[Command]:
    """The commands of Markdown text ``markdown`` (document ``doc``): its fenced shell blocks', then
    its inline spans' (see the module's docstring)."""
    variables: dict[str, str] = {}
    commands: list[Command] = []
    prose = markdown
    for match in FENCE.finditer(markdown):
        prose = prose[:match.start()] + re.sub(r"[^\n]", " ", match.group(0)) + prose[match.end():]
        before = markdown[:match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        indent, kind, block = match.groups()
        if kind not in SHELLS or NOT_PARSED.fullmatch(before.strip()):
            continue
        block = re.sub(f"^{indent}", "", block, flags=re.M)
        block = _console_commands(block) if kind == "console" else block
        line = markdown.count("\n", 0, match.start(3)) + 1
        commands += _Reader(doc, block, line, variables, inline=False).read()
    for match in INLINE.finditer(prose):
        span = match.group(2).strip()
        if re.match(r"(msresnet1d|python|torchrun|(\./)?experiments/\w+\.py)\s", span):
            line = prose.count("\n", 0, match.start(2)) + 1
            with contextlib.suppress(ValueError):  # a quote not closed: no command
                commands += _Reader(doc, span.replace("\n", " "), line, dict(variables), inline=True).read()
    return commands


@cache
def doc_commands(path: Path) -> list[Command]:
    return commands_of(str(path.relative_to(REPO)), path.read_text(encoding="utf-8"))


@cache
def script(name: str) -> ModuleType:
    return _load_script(name)


def torchrun_target(words: list[str]) -> list[str] | str:
    """The words of what ``torchrun words`` runs, its own options parsed by torch's parser; or an error."""
    from torch.distributed.run import get_args_parser

    try:
        with contextlib.redirect_stderr(io.StringIO()) as err:
            launched = get_args_parser().parse_args(words)
    except SystemExit:
        return f"torchrun: {err.getvalue().strip().splitlines()[-1]}"
    if launched.module:
        return ["python", "-m", launched.training_script, *launched.training_script_args]
    return [launched.training_script, *launched.training_script_args]


def target(words: list[str]) -> tuple[str, list[str]] | str | None:
    """(``"msresnet1d"`` or a script's name, its arguments) that ``words`` run; None for another
    program's command; an error message for a form of these commands not recognised."""
    if words[0] == "torchrun":
        launched = torchrun_target(words[1:])
        return launched if isinstance(launched, str) else target(launched)
    if words[0] == "msresnet1d":
        return "msresnet1d", words[1:]
    if (found := SCRIPT.fullmatch(words[0])) is not None:
        return (found.group(1), words[1:]) if found.group(1) in SCRIPTS else f"no script {words[0]}"
    if not PYTHON.fullmatch(words[0]):
        return None
    rest = words[1:]
    while rest and rest[0] in PYTHON_FLAGS + PYTHON_OPTIONS:
        rest = rest[2:] if rest[0] in PYTHON_OPTIONS else rest[1:]
    if rest[:1] == ["-c"]:
        return None  # Python code
    if rest[:1] == ["-m"] and rest[1:2] and rest[1] in CLI_MODULES:
        return "msresnet1d", rest[2:]
    if rest and SCRIPT.fullmatch(rest[0]):
        return target(rest)
    return "not a form of command this test knows: python -m msresnet1d[.cli] ... or python experiments/<name>.py ..."


def _variants_and_ensembles(module: ModuleType, args: argparse.Namespace) -> None:
    """mitdb_ds1_cv's ``--variant`` and ``--ensemble`` items, as its ``main`` reads them."""
    variants = module.parse_variants(args.variant or [])
    module.parse_ensembles(args.ensemble, variants, list(variants))  # main's taken rows also have suffixes


#: A script's own checks of its arguments alone, functions of their own (ValueError or SystemExit when wrong).
SCRIPT_CHECKS: dict[str, Callable[[ModuleType, argparse.Namespace], None]] = {"mitdb_ds1_cv": _variants_and_ensembles}


def _checks(name: str, parser: argparse.ArgumentParser, args: argparse.Namespace, placeholder: bool) -> None:
    """What ``msresnet1d`` or script ``name`` checks of its parsed ``args`` before reading data,
    where it is a function of its own (see the module's docstring)."""
    if name == "msresnet1d":
        if args.command == "train" and not (args.resume and args.config is None):
            config = None if placeholder and args.config else cli._train_config_path(args.config)
            load_config(config, cli._overrides(args), check=True)  # every key and value, as train checks them first
        return
    module = script(name)
    if getattr(args, "config", None) is not None and not placeholder:
        arguments.resolve_config(args.config)
    if hasattr(args, "set") and hasattr(module, "OWNED"):
        arguments.overrides_or_exit(parser, args.set, module.OWNED)
    if name in SCRIPT_CHECKS:
        SCRIPT_CHECKS[name](module, args)


def _parser(name: str, in_full: bool = True) -> argparse.ArgumentParser:
    """``msresnet1d``'s parser or script ``name``'s; ``in_full``: taking no abbreviation of a flag
    (argparse's ``allow_abbrev``, read as it parses), its subcommands' parsers neither."""
    parser = cli.build_parser() if name == "msresnet1d" else script(name).build_parser()
    parsers = [parser]
    for each in parsers:
        each.allow_abbrev = not in_full
        parsers += [sub for action in each._actions if isinstance(action, argparse._SubParsersAction)
                    for sub in action.choices.values()]
    return parser


def parse_error(command: Command) -> str | None:
    """Why ``command`` does not parse (argparse's message, or a check's), else None."""
    found = target(list(command.words))
    if found is None:
        return None
    if isinstance(found, str):
        return None if command.inline else found
    name, args = found
    parser = _parser(name)
    with contextlib.redirect_stderr(io.StringIO()) as err, contextlib.redirect_stdout(io.StringIO()):
        try:
            _checks(name, parser, parser.parse_args(args), command.placeholder)
            return None
        except SystemExit as e:
            if e.code in (0, None):  # --help, --version
                return None
            said = e.code if isinstance(e.code, str) else err.getvalue().strip().splitlines()[-1]
            message = said.split("error: ", 1)[-1]  # "error: ..." or argparse's "<prog>: error: ..."
        except ValueError as e:
            message = str(e)
    if command.inline and message.startswith("the following arguments are required"):
        return None
    if message.startswith("unrecognized arguments") and _parses_abbreviated(name, args):
        message += (" (argparse takes a flag's abbreviation: a new flag can make it ambiguous, or mean "
                    "another; give the flag in full)")
    return message


def _parses_abbreviated(name: str, args: list[str]) -> bool:
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        try:
            _parser(name, in_full=False).parse_args(args)
        except SystemExit as e:
            return e.code in (0, None)
    return True


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_command_of_the_docs_parses_with_todays_parser(path):
    failures = [f"{command}\n    {error}" for command in doc_commands(path) if (error := parse_error(command))]
    assert not failures, "\n".join(failures)


def test_the_docs_show_every_script_and_subcommand():
    commands = [command for path in DOCS for command in doc_commands(path)]
    run = [found for command in commands if isinstance(found := target(list(command.words)), tuple)]
    shown = {name for name, _ in run} | {f"msresnet1d {args[0]}" for name, args in run if name == "msresnet1d" and args}
    subcommands = next(action.choices for action in cli.build_parser()._actions
                       if isinstance(action, argparse._SubParsersAction))
    assert set(SCRIPTS) | {f"msresnet1d {sub}" for sub in subcommands} <= shown
    fenced = sum(isinstance(target(list(command.words)), tuple) for command in commands if not command.inline)
    assert fenced >= 60, fenced  # 71 in fenced blocks (and 59 in prose) when this test was written


def test_the_shell_is_read_as_the_docstring_says():
    markdown = """Run `msresnet1d evaluate --adapt-bn` (prose: the checkpoint left out).
```bash
pip install -e . && pytest  # other programs
R4='"a", "b"'
MSRESNET1D_DATA=/path/to/data python experiments/mitdb_ds1_cv.py --threads 1 \\
    --variant main "data.rr=[$R4, \\"c\\"]" --out <name>.json ...   # a comment \\
nohup msresnet1d train --set name=\\"y\\" > train.log 2>&1 &
torchrun --nproc_per_node=2 -m msresnet1d.cli train --data-dir $DATA; msresnet1d info | head
```
<!-- as run at 0123abc; not parsed -->
```bash
python experiments/mitdb_ds1_cv.py --flag-of-old
```
```console
$ msresnet1d download mitdb
mitdb is in data/mitdb
```
"""
    commands = commands_of("x.md", markdown)
    assert [(c.line, c.words, c.inline, c.placeholder) for c in commands] == [
        (3, ("pip", "install", "-e", "."), False, False), (3, ("pytest",), False, False),
        (5, ("python", "experiments/mitdb_ds1_cv.py", "--threads", "1", "--variant", "main", 'data.rr=["a", "b", "c"]',
             "--out", "1.json"), False, True),
        (7, ("msresnet1d", "train", "--set", 'name="y"'), False, False),
        (8, ("torchrun", "--nproc_per_node=2", "-m", "msresnet1d.cli", "train", "--data-dir", "1"), False, True),
        (8, ("msresnet1d", "info"), False, False), (8, ("head",), False, False),
        (15, ("msresnet1d", "download", "mitdb"), False, False),
        (1, ("msresnet1d", "evaluate", "--adapt-bn"), True, False)]
    assert [parse_error(command) for command in commands] == [None] * len(commands)


def test_a_command_with_a_flag_or_subcommand_that_does_not_exist_fails_naming_it():
    markdown = """```bash
python experiments/bench_data.py --data /path/to/data
msresnet1d evaluate best.pt --per-records
```
and `msresnet1d evaluate --tta mirror`, `msresnet1d fit`, `python experiments/mitdb_ds1_cv.py --variant a=1`.
```sh
python experiments/no_such_script.py
python -m msresnet1d.training train
msresnet1d train --config no_such_config
msresnet1d train --set seed=1 --seed 2
msresnet1d train --set data.template_form=all
msresnet1d train --config mitdb_beats --set model_kwargs.widths=[8]
python experiments/mitdb_inter_patient.py --set seed=3
```
"""
    errors = [(str(command), parse_error(command)) for command in commands_of("x.md", markdown)]
    main_job = REPO / "experiments" / "configs" / "mitdb_beats.toml"  # train's default config
    expected = [
        ("x.md:2: python experiments/bench_data.py --data /path/to/data",  # --data-dir's former alias
         "unrecognized arguments: --data /path/to/data (argparse takes a flag's abbreviation"),
        ("x.md:3: msresnet1d evaluate best.pt --per-records", "unrecognized arguments: --per-records"),
        ("x.md:7: python experiments/no_such_script.py", "no script experiments/no_such_script.py"),
        ("x.md:8: python -m msresnet1d.training train", "not a form of command this test knows"),
        ("x.md:9: msresnet1d train --config no_such_config", "config 'no_such_config' not found"),
        ("x.md:10: msresnet1d train --set seed=1 --seed 2", "--seed 2 and --set seed=1 disagree: give one"),
        ("x.md:11: msresnet1d train --set data.template_form=all",  # the config's keys and values, as train checks them
         f"{main_job} and the overrides (data.template_form): [data] of task 'beats': unknown key(s) template_form "
         "(did you mean 'template_from'?)"),
        ("x.md:12: msresnet1d train --config mitdb_beats --set model_kwargs.widths=[8]",
         f"{main_job} and the overrides (model_kwargs.widths): model 'msresnet1d_beat' with [model_kwargs]"),
        ("x.md:13: python experiments/mitdb_inter_patient.py --set seed=3",
         "--set seed: the script sets it itself, give --seeds instead"),
        ("x.md:5: msresnet1d evaluate --tta mirror", "argument --tta: invalid choice: 'mirror'"),
        ("x.md:5: msresnet1d fit", "argument command: invalid choice: 'fit'"),
        ("x.md:5: python experiments/mitdb_ds1_cv.py --variant a=1",
         "--variant 'a=1': each variant starts with a new name (no '=')")]
    assert [where for where, _ in errors] == [where for where, _ in expected]
    for (where, error), (_, start) in zip(errors, expected):
        assert error is not None and error.startswith(start), (where, error)
