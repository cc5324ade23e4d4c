"""Reading WFDB records, and every kind of bad input giving a DataError that names the record and
file. Bad inputs are made in tmp_path copies of records of the embedded sample."""

import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import wfdb

from msresnet1d.data.beats import BeatConfig, load_beats, record_beats
from msresnet1d.data.errors import DataError, LeadError
from msresnet1d.data.locate import list_records, repo_datasets_dir
from msresnet1d.data.records import Record, preprocess_record, read_annotations, read_header, read_record
from msresnet1d.data.rhythm import RhythmConfig, load_rhythm

SAMPLE = repo_datasets_dir() / "mitdb-sample"


def copy_records(folder: Path, *names: str) -> Path:
    """Copies of sample records in ``folder`` (named 'x' in error messages)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        for path in SAMPLE.glob(f"{name}.*"):
            shutil.copy(path, folder)
    return folder


@pytest.fixture
def x(tmp_path: Path) -> Path:
    return copy_records(tmp_path / "x", "100")


def test_read_record_gives_channels_first_physical_signal():
    record = read_record(SAMPLE / "100")
    raw = wfdb.rdrecord(str(SAMPLE / "100"))
    assert record.name == "mitdb-sample/100"
    assert record.signal.shape == (2, 64800) and record.signal.dtype == np.float32
    assert record.fs == 360.0 and record.leads == ("MLII", "V5") and record.units == ("mV", "mV")
    np.testing.assert_allclose(record.signal, raw.p_signal.T, atol=1e-6)


def test_a_record_given_without_a_folder_is_named_by_itself(x, monkeypatch):
    monkeypatch.chdir(x)
    for given in ("100", "./100"):
        assert read_record(given).name == "100"
        with pytest.raises(LeadError, match=re.escape("record '100': no lead 'V1'")):
            read_record(given, leads=["V1"])


def test_leads_are_selected_by_name_not_position():
    # record 114 has its leads swapped: V5 first, MLII second
    raw = wfdb.rdrecord(str(SAMPLE / "114"))
    assert raw.sig_name == ["V5", "MLII"]
    mlii = read_record(SAMPLE / "114", leads=["MLII"])
    assert mlii.leads == ("MLII",)
    np.testing.assert_allclose(mlii.signal[0], raw.p_signal[:, 1], atol=1e-6)
    both = read_record(SAMPLE / "114", leads=["MLII", "V5"])
    np.testing.assert_allclose(both.signal, raw.p_signal[:, [1, 0]].T, atol=1e-6)


def test_lead_alternatives_read_each_records_own_second_lead():
    # MIT-BIH's second lead: V1 in 101, V5 in 114 (stored first), V4 in 124
    for name, second in [("101", "V1"), ("114", "V5"), ("124", "V4")]:
        record = read_record(SAMPLE / name, leads=["MLII", "V1|V2|V4|V5"])
        raw = wfdb.rdrecord(str(SAMPLE / name))
        assert record.leads == ("MLII", second)
        np.testing.assert_allclose(record.signal, raw.p_signal[:, [raw.sig_name.index("MLII"),
                                                                    raw.sig_name.index(second)]].T, atol=1e-6)
    with pytest.raises(LeadError, match=re.escape("record 'mitdb-sample/101': no lead 'V2|V4' (leads: MLII, V1)")):
        read_record(SAMPLE / "101", leads=["MLII", "V2|V4"])


def test_read_annotations_returns_positions_and_symbols():
    ann = read_annotations(SAMPLE / "100")
    raw = wfdb.rdann(str(SAMPLE / "100"), "atr")
    np.testing.assert_array_equal(ann.sample, raw.sample)
    assert list(ann.symbol) == raw.symbol and ann.fs == 360.0


def test_missing_dat(x):
    (x / "100.dat").unlink()
    with pytest.raises(DataError, match=re.escape("record 'x/100': file 100.dat is missing")):
        read_record(x / "100")


def test_missing_atr(x):
    (x / "100.atr").unlink()
    with pytest.raises(DataError, match=re.escape("record 'x/100': file 100.atr is missing")):
        load_beats(db_dir=x, cache=False)


def test_missing_hea(x):
    (x / "100.hea").unlink()
    with pytest.raises(DataError, match=re.escape("record 'x/100': file 100.hea is missing")):
        read_record(x / "100")


def test_a_record_missing_from_a_folder_of_others_names_some_of_them(tmp_path):
    for name in ("A00001", "A00002", "A00003", "A00004"):  # a CinC 2017 folder given for MIT-BIH, say
        (tmp_path / f"{name}.hea").write_text(f"{name} 1 300 9000\n")
    with pytest.raises(DataError, match=re.escape("file 101.hea is missing; the folder holds 4 other record(s), e.g. "
                                                  "A00001, A00002, A00003 (another database, or a partial copy?)")):
        read_record(tmp_path / "101")


def test_truncated_dat(x):
    with open(x / "100.dat", "r+b") as f:
        f.truncate(1000)
    message = (
        "record 'x/100': file 100.dat is truncated: expected 194,400 bytes for 64800 samples x 2 "
        "signals in format 212, found 1,000"
    )
    with pytest.raises(DataError, match=re.escape(message)):
        read_record(x / "100")
    with pytest.raises(DataError, match=re.escape(message)):
        read_header(x / "100")


def test_truncated_mat_file_with_preamble(tmp_path, cinc2017_dir):
    folder = tmp_path / "y"
    folder.mkdir()
    for path in cinc2017_dir.glob("A00001.*"):
        shutil.copy(path, folder)
    with open(folder / "A00001.mat", "r+b") as f:
        f.truncate(1000)
    message = (
        "record 'y/A00001': file A00001.mat is truncated: expected 18,024 bytes for 9000 samples x 1 "
        "signals in format 16 after a 24-byte preamble, found 1,000"
    )
    with pytest.raises(DataError, match=re.escape(message)):
        read_header(folder / "A00001")
    with pytest.raises(DataError, match=re.escape("record 'y/A00001': file A00001.mat is truncated: expected 18,024 "
                                                  "bytes for its 1 x 9000 matrix of 16-bit integers after a 24-byte "
                                                  "MAT header, found 1,000")):
        read_record(folder / "A00001")  # the .mat file's own header is read first


def test_a_damaged_dat_fails_the_headers_checksums(x):
    with open(x / "100.dat", "r+b") as f:  # wfdb reads it without complaint
        f.seek(90_000)
        f.write(bytes(3000))
    message = (r"record 'x/100': the samples do not match the header's checksums \(16-bit sums of each signal's "
               r"samples\): file 100.dat, signal MLII: checksum -?\d+, 100.hea expects 27506; file 100.dat, "
               r"signal V5: checksum -?\d+, 100.hea expects 23686\. A damaged signal file")
    with pytest.warns(UserWarning, match=message):
        read_record(x / "100")


def test_a_header_of_one_signal_over_a_dat_of_two_fails_its_checksum(x):
    lines = (x / "100.hea").read_text().splitlines(keepends=True)
    (x / "100.hea").write_text("".join(["100 1 360 64800\n", lines[1], *lines[3:]]))  # MLII read interleaved with V5
    message = "file 100.dat, signal MLII: checksum 20008, 100.hea expects 27506"
    with pytest.warns(UserWarning, match=re.escape(message)):
        read_record(x / "100", leads=["MLII"])


def test_a_header_cropped_by_its_length_reads_with_a_warning_only(x):
    # valid records can carry stale checksums (a cropped header, wfdb's own wfdb_to_mat): not refused
    lines = (x / "100.hea").read_text().splitlines(keepends=True)
    (x / "100.hea").write_text("".join(["100 2 360 36000\n", *lines[1:]]))
    with pytest.warns(UserWarning, match="a header cropped by editing its length, or written by a tool that kept old "
                                         "checksums, is harmless"):
        assert read_record(x / "100").signal.shape == (2, 36000)


# none (and so no description, which follows the block size); initial value, checksum 0, block size (as CinC 2017's)
@pytest.mark.parametrize("fields", ["", " 0 0 0"])
def test_headers_without_checksums_are_read(x, fields):
    lines = (x / "100.hea").read_text().splitlines(keepends=True)
    signal_lines = [f"100.dat 212 200 11 1024{fields and f'{fields} {lead}'}\n" for lead in ("MLII", "V5")]
    (x / "100.hea").write_text("".join([lines[0], *signal_lines, *lines[3:]]))
    with open(x / "100.dat", "r+b") as f:  # so that its sums are not 0 either
        f.write(bytes(30))
    assert wfdb.rdheader(str(x / "100")).checksum == ([None, None] if not fields else [0, 0])
    assert read_record(x / "100").signal.shape == (2, 64800)


@pytest.mark.parametrize(
    "record_line, problem",
    [
        ("garbage", "does not give the number of signals"),
        ("100 2 abc 64800", "sampling frequency field 'abc' is not a number"),
        ("# no record line", "it has no record line"),
    ],
)
def test_malformed_record_line(x, record_line, problem):
    lines = (x / "100.hea").read_text().splitlines()
    kept = lines[1:] if not record_line.startswith("#") else []
    (x / "100.hea").write_text("\n".join([record_line, *kept]) + "\n")
    message = re.escape("record 'x/100': file 100.hea is malformed: ") + ".*" + re.escape(problem)
    with pytest.raises(DataError, match=message):
        read_record(x / "100")


def test_header_with_missing_signal_line(x):
    lines = (x / "100.hea").read_text().splitlines(keepends=True)
    (x / "100.hea").write_text("".join(lines[:2] + lines[3:]))  # drop the V5 line
    message = re.escape("record 'x/100': file 100.hea is malformed: the record line announces 2 signals but 1 signal")
    with pytest.raises(DataError, match=message):
        read_header(x / "100")
    with pytest.raises(DataError, match=message):
        read_record(x / "100")  # wfdb fails on it; the diagnosis names the file


def test_an_annotation_file_wfdb_cannot_read_is_named(x):
    with open(x / "100.atr", "r+b") as f:
        f.truncate(201)  # odd length: wfdb's reader failed in numpy ("cannot reshape array of size 201")
    message = ("record 'x/100': file 100.atr is 201 bytes long, an odd number, where a WFDB annotation file is 16-bit "
               "words (truncated? or not an annotation file)")
    for read in (read_annotations, lambda path: load_beats(db_dir=path.parent, cache=False)):
        with pytest.raises(DataError, match=re.escape(message)):
            read(x / "100")
    (x / "100.atr").write_bytes((59 << 10).to_bytes(2, "little") + bytes(2))  # a SKIP word without its 4 bytes
    with pytest.raises(DataError, match=re.escape("record 'x/100': file 100.atr could not be read as a WFDB "
                                                  "annotation file (damaged or truncated?): IndexError")):
        read_annotations(x / "100")
    (x / "100.atr").write_bytes(b"")  # wfdb reads no annotations from it
    with pytest.raises(DataError, match=re.escape("record 'x/100': file 100.atr is empty (0 bytes), not a WFDB "
                                                  "annotation file")):
        load_beats(db_dir=x, cache=False)


def test_unknown_annotation_code(x):
    wfdb.wrann("100", "atr", np.array([100, 500, 900]), symbol=["N", "N", "N"], write_dir=str(x))
    raw = bytearray((x / "100.atr").read_bytes())
    # Each of these annotations is one little-endian 16-bit word: 6-bit code, 10-bit time step.
    # Give the second one code 42, which no WFDB label uses.
    step = int.from_bytes(raw[2:4], "little") & 0x3FF
    raw[2:4] = (42 << 10 | step).to_bytes(2, "little")
    (x / "100.atr").write_bytes(bytes(raw))
    message = r"record 'x/100': file 100.atr has 1 annotation\(s\) with unknown labels: code 42 at sample 500"
    with pytest.raises(DataError, match=message):
        read_annotations(x / "100")


def test_sampling_rate_mismatch_between_annotations_and_header(x):
    ann = wfdb.rdann(str(x / "100"), "atr")
    wfdb.wrann("100", "atr", ann.sample, symbol=ann.symbol, fs=250, write_dir=str(x))
    with pytest.raises(
        DataError,
        match=re.escape(
            "record 'x/100': sampling rate mismatch: 100.atr was written at 250 Hz but 100.hea says 360 Hz"
        ),
    ):
        load_beats(db_dir=x, cache=False)


def test_annotation_beyond_the_signal(x):
    wfdb.wrann("100", "atr", np.array([100, 500, 70000]), symbol=["N", "N", "N"], write_dir=str(x))
    message = "record 'x/100': file 100.atr has 1 annotation(s) outside the signal (0..64800), first at sample 70000"
    with pytest.raises(DataError, match=re.escape(message)):
        read_annotations(x / "100")
    # a header without the record's length: the samples read bound the annotations (a beat past them was
    # labelled from the last sample, or refused as a repeated position naming no record)
    wfdb.wrann("100", "atr", np.array([100, 500, 40000]), symbol=["N", "N", "N"], write_dir=str(x))
    record_line, *signal_lines = (x / "100.hea").read_text().splitlines()
    (x / "100.hea").write_text("\n".join(["100 2 360", *signal_lines]) + "\n")
    (x / "100.dat").write_bytes((x / "100.dat").read_bytes()[:97200])  # 32,400 samples of 2 signals, format 212
    message = ("record 'x/100': file 100.atr has 1 annotation(s) outside the signal (0..32400, the samples read: "
               "100.hea gives no length), first at sample 40000")
    with pytest.raises(DataError, match=re.escape(message)), pytest.warns(UserWarning, match="checksums"):
        record_beats(x / "100")
    with pytest.raises(DataError, match=re.escape(message)):
        read_annotations(x / "100", length=32400)
    assert read_annotations(x / "100").sample[-1] == 40000  # without the length read: only the header bounds them


def test_beats_closer_than_a_heart_beats_are_warned_about_in_the_training_data(x):
    ann = wfdb.rdann(str(x / "100"), "atr")
    beats = np.isin(ann.symbol, ["N", "A", "V"])
    samples, symbols = ann.sample[beats], list(np.array(ann.symbol)[beats])
    with warnings.catch_warnings(record=True) as caught:  # as annotated: none (MIT-BIH's closest beats: 0.25 s)
        warnings.simplefilter("always")
        record_beats(x / "100")
    assert not [w for w in caught if "less than 0.15 s" in str(w.message)]
    wfdb.wrann("100", "atr", np.sort(np.r_[samples, samples[7:9] + 36]), symbol=symbols + ["N", "N"],
               write_dir=str(x))  # two beats annotated again 0.1 s later
    with pytest.warns(UserWarning, match=re.escape(f"record 'x/100': file 100.atr: 2 beat(s) less than 0.15 s after "
                                                   f"the previous one (a rate above 400/min, which no heart beats at), "
                                                   f"first at sample {samples[7] + 36}")):
        record_beats(x / "100")


def test_annotations_that_stop_long_before_the_records_end_are_warned_about(x):
    # the sample record is 180 s (64,800 samples); a truncated file keeps its first beats only
    ann = wfdb.rdann(str(x / "100"), "atr")
    first = ann.sample < 360 * 17
    wfdb.wrann("100", "atr", ann.sample[first], symbol=list(np.array(ann.symbol)[first]), write_dir=str(x))
    with pytest.warns(UserWarning, match=re.escape("record 'x/100': the beat annotations in 100.atr stop at 16.")):
        read_annotations(x / "100")
    # written at 250 Hz (positions x 250/360) for the record's 360 Hz, no rate in the file: they end early too
    wfdb.wrann("100", "atr", np.round(ann.sample * 250 / 360).astype(int), symbol=ann.symbol, write_dir=str(x))
    last = round(ann.sample[-1] * 250 / 360)
    hint = (f"stop at {last / 360:.1f} s of the record's 180.0 s (a truncated file? or annotations written at another "
            "sampling rate: positions x 1.44 is about the record's length, as if written at about 249 Hz for a "
            "record at 360 Hz)")  # the last beat is 0.5 s before the end
    with pytest.warns(UserWarning, match=re.escape(hint)):
        read_annotations(x / "100")
    kept = ann.sample < 360 * 170  # the last 10 s unannotated: no warning
    wfdb.wrann("100", "atr", ann.sample[kept], symbol=list(np.array(ann.symbol)[kept]), write_dir=str(x))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        read_annotations(x / "100")
        # rhythm changes alone (no beats), which may end long before the record does: no warning
        wfdb.wrann("100", "atr", np.array([10, 3600]), symbol=["+", "+"], aux_note=["(N", "(AFIB"], write_dir=str(x))
        read_annotations(x / "100")


def test_an_annotation_file_cut_at_an_even_byte_is_warned_about(x):
    # it reads, as far as it goes: 20 bytes less lose the last 9 s, less than the 10 s the warning above needs
    full = read_annotations(x / "100")
    data = (x / "100.atr").read_bytes()
    (x / "100.atr").write_bytes(data[:-20])
    with pytest.warns(UserWarning, match=re.escape("record 'x/100': file 100.atr lacks WFDB's end-of-file marker (two "
                                                   "zero bytes), so it is truncated: its annotations stop at 17") +
                      r"\d\.\d s of the record's 180\.0 s$"):
        assert len(read_annotations(x / "100").sample) < len(full.sample)
    (x / "100.atr").write_bytes(data[:2])
    with pytest.warns(UserWarning, match="so it is truncated: it holds no annotation of the record's 180.0 s$"):
        read_annotations(x / "100")


def test_record_shorter_than_one_window(tmp_path):
    folder = tmp_path / "x"
    folder.mkdir()
    wfdb.wrsamp(
        "short",
        fs=360,
        units=["mV"],
        sig_name=["MLII"],
        p_signal=np.zeros((100, 1)),
        fmt=["212"],
        write_dir=str(folder),
    )
    wfdb.wrann("short", "atr", np.array([30, 70]), symbol=["N", "N"], write_dir=str(folder))
    with pytest.raises(
        DataError,
        match=re.escape(
            "record 'x/short' is shorter than one beat window: 100 samples (0.278 s at 360 Hz) < window 0.700 s"
        ),
    ):
        record_beats(folder / "short")


def test_missing_lead(x):
    with pytest.raises(DataError, match=re.escape("record 'x/100': no lead 'V1' (leads: MLII, V5)")):
        load_beats(db_dir=x, config=BeatConfig(leads=("MLII", "V1")), cache=False)


def test_a_lead_without_a_description_is_named_by_an_empty_string(x):
    mlii = wfdb.rdrecord(str(x / "100"), channels=[0]).p_signal
    wfdb.wrsamp("blank", fs=360, units=["mV"], sig_name=[""], p_signal=mlii, fmt=["16"], write_dir=str(x))
    assert wfdb.rdheader(str(x / "blank")).sig_name == [None]  # how wfdb gives it
    assert read_record(x / "blank").leads == ("",)
    for leads in (["MLII"], ["MLII|II"]):  # checked as read, or resolved from the header first
        with pytest.raises(LeadError, match=re.escape("record 'x/blank': no lead 'MLII")):
            read_record(x / "blank", leads=leads)


def test_a_lead_without_a_description_is_read_by_the_empty_name(x):
    # wfdb gives its name as None, so it cannot be asked for by name: it is read by position
    raw = wfdb.rdrecord(str(x / "100")).p_signal
    wfdb.wrsamp("blank", fs=360, units=["mV", "mV"], sig_name=["V5", ""], p_signal=raw[:, ::-1], fmt=["16", "16"],
                adc_gain=[200.0, 200.0], baseline=[0, 0], write_dir=str(x))
    for leads in ([""], ["|MLII"]):
        record = read_record(x / "blank", leads=leads)
        assert record.leads == ("",)
        np.testing.assert_allclose(record.signal[0], raw[:, 0], atol=1e-6)
    record = read_record(x / "blank", leads=["", "V5"])
    assert record.leads == ("", "V5")
    np.testing.assert_allclose(record.signal, raw.T, atol=1e-6)
    with pytest.raises(LeadError, match=re.escape("record 'x/blank': no lead 'MLII' (leads: V5, (unnamed))")):
        read_record(x / "blank", leads=["", "MLII"])


def test_a_lead_without_a_valid_sample_is_refused_by_beats_and_rhythm(x):
    digital = wfdb.rdrecord(str(x / "100"), physical=False).d_signal.astype(np.int16)
    digital[:, 0] = -32768  # MLII unplugged: every sample WFDB's invalid value in format 16, V5 fine
    wfdb.wrsamp("blank", fs=360, units=["mV", "mV"], sig_name=["MLII", "V5"], d_signal=digital, fmt=["16", "16"],
                adc_gain=[200.0, 200.0], baseline=[1024, 1024], write_dir=str(x))
    shutil.copy(x / "100.atr", x / "blank.atr")
    (x / "REFERENCE.csv").write_text("blank,N\n")
    assert np.isnan(read_record(x / "blank").signal[0]).all()
    message = re.escape("record 'x/blank': lead MLII has no valid sample (every one is WFDB's invalid value): "
                        "nothing to label from it")
    with pytest.raises(DataError, match=message):
        load_beats(["blank"], db_dir=x, cache=False)
    with pytest.raises(DataError, match=message):
        load_rhythm(x, RhythmConfig(lead="MLII"), cache=False)
    assert load_rhythm(x, RhythmConfig(lead="V5"), cache=False).data.shape == (1, 64800 * 300 // 360)


def test_a_flat_lead_or_an_infinite_sample_is_refused_naming_the_lead(x):
    digital = wfdb.rdrecord(str(x / "100"), physical=False).d_signal.astype(np.int16)
    digital[:, 0] = 7  # MLII flat: labelled before ("N 2273"), with a warning of a channel "only centred"
    wfdb.wrsamp("flat", fs=360, units=["mV", "mV"], sig_name=["MLII", "V5"], d_signal=digital, fmt=["16", "16"],
                adc_gain=[200.0, 200.0], baseline=[1024, 1024], write_dir=str(x))
    shutil.copy(x / "100.atr", x / "flat.atr")
    with pytest.raises(LeadError, match=re.escape("record 'x/flat': lead MLII is flat (one value throughout: an "
                                                  "unplugged electrode?): nothing to label from it")):
        load_beats(["flat"], db_dir=x, cache=False)
    record = read_record(x / "100")
    signal = record.signal.copy()
    signal[1, 500] = np.inf  # was read as a signal of NaN, then reported as "nan at channel 0, sample 0"
    with pytest.raises(DataError, match=re.escape("record 'x/100': lead V5 holds an infinite value at sample 500: "
                                                  "mark a sample without a value NaN")):
        preprocess_record(Record(record.name, signal, record.fs, record.leads, record.units), 180, (0.5, 40), "zscore")


@pytest.mark.parametrize("signal, fs, problem", [
    (np.zeros((64800, 2)), 360, r"signal is \(C, L\), one row a lead, for its 2 lead\(s\) \['MLII', 'V5'\]; got "
                                r"shape \(64800, 2\) \(transposed\? pass signal\.T\)$"),
    (np.zeros(64800), 360, r"signal is .*; got shape \(64800,\)$"),
    ([[0.0] * 10] * 2, 360, r"signal is .*; got list$"),
    (np.zeros((2, 64800)), "300", r"fs is the sampling rate in Hz, a number > 0; got '300'$"),
    (np.zeros((2, 64800)), 0, r"fs is .* a number > 0; got 0$"),
])
def test_a_record_built_by_hand_is_checked(signal, fs, problem):
    with pytest.raises(ValueError, match=r"^record 'mine': " + problem):
        Record("mine", signal, fs, ("MLII", "V5"), ("mV", "mV"))


def test_a_multi_segment_record_whose_segments_give_a_lead_in_different_units_is_refused(x):
    # a variable layout: MLII and V5 in mV, a gap, then MLII alone in uV; wfdb gives the record units=None
    raw = wfdb.rdrecord(str(x / "100")).p_signal
    wfdb.wrsamp("seg1", fs=360, units=["mV", "mV"], sig_name=["MLII", "V5"], p_signal=raw[:30000], fmt=["16", "16"],
                adc_gain=[200.0, 200.0], baseline=[0, 0], write_dir=str(x))
    wfdb.wrsamp("seg2", fs=360, units=["uV"], sig_name=["MLII"], p_signal=raw[31000:, :1] * 1000, fmt=["16"],
                adc_gain=[0.2], baseline=[0], write_dir=str(x))
    (x / "layout.hea").write_text("layout 2 360 0\n~ 0 200/mV 16 0 0 0 0 MLII\n~ 0 200/mV 16 0 0 0 0 V5\n")
    (x / "multi.hea").write_text("multi/4 2 360 64800\nlayout 0\nseg1 30000\n~ 1000\nseg2 33800\n")
    message = re.escape("record 'x/multi': its segments give a lead in different physical units (wfdb gives none for "
                        "the record), which msresnet1d does not convert: write the segments in one unit")
    for leads in (None, ["MLII"], ["V5", "MLII"]):
        with pytest.raises(DataError, match=message):
            read_record(x / "multi", leads=leads)
    v5 = read_record(x / "multi", leads=["V5"])  # in mV throughout, where it is recorded
    assert v5.leads == ("V5",) and v5.units == ("mV",) and v5.signal.shape == (1, 64800)
    np.testing.assert_allclose(v5.signal[0, :30000], raw[:30000, 1], atol=1e-6)
    assert np.isnan(v5.signal[0, 30000:]).all()


def test_format_61_is_read_and_checked_against_its_checksums(x):
    # big-endian 16-bit: wfdb 4.3 reads it in physical units only (its digital read fails in convert_dtype)
    digital = wfdb.rdrecord(str(x / "100"), physical=False).d_signal
    digital.astype(">i2").tofile(x / "b61.dat")
    header = (x / "100.hea").read_text().replace("100 2", "b61 2").replace("100.dat 212", "b61.dat 61")
    (x / "b61.hea").write_text(header)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the checksums match
        record = read_record(x / "b61")
        v5 = read_record(x / "b61", leads=["V5"])
    expected = read_record(x / "100")
    np.testing.assert_array_equal(record.signal, expected.signal)
    assert record.leads == ("MLII", "V5") and record.units == ("mV", "mV")
    np.testing.assert_array_equal(v5.signal, expected.signal[1:])
    digital[1000, 0] += 5
    digital.astype(">i2").tofile(x / "b61.dat")
    with pytest.warns(UserWarning, match=re.escape("file b61.dat, signal MLII: checksum 27511, b61.hea expects 27506")):
        read_record(x / "b61")


def test_empty_database_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no WFDB records in .*empty: no RECORDS file and no \.hea files"):
        load_beats(db_dir=tmp_path / "empty", cache=False)
    with pytest.raises(DataError, match=r"database folder .*nowhere does not exist"):
        list_records(tmp_path / "nowhere")


def test_missing_database_folder_names_the_folder_and_the_record(tmp_path):
    message = re.escape(f"record 'nowhere/100': database folder {tmp_path / 'nowhere'} does not exist")
    for cache in (True, False):
        with pytest.raises(DataError, match=message):
            load_beats(["100"], db_dir=tmp_path / "nowhere", cache=cache, cache_dir=tmp_path / "cache")


def test_errors_from_worker_processes_reach_the_caller(tmp_path):
    folder = copy_records(tmp_path / "x", "100", "101")
    (folder / "101.dat").unlink()
    with pytest.raises(DataError, match=re.escape("record 'x/101': file 101.dat is missing")):
        load_beats(db_dir=folder, cache=False, workers=2)


@pytest.mark.parametrize("reader, call", [("rdheader", read_header), ("rdrecord", read_record),
                                          ("rdann", read_annotations)])
def test_a_warning_raised_as_an_error_inside_wfdb_is_not_called_damage(x, monkeypatch, reader, call):
    # wfdb 4.3's rdann warns a pandas deprecation: under -W error (or pytest's filterwarnings = error) that
    # was reported as a damaged file
    original = getattr(wfdb, reader)

    def deprecated(*args, **kwargs):
        warnings.warn("an internal deprecation", DeprecationWarning)
        return original(*args, **kwargs)

    monkeypatch.setattr(wfdb, reader, deprecated)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DeprecationWarning, match="an internal deprecation"):
            call(x / "100")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        call(x / "100")  # read as usual otherwise


def _mat_record(folder: Path, value: np.ndarray, fmt: str = "16+24", signals: int = 1, length: int = 900) -> Path:
    """A CinC-style record ``folder/m``: its header, and ``m.mat`` holding ``value`` as
    ``scipy.io.savemat`` writes it (MAT version 4 unless ``value`` is a string: the file's bytes)."""
    import scipy.io

    folder.mkdir(exist_ok=True)
    lines = [f"m {signals} 300 {length}"] + [f"m.mat {fmt} 1000/mV 16 0 0 0 0 ECG{i}" for i in range(signals)]
    (folder / "m.hea").write_text("\n".join(lines) + "\n")
    if isinstance(value, str):
        scipy.io.savemat(folder / "m.mat", {"val": np.zeros((signals, length), np.int16)}, format=value)
    else:
        scipy.io.savemat(folder / "m.mat", {"val": value}, format="4")
    return folder / "m"


def test_a_mat_signal_file_must_hold_what_its_header_says(tmp_path):
    # wfdb reads any .mat from byte 24 on: a float64 copy of a CinC record read as garbage, silently
    samples = (np.sin(np.arange(900) / 20) * 1000).astype(np.int16)[None]
    np.testing.assert_allclose(read_record(_mat_record(tmp_path / "ok", samples)).signal, samples / 1000, atol=1e-6)
    np.testing.assert_allclose(read_record(_mat_record(tmp_path / "column", samples.T)).signal, samples / 1000,
                               atol=1e-6)  # one lead as a column: the same bytes
    for name, value, problem in [
        ("float", samples.astype(np.float64), "holds MAT type 0, not 30 (16-bit integers, which its format 16 in m.hea "
                                              "reads)"),
        ("int32", samples.astype(np.int32), "holds MAT type 20, not 30"),
        ("rows", np.vstack([samples, samples]), "holds a 2 x 900 matrix, where m.hea gives 1 signal(s) of 900 samples"),
        ("v5", "5", "is a MAT version 5 file whose data, where its header reads them from byte 24, are not 16-bit "
                    "integers of 1 signal(s) x 900 samples"),
    ]:
        with pytest.raises(DataError, match=re.escape(f"record '{name}/m': file m.mat {problem}")):
            read_record(_mat_record(tmp_path / name, value))
    assert read_record(_mat_record(tmp_path / "int32ok", samples.astype(np.int32), fmt="32+24")).signal.shape == \
        (1, 900)


def test_a_mat_version_5_record_of_wfdbs_own_converter_is_read(x, monkeypatch):
    # wfdb_to_mat writes MAT version 5, read past its header (16x1+192): as wfdb reads it
    from wfdb.io.convert.matlab import wfdb_to_mat

    monkeypatch.chdir(x)  # it writes where it runs
    wfdb_to_mat("100")
    assert "100m.mat 16x1+192" in (x / "100m.hea").read_text()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its checksums are the original's, of other digital values
        converted = read_record(x / "100m")
    np.testing.assert_allclose(converted.signal, read_record(x / "100").signal, atol=1e-6)
    # scipy's MAT v5 of float64 (its default), pointed at by a header past its headers: not int16 data
    import scipy.io

    scipy.io.savemat(x / "f64.mat", {"val": converted.signal.astype(np.float64)})
    (x / "f64.hea").write_text("f64 2 360 64800\n" + "".join(f"f64.mat 16+192 200/mV 16 0 0 0 0 {lead}\n"
                                                             for lead in ("MLII", "V5")))
    with pytest.raises(DataError, match=re.escape("file f64.mat is a MAT version 5 file whose data, where its header "
                                                  "reads them from byte 192, are not 16-bit integers")):
        read_record(x / "f64")


@pytest.mark.parametrize("record_line, signal_lines, problem", [
    ("100 2 1e9 650000", 2, "is malformed: sampling frequency field '1e9' is not a number (digits and a point, as "
                            "wfdb reads it)"),
    ("100 2 0 650000", 2, "is malformed: sampling frequency '0', not above 0"),
    ("100 0 360 650000", 0, "declares no signals (an annotation-only record): nothing to read"),
    ("100 2 360 0", 2, "declares 0 samples a signal: nothing to read"),  # was wfdb's "sampto must be greater ..."
])
def test_a_record_line_wfdb_would_misread_is_refused_without_leads_too(x, record_line, signal_lines, problem):
    lines = (x / "100.hea").read_text().splitlines(keepends=True)
    (x / "100.hea").write_text("".join([record_line + "\n", *lines[1:1 + signal_lines], *lines[3:]]))
    with pytest.raises(DataError, match=re.escape(f"record 'x/100': file 100.hea {problem}")):
        read_record(x / "100")  # the rhythm path: no leads asked for (wfdb read 1e9 as 1 Hz, 0 Hz passed)


@pytest.mark.parametrize("gain", ["2x0(1024)/mV", "200(x)/mV", "2E2(1024)/mV", "2E2/mV", "2x0/mV"])  # 2E2 read as 2
def test_a_gain_field_wfdb_would_read_a_part_of_is_refused(x, gain):
    # wfdb read '2x0' as a gain of 2, and after '200(x)' took the rest of the line as the lead's name
    lines = (x / "100.hea").read_text().splitlines(keepends=True)
    (x / "100.hea").write_text("".join([lines[0], lines[1], lines[2].replace("200.0(1024)/mV", gain), *lines[3:]]))
    with pytest.raises(DataError, match=re.escape(f"record 'x/100': file 100.hea is malformed: signal line 2 (100.dat "
                                                  f"212 {gain} ...): its gain field {gain!r} is not gain[(baseline)]"
                                                  "[/units], e.g. 200(1024)/mV")):
        read_record(x / "100")
    for valid in ("200", "200.0(-12)/uV", "1e3/mV", "-.5(0)"):
        (x / "100.hea").write_text("".join([lines[0], lines[1], lines[2].replace("200.0(1024)/mV", valid), *lines[3:]]))
        assert read_record(x / "100").signal.shape == (2, 64800)


def test_a_header_without_a_sampling_frequency_warns_of_wfdbs_default(x):
    lines = (x / "100.hea").read_text().splitlines(keepends=True)
    (x / "100.hea").write_text("".join(["100 2\n", *lines[1:]]))
    with pytest.warns(UserWarning, match=re.escape("record 'x/100': file 100.hea gives no sampling frequency, so "
                                                   "WFDB's default, 250 Hz, is assumed")):
        assert read_record(x / "100").fs == 250


def test_a_header_that_names_another_record_warns(x):
    import shutil
    import warnings

    for ext in ("hea", "dat"):
        shutil.copy(x / f"100.{ext}", x / f"101.{ext}")
    text = (x / "101.hea").read_text()
    assert text.startswith("100 ")
    (x / "101.hea").write_text("101" + text[3:])  # a header renamed with its record: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_record(x / "101")
    (x / "101.hea").write_text(text)  # 100's header copied as 101's: it reads 100.dat
    with pytest.warns(UserWarning, match=re.escape("record 'x/101': file 101.hea names record '100' in its record "
                                                   "line, not '101' (a header copied from another record? its signal "
                                                   "files are read: 100.dat)")):
        read_record(x / "101")


def _edit_line(folder: Path, name: str, number: int, old: str, new: str) -> None:
    """Replace ``old`` by ``new`` in line ``number`` (0: the record line) of header ``folder/name.hea``."""
    lines = (folder / f"{name}.hea").read_text().splitlines(keepends=True)
    assert old in lines[number]
    lines[number] = lines[number].replace(old, new, 1)
    (folder / f"{name}.hea").write_text("".join(lines))


@pytest.mark.parametrize("line", [1, 2])
@pytest.mark.parametrize("fmt", ["999", "21"])
def test_a_signal_format_wfdb_does_not_read_is_refused_on_any_signal_line(tmp_path, line, fmt):
    # on the second line of a file: a bare KeyError from wfdb's conversion; on the first, "wfdb could not read"
    folder = copy_records(tmp_path / "x", "114")
    _edit_line(folder, "114", line, " 212 ", f" {fmt} ")
    message = re.escape(f"record 'x/114': file 114.hea is malformed: signal line {line} (114.dat {fmt} "
                        f"200.0(1024)/mV ...): its format, {fmt}, is not a WFDB format wfdb reads (8, 16, 32, 61, 80")
    with pytest.raises(DataError, match=message):
        load_beats(records=["114"], db_dir=folder, cache=False, workers=1)
    with pytest.raises(DataError, match=message):
        read_header(folder / "114")


def test_signals_sharing_a_file_in_different_formats_are_refused(x):
    # wfdb reads 100.dat in the first signal's format, 212: V5's line saying 16 was silently misread
    _edit_line(x, "100", 2, " 212 ", " 16 ")
    with pytest.raises(DataError, match=re.escape("record 'x/100': file 100.hea is malformed: signal line 2 (100.dat "
                                                  "16 200.0(1024)/mV ...): its format, 16, is not that of signal line "
                                                  "1 (212), which shares its file: wfdb reads a file in its first "
                                                  "signal's format")):
        read_record(x / "100", leads=["MLII"])


def test_a_failure_of_wfdbs_conversion_names_the_record(x, monkeypatch):
    def fails(*args, **kwargs):
        raise KeyError("999")

    monkeypatch.setattr(wfdb.Record, "dac", fails)
    with pytest.raises(DataError, match=re.escape("record 'x/100': wfdb could not read the signals: KeyError: '999'")):
        read_record(x / "100")


@pytest.mark.parametrize("line, field, problem", [
    (2, "212x0", "its format field '212x0' gives 0 samples per frame, where a signal has 1 or more"),
    (1, "212x0", "its format field '212x0' gives 0 samples per frame"),  # was a ZeroDivisionError in wfdb
    (2, "212x-1", "its format field '212x-1' is not format[xsamples per frame][:skew][+byte offset], each a whole "
                  "number (212, 16x4, 16+24, ...)"),
    (2, "212+-3", "its format field '212+-3' is not format[xsamples per frame]"),
    (2, "212+abc", "its format field '212+abc' is not format[xsamples per frame]"),
    (2, "212:x", "its format field '212:x' is not format[xsamples per frame]"),
])
def test_a_format_field_wfdb_would_misread_is_refused(x, line, field, problem):
    # 212x0 on the second line: numpy's "cannot reshape array of size 0 into shape (0)"
    _edit_line(x, "100", line, " 212 ", f" {field} ")
    with pytest.raises(DataError, match=re.escape(f"record 'x/100': file 100.hea is malformed: signal line {line} "
                                                  f"(100.dat {field} 200.0(1024)/mV ...): {problem}")):
        read_record(x / "100")


@pytest.mark.parametrize("name", ["1\xff0.dat", "\u00f1.dat", "../100.dat", "a.b.dat", "d/100.dat"])
def test_a_signal_file_name_wfdb_would_read_as_another_is_refused(x, name):
    # wfdb decodes a header as ASCII dropping the rest: 1\xff0.dat was read as 10.dat, whichever file that is
    shutil.copy(x / "100.dat", x / "10.dat")
    text = (x / "100.hea").read_bytes().replace(b"100.dat 212", name.encode("utf-8", "surrogateescape") + b" 212", 1)
    (x / "100.hea").write_bytes(text.replace(b"\xc3\xbf", b"\xff"))  # the byte itself, not its UTF-8 form
    shown = name.replace("\xff", "\ufffd")  # as read, the byte replaced
    problem = (f"record 'x/100': file 100.hea is malformed: signal line 1 ({shown} 212 200.0(1024)/mV ...): its file "
               f"name {shown!r} is not one wfdb reads as written")
    with pytest.raises(DataError, match=re.escape(problem)):
        read_record(x / "100")


def _cinc_copy(cinc2017_dir: Path, folder: Path) -> Path:
    """A writable copy of CinC 2017's record A00001 (one lead, 9000 samples, A00001.mat) in ``folder``,
    with a REFERENCE.csv of it alone."""
    folder.mkdir()
    for path in cinc2017_dir.glob("A00001.*"):
        shutil.copy(path, folder)
        (folder / path.name).chmod(0o644)
    (folder / "REFERENCE.csv").write_text("A00001,N\n")
    return folder


@pytest.mark.parametrize("field, problem", [
    ("16+23", "holds its matrix's data from byte 24 (after a 20-byte MAT header and a 4-byte name), but A00001.hea "
              "reads it from byte 23: its format field should be 16+24"),
    ("16+0", "holds its matrix's data from byte 24 (after a 20-byte MAT header and a 4-byte name), but A00001.hea "
             "reads it from byte 0"),
    ("16", "holds its matrix's data from byte 24 (after a 20-byte MAT header and a 4-byte name), but A00001.hea "
           "reads it from byte 0: its format field should be 16+24"),
    ("32+24", "holds MAT type 30, not 20 (32-bit integers, which its format 32 in A00001.hea reads)"),
    ("80+24", "holds MAT type 30, not 50 (8-bit unsigned integers, which its format 80 in A00001.hea reads)"),
    ("8+24", "is read in format 8 by A00001.hea, but a .mat signal file holds format 16 (16-bit integers), 32 "
             "(32-bit integers) or 80 (8-bit unsigned integers) only"),
    ("212+24", "is read in format 212 by A00001.hea, but a .mat signal file holds format 16"),
    ("61+24", "is read in format 61 by A00001.hea, but a .mat signal file holds format 16"),
])
def test_a_mat_files_byte_offset_and_format_must_be_its_matrixs(tmp_path, cinc2017_dir, field, problem):
    # wfdb read the samples shifted by a byte (16+23) or from the MAT header on (16+0, 16): garbage, silently
    folder = _cinc_copy(cinc2017_dir, tmp_path / "y")
    _edit_line(folder, "A00001", 1, " 16+24 ", f" {field} ")
    with pytest.raises(DataError, match=re.escape(f"record 'y/A00001': file A00001.mat {problem}")):
        read_record(folder / "A00001")


def test_a_mat_file_holds_its_matrix_alone(tmp_path, cinc2017_dir):
    folder = _cinc_copy(cinc2017_dir, tmp_path / "y")
    with open(folder / "A00001.mat", "ab") as f:
        f.write(bytes(6))
    with pytest.raises(DataError, match=re.escape("record 'y/A00001': file A00001.mat holds 6 bytes after its 1 x 9000 "
                                                  "matrix of 16-bit integers (another matrix? a WFDB .mat signal file "
                                                  "holds one)")):
        read_record(folder / "A00001")


def test_a_mat_file_of_wfdb2mats_8_bit_format_is_read(tmp_path):
    # wfdb2mat writes a record of format 80 signals as unsigned bytes (MAT type 50), format 80+24
    digital = (np.sin(np.arange(900) / 20) * 100).astype(np.int16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        record = read_record(_mat_record(tmp_path / "u8", (digital + 128).astype(np.uint8)[None], fmt="80+24"))
    np.testing.assert_allclose(record.signal[0], digital / 1000, atol=1e-6)


@pytest.mark.parametrize("length, read_as", [("900x", "900"), ("1e5", "1"), ("abc", "absent")])
def test_a_number_of_samples_wfdb_would_read_a_part_of_is_refused(tmp_path, cinc2017_dir, length, read_as):
    # 900x: load_rhythm read the first 900 samples of A00001's 9000, without a word
    folder = _cinc_copy(cinc2017_dir, tmp_path / "y")
    _edit_line(folder, "A00001", 0, " 9000 ", f" {length} ")
    with pytest.raises(DataError, match=re.escape(f"record 'y/A00001': file A00001.hea is malformed: its number of "
                                                  f"samples (a signal), field 4 of the record line, is {length!r}, not "
                                                  f"a whole number (wfdb would read it as {read_as})")):
        load_rhythm(folder, cache=False)


@pytest.mark.parametrize("old, new, problem", [
    (" 11 1024 ", " abc 1024 ", "its field 4, the ADC resolution, is 'abc', not an integer: after the gain come the "
                                "ADC resolution, ADC zero, initial value, checksum and block size, all integers, then "
                                "the description"),
    (" 1024 995 ", " 1024 x ", "its field 6, the initial value, is 'x', not an integer"),
    (" 27506 0 MLII", " 27506 0.5 MLII", "its field 8, the block size, is '0.5', not an integer"),
    # the description follows the block size: WFDB's library reads MLII here as the initial value (atoi: 0)
    (" 1024 995 27506 0 MLII", " 1024 MLII", "its field 6, the initial value, is 'MLII', not an integer"),
])
def test_a_signal_line_field_wfdb_would_fold_into_the_leads_name_is_refused(x, old, new, problem):
    # "abc 1024": leads ('abc 1024 995 27506 0 MLII', 'V5'), and MLII's checksum unchecked
    _edit_line(x, "100", 1, old, new)
    with pytest.raises(DataError, match=re.escape("record 'x/100': file 100.hea is malformed: signal line 1 (100.dat "
                                                  f"212 200.0(1024)/mV ...): {problem}")):
        read_record(x / "100")


@pytest.mark.parametrize("gain, problem", [
    ("1e400", "its gain, 1e400, is not a finite number (it reads as inf)"),  # was an all-zero signal: "flat lead"
    ("1e-400", "its gain, 1e-400, is too small for a float: it reads as 0, which WFDB takes for an uncalibrated "
               "signal's (a gain of 200)"),
    ("nan", "its gain field 'nan(1024)/mV' is not gain[(baseline)][/units], e.g. 200(1024)/mV, which wfdb would "
            "misread"),  # nan and inf were read as units
    ("inf", "its gain field 'inf(1024)/mV' is not gain[(baseline)][/units]"),
])
def test_a_gain_that_is_not_a_finite_number_is_refused(x, gain, problem):
    _edit_line(x, "100", 1, " 200.0(1024)/mV ", f" {gain}(1024)/mV ")
    with pytest.raises(DataError, match=re.escape(f"record 'x/100': file 100.hea is malformed: signal line 1 (100.dat "
                                                  f"212 {gain}(1024)/mV ...): {problem}")):
        read_record(x / "100")


def test_a_gain_of_0_is_wfdbs_uncalibrated_200(x):
    expected = read_record(x / "100").signal
    _edit_line(x, "100", 1, " 200.0(1024)/mV ", " 0(1024)/mV ")
    np.testing.assert_array_equal(read_record(x / "100").signal, expected)


def test_annotations_of_a_header_without_a_sampling_frequency_warn_of_wfdbs_default(x):
    lines = (x / "100.hea").read_text().splitlines(keepends=True)
    (x / "100.hea").write_text("".join(["100 2\n", *lines[1:]]))
    with pytest.warns(UserWarning, match=re.escape("record 'x/100': file 100.hea gives no sampling frequency, so "
                                                   "WFDB's default, 250 Hz, is assumed")) as caught:
        assert read_annotations(x / "100").fs == 250
    assert caught[0].filename == __file__  # seen from the caller


@pytest.mark.parametrize("segments, problem", [
    # wfdb reads no gap in a fixed layout: "file ~.hea is missing" (leads), an AttributeError (none)
    ("~ 1000\n100 63800\n", "segment line 1 of m.hea (~ 1000) is a gap ('~'), which wfdb reads in a variable layout "
                            "only, after its layout header (the first segment, of length 0)"),
    ("100 1000\n~ 1000\n100 62800\n", "segment line 2 of m.hea (~ 1000) is a gap ('~')"),
    # a RecursionError, or "no lead 'MLII' (leads: )"
    ("m 1000\n100 63800\n", "segment line 1 of m.hea (m 1000) names the record itself: a segment is another, "
                            "single-segment record"),
    # m and n naming each other: wfdb read them as deep as their lengths went, and returned a signal
    ("100 1000\nn 63800\n", "segment line 2 of m.hea (n 63800) names a multi-segment record, where WFDB's segments "
                            "are single-segment records"),
    ("100 1000\nzz 63800\n", "file zz.hea is missing (a segment of the record, named in m.hea)"),
])
def test_a_multi_segment_record_wfdb_would_misread_is_refused(x, segments, problem):
    (x / "n.hea").write_text("n/2 2 360 64800\n100 1000\nm 63800\n")
    (x / "m.hea").write_text(f"m/{segments.count(chr(10))} 2 360 64800\n{segments}")
    for leads in (None, ["MLII"]):
        with pytest.raises(DataError, match=re.escape(f"record 'x/m': {problem}")):
            read_record(x / "m", leads=leads)
    (x / "m.hea").write_text("m/2 2 360 64800\n100 1000\n100 63800\n")  # segments of a record: read
    assert read_record(x / "m", leads=["V5"]).signal.shape == (1, 64800)
