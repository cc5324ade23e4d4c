"""The embedded MIT-BIH sample (datasets/mitdb-sample): integrity, and equality with the full
records over the same span."""

import hashlib

import numpy as np
import pytest
import wfdb

from msresnet1d.data import locate
from msresnet1d.data.aami import MITBIH_TO_AAMI
from msresnet1d.data.beats import load_beats
from msresnet1d.data.locate import list_records
from msresnet1d.data.splits import DS1, DS2

SAMPLE = locate.repo_datasets_dir() / "mitdb-sample"
SPAN = 3 * 60 * 360  # samples kept per record


@pytest.fixture(scope="module")
def sample_beats():
    return load_beats(db_dir=SAMPLE, cache=False)


def test_checksums_match():
    lines = (SAMPLE / "SHA256SUMS.txt").read_text().splitlines()
    listed = {}
    for line in lines:
        digest, name = line.split("  ")
        listed[name] = digest
    on_disk = {p.name for p in SAMPLE.iterdir()} - {"SHA256SUMS.txt", "PROVENANCE.md"}
    assert set(listed) == on_disk
    for name, digest in listed.items():
        assert hashlib.sha256((SAMPLE / name).read_bytes()).hexdigest() == digest, name


def test_sample_holds_every_non_paced_record_and_stays_small():
    assert sorted(list_records(SAMPLE)) == sorted(DS1 + DS2)
    assert sum(p.stat().st_size for p in SAMPLE.iterdir()) < 10_000_000
    header = wfdb.rdheader(str(SAMPLE / "114"))
    assert (header.sig_len, header.fs, header.fmt, header.sig_name) == (SPAN, 360, ["212", "212"], ["V5", "MLII"])


@pytest.mark.parametrize("record", ["100", "114", "208", "232"])
def test_sample_signals_are_the_first_minutes_of_the_full_records(mitdb_dir, record):
    cut = wfdb.rdrecord(str(SAMPLE / record), physical=False)
    full = wfdb.rdrecord(str(mitdb_dir / record), physical=False, sampto=SPAN)
    np.testing.assert_array_equal(cut.d_signal, full.d_signal)
    assert (SAMPLE / f"{record}.dat").read_bytes() == (mitdb_dir / f"{record}.dat").read_bytes()[: SPAN * 3]


def test_sample_beat_counts_equal_the_full_records_over_the_same_span(mitdb_dir, sample_beats):
    for record in DS1 + DS2:
        ann = wfdb.rdann(str(mitdb_dir / record), "atr", sampto=SPAN)
        symbols = [s for s, at in zip(ann.symbol, ann.sample, strict=True) if at < SPAN and s in MITBIH_TO_AAMI]
        expected = {c: sum(MITBIH_TO_AAMI[s] == c for s in symbols) for c in "NSVFQ"}
        assert sample_beats.from_records([record]).class_counts() == expected, record


def test_counts_documented_in_provenance_are_current(sample_beats):
    assert sample_beats.from_records(DS1).class_counts() == {"N": 4729, "S": 18, "V": 370, "F": 47, "Q": 0}
    assert sample_beats.from_records(DS2).class_counts() == {"N": 4393, "S": 133, "V": 329, "F": 43, "Q": 0}


def test_the_sample_is_cut_again_byte_for_byte_from_an_unedited_database_only(mitdb_dir, tmp_path, capsys):
    """datasets/make_mitdb_sample.py rebuilds every file of the shipped sample (its notice
    included), and refuses a source whose files differ from PhysioNet's."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_mitdb_sample", SAMPLE.parent / "make_mitdb_sample.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main(["--source", str(mitdb_dir), "--out", str(tmp_path / "cut")])
    shipped = sorted(path.name for path in SAMPLE.iterdir())
    assert sorted(path.name for path in (tmp_path / "cut").iterdir()) == shipped
    for name in shipped:
        assert (tmp_path / "cut" / name).read_bytes() == (SAMPLE / name).read_bytes(), name
    script.main(["--source", str(mitdb_dir), "--out", str(tmp_path / "short"), "--minutes", "0.5"])
    assert (tmp_path / "short" / "PROVENANCE.md").read_text().startswith("> This copy was cut with `--minutes 0.5`")
    edited = tmp_path / "edited"
    edited.mkdir()
    for path in mitdb_dir.iterdir():
        (edited / path.name).symlink_to(path)
    (edited / "100.hea").unlink()
    (edited / "100.hea").write_text((mitdb_dir / "100.hea").read_text().replace(" 360 ", " 250 ", 1))
    with pytest.raises(SystemExit):
        script.main(["--source", str(edited), "--out", str(tmp_path / "bad")])
    assert not (tmp_path / "bad").exists()
    script.PROVENANCE = tmp_path / "gone" / "PROVENANCE.md"  # the notice deleted: refused, saying how to restore it
    with pytest.raises(SystemExit):
        script.main(["--source", str(mitdb_dir), "--out", str(tmp_path / "bad")])
    assert "PROVENANCE.md is missing" in capsys.readouterr().err and not (tmp_path / "bad").exists()
