"""The on-disk cache: folder choice, keys, atomic writes, and corrupt entries being rebuilt."""

import json
import os
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import wfdb

from msresnet1d.data import cache, locate
from msresnet1d.data.beats import BeatConfig, load_beats
from msresnet1d.data.cache import cache_dir, cache_key, cached, load_arrays, save_arrays
from msresnet1d.data.errors import DataError
from msresnet1d.data.records import record_files

SAMPLE = locate.repo_datasets_dir() / "mitdb-sample"


@pytest.fixture
def arrays():
    rng = np.random.default_rng(0)
    return {"X": rng.normal(size=(5, 1, 8)).astype(np.float32), "y": np.arange(5), "symbol": np.array(list("NNVAN"))}


def _sample_copy(db: Path) -> Path:
    """``db`` holding copies of the embedded sample's records 100 and 101."""
    db.mkdir()
    for path in SAMPLE.glob("10[01].*"):
        shutil.copy(path, db)
    return db


def entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_cache_dir_order(tmp_path, monkeypatch):
    monkeypatch.setenv("MSRESNET1D_CACHE", str(tmp_path / "env"))
    assert cache_dir(tmp_path / "explicit") == tmp_path / "explicit"
    assert cache_dir() == tmp_path / "env"
    monkeypatch.delenv("MSRESNET1D_CACHE")
    datasets = tmp_path / "datasets"
    datasets.mkdir()
    monkeypatch.setattr(cache, "repo_datasets_dir", lambda: datasets)
    assert cache_dir() == datasets / "cache"
    monkeypatch.setattr(cache.os, "access", lambda path, mode: False)  # datasets/ not writable
    assert cache_dir() == Path.home() / ".cache" / "msresnet1d" / "cache"
    monkeypatch.setattr(cache, "repo_datasets_dir", lambda: None)  # installed, no datasets/
    assert cache_dir() == Path.home() / ".cache" / "msresnet1d" / "cache"
    # beside the downloads, not above them: clearing the cache folder keeps the downloaded databases
    downloads = Path.home() / ".cache" / "msresnet1d" / "data"  # an installed package's data home (test_data_locate)
    assert cache_dir() not in downloads.parents and cache_dir().parent == downloads.parent


def test_round_trip_leaves_no_temporary_files(tmp_path, arrays):
    save_arrays(tmp_path / "entry", "k1", arrays)
    assert entries(tmp_path) == ["entry"]
    loaded = load_arrays(tmp_path / "entry", "k1")
    assert loaded.keys() == arrays.keys()
    for name in arrays:
        np.testing.assert_array_equal(loaded[name], arrays[name])
        assert loaded[name].dtype == arrays[name].dtype
    loaded["X"][0] = 99  # copy-on-write: the entry is not changed
    np.testing.assert_array_equal(load_arrays(tmp_path / "entry", "k1")["X"], arrays["X"])
    assert load_arrays(tmp_path / "absent", "k1") is None


def test_an_entrys_files_are_on_disk_before_it_takes_its_name(tmp_path, arrays, monkeypatch):
    # renamed unflushed, a power cut could leave an entry of empty files under the final name
    import msresnet1d.atomic as atomic

    sync_file, events = atomic._sync_file, []
    monkeypatch.setattr(atomic, "_sync_file", lambda path: (events.append(path.name), sync_file(path)))
    replace = os.replace
    monkeypatch.setattr(atomic.os, "replace", lambda a, b: (events.append(f"rename to {Path(b).name}"), replace(a, b)))
    save_arrays(tmp_path / "entry", "k", arrays)
    assert sorted(events[:-1]) == sorted([f"{name}.npy" for name in arrays] + ["manifest.json"])
    assert events[-1] == "rename to entry"


def test_failed_write_leaves_nothing(tmp_path, arrays):
    with pytest.raises(ValueError):
        save_arrays(tmp_path / "entry", "k", {**arrays, "bad": np.array([{}], dtype=object)})
    assert entries(tmp_path) == []


