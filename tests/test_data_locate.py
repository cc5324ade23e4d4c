"""Finding databases: explicit path, MSRESNET1D_DATA, datasets/, the embedded sample fallback, and
downloads (made to fail or to succeed without network: wfdb's downloader pointed at a file:// mirror,
or its dl_full_file replaced)."""

import contextlib
import hashlib
import os
import re
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
import wfdb

from msresnet1d.data import locate
from msresnet1d.data.errors import DataError
from msresnet1d.data.locate import download_database, find_database, list_records

SAMPLE = locate.repo_datasets_dir() / "mitdb-sample"


@pytest.fixture
def isolated(tmp_path, monkeypatch) -> Path:
    """No MSRESNET1D_DATA and a tmp datasets/ folder holding only the embedded sample."""
    datasets = tmp_path / "datasets"
    datasets.mkdir()
    (datasets / "mitdb-sample").symlink_to(SAMPLE)
    monkeypatch.delenv("MSRESNET1D_DATA", raising=False)
    monkeypatch.setattr(locate, "repo_datasets_dir", lambda: datasets)
    return datasets


def make_db(folder: Path, *names: str) -> Path:
    folder.mkdir(parents=True)
    for name in names:
        for path in SAMPLE.glob(f"{name}.*"):
            shutil.copy(path, folder)
    return folder


def test_explicit_path_comes_first_and_must_hold_records(isolated, tmp_path):
    db = make_db(tmp_path / "mine", "100")
    assert find_database("mitdb", db) == db
    with pytest.raises(DataError, match=r"database 'mitdb': .*nothing does not exist"):
        find_database("mitdb", tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"database 'mitdb': .*empty is not a folder of WFDB records, nor a folder "
                                        r"holding 'mitdb/' with them"):
        find_database("mitdb", tmp_path / "empty")
    # the folder holding it will do too, as $MSRESNET1D_DATA holds it
    root = tmp_path / "root"
    in_root = make_db(root / "mitdb", "100")
    assert find_database("mitdb", root) == in_root
    with pytest.raises(DataError, match="not a folder of WFDB records"):
        find_database("cinc2017", root)


def test_environment_variable_then_datasets_folder(isolated, tmp_path, monkeypatch):
    in_datasets = make_db(isolated / "mitdb", "100")
    assert find_database("mitdb") == in_datasets
    root = tmp_path / "root"
    in_env = make_db(root / "mitdb", "101")
    monkeypatch.setenv("MSRESNET1D_DATA", str(root))
    assert find_database("mitdb") == in_env


def test_falls_back_to_the_embedded_sample_with_a_warning(isolated):
    with pytest.warns(UserWarning, match=r"using the embedded sample .*mitdb-sample.* Or download it \(into "
                                         rf"{re.escape(str(isolated / 'downloads' / 'mitdb'))}, where it is found\): "
                                         r"msresnet1d download mitdb"):
        found = find_database("mitdb")
    assert found == isolated / "mitdb-sample"
    assert len(list_records(found)) == 44


def test_a_set_data_variable_never_falls_back_to_the_sample(isolated, tmp_path, monkeypatch):
    # MSRESNET1D_DATA asks for the real database: mistyped, or naming mitdb/ itself, it is an error
    make_db(tmp_path / "data" / "mitdb", "100")
    for env, hint in ((tmp_path / "dta", ""), (tmp_path / "data" / "mitdb", "looks like the database folder itself")):
        monkeypatch.setenv("MSRESNET1D_DATA", str(env))
        with pytest.raises(DataError, match=rf"MSRESNET1D_DATA is set to {re.escape(str(env))}, which holds no "
                                            rf"'mitdb/' of WFDB records.*{hint}.*the embedded sample is used only when "
                                            rf"MSRESNET1D_DATA is unset.*Or download it \(into "
                                            rf"{re.escape(str(env / 'mitdb'))}, where it is found\)"):
            find_database("mitdb")
    with pytest.raises(DataError, match="holds no 'cinc2017/' of WFDB records\\. ") as error:  # no sample to mention
        find_database("cinc2017")
    assert "embedded sample" not in str(error.value)
    monkeypatch.setenv("MSRESNET1D_DATA", str(tmp_path / "data"))
    assert find_database("mitdb") == tmp_path / "data" / "mitdb"


def test_not_found_says_how_to_supply_the_data(isolated):
    with pytest.raises(
        DataError, match=r"database 'cinc2017' not found .*Supply the data yourself: put the database folder at"
    ) as error:
        find_database("cinc2017")
    assert "msresnet1d download" not in str(error.value)  # CinC 2017 is a zip file to supply by hand


