"""Smoke test of experiments/compare_models.py on the embedded MIT-BIH sample: one epoch of two of
its models (the late-fusion MSResNet1d and the 2D spectrogram ResNet) on a few records."""

import csv
import functools
import importlib.util
import json
import os
import re
import runpy
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from msresnet1d.cli import main as cli_main
from msresnet1d.data import RR_DEFAULT, RR_RATIOS
from msresnet1d.data.rhythm import CINC_CLASSES, read_reference
from msresnet1d.models import count_flops, count_parameters, create_model
from msresnet1d.training.metrics import confusion_matrix, per_class
from msresnet1d.training.offsets import predict_with_offsets
from msresnet1d.training.provenance import data_digest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "datasets" / "mitdb-sample"
MAIN_RR = len(RR_RATIOS) + 1  # the main job's RR features: the 4 ratios and rr_irregularity
MODELS = ["msresnet1d_late", "resnet2d_spec"]
SPLIT = ["--set", 'data.train_records=["101","106","118","119","208","209"]', "--set", 'data.val_records=["106","209"]',
         "--set", 'data.test_records=["100","105","232","233"]']


def _load_script(name: str):
    """experiments/<name>.py as a module, leaving ``sys.path`` and ``sys.modules`` as they were: a
    script that imports another (mitdb_ds1_rr_screen puts experiments/ on the path for
    mitdb_ds1_cv) would leave both, and a module imported under a test's monkeypatch keeps it."""
    path, modules = list(sys.path), set(sys.modules)
    spec = importlib.util.spec_from_file_location(name, REPO / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = path
        _forget_experiment_modules(set(sys.modules) - modules)
    return module


def _forget_experiment_modules(names: set[str]) -> None:
    """Remove from ``sys.modules`` those of ``names`` that are experiments/ scripts."""
    for name in names:
        if str(getattr(sys.modules.get(name), "__file__", "")).startswith(str(REPO / "experiments")):
            del sys.modules[name]


SCRIPTS = sorted(path.stem for path in (REPO / "experiments").glob("*.py"))


def test_experiment_scripts_run_as_programs_print_each_warning_once_as_one_line(monkeypatch, capsys):
    """As ``msresnet1d`` does: a warning of every fold or seed is one line, once; ``main(argv)``
    called from Python leaves warnings to Python."""
    import msresnet1d.arguments as arguments

    def warning_parser(doc):  # every script's parser: warn as every fold would, then stop
        warnings.warn("balanced_holdout: a warning of every fold")
        warnings.warn("balanced_holdout: a warning of every fold")  # another line: Python's filter would show both
        raise SystemExit(0)

    monkeypatch.setattr(arguments, "script_parser", warning_parser)
    monkeypatch.setattr(sys, "path", list(sys.path))  # mitdb_ds1_rr_screen.py puts experiments/ on it
    warnings.simplefilter("default")  # as Python starts without -W or PYTHONWARNINGS (pytest restores the filters)
    assert len(SCRIPTS) == 10
    try:
        for name in SCRIPTS:
            monkeypatch.setattr(sys, "argv", [f"experiments/{name}.py"])
            with pytest.raises(SystemExit):
                runpy.run_path(str(REPO / "experiments" / f"{name}.py"), run_name="__main__")
            assert capsys.readouterr().err == "warning: balanced_holdout: a warning of every fold\n", name
            with pytest.warns(UserWarning, match="every fold"), pytest.raises(SystemExit):
                _load_script(name).main([])
    finally:  # mitdb_ds1_rr_screen.py imports mitdb_ds1_cv, which would keep the parser above
        _forget_experiment_modules(set(sys.modules))


TRAINING_SCRIPTS = ["cinc2017_cv", "compare_models", "mitdb_ds1_cv", "mitdb_inter_patient"]


def test_experiment_scripts_stop_on_ctrl_c_sigterm_and_errors_with_one_line(monkeypatch, capsys):
    """Run as programs, the scripts end a Ctrl-C, a SIGTERM and a ValueError, DataError or OSError
    that reaches the top with one line on stderr, no traceback, and the exit status the shell
    gives a signal (130, 143) or 1; those that train runs say that the same command continues."""
    import signal

    import msresnet1d.arguments as arguments
    from msresnet1d.arguments import RUNS_INTERRUPTED, as_program
    from msresnet1d.data import DataError

    def stopped(doc):  # every script's parser, stopped as Ctrl-C stops it
        raise KeyboardInterrupt

    monkeypatch.setattr(arguments, "script_parser", stopped)
    monkeypatch.setattr(sys, "path", list(sys.path))
    try:
        for name in SCRIPTS:
            monkeypatch.setattr(sys, "argv", [f"experiments/{name}.py"])
            with pytest.raises(SystemExit) as stop:
                runpy.run_path(str(REPO / "experiments" / f"{name}.py"), run_name="__main__")
            assert stop.value.code == 130
            assert capsys.readouterr().err == (RUNS_INTERRUPTED if name in TRAINING_SCRIPTS else "interrupted") + "\n"
    finally:
        _forget_experiment_modules(set(sys.modules))
    assert RUNS_INTERRUPTED == ("interrupted: run the same command again to continue (finished runs are reused, the "
                                "others resume)")
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stop, as_program(RUNS_INTERRUPTED):
        os.kill(os.getpid(), signal.SIGTERM)  # a scheduler's stop
    assert stop.value.code == 143 and capsys.readouterr().err == RUNS_INTERRUPTED + "\n"
    assert signal.getsignal(signal.SIGTERM) is before
    for error in (DataError("database mitdb: no record 999"), ValueError("val_records=4 of the 2 training records"),
                  PermissionError(13, "Permission denied", "/runs")):
        with pytest.raises(SystemExit) as stop, as_program():
            raise error
        assert stop.value.code == 1 and capsys.readouterr().err == f"error: {error}\n"


def test_a_script_with_too_few_records_for_its_validation_ends_in_one_error_line(tmp_path, monkeypatch, capsys):
    # the quick test the docstring gives takes --set data.val_records=1; without it, one line, not a traceback
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "argv", ["experiments/mitdb_ds1_cv.py", "--data-dir", str(SAMPLE), "--variant", "main",
                                      "--records", "118", "209", "220", "--folds", "2", "--seeds", "0", "--threads",
                                      "1", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "cv.json")])
    try:
        with pytest.raises(SystemExit) as stop:
            runpy.run_path(str(REPO / "experiments" / "mitdb_ds1_cv.py"), run_name="__main__")
    finally:
        _forget_experiment_modules(set(sys.modules))
    err = capsys.readouterr().err.splitlines()
    assert stop.value.code == 1 and err[-1].startswith("error: ") and "val_records=4 of the" in err[-1]
    assert not any(line.startswith("Traceback") for line in err)


def test_written_files_are_said_and_a_replaced_recorded_result_how_to_restore_it(tmp_path, monkeypatch, capsys):
    import subprocess

    import msresnet1d.arguments as arguments

    repo = tmp_path / "repo"
    recorded = repo / "experiments" / "results" / "x.json"
    recorded.parent.mkdir(parents=True)
    recorded.write_text("{}\n")
    mine = repo / "experiments" / "results" / "mine.json"  # a user's file there, which git does not track
    mine.write_text("{}\n")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "add", "experiments/results/x.json"], check=True)
    monkeypatch.setattr(arguments, "_checkout", repo)
    arguments.write_result(recorded, '{"new": 1}\n')
    arguments.write_result(repo / "experiments" / "results" / "new.json", "{}\n")  # none replaced
    arguments.write_result(mine, "{}\n")  # not restorable by git: no hint
    arguments.write_result(tmp_path / "mine.json", "{}\n")
    with arguments.writing(tmp_path / "plot.png"):
        pass  # a plot not drawn (no matplotlib): not said
    assert capsys.readouterr().out.splitlines() == [
        f"wrote {recorded}: it replaced the repository's recorded result (git -C {repo} checkout -- "
        "experiments/results/x.json restores it)",
        f"wrote {repo / 'experiments' / 'results' / 'new.json'}", f"wrote {mine}", f"wrote {tmp_path / 'mine.json'}"]
    monkeypatch.chdir(repo)
    arguments.write_result(Path("experiments/results/x.json"), "{}\n")
    assert "(git checkout -- experiments/results/x.json restores it" in capsys.readouterr().out
    assert recorded.read_text() == "{}\n"


def test_a_run_folder_in_use_names_the_scripts_runs_flag(tmp_path, monkeypatch):
    from msresnet1d.arguments import resolve_config
    from msresnet1d.training import engine
    from msresnet1d.training.config import load_config
    from msresnet1d.training.run import train_or_reuse

    run_dir = tmp_path / "runs" / "seed0"
    run_dir.mkdir(parents=True)
    monkeypatch.setattr(engine, "_LOCK_PATIENCE", 0.0)
    held = engine.lock_run_dir(run_dir)  # another process training there
    try:
        with pytest.raises(FileExistsError, match="in use by another msresnet1d train .*choose another --runs"):
            train_or_reuse(load_config(resolve_config("mitdb_beats"), {"data.data_dir": str(SAMPLE)}), run_dir)
    finally:
        os.close(held)
    # a run another process started during this one's data load (seen under the lock): a script's advice is to run
    # its command again, which continues it; train's is --resume or another --out
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "last.pt").write_bytes(b"")
    with pytest.raises(FileExistsError, match="meanwhile: run the same command again to continue it, or choose "
                                              "another --runs"):
        engine.check_unused(run_dir, False, "--runs")
    with pytest.raises(FileExistsError, match="pass --resume to continue it or choose --out"):
        engine.check_unused(run_dir, False)


