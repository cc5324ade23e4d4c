"""The ``msresnet1d`` command's own behaviour: ``python -m msresnet1d``, its flags, resuming a run
from its folder alone and what an interruption says. Runs are tiny, on the embedded sample."""

import errno
import logging
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import msresnet1d.training.engine as engine
from msresnet1d.cli import build_parser, main
from msresnet1d.training.checkpoint import load_checkpoint

SAMPLE = Path(__file__).resolve().parents[1] / "datasets" / "mitdb-sample"

TINY = f"""
name = "tiny"
epochs = 2
batch_size = 128
threads = 1
[model_kwargs]
widths = [8, 8, 8]
stem_channels = 8
kernels = [3, 9]
[data]
data_dir = "{SAMPLE}"
train_records = ["101", "106", "118", "119"]
val_records = ["106"]
test_records = ["100", "105"]
cache = false
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


def test_python_dash_m_runs_the_command():
    result = subprocess.run([sys.executable, "-m", "msresnet1d", "--help"], capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert result.returncode == 0 and result.stdout.startswith("usage: msresnet1d ")
    assert "The msresnet1d command: train, evaluate" in result.stdout  # plain text, not the docstring's ``markup``


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_the_command_imports_no_training_library_before_it_parses(flag):
    # --help and --version loaded sklearn, scipy, wfdb and pandas (the training engine, predict's module): ~3 s
    # more; then torch (the package's models, the config's TTA modes, the rank for warnings): 1.6 s and 200 MB
    code = ("import sys\nfrom msresnet1d.cli import main\ntry:\n    main([sys.argv[1]])\nexcept SystemExit:\n    pass\n"
            "print(sorted({'torch', 'sklearn', 'scipy', 'wfdb', 'pandas', 'msresnet1d.predict'} & set(sys.modules)), "
            "file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code, flag], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.stdout.startswith("usage: msresnet1d" if flag == "--help" else "msresnet1d ")
    assert result.stderr == "[]\n"


def test_info_and_the_training_engine_import_no_scikit_learn():
    # the engine's error class, caught by every command, imported the metrics and with them sklearn, scipy
    # and pandas: about a second more for info and export
    code = ("import sys\nfrom msresnet1d.cli import main\nmain(['info'])\nimport msresnet1d.training.run\n"
            "print(sorted({'sklearn', 'scipy', 'wfdb', 'pandas', 'matplotlib'} & set(sys.modules)), file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert "msresnet1d_beat" in result.stdout and result.stderr == "[]\n"


def test_a_path_that_is_not_utf_8_is_printed_escaped_by_a_program():
    # a folder named in Latin-1 reaches Python as a surrogate; a strict UTF-8 stdout (a UTF-8 locale, or
    # PYTHONIOENCODING) ended a finished train or predict with "error: 'utf-8' codec can't encode ..."
    code = ("import sys\nfrom msresnet1d.arguments import as_program\nwith as_program():\n"
            "    print('wrote', sys.argv[1])\nprint(sys.stdout.errors)")
    result = subprocess.run([sys.executable, "-c", code, b"/tmp/lat\xfcn/100.pred"], capture_output=True, timeout=120,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8"})
    assert (result.returncode, result.stdout, result.stderr) == (0, b"wrote /tmp/lat\\udcfcn/100.pred\nstrict\n", b"")


@pytest.mark.parametrize("dev", [False, True])
def test_a_program_ends_an_error_with_one_line_or_under_dev_mode_its_traceback(dev):
    code = "from msresnet1d.arguments import as_program\nwith as_program():\n    raise ValueError('no record 999')"
    result = subprocess.run([sys.executable, *(["-X", "dev"] if dev else []), "-c", code], capture_output=True,
                            text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 1
    if dev:  # a bug's ValueError keeps where it came from
        assert "Traceback (most recent call last)" in result.stderr and "ValueError: no record 999" in result.stderr
    else:
        assert result.stderr == "error: no record 999\n"


def test_a_program_whose_reader_stops_ends_quietly():
    # msresnet1d info | head: the first write to the closed pipe ended with "error: [Errno 32] Broken pipe"
    # (and an "Exception ignored" traceback when Python flushed at exit)
    reader, writer = os.pipe()
    os.close(reader)  # the reader is gone before the program writes
    try:
        result = subprocess.run([sys.executable, "-m", "msresnet1d", "info"], stdout=writer, stderr=subprocess.PIPE,
                                text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    finally:
        os.close(writer)
    assert (result.returncode, result.stderr) == (141, "")


def test_a_broken_pipe_that_is_not_stdouts_is_an_error_and_a_closed_stdout_is_no_reader_gone():
    # a worker's pipe broken (a benchmark's worker killed) ended the program with 141 and no word, as if its
    # reader had stopped; and a program started with stdout closed (>&-) failed flushing sys.stdout, which is None
    import shlex

    program = "import sys\nfrom msresnet1d.arguments import as_program\nwith as_program():\n    "
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", program + "raise BrokenPipeError(32, 'Broken pipe')"],
                            capture_output=True, text=True, timeout=120, env=env)
    assert (result.returncode, result.stderr) == (1, "error: [Errno 32] Broken pipe\n")
    result = subprocess.run(shlex.join([sys.executable, "-c", program + "print('wrote')"]) + " >&-", shell=True,
                            stderr=subprocess.PIPE, text=True, timeout=120, env=env)
    assert (result.returncode, result.stderr) == (0, "")


def test_version_is_the_packages(capsys):
    import msresnet1d

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0 and capsys.readouterr().out == f"msresnet1d {msresnet1d.__version__}\n"


def test_the_citation_file_cites_this_version_and_the_datas_sources():
    # CITATION.cff (GitHub's "Cite this repository") must follow a release, and cite what the README asks to cite
    import tomllib

    import msresnet1d

    repo = Path(__file__).resolve().parents[1]
    cff = (repo / "CITATION.cff").read_text(encoding="utf-8")
    assert re.search(r'^version: "([^"]+)"$', cff, flags=re.M).group(1) == msresnet1d.__version__ == \
        tomllib.loads((repo / "pyproject.toml").read_text())["project"]["version"]
    readme = (repo / "README.md").read_text(encoding="utf-8")
    for source in ("Moody", "Clifford", "Goldberger", "Xiao", "10.13026/C2F305", "arXiv:1708.07747"):
        assert source in cff and source in readme, source


@pytest.mark.parametrize("command", [["train"], ["evaluate", "x.pt"], ["predict", "x.pt", "rec"]])
def test_threads_are_a_whole_number_from_0_the_torch_default(command, capsys):
    parser = build_parser()
    assert parser.parse_args([*command, "--threads", "0"]).threads == 0
    assert parser.parse_args([*command, "--threads", "3"]).threads == 3
    assert parser.parse_args([*command, "--threads", "1024"]).threads == 1024
    for bad in ("-1", "1.5", "x", "1025", "99999999999999999999"):  # torch overflowed, or ran out of memory
        with pytest.raises(SystemExit):
            parser.parse_args([*command, "--threads", bad])
        assert (f"{bad!r}: torch threads are a whole number >= 0 (0: PyTorch's default), at most 1024"
                in capsys.readouterr().err)


@pytest.mark.parametrize("command, flag", [
    (["train"], "--config"), (["train"], "--out"), (["train"], "--data-dir"), (["evaluate", "x.pt"], "--data-dir"),
    (["evaluate", "x.pt"], "--json"), (["predict", "x.pt", "rec"], "--out-dir"), (["download", "mitdb"], "--data-dir"),
])
def test_an_empty_path_is_refused_not_taken_as_the_default(command, flag, capsys):
    # --config "$CFG" with CFG unset trained the main job; --data-dir "" read the config's data
    with pytest.raises(SystemExit):
        build_parser().parse_args([*command, flag, ""])
    assert (f"argument {flag}: empty: give a path (an unset shell variable?), or leave the flag out"
            in capsys.readouterr().err)


def test_a_run_name_is_one_folder_name_where_it_names_the_folder(tmp_path, monkeypatch):
    from msresnet1d.training.config import TrainConfig

    monkeypatch.chdir(tmp_path)
    # runs/<name>/<time>: not outside runs/, not runs/<time>; and a name Windows takes (runs copied there)
    for name in ("../escaped", "", "a/b", "..", "lr:0.1", "a?", "tab\there", "run.", "run ", "con", "Com1.txt"):
        with pytest.raises(SystemExit, match=re.escape(
                f"error: run name {name!r} must be one folder name for runs/<name>/<time> (not empty, no "
                "/ \\ < > : \" | ? * or control character, not ending in . or a space, not a name Windows reserves "
                "such as CON or COM1): give another --name, or the run folder with --out")):
            main(["train", "--name", name, "--epochs", "1"])
    assert not (tmp_path / "runs").exists() and not (tmp_path.parent / "escaped").exists()
    # a saved config (a checkpoint's, a run folder's) with such a name still loads: the name is no path there
    assert TrainConfig.from_dict({"name": "exp/seed1"}).name == "exp/seed1"


def test_experiment_scripts_take_distinct_seeds_and_checked_configs(capsys):
    import argparse

    from msresnet1d.arguments import add_seeds, config_or_exit, seed_value

    parser = argparse.ArgumentParser()
    add_seeds(parser, [0, 1, 2], "training seeds")
    parser.add_argument("--seed", type=seed_value)
    assert parser.parse_args([]).seeds == [0, 1, 2] and parser.parse_args(["--seeds", "3", "0"]).seeds == [3, 0]
    assert parser.parse_args(["--seed", str(2**32 - 1)]).seed == 2**32 - 1
    for bad, message in ((["--seeds", "0", "0"], "--seeds: each seed once, got [0, 0]"),
                         (["--seeds", "-1"], "'-1': a seed is a whole number from 0 to 2**32 - 1"),
                         (["--seed", str(2**32)], f"'{2**32}': a seed is a whole number"),
                         (["--seeds", "1.5"], "'1.5': a seed is a whole number")):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):  # train's --seed is the same seed
        build_parser().parse_args(["train", "--seed", str(2**32)])
    assert f"'{2**32}': a seed is a whole number from 0 to 2**32 - 1" in capsys.readouterr().err
    # a config is built and checked as train checks it before reading data, or a usage error names the key
    assert config_or_exit(parser, "mitdb_beats", {"epochs": 2}).epochs == 2
    for overrides, message in (({"foo": 1}, "unknown key(s) foo"), ({"data.fs": -1}, "[data] fs must be"),
                               ({"model_kwargs.nosuch": 1}, "model 'msresnet1d_beat' with [model_kwargs]")):
        with pytest.raises(SystemExit):
            config_or_exit(parser, "mitdb_beats", overrides)
        assert message in capsys.readouterr().err


def test_resume_alone_continues_the_run_with_its_own_config(tmp_path, config, monkeypatch, capsys):
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "straight"), "--quiet"]) == 0
    save = engine.atomic_save

    def interrupted_after_epoch_1(state, path):
        if state["epoch"] == 1:
            raise KeyboardInterrupt
        save(state, path)

    run = tmp_path / "run"
    monkeypatch.setattr(engine, "atomic_save", interrupted_after_epoch_1)
    capsys.readouterr()
    assert main(["train", "--config", str(config), "--out", str(run), "--quiet"]) == 130
    last = run / "checkpoints" / "last.pt"
    assert (f"interrupted: the last completed epoch is in {last} (continue with msresnet1d train --out {run} "
            "--resume)") in capsys.readouterr().err
    assert load_checkpoint(last)["epoch"] == 0
    for full in (OSError(errno.ENOSPC, "No space left on device", str(last)),  # Python's writes, and torch's
                 OSError(f"cannot write {last}: unexpected pos 752320 vs 752216 (is the disk full?)")):
        def disk_full(state, path, error=full):
            raise error

        monkeypatch.setattr(engine, "atomic_save", disk_full)
        assert main(["train", "--out", str(run), "--resume", "--quiet"]) == 1
        assert capsys.readouterr().err.endswith(f"; the last completed epoch is in {last} (once there is room, "
                                                f"continue with msresnet1d train --out {run} --resume)\n")
        assert load_checkpoint(last)["epoch"] == 0
    monkeypatch.setattr(engine, "atomic_save", save)
    # a setting that differs from the run's is still refused, before any data is read, and leaves the run as it was
    def no_data(*args, **kwargs):
        raise AssertionError("the data were read")

    with monkeypatch.context() as patched:
        patched.setattr("msresnet1d.training.run.build_task", no_data)
        assert main(["train", "--out", str(run), "--resume", "--quiet", "--set", "lr=0.01"]) == 1
    assert "another model or config (lr: then 0.003, now 0.01)" in capsys.readouterr().err
    assert main(["train", "--out", str(run), "--resume"]) == 0
    assert f"resumed {last}: 1 of 2 epochs done" in capsys.readouterr().out
    a, b = (load_checkpoint(folder / "checkpoints" / "last.pt") for folder in (tmp_path / "straight", run))
    assert a["epoch"] == b["epoch"] == 1
    assert all(torch.equal(value, b["model"][key]) for key, value in a["model"].items())
    # a finished run is left as it is: not trained, not tested again, no file rewritten
    files = {path: path.stat().st_mtime_ns for path in run.rglob("*") if path.is_file()}
    with monkeypatch.context() as patched:
        patched.setattr("msresnet1d.training.run.build_task", no_data)
        assert main(["train", "--out", str(run), "--resume"]) == 0
    assert f"{run} holds a finished run (metrics.json is written last): nothing to resume" in capsys.readouterr().out
    assert {path: path.stat().st_mtime_ns for path in run.rglob("*") if path.is_file()} == files


def _gpus(monkeypatch, count: int) -> None:
    """torch.cuda as on a machine with ``count`` GPUs (none here): is_available and device_count."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


