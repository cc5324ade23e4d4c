"""``msresnet1d predict`` on odd records and arguments: every refusal is a clear error, made before
anything is written. Checkpoints are untrained models (what they predict does not matter here);
records are copies, or rewrites with ``wfdb.wrsamp``, of the embedded sample's record 100."""

import errno
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import wfdb

from msresnet1d.cli import main
from msresnet1d.data import read_record
from msresnet1d.data.aami import BEAT_SYMBOLS
from msresnet1d.training.checkpoint import FORMAT_VERSION
from msresnet1d.training.config import TrainConfig
from msresnet1d.training.run import create_configured_model
from msresnet1d.training.tasks import model_inputs, resolve_data

SAMPLE = Path(__file__).resolve().parents[1] / "datasets" / "mitdb-sample"


def untrained_checkpoint(path: Path, task: str, data: dict | None = None) -> Path:
    """A checkpoint as ``msresnet1d train`` writes it, of an untrained model of ``task`` (beats: of the
    signal alone, unless ``data`` says otherwise; RR features standardised by mean 0 and deviation 1)."""
    model, classes = {"beats": ("msresnet1d_beat", ["N", "S", "V", "F", "Q"]),
                      "rhythm": ("msresnet1d_small", ["N", "A", "O", "~"])}[task]
    if data is None:
        data = {"rr": False, "template": False} if task == "beats" else {}
    cfg = resolve_data(TrainConfig(task=task, model=model, data=data))
    in_channels, extra = model_inputs(cfg)
    net = create_configured_model(cfg, in_channels, len(classes), extra)
    state = {"rr_mean": torch.zeros(extra), "rr_std": torch.ones(extra)} if task == "beats" and extra else {}
    torch.save({"format": FORMAT_VERSION, "epoch": 0, "config": cfg.to_dict(), "model": net.state_dict(),
                "class_names": classes, "task_state": state}, path)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("checkpoints")
    return {task: untrained_checkpoint(folder / f"{task}.pt", task) for task in ("beats", "rhythm")}


@pytest.fixture
def records(tmp_path: Path) -> Path:
    """``rec/100`` (a copy), ``rec/unnamed`` (its first lead, without a description) and
    ``rec/slow`` (its first lead at 10 Hz), the last two with 100's annotations."""
    folder = tmp_path / "rec"
    folder.mkdir()
    for path in SAMPLE.glob("100.*"):
        shutil.copy(path, folder)
    mlii = wfdb.rdrecord(str(folder / "100"), channels=[0]).p_signal
    for name, fs, lead, signal in (("unnamed", 360, "", mlii), ("slow", 10, "MLII", mlii[::36])):
        wfdb.wrsamp(name, fs=fs, units=["mV"], sig_name=[lead], p_signal=signal, fmt=["16"], write_dir=str(folder))
        shutil.copy(folder / "100.atr", folder / f"{name}.atr")
    return folder


def test_predict_refuses_to_overwrite_the_annotations_it_reads(checkpoints, records, capsys):
    before = (records / "100.atr").read_bytes()
    for out_dir in ([], ["--out-dir", str(records / ".." / "rec")]):
        assert main(["predict", str(checkpoints["beats"]), str(records / "100"), "--extension", "atr", *out_dir]) == 1
        assert (f"--extension atr would overwrite {records / '100'}.atr, the annotations predict reads the beats "
                "from: choose another --extension or --out-dir") in capsys.readouterr().err
    assert (records / "100.atr").read_bytes() == before and not (records / "100.atr.csv").exists()
    assert main(["predict", str(checkpoints["beats"]), str(records / "100"), "--extension", "atr", "--out-dir",
                 str(records.parent / "labels")]) == 0
    assert (records / "100.atr").read_bytes() == before and (records.parent / "labels" / "100.atr").is_file()
    # without reading them (detected beats, a rhythm model), the record's reference annotations are kept too
    for model, detect in ((checkpoints["beats"], ["--detect"]), (checkpoints["rhythm"], ["--leads", "MLII"])):
        assert main(["predict", str(model), str(records / "100"), "--extension", "atr", *detect]) == 1
        assert (f"--extension atr would overwrite {records / '100'}.atr, the record's reference annotations: choose "
                "another --extension or --out-dir") in capsys.readouterr().err
    assert (records / "100.atr").read_bytes() == before
    # the same files through links: compared as files, not as folders
    links = records.parent / "links"
    links.mkdir()
    for path in records.glob("100.*"):
        (links / path.name).symlink_to(path)
    assert main(["predict", str(checkpoints["beats"]), str(links / "100"), "--extension", "atr", "--out-dir",
                 str(records)]) == 1
    assert "would overwrite" in capsys.readouterr().err and (records / "100.atr").read_bytes() == before


def test_the_overwrite_advice_comes_first_in_a_read_only_data_folder(checkpoints, records, capsys, monkeypatch):
    # a shared data folder is read-only (faked: these tests run as root), and its annotation files may be too: the
    # refusal names the file --extension would overwrite, not the folder's or file's permissions
    from msresnet1d import atomic

    real = os.access
    for protected in (records, records / "100.atr"):
        monkeypatch.setattr(atomic.os, "access", lambda path, mode, *a, protected=protected, **kw:
                            Path(path) != protected and real(path, mode, *a, **kw))
        assert main(["predict", str(checkpoints["beats"]), str(records / "100"), "--extension", "atr"]) == 1
        assert f"--extension atr would overwrite {records / '100'}.atr" in capsys.readouterr().err


def test_predict_refuses_to_overwrite_the_records_own_files(checkpoints, records, capsys):
    for path in records.glob("100.*"):
        path.chmod(0o444)  # read-only files do not protect themselves: os.replace needs only the folder writable
    before = {path.name: path.read_bytes() for path in records.glob("100.*")}
    assert main(["predict", str(checkpoints["beats"]), str(records / "100"), "--extension", "dat"]) == 1
    assert (f"--extension dat would overwrite {records / '100'}.dat, one of the record's signal files: choose another "
            "--extension or --out-dir") in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["predict", str(checkpoints["beats"]), str(records / "100"), "--extension", "hea"])
    assert "'hea' is the extension of a record's header file" in capsys.readouterr().err
    assert {path.name: path.read_bytes() for path in records.glob("100.*")} == before
    assert main(["predict", str(checkpoints["beats"]), str(records / "100"), "--extension", "dat", "--out-dir",
                 str(records.parent / "labels")]) == 0  # elsewhere, the name is free


def test_predict_checks_both_outputs_before_the_work(checkpoints, records, capsys, monkeypatch):
    # a folder where the CSV goes would have failed after the annotation file was written: neither is now
    import msresnet1d.predict as predict_module

    (records / "100.pred.csv").mkdir()
    (records.parent / "a-file").write_text("")
    monkeypatch.setattr(predict_module, "predict_beats", lambda *a: pytest.fail("predicted before the outputs were checked"))
    for out_dir, message in (([], f"output {records / '100.pred.csv'} is a folder; give a file name"),
                             (["--out-dir", str(records.parent / "a-file")], f"{records.parent / 'a-file'} is a file")):
        assert main(["predict", str(checkpoints["beats"]), str(records / "100"), *out_dir]) == 1
        assert message in capsys.readouterr().err
    assert not (records / "100.pred").exists()


