"""Beat dataset: de Chazal's published class counts on the real MIT-BIH, windows, RR features,
splits and the torch Dataset."""

import dataclasses
import logging
import re
import shutil
import warnings

import numpy as np
import pytest
import torch
import wfdb

from msresnet1d.data import beats as beats_module
from msresnet1d.data import locate
from msresnet1d.data.aami import AAMI_CLASSES, MITBIH_TO_AAMI, aami_labels
from msresnet1d.data.beats import (BeatConfig, BeatDataset, beat_windows, load_beats, load_inter_patient, median_beat,
                                   regular_beats)
from msresnet1d.data.errors import DataError
from msresnet1d.data.rr import RR_FEATURES, RR_RATIOS, rr_columns, rr_features
from msresnet1d.data.splits import DS1, DS2, PACED_RECORDS, holdout_ds1, split_by_record, stratified_kfold

SAMPLE = locate.repo_datasets_dir() / "mitdb-sample"

# de Chazal, O'Dwyer, Reilly, IEEE TBME 51(7), 2004, Table I (inter-patient split)
PUBLISHED_DS1 = {"N": 45866, "S": 944, "V": 3788, "F": 415, "Q": 8}
PUBLISHED_DS2 = {"N": 44259, "S": 1837, "V": 3221, "F": 388, "Q": 7}


@pytest.fixture(scope="module")
def beat_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("beat-cache")


@pytest.fixture(scope="module")
def inter_patient(mitdb_dir, beat_cache):
    """DS1 and DS2 built from the raw records (empty cache)."""
    return load_inter_patient(mitdb_dir, cache_dir=beat_cache)


@pytest.fixture(scope="module")
def sample_ds1():
    return load_beats(DS1, db_dir=SAMPLE, cache=False)


def test_class_counts_equal_de_chazal(inter_patient):
    ds1, ds2 = inter_patient
    assert ds1.class_counts() == PUBLISHED_DS1 and len(ds1) == 51021
    assert ds2.class_counts() == PUBLISHED_DS2 and len(ds2) == 49712


def test_arrays_have_the_documented_shapes_and_types(inter_patient):
    ds1, _ = inter_patient
    n = len(ds1)
    assert ds1.X.shape == (n, 1, 252) and ds1.X.dtype == np.float32  # 0.25 s + 0.45 s at 360 Hz
    assert ds1.rr.shape == (n, len(RR_FEATURES)) and ds1.rr.dtype == np.float32
    assert ds1.y.shape == (n,) and ds1.y.dtype == np.int64
    assert set(ds1.record) == set(DS1)
    assert np.isfinite(ds1.X).all() and np.isfinite(ds1.rr).all()


def test_beats_match_the_annotation_files(inter_patient, mitdb_dir):
    _, ds2 = inter_patient
    ann = wfdb.rdann(str(mitdb_dir / "232"), "atr")
    beats = np.isin(ann.symbol, list(MITBIH_TO_AAMI))
    mine = ds2.from_records(["232"])
    np.testing.assert_array_equal(mine.sample, ann.sample[beats])
    np.testing.assert_array_equal(mine.symbol, np.array(ann.symbol)[beats])
    np.testing.assert_array_equal(mine.y, aami_labels(np.array(ann.symbol)[beats]))


def test_rr_intervals_run_between_beat_annotations_only(inter_patient, mitdb_dir):
    # record 201 holds rhythm changes ('+') and non-conducted P waves ('x'): not beats, so no RR interval ends there
    ds1, _ = inter_patient
    ann = wfdb.rdann(str(mitdb_dir / "201"), "atr")
    symbols = np.array(ann.symbol)
    assert {"+", "x"} <= set(symbols)
    beats = ann.sample[np.isin(symbols, list(MITBIH_TO_AAMI))]
    mine = ds1.from_records(["201"])
    np.testing.assert_array_equal(mine.sample, beats)
    np.testing.assert_allclose(mine.rr[1:, RR_FEATURES.index("rr_prev")], np.diff(beats) / 360, rtol=1e-6)


def test_second_load_comes_from_the_cache_unchanged(inter_patient, mitdb_dir, beat_cache):
    ds1, _ = inter_patient
    again = load_beats(DS1, db_dir=mitdb_dir, cache_dir=beat_cache, workers=0)  # no worker needed
    for field in ("X", "rr", "y", "record", "sample", "symbol"):
        np.testing.assert_array_equal(getattr(again, field), getattr(ds1, field))
    # cached arrays are memory-mapped: they still feed worker processes
    subset = torch.utils.data.Subset(BeatDataset(again), range(100, 132))
    ((signals, labels),) = torch.utils.data.DataLoader(subset, batch_size=32, num_workers=2)
    np.testing.assert_array_equal(labels.numpy(), ds1.y[100:132])
    np.testing.assert_array_equal(signals.numpy(), ds1.X[100:132])


