"""Export of the 1D models for other people's pipelines: TorchScript, ONNX and ``torch.export`` files.

Both keep the batch and length axes dynamic: one file takes any number N of windows (N, C, L)
of any length L >= the model's ``min_input_size`` samples, and returns logits (N, K). Models
built with ``extra_features=E`` take a second input, extra per-window features (N, E). The
model is exported in eval mode (BatchNorm running statistics, no dropout); its own mode is
left as it was (:func:`~msresnet1d.models.modes.evaluating`). Files are written atomically
(:func:`msresnet1d.atomic.atomic_path`: a temporary file in the target folder, then
``os.replace``), so a failed export leaves no partial file behind. A path may start with ``~``
(the home folder); it must not be a folder itself, nor a file without write permission, nor lie
under a file or an unwritable folder (checked before any export work; missing folders are made).
A file replaced keeps its permissions.

ONNX uses torch's TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``): it
keeps both axes dynamic for every model here, needs no onnxscript, and exports in about a
second (the dynamo-based one took 8-16 s for ``msresnet1d_small`` and ``_late`` on 2 shared
cores). Both give the same outputs for these models since the 1D max-pool became export-friendly
(``models.layers.Pool1d``); before, ``torch.export`` specialised the length of the pooling
models and ``torch.onnx`` silently fixed their input length to the example's. torch marks the
TorchScript-based exporter deprecated: its DeprecationWarning, and the TracerWarnings of the
model's Python input checks (which an ONNX graph cannot keep), are silenced during export;
:class:`OnnxPredictor` checks the inputs instead, with the shapes stored in the file.

:func:`export_program` writes a ``torch.export`` program (``.pt2``), the format torch moves to as
it deprecates TorchScript. Its length is dynamic from :func:`program_min_length`,
``model.total_stride + 1`` samples (33 for
the main job's model, 17 for ``msresnet1d_beat``'s defaults) rather than from ``min_input_size``:
on shorter inputs the last stage has length 1, which ``torch.export`` specialises.

All three take ``metadata``, string key-value pairs stored in the file: ONNX's metadata properties
(``OnnxPredictor.metadata``; onnxruntime's ``get_modelmeta().custom_metadata_map``), a TorchScript
or ``.pt2`` file's extra file ``metadata.json`` (:func:`torchscript_metadata`,
:func:`program_metadata`). :func:`checkpoint_metadata`
gives a checkpoint's: its classes, config (the sampling rate, leads, window, band, template
and RR features its inputs are prepared with) and the statistics fitted on its training split,
what ``msresnet1d export`` stores, so that the file alone says how to prepare its inputs.

``onnx`` and ``onnxruntime`` are optional: ``pip install msresnet1d[onnx]``.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import io
import json
import logging
import os
import pkgutil
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from .atomic import atomic_path, unwritable, write_bytes
from .models.modes import evaluating
from .values import is_whole

__all__ = ["OnnxPredictor", "checkpoint_metadata", "export_onnx", "export_program", "export_torchscript",
           "program_metadata", "program_min_length", "record_preprocessing", "torchscript_metadata"]

log = logging.getLogger(__name__)

#: torch >= 2.5 has a second ONNX exporter (``dynamo=True``, the default in recent releases); these files
#: come from the TorchScript-based one, the only one before 2.5 (whose ``export`` has no ``dynamo``).
_TORCHSCRIPT_EXPORTER = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}

#: Attributes every exported model needs (all 1D models of :func:`msresnet1d.create_model` have them).
_MODEL_ATTRIBUTES = ("in_channels", "min_input_size", "total_stride", "extra_features")

#: The metadata keys :func:`export_onnx` writes itself (for :class:`OnnxPredictor`).
_OWN_METADATA = ("min_input_size", "total_stride")

#: The TorchScript extra file that holds a file's metadata (a JSON object of strings).
TORCHSCRIPT_METADATA = "metadata.json"


def checkpoint_metadata(ckpt: Mapping[str, Any]) -> dict[str, str]:
    """What a file exported from the checkpoint ``ckpt`` (:func:`~msresnet1d.training.checkpoint.load_checkpoint`'s
    dict) stores to be used without it, as strings, JSON for the structured ones:
    ``msresnet1d_version``, ``task``, ``class_names`` (the K outputs, in order), ``config`` (the
    run's resolved config: ``data`` holds the rate ``fs`` in Hz, ``leads``, ``window`` in seconds
    around the R peak, ``band`` in Hz, ``template``, ``rr`` and the rest the inputs are prepared
    with; ``tta`` the test-time augmentation), ``task_state`` (the statistics fitted on the
    training split, e.g. ``rr_mean`` and ``rr_std``, as lists) and, for beat and rhythm models,
    ``preprocessing`` (:func:`record_preprocessing`: how each record's signal was prepared)."""
    from . import __version__
    from .training.checkpoint import plain

    metadata = {"msresnet1d_version": __version__, "task": str(ckpt["config"]["task"]),
                "class_names": json.dumps(list(ckpt["class_names"])), "config": json.dumps(plain(ckpt["config"])),
                "task_state": json.dumps({name: value.tolist() for name, value in ckpt["task_state"].items()})}
    steps = record_preprocessing(ckpt)
    if steps is not None:
        metadata["preprocessing"] = json.dumps(steps)
    return metadata


def record_preprocessing(ckpt: Mapping[str, Any]) -> dict[str, Any] | None:
    """How a beat or rhythm checkpoint's inputs are prepared from a record, as plain values, so
    that a program without this package can do the same (None for other tasks). Each lead of
    the whole record, before windows are cut: NaN samples filled by linear interpolation; a
    zero-phase Butterworth filter (``band_hz``, either corner may be None; none at all when
    ``band_hz`` is None) designed at the record's own rate and run by
    ``scipy.signal.sosfiltfilt`` with ``padlen`` = 3 x (2 x sections + 1); resampled to
    ``fs_hz`` by ``scipy.signal.resample_poly``; normalised (``normalization``: "zscore" = mean
    and standard deviation) over the record, with NaN samples and flat runs of at least
    ``flat_seconds`` left out of the statistics. :func:`~msresnet1d.data.preprocess.preprocess_signal`
    is the reference."""
    from .data.preprocess import FILTER_ORDER, FLAT_SECONDS
    from .training.config import TrainConfig
    from .training.tasks import beat_config, resolve_data, rhythm_config

    cfg = resolve_data(TrainConfig.from_dict(ckpt["config"], "checkpoint"))
    if cfg.task not in ("beats", "rhythm"):
        return None
    prepared = beat_config(cfg.data) if cfg.task == "beats" else rhythm_config(cfg.data)
    return {"fill_nan": "linear", "band_hz": None if prepared.band is None else list(prepared.band),
            "filter": "butterworth", "filter_order": FILTER_ORDER, "zero_phase": "scipy.signal.sosfiltfilt",
            "fs_hz": prepared.fs, "resampler": "scipy.signal.resample_poly", "normalization": prepared.normalization,
            "flat_seconds": FLAT_SECONDS, "reference": "msresnet1d.data.preprocess.preprocess_signal"}


def torchscript_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The metadata :func:`export_torchscript` stored in the TorchScript file ``path`` (empty
    for a file saved without). A ValueError for a file torch cannot load as TorchScript (an ONNX
    or ``.pt2`` file, say)."""
    files = {TORCHSCRIPT_METADATA: ""}
    try:
        torch.jit.load(str(_file_path(path)), map_location="cpu", _extra_files=files)
    except RuntimeError as e:  # torch's "PytorchStreamReader failed reading zip archive", and the like
        first = (str(e).strip() or type(e).__name__).splitlines()[0].split(". ")[0]  # torch's advice left out
        raise ValueError(f"{path}: not a TorchScript file, or one this torch cannot load ({first})") from None
    return json.loads(files[TORCHSCRIPT_METADATA]) if files[TORCHSCRIPT_METADATA] else {}


def _check_metadata(metadata: Mapping[str, str] | None, reserved: tuple[str, ...] = ()) -> dict[str, str]:
    """``metadata`` as a dict, checked: string keys and values, none of ``reserved``."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping) or not all(isinstance(k, str) and isinstance(v, str)
                                                    for k, v in metadata.items()):
        raise ValueError(f"metadata must map strings to strings (JSON for structured values), got {metadata!r:.80}")
    taken = sorted(set(metadata) & set(reserved))
    if taken:
        raise ValueError(f"metadata key(s) {', '.join(taken)}: written by the export itself")
    return dict(metadata)