def test_reused_runs_of_other_code_are_said_once_with_their_versions(tmp_path):
    from msresnet1d.training.checkpoint import code_version
    from msresnet1d.training.run import run_code, warn_other_code

    this = code_version()
    runs = [{"reused": True, "code": this}, {"reused": True, "code": "0.1.0+aaaa"}, {"reused": True, "code": None},
            {"reused": False, "code": this}, {"reused": True, "code": "0.1.0+aaaa"}]
    with pytest.warns(UserWarning) as caught:
        warn_other_code(runs)
    assert [str(w.message) for w in caught] == [
        "3 of the 4 finished runs reused were trained by other code: msresnet1d 0.1.0+aaaa (2 runs), code its "
        f"checkpoints do not name (older, or damaged) (1 run); this is msresnet1d {this}: the results mix figures of "
        "other code with this code's (each run's code is in the results' runs; train them again in a new --runs "
        "folder for figures of one version)"]
    with pytest.warns(UserWarning, match="2 of the 2 finished runs reused were trained by other code: msresnet1d "
                                         r"0\.1\.0\+aaaa \(2 runs\); this is msresnet1d .*: the results are of "
                                         "other code than this code's"):
        warn_other_code([runs[1], runs[4]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_other_code(runs[:1] + runs[3:4])  # this code's runs, or trained now: nothing to say
    (tmp_path / "checkpoints").mkdir()
    assert run_code(tmp_path) is None  # no checkpoint (a real run's: test_mitdb_inter_patient_seeds_and_their_ensemble)
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"truncated")  # a damaged copy: its metrics.json still reused
    assert run_code(tmp_path) is None


def test_rr_screen_refuses_runs_that_have_not_finished(tmp_path, capsys):
    # checkpoints/last.pt is written every epoch: a run stopped at epoch 2 has one; metrics.json, written last, not
    screen = _load_script("mitdb_ds1_rr_screen")
    runs = tmp_path / "runs"
    for fold, epochs in ((1, 3), (2, 2)):
        run = runs / "main" / "seed0" / f"fold{fold}"
        (run / "checkpoints").mkdir(parents=True)
        (run / "checkpoints" / "last.pt").write_bytes(b"")
        (run / "log.csv").write_text("epoch,train_seconds\n" + "".join(f"{e},1.0\n" for e in range(1, epochs + 1)))
    (runs / "main" / "seed0" / "fold1" / "metrics.json").write_text("{}")
    args = ["--data-dir", str(SAMPLE), "--runs", str(runs), "--seeds", "0", "--folds", "2", "--out",
            str(tmp_path / "rr.json"), "--records", "118", "209", "220", "223"]
    for more, message in (([], f"1 run(s) not finished (no metrics.json, which a run writes last): "
                               f"{runs / 'main' / 'seed0' / 'fold2'} (stopped after epoch 2): run mitdb_ds1_cv.py "
                               "--variant main (with its settings) and these --runs, --seeds, --folds and --records "
                               "first: it trains the missing runs and resumes the stopped ones"),
                          (["999"], f"--records: no record 999 in {SAMPLE}")):
        with pytest.raises(SystemExit):
            screen.main(args + more)
        assert message in capsys.readouterr().err
    assert not (tmp_path / "rr.json").exists()


def test_detect_offsets_measures_where_the_detector_puts_each_class(tmp_path, capsys):
    script = _load_script("detect_offsets")
    np.testing.assert_array_equal(script.offsets(np.array([10, 50, 100]), np.array([12, 45, 300])), [2, -5, -55])
    assert np.isinf(script.offsets(np.array([10]), np.array([], dtype=int))).all()
    script.main(["--data-dir", str(SAMPLE), "--records", "119", "208", "--out", str(tmp_path / "d.json")])
    found = json.loads((tmp_path / "d.json").read_text())
    for record in ("119", "208"):  # N beats where annotated; V beats 25-26 samples off (3 min of each, as embedded)
        assert found["records"][record]["N"]["median_abs_offset"] == 0 and found["records"][record]["N"]["missed"] == 0
        assert found["records"][record]["V"]["median_abs_offset"] > 10
    assert found["pooled"]["N"]["share_off"] == 0 and found["pooled"]["V"]["share_off"] > 0.5
    assert found["pooled"]["V"]["beats"] == sum(found["records"][r]["V"]["beats"] for r in ("119", "208"))
    printed = capsys.readouterr().out
    assert "all: V 146 beats, 53 missed" in printed and printed.endswith(f"wrote {tmp_path / 'd.json'}\n")
    assert found["provenance"]["command"][:3] == ["experiments/detect_offsets.py", "--data-dir", str(SAMPLE)]
    assert found["provenance"]["data"] == [data_digest(SAMPLE)]  # the records read, named by their digest
    with pytest.raises(SystemExit):
        script.main(["--data-dir", str(SAMPLE), "--records", "119", "999", "--out", str(tmp_path / "e.json")])
    assert f"--records: no record 999 in {SAMPLE} (no 999.hea there)" in capsys.readouterr().err


@pytest.fixture(scope="module")
def compare_models():
    return _load_script("compare_models")


def test_compare_models_on_the_sample(tmp_path, capsys, compare_models, monkeypatch):
    out, results = tmp_path / "runs", tmp_path / "compare.json"
    report = compare_models.main(["--data-dir", str(SAMPLE), "--epochs", "1", "--models", *MODELS, "--runs", str(out),
                                  "--out", str(results), "--quiet", *SPLIT])
    assert json.loads(results.read_text()) == json.loads(json.dumps(report))
    assert list(report["runs"]) == MODELS
    assert report["splits"]["test_records"] == ["100", "105", "232", "233"]

    printed = capsys.readouterr().out
    assert ("test metrics in % of the beats of the 4 test records; '-' = undefined (Se: no beats of the class; "
            "+P: class never predicted; F1: both)") in printed and "DS2" not in printed  # a custom split's test
    table = printed.split("| model |")[1].splitlines()
    assert [row.split("|")[1].strip() for row in table[2:2 + len(MODELS)]] == MODELS

    for name, run in report["runs"].items():
        run_dir = out / name
        config = json.loads((run_dir / "config.json").read_text())
        metrics = json.loads((run_dir / "metrics.json").read_text())
        # Every model saw the same split, and the JSON holds the run folder's test metrics.
        assert metrics["splits"] == report["splits"]
        assert run["test"]["accuracy"] == metrics["test"]["accuracy"]
        assert run["test"]["confusion_matrix"] == metrics["test"]["confusion_matrix"]
        with open(run_dir / "log.csv", newline="") as f:
            seconds = [float(row["train_seconds"]) for row in csv.DictReader(f)]
        assert len(seconds) == run["epochs_run"] == 1
        assert run["train_seconds"] == pytest.approx(sum(seconds)) and run["seconds_per_epoch"] > 0

        # Parameters and FLOPs describe the trained network: rebuild it from the run's config,
        # load its weights strictly, and count its FLOPs without the RR inputs plus the head's
        # extra multiply-adds (the main job's 5 RR features -> MLP 32 -> 32, then 32 more inputs x 5 classes).
        channels, hidden = run["input_shape"][1], config["model_kwargs"]["extra_hidden"]
        assert channels == 2  # the lead and the lead minus the record's median beat (the main job's template)
        assert run["extra_features"] == MAIN_RR == 5 and hidden == 32
        model = create_model(config["model"], in_channels=channels, num_classes=5, extra_features=MAIN_RR,
                             **config["model_kwargs"])
        model.load_state_dict(torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)["model"])
        assert run["parameters"] == count_parameters(model)
        bare_kwargs = {k: v for k, v in config["model_kwargs"].items() if k not in ("extra_hidden", "feature_drop_rate")}
        bare = create_model(config["model"], in_channels=channels, num_classes=5, **bare_kwargs)
        head = 2 * (MAIN_RR * hidden + hidden * hidden) + 2 * hidden * 5
        assert run["flops_per_example"] == count_flops(bare, run["input_shape"]) + head

    # a second invocation over the same folder reuses the finished runs; it digests the data once
    from msresnet1d.training import provenance

    digests, digest = [], provenance.data_digest
    monkeypatch.setattr(provenance, "data_digest", lambda folder: digests.append(folder) or digest(folder))
    again = compare_models.main(["--data-dir", str(SAMPLE), "--epochs", "1", "--models", *MODELS, "--runs", str(out),
                                 "--out", str(results), "--quiet", *SPLIT])
    assert all(run["reused"] and run["wall_seconds"] is None for run in again["runs"].values())
    from msresnet1d.training.checkpoint import code_version

    assert all(run["code"] == code_version() for run in again["runs"].values())
    assert capsys.readouterr().out.splitlines()[-1] == f"wrote {results}"
    assert again["provenance"]["data"] == [data_digest(SAMPLE)] and len(digests) == 1  # not after each model
    assert [run["test"] for run in again["runs"].values()] == [run["test"] for run in report["runs"].values()]

    spectrogram = report["runs"]["resnet2d_spec"]
    assert spectrogram["representation"] == "spectrogram" and spectrogram["input_shape"] == [1, 2, 32, 32]
    stem = json.loads((out / "resnet2d_spec" / "config.json").read_text())["model_kwargs"]
    assert (stem["stem_kernel"], stem["stem_stride"]) == (7, 2)  # its own 2D stem, not the main job's 1D one
    assert report["runs"]["msresnet1d_late"]["input_shape"] == [1, 2, 252]  # 0.7 s at 360 Hz
    assert (out / "resnet2d_spec" / "ecg_strip.png").is_file()


def test_compare_models_refuses_bad_arguments_and_keeps_partial_results_apart(tmp_path, capsys, compare_models,
                                                                               monkeypatch):
    results = tmp_path / "compare.json"
    common = ["--epochs", "1", "--models", *MODELS, "--runs", str(tmp_path / "runs"), "--out", str(results),
              "--quiet", *SPLIT]
    monkeypatch.delenv("MSRESNET1D_DATA", raising=False)
    for bad, message in (([], "give --data-dir or set MSRESNET1D_DATA"),  # never the embedded sample unless named
                         (["--data-dir", str(tmp_path)], "not a folder of WFDB records"),
                         (["--data-dir", str(SAMPLE), "--seeds", "1", "1"], "--seeds: each seed once"),
                         (["--data-dir", str(SAMPLE), "--seed", "-1"], "'-1': a seed is a whole number"),
                         (["--data-dir", str(SAMPLE), "--threads", "-1"], "'-1': torch threads"),
                         (["--data-dir", str(SAMPLE), "--set", "foo=1"], "unknown key(s) foo"),
                         (["--data-dir", str(SAMPLE), "--seeds", "0", "1", "--set", "seed=5"],  # two seeds, one trained
                          "--set seed: the script sets it itself, give --seed or --seeds instead"),
                         (["--data-dir", str(SAMPLE), "--set", "epochs=2"], "--set epochs: the script sets it itself, "
                                                                            "give --epochs instead"),
                         (["--data-dir", str(SAMPLE), "--set", f"data.data_dir={SAMPLE}"], "--set data.data_dir: the "
                          "script sets it itself, give --data-dir instead")):
        with pytest.raises(SystemExit):
            compare_models.main([*common, *bad])
        assert message in capsys.readouterr().err
    # interrupted after the first model: its results in the partial file, nothing under the final name
    train = compare_models.recorded_run

    def stopped_at_the_second(cfg, run_dir, quiet=False):
        if run_dir.name == MODELS[1]:
            raise KeyboardInterrupt
        return train(cfg, run_dir, quiet=quiet)

    monkeypatch.setattr(compare_models, "recorded_run", stopped_at_the_second)
    with pytest.raises(KeyboardInterrupt):
        compare_models.main([*common, "--data-dir", str(SAMPLE)])
    partial = tmp_path / "compare.partial.json"
    assert not results.exists() and list(json.loads(partial.read_text())["runs"]) == MODELS[:1]
    monkeypatch.setattr(compare_models, "recorded_run", train)
    report = compare_models.main([*common, "--data-dir", str(SAMPLE)])  # the first model reused
    assert list(report["runs"]) == MODELS and report["runs"][MODELS[0]]["reused"] and not partial.exists()


def test_compare_models_takes_runs_and_out_as_the_other_scripts_do(tmp_path, capsys, compare_models, monkeypatch):
    # --runs the runs folder, fixed by default (the same command again reuses its finished runs); --out the results
    monkeypatch.chdir(tmp_path)
    common = ["--data-dir", str(SAMPLE), "--models", "msresnet1d_late", *SPLIT]
    args = compare_models.parse_args(common)
    assert args.runs == Path("runs") / "compare" and args.out == compare_models.RESULTS["compare"]
    assert compare_models.parse_args([*common, "--suite", "main_ablation", "--models", "late"]).runs == \
        Path("runs") / "main_ablation"
    # a single --seed S: the folder --seeds gives it (seed 0 then --seed 1 in one folder was refused as another config)
    assert compare_models.parse_args([*common, "--seed", "1"]).runs == Path("runs") / "compare" / "seed1"
    assert compare_models.parse_args([*common, "--runs", "r", "--out", "my.json"]).out == Path("my.json")
    (tmp_path / "folder").mkdir()
    for out in ("folder", "my.txt", "runs/compare"):  # --out named the runs folder before
        with pytest.raises(SystemExit):
            compare_models.parse_args([*common, "--out", out])
        assert (f"--out {out}: --out is the results file now, a .json file (it named the runs folder before "
                "2026-12-07): give the runs folder with --runs") in capsys.readouterr().err
    with pytest.warns(UserWarning, match=r"--json is the former name of --out \(the results file\): give --out"):
        assert compare_models.parse_args([*common, "--json", "old.json"]).out == Path("old.json")
    with pytest.raises(SystemExit):
        compare_models.parse_args([*common, "--json", "old.json", "--out", "new.json"])
    assert "give the results file with --out alone" in capsys.readouterr().err
    assert not (tmp_path / "my.json").exists() and not (tmp_path / "runs").exists()


def test_compare_models_several_seeds_share_the_single_seed_folders(tmp_path, capsys, compare_models):
    out, common = tmp_path / "runs", ["--data-dir", str(SAMPLE), "--epochs", "1", "--models", "msresnet1d_late",
                                      "--quiet", *SPLIT]
    one = compare_models.main([*common, "--seed", "1", "--runs", str(out / "seed1"), "--out",
                               str(tmp_path / "s1.json")])
    capsys.readouterr()
    both = compare_models.main([*common, "--seeds", "0", "1", "--runs", str(out), "--out", str(tmp_path / "both.json")])
    assert both["seed"] == [0, 1] and json.loads((tmp_path / "both.json").read_text()) == json.loads(json.dumps(both))
    runs = both["runs"]["msresnet1d_late"]["seeds"]
    assert runs["1"]["reused"] and runs["1"]["test"] == one["runs"]["msresnet1d_late"]["test"]  # --seed 1's run
    assert not runs["0"]["reused"] and json.loads((out / "seed0" / "msresnet1d_late" / "config.json").read_text())["seed"] == 0
    assert runs["0"]["test"]["confusion_matrix"] != runs["1"]["test"]["confusion_matrix"]
    accuracy = [100 * runs[s]["test"]["accuracy"] for s in ("0", "1")]
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| msresnet1d_late |"))
    assert row == both["table_markdown"].splitlines()[2]
    assert row.split(" | ")[6] == f"{np.mean(accuracy):.1f} ± {np.std(accuracy, ddof=1):.1f}"
    # --checkpoint last: the same runs (one epoch here, so the same weights) scored from last.pt
    last = compare_models.main([*common, "--seeds", "0", "1", "--runs", str(out), "--out", str(tmp_path / "last.json"),
                                "--checkpoint", "last"])
    for seed in ("0", "1"):
        run = last["runs"]["msresnet1d_late"]["seeds"][seed]
        assert run["reused"] and run["test"]["confusion_matrix"] == runs[seed]["test"]["confusion_matrix"]
        assert run["best_val_score"] == pytest.approx(runs[seed]["best_val_score"]) and run["best_epoch"] == 1
    single = compare_models.main([*common, "--seed", "1", "--runs", str(out / "seed1"), "--checkpoint", "last",
                                  "--out", str(tmp_path / "last1.json")])["runs"]["msresnet1d_late"]  # one seed
    assert single["reused"] and single["best_epoch"] == 1
    assert single["test"]["confusion_matrix"] == one["runs"]["msresnet1d_late"]["test"]["confusion_matrix"]