def test_a_copy_whose_header_or_annotations_differ_from_the_published_files_is_warned_about(mitdb_dir, tmp_path):
    import shutil
    import warnings

    for record in ("101", "103"):
        for extension in (".hea", ".dat", ".atr"):
            shutil.copy(mitdb_dir / f"{record}{extension}", tmp_path)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*differ from MIT-BIH")  # an exact copy: nothing to say
        load_beats(["101", "103"], db_dir=tmp_path, cache=False, workers=1)
    header = tmp_path / "101.hea"
    header.write_text(header.read_text().replace("101 2 360 650000", "101 2 250 650000", 1))  # another rate
    with pytest.warns(UserWarning, match=r"1 file\(s\) differ from MIT-BIH 1\.0\.0's published ones \(101\.hea; SHA-256 "
                                         r"in .*mitdb\.sha256\): .*do not compare with the literature's"):
        load_beats(["101", "103"], db_dir=tmp_path, cache=False, workers=1)
    # the annotations compared are those read: an .atr beside the ones another annotator names is not
    shutil.copy(mitdb_dir / "103.hea", tmp_path)
    shutil.copy(mitdb_dir / "103.atr", tmp_path / "103.ann")
    (tmp_path / "103.atr").write_bytes((tmp_path / "103.atr").read_bytes()[:-2])  # changed, not read
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*differ from MIT-BIH")
        load_beats(["103"], db_dir=tmp_path, config=BeatConfig(annotator="ann"), cache=False, workers=1)
    with pytest.warns(UserWarning, match=r"1 file\(s\) differ from MIT-BIH 1\.0\.0's published ones \(103\.atr;"):
        load_beats(["103"], db_dir=tmp_path, cache=False, workers=1)


def test_aami_mapping_is_de_chazals():
    groups = {c: sorted(s for s, cls in MITBIH_TO_AAMI.items() if cls == c) for c in AAMI_CLASSES}
    assert groups == {"N": sorted("NLRej"), "S": sorted("AaJS"), "V": ["E", "V"], "F": ["F"], "Q": sorted("/fQ")}


@pytest.mark.parametrize("fs", [360.0, 250.0, 180.0, 128.0])
def test_windows_are_centred_on_the_r_peak_at_any_rate(sample_ds1, fs):
    beats = sample_ds1 if fs == 360.0 else load_beats(DS1, db_dir=SAMPLE, config=BeatConfig(fs=fs), cache=False)
    config = beats.config
    assert beats.X.shape[1:] == (1, round(0.25 * fs) + round(0.45 * fs))
    normal = beats.X[beats.y == 0, 0]
    peak = np.abs(normal).mean(axis=0).argmax()
    assert abs(peak - (-config.offsets[0])) <= max(1, round(0.02 * fs))  # within 20 ms of the annotation
    assert beats.class_counts() == sample_ds1.class_counts()


def test_template_channels_are_each_beat_minus_its_records_median_beat():
    records = ["106", "119"]
    config = BeatConfig(fs=180.0, template=True)
    plain = load_beats(records, db_dir=SAMPLE, config=BeatConfig(fs=180.0), cache=False)
    both = load_beats(records, db_dir=SAMPLE, config=config, cache=False)
    assert config.channels == 2 and both.X.shape == (len(plain), 2, config.length)
    np.testing.assert_array_equal(both.X[:, :1], plain.X)
    for record in records:
        mine = plain.X[plain.record == record]
        by_hand = mine - np.median(mine, axis=0, keepdims=True)
        np.testing.assert_allclose(both.X[both.record == record, 1:], by_hand, atol=1e-6)
    # the median beat of a record's windows is (C, L) and the median sample by sample
    windows = np.arange(12, dtype=np.float32).reshape(3, 2, 2) ** 2
    np.testing.assert_array_equal(median_beat(windows), windows[1])
    with pytest.raises(ValueError, match="at least one window"):
        median_beat(windows[:0])