def test_resolve_device_takes_cpu_cuda_cuda_n_and_auto(monkeypatch):
    from msresnet1d.training.distributed import resolve_device

    _gpus(monkeypatch, 0)
    assert resolve_device("auto") == resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="device 'cuda:0' requested but no CUDA GPU is available"):
        resolve_device("cuda:0")
    _gpus(monkeypatch, 2)
    assert resolve_device("auto") == resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("cuda", local_rank=1) == resolve_device("auto", 1) == torch.device("cuda", 1)
    assert resolve_device("cpu", local_rank=3) == torch.device("cpu")
    _gpus(monkeypatch, 1)  # under torchrun with one GPU a process (SLURM's --gpus-per-task=1): LOCAL_RANK 1 sees cuda:0
    assert resolve_device("cuda:0", local_rank=1, local_world_size=2) == torch.device("cuda", 0)
    _gpus(monkeypatch, 2)  # two processes that see both GPUs: both would take cuda:0
    with pytest.raises(ValueError, match=re.escape("device 'cuda:0': each of this machine's 2 processes sees 2 GPUs "
                                                   "and would take the same one: give --device cuda")):
        resolve_device("cuda:0", local_rank=1, local_world_size=2)


@pytest.mark.parametrize("device, env, message", [
    ("cudax", {}, "device 'cudax': expected cpu, cuda, cuda:N (N = 0, 1, ...: a GPU's index) or auto"),
    ("cuda:abc", {}, "device 'cuda:abc': expected cpu, cuda, cuda:N"),
    ("cuda:-1", {}, "device 'cuda:-1': expected cpu, cuda, cuda:N"),
    ("CPU", {}, "device 'CPU': expected cpu, cuda, cuda:N"),
    ("cuda:5", {}, "device 'cuda:5': this process sees 1 GPU(s), cuda:0 to cuda:0"),
    ("cuda", {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "1"},
     "device 'cuda': this process's GPU is cuda:1 (its LOCAL_RANK), but it sees 1 GPU(s): start at most 1 "
     "process(es) a machine (torchrun --nproc_per_node), or, where each process sees its own GPU, give --device "
     "cuda:0"),
])
def test_a_device_the_machine_does_not_have_is_an_error_line(tmp_path, config, monkeypatch, capsys, device, env,
                                                             message):
    # cuda:5 with one GPU ended in fork_rng's IndexError, cuda:abc and cuda:-1 in torch's RuntimeError, cudax was cuda
    _gpus(monkeypatch, 1)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run"), "--device", device]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1  # one line, no traceback
    assert not (tmp_path / "run").exists()