def test_a_folder_given_as_the_record_names_its_records(checkpoints, records, capsys, monkeypatch):
    assert main(["predict", str(checkpoints["beats"]), str(records)]) == 1
    assert (f"record {records} is a folder; give records in it, by their names without extension or as header "
            f"files (e.g. {records / '100'}, or {records / '*.hea'} for all 3: 100, slow, unnamed)"
            ) in capsys.readouterr().err
    monkeypatch.chdir(records)
    for here in ("", "."):  # no name: "PosixPath('.') has an empty name" before
        assert main(["predict", str(checkpoints["beats"]), here]) == 1
        assert ("record . is a folder; give records in it, by their names without extension or as header files (e.g. "
                "100, or *.hea for all 3: 100, slow, unnamed)") in capsys.readouterr().err
    (records / "100").mkdir()  # a folder beside the record, of its name: the record is meant
    assert main(["predict", str(checkpoints["beats"]), str(records / "100"), "--out-dir", str(records.parent / "o")]) == 0


def test_a_record_without_its_annotation_file_says_how_to_find_the_beats(checkpoints, records, capsys):
    (records / "100.atr").unlink()
    assert main(["predict", str(checkpoints["beats"]), str(records / "100"), "--out-dir", str(records.parent / "o")]) == 1
    assert "file 100.atr is missing: name the annotation file that holds its beats (--annotator) or find them with " \
           "--detect" in capsys.readouterr().err
    assert main(["predict", str(checkpoints["beats"]), str(records / "100"), "--out-dir", str(records.parent / "o"),
                 "--detect"]) == 0


@pytest.mark.parametrize("edit, problem", [({"lerning_rate": 0.1}, "unknown key(s) lerning_rate"),
                                           ({"task": "beat"}, "task must be one of"),
                                           ({"data": {"data_dir": 3}}, "[data] data_dir must be a folder path (or "
                                                                       "unset), got 3")])
def test_a_checkpoint_with_a_bad_config_is_named(checkpoints, records, tmp_path, edit, problem, capsys):
    ckpt = torch.load(checkpoints["beats"], weights_only=True)
    edited = tmp_path / "edited.pt"
    torch.save({**ckpt, "config": {**ckpt["config"], **edit}}, edited)
    assert main(["predict", str(edited), str(records / "100"), "--out-dir", str(tmp_path)]) == 1
    assert f"error: checkpoint {edited}: {problem}" in capsys.readouterr().err  # was "checkpoint config: ..."
    assert not list(tmp_path.glob("100.*"))


@pytest.mark.parametrize("task", ["beats", "rhythm"])
@pytest.mark.parametrize("spoil", ["nan_weight", "negative_running_var"])
def test_a_model_whose_outputs_are_not_finite_labels_nothing(checkpoints, records, tmp_path, task, spoil, capsys):
    # as evaluate refuses it: argmax would call every beat or window of NaN outputs class 0 (N), with NaN probabilities
    ckpt = torch.load(checkpoints[task], weights_only=True)
    key = "fc.weight" if spoil == "nan_weight" else next(k for k in ckpt["model"] if k.endswith("running_var"))
    ckpt["model"][key].fill_(float("nan") if spoil == "nan_weight" else -1.0)
    torch.save(ckpt, spoiled := tmp_path / "spoiled.pt")
    for adapt_bn in ([], ["--adapt-bn"]) if spoil == "nan_weight" else ([],):  # --adapt-bn replaces running_var
        assert main(["predict", str(spoiled), str(records / "100"), "--leads", "MLII", "--out-dir", str(tmp_path),
                     *adapt_bn]) == 1
        assert re.search(rf"error: checkpoint {re.escape(str(spoiled))}, record rec/100: the model's outputs are not "
                         r"finite \(NaN or inf\) for the window at sample \d+", capsys.readouterr().err)
        assert not list(tmp_path.glob("100.*"))


@pytest.mark.parametrize("names, problem", [(["S", "N", "V", "F", "Q"], "['S', 'N', 'V', 'F', 'Q']"),
                                            (["N", "S", "V", "F"], "['N', 'S', 'V', 'F']"),
                                            (["N", "N", "V", "F", "Q"], "['N', 'N', 'V', 'F', 'Q']")])
def test_class_names_other_than_the_tasks_are_refused(checkpoints, records, tmp_path, names, problem, capsys):
    # permuted names relabelled every beat silently (model output 0, N, written as S)
    ckpt = torch.load(checkpoints["beats"], weights_only=True)
    torch.save({**ckpt, "class_names": names}, edited := tmp_path / "edited.pt")
    assert main(["predict", str(edited), str(records / "100"), "--out-dir", str(tmp_path)]) == 1
    assert (f"error: checkpoint {edited}: its class_names are {problem}; a beats model's classes are "
            "['N', 'S', 'V', 'F', 'Q'], in that order") in capsys.readouterr().err
    assert not list(tmp_path.glob("100.*"))


@pytest.mark.parametrize("key, value, problem", [
    ("rr_mean", torch.zeros(3), "has shape (3,), not (8,): one value for each of the model's 8 extra (RR) features"),
    ("rr_mean", torch.tensor(0.0), "has shape (), not (8,)"),
    ("rr_mean", torch.zeros(8, dtype=torch.int64), "holds int64 values, not floating-point ones"),
    ("rr_std", -torch.ones(8), "holds -1.0 at 0: a standard deviation must be finite and > 0"),
    ("rr_std", torch.zeros(8), "holds 0.0 at 0: a standard deviation must be finite and > 0"),
    ("rr_mean", torch.full((8,), float("nan")), "holds nan at 0: a mean must be finite"),
])
def test_rr_statistics_that_do_not_fit_the_model_are_named(tmp_path, records, key, value, problem, capsys):
    # a wrong shape failed in numpy ("operands could not be broadcast"), naming neither file nor key; a scalar, a
    # negative deviation or whole numbers changed the predictions silently
    path = untrained_checkpoint(tmp_path / "rr.pt", "beats", {"template": False})
    ckpt = torch.load(path, weights_only=True)
    ckpt["task_state"][key] = value
    torch.save(ckpt, path)
    assert main(["predict", str(path), str(records / "100"), "--out-dir", str(tmp_path)]) == 1
    assert f"error: checkpoint {path}: its task_state {key} {problem}" in capsys.readouterr().err
    assert not list(tmp_path.glob("100.*"))


