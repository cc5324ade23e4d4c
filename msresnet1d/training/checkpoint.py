"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)``.

A checkpoint is a dict of tensors and plain values (no pickled objects): the model, optimizer
and scheduler state dicts, RNG states, the epoch just finished, the config dict and the metric
history. Loading never unpickles arbitrary code.
"""

from __future__ import annotations

import functools
import os
import random
import re
import zipfile
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from ..atomic import atomic_path
from ..data.cache import versioned_hash

FORMAT_VERSION = 1
_Module = TypeVar("_Module", bound=torch.nn.Module)

#: What every checkpoint holds besides ``format`` (``last.pt`` adds the optimizer, scheduler, RNG and history).
REQUIRED_KEYS = ("model", "config", "class_names", "task_state")


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """The package version and a hash of the source of every module of the package: what a
    ``last.pt`` was written by, so that a resume under other code is said."""
    package = Path(__file__).resolve().parents[1]
    return versioned_hash(f"{source.relative_to(package).as_posix()}\0".encode() + source.read_bytes()
                          for source in sorted(package.rglob("*.py")))


#: Modules whose names in a pickle mean running code (torch says "is blocked" of some only).
_CODE_MODULES = frozenset({"builtins", "os", "posix", "nt", "subprocess", "importlib", "sys", "shutil", "runpy",
                           "pty", "socket", "code", "pickle", "marshal", "ctypes", "operator", "functools", "types"})


#: What :func:`atomic_save` adds to torch's write error (no errno), for ``msresnet1d train`` to recognise it.
DISK_FULL_HINT = "(is the disk full?)"


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``.

    Raises:
        OSError: naming ``path``, when the file cannot be written (torch's own error for a full
            disk is a RuntimeError about its stream).
    """
    with atomic_path(path) as tmp:
        try:
            torch.save(obj, tmp)
        except RuntimeError as e:  # torch's stream writer: no errno, no file name
            raise OSError(f"cannot write {path}: {e} {DISK_FULL_HINT}") from e


def _damaged_part(path: Path) -> str | None:
    """The first part of a torch.save zip archive whose data does not match its CRC-32 (torch.load
    does not check them), or None. Parts stored without a CRC (0: torch's
    ``set_crc32_options(False)``) cannot be checked.

    Raises:
        ValueError: a TorchScript file (its ``code/`` part), or a compressed part, which
            torch.save never writes (a file made to take far more memory than its size once read).
    """
    with zipfile.ZipFile(path) as archive:
        if _is_torchscript(archive.namelist()):
            raise ValueError(f"{path} is a TorchScript file (torch.jit.save, msresnet1d export), not a checkpoint: "
                             "load it with torch.jit.load, or give the checkpoint it was exported from")
        compressed = [part.filename for part in archive.infolist() if part.compress_type != zipfile.ZIP_STORED]
        if compressed:
            raise ValueError(f"checkpoint {path} holds compressed parts ({compressed[0]}, ...), which torch.save never "
                             "writes: not a file msresnet1d train wrote, or one rezipped; use the run's own file")
        for part in archive.infolist():
            if not part.CRC:
                continue
            try:
                with archive.open(part) as f:
                    while f.read(1 << 20):
                        pass
            except (zipfile.BadZipFile, UnicodeDecodeError):  # its local header's name garbled too
                return part.filename
    return None


def _is_torchscript(names: list[str]) -> bool:
    """Whether the parts ``names`` of a zip archive are a TorchScript file's (``torch.jit.save``:
    a ``code/`` folder in the archive's own)."""
    return any(name.split("/")[1:2] == ["code"] for name in names)


