"""Run configuration: one flat dataclass, loaded from TOML and overridden by command-line flags.

A config file (see ``experiments/configs/``) holds top-level keys of :class:`TrainConfig` and
two tables: ``[model_kwargs]`` (passed to ``create_model``) and ``[data]`` (task-specific, see
``msresnet1d.training.tasks``). Unknown keys are errors, so a typo never passes silently.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
import numbers
import tomllib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..spelling import did_you_mean
from ..values import MAX_THREADS


TASKS = ("beats", "rhythm", "fashion_mnist")
#: Test-time augmentation modes (:func:`msresnet1d.models.tta.with_tta`).
TTA_MODES: tuple[str, ...] = ("none", "flip")
MONITORS = ("macro_f1", "accuracy", "macro_auc", "cinc_score")  # validation metrics, higher is better
FLOAT32_MAX = 3.4028234663852886e38  # the largest learning rate the optimizers' float32 steps can hold
# Each TrainConfig field's annotation -> the Python types its value may have, and how an error says it.
FIELD_TYPES = {"str": (str, "a string"), "int": (numbers.Integral, "a whole number"),
               "float": (numbers.Real, "a number"), "bool": (bool, "true or false"), "dict[str, Any]": (dict, "a table")}


@dataclass
class TrainConfig:
    """Everything that defines a training run (epochs count from 0 internally, 1 in logs)."""

    name: str = "mitdb-beats"
    task: str = "beats"
    model: str = "msresnet1d_beat"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    epochs: int = 10
    batch_size: int = 256
    optimizer: str = "adamw"  # adamw | sgd
    lr: float = 3e-3  # peak learning rate
    momentum: float = 0.9  # SGD only, with cosine or constant (one-cycle cycles it); 0 = plain SGD
    weight_decay: float = 1e-2
    schedule: str = "onecycle"  # onecycle | cosine | constant
    warmup_epochs: float = 1.0  # warm-up: linear before cosine, one-cycle's rising phase; >= epochs: 30% of the run
    loss: str = "cross_entropy"  # cross_entropy | focal
    focal_gamma: float = 2.0
    class_weights: str = "inverse_sqrt"  # none | inverse | inverse_sqrt (of the training class frequency)
    # the weight of a class the task does not score (MIT-BIH's Q, 8 DS1 beats): rarity (by its frequency, as the
    # scored ones) | majority (that of the most frequent scored class, N: no more than a common beat)
    unscored_weight: str = "rarity"
    balanced_sampler: bool = False  # draw the scored classes equally often (each example ~ 1 / its class count)
    label_smoothing: float = 0.0
    grad_clip: float = 0.0  # max gradient L2 norm; 0 = off
    ema_decay: float = 0.0  # validate, select and test a moving average of the weights (e.g. 0.998); 0 = off
    early_stopping: int = 0  # patience in epochs on the validation monitor; 0 = off
    monitor: str = "macro_f1"  # validation metric that selects the best epoch (higher is better)
    select_epoch: str = "best"  # the epoch best.pt keeps and the test runs: best (by monitor) | last (no selection)
    init: str = "kaiming"  # kaiming | xavier (the d2l recipe)
    bf16: bool = False  # bfloat16 autocast (on the training device)
    channels_last: bool = False  # channels-last convolutions (1D models as (1, k) 2D ones): faster on CPU
    seed: int = 0  # 0 .. 2**32 - 1 (numpy's range)
    threads: int = 0  # torch threads; 0 = leave PyTorch's default
    device: str = "cpu"  # cpu | cuda | cuda:N | auto
    eval_batch_size: int = 1024  # examples a model call in validation and the test (the rhythm task: windows)
    tta: str = "none"  # none | flip: validation, test and predict average p(x) and p(-x) (models.tta)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # f.type is the annotation's text (postponed annotations)
            value, expected = getattr(self, f.name), FIELD_TYPES[f.type]
            if not isinstance(value, expected[0]) or (isinstance(value, bool) and f.type != "bool"):
                raise ValueError(f"config: {f.name} must be {expected[1]}, got {value!r}")
            if f.type == "float" and not math.isfinite(value):
                raise ValueError(f"config: {f.name} must be a finite number, got {value!r}")
            if f.type in ("int", "float") and type(value) not in (int, float):  # e.g. numpy scalars from a grid
                setattr(self, f.name, int(value) if f.type == "int" else float(value))
        choices = {"task": TASKS, "optimizer": ("adamw", "sgd"), "schedule": ("onecycle", "cosine", "constant"),
                   "select_epoch": ("best", "last"), "monitor": MONITORS,
                   "loss": ("cross_entropy", "focal"), "class_weights": ("none", "inverse", "inverse_sqrt"),
                   "unscored_weight": ("rarity", "majority"),
                   "init": ("kaiming", "xavier"), "tta": TTA_MODES}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"config: {key} must be one of {allowed}, got {getattr(self, key)!r}"
                                 f"{did_you_mean([getattr(self, key)], allowed)}")
        for key in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"config: {key} must be >= 1, got {getattr(self, key)}")
        if not 0 < self.lr <= FLOAT32_MAX:
            raise ValueError(f"config: lr must be > 0 and at most {FLOAT32_MAX:.4g} (float32's largest number), got "
                             f"{self.lr}")
        for key in ("weight_decay", "warmup_epochs", "focal_gamma", "grad_clip", "early_stopping", "threads"):
            if getattr(self, key) < 0:
                raise ValueError(f"config: {key} must be >= 0, got {getattr(self, key)}")
        if self.threads > MAX_THREADS:
            raise ValueError(f"config: threads must be at most {MAX_THREADS}, got {self.threads}")
        if not 0 <= self.seed < 2**32:  # numpy's range
            raise ValueError(f"config: seed must be in [0, 2**32 - 1], got {self.seed}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"config: momentum must be in [0, 1), got {self.momentum}")
        if self.monitor == "cinc_score" and self.task != "rhythm":
            raise ValueError(f"config: monitor 'cinc_score' is the rhythm task's score, not the {self.task} task's")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"config: ema_decay must be in [0, 1) (0 = off), got {self.ema_decay}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"config: label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.select_epoch == "last" and self.early_stopping:
            raise ValueError(f"config: early_stopping={self.early_stopping} stops on the validation monitor, which "
                             "select_epoch='last' does not use; set one of them only")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{source}: unknown key(s) {', '.join(unknown)}{did_you_mean(unknown, known)}; "
                             f"known keys: {', '.join(sorted(known))}")
        try:
            return cls(**values)
        except ValueError as e:
            raise ValueError(from_source(e, source)) from None


def from_source(error: ValueError, source: str) -> str:
    """The message of a config check's ``error`` naming ``source``, where the values came from,
    in place of the checks' own ``config: ``, or before a message without it (``[data] ...``)."""
    return f"{source}: {str(error).removeprefix('config: ')}"


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None,
                check: bool = False) -> TrainConfig:
    """Defaults, then the TOML file at ``path`` (or, for a ``.json`` file, a run folder's
    ``config.json``), then ``overrides``: first those of whole keys (a table value,
    ``model_kwargs={...}``, replaces the file's table, e.g. for another model), then, in any
    order, the dotted ``data.x`` and ``model_kwargs.x`` keys, which set one entry of those tables
    (so ``--data-dir``, given as ``data.data_dir``, survives a ``data={...}``), or of a table
    within (``data.spectrogram.size``). Two overrides that set one entry to different values are
    refused, and so is one whose entry another's table would drop. With ``check``, the
    ``[data]`` and ``[model_kwargs]`` options are checked too, as ``train`` checks them first
    (:func:`~msresnet1d.training.run.check_config`, which imports torch), and an error names the
    file they came from.

    Raises:
        FileNotFoundError: ``path`` is not a file.
        ValueError: the file is not valid TOML or JSON (UTF-8), sets no keys, or a key or value
            is unknown or out of range.
    """
    values: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} not found")
        kind = "JSON" if path.suffix == ".json" else "TOML"
        # in JSON a key given twice is refused, as TOML refuses it
        read = functools.partial(json.loads, object_pairs_hook=_unique_keys) if kind == "JSON" else tomllib.loads
        try:
            values = read(path.read_text(encoding="utf-8-sig"))  # -sig: a BOM (Windows Notepad) read past
        except ValueError as e:  # a decode error (UnicodeDecodeError is one too), an integer of > 4,300 digits
            raise ValueError(f"config file {path}: not valid {kind} (UTF-8 text): {e}") from None
        except RecursionError:
            raise ValueError(f"config file {path}: lists or tables nested too deeply to read") from None
        if not isinstance(values, dict):
            raise ValueError(f"config file {path}: expected a JSON object of config keys, got {type(values).__name__}")
        if not values:  # an empty or all-comment file: most likely not the file meant
            raise ValueError(f"config file {path} sets no keys; leave out the config to train on the defaults, "
                             "or see experiments/configs/ for examples")
        source = str(path)
    given: dict[str, Any] = {}  # the entries the overrides set, as dotted keys: none may be set twice differently
    for key, value in (overrides or {}).items():
        if not all(part.strip() for part in key.split(".")):  # 'data..fs' was refused as an unknown key ''
            raise ValueError(f"override {key!r}: an empty name before, between or after its dots; a dotted key "
                             "names a table's entry, e.g. data.fs")
        for leaf, leaf_value in _leaves(key, value):
            if leaf in given and given[leaf] != leaf_value:
                raise ValueError(f"override {leaf!r} given twice, as {given[leaf]!r} and {leaf_value!r}: give it once")
            given[leaf] = leaf_value
    # whole keys first (a table, model_kwargs={...}, replaces the file's), then dotted keys on top, the shallower
    # first (data.spectrogram={...} before data.spectrogram.size), so that the order given does not matter
    for key, value in sorted((overrides or {}).items(), key=lambda item: item[0].count(".")):
        value = copy.deepcopy(value)  # the caller's tables stay as given (a script reuses them for every run)
        *tables, entry = key.split(".")
        if tables and tables[0] not in ("data", "model_kwargs"):
            raise ValueError(f"override {key!r}: only data.* and model_kwargs.* take a dotted key")
        table = values
        for depth, name in enumerate(tables, 1):
            if not isinstance(table.setdefault(name, {}), dict):
                raise ValueError(f"override {key!r} sets an entry of {'.'.join(tables[:depth])}, which is "
                                 f"{table[name]!r}, not a table")
            table = table[name]
        table[entry] = value
    for leaf, leaf_value in given.items():  # a dotted key's table replaces its entry whole: none given may be lost
        found = _entry(values, leaf)  # present is enough: a differing value is a conflict, refused above
        if found is _MISSING or leaf_value == {} and not isinstance(found, dict):
            raise ValueError(f"override {leaf!r} is dropped by the table another override gives its "
                             f"{leaf.rpartition('.')[0]}: give that table's entries as dotted keys instead")
    if overrides:
        source = f"{source} and the overrides ({', '.join(overrides)})"
    cfg = TrainConfig.from_dict(values, source)
    if check:
        from .run import check_config

        try:
            check_config(cfg)
        except ValueError as e:
            raise ValueError(from_source(e, source)) from None
    return cfg