def test_only_a_source_checkout_has_a_repository_datasets_folder(tmp_path, monkeypatch, request):
    # an installed package sits in site-packages, whose datasets/ is Hugging Face's package: never used as the data
    # home (the cache and downloads went into it), nor its experiments/ as the configs
    site = tmp_path / "site-packages"
    (site / "datasets").mkdir(parents=True)
    (site / "msresnet1d" / "data").mkdir(parents=True)
    monkeypatch.setattr(locate, "__file__", str(site / "msresnet1d" / "data" / "locate.py"))
    monkeypatch.delenv("MSRESNET1D_DATA", raising=False)
    request.addfinalizer(locate.source_checkout.cache_clear)  # read once per process: again for each case here
    locate.source_checkout.cache_clear()
    assert locate.source_checkout() is None and locate.repo_datasets_dir() is None
    assert locate.data_home() == Path.home() / ".cache" / "msresnet1d" / "data"
    (site / "pyproject.toml").write_text('[project]\nname = "other"\n')  # another project's checkout
    locate.source_checkout.cache_clear()
    assert locate.source_checkout() is None
    (site / "pyproject.toml").write_text('[project]\nname = "msresnet1d"\n')
    locate.source_checkout.cache_clear()
    assert locate.source_checkout() == site and locate.repo_datasets_dir() == site / "datasets"
    monkeypatch.undo()
    locate.source_checkout.cache_clear()
    assert locate.source_checkout() == SAMPLE.parents[1]  # this one: the tests run in the clone


def test_records_outside_the_database_folder_are_refused(tmp_path):
    assert all(map(locate.is_record_name, ["100", "training/A00001", "p00/p000020/3544749_0001"]))
    assert not any(map(locate.is_record_name, ["", "../100", "a/../../100", "/tmp/100", "..\\100", "C:x", 100]))
    assert not any(map(locate.is_record_name, ["./100", "100/", "a//100", "a/./100", " 100", "100 "]))  # 100 again
    db = make_db(tmp_path / "db", "100")
    (db / "RECORDS").write_text("100\n../../fake/100\n")
    with pytest.raises(DataError, match=r"RECORDS names record '\.\./\.\./fake/100': a RECORDS file lists the "
                                        r"folder's own records, each a relative path inside the database folder"):
        list_records(db)
    (db / "RECORDS").write_text("100\n./100\n")
    with pytest.raises(DataError, match=r"RECORDS names record '\./100': .* written one way"):
        list_records(db)


def test_records_files_with_a_byte_order_mark_or_nested_folders_are_read(tmp_path):
    db = make_db(tmp_path / "db", "100")
    (db / "RECORDS").write_text("\ufeff100\n", encoding="utf-8")  # as Windows Notepad saves it
    assert list_records(db) == ["100"]
    make_db(db / "p0", "101")
    make_db(db / "p1" / "q", "103")
    (db / "RECORDS").write_text("100\np0/\np1/q/\n./\n")  # PhysioNet's nested layout; a folder listing itself
    (db / "p0" / "RECORDS").write_text("101\n")
    (db / "p1" / "q" / "RECORDS").write_text("103\n")
    assert list_records(db) == ["100", "p0/101", "p1/q/103"]
    (db / "RECORDS").write_text("100\n./p0/\np1/./q//\n")  # folders spelled otherwise: their records named plainly
    assert list_records(db) == ["100", "p0/101", "p1/q/103"]
    (db / "p0" / "RECORDS").unlink()
    with pytest.raises(DataError, match=re.escape(f"{db / 'p0' / 'RECORDS'} is missing: {db / 'RECORDS'} lists folder "
                                                  "p0/, whose RECORDS file names its records")):
        list_records(db)


def test_a_leading_tilde_is_the_home_folder_in_paths_and_variables(tmp_path, monkeypatch):
    from msresnet1d.arguments import path_flag
    from msresnet1d.data.cache import cache_dir
    from msresnet1d.training.engine import database_folder

    monkeypatch.setenv("HOME", str(tmp_path))
    db = make_db(tmp_path / "data" / "mitdb", "100")
    assert find_database("mitdb", "~/data") == db
    assert find_database("mitdb", "~/data/mitdb") == db
    monkeypatch.setenv("MSRESNET1D_DATA", "~/data")  # quoted, or in an .env file: the shell left it
    assert find_database("mitdb") == db and locate.data_home() == tmp_path / "data"
    monkeypatch.setenv("MSRESNET1D_CACHE", "~/cache")
    assert cache_dir() == tmp_path / "cache" and cache_dir("~/other") == tmp_path / "other"
    assert path_flag("~/runs") == str(tmp_path / "runs")  # --out=~/runs: the shell does not expand after "="
    (tmp_path / "fm").mkdir()  # what a resume compares, for a task without a WFDB database: ~/fm was not /root/fm
    fm = database_folder("fashion_mnist", "~/fm")
    assert fm == database_folder("fashion_mnist", str(tmp_path / "fm")) is not None
    monkeypatch.chdir(tmp_path / "data")
    with pytest.raises(DataError, match=re.escape(f"database 'mitdb': nowhere does not exist (a relative path is "
                                                  f"taken from the current folder, {tmp_path / 'data'})")):
        find_database("mitdb", "nowhere")