def test_a_regular_template_skips_premature_beats_even_when_they_are_the_majority():
    # 12 sinus beats after long intervals (1.5 s), 18 premature ones after short ones (0.6 s):
    # the mean interval is 0.96 s, so only the sinus beats are regular (>= 0.9 x 0.96 s)
    rr_prev = np.array([1.5] * 12 + [0.6] * 18)
    assert regular_beats(rr_prev).tolist() == [True] * 12 + [False] * 18
    windows = np.concatenate([np.full((12, 1, 4), 1.0), np.full((18, 1, 4), 5.0)]).astype(np.float32)
    assert median_beat(windows).ravel().tolist() == [5.0] * 4  # all beats: the premature beat
    assert median_beat(windows, rr_prev).ravel().tolist() == [1.0] * 4  # regular ones: the sinus beat
    assert regular_beats(rr_prev[10:]).all()  # 2 regular beats are too few: all are used
    with pytest.raises(ValueError, match="rr_prev has 3 intervals for 30 windows"):
        median_beat(windows, rr_prev[:3])
    with pytest.raises(ValueError, match="template_from must be 'all' or 'regular', got 'normal'"):
        BeatConfig(template=True, template_from="normal")
    # record_template (predict's and classify_beats'): an unknown choice was taken as "all", and "regular"
    # without the RR features raised TypeError: 'NoneType' object is not subscriptable
    from msresnet1d.data.beats import record_template

    with pytest.raises(ValueError, match="template_from must be 'all' or 'regular', got 'normal'"):
        record_template(windows, None, "normal")
    with pytest.raises(ValueError, match=r"template_from='regular' needs the beats' RR features \(rr\)"):
        record_template(windows, None, "regular")
    rr = np.zeros((30, len(RR_FEATURES)), np.float32)
    rr[:, RR_FEATURES.index("rr_prev")] = rr_prev
    assert record_template(windows, rr, "regular").ravel().tolist() == [1.0] * 4
    assert record_template(windows, None, "all").ravel().tolist() == [5.0] * 4
    # on a real record: the template channel is each beat minus the median of its regular beats
    plain = load_beats(["119"], db_dir=SAMPLE, config=BeatConfig(fs=180.0), cache=False)
    regular = load_beats(["119"], db_dir=SAMPLE, config=BeatConfig(fs=180.0, template=True, template_from="regular"),
                         cache=False)
    mask = regular_beats(plain.rr[:, RR_FEATURES.index("rr_prev")])
    assert 0 < (~mask).sum() < len(mask)  # record 119 has premature (ventricular) beats
    by_hand = plain.X - np.median(plain.X[mask], axis=0, keepdims=True)
    np.testing.assert_allclose(regular.X[:, 1:], by_hand, atol=1e-6)


def test_windows_are_band_passed_and_z_scored_whatever_the_records_offset_drift_and_gain(tmp_path):
    # record 100 written again as 3 x its signal + 5 mV + a 0.1 Hz wander of 1 mV: the band-pass removes the offset
    # and the wander, the per-record z-score the gain, so the windows are those of the record as published (a build
    # without either step passed every other test)
    from msresnet1d.data.beats import record_beats

    record = wfdb.rdrecord(str(SAMPLE / "100"))
    seconds = np.arange(record.p_signal.shape[0]) / record.fs
    moved = 3 * record.p_signal + 5 + np.sin(2 * np.pi * 0.1 * seconds)[:, None]
    wfdb.wrsamp("100", fs=record.fs, units=record.units, sig_name=record.sig_name, p_signal=moved, fmt=["16", "16"],
                write_dir=str(tmp_path))
    (tmp_path / "100.atr").write_bytes((SAMPLE / "100.atr").read_bytes())
    published, moved = record_beats(SAMPLE / "100")["X"], record_beats(tmp_path / "100")["X"]
    assert np.abs(published).max() > 5  # R peaks of a z-scored lead
    np.testing.assert_allclose(moved, published, atol=0.2)  # within 0.2 standard deviations (the filter's edges)


def test_a_beat_outside_the_aami_table_still_bounds_its_neighbours_rr_intervals(tmp_path):
    # record 100 with its eleventh N beat relabelled "?" (unclassifiable, no AAMI class): it is not a training beat,
    # but the beat before it is followed by it, 0.79 s later, not by the next AAMI beat 1.56 s later
    from msresnet1d.data.beats import record_beats

    annotations = wfdb.rdann(str(SAMPLE / "100"), "atr")
    symbols = annotations.symbol
    unknown = [i for i, symbol in enumerate(symbols) if symbol == "N"][10]
    symbols[unknown] = "?"
    wfdb.wrann("100", "atr", annotations.sample, np.array(symbols), fs=annotations.fs, write_dir=str(tmp_path))
    for ext in ("hea", "dat"):
        (tmp_path / f"100.{ext}").write_bytes((SAMPLE / f"100.{ext}").read_bytes())
    beats = record_beats(tmp_path / "100")
    before, at, after = annotations.sample[unknown - 1: unknown + 2]
    assert at not in beats["sample"] and len(beats["sample"]) == len(record_beats(SAMPLE / "100")["sample"]) - 1
    row = list(beats["sample"]).index(before)
    assert beats["rr"][row, RR_FEATURES.index("rr_next")] == pytest.approx((at - before) / 360)
    assert beats["rr"][row + 1, RR_FEATURES.index("rr_prev")] == pytest.approx((after - at) / 360)