def test_a_gpu_out_of_memory_says_how_to_go_on(tmp_path, config, monkeypatch, capsys):
    # torch's OutOfMemoryError (a RuntimeError) was a bare traceback; it now says how to resume, with what
    save = engine.atomic_save

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    def after_epoch_1(state, path):
        if state["epoch"] == 1:
            out_of_memory()
        save(state, path)

    run = tmp_path / "run"
    with monkeypatch.context() as patched:
        patched.setattr("msresnet1d.training.run.build_task", out_of_memory)
        assert main(["train", "--config", str(config), "--out", str(run), "--quiet"]) == 1
    assert capsys.readouterr().err == (
        "error: out of GPU memory (CUDA out of memory. Tried to allocate 2.00 GiB)\nbefore the first epoch finished, "
        f"so no checkpoint was saved in {run}: train again with a smaller --batch-size, or --set "
        "eval_batch_size=<smaller> if validation or the test ran out\n")
    with monkeypatch.context() as patched:  # under torchrun, another rank that runs out says so, with its rank
        patched.setattr("msresnet1d.training.run.build_task", out_of_memory)
        patched.setattr("msresnet1d.training.distributed.launched_rank", lambda: 1)
        assert main(["train", "--config", str(config), "--out", str(tmp_path / "rank1"), "--quiet"]) == 1
    assert capsys.readouterr().err.endswith(
        "error: rank 1: out of GPU memory (CUDA out of memory. Tried to allocate 2.00 GiB)\n")
    monkeypatch.setattr(engine, "atomic_save", after_epoch_1)
    assert main(["train", "--config", str(config), "--out", str(run), "--quiet"]) == 1
    last = run / "checkpoints" / "last.pt"
    assert capsys.readouterr().err == (
        "error: out of GPU memory (CUDA out of memory. Tried to allocate 2.00 GiB)\nthe last completed epoch is in "
        f"{last} (continue with msresnet1d train --out {run} --resume, adding --set eval_batch_size=<smaller> if "
        "validation or the test ran out); a training step that ran out needs a smaller --batch-size, in a new run "
        "(another --out)\n")
    monkeypatch.setattr(engine, "atomic_save", save)
    assert main(["train", "--out", str(run), "--resume", "--quiet", "--set", "eval_batch_size=64"]) == 0  # as said
    assert (run / "metrics.json").is_file()