def is_torch_save_file(path: str | Path) -> bool:
    """Whether ``path`` is a file ``torch.save`` wrote: a zip archive holding a ``data.pkl``, not a
    TorchScript file (False for another file, or a damaged archive)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, UnicodeDecodeError, OSError):
        return False
    return any(name.split("/")[1:] == ["data.pkl"] for name in names) and not _is_torchscript(names)


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch RNG states as tensors and plain values (weights_only-safe)."""
    np_state = np.random.get_state()
    return {
        "python": [list(random.getstate()[1]), random.getstate()[2]],
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2])},
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    keys, gauss = state["python"]
    random.setstate((3, tuple(int(k) for k in keys), gauss))
    np.random.set_state(("MT19937", state["numpy"]["keys"].numpy().astype(np.uint32), state["numpy"]["pos"]))
    torch.set_rng_state(state["torch"])


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by this package, safely (``weights_only=True``)."""
    path = Path(path).expanduser()
    if path.is_dir():
        found = [p for p in (path / "checkpoints" / "best.pt", path / "best.pt") if p.is_file()]
        hint = f"; did you mean {found[0]}?" if found else " (a run keeps them in <run>/checkpoints/)"
        raise IsADirectoryError(f"checkpoint {path} is a folder: give a checkpoint file, best.pt or last.pt{hint}")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"checkpoint {path} is not a file torch.save wrote (not a zip archive: other bytes, or a "
                         "truncated copy)")
    try:
        damaged = _damaged_part(path)
    # is_zipfile found an end record, but no archive behind it, or a central directory whose names do not decode
    except (zipfile.BadZipFile, UnicodeDecodeError) as e:
        raise ValueError(f"checkpoint {path} is not a file torch.save wrote (a damaged zip archive: {e})") from None
    if damaged is not None:
        raise ValueError(f"checkpoint {path} is damaged: its part {damaged} fails its CRC check (a bad copy or "
                         "disk); use another copy, or last.pt / best.pt of the run")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises several kinds for bad files
        # torch's own message advises weights_only=False, which would run code from the file: not repeated here
        found = re.search(r"[Uu]nsupported (?:global: )?GLOBAL ([\w.]+)", str(e))  # a class, or a function to call
        # os.system and the like, eval, importlib...: a file made to run code
        module = found.group(1).split(".")[0] if found is not None and "." in found.group(1) else "builtins"
        blocked = found is not None and ("is blocked" in str(e) or module in _CODE_MODULES)
        raise ValueError(
            f"checkpoint {path} cannot be read safely with torch.load(weights_only=True): "
            + (f"it calls {found.group(1)} when unpickled: a file made to run code, not a checkpoint; do not load it "
               "any other way" if blocked else
               f"it holds a Python object of class {found.group(1)}, which only unpickling, that is running code "
               "from the file, could rebuild (for a whole model saved with torch.save(model), save "
               "model.state_dict() instead, or train with msresnet1d train)" if found else
               f"it is not a file torch.save wrote ({type(e).__name__})")) from None
    found_format = ckpt.get("format") if isinstance(ckpt, dict) else None
    whole = type(found_format) is int  # not a bool, nor a tensor (whose comparisons are tensors)
    if whole and found_format > FORMAT_VERSION:
        raise ValueError(f"checkpoint {path} has format {found_format}, from a newer msresnet1d; this version reads "
                         f"format {FORMAT_VERSION}: load it with the version that wrote it, or a later one")
    if not isinstance(ckpt, dict) or not whole or found_format != FORMAT_VERSION or "model" not in ckpt:
        plain = isinstance(ckpt, dict) and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values())
        ours = isinstance(ckpt, dict) and {"model", "config"} <= set(ckpt)  # but its format is not one
        raise ValueError(f"checkpoint {path} is not an msresnet1d checkpoint (format {FORMAT_VERSION})" + (
            ": it is a bare state dict; build the model with msresnet1d.create_model(...) and call its "
            "load_state_dict(torch.load(path, weights_only=True))" if plain else
            f": it has a model and a config, but its format is {found_format!r:.60}, not the whole number "
            f"{FORMAT_VERSION} (an edited file?)" if ours and "format" in ckpt else
            ": it has a model and a config, but no format (an edited file?)" if ours else ""))
    missing = [key for key in REQUIRED_KEYS if key not in ckpt]
    if missing or not isinstance(ckpt["config"], dict) or "task" not in ckpt["config"]:
        raise ValueError(f"checkpoint {path} is incomplete: " + (f"no {', '.join(missing)}" if missing else
                         "its config names no task") + " (msresnet1d train writes them all)")
    problem = _malformed(ckpt)
    if problem:
        raise ValueError(f"checkpoint {path} is malformed: {problem} (msresnet1d train writes none such: an edited "
                         "or made-up file)")
    return ckpt


def _malformed(ckpt: dict[str, Any]) -> str | None:
    """What in a checkpoint is not of the kind :class:`~.engine.Trainer` writes, or None: the
    parts every command reads (weights, class names, config, task state, splits, epoch). Every
    tensor of the weights and the task state is a dense (strided) CPU tensor of real numbers, as
    ``torch.save`` of a trained model writes and ``map_location="cpu"`` reads it: not sparse,
    complex, quantized or on the meta device (which holds no values)."""
    def named_tensors(value: Any) -> bool:
        return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                               for k, v in value.items())

    names = ckpt["class_names"]
    if not isinstance(names, list) or not names or not all(isinstance(name, str) for name in names):
        return f"class_names is {type(names).__name__} {names!r:.60}, not a list of class names"
    if not named_tensors(ckpt["model"]):
        return "its model is not a state dict (names -> tensors)"
    if "ema" in ckpt and not (isinstance(ckpt["ema"], dict) and named_tensors(ckpt["ema"].get("module"))):
        return "its ema holds no state dict of the averaged weights (module)"
    if not named_tensors(ckpt["task_state"]):
        return "its task_state is not a table of names -> tensors"
    tables = {"model": ckpt["model"], "ema module": ckpt.get("ema", {}).get("module", {}),
              "task_state": ckpt["task_state"]}
    for table, tensors in tables.items():
        for key, tensor in tensors.items():
            kind = _unusual_tensor(tensor)
            if kind:
                return f"its {table}'s {key} is a {kind} tensor, not a dense CPU tensor of real numbers"
    if not all(isinstance(key, str) for key in ckpt["config"]):
        return "its config has keys that are not names"
    if "splits" in ckpt and not (isinstance(ckpt["splits"], dict) and all(isinstance(k, str) for k in ckpt["splits"])):
        return f"its splits is {type(ckpt['splits']).__name__} {ckpt['splits']!r:.60}, not a table of names -> values"
    epoch = ckpt.get("epoch", 0)
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        return f"its epoch is {epoch!r}, not a whole number >= 0"
    return None


def _unusual_tensor(tensor: torch.Tensor) -> str | None:
    """What makes ``tensor`` other than a dense CPU tensor of real numbers (``"sparse_coo"``,
    ``"meta"``, ``"complex64"``, ``"quantized"``...), or None."""
    if tensor.layout != torch.strided:
        return str(tensor.layout).removeprefix("torch.")
    if tensor.device.type != "cpu":
        return tensor.device.type
    if tensor.is_quantized:
        return "quantized"
    return str(tensor.dtype).removeprefix("torch.") if tensor.is_complex() else None


def inference_state(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The weights a checkpoint's model should be evaluated with: the moving average of the
    weights when the run kept one (``last.pt`` of an ``ema_decay`` run holds both; validation and
    ``best.pt`` use the average), else ``ckpt["model"]``."""
    return ckpt["ema"]["module"] if "ema" in ckpt else ckpt["model"]


