"""TorchScript, ONNX and torch.export files: outputs equal eager outputs at several batch sizes and lengths."""

import dataclasses
import errno
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from msresnet1d import create_model
from msresnet1d import export
from msresnet1d.export import (OnnxPredictor, export_onnx, export_program, export_torchscript, program_metadata,
                               program_min_length)

pytest.importorskip("onnxruntime")

FUSIONS = ["concat", "attention", "late"]


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """These tests run many small batches: on a shared 2-core machine, waking a second OpenMP
    thread for each operation costs more than it gives (the conftest sets 2 before this, and
    restores the count after)."""
    torch.set_num_threads(1)



def _exercised(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """``model`` with random BatchNorm scales, shifts and running statistics: a new model's
    branches end in a zero-initialised BatchNorm (zero_init_residual) and its statistics are 0
    and 1, so an export that dropped a branch or the statistics would still match it."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                for tensor, low, high in ((m.weight, 0.5, 1.5), (m.bias, -0.5, 0.5), (m.running_mean, -0.5, 0.5),
                                          (m.running_var, 0.5, 2.0)):
                    tensor.copy_(torch.rand(tensor.shape, generator=generator) * (high - low) + low)
    return model


def _inputs(model, batch: int, length: int) -> tuple[torch.Tensor, ...]:
    x = torch.randn(batch, model.in_channels, length)
    return (x, torch.randn(batch, model.extra_features)) if model.extra_features else (x,)


def _shapes(model) -> list[tuple[int, int]]:
    """(batch, length) pairs: batch sizes 1, 3 and 5; lengths other than the tracing example's,
    down to the model's minimum."""
    return [(3, 360), (1, 1001), (5, model.min_input_size)]


@pytest.mark.parametrize("method", ["script", "trace"])
@pytest.mark.parametrize("fusion", FUSIONS)
def test_torchscript_matches_eager(tmp_path, fusion, method):
    model = _exercised(create_model("msresnet1d_beat", in_channels=2, fusion=fusion))  # left in training mode
    path = export_torchscript(model, tmp_path / "model.pt", method=method)
    assert model.training, "export must restore the model's mode"
    loaded = torch.jit.load(str(path))
    model.eval()
    for batch, length in _shapes(model):
        x = _inputs(model, batch, length)
        torch.testing.assert_close(loaded(*x), model(*x), atol=1e-4, rtol=0)


@pytest.mark.parametrize("method", ["script", "trace"])
def test_torchscript_exports_a_cpu_copy_and_leaves_the_callers_model(tmp_path, monkeypatch, method):
    # the model itself was exported: a GPU model's file held CUDA tensors, which torch.jit.load cannot place on a
    # machine without a GPU (no GPU here: the copy exported is checked instead)
    model = create_model("msresnet1d_beat", in_channels=2, extra_features=2)  # in training mode
    parameters = dict(model.named_parameters())
    exported, compile_ = [], getattr(torch.jit, method)

    def recorded(module, *args, **kwargs):
        exported.append(module)
        return compile_(module, *args, **kwargs)

    monkeypatch.setattr(torch.jit, method, recorded)
    path = export_torchscript(model, tmp_path / "model.pt", method=method)
    assert exported[0] is not model
    assert all(t.device.type == "cpu" for t in [*exported[0].parameters(), *exported[0].buffers()])
    assert model.training and all(p is parameters[name] for name, p in model.named_parameters())
    assert all(t.device.type == "cpu" for t in torch.jit.load(str(path)).state_dict().values())


@pytest.mark.parametrize(
    "name, fusion, extra",
    [("msresnet1d_beat", "concat", 0), ("msresnet1d_beat", "attention", 0), ("msresnet1d_late", "late", 8),
     ("msresnet1d_small", "concat", 0)],
)  # fmt: skip
def test_onnx_matches_eager(tmp_path, name, fusion, extra):
    # msresnet1d_small and _late have a stem max-pool: the length must stay dynamic through it too.
    model = _exercised(create_model(name, in_channels=2, fusion=fusion, extra_features=extra))
    predictor = OnnxPredictor(export_onnx(model, tmp_path / "model.onnx"), threads=1)
    assert (predictor.in_channels, predictor.extra_features, predictor.num_outputs) == (2, extra, model.fc.out_features)
    assert predictor.min_input_size == model.min_input_size
    model.eval()
    for batch, length in _shapes(model):
        x = _inputs(model, batch, length)
        expected = model(*x).detach().numpy()
        np.testing.assert_allclose(predictor.predict(*x), expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("extra", [0, 3])
def test_a_model_without_linear_layer_exports_its_embedding(tmp_path, extra):
    # timm's num_classes=0: the files give the pooled features, and say how many
    model = _exercised(create_model("msresnet1d_beat", num_classes=0, extra_features=extra)).eval()
    width = model.num_features + extra
    onnx_predictor = OnnxPredictor(export_onnx(model, tmp_path / "model.onnx"), threads=1)
    assert onnx_predictor.num_outputs == width  # the exporter left this axis symbolic: it is fixed
    scripted = torch.jit.load(str(export_torchscript(model, tmp_path / "model.pt")))
    for batch, length in _shapes(model):
        x = _inputs(model, batch, length)
        expected = model(*x).detach().numpy()
        assert expected.shape == (batch, width)
        np.testing.assert_allclose(onnx_predictor.predict(*x), expected, atol=1e-4, rtol=0)
        np.testing.assert_allclose(scripted(*x).detach().numpy(), expected, atol=1e-4, rtol=0)


def test_scripted_model_keeps_rr_input_and_checks(tmp_path):
    model = _exercised(create_model("msresnet1d_beat", in_channels=2, extra_features=8)).eval()
    loaded = torch.jit.load(str(export_torchscript(model, tmp_path / "rr.pt")))
    x, extra = _inputs(model, 4, 252)
    torch.testing.assert_close(loaded(x, extra), model(x, extra), atol=1e-4, rtol=0)
    with pytest.raises(Exception, match="pass extra"):
        loaded(x)
    assert (loaded.in_channels, loaded.min_input_size, loaded.extra_features) == (2, model.min_input_size, 8)


@pytest.fixture(scope="module")
def rr_predictor(tmp_path_factory):
    model = create_model("msresnet1d_beat", in_channels=2, extra_features=8)
    return OnnxPredictor(export_onnx(model, tmp_path_factory.mktemp("onnx") / "rr.onnx"), threads=1)


@pytest.mark.parametrize(
    "shape, extra_shape, message",
    [((2, 252), (2, 8), r"3-D input \(N, C, L\), got shape \[2, 252\]"),
     ((2, 3, 252), (2, 8), r"expected 2 input channel\(s\), got 3"),
     ((2, 2, 4), (2, 8), r"too short: 4 samples.*at least \d+"),
     ((2, 2, 252), None, "extra_features=8: pass extra"),
     ((2, 2, 252), (3, 8), r"shape \(2, 8\), got \[3, 8\]")],
)  # fmt: skip
def test_onnx_predictor_names_the_bad_input(rr_predictor, shape, extra_shape, message):
    extra = None if extra_shape is None else np.zeros(extra_shape, np.float32)
    with pytest.raises(ValueError, match=message):
        rr_predictor.predict(np.zeros(shape, np.float32), extra)


def test_onnx_predictor_gives_an_empty_batch_empty_logits(rr_predictor):
    x = np.zeros((0, 2, 252), np.float32)
    out = rr_predictor.predict(x, np.zeros((0, 8), np.float32))
    assert out.shape == (0, rr_predictor.num_outputs) and out.dtype == np.float32
    with pytest.raises(ValueError, match="pass extra"):  # the input checks still apply
        rr_predictor.predict(x)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")
def test_onnx_predictor_rejects_files_of_other_exporters(tmp_path):
    model = create_model("msresnet1d_beat", in_channels=1).eval()
    path = tmp_path / "plain.onnx"
    torch.onnx.export(model, (torch.zeros(1, 1, 64),), str(path), input_names=["x"], **export._TORCHSCRIPT_EXPORTER)
    with pytest.raises(ValueError, match="not written by msresnet1d.export.export_onnx"):
        OnnxPredictor(path)
    (tmp_path / "weights.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(ValueError, match=r"weights\.onnx is not an ONNX model onnxruntime can load"):
        OnnxPredictor(tmp_path / "weights.onnx")
    with pytest.raises(FileNotFoundError, match=r"ONNX file .*nowhere\.onnx not found"):
        OnnxPredictor(tmp_path / "nowhere.onnx")


def test_onnx_predictor_names_a_folder_and_bad_threads(tmp_path, rr_predictor):
    with pytest.raises(IsADirectoryError, match=rf"path {re.escape(repr(str(tmp_path)))} is a folder"):
        OnnxPredictor(tmp_path)  # was "not found"
    with pytest.raises(ValueError, match=r"threads must be a whole number >= 1 \(onnxruntime's intra-op threads\) or "
                                         r"None \(its default\), got 1\.5$"):  # was pybind's "incompatible function"
        OnnxPredictor(rr_predictor.path, threads=1.5)
    with pytest.raises(ValueError, match=r"threads must be a whole number >= 1 .*, got 0$"):
        OnnxPredictor(rr_predictor.path, threads=0)


@pytest.mark.parametrize("fusion, extra", [("concat", 0), ("late", 5)])
def test_torch_export_program_matches_eager_and_keeps_its_metadata(tmp_path, fusion, extra):
    model = _exercised(create_model("msresnet1d_beat", in_channels=2, fusion=fusion, extra_features=extra,
                                    extra_hidden=8 if extra else 0))  # left in training mode
    path = export_program(model, tmp_path / "beat.pt2", metadata={"fs": "360"})
    assert model.training, "export must restore the model's mode"
    assert program_metadata(path) == {"fs": "360"}  # read without loading the program
    loaded = torch.export.load(path).module()
    model.eval()
    shortest = model.total_stride + 1  # torch.export specialises a last stage of one position
    assert program_min_length(model) == shortest
    for batch, length in ((3, 360), (1, 1001), (5, shortest)):
        x = _inputs(model, batch, length)
        torch.testing.assert_close(loaded(*x), model(*x), atol=1e-4, rtol=0)
    with pytest.raises(AssertionError, match=rf"Guard failed: x\.size\(\)\[2\] >= {shortest}"):
        loaded(*_inputs(model, 1, shortest - 1))
    assert program_metadata(export_program(model, tmp_path / "bare.pt2")) == {}
    with pytest.raises(ValueError, match=r"model\.onnx: not a torch\.export \(\.pt2\) file"):
        program_metadata(export_onnx(model, tmp_path / "model.onnx"))


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("export_to", [export_onnx, export_torchscript, export_program])
def test_export_checks_the_path_before_exporting(tmp_path, monkeypatch, export_to):
    model = create_model("msresnet1d_beat")
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(TypeError, match=r"path must be a file path \(str or os\.PathLike\), got None$"):
        export_to(model, None)
    for folder in ("", ".", str(tmp_path)):  # "" was "Device or resource busy: '.' -> '.'"
        with pytest.raises(IsADirectoryError, match=rf"path {re.escape(repr(folder))} is a folder \(.*\): give a file "
                                                    "in it$"):
            export_to(model, folder)
    (tmp_path / "a-file").write_text("")
    with pytest.raises(OSError, match=rf"path '~/a-file/m\.x' cannot be written: {re.escape(str(tmp_path))}/a-file is a "
                                      "file$"):
        export_to(model, "~/a-file/m.x")
    assert export_to(model, "~/m.x") == tmp_path / "m.x"  # ~ is the home folder, not a folder '~' made here
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "here", "m.x"] and not list(here.iterdir())
    assert export_to(model, "new/m.x").is_file()  # missing folders are made, as every writer here does


@pytest.mark.parametrize("module", ["onnx", "onnxruntime"])
def test_missing_optional_dependency_says_how_to_install(tmp_path, monkeypatch, module):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(ImportError, match=rf"{module}.*pip install msresnet1d\[onnx\]"):
        if module == "onnx":
            export_onnx(create_model("msresnet1d_beat"), tmp_path / "model.onnx")
        else:
            OnnxPredictor(tmp_path / "model.onnx")


def test_failed_export_keeps_the_old_file_and_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "model.pt"
    target.write_bytes(b"previous export")

    # the file is written by Python, not torch's writer, which aborts the process when the disk fills
    write_bytes = Path.write_bytes

    def disk_full(self, data):
        write_bytes(self, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_bytes", disk_full)
    with pytest.raises(OSError, match=re.escape(f"No space left on device: '{target}'")):
        export_torchscript(create_model("msresnet1d_beat"), target)
    assert target.read_bytes() == b"previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_export_rejects_bad_requests(tmp_path):
    with pytest.raises(ValueError, match=r"1D models.*dims=2"):
        export_onnx(create_model("resnet18_d2l"), tmp_path / "image.onnx")
    with pytest.raises(ValueError, match="method='compile'"):
        export_torchscript(create_model("msresnet1d_beat"), tmp_path / "m.pt", method="compile")
    model = create_model("msresnet1d_beat")
    with pytest.raises(ValueError, match=rf"example_length=4 samples.*minimum {model.min_input_size}"):
        export_torchscript(model, tmp_path / "m.pt", method="trace", example_length=4)
    with pytest.raises(ValueError, match=r"^example_length=360 sets the length of the tracing example, for "
                                         r"method='trace'; a scripted model has no example \(it takes any length\)$"):
        export_torchscript(model, tmp_path / "m.pt", example_length=360)  # ignored before
    scripted = torch.jit.script(model.eval())
    with pytest.raises(ValueError, match=r"^export_onnx exports an eager model \(create_model's or a checkpoint's\), "
                                         "not the TorchScript module MSResNet1d: export the model it was scripted"):
        export_onnx(scripted, tmp_path / "m.onnx")  # was torch's "INTERNAL ASSERT FAILED ... report a bug"
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("length", [360.0, 100.5, "360", True])
def test_export_names_an_example_length_that_is_not_a_whole_number(tmp_path, length):
    """As the docstrings say, a ValueError naming the value, not torch's TypeError from torch.zeros
    (or a comparison of a str with an int)."""
    model = create_model("msresnet1d_beat")
    with pytest.raises(ValueError, match=rf"example_length must be a whole number of samples.*got {length!r}$"):
        export_onnx(model, tmp_path / "m.onnx", example_length=length)
    with pytest.raises(ValueError, match=rf"example_length must be a whole number of samples.*got {length!r}$"):
        export_torchscript(model, tmp_path / "m.pt", method="trace", example_length=length)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("opset", [3, 6, 21, 99, 17.0, True])
def test_export_onnx_names_an_opset_the_exporter_does_not_support(tmp_path, capfd, opset):
    from torch.onnx import _constants  # torch's own bounds, private: what the public modules must agree with

    low, high = _constants.ONNX_MIN_OPSET, _constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET
    with pytest.raises(ValueError, match=rf"opset must be a whole number from {low} to {high}, the ONNX opsets torch "
                                         rf"\S+'s TorchScript-based exporter supports; got {opset!r}$"):
        export_onnx(create_model("msresnet1d_beat"), tmp_path / "m.onnx", opset=opset)
    assert not capfd.readouterr().err  # not the exporter's dump of the graph (360 lines) before its RuntimeError
    assert not list(tmp_path.iterdir())
    assert export._exporter_opsets() == range(low, high + 1)


def test_ceil_mode_pooling_needs_opset_10(tmp_path, capfd):
    model = create_model("msresnet1d_beat", shortcut="avg_conv_bn")
    with pytest.raises(ValueError, match=re.escape("opset 9: this model pools in ceil mode (the ResNet-D shortcuts of "
                                                   "shortcut='avg_conv_bn'), which ONNX's AveragePool has from opset "
                                                   "10: use opset >= 10")):
        export_onnx(model, tmp_path / "m.onnx", opset=9)
    assert not capfd.readouterr().out and not list(tmp_path.iterdir())  # not the exporter's 300-line graph dump
    export_onnx(model, tmp_path / "m.onnx", opset=10)
    export_onnx(create_model("msresnet1d_beat"), tmp_path / "plain.onnx", opset=9)  # no ceil-mode pooling


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_a_float64_model_traces_and_runs_whole_records_but_exports_to_onnx_as_float32_only(tmp_path):
    from msresnet1d.inference import classify_windows

    model = create_model("msresnet1d_beat", in_channels=1, num_classes=3).eval()
    wide = create_model("msresnet1d_beat", in_channels=1, num_classes=3).eval()
    wide.load_state_dict(model.state_dict())
    wide.double()
    x = torch.randn(2, 1, 360, dtype=torch.float64)
    traced = torch.jit.load(str(export_torchscript(wide, tmp_path / "wide.pt", method="trace")))
    torch.testing.assert_close(traced(x), wide(x))  # the tracing example had the model's dtype
    signal = np.random.default_rng(0).standard_normal((1, 3000)).astype(np.float32)
    torch.testing.assert_close(classify_windows(wide, signal, 600, 300).logits,
                               classify_windows(model, signal, 600, 300).logits, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match=r"export_onnx writes float32 graphs .*torch\.float64: export model\.float\(\)"):
        export_onnx(wide, tmp_path / "wide.onnx")
    assert not (tmp_path / "wide.onnx").exists()


def test_exporting_and_running_a_tta_wrapper_leaves_an_eval_model_as_it_was(tmp_path):
    from msresnet1d.inference import classify_windows
    from msresnet1d.models.tta import with_tta

    model = _exercised(create_model("msresnet1d_beat", in_channels=2)).eval()
    x = torch.randn(3, 2, 360)
    expected = model(x)
    wrapped = with_tta(model, "flip")
    scripted = torch.jit.load(str(export_torchscript(wrapped, tmp_path / "tta.pt")))  # method="script"
    export_onnx(wrapped, tmp_path / "tta.onnx")
    classify_windows(wrapped, np.zeros((2, 1000), np.float32), 360, 180)
    assert not model.training and torch.equal(model(x), expected)
    torch.testing.assert_close(scripted(x), wrapped(x), atol=1e-5, rtol=0)


def test_the_export_command_writes_a_checkpoints_model_with_its_tta_and_metadata(tmp_path, capsys):
    import json

    from msresnet1d.cli import main
    from msresnet1d.export import torchscript_metadata
    from msresnet1d.models.tta import with_tta
    from msresnet1d.training.checkpoint import FORMAT_VERSION, load_checkpoint, plain
    from msresnet1d.training.config import TrainConfig
    from msresnet1d.training.run import checkpoint_model, create_configured_model
    from msresnet1d.training.tasks import model_inputs, resolve_data

    cfg = resolve_data(TrainConfig(task="beats", model="msresnet1d_beat", tta="flip"))
    channels, extra = model_inputs(cfg)
    state = {"rr_mean": torch.arange(extra, dtype=torch.float64), "rr_std": torch.ones(extra, dtype=torch.float64)}
    classes = ["N", "S", "V", "F", "Q"]
    torch.save({"format": FORMAT_VERSION, "epoch": 0, "config": cfg.to_dict(), "class_names": classes,
                "model": _exercised(create_configured_model(cfg, channels, 5, extra)).state_dict(), "task_state": state},
               tmp_path / "best.pt")
    expected = with_tta(checkpoint_model(load_checkpoint(tmp_path / "best.pt")), "flip")  # what evaluate runs
    x, rr = torch.randn(3, channels, 126), torch.randn(3, extra)
    with torch.no_grad():
        logits = expected(x, rr).numpy()
    assert main(["export", str(tmp_path / "best.pt"), str(tmp_path / "beat.onnx")]) == 0
    assert capsys.readouterr().out == (
        f"exported {tmp_path / 'best.pt'} to {tmp_path / 'beat.onnx'} (onnx): inputs signal (N, {channels}, L) at "
        f"180 Hz, L = 126 as in training (any L >= 9 runs) and extra (N, {extra}), outputs (N, 5) log-probabilities "
        "(tta 'flip': the log of the mean softmax of the input and its sign-inverted copy) of N, S, V, F, Q; the "
        "file's metadata holds the config and training statistics its inputs are prepared with\n")
    predictor = OnnxPredictor(tmp_path / "beat.onnx")
    np.testing.assert_allclose(predictor.predict(x.numpy(), rr.numpy()), logits, atol=1e-4)
    meta = predictor.metadata
    assert json.loads(meta["class_names"]) == classes and meta["task"] == "beats"
    assert json.loads(meta["config"]) == plain(cfg.to_dict()) and json.loads(meta["config"])["tta"] == "flip"
    assert json.loads(meta["task_state"]) == {"rr_mean": list(range(extra)), "rr_std": [1.0] * extra}
    assert meta["min_input_size"] == "9"
    assert main(["export", str(tmp_path / "best.pt"), str(tmp_path / "beat.pt")]) == 0  # TorchScript by its ending
    assert torchscript_metadata(tmp_path / "beat.pt") == {k: v for k, v in meta.items() if k not in
                                                          ("min_input_size", "total_stride")}
    with torch.no_grad():
        np.testing.assert_allclose(torch.jit.load(tmp_path / "beat.pt")(x, rr).numpy(), logits, atol=1e-5)
    plain_model = torch.load(tmp_path / "best.pt", weights_only=True)
    plain_model["config"]["tta"] = "none"
    torch.save(plain_model, tmp_path / "plain.pt")
    capsys.readouterr()
    assert main(["export", str(tmp_path / "plain.pt"), str(tmp_path / "plain.onnx")]) == 0
    assert f"and extra (N, {extra}), outputs (N, 5) logits of N, S, V, F, Q; the file's" in capsys.readouterr().out
    capsys.readouterr()
    assert main(["export", str(tmp_path / "best.pt"), str(tmp_path / "beat.pt2")]) == 0  # torch.export by its ending
    said = capsys.readouterr().out
    assert "(pt2): inputs signal (N, 2, L) at 180 Hz, L = 126 as in training (any L >= 17 runs)" in said
    assert program_metadata(tmp_path / "beat.pt2") == torchscript_metadata(tmp_path / "beat.pt")
    with torch.no_grad():
        np.testing.assert_allclose(torch.export.load(tmp_path / "beat.pt2").module()(x, rr).numpy(), logits, atol=1e-5)
    assert main(["export", str(tmp_path / "best.pt"), str(tmp_path / "beat.bin")]) == 1
    assert "beat.bin: give --format onnx, torchscript or pt2 (or a file ending in .onnx, .pt, .pth, .ts, .pt2)" in \
        capsys.readouterr().err
    assert main(["export", str(tmp_path / "best.pt"), str(tmp_path / "beat.pt"), "--opset", "13"]) == 1
    assert f"--opset is an ONNX option; {tmp_path / 'beat.pt'} is a torchscript file" in capsys.readouterr().err
    # a checkpoint is never replaced (a TorchScript file ends in .pt too): the one exported, or another
    (tmp_path / "last.pt").write_bytes((tmp_path / "best.pt").read_bytes())
    for target in ("best.pt", "last.pt"):
        assert main(["export", str(tmp_path / "best.pt"), str(tmp_path / target)]) == 1
        assert f"{target} is a checkpoint (torch.save's): the export would replace it" in capsys.readouterr().err
    assert load_checkpoint(tmp_path / "best.pt")["class_names"] == classes
    assert main(["export", str(tmp_path / "best.pt"), str(tmp_path / "beat.pt")]) == 0  # an older export: replaced
    # nor a file of the checkpoint's run (its config.json was replaced, and its --resume failed "not valid JSON")
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "best.pt").write_bytes((tmp_path / "best.pt").read_bytes())
    for name in ("config.json", "log.csv"):
        (run / name).write_text("kept")
        assert main(["export", str(run / "checkpoints" / "best.pt"), str(run / name), "--format", "onnx"]) == 1
        assert (f"export to {run / name} would overwrite {run / name}, which this export reads or its run needs: "
                "give another file") in capsys.readouterr().err
        assert (run / name).read_text() == "kept"
    for _ in range(2):  # a TorchScript export beside the checkpoints is written again (it was refused the second time)
        assert main(["export", str(run / "checkpoints" / "best.pt"), str(run / "checkpoints" / "model.pt")]) == 0
    # the export given where a checkpoint is read: named
    with pytest.raises(ValueError, match=r"beat\.pt is a TorchScript file \(torch\.jit\.save, msresnet1d export\), not a "
                                         r"checkpoint: load it with torch\.jit\.load"):
        load_checkpoint(tmp_path / "beat.pt")
    # a checkpoint whose config holds no [data] defaults (before runs resolved them): the message fills them in
    unresolved = TrainConfig(task="beats", model="msresnet1d_beat", data={"rr": False, "template": False})
    torch.save({"format": FORMAT_VERSION, "epoch": 0, "config": unresolved.to_dict(), "class_names": classes,
                "model": create_configured_model(unresolved, 1, 5).state_dict(), "task_state": {}}, tmp_path / "old.pt")
    assert main(["export", str(tmp_path / "old.pt"), str(tmp_path / "old.onnx")]) == 0
    assert "at 180 Hz, L = 126 as in training" in capsys.readouterr().out
    # a damaged zip where a checkpoint is read, or where the export writes: named, not a traceback
    import struct  # an end record naming one entry whose central directory is zeros

    (tmp_path / "bad.pt").write_bytes(bytes(46) + b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, 1, 1, 46, 0, 0))
    with pytest.raises(ValueError, match=r"bad\.pt is not a file torch\.save wrote \(a damaged zip archive"):
        load_checkpoint(tmp_path / "bad.pt")
    assert main(["export", str(tmp_path / "best.pt"), str(tmp_path / "bad.pt")]) == 0  # not a checkpoint: replaced
    capsys.readouterr()
    model = create_model("msresnet1d_beat")
    with pytest.raises(ValueError, match=r"metadata key\(s\) total_stride: written by the export itself"):
        export_onnx(model, tmp_path / "x.onnx", metadata={"total_stride": "1"})
    with pytest.raises(ValueError, match="metadata must map strings to strings"):
        export_torchscript(model, tmp_path / "x.pt", metadata={"classes": 5})
    export_torchscript(model, tmp_path / "plain.pt")
    assert torchscript_metadata(tmp_path / "plain.pt") == {}
    onnx = export_onnx(model, tmp_path / "beat.onnx")  # not TorchScript: was torch's RuntimeError
    with pytest.raises(ValueError, match=re.escape(f"{onnx}: not a TorchScript file, or one this torch cannot load "
                                                   "(PytorchStreamReader failed reading zip archive")):
        torchscript_metadata(onnx)


@pytest.mark.parametrize("task", ["beats", "rhythm"])
def test_the_metadata_says_how_to_prepare_a_record_without_the_package(task):
    import json

    import scipy.signal as sps
    import wfdb

    from msresnet1d.data.preprocess import preprocess_signal
    from msresnet1d.export import checkpoint_metadata
    from msresnet1d.training.config import TrainConfig
    from msresnet1d.training.tasks import resolve_data

    cfg = resolve_data(TrainConfig(task=task, data={"band": [0.5, 30.0]}))
    steps = json.loads(checkpoint_metadata({"config": cfg.to_dict(), "class_names": ["a", "b"],
                                            "task_state": {}})["preprocessing"])
    record = wfdb.rdrecord(str(Path(__file__).resolve().parents[1] / "datasets" / "mitdb-sample" / "100"), channels=[0])
    x, fs = record.p_signal.T, float(record.fs)
    # what a program without this package does from the metadata alone (no NaN or flat run in this record)
    assert (steps["filter"], steps["zero_phase"], steps["resampler"]) == (
        "butterworth", "scipy.signal.sosfiltfilt", "scipy.signal.resample_poly")
    sos = sps.butter(steps["filter_order"], steps["band_hz"], btype="bandpass", fs=fs, output="sos")
    y = sps.sosfiltfilt(sos, x, axis=-1, padlen=3 * (2 * len(sos) + 1))
    y = sps.resample_poly(y, int(steps["fs_hz"]), int(fs), axis=-1)
    assert steps["normalization"] == "zscore"
    y = (y - y.mean(axis=-1, keepdims=True)) / y.std(axis=-1, keepdims=True)
    expected = preprocess_signal(x, fs, target_fs=cfg.data["fs"], band=(0.5, 30.0), normalization="zscore")
    np.testing.assert_allclose(y, expected, atol=1e-5)
    fashion = resolve_data(TrainConfig(task="fashion_mnist", model="resnet18_2d"))
    assert "preprocessing" not in checkpoint_metadata({"config": fashion.to_dict(), "class_names": ["a"], "task_state": {}})


@pytest.mark.parametrize("module", ["msresnet1d", "msresnet1d.models", "msresnet1d.data", "msresnet1d.inference",
                                    "msresnet1d.sklearn", "msresnet1d.export", "msresnet1d.predict"])
def test_a_star_import_gives_the_public_names_and_no_library(module):
    import importlib

    namespace: dict = {}
    exec(f"from {module} import *", namespace)
    assert set(importlib.import_module(module).__all__) == set(namespace) - {"__builtins__"}
    assert not {"torch", "np", "nn", "os", "json", "wfdb", "Path"} & set(namespace)


def test_the_submodules_are_attributes_of_their_package_once_it_is_imported():
    # msresnet1d.data.beats and msresnet1d.training.run raised AttributeError unless something had imported them
    import subprocess
    import sys

    code = ("import sys, msresnet1d, msresnet1d.data, msresnet1d.training\n"
            "assert 'torch' not in sys.modules\n"
            "print(msresnet1d.data.beats.__name__, msresnet1d.data.augment.__name__, msresnet1d.training.run.__name__,"
            " msresnet1d.inference.__name__, msresnet1d.sklearn.__name__, msresnet1d.training.tasks.__name__)\n"
            "assert {'data', 'training', 'sklearn'} <= set(dir(msresnet1d)) and 'run' in dir(msresnet1d.training)\n"
            "for package, name in [(msresnet1d, 'nope'), (msresnet1d.data, 'nope'), (msresnet1d.training, 'nope')]:\n"
            "    try:\n        getattr(package, name)\n    except AttributeError as e:\n        print(e)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "msresnet1d.data.beats msresnet1d.data.augment msresnet1d.training.run msresnet1d.inference msresnet1d.sklearn "
        "msresnet1d.training.tasks",
        "module 'msresnet1d' has no attribute 'nope'", "module 'msresnet1d.data' has no attribute 'nope'",
        "module 'msresnet1d.training' has no attribute 'nope'"]


def test_models_name_the_type_every_preset_builds():
    from msresnet1d.models import ResidualNetwork

    assert isinstance(create_model("resnet18_d2l"), ResidualNetwork)


def test_a_checkpoint_builds_its_model_after_a_preset_default_changes_and_names_itself_in_errors(
        tmp_path, monkeypatch):
    # a checkpoint kept only the model options given: a later release changing a default that leaves the
    # weights' shapes (stem_pool) loaded it without a word, into another model
    from msresnet1d import __version__
    from msresnet1d.models import registry
    from msresnet1d.models.msresnet import MSResNet1d
    from msresnet1d.training.checkpoint import FORMAT_VERSION, code_version
    from msresnet1d.training.config import TrainConfig
    from msresnet1d.training.configured import checkpoint_config, resolve_model
    from msresnet1d.training.run import checkpoint_model, create_configured_model
    from msresnet1d.training.tasks import model_inputs, resolve_data

    given = resolve_data(TrainConfig(task="beats", model="msresnet1d_beat", model_kwargs={"kernels": [3, 9]}))
    cfg = resolve_model(given)
    assert cfg.model_kwargs["kernels"] == [3, 9] and cfg.model_kwargs["stem_pool"] is True
    assert cfg.model_kwargs["widths"] == [16, 32, 64] and not {"in_channels", "num_classes"} & set(cfg.model_kwargs)
    assert resolve_model(cfg) == cfg
    channels, extra = model_inputs(cfg)
    state = {"rr_mean": torch.zeros(extra, dtype=torch.float64), "rr_std": torch.ones(extra, dtype=torch.float64)}
    trained = _exercised(create_configured_model(cfg, channels, 5, extra)).eval()
    x, rr = torch.randn(2, channels, 126), torch.randn(2, extra)
    with torch.no_grad():
        expected = trained(x, rr)

    def checkpoint(config: TrainConfig, **more) -> dict:
        return {"format": FORMAT_VERSION, "epoch": 0, "config": config.to_dict(), "model": trained.state_dict(),
                "class_names": ["N", "S", "V", "F", "Q"], "task_state": state, **more}

    def newer_preset(in_channels: int = 1, num_classes: int = 5, **kwargs) -> MSResNet1d:  # stem_pool now False
        preset = {"widths": (16, 32, 64), "stem_channels": 16, "stem_pool": False}
        return MSResNet1d.with_arguments(in_channels=in_channels, num_classes=num_classes, **{**preset, **kwargs})

    monkeypatch.setitem(registry._MODELS, "msresnet1d_beat", newer_preset)
    with torch.no_grad():
        assert torch.equal(checkpoint_model(checkpoint(cfg))(x, rr), expected)
        assert not torch.allclose(checkpoint_model(checkpoint(given))(x, rr), expected)  # as checkpoints were
    # errors name the checkpoint (they began "config:" or named no file), with both releases when they differ
    newer = checkpoint(dataclasses.replace(cfg, model_kwargs={**cfg.model_kwargs, "norm": "layer"}), code="9.0.0+abc")
    with pytest.warns(UserWarning, match=r"checkpoint new\.pt was written by msresnet1d 9\.0\.0; this is "
                                         rf"{re.escape(__version__)}"):
        with pytest.raises(ValueError, match=rf"^checkpoint new\.pt: model 'msresnet1d_beat' with \[model_kwargs\] .*"
                                             rf"takes no option 'norm'.* \(written by msresnet1d 9\.0\.0; this is "
                                             rf"{re.escape(__version__)}\)$"):
            checkpoint_config(newer, "checkpoint new.pt")
    with pytest.raises(ValueError, match=r"^checkpoint new\.pt: \[data\] of task 'beats': unknown key\(s\) notch_hz"):
        checkpoint_config(checkpoint(dataclasses.replace(cfg, data={**cfg.data, "notch_hz": 50})), "checkpoint new.pt")
    with pytest.raises(ValueError, match=r"^checkpoint old\.pt: its task_state has no rr_std, the statistics its "
                                         r"model's extra \(RR\) features are standardised with"):
        checkpoint_model({**checkpoint(cfg), "task_state": {"rr_mean": state["rr_mean"]}}, "checkpoint old.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # this release's checkpoint: no warning
        checkpoint_config(checkpoint(cfg, code=code_version()))


def test_model_options_are_recorded_only_where_the_factory_takes_them_back(monkeypatch):
    # a user's factory wrapping a preset and setting widths itself got widths twice: its runs and its old
    # checkpoints stopped building
    from msresnet1d.models import registry
    from msresnet1d.models.msresnet import MSResNet1d
    from msresnet1d.training.config import TrainConfig
    from msresnet1d.training.configured import checkpoint_config, resolve_model
    from msresnet1d.training.tasks import model_inputs, resolve_data

    def wrapper(in_channels: int = 1, num_classes: int = 5, **kwargs) -> MSResNet1d:
        return create_model("msresnet1d_beat", in_channels=in_channels, num_classes=num_classes, widths=(8, 16, 32),
                            **kwargs)

    def plain(in_channels: int = 1, num_classes: int = 5, **kwargs) -> MSResNet1d:  # no arguments recorded
        return MSResNet1d(in_channels=in_channels, num_classes=num_classes, **kwargs)

    class Wider(MSResNet1d):
        def __init__(self, factor: int = 2, act=torch.nn.ReLU, **kwargs) -> None:  # act: not a JSON value
            super().__init__(**kwargs)

    def subclassed(in_channels: int = 1, num_classes: int = 5, **kwargs) -> Wider:
        return Wider.with_arguments(in_channels=in_channels, num_classes=num_classes, **kwargs)

    assert Wider.with_arguments(widths=(8, 16, 32)).arguments == {"factor": 2, "act": torch.nn.ReLU,
                                                                  "widths": (8, 16, 32)}
    for name, factory in (("wrapper", wrapper), ("plain", plain), ("subclassed", subclassed)):
        monkeypatch.setitem(registry._MODELS, name, factory)
        cfg = resolve_data(TrainConfig(task="beats", model=name, model_kwargs={"kernels": [3, 9]}))
        assert resolve_model(cfg) == cfg, name
        extra = model_inputs(cfg)[1]
        checkpoint_config({"config": cfg.to_dict(), "class_names": ["N", "S", "V", "F", "Q"],
                           "task_state": {"rr_mean": torch.zeros(extra), "rr_std": torch.ones(extra)}})