def test_resume_without_a_config_needs_a_run_to_continue(tmp_path, capsys):
    with pytest.raises(SystemExit, match=r"--resume: .*empty.config.json not found, so .*empty holds no run to "
                                         "continue"):
        main(["train", "--out", str(tmp_path / "empty"), "--resume", "--quiet"])
    assert not (tmp_path / "empty").exists()


def test_a_config_that_is_a_folder_or_missing_is_named(tmp_path):
    with pytest.raises(SystemExit, match=rf"config '{tmp_path}' is a folder; give a config file"):
        main(["train", "--config", str(tmp_path)])
    with pytest.raises(SystemExit, match=r"config 'nosuch' not found \(a file path, or one of: .*mitdb_beats"):
        main(["train", "--config", "nosuch"])


def test_an_interruption_before_the_first_epoch_says_nothing_was_saved(tmp_path, config, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("msresnet1d.training.run.build_task", interrupted)  # while the data loads
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run"), "--quiet"]) == 130
    err = capsys.readouterr().err
    assert f"interrupted before the first epoch finished: no checkpoint was saved in {tmp_path / 'run'}" in err
    assert "last.pt" not in err
    # under torchrun rank 0 alone says it: another rank may have been stopped because one failed
    monkeypatch.setattr("msresnet1d.training.distributed.launched_rank", lambda: 1)
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run"), "--quiet"]) == 130
    assert "interrupted" not in capsys.readouterr().err


def test_train_from_another_thread_runs_without_a_signal_handler_and_restores_the_main_ones(tmp_path, config,
                                                                                               monkeypatch, capsys):
    import signal
    import threading

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("msresnet1d.training.run.build_task", stop)
    codes: list[int] = []
    worker = threading.Thread(target=lambda: codes.append(main(["train", "--config", str(config), "--out",
                                                                 str(tmp_path / "a"), "--quiet"])))
    worker.start()
    worker.join()
    assert codes == [130] and "signal only works in main thread" not in capsys.readouterr().err
    before = signal.getsignal(signal.SIGTERM)
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "b"), "--quiet"]) == 130
    assert signal.getsignal(signal.SIGTERM) is before