def test_an_installed_package_says_the_embedded_sample_is_in_a_clone(isolated, monkeypatch):
    monkeypatch.setattr(locate, "repo_datasets_dir", lambda: None)
    monkeypatch.setattr(locate, "data_home", lambda: isolated / "home")
    with pytest.raises(DataError, match=r"database 'mitdb' not found \(looked in .*\) \(the embedded sample of 'mitdb' "
                                        r"that runs without it is in a clone of the repository only, not in an "
                                        r"installed package"):
        find_database("mitdb")


def test_data_home_is_the_environment_variable_else_datasets_downloads(isolated, tmp_path, monkeypatch):
    assert locate.data_home() == isolated / "downloads"
    monkeypatch.setenv("MSRESNET1D_DATA", str(tmp_path))
    assert locate.data_home() == tmp_path


def test_failed_download_leaves_nothing_and_explains(isolated, monkeypatch):
    def offline(url, save_file_name):
        Path(save_file_name).write_text("partial")  # a download that breaks half-way
        raise ConnectionError("Failed to resolve 'physionet.org'")

    monkeypatch.setattr(wfdb.io.download, "dl_full_file", offline)
    with pytest.raises(DataError) as error:
        find_database("mitdb", download=True)
    message = str(error.value)
    assert "could not download database 'mitdb' from PhysioNet (ConnectionError: Failed to resolve" in message
    assert f"put the database folder at {isolated / 'downloads' / 'mitdb'}" in message
    assert sorted(p.name for p in (isolated / "downloads").iterdir()) == []  # no partial folder, no target