def test_a_cache_that_cannot_be_written_is_warned_about_and_the_arrays_are_used(tmp_path, arrays, monkeypatch):
    def full_disk(file, array, allow_pickle=True):  # what numpy raises when the disk fills under np.save
        raise OSError(f"{array.size * array.itemsize} requested and 262112 written")

    monkeypatch.setattr(np, "save", full_disk)
    with pytest.warns(UserWarning, match=r"cache entry .*entry could not be written \(\d+ requested and 262112 "
                                         r"written: a full disk, or a file-size limit\?\); going on without caching "
                                         r"it \(point MSRESNET1D_CACHE at"):
        got = cached(tmp_path / "entry", "k", lambda: arrays)
    assert all(np.array_equal(got[name], value) for name, value in arrays.items())
    assert entries(tmp_path) == []


def test_an_entry_another_process_wrote_during_the_build_is_kept(tmp_path, arrays):
    # Two processes building one entry at once (a cold cache, two runs started together): the second to finish used
    # to delete the first's valid entry as if it were corrupt, and a third process reading it in between warned
    # "corrupt or partial" and rebuilt it. Now the entry is kept, and the second's copy dropped.
    entry, written = tmp_path / "entry", []

    def build_while_another_process_saves():
        save_arrays(entry, "k", arrays)  # the other process, finishing first
        written.append((entry / "manifest.json").stat().st_ino)
        return arrays

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = cached(entry, "k", build_while_another_process_saves)
        assert (entry / "manifest.json").stat().st_ino == written[0]
        save_arrays(entry, "k", arrays)  # and the same, called directly
        assert (entry / "manifest.json").stat().st_ino == written[0]
        assert entries(tmp_path) == ["entry"]
        np.testing.assert_array_equal(got["X"], arrays["X"])
        np.testing.assert_array_equal(load_arrays(entry, "k")["X"], arrays["X"])


def damage_truncate(entry: Path) -> None:
    with open(entry / "X.npy", "r+b") as f:
        f.truncate(os.path.getsize(entry / "X.npy") - 7)


def damage_flip_a_byte(entry: Path) -> None:
    raw = bytearray((entry / "X.npy").read_bytes())
    raw[-3] ^= 0xFF
    (entry / "X.npy").write_bytes(bytes(raw))


def damage_remove_manifest(entry: Path) -> None:
    (entry / "manifest.json").unlink()


def damage_remove_array(entry: Path) -> None:
    (entry / "y.npy").unlink()


def damage_empty_array(entry: Path) -> None:  # what a power cut can leave of a file never flushed
    (entry / "X.npy").write_bytes(b"")