def test_run_as_the_program_each_warning_is_one_line_once(monkeypatch, capsys):
    import msresnet1d.cli as cli

    def warns(args):
        for _ in range(2):
            warnings.warn("the embedded sample, not the database")  # e.g. from two places reading the data
        return 0

    monkeypatch.setattr(cli, "cmd_info", warns)
    monkeypatch.setattr(sys, "argv", ["msresnet1d", "info"])
    warnings.simplefilter("default")  # as Python starts without -W or PYTHONWARNINGS (pytest restores the filters)
    assert cli.main() == 0
    assert capsys.readouterr().err == "warning: the embedded sample, not the database\n"
    with pytest.warns(UserWarning, match="embedded sample"):  # called with arguments, from Python: as Python warns
        cli.main(["info"])


# --- msresnet1d download (wfdb's and urllib's fetches replaced: tests have no network) ----------


def _sample_record_100(monkeypatch) -> dict[str, str]:
    """Make record 100 of the embedded sample the whole checksum list of a MIT-BIH download."""
    import hashlib

    from msresnet1d.data import locate

    expected = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in SAMPLE.glob("100.*")}
    monkeypatch.setattr(locate, "expected_checksums", lambda name: expected)
    return expected


def test_download_mitdb_fetches_checks_and_says_that_train_finds_it(tmp_path, monkeypatch, capsys):
    import shutil

    import wfdb

    _sample_record_100(monkeypatch)
    fetched = []

    def fake_dl_full_file(url, save_file_name):
        fetched.append(url.rsplit("/", 1)[1])
        shutil.copy(SAMPLE / fetched[-1], save_file_name)

    monkeypatch.setattr(wfdb.io.download, "dl_full_file", fake_dl_full_file)
    monkeypatch.setenv("MSRESNET1D_DATA", str(tmp_path))
    assert main(["download", "mitdb"]) == 0
    out = capsys.readouterr().out
    assert f"mitdb downloaded into {tmp_path / 'mitdb'}: 3 files, each matching PhysioNet's SHA-256" in out
    assert "msresnet1d train finds it there without --data-dir" in out
    assert sorted(fetched) == ["100.atr", "100.dat", "100.hea"]
    fetched.clear()
    assert main(["download", "mitdb"]) == 0  # a copy already there is checked, not fetched again
    assert f"mitdb is already in {tmp_path / 'mitdb'}: its 3 files match" in capsys.readouterr().out
    assert main(["download", "mitdb", "--data-dir", str(tmp_path / "mitdb")]) == 0  # the database folder, as train takes
    assert f"mitdb is already in {tmp_path / 'mitdb'}: its 3 files match" in capsys.readouterr().out
    assert fetched == [] and not (tmp_path / "mitdb" / "mitdb").exists()
    data = bytearray((tmp_path / "mitdb" / "100.dat").read_bytes())
    data[1000] ^= 0xFF
    (tmp_path / "mitdb" / "100.dat").write_bytes(bytes(data))
    assert main(["download", "mitdb"]) == 1
    assert "error: " in (err := capsys.readouterr().err) and "differ from the published checksums (100.dat" in err
    assert err.rstrip().endswith(f"; to download it again, move {tmp_path / 'mitdb'} away first")
    assert fetched == []