def _sample_checksums() -> dict[str, str]:
    """The published-checksum table a download of record 100 of the sample would be held to."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in SAMPLE.glob("100.*")}


def test_an_interrupted_download_leaves_nothing(isolated, monkeypatch):
    def interrupted(url, save_file_name):
        Path(save_file_name).write_text("partial")
        raise KeyboardInterrupt  # Ctrl-C during msresnet1d download

    monkeypatch.setattr(wfdb.io.download, "dl_full_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        download_database("mitdb")
    assert not (isolated / "downloads").exists() or list((isolated / "downloads").iterdir()) == []


@pytest.fixture
def mirror(tmp_path, monkeypatch) -> Path:
    """PhysioNet's files/ tree as a file:// mirror that wfdb's downloader reads (record 100 of mitdb
    1.0.0, the sample's copy), and the checksum list of that record."""
    version = tmp_path / "mirror" / "mitdb" / "1.0.0"
    version.mkdir(parents=True)
    for path in SAMPLE.glob("100.*"):
        shutil.copy(path, version)
    monkeypatch.setattr(wfdb.io.download.config, "db_index_url", (tmp_path / "mirror").as_uri() + "/")
    monkeypatch.setattr(locate, "expected_checksums", lambda name: _sample_checksums())
    return version


def test_completed_download_is_checked_and_moved_into_place(isolated, monkeypatch, mirror):
    asked = []
    fetch = wfdb.io.download.dl_full_file
    monkeypatch.setattr(wfdb.io.download, "dl_full_file", lambda url, file: (asked.append(url), fetch(url, file)))
    target = find_database("mitdb", download=True)
    assert target == isolated / "downloads" / "mitdb"
    # exactly the files of the checksum list, of the version they are the checksums of
    assert sorted(asked) == [f"{mirror.as_uri()}/100.{ext}" for ext in ("atr", "dat", "hea")]
    assert sorted(p.name for p in target.iterdir()) == ["100.atr", "100.dat", "100.hea"]
    assert [p.name for p in target.parent.iterdir()] == ["mitdb"]
    umask = os.umask(0o022)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o777 & ~umask  # as a mkdir makes it (mkdtemp's was 0700)
    assert find_database("mitdb") == target  # found without downloading again
    with pytest.raises(DataError, match=r"database 'mitdb' is already at .*mitdb \(find_database\('mitdb'\) finds it"):
        download_database("mitdb")


def test_a_download_is_flushed_to_disk_before_and_after_its_rename(isolated, monkeypatch, mirror):
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to name a file descriptor")
    synced = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    real_replace = os.replace

    def replace(source, destination):
        synced.append(("replace", Path(source), Path(destination)))
        real_replace(source, destination)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    target = download_database("mitdb")
    partial = synced[0].parent
    assert partial.name.endswith(".partial") and partial.parent == target.parent
    # each file, then the temporary folder's entries, before the rename; the folder holding target after
    assert sorted(synced[:3]) == [partial / f"100.{ext}" for ext in ("atr", "dat", "hea")]
    assert synced[3:] == [partial, ("replace", partial, target), target.parent]
    # a flush that fails (a full disk) leaves nothing behind, and says so
    shutil.rmtree(target)

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(DataError, match=r"could not move the download of database 'mitdb' into .*No space left on "
                                        r"device; the temporary folder .* deleted"):
        download_database("mitdb")
    assert list(target.parent.iterdir()) == []


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_a_download_that_fails_its_checksums_leaves_nothing(isolated, mirror, damage):
    if damage == "corrupt":
        data = bytearray((mirror / "100.dat").read_bytes())
        data[1000] ^= 0xFF  # one flipped byte
        (mirror / "100.dat").write_bytes(bytes(data))
        expected = "1 files differ from the published checksums (100.dat: SHA-256 "
    else:
        (mirror / "100.atr").unlink()
        expected = "(FileNotFoundError: "  # the mirror lacks a listed file
    with pytest.raises(DataError, match=re.escape(expected)) as caught:
        download_database("mitdb")
    # the folder the message names is said to be gone, as it is
    assert re.search(r"; the temporary folder \S+\.partial and what it held are deleted\)", str(caught.value))
    assert not (isolated / "downloads").exists() or list((isolated / "downloads").iterdir()) == []


def test_shipped_checksums_are_the_full_databases(mitdb_dir):
    expected = locate.expected_checksums("mitdb")
    assert len(expected) == 3 * 48 and set(locate.PHYSIONET_PROJECTS) <= {p.stem for p in locate.CHECKSUMS_DIR.iterdir()}
    locate.verify_checksums(mitdb_dir, expected)  # the byte-verified copy passes: the list is PhysioNet's


def test_download_refuses_unknown_databases_and_non_empty_targets(isolated, tmp_path):
    with pytest.raises(DataError, match="database 'cinc2017' cannot be downloaded automatically"):
        download_database("cinc2017")
    with pytest.raises(DataError, match=r"database 'mitdb' is already at .*full"):
        download_database("mitdb", make_db(tmp_path / "full", "100"))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("not a database")
    with pytest.raises(DataError, match=r"download target .*other exists and is not empty"):
        download_database("mitdb", tmp_path / "other")
    file = tmp_path / "other" / "notes.txt"  # download --data-dir naming a file: no raw [Errno 17]
    with pytest.raises(DataError, match=f"database 'mitdb': download target {re.escape(str(file))} is a file, not a "
                                        "folder"):
        download_database("mitdb", file)
    with pytest.raises(DataError, match=f"cannot make the folder {re.escape(str(file / 'sub'))} to download into "
                                        rf"\({re.escape(str(file))} is a file, not a folder\)"):
        download_database("mitdb", file / "sub" / "mitdb")


@pytest.fixture
def stalled_server():
    """A loopback HTTP 'server' that accepts connections and never answers; yields its URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    held, stop = [], threading.Event()

    def accept():
        listener.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/"
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    listener.close()


def test_a_stalled_download_times_out_and_leaves_nothing(isolated, monkeypatch, stalled_server):
    # wfdb's requests set no timeout: without one this call never returned
    monkeypatch.setattr(wfdb.io.download.config, "db_index_url", stalled_server)
    outcome: list[BaseException] = []

    def attempt() -> None:
        try:
            download_database("mitdb", timeout_s=0.5)
        except BaseException as e:  # noqa: BLE001 - checked below, in the test's thread
            outcome.append(e)

    worker = threading.Thread(target=attempt, daemon=True)  # a hang fails the test instead of stalling the suite
    start = time.monotonic()
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive() and time.monotonic() - start < 20, "the download did not give up within 20 s"
    with pytest.raises(DataError, match=r"could not download database 'mitdb' from PhysioNet \(.*[Tt]imed? ?out"):
        raise outcome[0]
    assert not (isolated / "downloads").exists() or list((isolated / "downloads").iterdir()) == []
    session = wfdb.io._url._get_session()
    assert not any(type(a).__name__ == "TimeoutAdapter" for a in session.adapters.values())  # restored
    with pytest.raises(ValueError, match="timeout_s must be > 0 seconds, got 0"):
        download_database("mitdb", timeout_s=0)