def test_a_results_provenance_names_the_command_code_versions_and_cpu():
    import time

    import torch

    from msresnet1d.training.checkpoint import code_version
    from msresnet1d.training.provenance import git_commit, provenance

    found = provenance(REPO / "experiments" / "mitdb_inter_patient.py", ["--seeds", "0"], time.time() - 3)
    assert found["command"] == ["experiments/mitdb_inter_patient.py", "--seeds", "0"]
    assert found["code"] == code_version() and found["torch"] == torch.__version__
    assert found["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and found["cpus_usable"] >= 1
    assert found["wall_s"] >= 3 and found["started_utc"] < found["finished_utc"]
    assert {key: found[key] for key in ("commit", "uncommitted_changes")} == git_commit()


def test_the_data_digest_covers_the_files_read_and_nothing_beside_them(tmp_path):
    folder = tmp_path / "db"
    folder.mkdir()
    for name, text in (("A00001.hea", "A00001 1 300 9000"), ("A00001.mat", "signal"), ("REFERENCE.csv", "A00001,N\n")):
        (folder / name).write_text(text)
    first = data_digest(folder)
    assert (first["path"], first["files"], first["bytes"]) == (str(folder.resolve()), 3, 32)
    (folder / "PROVENANCE.md").write_text("notes")  # not read: the digest stays
    (folder / "A00002.hea").write_text("A00002 1 300 9000")  # a record REFERENCE.csv does not list: not read
    (folder / "A00002.mat").write_text("other")
    (folder / "x_extra").mkdir()
    (folder / "x_extra" / "A00001.hea").write_text("another folder's copy")
    assert data_digest(folder) == first
    (folder / "REFERENCE.csv").write_text("A00001,A\n")  # other labels
    assert data_digest(folder)["sha256"] != first["sha256"]
    (folder / "REFERENCE.csv").write_text("A00001,N\nA00002,O\n")  # another record read
    assert data_digest(folder)["files"] == 5
    (tmp_path / "elsewhere").mkdir()  # a signal file its header names in another folder (was a ValueError)
    (tmp_path / "elsewhere" / "sig.dat").write_text("samples")
    signal_line = f"{tmp_path / 'elsewhere' / 'sig.dat'} 16 1000 16 0 0 0 0 I"
    (folder / "A00002.hea").write_text(f"A00002 1 300 9000\n{signal_line}\n")
    assert data_digest(folder)["files"] == 6
    assert data_digest(SAMPLE)["files"] == 3 * 44  # MIT-BIH: the records RECORDS lists, .hea .dat .atr each
    with pytest.raises(FileNotFoundError, match="data folder .*missing not found"):
        data_digest(tmp_path / "missing")
    from msresnet1d.training.provenance import data_digest_or_error, provenance

    found = provenance("x.py", [], 0.0, [tmp_path / "missing", folder])["data"]  # an error does not lose a result
    assert found[0]["error"].startswith("FileNotFoundError: data folder") and found[1] == data_digest(folder)
    early = data_digest_or_error(folder)  # digested when a long script starts, as compare_models does
    (folder / "REFERENCE.csv").write_text("A00001,A\n")
    assert provenance("x.py", [], 0.0, [early])["data"] == [early]  # kept, not hashed again at the end


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_the_commit_recorded_is_the_packages_and_results_files_are_no_code_change(tmp_path):
    from msresnet1d.training.provenance import git_commit

    def git(*args: str) -> str:
        settings = ["-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
        return subprocess.run(["git", "-C", str(tmp_path / "repo"), *settings, *args], capture_output=True, text=True,
                              check=True).stdout.strip()

    package = tmp_path / "repo" / "msresnet1d"
    package.mkdir(parents=True)
    (tmp_path / "repo" / "experiments" / "results").mkdir(parents=True)
    (package / "a.py").write_text("x = 1\n")
    (tmp_path / "repo" / "experiments" / "results" / "r.json").write_text("{}\n")
    assert git_commit(package) == {"commit": None, "uncommitted_changes": None}  # not a repository yet
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "one")
    head = git("rev-parse", "HEAD")
    assert git_commit(package) == {"commit": head, "uncommitted_changes": False}
    (tmp_path / "repo" / "experiments" / "results" / "r.json").write_text('{"rerun": 1}\n')  # a script's output
    assert git_commit(package) == {"commit": head, "uncommitted_changes": False}
    (package / "a.py").write_text("x = 2\n")
    assert git_commit(package) == {"commit": head, "uncommitted_changes": True}
    copy = tmp_path / "repo" / "venv" / "site-packages" / "msresnet1d"  # installed inside another repository
    copy.mkdir(parents=True)
    assert git_commit(copy) == {"commit": None, "uncommitted_changes": None}


def test_mitdb_inter_patient_seeds_and_their_ensemble(tmp_path, capsys):
    script = _load_script("mitdb_inter_patient")
    data = tmp_path / "data"
    data.mkdir()
    (data / "mitdb").symlink_to(SAMPLE)
    common = ["--data-dir", str(data), "--runs", str(tmp_path / "runs"), "--threads", "1", *SPLIT,
              "--set", "epochs=1", "--set", "model_kwargs.widths=[8, 16, 16]", "--set", "model_kwargs.stem_channels=8"]
    script.main([*common, "--seeds", "0", "1", "--out", str(tmp_path / "two.json")])
    two = json.loads((tmp_path / "two.json").read_text())
    printed = capsys.readouterr().out
    assert [r["seed"] for r in two["runs"]] == [0, 1] and "| ensemble of the 2 seeds |" in printed
    assert printed.count("epoch 1/1: ") == 2  # each run's epoch lines (--quiet: none)
    assert printed.splitlines()[-3:] == [f"wrote {tmp_path / name}" for name in ("two.png", "two_confusion.png",
                                                                                  "two.json")]
    from msresnet1d.training.checkpoint import code_version

    assert all(r["code"] == code_version() and not r["reused"] for r in two["runs"])  # what trained each run
    assert all(0 <= r["best_val_score"] <= 1 for r in two["runs"])
    assert two["provenance"]["command"] == ["experiments/mitdb_inter_patient.py", *common, "--seeds", "0", "1", "--out",
                                            str(tmp_path / "two.json")]
    test_beats = sum(map(sum, json.loads((tmp_path / "runs" / "seed0" / "metrics.json").read_text())["test"]["confusion_matrix"]))
    assert sum(map(sum, two["ensemble_percent"]["confusion_matrix"])) == test_beats
    from msresnet1d.training.metrics import ec57

    by_rules = ec57(two["ensemble_percent"]["confusion_matrix"], list("NSVFQ"))  # the wiring; the rules by hand elsewhere
    assert two["ensemble_percent"]["ec57"]["V"]["f1"]["mean"] == pytest.approx(100 * by_rules["V"]["f1"], nan_ok=True)
    assert "S and V by EC57's rules (F and Q beats called V, Q beats called S not counted" in two["table_markdown"]
    assert "| Farag 2023 (small CNN) | 85.3 |  |  | 96.3 |  |  | 98.2 |" in two["table_markdown"]  # Se alone: no F1
    interval = two["record_interval_percent"]  # the ensemble's, over the test records drawn with replacement
    assert interval["of"] == "ensemble of 2 seeds" and interval["records"] == 4  # SPLIT's test records
    assert interval["accuracy"][0] - 0.05 <= two["ensemble_percent"]["accuracy"]["mean"] <= interval["accuracy"][1] + 0.05
    assert "95% interval of the ensemble of 2 seeds over 4 records (the records drawn with replacement, 2,000 times): S F1 " \
        in two["table_markdown"]
    for png in ("two.png", "two_confusion.png"):  # beside the JSON: scores beside the literature, the confusion matrix
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from msresnet1d.data import DS2

    assert script.tested_on(None) == script.tested_on(list(DS2)[::-1]) == "DS2 test"  # the titles of the PNGs
    assert script.tested_on(["100", "105", "232", "233"]) == "4 test records"
    # one run twice: the ensemble is that run, figure for figure
    seed0 = json.loads((tmp_path / "runs" / "seed0" / "metrics.json").read_text())["test"]
    assert script.seed_ensemble([tmp_path / "runs" / "seed0"] * 2)["confusion_matrix"] == seed0["confusion_matrix"]
    other_records = tmp_path / "cinc2017"  # WFDB records, but not MIT-BIH's
    other_records.mkdir()
    (other_records / "A00001.hea").write_text("A00001 1 300 9000\n")
    for bad, message in ((["--seeds", "0", "0"], "--seeds: each seed once"),  # it would count twice in the mean
                         (["--seeds", "-1"], "'-1': a seed is a whole number"), (["--threads", "-1"], "'-1': torch threads"),
                         (["--set", "foo=1"], "unknown key(s) foo"), (["--seeds", "0", "2", "--set", "lr=0.01"],
                                                                      "seed0 holds a run of another config"),
                         (["--set", "seed=5"], "--set seed: the script sets it itself, give --seeds instead"),
                         (["--set", "threads=2"], "--set threads: the script sets it itself, give --threads instead"),
                         (["--set", f"data.data_dir={SAMPLE}"], "--set data.data_dir: the script sets it itself, give "
                                                                "--data-dir instead"),
                         (["--data-dir", str(SAMPLE.parent / "fashion-mnist")], "not a folder of WFDB records"),
                         (["--data-dir", str(other_records)], "not the header of an MIT-BIH record")):  # all before any training
        with pytest.raises(SystemExit):
            script.main([*common, *bad, "--out", str(tmp_path / "bad.json")])
        assert message in capsys.readouterr().err
    assert not (tmp_path / "runs" / "seed2").exists() and not (tmp_path / "bad.json").exists()
    # a reused run (not retrained) reports the training time its log recorded, not this invocation's; and the code
    # that trained it, said when it is not this code
    for name in ("last.pt", "best.pt"):
        path = tmp_path / "runs" / "seed0" / "checkpoints" / name
        torch.save({**torch.load(path, weights_only=True), "code": "0.1.0+other"}, path)
    with pytest.warns(UserWarning, match=r"^1 of the 1 finished runs reused was trained by other code: msresnet1d "
                                         r"0\.1\.0\+other \(1 run\); this is msresnet1d "):
        script.main([*common, "--seeds", "0", "--out", str(tmp_path / "same.json")])
    same = json.loads((tmp_path / "same.json").read_text())
    assert same["runs"][0]["reused"] and same["runs"][0]["code"] == "0.1.0+other"
    assert same["runs"][0]["train_s"] == two["runs"][0]["train_s"] > 0 and same["ensemble_percent"] is None
    assert same["record_interval_percent"]["of"] == "seed 0"  # one seed: its model's interval
    with open(tmp_path / "runs" / "seed0" / "log.csv", newline="") as f:
        assert two["runs"][0]["train_s"] == pytest.approx(sum(float(r["train_seconds"]) for r in csv.DictReader(f)), abs=0.05)


def test_mitdb_ds1_cross_validation_predicts_every_record_once(tmp_path, capsys):
    script = _load_script("mitdb_ds1_cv")
    data = tmp_path / "data"
    data.mkdir()
    (data / "mitdb").symlink_to(SAMPLE)
    records = ["101", "106", "118", "119", "201", "208", "209", "220", "223"]
    args = ["--data-dir", str(data), "--runs", str(tmp_path / "runs"), "--threads", "1", "--folds", "3",
            "--records", *records, "--seeds", "0", "1", "--out", str(tmp_path / "cv.json"), "--set", "epochs=1",
            "--set", "data.val_records=2", "--set", "model_kwargs.widths=[8, 16, 16]",
            "--set", "model_kwargs.stem_channels=8", "--variant", "main", "--variant", "wd", "weight_decay=0.1",
            "--offsets", "--adapt-bn", "--last-epoch",
            "--ensemble", "pair", "main+last", "main+last@1", "--ensemble", "self", "wd", "wd", "--baseline", "main+last",
            "--per-record", "main+last", "--per-record", "wd"]
    for bad, message in ((["--variant", "bad", "foo=1"], "unknown key(s) foo"),  # every variant checked before any run
                         (["--variant", "bad", "data.fs=-1"], "[data] fs must be"),
                         (["--seeds", "-1"], "'-1': a seed is a whole number"),
                         (["--threads", "-1"], "'-1': torch threads"),
                         (["--set", "seed=5"], "--set seed: the script sets it itself, give --seeds instead"),
                         (["--variant", "x", 'data.test_records=["100"]'],  # as --set: it would be dropped
                          "--variant x: data.test_records: the script sets it itself, give --records and --folds"),
                         (["--variant", "main+last", "ema_decay=0.99"], "names ending in +offsets, +adabn, +last are "
                                                                        "the rows the variants' runs give"),
                         (["--variant", "../up"], "'../up': a variant's name is the folder of its runs under --runs"),
                         (["--variant", ".."], "'..': a variant's name is the folder"),
                         (["--records", *records, "999"], f"--records: no record 999 in {data / 'mitdb'}")):
        with pytest.raises(SystemExit):
            script.main(args + bad)
        assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "up").exists()
    with pytest.warns(UserWarning, match="balanced_holdout"):  # the sample's records are too short for its rule
        report = script.main([*args, "--quiet"])
    assert json.loads((tmp_path / "cv.json").read_text()) == json.loads(json.dumps(report))
    assert (tmp_path / "cv.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the variants' plot beside it
    assert sorted(sum(report["folds"], [])) == sorted(records)  # every record held out exactly once
    for name in ("main", "wd"):
        for seed in (0, 1):
            for k, held in enumerate(report["folds"]):
                run = tmp_path / "runs" / name / f"seed{seed}" / f"fold{k + 1}"
                splits = json.loads((run / "metrics.json").read_text())["splits"]
                assert splits["test_records"] == held and not set(held) & set(splits["train_records"] + splits["val_records"])
                assert json.loads((run / "config.json").read_text())["seed"] == seed
        pooled = np.array(report["variants"][name]["pooled_confusion_matrix"])  # every beat once per seed
        assert pooled.sum(axis=1).tolist() == [2 * sum(f[c] for f in report["fold_beats"]) for c in "NSVFQ"]
        assert len(report["variants"][name]["seed_macro_f1"]) == 2 and len(report["variants"][name]["fold_macro_f1"]) == 3
    assert json.loads((tmp_path / "runs" / "wd" / "seed0" / "fold1" / "config.json").read_text())["weight_decay"] == 0.1
    # --offsets: a row per variant, each fold predicted with offsets fitted on the other folds
    # --adapt-bn: a row per variant, the same runs with BatchNorm statistics of each held-out record
    # --last-epoch: a row per variant, the same runs' last.pt (1 epoch here: the same weights as best.pt)
    assert list(report["variants"]) == ["main", "main+offsets", "main+adabn", "main+last",
                                        "wd", "wd+offsets", "wd+adabn", "wd+last", "pair", "self"]
    for name in ("main", "wd"):
        assert report["variants"][f"{name}+last"]["pooled_confusion_matrix"] == \
            report["variants"][name]["pooled_confusion_matrix"]
    assert report["baseline"] == "main+last" and "decision" in report["variants"]["main"]  # --baseline: any row
    assert "decision" not in report["variants"]["main+last"]
    runs = [[tmp_path / "runs" / "wd" / f"seed{seed}" / f"fold{k + 1}" for seed in (0, 1)] for k in range(3)]
    again, held_records = script.rescored(runs, ["best", "adabn"])  # the runs' own test figures, predicted anew
    # --per-record: each held-out record's confusion matrix summed over seeds; together, the row's pooled one
    for row in ("main+last", "wd"):
        matrices = {r: found["confusion_matrix"] for r, found in report["per_record"][row].items()}
        assert sorted(matrices) == sorted(records)
        assert np.array_equal(np.sum([m for m in matrices.values()], axis=0),
                              report["variants"][row]["pooled_confusion_matrix"])
        for found in report["per_record"][row].values():  # RR medians where there are such errors, else none
            cm = np.array(found["confusion_matrix"])
            for kind, count in (("s_as_n", cm[1, 0]), ("n_as_s", cm[0, 1])):
                assert (found["rr_medians"][kind] is None) == (count == 0)
                assert count == 0 or set(found["rr_medians"][kind]) == {"prev_over_local", "prev_over_record"}
    assert sorted(set(np.concatenate(held_records).tolist())) == sorted(records)
    assert np.array_equal(script.confusion_matrices(again["best"]).sum(axis=(0, 1)),
                          report["variants"]["wd"]["pooled_confusion_matrix"])
    assert np.array_equal(script.confusion_matrices(again["adabn"]).sum(axis=(0, 1)),
                          report["variants"]["wd+adabn"]["pooled_confusion_matrix"])
    for name in ("main", "wd"):
        fitted = report["variants"][f"{name}+offsets"]
        assert len(fitted["fold_offsets"]) == 3 and all(len(o) == 5 and o[0] == 0 for o in fitted["fold_offsets"])
        for row in (fitted, report["variants"][f"{name}+adabn"]):
            assert np.array(row["pooled_confusion_matrix"]).sum(axis=1).tolist() == \
                np.array(report["variants"][name]["pooled_confusion_matrix"]).sum(axis=1).tolist()
            assert "decision" in row
        assert report["variants"][f"{name}+adabn"]["pooled_confusion_matrix"] != \
            report["variants"][name]["pooled_confusion_matrix"]
    printed = capsys.readouterr().out
    assert "| wd |" in printed and "decision" in report["variants"]["wd"]
    assert "epoch 1/1: " not in printed  # --quiet: no run's epoch lines
    assert "per record, main+last (beats summed over seeds; RR: median local/record of those beats):" in printed
    # --ensemble: rows averaging their members' probabilities; a run averaged with itself is that run
    ensembles = report["variants"]
    assert ensembles["self"]["pooled_confusion_matrix"] == ensembles["wd"]["pooled_confusion_matrix"]
    assert ensembles["pair"]["members"] == ["main+last@0", "main+last@1"] and "decision" in ensembles["pair"]
    assert np.array(ensembles["pair"]["pooled_confusion_matrix"]).sum(axis=1).tolist() == \
        np.array(ensembles["main"]["pooled_confusion_matrix"]).sum(axis=1).tolist()
    # a shift of j: row i takes the member's seed i + j (mod seeds); members must read the same beats
    y = np.array([0, 1, 2, 1])
    member = [(y, np.stack([np.eye(5)[[0, 0, 0, 0]], np.eye(5)[y]]))]  # seed 0 says N, seed 1 is right
    shifted = script.ensemble_confusions([member], [1])
    assert np.trace(shifted[0, 0]) == 4 and np.trace(shifted[1, 0]) == 1
    with pytest.raises(ValueError, match="fold 1"):
        script.ensemble_confusions([member, [(y[::-1], member[0][1])]], [0, 0])
    for wrong in (["--folds", "1"], ["--folds", "10"], ["--seeds", "0", "0"],  # refused before any training
                  ["--records", "101", "201", "202", "--folds", "3"]):  # 3 records of 2 patients
        with pytest.raises(SystemExit):
            script.main(args + wrong)
        assert ("[2, 2] (the number of patients" if "202" in wrong else wrong[0]) in capsys.readouterr().err
    for bad in (["x", "nope"], ["x", "main+last"], ["main", "main", "wd"], ["x", "main@-1", "wd"]):
        with pytest.raises(SystemExit):
            script.main(args[:-10] + ["--ensemble", *bad])
        assert "--ensemble" in capsys.readouterr().err
    # cross-fitted offsets: a model that under-calls S on every fold gains from offsets fitted on the others
    rng = np.random.default_rng(0)
    labels = [rng.choice(5, size=800, p=[0.7, 0.1, 0.1, 0.09, 0.01]) for _ in range(4)]
    def probs(y):
        logits = 2.0 * np.eye(5)[y] + rng.normal(0, 1, size=(len(y), 5))
        logits[:, 1] -= 2.0
        return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    p = [np.stack([probs(y) for _ in range(2)]) for y in labels]  # fold k: (seeds, N_k, 5)
    fitted, offsets = script.cross_fitted_offsets(p, labels)
    plain = sum(confusion_matrix(y, q.argmax(axis=1), 5) for y, fold in zip(labels, p) for q in fold)
    assert fitted.shape == (2, 4, 5, 5) and all(o[1] > 0.5 for o in offsets)
    assert script.macro_f1(fitted.sum(axis=(0, 1))) > script.macro_f1(plain) + 5
    # no F beat and none predicted: F1 undefined and left out of macro-F1, as in the runs' reports
    cm = np.zeros((5, 5), dtype=int)
    cm[0, 0], cm[1, 1], cm[1, 0], cm[2, 2] = 90, 5, 5, 10
    scores = script.pooled_scores(cm)
    assert np.isnan(scores["F"]["f1"]) and scores["macro_f1"] == pytest.approx((100 * 180 / 185 + 100 * 10 / 15 + 100) / 3, abs=0.01)
    # the rule: more than 1 point pooled and better in all folds but one
    def variant(macro, folds_macro, sv=60.0, folds_sv=(60,) * 5):
        return {"pooled": {"macro_f1": macro, "sv_f1": sv}, "fold_macro_f1": folds_macro, "fold_sv_f1": list(folds_sv)}
    base = variant(50.0, [50] * 5)
    assert script.decide(base, variant(51.5, [51, 51, 51, 51, 49]))["replaces_baseline"]
    assert not script.decide(base, variant(51.5, [51, 51, 51, 49, 49]))["replaces_baseline"]
    assert not script.decide(base, variant(50.9, [51] * 5))["replaces_baseline"]
    # rule SV: the mean of S F1 and V F1 higher by more than 1 point in all folds but one, macro-F1 at most 1 lower
    assert scores["sv_f1"] == pytest.approx((100 * 10 / 15 + 100) / 2, abs=0.01)
    kept = script.decide(base, variant(49.0, [49] * 5, 61.5, [61, 61, 61, 61, 59]))
    assert kept["replaces_baseline_sv"] and not kept["replaces_baseline"] and kept["sv_folds_better"] == 4
    assert not script.decide(base, variant(48.9, [49] * 5, 61.5, [61] * 5))["replaces_baseline_sv"]  # macro-F1 -1.1
    assert not script.decide(base, variant(50.0, [50] * 5, 61.5, [61, 61, 61, 59, 59]))["replaces_baseline_sv"]  # 3 folds
    assert not script.decide(base, variant(50.0, [50] * 5, 60.9, [61] * 5))["replaces_baseline_sv"]  # +0.9
    assert len(report["variants"]["wd"]["fold_sv_f1"]) == 3 and "rule SV" in report["table_markdown"]
    # --baseline must name a row, checked before any training
    with pytest.raises(SystemExit):
        script.main([*args[:-2], "--baseline", "wd+best"])
    assert "--baseline wd+best: not a row of this table (main, main+offsets" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        script.main(args[:-4] + ["--per-record", "nosuch+last"])
    assert "--per-record nosuch+last: not VARIANT, VARIANT+last or VARIANT+adabn" in capsys.readouterr().err
    # the RR screen reads the same runs: the network's row as the CV had it, RR-only rows beside it
    screen = _load_script("mitdb_ds1_rr_screen").main(
        ["--data-dir", str(data), "--runs", str(tmp_path / "runs"), "--records", *records, "--folds", "3",
         "--seeds", "0", "1", "--out", str(tmp_path / "screen.json")])
    assert json.loads((tmp_path / "screen.json").read_text()) == json.loads(json.dumps(screen))
    assert screen["folds"] == report["folds"] and list(screen["variants"]) == [
        "main+last", "rr_gbm", "split_logistic", "split_gbm", "split_mlp"]
    assert screen["variants"]["main+last"]["pooled_confusion_matrix"] == \
        report["variants"]["main+last"]["pooled_confusion_matrix"]
    for row in screen["variants"].values():  # every beat once per seed
        assert np.array(row["pooled_confusion_matrix"]).sum(axis=1).tolist() == \
            np.array(report["variants"]["main"]["pooled_confusion_matrix"]).sum(axis=1).tolist()
    for wrong, message in ((["--records", *records[:-1]], "not a fold of the records asked for"),  # runs of other folds
                           (["--records", *records, "100"], "hold out no run of 100"), (["--folds", "2"], "hold out no run")):
        with pytest.raises(SystemExit):
            _load_script("mitdb_ds1_rr_screen").main(["--data-dir", str(data), "--runs", str(tmp_path / "runs"), "--folds",
                                                      "3", "--records", *records, "--seeds", "0", "1", *wrong])
        assert message in capsys.readouterr().err
    gbm_seeds = screen["variants"]["rr_gbm"]["seed_macro_f1"]
    assert len(set(gbm_seeds.values())) == 1  # no network: the same prediction for every seed
    assert all("decision" in screen["variants"][row] for row in screen["variants"] if row != "main+last")


def test_rr_screen_takes_each_fold_from_its_runs(tmp_path):
    # the held-out records of each fold are those its runs tested, whatever folds record_kfold would give now
    screen = _load_script("mitdb_ds1_rr_screen")
    records = ["a", "b", "c", "d", "e"]

    def runs(folds: list[list[str]], seeds: int = 2) -> list[list[Path]]:
        dirs, base = [], tmp_path / f"runs{len(list(tmp_path.iterdir()))}"  # a new runs folder a call
        for k, held in enumerate(folds):
            dirs.append([])
            for i in range(seeds):
                run = base / f"seed{i}" / f"fold{k + 1}"
                run.mkdir(parents=True)
                train = [r for r in records if r not in held]
                (run / "config.json").write_text(json.dumps({"data": {"train_records": train, "test_records": held}}))
                dirs[-1].append(run)
        return dirs

    assert screen.held_out_folds(runs([["e", "a"], ["c"], ["b", "d"]]), records) == [["e", "a"], ["c"], ["b", "d"]]
    one = runs([["a", "b"], ["c", "d", "e"]])
    one[1][1] = runs([["a", "b"], ["c", "d"]])[1][0]  # seed 1 of fold 2 held out other records
    for dirs, message in ((one, "fold 2: .* holds out c, d, the fold's other runs c, d, e"),
                          (runs([["a", "b"], ["b", "c", "d", "e"]]), "fold 2: .* which an earlier fold holds out too"),
                          (runs([["a", "b"], ["c", "d"]]), "hold out no run of e: they were made with other --records"),
                          (runs([["a", "b"], ["c", "d", "e"]]), "not a fold of the records asked for")):
        with pytest.raises(ValueError, match=message):
            screen.held_out_folds(dirs, records if "asked" not in message else records[:-1])


def test_rr_screen_divides_only_the_n_plus_s_probability():
    screen = _load_script("mitdb_ds1_rr_screen")
    probabilities = np.random.default_rng(0).dirichlet(np.ones(5), size=(2, 7))  # (seeds, beats, classes)
    share = np.linspace(0, 1, 7)
    divided = screen.split_n_s(probabilities, share)
    np.testing.assert_allclose(divided[..., 2:], probabilities[..., 2:])
    np.testing.assert_allclose(divided[..., 0] + divided[..., 1], probabilities[..., 0] + probabilities[..., 1])
    np.testing.assert_allclose(divided[..., 1], (probabilities[..., 0] + probabilities[..., 1]) * share)


def test_compare_models_rejects_an_unknown_model(compare_models, capsys):
    with pytest.raises(SystemExit):
        compare_models.main(["--models", "resnet3d"])
    assert "invalid choice" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        compare_models.main(["--suite", "ablation", "--models", "resnet1d"])
    assert "--models resnet1d: not in suite 'ablation'" in capsys.readouterr().err


def test_every_ablation_variant_builds_on_the_sample(compare_models):
    """Each ablation entry is a valid config that changes what it says (checked before hours of training)."""
    suite = compare_models.SUITES["ablation"]
    common = {"data.data_dir": str(SAMPLE), "data.train_records": ["101", "106", "118", "119", "208", "209"],
              "data.val_records": ["106", "209"], "data.test_records": ["100", "105"]}
    base_config = compare_models.BASE_CONFIGS["ablation"]
    profiles = {name: compare_models.profile(compare_models.load_config(base_config, {**overrides, **common}))
                for name, (_, overrides) in suite.items()}
    main = profiles["base"]
    assert main["input_shape"] == [1, 2, 126] and main["extra_features"] == len(RR_DEFAULT)
    assert profiles["main_job"]["extra_features"] == MAIN_RR
    # the MLP (8 -> 32 -> 32, with biases) and 32 instead of 8 extra inputs to the 5-class linear layer
    assert profiles["rr_head"]["parameters"] == main["parameters"] + (8 * 32 + 32) + (32 * 32 + 32) + (32 - 8) * 5
    # the last row is the main job itself: the same config, so its run is the main job's seed 0
    main_job = compare_models.load_config(base_config, {**suite["main_job"][1], **common})
    assert main_job == compare_models.load_config(compare_models.BASE_CONFIGS["compare"], common)
    assert profiles["no_template"]["input_shape"] == [1, 1, 126]
    assert profiles["no_rr"]["extra_features"] == 0
    for name in ("single_k7", "single_k15", "separable", "dilated", "sum"):
        assert profiles[name]["parameters"] < main["parameters"], name


def test_every_main_ablation_variant_builds_on_the_sample(compare_models):
    """The ablation from the main job: each entry is one change to the main job's own config."""
    suite, base_config = compare_models.SUITES["main_ablation"], compare_models.BASE_CONFIGS["main_ablation"]
    common = {"data.data_dir": str(SAMPLE), "data.train_records": ["101", "106", "118", "119", "208", "209"],
              "data.val_records": ["106", "209"], "data.test_records": ["100", "105"]}
    configs = {name: compare_models.load_config(base_config, {**overrides, **common})
               for name, (_, overrides) in suite.items()}
    assert configs["main_job"] == compare_models.load_config(compare_models.CONFIGS / "mitdb_beats.toml", common)
    profiles = {name: compare_models.profile(cfg) for name, cfg in configs.items()}
    main = profiles["main_job"]
    assert main["input_shape"] == [1, 2, 252] and main["extra_features"] == MAIN_RR
    assert main["parameters"] == 101_861  # the main job's model, its RR head included (experiments/README.md)
    assert profiles["no_template"]["input_shape"] == [1, 1, 252] and profiles["no_rr"]["extra_features"] == 0
    # the head's MLP (5 -> 32 -> 32) gone: the 5 RR features join the linear layer (32 -> 5 inputs of it)
    assert profiles["rr_linear"]["parameters"] == main["parameters"] - (5 * 32 + 32) - (32 * 32 + 32) - (32 - 5) * 5
    assert profiles["kernels_3_7_15"]["flops_per_example"] > 2 * main["flops_per_example"]  # dilation: 43% of it
    for name in ("single_k7", "separable", "sum", "attention", "late"):
        assert profiles[name]["parameters"] < main["parameters"], name


@pytest.fixture(scope="module")
def tiny_cinc(cinc2017_dir, tmp_path_factory):
    """A 40-record CinC 2017 folder (10 of each class, linked to the real files)."""
    import csv as csv_module

    folder = tmp_path_factory.mktemp("cinc-tiny")
    with open(cinc2017_dir / "REFERENCE.csv", newline="") as f:
        rows = list(csv_module.reader(f))
    chosen = [row for label in "NAO~" for row in [r for r in rows if r[1] == label][:10]]
    (folder / "REFERENCE.csv").write_text("".join(f"{name},{label}\n" for name, label in chosen))
    for name, _ in chosen:
        for ext in (".hea", ".mat"):
            (folder / f"{name}{ext}").symlink_to(cinc2017_dir / f"{name}{ext}")
    return folder


TINY_CINC = ["epochs=1", "data.fs=50", "data.crop_seconds=10", "data.hop_seconds=10", "data.val_fraction=0.25",
             "data.cache=false", "model_kwargs.widths=[8,8,8,8]", "model_kwargs.stem_channels=8"]


def test_cinc2017_cross_fitted_score_credits_offsets_that_hold_on_the_other_half():
    cv = _load_script("cinc2017_cv")
    rng = np.random.default_rng(0)
    y = rng.choice(4, size=600, p=[0.55, 0.15, 0.25, 0.05])
    logits = 1.5 * np.eye(4)[y] + rng.normal(0, 1, size=(600, 4))
    logits[:, 1] -= 1.5  # a model that under-calls A: offsets fitted on either half help the other
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert cv.cross_fitted_score(y, p) > cv.plain_score(y, p) + 0.02
    fair = np.eye(4)[y] * 0.7 + 0.075  # already right everywhere: nothing to gain, nothing lost
    assert cv.cross_fitted_score(y, fair) == cv.plain_score(y, fair) == 1.0


def test_cinc2017_pooled_interval_draws_the_records_of_the_pooled_matrix():
    cv = _load_script("cinc2017_cv")
    cm = np.array([[2252, 13, 105, 32], [14, 327, 40, 8], [246, 51, 758, 24], [17, 2, 6, 105]])  # the kept result's
    interval = cv.pooled_interval(cm)
    low, high = interval["cinc_score"]
    assert interval["records"] == 4000 and low < cv.score(cm) < high and high - low < 0.05
    for name, (f1_low, f1_high) in interval["f1"].items():
        f1 = per_class(cm)["f1"][list(CINC_CLASSES).index(name)]
        assert f1_low < f1 < f1_high
    # the same records, a quarter as many: about twice as wide; every record right: no width at all
    quarter = cv.pooled_interval(cm // 4)["cinc_score"]
    assert 1.5 < (quarter[1] - quarter[0]) / (high - low) < 2.5
    assert cv.pooled_interval(np.diag([50, 10, 20, 5]))["cinc_score"] == [1.0, 1.0]
    assert cv.interval_line(interval) == (f"95% interval of the pooled CinC score over its 4,000 records (drawn with "
                                          f"replacement, 2,000 times): {low:.3f}-{high:.3f}")


@pytest.mark.filterwarnings("ignore:The least populated class in y")  # 5 validation records a fold
def test_cinc2017_cross_validation_tests_every_record_once(tiny_cinc, tmp_path, capsys):
    cv = _load_script("cinc2017_cv")
    data_root = tmp_path / "data"
    data_root.mkdir()
    (data_root / "cinc2017").symlink_to(tiny_cinc)
    out, runs = tmp_path / "cv.json", tmp_path / "runs"
    args = ["--data-dir", str(data_root), "--folds", "2", "--runs", str(runs), "--out", str(out), "--quiet"]
    settings = [word for item in TINY_CINC for word in ("--set", item)]
    report = cv.main(args + settings)
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    assert (tmp_path / "cv_confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the pooled matrix beside it

    def metrics(run: dict) -> dict:
        return json.loads((runs / f"seed{run['seed']}" / f"fold{run['fold']}" / "metrics.json").read_text())

    tested = [name for run in report["runs"] for name in metrics(run)["splits"]["test_names"]]
    assert sorted(tested) == sorted(p.stem for p in tiny_cinc.glob("*.hea"))  # each record tested exactly once
    pooled = np.array(report["summary"]["pooled_confusion_matrix"])
    assert pooled.sum() == 40 and (pooled.sum(axis=1) == 10).all()
    # the pooled score is the challenge's: mean over N, A, O of 2 correct / (true + predicted)
    f1 = [2 * pooled[i, i] / (pooled[i].sum() + pooled[:, i].sum()) if pooled[i].sum() + pooled[:, i].sum() else 0.0
          for i in range(3)]
    assert report["summary"]["pooled"]["cinc_score"] == pytest.approx(np.mean(f1))
    # one seed: the script's own evaluation of each best checkpoint gives the run's figures back
    for run, fold in zip(report["runs"], report["summary"]["folds"]):
        assert fold["val_cinc_score"] == pytest.approx(run["best_val_score"])
        assert fold["cinc_score"] == pytest.approx(metrics(run)["test"]["cinc_score"])
    assert "| pooled |" in capsys.readouterr().out
    (tmp_path / "cv_confusion.png").unlink()  # --replot draws it again from the JSON alone
    assert cv.main(["--replot", str(out)]) == json.loads(out.read_text())
    assert (tmp_path / "cv_confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert capsys.readouterr().out == (f"wrote {tmp_path / 'cv_confusion.png'}\n"  # and the interval
                                       + cv.interval_line(report["summary"]["pooled_interval"]) + "\n")
    for text in ('{"summary": {}}', '{"summary": {"pooled_confusion_matrix": [[1]]}}', "[]", "{"):
        (tmp_path / "not_cv.json").write_text(text)
        with pytest.raises(SystemExit):
            cv.main(["--replot", str(tmp_path / "not_cv.json")])
        assert "not_cv.json: not a result of this script" in capsys.readouterr().err
    # every record's test prediction is recorded: --rescore scores them against other labels of the same records
    assert sorted(report["test_predictions"]) == sorted(tested)
    labels = dict(row.split(",") for row in (tiny_cinc / "REFERENCE.csv").read_text().splitlines())
    again = cv.main(["--rescore", str(out), str(tiny_cinc)])  # the labels it was scored with: the same figures
    assert again["confusion_matrix"] == pooled.tolist()
    assert again["cinc_score"] == report["summary"]["pooled"]["cinc_score"]
    assert f"rescored against {tiny_cinc / 'REFERENCE.csv'}: pooled CinC score" in capsys.readouterr().out
    relabelled = tmp_path / "relabelled"
    relabelled.mkdir()
    first_n = next(name for name, label in labels.items() if label == "N")
    (relabelled / "REFERENCE.csv").write_text("".join(f"{n},{'A' if n == first_n else c}\n" for n, c in labels.items()))
    moved = np.array(cv.main(["--rescore", str(out), str(relabelled)])["confusion_matrix"])
    assert moved.sum(axis=1).tolist() == [9, 11, 10, 10] and (moved.sum(axis=0) == pooled.sum(axis=0)).all()
    (relabelled / "REFERENCE.csv").write_text(f"{first_n},N\n")
    for bad, message in (([str(out), str(relabelled), "--replot", str(out)], "give --rescore or --replot, not both"),
                         ([str(out), str(relabelled)], "no label for 39 of the 40 records predicted"),
                         ([str(tmp_path / "not_cv.json"), str(tiny_cinc)], "not_cv.json: not a result of this script, "
                                                                            "a changed one, or one recorded before"),
                         ([str(out), str(tmp_path)], "file REFERENCE.csv is missing")):
        with pytest.raises(SystemExit):
            cv.main(["--rescore", *bad])
        assert message in capsys.readouterr().err
    for bad, message in ((["--seeds", "0", "0"], "--seeds: each seed once"), (["--set", "foo=1"], "unknown key(s) foo"),
                         (["--threads", "x"], "'x': torch threads"), (["--data-dir", str(SAMPLE)], "not REFERENCE.csv"),
                         (["--set", "data.fold=1"], "--set data.fold: the script sets it itself, give --only"),
                         (["--set", "data.folds=3"], "--set data.folds: the script sets it itself, give --folds "
                                                     "instead"),
                         (["--set", "data.split_seed=3"], "--set data.split_seed: the script sets it itself, give "
                                                          "--split-seed instead"),
                         (["--set", "seed=3"], "--set seed: the script sets it itself, give --seeds instead"),
                         (["--folds", "11"], "--folds 11: a stratified fold needs records of a class in each fold, "
                                             f"and the largest class of {data_root / 'cinc2017' / 'REFERENCE.csv'} "
                                             "has 10")):
        with pytest.raises(SystemExit):
            cv.main(args + settings + bad)
        assert message in capsys.readouterr().err
    # a second invocation reuses the finished folds instead of training again, if the config agrees
    finished = os.path.getmtime(runs / "seed0" / "fold1" / "metrics.json")
    assert cv.main(args + settings)["summary"] == report["summary"]
    assert os.path.getmtime(runs / "seed0" / "fold1" / "metrics.json") == finished
    written = os.path.getmtime(out)
    capsys.readouterr()
    assert [r["fold"] for r in cv.main(args + settings + ["--only", "1"])["runs"]] == [1]  # no summary: it says so
    assert capsys.readouterr().out == (f"trained or reused fold(s) 1: each run's result is in its metrics.json under "
                                       f"{runs} (--only writes no results file; all folds give the summary)\n")
    assert os.path.getmtime(out) == written
    with pytest.raises(SystemExit):  # refused before any training, as a usage error
        cv.main(args + settings[:-2])
    assert re.search(r"the run in .*fold1 \(its config.json\) was made with another model or config "
                     r"\(model_kwargs\.stem_channels: then 8, now .*: .*fold1 holds a run of another config",
                     capsys.readouterr().err)
    # two seeds on the same folds (seed 0 reused), predicted as their ensemble, with sign-flip TTA
    both = cv.main(args + settings + ["--seeds", "0", "1", "--tta", "flip", "--out", str(tmp_path / "cv2.json")])
    assert [(r["fold"], r["seed"]) for r in both["runs"]] == [(1, 0), (1, 1), (2, 0), (2, 1)]
    assert os.path.getmtime(runs / "seed0" / "fold1" / "metrics.json") == finished
    for fold in (1, 2):
        names = [metrics({"seed": s, "fold": fold})["splits"]["test_names"] for s in (0, 1)]
        assert names[0] == names[1]
    assert both["tta"] == "flip" and np.sum(both["summary"]["pooled_confusion_matrix"]) == 40
    assert set(both["summary"]["val_cinc_score_mean_per_seed"]) == {"0", "1"}
    # one epoch: the last checkpoint is the best one, and evaluates the same
    last = cv.main(args + settings + ["--seeds", "0", "1", "--tta", "flip", "--checkpoint", "last",
                                      "--out", str(tmp_path / "cv3.json")])
    assert last["checkpoint"] == "last" and last["summary"] == both["summary"]
    # class offsets fitted on each fold's validation records predict its test records
    fitted = cv.main(args + settings + ["--offsets", "--out", str(tmp_path / "cv4.json")])
    pooled = np.zeros((4, 4), dtype=np.int64)
    for k, (fold, plain) in enumerate(zip(fitted["summary"]["folds"], report["summary"]["folds"]), start=1):
        assert fold["offsets"]["N"] == 0 and list(fold["offsets"]) == list(CINC_CLASSES)
        assert 0 <= fold["val_cinc_score_cross_fitted"] <= 1 and fold["val_cinc_score"] == plain["val_cinc_score"]
        _, [(y_test, members)] = cv.evaluate([runs / "seed0" / f"fold{k}" / "checkpoints" / "best.pt"], ["test"], None)
        pooled += cv.confusion(y_test, predict_with_offsets(members[0], np.array(list(fold["offsets"].values()))))
    assert fitted["offsets"] and fitted["summary"]["pooled_confusion_matrix"] == pooled.tolist()


def test_cinc2017_rr_statistics_reach_the_model_in_training_evaluation_and_predict(tiny_cinc, tmp_path, capsys,
                                                                                   monkeypatch):
    from msresnet1d.data import HRV_FEATURES
    from msresnet1d.training.checkpoint import load_checkpoint
    from msresnet1d.training.ensemble import ensemble_predict

    cv = _load_script("cinc2017_cv")
    data_root = tmp_path / "data"
    data_root.mkdir()
    (data_root / "cinc2017").symlink_to(tiny_cinc)
    runs = tmp_path / "runs"
    settings = [word for item in TINY_CINC + ["data.rr=true"] for word in ("--set", item)]
    report = cv.main(["--data-dir", str(data_root), "--folds", "2", "--runs", str(runs), "--out",
                      str(tmp_path / "cv.json"), "--quiet", *settings])
    best = runs / "seed0" / "fold1" / "checkpoints" / "best.pt"
    ckpt = load_checkpoint(best)
    assert ckpt["task_state"]["rr_mean"].shape == (len(HRV_FEATURES),)
    assert report["summary"]["folds"][0]["val_cinc_score"] == pytest.approx(report["runs"][0]["best_val_score"])
    task, _, probabilities = ensemble_predict([best], "test")
    assert task.extra_features == len(HRV_FEATURES)
    shifted = {**ckpt, "task_state": {**ckpt["task_state"], "rr_mean": ckpt["task_state"]["rr_mean"] + 3}}
    torch.save(shifted, tmp_path / "shifted.pt")
    with pytest.raises(ValueError, match="its rr_mean .* differs"):  # the task refits them on the data
        ensemble_predict([tmp_path / "shifted.pt"], "test")
    # predict on a test record: its windows' mean probability is what evaluation gave that record;
    # standardised otherwise, the statistics change the output (they reach the model)
    name = task.splits["test_names"][0]
    windows = {}
    for checkpoint in (best, tmp_path / "shifted.pt"):
        labels = tmp_path / checkpoint.stem
        assert cli_main(["predict", str(checkpoint), str(tiny_cinc / name), "--out-dir", str(labels)]) == 0
        windows[checkpoint.stem] = np.loadtxt(labels / f"{name}.pred.csv", delimiter=",", skiprows=1,
                                              usecols=range(3, 7), ndmin=2)
    np.testing.assert_allclose(windows["best"].mean(axis=0), probabilities[0], atol=2e-4)
    # the same from Python on a numpy signal (a Record built by hand), as an engineer's pipeline would
    import wfdb

    from msresnet1d.data import Record
    from msresnet1d.predict import label_windows

    raw = wfdb.rdrecord(str(tiny_cinc / name))
    mine = Record("mine", raw.p_signal.T.astype(np.float32), float(raw.fs), ("lead",), ("mV",))
    starts, from_python = label_windows(load_checkpoint(best), mine)
    from msresnet1d.predict import predict_beats

    with pytest.raises(ValueError, match=r"predict_beats labels with a beats model; this checkpoint is a 'rhythm' "
                                         r"model \(use predict_windows or label_windows\)"):
        predict_beats(load_checkpoint(best), tiny_cinc / name, None)
    np.testing.assert_allclose(from_python, windows["best"], atol=1e-4)  # the CSV has 4 decimals
    assert starts[0] == 0 and np.all(np.diff(starts) > 0)
    assert not np.allclose(windows["shifted"], windows["best"], atol=1e-3)
    # --adapt-bn on a rhythm record: the statistics of its own windows (a record of 30 s windows: few)
    adapted = tmp_path / "adapted"
    assert cli_main(["predict", str(best), str(tiny_cinc / name), "--out-dir", str(adapted), "--adapt-bn"]) == 0
    on_record = np.loadtxt(adapted / f"{name}.pred.csv", delimiter=",", skiprows=1, usecols=range(3, 7), ndmin=2)
    assert on_record.shape == windows["best"].shape and not np.allclose(on_record, windows["best"], atol=1e-3)
    # a recording with two leads: --leads picks the one the rhythm model reads; without it, or with
    # two names, predict stops and says so
    record = wfdb.rdrecord(str(tiny_cinc / name))
    two = np.column_stack([np.zeros_like(record.p_signal[:, 0]), record.p_signal[:, 0]])
    wfdb.wrsamp(name, fs=record.fs, units=["mV", "mV"], sig_name=["other", "chest"], p_signal=two,
                fmt=["16", "16"], adc_gain=[record.adc_gain[0]] * 2, baseline=[0, 0], write_dir=str(tmp_path))
    picked = tmp_path / "picked"
    assert cli_main(["predict", str(best), str(tmp_path / name), "--out-dir", str(picked), "--leads", "chest"]) == 0
    from_chest = np.loadtxt(picked / f"{name}.pred.csv", delimiter=",", skiprows=1, usecols=range(3, 7), ndmin=2)
    np.testing.assert_allclose(from_chest, windows["best"], atol=1e-4)
    assert cli_main(["predict", str(best), str(tmp_path / name), "--out-dir", str(picked)]) == 1
    assert "the rhythm model reads one lead, the record has 2 (other, chest): choose one with --leads" \
        in capsys.readouterr().err
    assert cli_main(["predict", str(best), str(tmp_path / name), "--out-dir", str(picked), "--leads", "chest", "other"]) == 1
    assert "leads (--leads) names 2 leads (chest, other); the rhythm model reads one" in capsys.readouterr().err
    # beat positions mean nothing to a rhythm model; per-record figures need several examples a record
    assert cli_main(["predict", str(best), str(tiny_cinc / name), "--out-dir", str(picked), "--detect"]) == 1
    assert "--detect and --annotator give beat positions, for beat models" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="--per-record: only beat models"):
        cli_main(["evaluate", str(best), "--per-record"])
    with pytest.raises(SystemExit, match=r"is a 'rhythm' model, one example a record \(for one CinC record, "
                                         r"msresnet1d predict --adapt-bn adapts to its windows\)$"):
        cli_main(["evaluate", str(best), "--adapt-bn"])
    import msresnet1d.predict as predict_module

    threads, seen = torch.get_num_threads(), []
    label = predict_module.predict_windows
    monkeypatch.setattr(predict_module, "predict_windows", lambda *args: seen.append(torch.get_num_threads())
                        or label(*args))
    assert cli_main(["predict", str(best), str(tiny_cinc / name), "--out-dir", str(picked), "--threads", "1"]) == 0
    assert seen == [1] and torch.get_num_threads() == threads == 2  # the caller's again after a call from Python


def test_bench_models_refuses_bad_options_before_any_work(capsys, monkeypatch):
    script = _load_script("bench_models")
    monkeypatch.setenv("MSRESNET1D_DATA", "")  # empty: unset, as msresnet1d takes it
    for bad in (["--variants", "fp32,chanels_last"], ["--modes", "fp32,bf61"], ["--mode-cells", "msresnet1d_small-1500-1"],
                ["--mode-cells", "nosuch:1500:1"], ["--epoch-batches", "-5"], ["--rounds", "0"],
                ["--batches", "1", "0"], ["--rhythm-fs", "0"], ["--budget-s", "-1"]):
        with pytest.raises(SystemExit):
            script.main(bad)
        assert bad[0] in capsys.readouterr().err
    # the targets need MIT-BIH: a data folder without it is an error, not a skipped section in the results file
    for bad, message in ((["--only-targets", "--data-dir", str(SAMPLE.parent)], "not a folder of WFDB records"),
                         (["--data-dir", str(SAMPLE.parent / "fashion-mnist")], "not a folder of WFDB records"),
                         (["--only-targets", "--data-dir", ""], "argument --data-dir: empty: give a path"),
                         (["--only-targets"], "give --data-dir or set MSRESNET1D_DATA"),
                         (["--only-targets", "--skip-targets"], "nothing would be timed"),
                         (["--set", "model_kwargs.stem_strid=2"], "takes no option 'stem_strid'"),  # before any work
                         (["--set", "threads=2"], "--threads"), (["--set", "data.data_dir=/x"], "--data-dir"),
                         (["--set", 'task="rhythm"'], "unknown key"),  # the beat options refused by the rhythm task
                         (["--set", 'task="rhythm"', "--set", "data={}", "--set", "model_kwargs={}"],
                          "--set task: the targets time a beat classifier, the task of mitdb_beats.toml")):
        with pytest.raises(SystemExit):
            script.main(bad)
        assert message in capsys.readouterr().err
    # the targets' ratio: time per sample over the batches both variants timed
    assert script._time_per_sample([1.0, 2.0, 9.0], [10, 10, 10], 2) == pytest.approx(0.15)


def test_bench_models_times_the_speed_targets_on_the_embedded_sample(tmp_path):
    # the section that times a DS1 epoch and DS2 inference, cut to 2 batches of each; run as users
    # run it (its thread study starts worker processes that import the script by its name)
    # (with the main job's config set back to 180 Hz and the default stem by --set, as it was until 2026-12-07)
    out = tmp_path / "targets.json"
    run = subprocess.run([sys.executable, str(REPO / "experiments" / "bench_models.py"), "--only-targets",
                          "--data-dir", str(SAMPLE), "--epoch-batches", "2", "--target-variants", "fp32,channels_last",
                          "--threads", "1", "--out", str(out), "--set", "data.fs=180",
                          "--set", "model_kwargs.stem_kernel=7", "--set", "model_kwargs.stem_stride=2"],
                         capture_output=True, text=True, timeout=600,
                         env={**os.environ, "OMP_NUM_THREADS": "1", "MSRESNET1D_CACHE": str(tmp_path / "cache")})
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(out.read_text())
    targets = report["targets"]
    assert report["provenance"]["command"][:2] == ["experiments/bench_models.py", "--only-targets"]
    assert (targets["ds1_beats"], targets["ds2_beats"], targets["parameters"]) == (5164, 4898, 101669)
    assert (targets["fs_hz"], targets["input_length"], targets["model_kwargs"]["stem_kernel"]) == (180, 126, 7)
    for variant in ("fp32", "channels_last"):
        timed = targets["variants"][variant]
        assert timed["train_samples_timed"] == 2 * 256 and timed["extrapolated"] and timed["epoch_s"] > 0
    assert targets["onnxruntime"]["max_abs_diff_vs_torch"] < 1e-4
    bf16 = targets["bf16_inference_of_the_first_variant"]  # the fp32 model after its 2 batches, under bf16 autocast
    assert bf16["beats"] == 4898 and bf16["model_trained_batches"] == 2 and 0 <= bf16["class_changed"] < 4898 // 10
    assert 0 < bf16["max_abs_probability_diff"] < 0.5 and 0 < bf16["accuracy_fp32"] <= 100
    markdown = (tmp_path / "targets.md").read_text()
    assert "run under bf16 autocast on DS2: " in markdown
    # the table shows the JSON's seconds as recorded (2 decimals), not rounded a second time: a DS2 time of
    # 3.05 s once read "3.0" beside "no" for the 3 s target
    timed = targets["variants"]["channels_last"]
    assert f"| {timed['epoch_s']:.2f} |" in markdown and f"| {timed['infer_s']:.2f} |" in markdown
    for timed in (*targets["variants"].values(), targets["onnxruntime"]):  # "met" is the figure's, as printed
        assert timed["meets_infer_target"] == (timed["infer_s"] <= 3)
        assert timed.get("meets_epoch_target", True) == (timed.get("epoch_s", 0) <= 20)


def test_bench_models_rounds_the_targets_seconds_up():
    # rounded to nearest, a DS2 time of 3.004 s read "3.00" beside "no" for the "at most 3 s" target
    seconds_up = _load_script("bench_models").seconds_up
    assert [seconds_up(t) for t in (3.004, 3.0, 2.9999, 1.1, 0.29, 6.521)] == [3.01, 3.0, 3.0, 1.1, 0.29, 6.53]
    assert all((seconds_up(t) <= 3) == (t <= 3) for t in (2.99, 2.999999, 3.0, 3.000001, 3.01))


def test_bench_models_says_a_worker_died_before_a_call(monkeypatch):
    # a call to a killed worker broke its pipe on the send: BrokenPipeError, not the script's WorkerError
    monkeypatch.syspath_prepend(str(REPO / "experiments"))  # where the spawned worker imports the script from
    bench = _load_script("bench_models")
    monkeypatch.setitem(sys.modules, "bench_models", bench)  # the module its worker function is pickled by
    worker = bench.Worker("1")
    worker.process.kill()
    worker.process.join()
    with pytest.raises(bench.WorkerError, match=r"worker '1' died \(exit code -9\)"):
        worker(bench.seconds_up, 1.0)


def test_bench_scripts_refuse_bad_options_and_data_folders_before_any_work(tmp_path, capsys):
    bench_data, fashion, inference = (_load_script(name) for name in ("bench_data", "bench_fashion", "bench_inference"))
    out = ["--out", str(tmp_path / "bench.json")]
    wfdb_only = tmp_path / "records"  # WFDB records, but neither database's marker file
    wfdb_only.mkdir()
    (wfdb_only / "A00001.hea").write_text("A00001 1 300 9000\n")
    for main, bad, message in (
            (bench_data.main, ["--repeats", "0"], "--repeats: '0': a whole number >= 1"),
            (bench_data.main, ["--data-dir", str(tmp_path / "none")], f"{tmp_path / 'none'} does not exist"),
            (bench_data.main, ["--data", str(wfdb_only), "--skip-cinc"], "not the header of an MIT-BIH record"),
            (bench_data.main, ["--data-dir", str(SAMPLE)], "not REFERENCE.csv"),  # mitdb/ itself needs --skip-cinc
            (fashion.main, ["--data-dir", str(tmp_path)], f"--data-dir {tmp_path}: no Fashion-MNIST there"),
            (fashion.main, ["--threads", "-1"], "'-1': torch threads"),
            (inference.main, ["--threads", "-1"], "'-1': torch threads"),
            (inference.main, ["--data-dir", str(wfdb_only)], "not the header of an MIT-BIH record"),
            (inference.main, ["--repeats", "0"], "--repeats: '0': a whole number >= 1"),
            (inference.main, ["--beat-fs", "-5"], "--beat-fs: '-5': a number > 0"),
            (inference.main, ["--data-dir", str(SAMPLE), "--record", "999"], f"--record: no record 999 in {SAMPLE}"),
            (fashion.main, ["--sizes", "0"], "--sizes: '0': a whole number >= 1")):
        with pytest.raises(SystemExit):
            main([*bad, *out])
        assert message in capsys.readouterr().err
    assert not (tmp_path / "bench.json").exists()


def test_rhythm_runs_on_a_database_of_two_lead_records_and_evaluate_refuses_a_relabelled_one(tiny_cinc, tmp_path,
                                                                                           capsys):
    """data.lead picks the lead of multi-lead records (predict reads it too); without validation
    (val_fraction 0) the run trains; evaluate refuses a database whose labels changed since the run
    (its folds would test records the model trained on); predict warns of a record shorter than a window."""
    import wfdb

    from msresnet1d.training.checkpoint import load_checkpoint

    db = tmp_path / "cinc2017"
    db.mkdir()
    with open(tiny_cinc / "REFERENCE.csv", newline="") as f:
        rows = list(csv.reader(f))
    (db / "REFERENCE.csv").write_text("".join(f"{name},{label}\n" for name, label in rows))
    for name, _ in rows:
        record = wfdb.rdrecord(str(tiny_cinc / name))
        two = np.column_stack([np.zeros_like(record.p_signal[:, 0]), record.p_signal[:, 0]])
        wfdb.wrsamp(name, fs=record.fs, units=["mV", "mV"], sig_name=["other", "chest"], p_signal=two,
                    fmt=["16", "16"], write_dir=str(db))
    out = tmp_path / "run"
    given = [item for item in TINY_CINC if not item.startswith("data.val_fraction=")] + ["data.val_fraction=0",
                                                                                        "data.folds=2"]
    settings = [word for item in given for word in ("--set", item)]
    base = ["train", "--config", "cinc2017_cpu", "--threads", "1", "--quiet", "--data-dir", str(db), *settings]
    assert cli_main([*base, "--out", str(tmp_path / "no-lead")]) == 1
    assert "has 2 leads (other, chest); name one in RhythmConfig.lead" in capsys.readouterr().err
    assert cli_main([*base, "--out", str(out), "--set", 'data.lead="chest"']) == 0
    best = out / "checkpoints" / "best.pt"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["splits"]["val_records"] == 0 and metrics["monitor"] == "train_loss (no validation split)"
    with open(out / "log.csv") as f:  # the training loss that chose the epoch, not a "validation score" of -loss
        rows_logged = list(csv.DictReader(f))
    assert metrics["best_val_score"] is None and metrics["best_train_loss"] == pytest.approx(
        float(rows_logged[metrics["best_epoch"] - 1]["train_loss"]), rel=1e-4)
    assert load_checkpoint(best)["splits"]["test_names"] == metrics["splits"]["test_names"]
    name = metrics["splits"]["test_names"][0]
    assert cli_main(["predict", str(best), str(db / name), "--out-dir", str(tmp_path / "labels")]) == 0  # reads chest
    assert cli_main(["evaluate", str(best), "--data-dir", str(db)]) == 0
    capsys.readouterr()
    (db / "REFERENCE.csv").write_text("".join(f"{n},{label}\n" for n, label in rows if n != name))  # one row gone
    assert cli_main(["evaluate", str(best), "--data-dir", str(db)]) == 1
    assert "the database's records or labels changed since, and the model may have trained on records it would " \
           "now be tested on" in capsys.readouterr().err
    older = load_checkpoint(best)  # a checkpoint from before splits were kept: its test records' names alone
    older["test_names"] = older.pop("splits")["test_names"]
    torch.save(older, tmp_path / "older.pt")
    assert cli_main(["evaluate", str(tmp_path / "older.pt"), "--data-dir", str(db)]) == 1
    assert "the model may have trained on records it would now be tested on" in capsys.readouterr().err
    short = tmp_path / "short"
    short.mkdir()
    record = wfdb.rdrecord(str(db / name))
    wfdb.wrsamp("short", fs=record.fs, units=["mV"], sig_name=["chest"], p_signal=record.p_signal[:5 * record.fs, 1:],
                fmt=["16"], write_dir=str(short))
    with pytest.warns(UserWarning, match=r"the recording is \d+ samples long, shorter than one window \(\d+ samples\): "
                                         "labelled from one zero-padded window"):
        assert cli_main(["predict", str(best), str(short / "short"), "--out-dir", str(tmp_path / "labels")]) == 0


@pytest.mark.parametrize("settings, message", [
    (["data.hop_seconds=40"], r"\[data\] hop_seconds must be at most crop_seconds \(30.0 s\), got 40"),
    (["data.fs=40", "data.rr=true"], r"\[data\] fs must be at least 45 Hz with rr .*, got 40"),
    (["data.lead=\"I | II\""], r"\[data\] lead must be a lead name"),
])  # fmt: skip
def test_rhythm_data_options_that_only_fail_together_are_refused_before_any_data(settings, message, tmp_path):
    from msresnet1d.training.config import load_config, parse_overrides
    from msresnet1d.training.tasks import check_data

    cfg = load_config(Path(__file__).resolve().parents[1] / "experiments" / "configs" / "cinc2017_cpu.toml",
                      parse_overrides(settings))
    with pytest.raises(ValueError, match=message):
        check_data(cfg)


def test_experiment_scripts_refuse_a_results_file_they_could_not_write_before_any_run(tmp_path, capsys, monkeypatch):
    # an existing folder, or a path under a file: found at the end, after every run (or benchmark), the results
    # would be lost
    blocker = tmp_path / "file"
    blocker.write_text("")
    runs = tmp_path / "runs"
    scripts = {"mitdb_inter_patient": ["--data-dir", str(SAMPLE), "--runs", str(runs)],
               "mitdb_ds1_cv": ["--data-dir", str(SAMPLE), "--runs", str(runs), "--variant", "main"],
               "mitdb_ds1_rr_screen": ["--data-dir", str(SAMPLE), "--runs", str(runs)],
               "cinc2017_cv": ["--data-dir", str(tmp_path / "no-cinc"), "--runs", str(runs)],
               "compare_models": ["--data-dir", str(SAMPLE), "--runs", str(runs)],
               # the benchmarks: with an option refused later, so that none of them starts its work here
               "bench_data": ["--data-dir", str(tmp_path / "none")], "bench_models": ["--presets", "none"],
               "bench_inference": ["--data-dir", str(tmp_path / "none")],
               "bench_fashion": ["--data-dir", str(tmp_path / "none")]}
    for name, args in scripts.items():
        script = _load_script(name)
        monkeypatch.setattr(script, "recorded_run", lambda *a, **k: pytest.fail(f"{name} trained"), raising=False)
        folder = f"--out {tmp_path}: --out is the results file now" if name == "compare_models" else \
            f"--out {tmp_path} is a folder"  # compare_models' --out named its runs folder before
        for target, problem in ((tmp_path, folder),
                                (blocker / "results.json", f"--out {blocker / 'results.json'}: {blocker} is a file")):
            with pytest.raises(SystemExit):
                script.main([*args, "--out", str(target)])
            assert problem in capsys.readouterr().err, name
    assert not runs.exists()


def test_scripts_writing_partial_results_refuse_a_partial_name_over_the_limit_before_any_run(tmp_path, capsys,
                                                                                          monkeypatch):
    # --out's name fits the file system, <name>.partial.json does not: found at the first partial write (for
    # compare_models, once the first model had trained), it is refused with --out
    from msresnet1d.atomic import name_max

    limit = name_max(tmp_path)
    out = tmp_path / f"{'r' * (limit - len('.json'))}.json"  # the longest name the folder takes
    partial = tmp_path / f"{'r' * (limit - len('.json'))}.partial.json"
    runs = tmp_path / "runs"
    scripts = {"compare_models": ["--data-dir", str(SAMPLE), "--runs", str(runs), "--epochs", "1", "--models",
                                  MODELS[0], *SPLIT],
               "bench_fashion": ["--sizes", "28", "--steps", "1", "--data-dir", str(tmp_path / "none")]}
    for name, args in scripts.items():
        script = _load_script(name)
        monkeypatch.setattr(script, "recorded_run", lambda *a, **k: pytest.fail(f"{name} trained"), raising=False)
        with pytest.raises(SystemExit):
            script.main([*args, "--out", str(out)])
        assert (f"--out's partial results file {partial}: the name {partial.name[:40]}... is {limit + 8} bytes long, "
                f"over the {limit}-byte limit of the file system of {tmp_path}") in capsys.readouterr().err, name
    assert not runs.exists() and not out.exists()


def test_bench_fashion_times_each_mode_in_one_run(fashion_mnist_dir, tmp_path, monkeypatch):
    fashion = _load_script("bench_fashion")
    out = tmp_path / "bench.json"
    report = fashion.main(["--sizes", "28", "--steps", "1", "--warmup", "0", "--data-dir", str(fashion_mnist_dir),
                           "--modes", "fp32", "bf16_channels_last", "--out", str(out)])
    runs = report["sizes"]["28"]
    assert list(runs) == ["fp32", "bf16_channels_last"] and json.loads(out.read_text()) == report
    assert runs["fp32"]["speed_vs_first_mode"] == 1.0 and runs["bf16_channels_last"]["mode"] == "bf16_channels_last"
    assert runs["bf16_channels_last"]["speed_vs_first_mode"] == pytest.approx(
        runs["bf16_channels_last"]["images_per_second"] / runs["fp32"]["images_per_second"], rel=1e-2)
    assert not (tmp_path / "bench.partial.json").exists()
    with pytest.raises(SystemExit):
        fashion.main(["--modes", "fp32", "fp32", "--out", str(out)])
    # interrupted after the first mode: its result in the partial file, nothing under the final name
    bench, done = fashion.bench_size, []

    def stopped_at_the_second(*args, **kwargs):
        if done:
            raise KeyboardInterrupt
        done.append(bench(*args, **kwargs))
        return done[0]

    monkeypatch.setattr(fashion, "bench_size", stopped_at_the_second)
    stopped = tmp_path / "stopped.json"
    with pytest.raises(KeyboardInterrupt):
        fashion.main(["--sizes", "28", "--steps", "1", "--warmup", "0", "--data-dir", str(fashion_mnist_dir),
                      "--modes", "fp32", "channels_last", "--out", str(stopped)])
    assert not stopped.exists() and list(json.loads((tmp_path / "stopped.partial.json").read_text())["sizes"]["28"]) \
        == ["fp32"]


def test_ds1_cv_replot_draws_a_recorded_result_with_its_own_baseline(tmp_path, monkeypatch, capsys):
    import msresnet1d.training.plots as plots

    cv = _load_script("mitdb_ds1_cv")
    drawn, save = {}, plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path: (drawn.update({Path(path).name: fig}), save(fig, path)))
    result = tmp_path / "ensemble.json"  # its baseline, irr2, is not its first variant (the stale PNGs drew irr)
    shutil.copy(REPO / "experiments" / "results" / "mitdb_ds1_cv_heterogeneous_ensemble.json", result)
    assert cv.main(["--replot", str(result)]) == json.loads(result.read_text())
    assert (tmp_path / "ensemble.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert capsys.readouterr().out == f"wrote {tmp_path / 'ensemble.png'}\n"
    widths = {line.get_label().split(" (")[0]: line.get_linewidth() for line in drawn["ensemble.png"].axes[0].get_lines()}
    assert [name for name, width in widths.items() if width == 3] == ["irr2"] and len(widths) == 6
    for text in ('{"variants": {}}', "[]", "{"):
        (tmp_path / "not_cv.json").write_text(text)
        with pytest.raises(SystemExit):
            cv.main(["--replot", str(tmp_path / "not_cv.json")])
        assert "not_cv.json: not a result of this script" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cv.main([])
    assert "the following arguments are required: --variant (unless --replot)" in capsys.readouterr().err


def test_inter_patient_replot_draws_a_recorded_results_pngs(tmp_path, monkeypatch, capsys):
    import msresnet1d.training.plots as plots

    script = _load_script("mitdb_inter_patient")
    drawn, save = {}, plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path: (drawn.update({Path(path).name: fig}), save(fig, path)))
    result = tmp_path / "recorded.json"
    shutil.copy(REPO / "experiments" / "results" / "mitdb_inter_patient.json", result)
    report = json.loads(result.read_text())
    assert script.main(["--replot", str(result)]) == report
    assert capsys.readouterr().out.splitlines() == [f"wrote {tmp_path / 'recorded.png'}",
                                                    f"wrote {tmp_path / 'recorded_confusion.png'}"]
    scores = drawn["recorded.png"].axes[0]
    assert scores.get_title() == "MIT-BIH inter-patient, DS2 test (recorded)"  # a rerun's PNG says which it is
    labels = scores.get_legend_handles_labels()[1]
    assert f"this work, {len(report['runs'])} seeds (mean ± SD)" in labels  # what its error bars are
    matrix = drawn["recorded_confusion.png"].axes[0]
    assert [t.get_text().split("\n")[0] for t in matrix.texts[:5]] == \
        [f"{n:,}" for n in report["ensemble_percent"]["confusion_matrix"][0]]
    (tmp_path / "bad.json").write_text('{"config": {}}')
    with pytest.raises(SystemExit):
        script.main(["--replot", str(tmp_path / "bad.json")])
    assert "bad.json: not a result of this script" in capsys.readouterr().err


@pytest.mark.parametrize("script, recorded, path, value", [
    ("mitdb_inter_patient", "mitdb_inter_patient.json", ("ensemble_percent", "confusion_matrix", 2), None),
    ("mitdb_inter_patient", "mitdb_inter_patient.json", ("summary_percent", "S", "f1", "mean"), "high"),
    ("mitdb_inter_patient", "mitdb_inter_patient.json", ("ensemble_percent", "V"), ...),  # ...: deleted
    ("mitdb_ds1_cv", "mitdb_ds1_cv_stem2.json", ("variants", "main", "pooled", "S"), None),
    ("mitdb_ds1_cv", "mitdb_ds1_cv_stem2.json", ("variants", "stem2+last", "fold_macro_f1", 1), {}),
    ("cinc2017_cv", "cinc2017_cv_7_seeds_tta.json", ("summary", "pooled_confusion_matrix", 2, 1), -1),
    ("cinc2017_cv", "cinc2017_cv_7_seeds_tta.json", ("summary", "pooled_confusion_matrix", 2, 1), None),
])
def test_replot_of_a_changed_result_is_refused_naming_the_file(tmp_path, capsys, script, recorded, path, value):
    # a value deep inside a recorded result changed: these were raw tracebacks from numpy or matplotlib (TypeError,
    # ValueError, KeyError), since only the top-level keys were read before drawing
    result = json.loads((REPO / "experiments" / "results" / recorded).read_text())
    *outer, last = path
    holder = functools.reduce(lambda d, key: d[key], outer, result)
    if value is ...:
        del holder[last]
    else:
        holder[last] = value
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(result))
    with pytest.raises(SystemExit):
        _load_script(script).main(["--replot", str(changed)])
    assert f"--replot {changed}: not a result of this script, a changed one" in capsys.readouterr().err