def load_weights(model: _Module, ckpt: dict[str, Any], source: str | os.PathLike[str] = "the checkpoint",
                 assign: bool = False) -> _Module:
    """Load :func:`inference_state` of ``ckpt`` into ``model`` (strictly) and return it; with
    ``assign``, its tensors replace the model's (``load_state_dict(assign=True)``: for a model
    built on the meta device, whose shapes alone are checked).

    Raises:
        ValueError: naming ``source`` when the weights do not fit the model (missing or
            unexpected keys, other shapes), e.g. a checkpoint whose weights were edited.
    """
    try:
        model.load_state_dict(inference_state(ckpt), assign=assign)
    except RuntimeError as e:
        detail = " ".join(str(e).split())
        raise ValueError(f"{source}: its weights do not fit the model its config builds "
                         f"({ckpt['config'].get('model')!r}): {detail}") from None
    return model


def _differences(saved: Any, now: Any, name: str, labels: tuple[str, str]) -> list[str]:
    """``"name: <labels[0]> <saved>, <labels[1]> <now>"`` for each differing value, tables key by key."""
    if isinstance(saved, dict) and isinstance(now, dict):
        keys = list(saved) + [k for k in now if k not in saved]
        return [d for k in keys for d in _differences(saved.get(k), now.get(k), f"{name}.{k}", labels)]
    return [] if plain(saved) == plain(now) else [f"{name}: {labels[0]} {saved!r}, {labels[1]} {now!r}"]


def plain(value: Any) -> Any:
    """A config value as it comes back from a run folder's config.json, to compare: tuples and
    numpy arrays as lists, numpy scalars as Python numbers, tables entry by entry."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [plain(v) for v in value]
    return value.item() if isinstance(value, np.generic) else value


def check_compatible(ckpt: dict[str, Any], config: dict[str, Any], path: str | Path, keys: tuple[str, ...],
                     source: str | None = None, labels: tuple[str, str] = ("checkpoint", "now"),
                     hint: str = "") -> None:
    """Raise ValueError if the checkpoint was made with another model or config (on ``keys``),
    naming ``source`` (default ``checkpoint <path>``) and each differing key (``data.fs``, say,
    inside a table) with its two values, ``labels`` saying whose; ``hint`` ends the message."""
    saved = ckpt["config"]
    differing = [d for k in keys for d in _differences(saved.get(k), config.get(k), k, labels)]
    if differing:
        raise ValueError(f"{source or f'checkpoint {path}'} was made with another model or config "
                         f"({'; '.join(differing)}){hint}")