def _metadata_file(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """The extra files of a TorchScript or ``.pt2`` file that hold ``metadata`` (checked): its
    ``metadata.json``, or none without metadata."""
    return {TORCHSCRIPT_METADATA: json.dumps(_check_metadata(metadata))} if metadata is not None else {}


def export_torchscript(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    method: Literal["script", "trace"] = "script",
    example_length: int | None = None,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Save ``model`` as a TorchScript file (load it with ``torch.jit.load``).

    A copy of the model on the CPU is exported (the caller's model stays on its device, in its
    mode): a GPU model's file loads on a machine without a GPU (``torch.jit.load`` puts its
    tensors where they were saved); move the loaded module to run it on a GPU.

    Args:
        model: a 1D model, input (N, C, L).
        path: the file to write (missing folders are made).
        method: ``"script"`` compiles the model's code: the module keeps its input checks, the
            optional ``extra`` argument and its attributes (``in_channels``, ``min_input_size``,
            ...), so :mod:`msresnet1d.inference` can run it after ``torch.jit.load``.
            ``"trace"`` records the operations run on one example input: a plain graph without
            the Python checks or attributes (for runtimes that only take traced graphs);
            ``extra`` is then a required argument when the model has extra features.
            torch 2.13 marks both deprecated; its warning is left to the caller.
        example_length: length in samples of the tracing example (``"trace"`` only; the
            traced graph takes any length); default 8 x the model's ``total_stride``.
        metadata: strings to store in the file, as its extra file ``metadata.json``
            (:func:`torchscript_metadata` reads them; e.g. :func:`checkpoint_metadata`).

    Returns:
        ``path`` as a :class:`~pathlib.Path`, ``~`` expanded.

    Raises:
        TypeError: ``path`` is not a str or os.PathLike.
        IsADirectoryError: ``path`` is a folder.
        OSError: ``path`` lies under a file, an unwritable folder or a symbolic link to nothing,
            is write-protected, a device or a pipe, or has a name longer than its file system takes.
        ValueError: a model that is not 1D, a bad ``method`` or ``example_length``, an
            ``example_length`` with ``method="script"``, or ``metadata`` not of strings.
    """
    path = _output_path(path)
    _check_model(model)
    extra_files = _metadata_file(metadata)
    model = copy.deepcopy(model).cpu()
    with evaluating(model):
        if method == "script":
            if example_length is not None:  # not ignored without a word
                raise ValueError(f"example_length={example_length!r} sets the length of the tracing example, for "
                                 "method='trace'; a scripted model has no example (it takes any length)")
            module = torch.jit.script(model)
        elif method == "trace":
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
                module = torch.jit.trace(model, _example_inputs(model, example_length))
        else:
            raise ValueError(f"method={method!r}, expected 'script' or 'trace'")
    # written in memory first: torch's writer aborts the process (a C++ error in a destructor) when the
    # disk fills while it writes a file, where Python's write raises an OSError naming the path
    buffer = io.BytesIO()
    torch.jit.save(module, buffer, _extra_files=extra_files)
    write_bytes(path, buffer.getvalue())
    log.info("exported %s to TorchScript (%s): %s", type(model).__name__, method, path)
    return path


def program_min_length(model: nn.Module) -> int:
    """The shortest input, in samples, of ``model`` exported by :func:`export_program`:
    ``total_stride + 1`` (on shorter inputs the last stage has length 1, which ``torch.export``
    specialises), where eager and ONNX inference take ``min_input_size``."""
    return model.total_stride + 1


def export_program(model: nn.Module, path: str | os.PathLike[str], *,
                   metadata: Mapping[str, str] | None = None) -> Path:
    """Save ``model`` as a ``torch.export`` program, a ``.pt2`` file: load it with
    ``torch.export.load(path).module()`` and call that as the model, ``(x)`` or ``(x, extra)``.

    The batch and length axes are dynamic: any N and any L > ``model.total_stride`` samples (the
    program refuses shorter inputs, or another channel count, with torch's AssertionError
    ``Guard failed: x.size()[2] >= 17``, without this package's checks). A CPU copy of the
    model is exported in eval mode, as :func:`export_torchscript` does. Loading a ``.pt2`` file
    may unpickle parts of it (torch falls back to ``weights_only=False``): load only files you
    trust; :func:`program_metadata` reads the metadata without loading the program.

    Args:
        model: a 1D model, input (N, C, L) (and (N, E) extra features).
        path: the file to write (missing folders are made).
        metadata: strings to store in the file, as its extra file ``metadata.json``.

    Returns:
        ``path`` as a :class:`~pathlib.Path`, ``~`` expanded.

    Raises:
        TypeError, IsADirectoryError, OSError: a bad ``path``, as for :func:`export_torchscript`.
        ValueError: a model that is not 1D, or ``metadata`` not of strings.
    """
    from torch.export import Dim

    path = _output_path(path)
    _check_model(model)
    extra_files = _metadata_file(metadata)
    model = copy.deepcopy(model).cpu()
    example = _example_inputs(model, 2 * model.total_stride)
    batch = Dim("batch")
    shapes = ({0: batch, 2: Dim("length", min=program_min_length(model))}, {0: batch})[:len(example)]
    with evaluating(model):
        program = torch.export.export(model, example, dynamic_shapes=shapes)
    buffer = io.BytesIO()  # in memory first, as for TorchScript: a full disk is then an OSError naming the path
    torch.export.save(program, buffer, extra_files=extra_files)
    write_bytes(path, buffer.getvalue())
    log.info("exported %s with torch.export: %s", type(model).__name__, path)
    return path


def program_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The metadata :func:`export_program` stored in the ``.pt2`` file ``path`` (empty for a
    file saved without), read from the archive without loading (unpickling) the program.

    Raises:
        ValueError: ``path`` is not a ``.pt2`` archive (a zip file)."""
    import zipfile

    file = _file_path(path)
    try:
        with zipfile.ZipFile(file) as archive:
            names = [n for n in archive.namelist() if n.endswith(f"/extra/{TORCHSCRIPT_METADATA}")]
            return json.loads(archive.read(names[0])) if names else {}
    except zipfile.BadZipFile as e:
        raise ValueError(f"{path}: not a torch.export (.pt2) file ({e})") from None


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    example_length: int | None = None,
    opset: int = 17,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Save ``model`` as an ONNX file with dynamic batch and length axes.

    Inputs ``signal`` (batch, C, length) float32 and, for models with extra features,
    ``extra`` (batch, E) float32; output ``logits`` (batch, K) float32. The file's metadata
    stores ``min_input_size`` and ``total_stride`` (samples) for :class:`OnnxPredictor`.

    Args:
        model: a 1D model, input (N, C, L).
        path: the file to write (missing folders are made).
        example_length: length in samples of the tracing example, a whole number >= the
            model's ``min_input_size`` (the exported graph takes any length); default 8 x the
            model's ``total_stride``.
        opset: ONNX opset version, one the installed torch's TorchScript-based exporter supports
            (7 to 20 in torch 2.13; the error for another names the range); 10 or more for a
            model with ``shortcut="avg_conv_bn"`` (ceil-mode average pooling).
        metadata: strings to store in the file's metadata beside ``min_input_size`` and
            ``total_stride`` (:attr:`OnnxPredictor.metadata` reads them; e.g. :func:`checkpoint_metadata`).

    Returns:
        ``path`` as a :class:`~pathlib.Path`, ``~`` expanded.

    Raises:
        ImportError: ``onnx`` is not installed.
        TypeError, IsADirectoryError, OSError: a bad ``path``, as :func:`export_torchscript` says.
        ValueError: the model's parameters are not float32 (``model.float()`` first); an
            ``opset`` the exporter does not support; a bad ``example_length``; a TorchScript
            module (``torch.jit.load``'s: export the eager model it was made from); ``metadata``
            not of strings, or naming ``min_input_size`` or ``total_stride``.
    """
    onnx = _require("onnx")
    path = _output_path(path)
    _check_model(model)
    metadata = _check_metadata(metadata, _OWN_METADATA)
    if isinstance(model, torch.jit.ScriptModule):  # torch's exporter fails on one with an internal assert
        raise ValueError(f"export_onnx exports an eager model (create_model's or a checkpoint's), not the TorchScript "
                         f"module {model.original_name}: export the model it was scripted or traced from")
    dtype = next(model.parameters()).dtype
    if dtype != torch.float32:
        raise ValueError(f"export_onnx writes float32 graphs (what OnnxPredictor feeds); this model's parameters are "
                         f"{dtype}: export model.float()")
    opsets = _exporter_opsets()
    if opsets is not None and (not is_whole(opset) or opset not in opsets):
        raise ValueError(f"opset must be a whole number from {opsets.start} to {opsets.stop - 1}, the ONNX opsets "
                         f"torch {torch.__version__}'s TorchScript-based exporter supports; got {opset!r}")
    if is_whole(opset) and opset < 10 and any(isinstance(m, nn.AvgPool2d) and m.ceil_mode for m in model.modules()):
        raise ValueError(f"opset {opset}: this model pools in ceil mode (the ResNet-D shortcuts of "
                         "shortcut='avg_conv_bn'), which ONNX's AveragePool has from opset 10: use opset >= 10")
    inputs = _example_inputs(model, example_length)
    names = ["signal", "extra"][: len(inputs)]
    dynamic_axes = {"signal": {0: "batch", 2: "length"}, "extra": {0: "batch"}, "logits": {0: "batch"}}
    buffer = io.BytesIO()
    with evaluating(model), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        with torch.no_grad():
            num_outputs = model(*inputs).shape[1]
        torch.onnx.export(
            model,
            inputs,
            buffer,
            **_TORCHSCRIPT_EXPORTER,
            input_names=names,
            output_names=["logits"],
            dynamic_axes={name: dynamic_axes[name] for name in [*names, "logits"]},
            opset_version=opset,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    # K is static; the exporter leaves it symbolic when no linear layer fixes it (num_classes=0: the features)
    proto.graph.output[0].type.tensor_type.shape.dim[1].dim_value = num_outputs
    onnx.helper.set_model_props(
        proto, {**metadata, "min_input_size": str(model.min_input_size), "total_stride": str(model.total_stride)}
    )
    with atomic_path(path) as partial:
        onnx.save_model(proto, str(partial))
    log.info("exported %s to ONNX (opset %d): %s", type(model).__name__, opset, path)
    return path


def _exporter_opsets() -> range | None:
    """The ONNX opsets the installed torch's TorchScript-based exporter supports (7 to 20 in torch
    2.13): those of its public modules ``torch.onnx.symbolic_opset<N>``, one per opset it has
    operator mappings for. torch states the bounds only privately (``torch.onnx._constants``, whose
    names changed between releases: ``ONNX_MAX_OPSET`` is now the dynamo-based exporter's). None
    when a torch has no such modules: the exporter then judges the opset itself."""
    found = [int(match[1]) for module in pkgutil.iter_modules(torch.onnx.__path__)
             if (match := re.fullmatch(r"symbolic_opset(\d+)", module.name))]
    return range(min(found), max(found) + 1) if found else None


class OnnxPredictor:
    """An ONNX file of :func:`export_onnx` run with onnxruntime on CPU.

    It is a :class:`msresnet1d.inference.Predictor`, so the whole-record functions of
    :mod:`msresnet1d.inference` run it like a torch model.

    Args:
        path: the ONNX file (``~`` is expanded).
        threads: onnxruntime intra-op threads, a whole number >= 1 (``None``: onnxruntime's
            default, one per core).

    Attributes:
        in_channels, extra_features, num_outputs: C, E and K of the exported model.
        min_input_size: shortest input length in samples.
        total_stride: input samples per position of the model's last stage.
        metadata: every metadata string of the file (``min_input_size``, ``total_stride`` and
            what the export was given, e.g. :func:`checkpoint_metadata`'s ``class_names``).

    Raises:
        ImportError: ``onnxruntime`` is not installed.
        TypeError: ``path`` is not a str or os.PathLike.
        IsADirectoryError: ``path`` is a folder.
        FileNotFoundError: no such file.
        ValueError: bad ``threads``; the file is not an ONNX model, or was not written by
            :func:`export_onnx`.
    """

    def __init__(self, path: str | os.PathLike[str], *, threads: int | None = None) -> None:
        ort = _require("onnxruntime")
        self.path = _file_path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX file {self.path} not found")
        options = ort.SessionOptions()
        if threads is not None:
            if not is_whole(threads) or threads < 1:
                raise ValueError(f"threads must be a whole number >= 1 (onnxruntime's intra-op threads) or None "
                                 f"(its default), got {threads!r}")
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own kinds (InvalidProtobuf, Fail, ...)
            raise ValueError(f"{self.path} is not an ONNX model onnxruntime can load (write one with "
                             f"msresnet1d.export.export_onnx): {e}") from None
        inputs = {node.name: node for node in self.session.get_inputs()}
        metadata = self.session.get_modelmeta().custom_metadata_map
        if "signal" not in inputs or "min_input_size" not in metadata:
            raise ValueError(
                f"{self.path} was not written by msresnet1d.export.export_onnx: it needs an input 'signal' and "
                f"the metadata 'min_input_size' (inputs: {', '.join(inputs)}; metadata: {', '.join(metadata)})"
            )
        self.in_channels = int(inputs["signal"].shape[1])
        self.extra_features = int(inputs["extra"].shape[1]) if "extra" in inputs else 0
        self.num_outputs = int(self.session.get_outputs()[0].shape[1])
        self.min_input_size = int(metadata["min_input_size"])
        self.total_stride = int(metadata["total_stride"])
        self.metadata: dict[str, str] = dict(metadata)

    def predict(self, x: np.ndarray | torch.Tensor, extra: np.ndarray | torch.Tensor | None = None) -> np.ndarray:
        """(N, C, L) windows and, for models with extra features, (N, E) ``extra`` -> (N, K)
        float32 logits (inputs are converted to float32). N = 0 gives (0, K) without running
        the session (as the torch models do).

        Raises:
            ValueError: a shape that does not fit the model, or ``extra`` missing or unexpected.
        """
        x = _as_float32(x)
        if x.ndim != 3:
            raise ValueError(f"expected a 3-D input (N, C, L), got shape {list(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected {self.in_channels} input channel(s), got {x.shape[1]} (input shape {list(x.shape)})"
            )
        if x.shape[2] < self.min_input_size:
            raise ValueError(f"input too short: {x.shape[2]} samples, this model needs at least {self.min_input_size}")
        feeds = {"signal": x}
        if self.extra_features:
            if extra is None:
                raise ValueError(f"this model was exported with extra_features={self.extra_features}: pass extra")
            feeds["extra"] = _as_float32(extra)
            if feeds["extra"].shape != (x.shape[0], self.extra_features):
                raise ValueError(
                    f"extra features must have shape ({x.shape[0]}, {self.extra_features}), "
                    f"got {list(feeds['extra'].shape)}"
                )
        elif extra is not None:
            raise ValueError("this model was exported without extra features: extra must be None")
        if not len(x):  # onnxruntime cannot reshape an empty batch
            return np.empty((0, self.num_outputs), dtype=np.float32)
        return self.session.run(["logits"], feeds)[0]


def _file_path(path: str | os.PathLike[str]) -> Path:
    """``path`` as a :class:`Path`, ``~`` expanded, checked to name a file: a str or os.PathLike, not a folder."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path (str or os.PathLike), got {path!r}")
    file = Path(path).expanduser()
    if file.is_dir():
        raise IsADirectoryError(f"path {str(path)!r} is a folder ({file.resolve()}): give a file in it")
    return file


def _output_path(path: str | os.PathLike[str]) -> Path:
    """:func:`_file_path`, checked to be writable (:func:`~msresnet1d.atomic.unwritable`: a file
    there that may not be written is refused; missing folders are made when the file is written,
    as every writer here does)."""
    file = _file_path(path)
    problem = unwritable(file)
    if problem:
        raise OSError(f"path {str(path)!r} cannot be written: {problem}")
    return file


def _check_model(model: nn.Module) -> None:
    missing = [name for name in _MODEL_ATTRIBUTES if not hasattr(model, name)]
    if missing:
        raise ValueError(f"cannot export {type(model).__name__}: it has no attribute {', '.join(missing)}")
    if getattr(model, "dims", 1) != 1:
        raise ValueError(f"export supports 1D models (input (N, C, L)), got dims={model.dims}")


def _example_inputs(model: nn.Module, length: int | None) -> tuple[torch.Tensor, ...]:
    """Zeros (2, C, length) (and (2, E) extra features) on the model's device, for tracing."""
    length = 8 * model.total_stride if length is None else length
    if not is_whole(length):
        raise ValueError(f"example_length must be a whole number of samples (or None: 8 x the model's total_stride), "
                         f"got {length!r}")
    if length < model.min_input_size:
        raise ValueError(f"example_length={length} samples is shorter than the model's minimum {model.min_input_size}")
    like = next(model.parameters())
    x = torch.zeros(2, model.in_channels, length, device=like.device, dtype=like.dtype)
    return (x, torch.zeros(2, model.extra_features, device=like.device, dtype=like.dtype)) if model.extra_features \
        else (x,)


def _as_float32(x: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(x, dtype=np.float32)


def _require(name: str) -> ModuleType:
    """Import an optional dependency, or say how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ImportError(
            f"ONNX export and inference need the optional package {name!r}: pip install msresnet1d[onnx]"
        ) from exc