def test_download_mitdb_offline_fails_naming_where_to_put_the_files(tmp_path, monkeypatch, capsys):
    import wfdb

    def offline(url, save_file_name):
        raise ConnectionError("Failed to resolve 'physionet.org'")

    monkeypatch.setattr(wfdb.io.download, "dl_full_file", offline)
    monkeypatch.delenv("MSRESNET1D_DATA", raising=False)
    assert main(["download", "mitdb", "--data-dir", str(tmp_path / "root")]) == 1
    err = capsys.readouterr().err
    assert "error: could not download database 'mitdb' from PhysioNet (ConnectionError: Failed to resolve" in err
    assert f"put the database folder at {tmp_path / 'root' / 'mitdb'}" in err
    assert list((tmp_path / "root").iterdir()) == []  # no partial folder
    for bad in ("0", "-1", "nan", "soon"):
        with pytest.raises(SystemExit):
            main(["download", "mitdb", "--timeout", bad])
        assert f"argument --timeout: {bad!r}: a number of seconds > 0" in capsys.readouterr().err


def test_download_fashion_mnist_into_a_folder_and_offline(tmp_path, monkeypatch, capsys, fashion_mnist_dir):
    import io
    import socket
    import urllib.error

    import msresnet1d.data.fashion_mnist as fm

    monkeypatch.delenv("MSRESNET1D_DATA", raising=False)
    monkeypatch.setattr(fm, "REPO_DATA_DIR", tmp_path / "datasets" / "fashion-mnist")
    monkeypatch.setattr(fm, "DEBIAN_DATA_DIR", tmp_path / "debian")

    def unknown_host(url, timeout):
        raise urllib.error.URLError(socket.gaierror(socket.EAI_NONAME, "Name or service not known"))

    monkeypatch.setattr(fm.urllib.request, "urlopen", unknown_host)
    assert main(["download", "fashion-mnist", "--data-dir", str(tmp_path / "root")]) == 1
    err = capsys.readouterr().err
    assert "error: could not download train-images-idx3-ubyte.gz:" in err
    assert f"Supply the files by hand: put the four .gz files of https://github.com/zalandoresearch/fashion-mnist in " \
           f"{tmp_path / 'root' / 'fashion-mnist'}" in err
    assert not (tmp_path / "root" / "fashion-mnist").exists() or not any((tmp_path / "root" / "fashion-mnist").iterdir())
    served = []

    def mirror(url, timeout):
        served.append(url.rsplit("/", 1)[1])
        return io.BytesIO((fashion_mnist_dir / served[-1]).read_bytes())

    monkeypatch.setattr(fm.urllib.request, "urlopen", mirror)
    assert main(["download", "fashion-mnist", "--data-dir", str(tmp_path / "root")]) == 0
    out = capsys.readouterr().out
    assert f"fashion-mnist is in {tmp_path / 'root' / 'fashion-mnist'}: its 4 files match the official MD5s" in out
    assert f"pass --data-dir {tmp_path / 'root'} (or set MSRESNET1D_DATA={tmp_path / 'root'})" in out
    assert len(served) == 4
    assert main(["download", "fashion-mnist", "--data-dir", str(tmp_path / "root" / "fashion-mnist")]) == 0
    assert f"fashion-mnist is in {tmp_path / 'root' / 'fashion-mnist'}: its 4" in capsys.readouterr().out
    assert len(served) == 4 and not (tmp_path / "root" / "fashion-mnist" / "fashion-mnist").exists()
    (tmp_path / "root" / "fashion-mnist" / "train-images-idx3-ubyte.gz").unlink()  # as a damaged file's error says
    assert main(["download", "fashion-mnist", "--data-dir", str(tmp_path / "root" / "fashion-mnist")]) == 0
    assert served[4:] == ["train-images-idx3-ubyte.gz"]  # fetched again beside the others, not into a subfolder
    assert not (tmp_path / "root" / "fashion-mnist" / "fashion-mnist").exists()
    capsys.readouterr()
    (tmp_path / "datasets").mkdir()
    assert main(["download", "fashion-mnist"]) == 0  # the default folder, datasets/fashion-mnist
    assert "msresnet1d train finds it there without --data-dir" in capsys.readouterr().out