def test_detect_and_annotator_are_refused_together(checkpoints, records, capsys):
    with pytest.raises(SystemExit):
        main(["predict", str(checkpoints["beats"]), str(records / "100"), "--detect", "--annotator", "atr"])
    assert "argument --annotator: not allowed with argument --detect" in capsys.readouterr().err


def test_an_annotator_that_names_no_annotation_file_is_refused(checkpoints, records, capsys):
    for bad in ("a/b", "hea", "", "atr.x"):  # wfdb said "Invalid name '100.a/b'"; hea read the header as annotations
        with pytest.raises(SystemExit):
            main(["predict", str(checkpoints["beats"]), str(records / "100"), "--annotator", bad])
        err = capsys.readouterr().err
        assert f"argument --annotator: {bad!r}: an annotator is letters, digits or _, not hea" in err
    # the record's signal file: refused (it was read as annotations, "58811 annotations with unknown labels")
    assert main(["predict", str(checkpoints["beats"]), str(records / "100"), "--annotator", "dat", "--out-dir",
                 str(records.parent / "labels")]) == 1
    assert ("error: record 'rec/100': file 100.dat holds the record's samples (100.hea names it), not annotations: "
            "give the annotation file's extension (e.g. atr)") in capsys.readouterr().err


def test_a_record_given_with_the_extension_of_one_of_its_files(checkpoints, records, capsys):
    for given in ("100.hea", "100.dat"):
        assert main(["predict", str(checkpoints["beats"]), str(records / given), "--out-dir",
                     str(records.parent / "labels")]) == 0
        assert capsys.readouterr().out.startswith("100: ")
    assert (records.parent / "labels" / "100.pred").is_file()


@pytest.mark.parametrize("task", ["beats", "rhythm"])
def test_a_rate_too_low_for_the_filter_names_the_record(checkpoints, records, task, capsys):
    assert main(["predict", str(checkpoints[task]), str(records / "slow"), "--out-dir",
                 str(records.parent / "labels")]) == 1
    assert ("error: record 'rec/slow': its rate, 10 Hz, is too low for the filter of [data] band = [0.5, 40.0] Hz "
            "(in predict, the model's): a corner at 40 Hz needs a rate above 80 Hz" in capsys.readouterr().err)
    assert not (records.parent / "labels").exists()


def test_a_lead_without_a_valid_sample_is_refused(checkpoints, records, capsys):
    mlii = wfdb.rdrecord(str(records / "100"), channels=[0]).p_signal
    blank = np.column_stack([np.full_like(mlii[:, 0], np.nan), mlii[:, 0]])  # MLII unplugged, V5 fine
    wfdb.wrsamp("blank", fs=360, units=["mV", "mV"], sig_name=["MLII", "V5"], p_signal=blank, fmt=["16", "16"],
                adc_gain=[200.0, 200.0], baseline=[0, 0], write_dir=str(records))
    shutil.copy(records / "100.atr", records / "blank.atr")
    assert main(["predict", str(checkpoints["beats"]), str(records / "blank"), "--out-dir",
                 str(records.parent / "labels")]) == 1
    assert ("record 'rec/blank': lead MLII has no valid sample (every one is WFDB's invalid value): nothing to label from "
            "it; read another with --leads") in capsys.readouterr().err
    assert not (records.parent / "labels").exists()


def test_a_lead_without_a_description_is_shown_unnamed_and_read_with_leads_empty(checkpoints, records, capsys):
    def predict(task: str, record: str, *leads: str) -> int:
        return main(["predict", str(checkpoints[task]), str(records / record), *leads, "--out-dir",
                     str(records.parent / "labels")])

    assert predict("rhythm", "unnamed") == 0
    assert "windows labelled from (unnamed) (" in capsys.readouterr().out
    # named '' with --leads: for a beat model trained on MLII, and the one lead of two a rhythm model reads
    assert predict("beats", "unnamed", "--leads", "") == 0
    assert "beats labelled from (unnamed) (" in capsys.readouterr().out
    both = wfdb.rdrecord(str(records / "100")).p_signal
    wfdb.wrsamp("two", fs=360, units=["mV", "mV"], sig_name=["V5", ""], p_signal=both, fmt=["16", "16"],
                write_dir=str(records))
    assert predict("rhythm", "two") == 1
    assert "the record has 2 (V5, (unnamed)): choose one with --leads" in capsys.readouterr().err
    assert predict("rhythm", "two", "--leads", "") == 0
    assert "windows labelled from (unnamed) (" in capsys.readouterr().out


def test_a_destination_that_cannot_be_written_is_named(checkpoints, records, monkeypatch, capsys):
    def read_only(dir: Path, prefix: str, suffix: str) -> tuple[int, str]:  # what the OS answers in a read-only folder
        raise PermissionError(13, "Permission denied", os.path.join(dir, f"{prefix}mrz1cxi2{suffix}"))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    labels = records.parent / "labels"
    assert main(["predict", str(checkpoints["beats"]), str(records / "100"), "--out-dir", str(labels)]) == 1
    err = capsys.readouterr().err
    assert f"error: [Errno 13] Permission denied: '{labels / '100.pred'}'" in err and ".tmp" not in err  # written first


def test_a_relative_destination_is_named_when_the_os_names_its_temporary_file_absolutely(tmp_path, monkeypatch):
    from msresnet1d.atomic import atomic_path

    def read_only(dir: str, prefix: str, suffix: str) -> tuple[int, str]:  # mkstemp gives absolute names
        raise PermissionError(13, "Permission denied", os.path.join(os.path.abspath(dir), f"{prefix}x1{suffix}"))

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(PermissionError, match=re.escape("Permission denied: 'labels/100.pred'")):
        with atomic_path(Path("labels") / "100.pred"):
            pass


def test_a_write_error_that_names_no_file_names_the_destination(tmp_path):
    from msresnet1d.atomic import atomic_path

    with pytest.raises(OSError, match=re.escape(f"[Errno 28] No space left on device: '{tmp_path / 'out.csv'}'")):
        with atomic_path(tmp_path / "out.csv") as tmp:
            tmp.write_text("a")
            raise OSError(28, "No space left on device")  # what a full disk gives from write() or fsync()
    assert list(tmp_path.iterdir()) == []  # nothing half-written left behind
    with pytest.raises(FileNotFoundError, match="elsewhere"):  # an error about another file is left as it is
        with atomic_path(tmp_path / "out.csv"):
            open(tmp_path / "elsewhere")


def test_renames_are_flushed_to_disk_with_their_folders(tmp_path, monkeypatch):
    from msresnet1d.atomic import atomic_paths

    synced = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        path = Path(os.readlink(f"/proc/self/fd/{fd}"))
        synced.append((path, sorted(p.name for p in path.iterdir()) if path.is_dir() else None))
        real_fsync(fd)

    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to name a file descriptor")
    monkeypatch.setattr(os, "fsync", fsync)
    (tmp_path / "sub").mkdir()
    with atomic_paths(tmp_path / "a.pred", tmp_path / "a.pred.csv", tmp_path / "sub" / "b") as tmps:
        for tmp in tmps:
            tmp.write_text("x")
    files = [(path.name, listing) for path, listing in synced if listing is None]
    folders = [(path, listing) for path, listing in synced if listing is not None]
    assert len(files) == 3  # each file before its rename, as before
    # then each folder once, after the renames into it: a power cut cannot undo them
    assert folders == [(tmp_path, ["a.pred", "a.pred.csv", "sub"]), (tmp_path / "sub", ["b"])]