def test_inter_patient_replots_a_result_recorded_before_the_seeds_ensemble(tmp_path, capsys):
    # mitdb_inter_patient_kernels_3_7_15.json has no ensemble_percent (the script tested no ensemble then): its
    # scores are drawn, and the confusion PNG it cannot give is said, not a "not a result of this script" error
    script = _load_script("mitdb_inter_patient")
    result = tmp_path / "kernels.json"
    shutil.copy(REPO / "experiments" / "results" / "mitdb_inter_patient_kernels_3_7_15.json", result)
    report = json.loads(result.read_text())
    assert "ensemble_percent" not in report and len(report["runs"]) == 3
    assert script.main(["--replot", str(result)]) == report
    assert capsys.readouterr().out.splitlines() == [
        f"wrote {tmp_path / 'kernels.png'}", f"{result} holds no ensemble's confusion matrix (recorded before the "
                                              "seeds' ensemble was tested): kernels_confusion.png not drawn"]
    assert (tmp_path / "kernels.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "kernels_confusion.png").exists()


class _Built(Exception):
    """Raised by :func:`_script_parsers`' parsers where they would parse: the parser built."""


def _script_parsers(monkeypatch) -> dict:
    """Each experiment script's parser as its ``main`` builds it, stopped before it parses (its
    ``script_parser`` restored after)."""
    import msresnet1d.arguments as arguments

    build = arguments.script_parser

    def stopped(doc):
        parser = build(doc)

        def parse_args(*args, **kwargs):
            raise _Built(parser)

        parser.parse_args = parse_args
        return parser

    parsers = {}
    with monkeypatch.context() as patch:
        patch.setattr(arguments, "script_parser", stopped)
        for name in SCRIPTS:
            with pytest.raises(_Built) as built:
                _load_script(name).main([])
            parsers[name] = built.value.args[0]
    return parsers


#: The scripts' flags that name files or folders (the --config of a name in experiments/configs too).
PATH_FLAGS = {"--out", "--runs", "--data-dir", "--replot", "--rescore", "--json", "--config"}


def test_every_path_flag_of_the_scripts_expands_a_leading_tilde_as_msresnet1d_does(tmp_path, monkeypatch, capsys):
    # the shell leaves ~ as it is after "=" (--out=~/r.json) and in a quoted variable: msresnet1d's path_flag expands
    # it; a flag of type Path took it as a folder named "~" in the current folder
    from msresnet1d.arguments import path_flag

    parsers = _script_parsers(monkeypatch)
    for name, parser in parsers.items():
        flags = [action for action in parser._actions if PATH_FLAGS & set(action.option_strings)]
        assert {"--out", "--data-dir"} <= {flag for action in flags for flag in action.option_strings}, name
        assert all(action.type is path_flag for action in flags), name
        assert not [action.dest for action in parser._actions if action.type is Path], name
    assert {name for name, parser in parsers.items() if "--replot" in parser._option_string_actions} == \
        {"cinc2017_cv", "mitdb_ds1_cv", "mitdb_inter_patient"}
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    (home / "data").mkdir(parents=True)
    (home / "data" / "mitdb").symlink_to(SAMPLE)
    cwd.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    script = _load_script("detect_offsets")
    script.main(["--data-dir=~/data", "--records", "119", "--out=~/offsets.json"])
    assert capsys.readouterr().out.endswith(f"wrote {home / 'offsets.json'}\n")
    monkeypatch.setenv("MSRESNET1D_DATA", "~/data")  # quoted, or from an .env file: the shell left it
    script.main(["--records", "119", "--out=~/from_env.json"])
    assert json.loads((home / "from_env.json").read_text())["database"] == str(home / "data" / "mitdb")
    args = _load_script("compare_models").parse_args(["--data-dir=~/data", "--models", "msresnet1d_late",
                                                       "--runs=~/runs", "--out=~/compare.json", *SPLIT])
    assert (args.runs, args.out) == (home / "runs", home / "compare.json")
    assert list(cwd.iterdir()) == []  # no folder named ~
    with pytest.raises(SystemExit):  # an unset variable given as the flag, as msresnet1d refuses it
        _load_script("mitdb_inter_patient").main(["--out", ""])
    assert "argument --out: empty: give a path (an unset shell variable?), or leave the flag out" in \
        capsys.readouterr().err


def test_threads_and_quiet_help_say_each_scripts_default_and_why(monkeypatch):
    import argparse

    from msresnet1d.arguments import QUIET_HELP
    from msresnet1d.cli import build_parser

    parsers = _script_parsers(monkeypatch)
    threads = {name: parser._option_string_actions["--threads"] for name, parser in parsers.items()
               if "--threads" in parser._option_string_actions}
    defaults = {name: action.default for name, action in threads.items()}
    # the training scripts run as msresnet1d train does (PyTorch's threads), but compare_models, whose table times
    # the models; the benchmarks as their recorded results were timed (README's commands give no --threads)
    assert defaults == {"cinc2017_cv": 0, "mitdb_ds1_cv": 0, "mitdb_inter_patient": 0, "compare_models": 1,
                        "bench_fashion": 1, "bench_inference": 2, "bench_models": None}
    defaults["bench_models"] = _load_script("bench_models").DEFAULTS["threads"]  # None: --quick's or "auto"
    for name, action in threads.items():
        assert re.search(rf"\(.*default {defaults[name]}: \w", action.help), (name, action.help)
    for name in ("cinc2017_cv", "mitdb_ds1_cv", "mitdb_inter_patient"):
        assert "default 0: PyTorch's default, as msresnet1d train has it; on a shared machine, 1" in threads[name].help
    results = REPO / "experiments" / "results"
    assert json.loads((results / "bench_inference.json").read_text())["threads"] == defaults["bench_inference"]
    assert json.loads((results / "bench_fashion.json").read_text())["torch_threads"] == defaults["bench_fashion"]
    quiet = {name: parser._option_string_actions["--quiet"].help for name, parser in parsers.items()
             if "--quiet" in parser._option_string_actions}
    commands = next(action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction))
    train = commands.choices["train"]
    assert quiet == dict.fromkeys(TRAINING_SCRIPTS, QUIET_HELP) and \
        train._option_string_actions["--quiet"].help == QUIET_HELP