_MISSING = object()


def _entry(values: dict[str, Any], key: str) -> Any:
    """The entry a dotted key names in nested tables (``data.spectrogram.hop``), or ``_MISSING``."""
    if key in values:
        return values[key]
    head, _, rest = key.partition(".")
    return _entry(values[head], rest) if rest and isinstance(values.get(head), dict) else _MISSING


def _leaves(key: str, value: Any) -> Iterator[tuple[str, Any]]:
    """The dotted keys and values of the entries that ``key = value`` sets (a table sets each of its own)."""
    if isinstance(value, dict) and value:
        for sub, sub_value in value.items():
            yield from _leaves(f"{key}.{sub}", sub_value)
    else:
        yield key, value


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings (``--set`` flags) as a dict for :func:`load_config`; values through
    :func:`parse_value`. An item without ``=`` or with an empty key, or a key set twice to
    different values, is a ValueError naming it."""
    values: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set takes KEY=VALUE (e.g. data.fs=360), got {item!r}")
        key, value = key.strip(), value.strip()
        try:
            parsed = parse_value(value)
        except ValueError as e:  # the value shown cut short: a message is not the place for 100,000 brackets
            shown = value if len(value) <= 80 else f"{value[:60]}... ({len(value):,} characters)"
            raise ValueError(f"--set {key}={shown}: {e}") from None
        if key in values and values[key] != parsed:
            raise ValueError(f"--set {key} given twice, as {values[key]!r} and {parsed!r}: give it once")
        values[key] = parsed
    return values


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's entries as a dict (``json.loads``' ``object_pairs_hook``); a ValueError for a
    key given twice, which ``json.loads`` would keep the last of without a word."""
    twice = sorted(key for key, n in Counter(key for key, _ in pairs).items() if n > 1)
    if twice:
        raise ValueError(f"key{'s' * (len(twice) > 1)} {', '.join(map(repr, twice))} given twice in one JSON object: "
                         "give each once")
    return dict(pairs)


def parse_value(text: str) -> Any:
    """A command-line value: JSON when it parses (numbers, true/false, lists), else the string;
    a ValueError for text that opens a JSON list or table and does not parse, nests too deeply or
    gives a table's key twice."""
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except RecursionError:
        raise ValueError("lists or tables nested too deeply to read") from None
    except json.JSONDecodeError as e:
        if text.startswith(("[", "{")):
            raise ValueError(f"not valid JSON ({e}); write a list as [3, 5], a string inside it in double "
                             "quotes, and a string that starts with [ or { as JSON: '\"[a] b\"'") from None
        return text