def test_files_written_together_are_cleaned_up_each_and_the_callers_error_kept(tmp_path):
    from msresnet1d.atomic import atomic_paths

    with pytest.raises(RuntimeError, match="the caller's"):  # was IsADirectoryError from the first cleanup
        with atomic_paths(tmp_path / "100.pred", tmp_path / "100.pred.csv") as (ann, csv_tmp):
            ann.unlink()
            ann.mkdir()  # a temporary file that cannot be unlinked
            csv_tmp.write_text("a")
            raise RuntimeError("the caller's")
    assert [p.is_dir() for p in tmp_path.iterdir()] == [True]  # the other one removed all the same
    (next(tmp_path.iterdir())).rmdir()
    (tmp_path / "100.pred").mkdir()  # a rename that fails names its destination once
    with pytest.raises(IsADirectoryError, match=re.escape(f"Is a directory: '{tmp_path / '100.pred'}'") + "$"):
        with atomic_paths(tmp_path / "100.pred.csv", tmp_path / "100.pred") as (csv_tmp, ann):
            csv_tmp.write_text("a")
            ann.write_text("b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["100.pred", "100.pred.csv"]  # no temporary file left


def test_uncreatable_says_why_a_file_could_not_be_made(tmp_path, monkeypatch):
    from msresnet1d.atomic import check_target, uncreatable

    (tmp_path / "a-file").write_text("")
    assert uncreatable(tmp_path / "new" / "deeper" / "x.csv") is None  # missing folders are made
    assert uncreatable(tmp_path / "a-file" / "x.csv") == f"{tmp_path / 'a-file'} is a file"
    assert check_target("~/x.csv", "--json") == Path("~/x.csv")  # literal, as the file is written
    locked = tmp_path / "locked"
    real_exists = Path.exists

    def exists(path: Path) -> bool:  # what a folder without search permission gives a user who is not root
        if path.parent == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_exists(path)

    monkeypatch.setattr(Path, "exists", exists)
    assert uncreatable(locked / "run" / "x.csv") == f"{locked} is not searchable"


def test_a_dangling_link_or_a_name_too_long_is_found_before_the_work(tmp_path):
    # both passed the check, and the write failed after the work: "[Errno 17] File exists", "[Errno 36] File name
    # too long"
    from msresnet1d.atomic import check_target, name_max, uncreatable

    (tmp_path / "labels").symlink_to("/nonexistent/labels")
    assert uncreatable(tmp_path / "labels" / "100.pred") == \
        f"{tmp_path / 'labels'} is a symbolic link to /nonexistent/labels, which does not exist"
    assert uncreatable(tmp_path / "labels" / "deeper" / "100.pred").startswith(f"{tmp_path / 'labels'} is a symbolic")
    limit = name_max(tmp_path)
    long = "n" * (limit + 1)
    for path in (tmp_path / long, tmp_path / long / "100.pred", tmp_path / "new" / long / "x"):
        assert uncreatable(path) == (f"the name {'n' * 40}... is {limit + 1} bytes long, over the {limit}-byte limit "
                                     f"of the file system of {tmp_path}")
    (tmp_path / "made").mkdir()
    with pytest.raises(ValueError, match=rf"^--json {re.escape(str(tmp_path / 'made' / long))}: the name n+\.\.\. "
                                         rf"is {limit + 1} bytes long"):
        check_target(tmp_path / "made" / long, "--json")
    assert uncreatable(tmp_path / ("n" * limit)) is None


def test_a_file_rewritten_keeps_its_permissions_and_a_write_protected_one_is_refused(tmp_path, monkeypatch):
    # the rewrite was 0666 less the umask whatever the file's: a private file (0600) became readable by all, and a
    # write-protected one was replaced without a word where open() refuses it
    from msresnet1d import atomic

    private, new = tmp_path / "private.json", tmp_path / "new.json"
    private.write_text("{}")
    private.chmod(0o600)
    atomic.write_text(private, "[]")
    atomic.write_text(new, "[]")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600 and private.read_text() == "[]"
    assert stat.S_IMODE(new.stat().st_mode) == atomic.masked(0o666)
    (tmp_path / "link.json").symlink_to(private)  # the link is replaced; the file it pointed at gives the mode
    atomic.write_text(tmp_path / "link.json", "1")
    assert stat.S_IMODE((tmp_path / "link.json").stat().st_mode) == 0o600 and private.read_text() == "[]"
    protected = tmp_path / "protected.onnx"
    protected.write_text("old")
    protected.chmod(0o444)
    real_access = os.access  # root may write anything: the answer a user gets is given here

    def access(path, mode, **kwargs):
        return not (Path(path) == protected and mode & os.W_OK) and real_access(path, mode, **kwargs)

    monkeypatch.setattr(atomic.os, "access", access)
    message = f"{protected} is not writable (write-protected: make it writable, or give another file)"
    with pytest.raises(ValueError, match=re.escape(f"--json {protected}: {message}")):
        atomic.check_target(protected, "--json")
    (tmp_path / "to-protected").symlink_to(protected)  # a link to it is replaced, not written through: allowed
    assert atomic.check_target(tmp_path / "to-protected", "--json") == tmp_path / "to-protected"
    from msresnet1d.export import export_onnx

    with pytest.raises(OSError, match=re.escape(f"path {str(protected)!r} cannot be written: {message}")):
        export_onnx(torch.nn.Linear(1, 1), protected)  # refused before the model is looked at
    assert protected.read_text() == "old"


def test_a_target_with_a_long_name_gets_a_short_temporary_file_beside_it(tmp_path, monkeypatch):
    # the temporary file's name is the target's and 14 characters more: a 240-character record name failed
    from msresnet1d import atomic

    target = tmp_path / ("r" * (atomic.name_max(tmp_path) - 5))
    made = []
    mkstemp = tempfile.mkstemp
    monkeypatch.setattr(tempfile, "mkstemp", lambda **kwargs: (made.append(kwargs["prefix"]), mkstemp(**kwargs))[1])
    atomic.write_text(target, "x")
    assert target.read_text() == "x" and [p.name for p in tmp_path.iterdir()] == [target.name]
    assert made == [f".{'r' * 32}~."]  # its first characters, in the same folder
    left = tmp_path / f".{'r' * 32}~.abcd1234.tmp"
    left.write_text("half")  # as a killed process leaves it: found as the target's
    assert atomic.temporary_files(target) == [left] and atomic.temporary_files(tmp_path / "r") == []
    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    (tmp_path / "ro").mkdir()

    def read_only(**kwargs):  # the destination is named, not the temporary file
        raise PermissionError(13, "Permission denied", os.path.join(kwargs["dir"], f"{kwargs['prefix']}x1.tmp"))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(PermissionError, match=re.escape(f"Permission denied: '{tmp_path / 'ro' / target.name}'")):
        atomic.write_text(tmp_path / "ro" / target.name, "x")


def test_an_output_at_a_device_or_a_pipe_is_refused(tmp_path):
    # a rename replaced the node by a regular file (as root: --json /dev/stdout would replace the system's)
    from msresnet1d.atomic import check_target

    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "stdout").symlink_to(tmp_path / "pipe")  # as /dev/stdout links to /proc/self/fd/1
    with pytest.raises(ValueError, match=re.escape(f"--json {tmp_path / 'pipe'}: {tmp_path / 'pipe'} is not a regular "
                                                   "file (a device, a pipe or a socket): give a file")):
        check_target(tmp_path / "pipe", "--json")
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'stdout'} is not a regular file (through a symbolic "
                                                   "link)")):
        check_target(tmp_path / "stdout", "--json")
    (tmp_path / "file").write_text("")
    (tmp_path / "link").symlink_to(tmp_path / "file")  # a link to a file is replaced, its target left: not refused
    assert check_target(tmp_path / "link", "--json") == tmp_path / "link"