def test_the_data_folder_is_data_dir_in_every_script(monkeypatch):
    # bench_data's --data alias (the option's name before 2026-12-05) is gone from its help: --data still works
    # there as everywhere, argparse's abbreviation of --data-dir
    import argparse

    parsers = _script_parsers(monkeypatch)
    for name, parser in parsers.items():
        assert parser._option_string_actions["--data-dir"].option_strings == ["--data-dir"], name
        assert "--data " not in parser.format_help() and "--data," not in parser.format_help(), name
    assert argparse.ArgumentParser.parse_args(parsers["bench_data"], ["--data", str(SAMPLE)]).data_dir == str(SAMPLE)


def test_recorded_cinc_predictions_give_their_recorded_pooled_scores(cinc2017_dir):
    """The test predictions a result JSON records (the kept result's and the seed-0 rerun's) are the
    ones its pooled confusion matrix counts: --rescore against the same labels gives it back."""
    script = _load_script("cinc2017_cv")
    labels = read_reference(cinc2017_dir)
    results = sorted((REPO / "experiments" / "results").glob("cinc2017_cv*.json"))
    recorded = [json.loads(path.read_text()) for path in results]
    recorded = [report for report in recorded if "test_predictions" in report]
    assert len(recorded) >= 2 and all(len(report["test_predictions"]) == 4000 for report in recorded)
    for report in recorded:
        found = script.rescore(report["test_predictions"], labels)
        assert found["confusion_matrix"] == report["summary"]["pooled_confusion_matrix"]
        assert found["cinc_score"] == report["summary"]["pooled"]["cinc_score"]