def test_info_says_how_to_fetch_the_data_it_does_not_find(tmp_path, monkeypatch, capsys):
    import msresnet1d.data.fashion_mnist as fm
    from msresnet1d.data import locate

    datasets = tmp_path / "datasets"  # a checkout holding only the embedded sample
    datasets.mkdir()
    (datasets / "mitdb-sample").symlink_to(SAMPLE)
    monkeypatch.delenv("MSRESNET1D_DATA", raising=False)
    monkeypatch.setattr(locate, "repo_datasets_dir", lambda: datasets)
    monkeypatch.setattr(fm, "REPO_DATA_DIR", datasets / "fashion-mnist")
    monkeypatch.setattr(fm, "DEBIAN_DATA_DIR", tmp_path / "debian")
    assert main(["info"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.startswith("  ")}
    assert lines["mitdb"].endswith("mitdb-sample (embedded sample; msresnet1d download mitdb fetches the full database)")
    assert lines["fashion-mnist"].endswith("not found (msresnet1d download fashion-mnist fetches it)")
    assert "msresnet1d download" not in lines["cinc2017"]


def test_info_says_when_a_mitdb_copy_is_partial(tmp_path, monkeypatch, capsys):
    import shutil

    (tmp_path / "mitdb").mkdir()
    for path in SAMPLE.glob("10[01].*"):  # two records, as a copy interrupted by hand
        shutil.copy(path, tmp_path / "mitdb")
    shutil.copy(SAMPLE / "RECORDS", tmp_path / "mitdb")  # listing all the sample's records, as PhysioNet's lists 48
    monkeypatch.setenv("MSRESNET1D_DATA", str(tmp_path))
    assert main(["info"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.startswith("  ")}
    assert lines["mitdb"].endswith(f"{tmp_path / 'mitdb'} (2 of its 48 records; missing 102, 103, 104, 105, 106, ...; "
                                   "msresnet1d download mitdb fetches the full database)")


def test_info_leaves_the_callers_random_numbers(capsys):
    # it built every model with real weights to count them: each draw moved the caller's generator
    import torch

    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    assert main(["info"]) == 0
    assert torch.equal(torch.rand(3), expected)
    row = next(line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("resnet18_d2l "))
    assert row[1:4] == ["2", "10", "11,178,378"]  # the counts need no weights


@pytest.mark.parametrize("rank, level", [("0", logging.WARNING), ("1", logging.ERROR)])
def test_under_torchrun_only_rank_0_logs_warnings(monkeypatch, rank, level, capsys):
    # every rank logged the resume's warnings (threads, code version...), each printed once per process
    monkeypatch.setenv("RANK", rank)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(logging.root, "handlers", [])  # basicConfig configures a process once: as a fresh one
    monkeypatch.setattr(logging.root, "level", logging.root.level)
    monkeypatch.setattr(sys, "argv", ["msresnet1d", "info"])
    assert main() == 0  # the program configures logging; called with arguments from Python, it leaves the caller's
    assert logging.root.level == level


def test_a_logged_warning_names_the_library_it_comes_from(monkeypatch, capsys):
    """Another library's logged warning came without its logger's name: the user could not tell
    whose it was."""
    import msresnet1d.cli as cli

    def logs(args):
        logging.getLogger("msresnet1d.data.beats").warning("ours")
        logging.getLogger("wfdb.io.record").warning("theirs")
        return 0

    monkeypatch.setattr(cli, "cmd_info", logs)
    monkeypatch.setattr(logging.root, "handlers", [])  # as a fresh process
    monkeypatch.setattr(logging.root, "level", logging.root.level)
    monkeypatch.setattr(sys, "argv", ["msresnet1d", "info"])
    assert cli.main() == 0
    assert capsys.readouterr().err == "warning: ours\nwarning: wfdb.io.record: theirs\n"


def test_a_call_from_python_leaves_the_callers_logging(monkeypatch):
    """main(argv) configured the root logger for the rest of the session: a handler, and with -v
    every library's INFO lines from then on."""
    monkeypatch.setattr(logging.root, "handlers", [])
    monkeypatch.setattr(logging.root, "level", logging.WARNING)
    assert main(["-v", "info"]) == 0
    assert logging.root.handlers == [] and logging.root.level == logging.WARNING


def test_the_tests_and_the_programs_they_start_import_this_checkout(tmp_path):
    """In a second checkout, pytest tested the code of the one installed in editable mode."""
    import msresnet1d

    package = Path(__file__).resolve().parents[1] / "msresnet1d"
    assert Path(msresnet1d.__file__).resolve().parent == package
    started = subprocess.run([sys.executable, "-c", "import msresnet1d; print(msresnet1d.__file__)"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=60, check=True)
    assert Path(started.stdout.strip()).resolve().parent == package