def test_a_text_write_that_fails_half_way_leaves_the_old_file(tmp_path):
    # config.json, log.csv and metrics.json are written to a temporary file, then renamed
    from msresnet1d.atomic import write_text

    write_text(tmp_path / "metrics.json", "{}")
    with pytest.raises(UnicodeEncodeError):
        write_text(tmp_path / "metrics.json", "{\"a\": \"\ud800\"}")  # a lone surrogate: not encodable
    assert (tmp_path / "metrics.json").read_text() == "{}" and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
    # a Latin-1 file name (held as a surrogate, as os.fsdecode gives it) is written as its bytes: predict --summary
    # failed after the work for a record in such a folder
    write_text(tmp_path / "summary.csv", os.fsdecode(b"/data/caf\xe9/100") + "\n")
    assert (tmp_path / "summary.csv").read_bytes() == b"/data/caf\xe9/100\n"


def test_files_are_flushed_through_handles_open_for_writing(tmp_path, monkeypatch):
    # Windows' fsync refuses a read-only handle (EBADF): every write and a download's move failed there
    fcntl = pytest.importorskip("fcntl")
    from msresnet1d import atomic

    fsync, flushed = atomic.os.fsync, []

    def windows_fsync(fd):
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY and stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EBADF, "Bad file descriptor")
        flushed.append(fd)
        fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", windows_fsync)
    atomic.write_text(tmp_path / "a.json", "{}")
    atomic.write_bytes(tmp_path / "b.bin", b"\1")
    (tmp_path / "download").mkdir()
    (tmp_path / "download" / "100.dat").write_bytes(b"\2")
    atomic.move_folder(tmp_path / "download", tmp_path / "mitdb")
    assert (tmp_path / "a.json").read_text() == "{}" and (tmp_path / "mitdb" / "100.dat").read_bytes() == b"\2"
    assert len(flushed) >= 3
    # a file this process may only read (a umask of 0277, another user's): flushed through a read handle
    real_open = open

    def read_only(path, mode="r", *args, **kwargs):
        if mode == "r+b":
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    monkeypatch.setattr(atomic, "open", read_only, raising=False)
    (tmp_path / "download2").mkdir()
    (tmp_path / "download2" / "101.dat").write_bytes(b"\3")
    atomic.move_folder(tmp_path / "download2", tmp_path / "mitdb2")
    assert (tmp_path / "mitdb2" / "101.dat").read_bytes() == b"\3"


def test_text_files_are_written_in_utf8_whatever_the_locale(tmp_path):
    # a summary row holds the record's path, which may hold any character; Windows' locale is often cp1252
    script = (f"from msresnet1d.atomic import write_text; write_text({str(tmp_path / 'a.csv')!r}, "
              "'path\\r\\n/data/Jos\\u00e9/\\u5fc3\\u7535/100\\r\\n')")
    env = {**os.environ, "LC_ALL": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"}  # an ASCII locale
    done = subprocess.run([sys.executable, "-X", "utf8=0", "-c", script], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "a.csv").read_bytes() == "path\r\n/data/José/心电/100\r\n".encode()


def test_a_failing_annotation_write_leaves_the_old_labels_and_no_temporary_file(checkpoints, records, monkeypatch,
                                                                                 capsys):
    labels = records.parent / "labels"
    assert main(["predict", str(checkpoints["beats"]), str(records / "100"), "--out-dir", str(labels)]) == 0
    before, csv_before = (labels / "100.pred").read_bytes(), (labels / "100.pred.csv").read_bytes()
    other = untrained_checkpoint(records.parent / "other.pt", "beats")  # other weights: other labels to write

    def fails(record_name, extension, sample, symbol=None, write_dir="", **kwargs):  # half a file, then an error
        Path(write_dir, f"{record_name}.{extension}").write_bytes(b"\0")
        raise OSError("disk went away")

    monkeypatch.setattr(wfdb, "wrann", fails)
    assert main(["predict", str(other), str(records / "100"), "--out-dir", str(labels)]) == 1
    assert "error: disk went away" in capsys.readouterr().err
    assert (labels / "100.pred").read_bytes() == before
    assert (labels / "100.pred.csv").read_bytes() == csv_before  # the labels of one run, both files
    assert sorted(p.name for p in labels.iterdir()) == ["100.pred", "100.pred.csv"]


def test_several_records_are_labelled_and_one_that_fails_is_named(checkpoints, records, tmp_path, capsys, monkeypatch):
    import msresnet1d.predict as predict_module

    for path in SAMPLE.glob("101.*"):
        shutil.copy(path, records)
    out = tmp_path / "labels"
    given = [str(records / "100.hea"), str(records / "slow"), str(records / "101")]  # as a shell's *.hea gives them
    assert main(["predict", str(checkpoints["beats"]), *given, "--out-dir", str(out)]) == 1
    captured = capsys.readouterr()
    assert f"error: {records / 'slow'}: " in captured.err
    assert "error: 1 of 3 records not labelled (slow); the others were" in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["100.pred", "100.pred.csv", "101.pred", "101.pred.csv"]
    assert "100: " in captured.out and "101: " in captured.out
    label = predict_module.predict_beats

    def failing_on_101(ckpt, record_path, *args):
        if record_path.name == "101":
            raise RuntimeError("an error of torch's, say")
        return label(ckpt, record_path, *args)

    monkeypatch.setattr(predict_module, "predict_beats", failing_on_101)  # any error is one record's
    assert main(["predict", str(checkpoints["beats"]), str(records / "101"), str(records / "100"), "--out-dir",
                 str(tmp_path / "other")]) == 1
    assert f"error: {records / '101'}: an error of torch's, say" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "other").iterdir()) == ["100.pred", "100.pred.csv"]
    # every output is checked, and two records writing one file refused, before any record is labelled
    monkeypatch.setattr(predict_module, "predict_beats", lambda *a: pytest.fail("labelled before the outputs were checked"))
    assert main(["predict", str(checkpoints["beats"]), str(records / "100"), str(records / "100.dat"),
                 "--out-dir", str(out)]) == 1
    assert (f"records {records / '100'} and {records / '100'} would both write {(out / '100.pred').resolve()}"
            in capsys.readouterr().err)
    (out / "101.pred.csv").unlink()
    (out / "101.pred.csv").mkdir()
    assert main(["predict", str(checkpoints["beats"]), str(records / "100"), str(records / "101"),
                 "--out-dir", str(out)]) == 1
    assert f"output {out / '101.pred.csv'} is a folder" in capsys.readouterr().err