def test_beats_outside_the_aami_table_are_counted_per_symbol_in_a_warning_given_again_from_the_cache(tmp_path):
    # record 100 with 3 N beats relabelled r and 2 relabelled B: they used to be left out of the windows without a
    # word, so training and evaluation scored fewer beats than predict labels
    annotations = wfdb.rdann(str(SAMPLE / "100"), "atr")
    symbols = np.array(annotations.symbol)
    normal = np.flatnonzero(symbols == "N")
    symbols[normal[10:13]], symbols[normal[20:22]] = "r", "B"
    wfdb.wrann("100", "atr", annotations.sample, symbols, fs=annotations.fs, write_dir=str(tmp_path))
    for ext in ("hea", "dat"):
        (tmp_path / f"100.{ext}").write_bytes((SAMPLE / f"100.{ext}").read_bytes())
    message = ("record '{}/100': 3 beats labelled r, 2 labelled B are outside the AAMI classes (de Chazal's mapping): "
               "no window, not trained on or scored").format(tmp_path.name)
    for _ in range(2):  # built, then loaded from the cache
        with pytest.warns(UserWarning, match=re.escape(message)):
            beats = load_beats(["100"], db_dir=tmp_path, cache_dir=tmp_path / "cache", workers=1)
        assert len(beats) == len(load_beats(["100"], db_dir=SAMPLE, cache=False)) - 5
    assert not set(beats.symbol) & {"r", "B"}


