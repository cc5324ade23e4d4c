"""Finding databases: explicit path, MSRESNET1D_DATA, datasets/, the embedded sample fallback, and
downloads (made to fail or to succeed without network by replacing wfdb.dl_database)."""

import shutil
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
    with pytest.raises(DataError, match=r"database 'mitdb': .*nothing is not a folder of WFDB records, nor a folder "
                                        r"holding 'mitdb/' with them"):
        find_database("mitdb", tmp_path / "nothing")
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
    with pytest.warns(UserWarning, match="using the embedded sample .*mitdb-sample"):
        found = find_database("mitdb")
    assert found == isolated / "mitdb-sample"
    assert len(list_records(found)) == 44


def test_not_found_says_how_to_supply_the_data(isolated):
    with pytest.raises(
        DataError, match=r"database 'cinc2017' not found .*Supply the data yourself: put the database folder at"
    ):
        find_database("cinc2017")


def test_data_home_is_the_environment_variable_else_datasets_downloads(isolated, tmp_path, monkeypatch):
    assert locate.data_home() == isolated / "downloads"
    monkeypatch.setenv("MSRESNET1D_DATA", str(tmp_path))
    assert locate.data_home() == tmp_path


def test_failed_download_leaves_nothing_and_explains(isolated, monkeypatch):
    def offline(db_dir, dl_dir, **kwargs):
        (Path(dl_dir) / "100.hea").write_text("partial")  # a download that breaks half-way
        raise ConnectionError("Failed to resolve 'physionet.org'")

    monkeypatch.setattr(wfdb, "dl_database", offline)
    with pytest.raises(DataError) as error:
        find_database("mitdb", download=True)
    message = str(error.value)
    assert "could not download database 'mitdb' from PhysioNet (ConnectionError: Failed to resolve" in message
    assert f"put the database folder at {isolated / 'downloads' / 'mitdb'}" in message
    assert sorted(p.name for p in (isolated / "downloads").iterdir()) == []  # no partial folder, no target


def test_completed_download_is_moved_into_place(isolated, monkeypatch):
    def fake_download(db_dir, dl_dir, **kwargs):
        assert db_dir == "mitdb"
        for path in SAMPLE.glob("100.*"):
            shutil.copy(path, dl_dir)

    monkeypatch.setattr(wfdb, "dl_database", fake_download)
    target = find_database("mitdb", download=True)
    assert target == isolated / "downloads" / "mitdb"
    assert sorted(p.name for p in target.iterdir()) == ["100.atr", "100.dat", "100.hea"]
    assert [p.name for p in target.parent.iterdir()] == ["mitdb"]
    assert find_database("mitdb") == target  # found without downloading again


def test_download_refuses_unknown_databases_and_non_empty_targets(isolated, tmp_path):
    with pytest.raises(DataError, match="database 'cinc2017' cannot be downloaded automatically"):
        download_database("cinc2017")
    with pytest.raises(DataError, match=r"download target .*full exists and is not empty"):
        download_database("mitdb", make_db(tmp_path / "full", "100"))