def test_invalid_samples_are_interpolated_for_detection_and_warned_about(checkpoints, records, capsys):
    from msresnet1d.predict import label_windows
    from msresnet1d.training.checkpoint import load_checkpoint

    # WFDB's missing value (NaN once read): --detect used to refuse the record, asking for fill_nan; the beats
    # (windows) in such a stretch were labelled from the interpolated signal without a word
    ann = wfdb.rdann(str(records / "100"), "atr")
    beats = ann.sample[np.isin(ann.symbol, list(BEAT_SYMBOLS))]
    begin, end = beats[120] + 50, beats[132] - 50  # cut through two beats' windows (-0.25..0.45 s: -90..162 samples)
    signal = wfdb.rdrecord(str(records / "100"), channels=[0]).p_signal
    signal[begin:end] = np.nan
    wfdb.wrsamp("gap", fs=360, units=["mV"], sig_name=["MLII"], p_signal=signal, fmt=["16"], write_dir=str(records))
    shutil.copy(records / "100.atr", records / "gap.atr")
    out = str(records.parent / "labels")
    assert np.isnan(read_record(records / "gap").signal).sum() == end - begin
    stretch = rf"\({begin / 360:.1f}-{end / 360:.1f} s\)"
    seconds, percent = (end - begin) / 360, 100 * (end - begin) / len(signal)
    with pytest.warns(UserWarning, match=rf"record 'rec/gap': {end - begin} samples \({seconds:.1f} s, "
                                         rf"{percent:.1f}% of the record\) are invalid \(WFDB's missing value\) in 1 "
                                         rf"stretch\(es\) {stretch}; they are interpolated, and the [0-9]+ beats"):
        assert main(["predict", str(checkpoints["beats"]), str(records / "gap"), "--detect", "--out-dir", out]) == 0
    touched = int(np.sum((beats - 90 < end) & (beats + 162 > begin)))  # each beat's window, not its sample alone
    assert touched == 13 and np.sum((beats >= begin) & (beats < end)) == 11
    with pytest.warns(UserWarning, match=rf"and the {touched} beats in them are labelled from that, not from the "):
        assert main(["predict", str(checkpoints["beats"]), str(records / "gap"), "--out-dir", out]) == 0
    with pytest.warns(UserWarning, match=r"and the [1-9] windows in them are labelled from that"):
        assert main(["predict", str(checkpoints["rhythm"]), str(records / "gap"), "--out-dir", out]) == 0
    with pytest.warns(UserWarning, match=r"and the [1-9] windows in them are labelled from that"):  # from Python too
        label_windows(load_checkpoint(checkpoints["rhythm"]), read_record(records / "gap"))
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # a record without invalid samples: no warning
        assert main(["predict", str(checkpoints["beats"]), str(records / "100"), "--out-dir", out]) == 0


def test_beats_that_repeat_a_position_or_too_few_are_named_with_their_file(checkpoints, records, capsys):
    ann = wfdb.rdann(str(records / "100"), "atr")
    beats = np.isin(ann.symbol, ["N", "V", "A"])
    samples, symbols = ann.sample[beats], np.array(ann.symbol)[beats]
    wfdb.wrann("100", "two", np.sort(np.r_[samples, samples[5]]), symbol=list(np.r_[symbols, ["N"]]),
               write_dir=str(records))  # one beat twice, as two annotation channels may hold it
    assert main(["predict", str(checkpoints["beats"]), str(records / "100"), "--annotator", "two", "--out-dir",
                 str(records.parent / "labels")]) == 1
    assert (f"error: record 'rec/100': file 100.two: beat positions must increase; first repeat at sample "
            f"{samples[5]}" in capsys.readouterr().err)
    # one beat: labelled by a model of the signal alone (it needed 2 beats, as a model that reads RR intervals does)
    wfdb.wrann("100", "one", samples[:1], symbol=["N"], write_dir=str(records))
    labels = records.parent / "labels"
    assert main(["predict", str(checkpoints["beats"]), str(records / "100"), "--annotator", "one", "--out-dir",
                 str(labels), "--extension", "one"]) == 0
    assert wfdb.rdann(str(labels / "100"), "one").sample.tolist() == [samples[0]]
    with_rr = untrained_checkpoint(records.parent / "rr.pt", "beats", {"rr": True, "template": True})
    assert main(["predict", str(with_rr), str(records / "100"), "--annotator", "one", "--out-dir", str(labels)]) == 1
    assert ("found 1 beat(s), need at least 2 (the model reads RR intervals; in its one annotations: --detect finds "
            "beats in the signal)") in capsys.readouterr().err
    assert main(["predict", str(with_rr), str(records / "100"), "--out-dir", str(labels)]) == 0  # atr: all its beats
    wfdb.wrann("100", "none", samples[:1], symbol=["+"], aux_note=["(N"], write_dir=str(records))  # no beat
    assert main(["predict", str(checkpoints["beats"]), str(records / "100"), "--annotator", "none", "--out-dir",
                 str(labels)]) == 1
    assert "found 0 beat(s), need at least 1 (in its none annotations: --detect" in capsys.readouterr().err