def damage_name_a_path(entry: Path) -> None:  # an edited manifest naming a file outside the entry
    manifest = json.loads((entry / "manifest.json").read_text())
    manifest["arrays"]["sub/../X"] = manifest["arrays"].pop("X")  # a path (the same file: it would load)
    (entry / "sub").mkdir()
    (entry / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("damage", [damage_truncate, damage_flip_a_byte, damage_remove_manifest, damage_remove_array,
                                    damage_empty_array, damage_name_a_path])
def test_corrupt_entry_is_detected_and_rebuilt(tmp_path, arrays, damage):
    entry = tmp_path / "entry"
    save_arrays(entry, "k", arrays)
    damage(entry)
    with pytest.warns(RuntimeWarning, match="cache entry .*entry is corrupt or partial"):
        assert load_arrays(entry, "k") is None
    builds = []
    with pytest.warns(RuntimeWarning, match="corrupt or partial"):
        rebuilt = cached(entry, "k", lambda: builds.append(1) or arrays)
    assert builds == [1]
    np.testing.assert_array_equal(rebuilt["X"], arrays["X"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(load_arrays(entry, "k")["X"], arrays["X"])
    assert entries(tmp_path) == ["entry"]


def test_entry_with_another_key_is_not_used(tmp_path, arrays):
    save_arrays(tmp_path / "entry", "k1", arrays)
    with pytest.warns(RuntimeWarning, match="it holds key k1"):
        assert load_arrays(tmp_path / "entry", "k2") is None


def test_key_follows_files_parameters_and_code(tmp_path, monkeypatch):
    source = tmp_path / "100.dat"
    source.write_bytes(b"abc")
    key = cache_key([source], {"fs": 360})
    assert cache_key([source], {"fs": 360}) == key
    assert cache_key([source], {"fs": 180}) != key
    os.utime(source, ns=(1, 1))
    assert cache_key([source], {"fs": 360}) != key
    touched = cache_key([source], {"fs": 360})
    source.write_bytes(b"abcd")
    os.utime(source, ns=(1, 1))
    resized = cache_key([source], {"fs": 360})
    assert resized != touched
    monkeypatch.setattr(cache, "code_version", lambda: "0.1.0+edited")
    assert cache_key([source], {"fs": 360}) != resized


def test_key_sees_an_edited_label_that_kept_the_files_size_and_time(tmp_path):
    # a header, an annotation file or REFERENCE.csv edited in place, its time put back (cp -p,
    # rsync -a, an archive's extraction): every CinC 2017 label is one character
    reference = tmp_path / "REFERENCE.csv"
    reference.write_text("A00001,N\n")
    os.utime(reference, ns=(1, 1))
    key = cache_key([reference], {})
    reference.write_text("A00001,A\n")
    os.utime(reference, ns=(1, 1))
    assert cache_key([reference], {}) != key


def test_code_version_follows_the_libraries_that_compute_the_arrays(monkeypatch):
    import scipy

    cache.code_version.cache_clear()
    before = cache.code_version()
    monkeypatch.setattr(scipy, "__version__", "0.0.1")  # another filter, another resampler
    cache.code_version.cache_clear()
    try:
        assert cache.code_version() != before
    finally:
        monkeypatch.undo()
        cache.code_version.cache_clear()
    assert cache.code_version() == before


def test_beat_cache_is_reused_rebuilt_when_truncated_and_invalidated_by_source_changes(tmp_path):
    db = _sample_copy(tmp_path / "db")
    folder = tmp_path / "cache"
    first = load_beats(db_dir=db, cache_dir=folder, workers=1)
    (entry,) = (folder / "beats").iterdir()
    again = load_beats(db_dir=db, cache_dir=folder, workers=1)
    np.testing.assert_array_equal(again.X, first.X)
    assert len(list((folder / "beats").iterdir())) == 1

    damage_truncate(entry)
    with pytest.warns(RuntimeWarning, match="corrupt or partial .*; rebuilding it"):
        rebuilt = load_beats(db_dir=db, cache_dir=folder, workers=1)
    np.testing.assert_array_equal(rebuilt.X, first.X)
    np.testing.assert_array_equal(load_beats(db_dir=db, cache_dir=folder, workers=1).X, first.X)

    os.utime(db / "101.dat")  # a signal file changes (its time): new key, new entry
    load_beats(db_dir=db, cache_dir=folder, workers=1)
    assert len(list((folder / "beats").iterdir())) == 2
    os.utime(db / "101.atr")  # the annotations touched, not changed: their content is the key
    load_beats(db_dir=db, cache_dir=folder, workers=1)
    assert len(list((folder / "beats").iterdir())) == 2


def _write_r(folder: Path, signal: np.ndarray, layout: str) -> None:
    """Record ``r`` of ``signal`` ((L, 2) MLII and V5 in mV at 360 Hz, L even) in ``folder``, its signal
    files not named ``r.*``: ``"multi-file"``, one file a lead (``r_0.dat``, ``r_1.dat``); ``"multi-segment"``,
    its halves in segments ``r_1`` and ``r_2``, each a header and a signal file."""
    folder.mkdir(exist_ok=True)
    fields = dict(fs=360, units=["mV", "mV"], sig_name=["MLII", "V5"], fmt=["16", "16"], adc_gain=[200.0, 200.0],
                  baseline=[0, 0])
    if layout == "multi-file":
        record = wfdb.Record(record_name="r", n_sig=2, sig_len=len(signal), p_signal=signal,
                             file_name=["r_0.dat", "r_1.dat"], **fields)
        record.set_d_features(do_adc=True)
        record.set_defaults()
        record.wrsamp(write_dir=str(folder))
        return
    half = len(signal) // 2
    for name, part in (("r_1", signal[:half]), ("r_2", signal[half:])):
        wfdb.wrsamp(name, p_signal=part, write_dir=str(folder), **fields)
    segments = [wfdb.rdheader(str(folder / name)) for name in ("r_1", "r_2")]
    wfdb.MultiRecord(segments=segments, layout="fixed", record_name="r", n_sig=2, fs=360, sig_len=len(signal),
                     seg_name=["r_1", "r_2"], seg_len=[half, half]).wrheader(write_dir=str(folder))


@pytest.mark.parametrize("layout, second", [("multi-file", "r_1.dat"), ("multi-segment", "r_2.dat")])
def test_the_key_holds_the_signal_files_and_segments_a_header_names(tmp_path, layout, second):
    # keyed by the files named r.* alone, a record's r_1.dat or segment r_2 was changed, and the stale arrays served
    signal = wfdb.rdrecord(str(SAMPLE / "100")).p_signal
    db, changed = tmp_path / "db", tmp_path / "changed"
    _write_r(db, signal, layout)
    _write_r(changed, signal * [1, -1], layout)  # V5 upside down: the same lengths
    shutil.copy(SAMPLE / "100.atr", db / "r.atr")
    files = {"multi-file": ["r.atr", "r.hea", "r_0.dat", "r_1.dat"],
             "multi-segment": ["r.atr", "r.hea", "r_1.dat", "r_1.hea", "r_2.dat", "r_2.hea"]}[layout]
    assert [path.name for path in record_files(db, ["r"])["r"]] == files
    config = BeatConfig(leads=("MLII", "V5"))

    def load(cache: bool = True):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "record 'db/r': the samples do not match the header's checksums")
            return load_beats(["r"], db_dir=db, config=config, cache=cache, cache_dir=tmp_path / "cache", workers=1)

    before = load()
    shutil.copy(changed / second, db / second)  # the samples alone: the header that names them is the same
    after = load()
    np.testing.assert_array_equal(after.X, load(cache=False).X)
    assert not np.array_equal(after.X[:, 1], before.X[:, 1])
    if layout == "multi-segment":  # a segment's header: MLII's gain halved, its values twice as large
        header = (db / "r_2.hea").read_text()
        (db / "r_2.hea").write_text(header.replace("200.0(0)/mV 16 0 ", "100.0(0)/mV 16 0 ", 1))
        np.testing.assert_array_equal(load().X, load(cache=False).X)
        assert not np.array_equal(load().X[:, 0], after.X[:, 0])
    (db / second).unlink()
    named_in = "named in r.hea" if layout == "multi-file" else "named in r_2.hea"
    with pytest.raises(DataError, match=rf"^record 'db/r': file {second} is missing \({named_in}\)$"):
        load()
    if layout == "multi-segment":
        (db / "r_2.hea").unlink()
        message = r"^record 'db/r': file r_2\.hea is missing \(a segment of the record, named in r\.hea\)$"
        with pytest.raises(DataError, match=message):
            load()


def test_key_reads_small_files_only_and_steps_over_folders(tmp_path):
    backup = tmp_path / "100.dat.bak"  # beside a record: record_files lists every 100.*
    backup.write_bytes(bytes(2 << 20))
    os.utime(backup, ns=(1, 1))
    folder = tmp_path / "100.d"
    folder.mkdir()
    key = cache_key([backup, folder], {})  # a folder read as a file raised IsADirectoryError
    backup.write_bytes(b"\1" + bytes((2 << 20) - 1))
    os.utime(backup, ns=(1, 1))
    assert cache_key([backup, folder], {}) == key  # over 1 MiB: by size and time, its content not read
    os.utime(backup, ns=(2, 2))
    assert cache_key([backup, folder], {}) != key


@pytest.mark.parametrize("workers", [1, 2])
def test_a_cached_database_warns_as_it_did_when_it_was_read(tmp_path, workers):
    # a truncated annotation file warned on the first load only: the cached arrays were silent after
    db = _sample_copy(tmp_path / "db")
    with open(db / "100.atr", "r+b") as f:
        f.truncate(200)  # even: still readable, the beats stop early
    message = r"record 'db/100': file 100\.atr lacks WFDB's end-of-file marker \(two zero bytes\), so it is truncated"
    for load in ("built", "cached", "cached again"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            load_beats(db_dir=db, cache_dir=tmp_path / "cache", workers=workers)
        shown = [str(given.message) for given in caught if "end-of-file" in str(given.message)]
        assert len(shown) == 1 and re.match(message, shown[0]), (load, shown)  # once, from a worker too
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=message)  # filters apply to the cached warning as to the first
        with pytest.raises(UserWarning, match=message):
            load_beats(db_dir=db, cache_dir=tmp_path / "cache", workers=workers)
    with warnings.catch_warnings():  # built under a filter that hides it: kept with the entry all the same
        warnings.simplefilter("ignore")
        load_beats(db_dir=db, cache_dir=tmp_path / "hidden", workers=workers)
    with pytest.warns(UserWarning, match=message):
        load_beats(db_dir=db, cache_dir=tmp_path / "hidden", workers=workers)
    for _ in range(2):  # -W error: the warning raises before the entry is saved, so on every run
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message=message)
            with pytest.raises(UserWarning, match=message):
                load_beats(db_dir=db, cache_dir=tmp_path / "strict", workers=workers)
        assert not (tmp_path / "strict" / "beats").exists() or not list((tmp_path / "strict" / "beats").iterdir())


def test_a_warning_of_a_build_is_kept_with_its_entry(tmp_path, arrays):
    def build():
        warnings.warn("record 'x/1': something odd", RuntimeWarning)
        return arrays

    with pytest.warns(RuntimeWarning, match="something odd"):
        cached(tmp_path / "entry", "k", build)
    with pytest.warns(RuntimeWarning, match="something odd"):
        loaded = cached(tmp_path / "entry", "k", lambda: pytest.fail("built again"))
    np.testing.assert_array_equal(loaded["X"], arrays["X"])

    def deprecated():
        warnings.warn("an old API", FutureWarning)  # not kept with the entry (not about the data), and so
        return arrays

    for _ in range(2):  # under -W error it raises on every run, not on the first alone
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(FutureWarning, match="an old API"):
                cached(tmp_path / "future", "k", deprecated)
    manifest = json.loads((tmp_path / "entry" / "manifest.json").read_text())  # an edited warning: shown
    manifest["warnings"] = [["RuntimeWarning", "\x1b[31mred\x1b[0m text\nline two"]]  # without its escapes
    (tmp_path / "entry" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.warns(RuntimeWarning) as given:
        cached(tmp_path / "entry", "k", lambda: pytest.fail("built again"))
    assert [str(w.message) for w in given] == ["[31mred[0m text\nline two"]
    save_arrays(tmp_path / "plain", "k", arrays)  # no warnings kept: none given
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cached(tmp_path / "plain", "k", build)


def test_an_entry_is_made_with_the_permissions_of_the_umask(tmp_path, arrays):
    # it was 0755 whatever the umask: a group sharing a cache (umask 002) could not add to another's entry folders
    umask = os.umask(0o002)
    try:
        save_arrays(tmp_path / "entry", "k", arrays)
    finally:
        os.umask(umask)
    assert (tmp_path / "entry").stat().st_mode & 0o777 == 0o775


@pytest.mark.parametrize("length", [230, 245])
@pytest.mark.filterwarnings("ignore:.*differ from MIT-BIH")  # the sample's records are cut short
def test_a_database_folder_with_a_long_name_is_cached(tmp_path, length):
    # an entry is named after the database's folder: 230 characters and its temporary folder's were too many (the
    # entry was never written, a warning every run), 245 made the load stop with "[Errno 36] File name too long"
    from msresnet1d.data.rhythm import RhythmConfig, load_rhythm

    db = _sample_copy(tmp_path / ("d" * length))
    (db / "REFERENCE.csv").write_text("100,N\n101,N\n")
    folder = tmp_path / "cache"
    with warnings.catch_warnings():
        warnings.filterwarnings("error", "cache entry")
        beats = load_beats(db_dir=db, cache_dir=folder, workers=1)
        rhythm = load_rhythm(db, RhythmConfig(lead="MLII"), cache_dir=folder, workers=1)
    for kind in ("beats", "rhythm"):
        (entry,) = (folder / kind).iterdir()
        assert re.fullmatch(r"d{40}-[0-9a-f]{16}", entry.name)  # the name cut; the key tells entries apart
    np.testing.assert_array_equal(load_beats(db_dir=db, cache_dir=folder, workers=1).X, beats.X)
    np.testing.assert_array_equal(load_rhythm(db, RhythmConfig(lead="MLII"), cache_dir=folder).data, rhythm.data)