def test_beat_windows_cut_from_missing_samples_are_counted_in_a_warning(tmp_path):
    # a stretch of MLII lost (WFDB's invalid value; record 100 written again): the windows reaching into it were cut
    # from the interpolation without a word, while predict warned
    record, annotations = wfdb.rdrecord(str(SAMPLE / "100")), wfdb.rdann(str(SAMPLE / "100"), "atr")
    beats = np.array(annotations.sample)[np.isin(annotations.symbol, list(MITBIH_TO_AAMI))]
    begin, end = beats[120] + 50, beats[140] - 50  # through the windows (-0.25..0.45 s: -90..162 samples) of two beats
    signal = record.p_signal
    signal[begin:end, 0] = np.nan
    wfdb.wrsamp("gap", fs=360, units=record.units, sig_name=record.sig_name, p_signal=signal, fmt=["16", "16"],
                write_dir=str(tmp_path))
    (tmp_path / "gap.atr").write_bytes((SAMPLE / "100.atr").read_bytes())
    message = (f"record '{tmp_path.name}/gap': {end - begin} samples ({(end - begin) / 360:.1f} s, "
               f"{100 * (end - begin) / len(signal):.1f}% of the record) are invalid (WFDB's missing value) in 1 "
               f"stretch(es) ({begin / 360:.1f}-{end / 360:.1f} s); they are interpolated, and the 21 beat windows "
               "that reach into them are cut from that, not from the recording (trained on and scored so)")
    with pytest.warns(UserWarning, match=re.escape(message)):
        load_beats(["gap"], db_dir=tmp_path, cache=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # V5 is whole: no warning for a model that reads it alone
        load_beats(["gap"], db_dir=tmp_path, config=BeatConfig(leads=("V5",)), cache=False)


def test_a_record_of_fewer_than_two_beats_gives_its_beats_without_rr_features(short_records):
    # such a record aborted the whole load ("RR features need at least 2 beats"), even for a model reading none
    from msresnet1d.data.beats import with_rr_features

    db = short_records
    for ext in ("hea", "dat", "atr"):
        (db / f"many.{ext}").write_bytes((SAMPLE / f"100.{ext}").read_bytes())
    (db / "many.hea").write_text((SAMPLE / "100.hea").read_text().replace("100", "many"))
    folder = db.name
    with pytest.warns(UserWarning) as caught:
        beats = load_beats(["many", "one", "none"], db_dir=db, config=BeatConfig(template=True), cache=False)
    messages = [str(w.message) for w in caught]
    assert (f"record '{folder}/one': 1 beat(s) in one.atr, fewer than the 2 RR intervals need: the RR features of its "
            "beat are NaN") in messages
    assert f"record '{folder}/none': 0 beat(s) in none.atr, fewer than the 2 RR intervals need: no beat from it" \
        in messages
    one = beats.record == "one"
    assert one.sum() == 1 and beats.sample[one] == [1000] and np.isnan(beats.rr[one]).all()
    assert np.isfinite(beats.rr[~one]).all() and np.isfinite(beats.X).all() and beats.X.shape[1] == 2  # MLII, template
    with pytest.warns(UserWarning, match=re.escape("training records: one left out (1 beat(s)): fewer than 2 beats, "
                                                   "too few for the RR features the model reads ([data] rr)")):
        kept, left_out = with_rr_features(beats, "training")
    assert left_out == ["one"] and kept.record.tolist() == beats.record[~one].tolist()
    with pytest.raises(DataError, match=re.escape("test records: every one with beats (one) has fewer than 2 beats")):
        with_rr_features(beats.from_records(["one"]), "test")


def test_beat_positions_move_to_the_nearest_sample_of_the_new_rate():
    from msresnet1d.data.beats import positions_at

    # 360 -> 250 Hz: 0.69, 1.39, 2.08 and 13.2 samples, rounded (not floored: a beat a sample early), clipped
    np.testing.assert_array_equal(positions_at(np.array([1, 2, 3, 19]), 360, 250, 10), [1, 1, 2, 9])
    with pytest.raises(ValueError, match=re.escape("positions_at: rates must be finite and positive, got fs=0 Hz, "
                                                   "target_fs=250 Hz")):
        positions_at(np.array([1, 2]), 0, 250, 10)


def test_beat_windows_pad_with_the_edge_value():
    signal = np.arange(10, dtype=np.float32)[None]
    windows = beat_windows(signal, np.array([0, 5, 9]), -3, 4)
    np.testing.assert_array_equal(windows[:, 0], [[0, 0, 0, 0, 1, 2, 3], [2, 3, 4, 5, 6, 7, 8], [6, 7, 8, 9, 9, 9, 9]])
    assert beat_windows(signal, [], -3, 4).shape == (0, 1, 7)


@pytest.mark.parametrize("signal, centres, start, message", [
    # a negative centre would index from the end: the window at the signal's end
    (np.arange(20.0)[None], [-1, 0, 19], -2, "centres must lie in [0, T) = [0, 20) samples, got -1"),
    (np.arange(20.0)[None], [0, 20], -2, "centres must lie in [0, T) = [0, 20) samples, got 20"),
    (np.arange(20.0)[None], [1.0, 5.5], -2, "centres must be a 1-D array of whole sample positions (integers), got "
                                            "float64 of shape (2,)"),
    (np.arange(20.0)[None], [[1, 5]], -2, "centres must be a 1-D array of whole sample positions (integers), got "
                                          "int64 of shape (1, 2)"),
    (np.arange(20.0)[None], [5], 2, "start=2 must be below stop=2 (samples relative to the centre)"),
    (np.arange(20.0), [5], -2, "signal must be (C, T) = (channels, samples), got shape (20,); for one lead pass "
                               "signal[None]"),
])
def test_beat_windows_refuse_centres_off_the_signal_or_not_whole_and_an_empty_window(signal, centres, start, message):
    with pytest.raises(ValueError, match=re.escape(f"beat_windows: {message}")):
        beat_windows(signal, np.array(centres), start, 2)


def test_rr_features_by_hand():
    fs = 100.0
    samples = np.array([0, 100, 180, 300, 400])  # intervals 1.0, 0.8, 1.2, 1.0 s
    rr = dict(zip(RR_FEATURES, rr_features(samples, fs).T, strict=True))
    np.testing.assert_allclose(rr["rr_prev"], [1.0, 1.0, 0.8, 1.2, 1.0])  # first beat: its next interval
    np.testing.assert_allclose(rr["rr_next"], [1.0, 0.8, 1.2, 1.0, 1.0])  # last beat: its previous one
    np.testing.assert_allclose(rr["rr_local"], [1.0, 1.0, 2.8 / 3, 4.0 / 4, 5.0 / 5])
    np.testing.assert_allclose(rr["rr_record"], 1.0)
    np.testing.assert_allclose(rr["next_over_prev"], [1.0, 0.8, 1.5, 1.0 / 1.2, 1.0], rtol=1e-6)
    # changes |rr_prev - previous rr_prev| 0, 0, 0.2, 0.4, 0.2: medians so far 0, 0, 0, 0.1, 0.2, over rr_local
    np.testing.assert_allclose(rr["rr_irregularity"], [0, 0, 0, 0.1, 0.2], atol=1e-6)
    np.testing.assert_allclose(rr["rr_median"], 1.0)  # of 0.8, 1.0, 1.0, 1.2
    np.testing.assert_allclose(rr["prev_over_median"], rr["rr_prev"])
    np.testing.assert_allclose(rr["next_over_median"], rr["rr_next"])
    # the median is the dominant rhythm: a run of premature beats moves the mean, not the median
    run = np.cumsum([0] + [100] * 6 + [60] * 4)  # six 1.0 s intervals, then four premature 0.6 s ones
    rr = dict(zip(RR_FEATURES, rr_features(run, fs).T, strict=True))
    np.testing.assert_allclose(rr["rr_median"], 1.0)
    np.testing.assert_allclose(rr["rr_record"], 8.4 / 10)
    np.testing.assert_allclose(rr["prev_over_median"][-4:], 0.6)
    # rr_local is the mean of the last 10 rr_prev: five 2.0 s intervals, then ten 1.0 s ones (16 beats)
    slow_then_fast = np.cumsum([0] + [200] * 5 + [100] * 10)
    local = rr_features(slow_then_fast, fs)[:, RR_FEATURES.index("rr_local")]
    np.testing.assert_allclose(local[-3:], [1.2, 1.1, 1.0], rtol=1e-6)  # 2 + 2 + 8 x 1, 2 + 9 x 1, 10 x 1 over 10
    # uneven intervals 1.0, 1.5, 0.5, 2.0 s: the first and last differ, and the record's mean (1.25) is not the
    # local one, so an edge beat taking the other end's interval, a median over the padded rr_prev (1.0), or an
    # irregularity over the record's mean would each change a figure below
    rr = dict(zip(RR_FEATURES, rr_features(np.array([0, 100, 250, 300, 500]), fs).T, strict=True))
    np.testing.assert_allclose(rr["rr_prev"], [1.0, 1.0, 1.5, 0.5, 2.0])
    np.testing.assert_allclose(rr["rr_next"], [1.0, 1.5, 0.5, 2.0, 2.0])
    np.testing.assert_allclose(rr["rr_local"], [1.0, 1.0, 3.5 / 3, 4.0 / 4, 6.0 / 5], rtol=1e-6)
    np.testing.assert_allclose(rr["rr_record"], 1.25)
    np.testing.assert_allclose(rr["rr_median"], 1.25)  # of the intervals 0.5, 1.0, 1.5, 2.0
    np.testing.assert_allclose(rr["prev_over_record"], np.array([1.0, 1.0, 1.5, 0.5, 2.0]) / 1.25, rtol=1e-6)
    # changes 0, 0, 0.5, 1.0, 1.5: medians so far 0, 0, 0, 0.25, 0.5, over rr_local
    np.testing.assert_allclose(rr["rr_irregularity"], [0, 0, 0, 0.25, 0.5 / 1.2], atol=1e-6)
    steady = rr_features(np.arange(0, 3000, 100), fs)[:, RR_FEATURES.index("rr_irregularity")]
    np.testing.assert_array_equal(steady, 0)
    with pytest.raises(ValueError, match="at least 2 beats"):
        rr_features(samples[:1], fs)


@pytest.mark.parametrize("samples, fs, message", [
    ([0, 100, 200], 0.0, "the rate must be finite and positive, got fs=0.0 Hz"),  # was inf, with a warning
    ([0, 100.5, 200], 100.0, "beat_samples must be a 1-D array of whole sample positions (integers), got float64 "
                             "of shape (3,)"),  # as mean_rr refuses them
    ([[0, 100, 200]], 100.0, "beat_samples must be a 1-D array of whole sample positions (integers), got int64 "
                             "of shape (1, 3)"),  # was numpy's AxisError
    ([0, 1e19, 2e19], 100.0, "beat_samples holds a position beyond int64's range, 2e+19"),  # was -9223372036854775808
])
def test_rr_features_refuse_a_rate_that_is_not_positive_and_positions_that_are_not_whole(samples, fs, message):
    with pytest.raises(ValueError, match=re.escape(f"rr_features: {message}")):
        rr_features(np.array(samples), fs)
    # whole numbers stored as floats (a table read with pandas) are positions
    np.testing.assert_array_equal(rr_features(np.array([0.0, 100.0, 200.0]), 100.0),
                                  rr_features(np.array([0, 100, 200]), 100.0))


def test_unsigned_beat_positions_are_checked_as_signed_ones():
    # np.diff wraps around on unsigned integers: [400, 100] passed as increasing, and mean_rr gave -0.83 s
    from msresnet1d.inference import mean_rr

    with pytest.raises(ValueError, match="mean_rr: beats must increase; position 100 repeats or goes back"):
        mean_rr(np.array([400, 100], np.uint32), 360.0)
    assert mean_rr(np.array([100, 460], np.uint64), 360.0) == 1.0
    with pytest.raises(ValueError, match="rr_features: beat_samples holds a position beyond int64's range"):
        rr_features(np.array([1, 2**64 - 1], np.uint64), 360.0)


def test_rr_column_selection():
    assert rr_columns(True) == list(range(8)) and rr_columns(False) == []  # rr_irregularity by name only
    assert rr_columns(["rr_irregularity"]) == [8]
    assert rr_columns(["prev_over_median", "next_over_median"]) == [10, 11]
    assert rr_columns(RR_RATIOS) == [4, 5, 6, 7] and rr_columns(["next_over_prev", "rr_prev"]) == [7, 0]
    with pytest.raises(ValueError, match=r"unknown: 'rr_max'"):
        rr_columns(["rr_prev", "rr_max"])
    with pytest.raises(ValueError, match=r"repeated"):
        rr_columns(["rr_prev", "rr_prev"])
    with pytest.raises(ValueError, match=re.escape("a list of names, got the string 'rr_prev' (for one feature write")):
        rr_columns("rr_prev")


def test_premature_beats_have_short_preceding_rr(inter_patient):
    ds1, _ = inter_patient
    ratio = ds1.rr[:, RR_FEATURES.index("prev_over_local")]
    assert np.median(ratio[ds1.y == 1]) < 0.9 < 0.97 < np.median(ratio[ds1.y == 0])  # S beats come early


def test_atrial_fibrillation_is_irregular(inter_patient):
    """Record 201 and 203 hold most of DS1's atrial fibrillation; 101 and 115 are sinus rhythm."""
    ds1, _ = inter_patient
    irregularity = ds1.rr[:, RR_FEATURES.index("rr_irregularity")]
    median = {r: float(np.median(irregularity[ds1.record == r])) for r in ("101", "115", "201", "203")}
    assert max(median["101"], median["115"]) * 3 < min(median["201"], median["203"]), median


def test_two_leads_with_alternatives_and_templates():
    config = BeatConfig(leads=("MLII", "V1|V4|V5"), fs=180.0, template=True)
    assert config.channels == 4
    two = load_beats(["114", "124"], db_dir=SAMPLE, config=config, cache=False)
    one = load_beats(["114", "124"], db_dir=SAMPLE, config=BeatConfig(fs=180.0, template=True), cache=False)
    assert two.X.shape == (len(one.X), 4, config.length)
    np.testing.assert_array_equal(two.X[:, [0, 2]], one.X)  # MLII and its template unchanged by the second lead
    with pytest.raises(ValueError, match=re.escape("BeatConfig: leads=['MLII', 'MLII'] names a lead twice")):
        BeatConfig(leads=("MLII", "MLII"))


def test_beat_config_rejects_windows_under_one_sample_and_canonicalises_band():
    with pytest.raises(ValueError, match=re.escape("window=(-0.001, 0.001) s is shorter than one sample at fs=180 Hz")):
        BeatConfig(window=(-0.001, 0.001), fs=180)
    assert BeatConfig(window=(-0.001, 0.002), fs=360).length == 1
    config = BeatConfig(band=(0.5, 40))
    assert config == BeatConfig(band=[0.5, 40.0]) and config.band == (0.5, 40.0) and type(config.band[1]) is float
    assert dataclasses.asdict(config) == dataclasses.asdict(BeatConfig(band=(0.5, 40.0)))  # the cache key's fields
    assert BeatConfig(band=(None, 40)).band == (None, 40.0) and BeatConfig(band=None).band is None
    assert BeatConfig(fs=180, band=(0.5, 100)).band == (0.5, 100.0)  # above 90 Hz: filtered at the record's rate


@pytest.mark.parametrize("options, error, message", [
    (dict(normalization="minmax"), ValueError, "normalization must be 'zscore', 'robust' or None, got 'minmax'"),
    (dict(band=(40, 0.5)), ValueError, "band=(40.0, 0.5): bandpass: low=40.0 Hz must be below high=0.5 Hz"),
    (dict(band=(0, 40)), ValueError, "band=(0.0, 40.0): bandpass: low=0.0 Hz must be finite and positive"),
    (dict(fs=float("nan")), ValueError, "the rate must be finite and positive, got fs=nan Hz"),
    # a bare string was its letters: 'MLII' named a lead twice, 'V5' the leads V and 5
    (dict(leads="MLII"), TypeError, "leads is a tuple of lead names, e.g. ('MLII',), got the string 'MLII'"),
    (dict(leads="V5"), TypeError, "leads is a tuple of lead names, e.g. ('V5',), got the string 'V5'"),
    # Python's own words before: "'int' object is not iterable", "could not convert string to float"
    (dict(band=3), ValueError, "band must be (low, high) in Hz (either may be None) or None, got 3"),
    (dict(band=(0.5, "40")), ValueError, "band must be (low, high) in Hz (either may be None) or None, "
                                         "got (0.5, '40')"),
    (dict(window=0.5), ValueError, "window must be (start, stop) in seconds from the beat, got 0.5"),
    (dict(fs="360"), TypeError, "fs must be a number (Hz), got str '360'"),
])
def test_beat_config_refuses_what_would_only_fail_once_a_record_is_read(options, error, message):
    with pytest.raises(error, match=re.escape(f"BeatConfig: {message}")):
        BeatConfig(**options)


def _requested_records(monkeypatch, db_dir) -> list[str]:
    """The records ``load_beats(db_dir=db_dir)`` asks for, without reading them."""
    def build(db_dir, names, config, workers):
        raise LookupError(names)

    monkeypatch.setattr(beats_module, "_build", build)
    with pytest.raises(LookupError) as caught:
        load_beats(db_dir=db_dir, cache=False)
    return caught.value.args[0]


def test_default_records_leave_out_mitdbs_paced_records_only(monkeypatch, mitdb_dir, tmp_path, caplog):
    # MIT-BIH's own 102 (its published header) is left out, and logged; in another database, a record that happens
    # to be called 217 is an ordinary record (all four names used to be skipped in any folder, without a word)
    for name in ("100", "102"):
        shutil.copy(mitdb_dir / f"{name}.hea", tmp_path)
    (tmp_path / "217.hea").write_text((mitdb_dir / "100.hea").read_text().replace("100", "217"))
    with caplog.at_level(logging.INFO, logger="msresnet1d.data.beats"):
        assert _requested_records(monkeypatch, tmp_path) == ["100", "217"]
    assert f"{tmp_path}: MIT-BIH's paced records 102 left out (name records to read them)" in caplog.messages
    # a copy of the whole of MIT-BIH, its headers rewritten (another rate, say), is MIT-BIH too
    names = sorted(DS1 + DS2 + PACED_RECORDS)
    (tmp_path / "RECORDS").write_text("\n".join(names) + "\n")
    assert _requested_records(monkeypatch, tmp_path) == sorted(DS1 + DS2)


def test_default_records_of_mitdb_are_ds1_and_ds2(monkeypatch, mitdb_dir):
    assert _requested_records(monkeypatch, mitdb_dir) == sorted(DS1 + DS2)


def test_inter_patient_split_and_by_record_helpers():
    assert len(DS1) == len(DS2) == 22 and not set(DS1) & set(DS2)
    assert not set(PACED_RECORDS) & (set(DS1) | set(DS2))
    assert len(set(DS1) | set(DS2) | set(PACED_RECORDS)) == 48
    train, val = holdout_ds1(4, seed=3)
    assert len(val) == 4 and sorted(train + val) == sorted(DS1)
    assert holdout_ds1(4, seed=3) == (train, val) and holdout_ds1(4, seed=4) != (train, val)
    train, test = split_by_record([f"r{i}" for i in range(10)], 0.3, seed=0)
    assert len(test) == 3 and not set(train) & set(test)
    assert len(split_by_record([f"r{i}" for i in range(10)], 0.29)[1]) == 3  # 2.9 records: rounded, not truncated
    with pytest.raises(ValueError, match="n_test=10 leaves no train"):
        split_by_record(DS1[:10], 10)


def test_validation_holdout_by_record(sample_ds1):
    train_records, val_records = holdout_ds1(4)
    val = sample_ds1.from_records(val_records)
    train = sample_ds1.from_records(train_records)
    assert len(val) + len(train) == len(sample_ds1)
    assert set(val.record) == set(val_records) and not set(train.record) & set(val.record)


def test_stratified_kfold_by_record():
    labels = np.array([0] * 60 + [1] * 30 + [2] * 10)
    folds = stratified_kfold(labels, n_splits=5, seed=0)
    tests = np.concatenate([test for _, test in folds])
    assert sorted(tests) == list(range(100))
    for train, test in folds:
        assert not set(train) & set(test)
        assert np.bincount(labels[test]).tolist() == [12, 6, 2]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_dataset_works_with_dataloader(sample_ds1, num_workers):
    beats = sample_ds1.select(np.arange(64))
    loader = torch.utils.data.DataLoader(BeatDataset(beats, with_rr=True), batch_size=16, num_workers=num_workers)
    signals, rrs, labels = zip(*loader, strict=True)
    assert signals[0].shape == (16, 1, 252) and signals[0].dtype == torch.float32
    assert rrs[0].shape == (16, len(RR_FEATURES)) and labels[0].dtype == torch.int64
    np.testing.assert_array_equal(torch.cat(signals).numpy(), beats.X)
    np.testing.assert_array_equal(torch.cat(labels).numpy(), beats.y)
    signal, label = BeatDataset(beats)[3]
    assert signal.shape == (1, 252) and label.item() == beats.y[3]