def test_beats_closer_than_a_heart_beats_are_warned_about_or_named(checkpoints, records, capsys):
    # each beat annotated twice, 3 samples apart: labelled (both), with a warning naming the file
    ann = wfdb.rdann(str(records / "100"), "atr")
    samples = ann.sample[np.isin(ann.symbol, ["N", "V", "A"])]
    wfdb.wrann("100", "dbl", np.sort(np.r_[samples, samples + 3]), symbol=["N"] * (2 * len(samples)),
               write_dir=str(records))
    labels = records.parent / "labels"
    warned = (f"record 'rec/100': file 100.dbl: {len(samples)} beat(s) less than 0.15 s after the previous one (a rate "
              f"above 400/min, which no heart beats at), first at sample {samples[0] + 3}: beats annotated twice, or a "
              "sampling rate (360 Hz in the header) other than the recording's?")
    with pytest.warns(UserWarning, match=re.escape(warned)):
        assert main(["predict", str(checkpoints["beats"]), str(records / "100"), "--annotator", "dbl", "--out-dir",
                     str(labels)]) == 0
    assert f"{2 * len(samples)} beats labelled" in capsys.readouterr().out
    # at 1000 Hz two beats a sample apart fall on one sample at the model's 180 Hz: named
    mlii = wfdb.rdrecord(str(records / "100"), channels=[0]).p_signal[:20000]
    wfdb.wrsamp("fast", fs=1000, units=["mV"], sig_name=["MLII"], p_signal=mlii, fmt=["16"], write_dir=str(records))
    wfdb.wrann("fast", "atr", np.array([1000, 1001, 3000, 5000]), symbol=["N"] * 4, write_dir=str(records))
    with pytest.warns(UserWarning, match=r"^record 'rec/fast': file fast\.atr: 1 beat\(s\) less than 0\.15 s"):
        assert main(["predict", str(checkpoints["beats"]), str(records / "fast"), "--out-dir", str(labels)]) == 1
    assert ("error: record 'rec/fast': file fast.atr: the beats at samples 1000 and 1001 (1000 Hz) fall on one sample "
            "at the model's 180 Hz") in capsys.readouterr().err
    # a regular record: no such warning
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["predict", str(checkpoints["beats"]), str(records / "100"), "--out-dir", str(labels)]) == 0
    assert not [w for w in caught if "less than 0.15 s" in str(w.message)]


def test_a_record_folder_that_cannot_be_written_points_to_out_dir(checkpoints, records, monkeypatch, capsys):
    from msresnet1d import atomic

    # a read-only folder (chmod does not stop root, who runs the tests here: the permission asked is replaced)
    monkeypatch.setattr(atomic.os, "access", lambda path, mode, *a, **kw: Path(path) != records)
    assert main(["predict", str(checkpoints["beats"]), str(records / "100")]) == 1
    assert (f"output {records / '100'}.pred: {records} is not writable (the record's folder: write elsewhere with "
            "--out-dir)") in capsys.readouterr().err
    assert main(["predict", str(checkpoints["beats"]), str(records / "100"), "--out-dir",
                 str(records.parent / "labels")]) == 0


def test_a_record_name_too_long_for_its_outputs_is_refused_in_one_line(checkpoints, records, capsys):
    # its files fit (<name>.hea at the file system's limit) and its output <name>.pred does not: the look for the
    # output among the record's files, before the check that names the name, failed "[Errno 36] File name too long"
    from msresnet1d.atomic import name_max

    limit = name_max(records)
    name = "r" * (limit - len(".hea"))
    signal = wfdb.rdrecord(str(records / "100"), channels=[0], sampto=3600).p_signal
    wfdb.wrsamp(name, fs=360, units=["mV"], sig_name=["MLII"], p_signal=signal, fmt=["16"], write_dir=str(records))
    beats = wfdb.rdann(str(records / "100"), "atr", sampto=3600)
    wfdb.wrann(name, "atr", beats.sample, symbol=beats.symbol, write_dir=str(records))
    assert main(["predict", str(checkpoints["beats"]), str(records / name)]) == 1
    assert capsys.readouterr().err == (f"error: output {records / name}.pred: the name {'r' * 40}... is {limit + 1} "
                                       f"bytes long, over the {limit}-byte limit of the file system of {records}\n")


def test_an_out_dir_linked_to_nothing_or_a_write_protected_output_is_refused_first(checkpoints, records,
                                                                                    monkeypatch, capsys):
    # a dangling link passed the check: the records were labelled, then the write failed "[Errno 17] File exists"
    from msresnet1d import atomic, predict

    labels = records.parent / "labels"
    labels.symlink_to("/nonexistent/labels")
    monkeypatch.setattr(predict, "_predict_record", lambda *args: pytest.fail("labelled before the check"))
    assert main(["predict", str(checkpoints["beats"]), str(records / "100"), "--out-dir", str(labels)]) == 1
    assert (f"output {labels / '100.pred'}: {labels} is a symbolic link to /nonexistent/labels, which does not "
            "exist") in capsys.readouterr().err
    labels.unlink()
    labels.mkdir()
    (labels / "100.pred.csv").write_text("kept")
    monkeypatch.setattr(atomic.os, "access",  # not root's answer
                        lambda path, mode, *a, **kw: Path(path).name != "100.pred.csv")
    assert main(["predict", str(checkpoints["beats"]), str(records / "100"), "--out-dir", str(labels)]) == 1
    assert f"output {labels / '100.pred.csv'}: {labels / '100.pred.csv'} is not writable (write-protected" in \
        capsys.readouterr().err


def test_a_record_after_leads_is_named_with_the_way_out(checkpoints, records, capsys):
    # --leads takes every name after it: a record last is a second lead name
    out = ["--out-dir", str(records.parent / "labels")]
    hint = ("--leads takes every name after it, records too: give the records before --leads, or end its names "
            "with --, e.g. predict best.pt --leads II -- data/mitdb/100")
    for model, record in ((checkpoints["rhythm"], records / "100"), (checkpoints["beats"], records / "100.hea")):
        with pytest.raises(SystemExit) as exit_:
            main(["predict", str(model), *out, "--leads", "MLII", str(record)])
        assert exit_.value.code == 2
        assert f"error: the following arguments are required: record; {hint}\n" in capsys.readouterr().err
        assert main(["predict", str(model), str(records / "unnamed"), *out, "--leads", "MLII", str(record)]) == 1
        assert f"error: --leads took {record} as lead names, where the model reads 1 lead(s); {hint}\n" == \
            capsys.readouterr().err
        assert not (records.parent / "labels").exists()
    assert main(["predict", str(checkpoints["rhythm"]), *out, "--leads", "MLII", "--", str(records / "100")]) == 0
    # a lead name that is no record keeps the count's own message; other missing arguments get no hint
    assert main(["predict", str(checkpoints["rhythm"]), str(records / "100"), *out, "--leads", "MLII", "V5"]) == 1
    assert "leads (--leads) names 2 leads (MLII, V5); the rhythm model reads one" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["predict", str(checkpoints["rhythm"]), *out, "--lead", "MLII", str(records / "100")])  # abbreviated
    assert f"error: the following arguments are required: record; {hint}\n" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["predict"])  # no --leads: nothing took the record
    assert capsys.readouterr().err.endswith("error: the following arguments are required: checkpoint, record\n")
    with pytest.raises(SystemExit):
        main(["evaluate"])
    assert capsys.readouterr().err.endswith("error: the following arguments are required: checkpoint\n")


def test_a_failure_while_writing_leaves_the_previous_pair_of_outputs(checkpoints, records, monkeypatch):
    # the annotation file replaced its predecessor before the CSV was written: a full disk then left a mixed pair
    out = ["--out-dir", str(records.parent / "labels")]
    assert main(["predict", str(checkpoints["beats"]), str(records / "100"), *out]) == 0
    before = {name: (records.parent / "labels" / name).read_bytes() for name in ("100.pred", "100.pred.csv")}
    write_text = Path.write_text

    def disk_full(self, *args, **kwargs):
        if self.name.startswith(".100.pred.csv."):
            raise OSError(28, "No space left on device")
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", disk_full)
    assert main(["predict", str(checkpoints["beats"]), str(records / "100"), *out, "--detect"]) == 1
    assert {name: (records.parent / "labels" / name).read_bytes() for name in before} == before
    assert sorted(p.name for p in (records.parent / "labels").iterdir()) == ["100.pred", "100.pred.csv"]
    monkeypatch.undo()
    import msresnet1d.atomic as atomic

    fsync, flushed = atomic.os.fsync, []

    def full_at_the_second_flush(fd):  # a full disk found by the flush (delayed allocation), the CSV's flushed
        flushed.append(fd)
        if len(flushed) == 2:
            raise OSError(28, "No space left on device")
        fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", full_at_the_second_flush)
    assert main(["predict", str(checkpoints["beats"]), str(records / "100"), *out, "--detect"]) == 1
    assert {name: (records.parent / "labels" / name).read_bytes() for name in before} == before
    assert sorted(p.name for p in (records.parent / "labels").iterdir()) == ["100.pred", "100.pred.csv"]


def test_summary_holds_a_row_a_record_labelled(checkpoints, records, tmp_path, capsys):
    import csv

    from msresnet1d.predict import label_windows
    from msresnet1d.training.checkpoint import load_checkpoint

    for path in SAMPLE.glob("101.*"):
        shutil.copy(path, records)
    out, summary = tmp_path / "labels", tmp_path / "answers.csv"
    given = [str(records / "100"), str(records / "slow"), str(records / "101")]
    assert main(["predict", str(checkpoints["rhythm"]), *given, "--leads", "MLII", "--out-dir", str(out),
                 "--summary", str(summary)]) == 1  # slow fails (10 Hz): it has no row
    assert f"wrote {summary} (2 records)" in capsys.readouterr().out
    rows = list(csv.DictReader(summary.open()))
    assert [row["record"] for row in rows] == ["100", "101"] and rows[0]["path"] == str(records / "100")
    ckpt = load_checkpoint(checkpoints["rhythm"])
    for row in rows:
        _, probabilities = label_windows(ckpt, read_record(records / row["record"], leads=["MLII"]))
        mean = probabilities.mean(axis=0)
        assert int(row["windows"]) == len(probabilities)
        assert [float(row[f"p_{c}"]) for c in "NAO~"] == pytest.approx(mean.tolist(), abs=1e-12)
        assert row["label"] == "NAO~"[int(mean.argmax())]
    # a beat model: each record's count of each class, as in its own CSV
    assert main(["predict", str(checkpoints["beats"]), str(records / "100"), "--out-dir", str(out),
                 "--summary", str(summary)]) == 0
    (row,) = csv.DictReader(summary.open())
    labels = [beat["label"] for beat in csv.DictReader((out / "100.pred.csv").open())]
    assert int(row["beats"]) == len(labels) and [int(row[c]) for c in "NSVFQ"] == [labels.count(c) for c in "NSVFQ"]
    # never one of the outputs, nor a file of the record
    for bad, what in ((out / "100.pred.csv", "one of the outputs"), (records / "100.atr", "a file")):
        before = bad.read_bytes()
        assert main(["predict", str(checkpoints["beats"]), str(records / "100"), "--out-dir", str(out),
                     "--summary", str(bad)]) == 1
        assert f"--summary {bad} would overwrite {what} of record {records / '100'}" in capsys.readouterr().err
        assert bad.read_bytes() == before
    assert main(["predict", str(checkpoints["beats"]), str(records / "100"), "--summary", str(tmp_path)]) == 1
    assert f"--summary {tmp_path} is a folder" in capsys.readouterr().err
    assert main(["predict", str(checkpoints["beats"]), str(records / "100"), "--summary", str(checkpoints["beats"])]) == 1
    assert f"--summary {checkpoints['beats']} is the checkpoint" in capsys.readouterr().err
    beside = records / "100.summary.csv"  # a name like the record's files, but none of them: written again
    for _ in range(2):
        assert main(["predict", str(checkpoints["beats"]), str(records / "100"), "--out-dir", str(out),
                     "--summary", str(beside)]) == 0
    # every record failing leaves a summary without rows, not an earlier one's
    for path in records.glob("slow.*"):
        shutil.copy(path, records / path.name.replace("slow", "slower"))
    assert main(["predict", str(checkpoints["beats"]), str(records / "slow"), str(records / "slower"),
                 "--out-dir", str(tmp_path / "a"), "--summary", str(summary)]) == 1
    assert summary.read_text().splitlines() == ["record,path,beats,N,S,V,F,Q"]
    assert "error: 2 of 2 records not labelled (slow, slower)\n" in capsys.readouterr().err  # no "others"


@pytest.mark.parametrize("adapt_bn", [False, True])
def test_records_labelled_together_share_one_build_of_the_model(checkpoints, records, tmp_path, monkeypatch, adapt_bn):
    """Building and folding the model cost several times a short record's inference: predict builds
    it once for all its records, and gives the same labels as one record at a time. A library call
    builds its own (no state is kept between calls)."""
    import msresnet1d.predict as predict_module
    from msresnet1d.training.checkpoint import load_checkpoint

    for path in SAMPLE.glob("101.*"):
        shutil.copy(path, records)
    builds = []
    build = predict_module.checkpoint_model
    monkeypatch.setattr(predict_module, "checkpoint_model", lambda *args: builds.append(1) or build(*args))
    configs = []  # and its config read once (checkpoint_config builds the model on the meta device: 13-31 ms)
    read = predict_module.checkpoint_config
    monkeypatch.setattr(predict_module, "checkpoint_config", lambda *args: configs.append(1) or read(*args))
    flags = ["--adapt-bn"] * adapt_bn
    assert main(["predict", str(checkpoints["beats"]), str(records / "100"), str(records / "101"),
                 "--out-dir", str(tmp_path / "together"), *flags]) == 0
    assert len(builds) == 1 and len(configs) == 1 and not predict_module._KEPT
    for name in ("100", "101"):
        assert main(["predict", str(checkpoints["beats"]), str(records / name), "--out-dir", str(tmp_path / "alone"),
                     *flags]) == 0
        assert (tmp_path / "together" / f"{name}.pred.csv").read_bytes() == \
            (tmp_path / "alone" / f"{name}.pred.csv").read_bytes()
    ckpt = load_checkpoint(checkpoints["beats"])
    for _ in range(2):
        predict_module.predict_beats(ckpt, records / "100", "atr", adapt_bn)
    assert len(builds) == 5
