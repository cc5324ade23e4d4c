"""Rhythm dataset: all CinC 2017 records with REFERENCE.csv's labels, random crops, sliding-window
evaluation, aggregation."""

import csv
import dataclasses
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from msresnet1d.data import locate
from msresnet1d.data.errors import DataError
from msresnet1d.data.rhythm import (
    CINC_CLASSES,
    RhythmArrays,
    RhythmConfig,
    RhythmDataset,
    aggregate_windows,
    fit_length,
    load_rhythm,
    predict_records,
    read_reference,
    sliding_windows,
)

SAMPLE = locate.repo_datasets_dir() / "mitdb-sample"


@pytest.fixture
def synthetic() -> RhythmArrays:
    """Three single-lead records of 5, 12 and 3 s at 100 Hz; record i holds the value i + 1."""
    lengths = [500, 1200, 300]
    data = np.concatenate([np.full(n, i + 1, dtype=np.float32) for i, n in enumerate(lengths)])[None]
    offsets = np.concatenate(([0], np.cumsum(lengths)))
    return RhythmArrays(data, offsets, np.array([0, 1, 2]), np.array(["a", "b", "c"]), RhythmConfig(fs=100.0))


def test_all_cinc2017_records_load_with_reference_labels(cinc2017_dir):
    arrays = load_rhythm(cinc2017_dir)  # cached in MSRESNET1D_CACHE: a rerun with it set skips the cold build
    with open(cinc2017_dir / "REFERENCE.csv", newline="") as f:
        reference = dict(csv.reader(f))
    assert len(arrays) == len(reference) == 4000
    assert list(arrays.record) == list(reference)
    assert [CINC_CLASSES[i] for i in arrays.y] == list(reference.values())
    assert arrays.class_counts() == dict(Counter(reference.values())) == {"N": 2402, "A": 389, "O": 1079, "~": 130}
    seconds = arrays.lengths / arrays.config.fs
    assert seconds.min() >= 9.0 and seconds.max() <= 61.0
    assert arrays.data.shape[0] == 1 and arrays.data.dtype == np.float32
    first = arrays.signal(0)
    assert abs(first.mean()) < 1e-3 and abs(first.std() - 1) < 1e-3  # per-record z-score


def test_reference_errors_name_the_line(tmp_path):
    (tmp_path / "REFERENCE.csv").write_text("A00001,N\nA00002,X\n")
    with pytest.raises(DataError, match=r"REFERENCE.csv line 2 is 'A00002,X', expected '<record>,<label>'"):
        read_reference(tmp_path)
    (tmp_path / "REFERENCE.csv").write_text("A00001,N\nA00001,A\n")
    with pytest.raises(DataError, match="line 2 lists record A00001 again"):
        read_reference(tmp_path)
    for outside in ("../other/A00001", "/data/A00001", "sub/../../A00001"):  # a record beside the folder, not in it
        (tmp_path / "REFERENCE.csv").write_text(f"A00002,N\n{outside},A\n")
        with pytest.raises(DataError, match=re.escape(f"line 2 names record {outside!r}: each must be a relative path "
                                                      "inside the database folder (not absolute, not through ..)")):
            read_reference(tmp_path)
    for again in ("./A00001", "A00001/", "sub/./A00001", "sub//A00001"):  # A00001 again (a leak across folds), spelled
        (tmp_path / "REFERENCE.csv").write_text(f"A00001,N\n{again},A\n")  # otherwise: not loaded as another record
        with pytest.raises(DataError, match=re.escape(f"line 2 names record {again!r}: each must be a relative path "
                                                      "inside the database folder (not absolute, not through ..), "
                                                      "written one way ('100', not './100', '100/' or ' 100')")):
            read_reference(tmp_path)
    (tmp_path / "REFERENCE.csv").write_text("sub/A00001,N\n")  # a sub-folder of the database is its own
    assert read_reference(tmp_path) == {"sub/A00001": "N"}
    (tmp_path / "REFERENCE.csv").unlink()
    with pytest.raises(DataError, match=re.escape("file REFERENCE.csv is missing")):
        read_reference(tmp_path)


def test_reference_with_a_byte_order_mark_keeps_it_out_of_the_first_name(tmp_path):
    (tmp_path / "REFERENCE.csv").write_bytes("A00001,N\nA00002,A\n".encode("utf-8-sig"))
    assert read_reference(tmp_path) == {"A00001": "N", "A00002": "A"}


def test_reference_that_is_not_utf8_is_refused_naming_the_file(tmp_path):
    for text, encoding, found in [("A00001,N\n", "utf-16", "byte 0xff at position 0"),
                                  ("A00001,N\nÄ00002,A\n", "latin-1", "byte 0xc4 at position 9")]:
        (tmp_path / "REFERENCE.csv").write_bytes(text.encode(encoding))
        message = f"database {tmp_path}: file REFERENCE.csv is not UTF-8 text ({found}): it must be UTF-8"
        with pytest.raises(DataError, match=re.escape(message)):
            read_reference(tmp_path)


def test_multi_lead_records_need_a_lead_name_and_are_resampled(tmp_path):
    db = tmp_path / "db"
    db.mkdir()
    for path in SAMPLE.glob("100.*"):
        shutil.copy(path, db)
    (db / "REFERENCE.csv").write_text("100,N\n")
    with pytest.raises(DataError, match=r"record 'db/100' has 2 leads \(MLII, V5\); name one in RhythmConfig.lead"):
        load_rhythm(db, cache=False)
    arrays = load_rhythm(db, RhythmConfig(lead="MLII"), cache=False)
    assert arrays.data.shape == (1, 64800 * 300 // 360)  # 360 -> 300 Hz


def test_records_without_a_reference_row_are_left_out_with_a_warning(tmp_path):
    db = tmp_path / "db"
    db.mkdir()
    for name in ("100", "101"):
        for path in SAMPLE.glob(f"{name}.*"):
            shutil.copy(path, db)
    (db / "REFERENCE.csv").write_text("100,N\n")
    with pytest.warns(UserWarning, match=r"db: 1 record\(s\) without a row in REFERENCE.csv left out \(101\)"):
        arrays = load_rhythm(db, RhythmConfig(lead="MLII"), cache=False)
    assert arrays.record.tolist() == ["100"]


def test_a_record_with_missing_samples_is_read_with_a_warning_saying_how_much_is_missing(tmp_path):
    # 9 s of record 100's MLII lost (WFDB's invalid value): they were interpolated without a word in training and
    # evaluation, while predict warned
    import wfdb

    signal = wfdb.rdrecord(str(SAMPLE / "100"), channels=[0]).p_signal
    signal[3600:6840] = np.nan
    wfdb.wrsamp("100", fs=360, units=["mV"], sig_name=["MLII"], p_signal=signal, fmt=["16"], write_dir=str(tmp_path))
    (tmp_path / "REFERENCE.csv").write_text("100,N\n")
    message = (f"record '{tmp_path.name}/100': 3240 samples (9.0 s, 5.0% of the record) are invalid (WFDB's missing "
               "value) in 1 stretch(es) (10.0-19.0 s); they are interpolated, and the record is trained on and scored "
               "from that, not from the recording")
    with pytest.warns(UserWarning, match=re.escape(message)):
        arrays = load_rhythm(tmp_path, cache=False)
    assert np.isfinite(arrays.data).all()


def test_random_crops_have_fixed_length_and_pad_short_records(synthetic):
    dataset = RhythmDataset(synthetic, crop_seconds=8.0)
    for i in range(len(synthetic)):
        signal, label = dataset[i]
        assert signal.shape == (1, 800) and signal.dtype == torch.float32 and label.item() == i
        assert (signal != 0).sum().item() == min(800, synthetic.lengths[i])  # whole short record, zeros around
    offsets = {int(np.flatnonzero(dataset[0][0][0].numpy())[0]) for _ in range(30)}
    assert len(offsets) > 1  # the padding position is random


def test_fit_length_checks_the_offset():
    signal = np.arange(10)[None]
    np.testing.assert_array_equal(fit_length(signal, 4, 6), [[6, 7, 8, 9]])
    np.testing.assert_array_equal(fit_length(signal[:, :3], 5, 2), [[0, 0, 0, 1, 2]])
    message = "offset={} must be in [0, |T - length|] = [0, {}] for length={} and a signal of T={} samples"
    with pytest.raises(ValueError, match=re.escape(message.format(8, 6, 4, 10))):
        fit_length(signal, 4, 8)
    with pytest.raises(ValueError, match=re.escape(message.format(3, 2, 5, 3))):
        fit_length(signal[:, :3], 5, 3)
    with pytest.raises(ValueError, match=re.escape(message.format(-1, 6, 4, 10))):
        fit_length(signal, 4, -1)


def test_select_takes_a_boolean_mask_or_indices(synthetic):
    by_mask = synthetic.select(np.array([True, False, True]))
    by_index = synthetic.select(np.array([0, 2]))
    for selected in (by_mask, by_index):
        assert list(selected.record) == ["a", "c"] and list(selected.lengths) == [500, 300]
        np.testing.assert_array_equal(selected.signal(1), 3.0)
    with pytest.raises(ValueError, match=re.escape("a mask of shape (2,) for 3 records")):
        synthetic.select(np.array([True, False]))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_rhythm_dataset_works_with_dataloader(synthetic, num_workers):
    loader = torch.utils.data.DataLoader(RhythmDataset(synthetic, 4.0), batch_size=3, num_workers=num_workers)
    ((signals, labels),) = list(loader)
    assert signals.shape == (3, 1, 400) and labels.tolist() == [0, 1, 2]


def test_sliding_windows_cover_the_whole_record(synthetic):
    record = np.arange(1000, dtype=np.float32)[None]
    windows = sliding_windows(record, 300, 250)
    assert windows.shape == (4, 1, 300)
    assert [w[0, 0] for w in windows] == [0, 250, 500, 700]  # the last window ends at the end
    short = sliding_windows(synthetic.signal(2), 400, 200)
    assert short.shape == (1, 1, 400) and (short[0, 0, :300] == 3).all() and (short[0, 0, 300:] == 0).all()
    with pytest.raises(ValueError, match="hop=0"):
        sliding_windows(record, 300, 0)
    assert sliding_windows(record, 300, 300).shape == (4, 1, 300)  # touching windows are allowed
    with pytest.raises(ValueError, match="hop=301 samples is more than length=300"):
        sliding_windows(record, 300, 301)  # a gap would leave samples out
    message = "{}: signal must be (C, T) = (channels, samples), got shape (1000,); for one lead pass signal[None]"
    with pytest.raises(ValueError, match=re.escape(message.format("sliding_windows"))):
        sliding_windows(record[0], 300, 250)  # was "tuple index out of range"
    with pytest.raises(ValueError, match=re.escape(message.format("fit_length"))):
        fit_length(record[0], 300)


def test_aggregation_of_window_logits():
    logits = torch.tensor([[2.0, 0.0], [0.0, 4.0]])
    torch.testing.assert_close(aggregate_windows(logits), logits.softmax(-1).mean(0))
    torch.testing.assert_close(aggregate_windows(logits, "mean_logit"), torch.tensor([1.0, 2.0]).softmax(-1))
    with pytest.raises(ValueError, match="method='max'"):
        aggregate_windows(logits, "max")
    message = "aggregate_windows: logits must be (W, K), the class logits of W >= 1 windows, got shape {}"
    with pytest.raises(ValueError, match=re.escape(message.format("(2,)"))):
        aggregate_windows(logits[0])  # was a scalar
    with pytest.raises(ValueError, match=re.escape(message.format("(0, 2)"))):
        aggregate_windows(logits[:0])  # was NaN
    with pytest.raises(TypeError, match=re.escape("aggregate_windows: logits must be a torch.Tensor, got ndarray")):
        aggregate_windows(logits.numpy())


def test_predict_records_runs_the_model_on_every_window(synthetic):
    class MeanLevel(torch.nn.Module):
        """Logits (level, -level) from the mean of each window: makes window content visible."""

        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(()))

        def forward(self, x):
            level = x.mean(dim=(1, 2)) * self.scale
            return torch.stack([level, -level], dim=1)

    probabilities = predict_records(MeanLevel(), synthetic, window_seconds=4.0, hop_seconds=2.0, records_per_batch=2)
    with pytest.raises(ValueError, match=r"hop_seconds=5.0 is more than window_seconds=4.0"):  # its own parameters
        predict_records(MeanLevel(), synthetic, window_seconds=4.0, hop_seconds=5.0)
    assert probabilities.shape == (3, 2)
    torch.testing.assert_close(probabilities.sum(1), torch.ones(3))
    expected_c = aggregate_windows(torch.tensor([[0.75 * 3, -0.75 * 3]]))  # 3 s of value 3 in a 4 s window
    torch.testing.assert_close(probabilities[2], expected_c)
    expected_b = aggregate_windows(torch.tensor([[2.0, -2.0]]).repeat(5, 1))  # 5 windows, all of value 2
    torch.testing.assert_close(probabilities[1], expected_b)

    # extra features of each window (here its record and first sample) are the model's second input
    class ExtraAsLogits(torch.nn.Module):
        def forward(self, x, extra):
            return extra

    calls = []

    def extra(i, starts, length):
        calls.append((i, starts.tolist(), length))
        return np.stack([np.full(len(starts), float(i)), starts / 100.0], axis=1).astype(np.float32)

    with_extra = predict_records(ExtraAsLogits(), synthetic, 4.0, 2.0, records_per_batch=2, extra=extra)
    assert calls == [(0, [0, 100], 400), (1, [0, 200, 400, 600, 800], 400), (2, [0], 400)]
    expected = aggregate_windows(torch.tensor([[1.0, 0.0], [1.0, 2.0], [1.0, 4.0], [1.0, 6.0], [1.0, 8.0]]))
    torch.testing.assert_close(with_extra[1], expected)

    # at most windows_per_call windows a model call (a long record's windows too), the same result
    sizes = []

    class Counting(MeanLevel):
        def forward(self, x):
            sizes.append(len(x))
            return super().forward(x)

    chunked = predict_records(Counting(), synthetic, 4.0, 2.0, records_per_batch=2, windows_per_call=3)
    assert sizes == [3, 3, 1, 1] and torch.equal(chunked, probabilities)  # 2 + 5 windows, then 1
    with pytest.raises(ValueError, match=r"windows_per_call=0 must be >= 1"):
        predict_records(MeanLevel(), synthetic, windows_per_call=0)


def test_random_crop_augmentation_flips_signs_and_adds_noise(synthetic):
    from msresnet1d.data.loader import epoch_generator
    from msresnet1d.training.tasks import RandomCrops

    idx = torch.tensor([0, 1, 2] * 200)  # records hold 1, 2 and 3 (the last is zero-padded to 4 s)
    plain = RandomCrops(synthetic, 400)(idx, epoch_generator(0, 0))
    assert set(plain.amax(dim=(1, 2)).tolist()) == {1.0, 2.0, 3.0}
    flipped = RandomCrops(synthetic, 400, flip_prob=0.5)(idx, epoch_generator(0, 0))
    signs = torch.sign(flipped.sum(dim=(1, 2)))
    assert (flipped == signs[:, None, None] * plain).all()  # whole crops flipped, or left alone
    assert 0.4 < (signs < 0).float().mean() < 0.6
    assert (RandomCrops(synthetic, 400, flip_prob=1.0)(idx, epoch_generator(0, 0)) == -plain).all()
    noisy = RandomCrops(synthetic, 400, noise_std=0.1)(idx, epoch_generator(0, 0))
    assert (noisy - plain).std().item() == pytest.approx(0.1, rel=0.02) and abs((noisy - plain).mean()) < 0.01
    again = RandomCrops(synthetic, 400, flip_prob=0.5, noise_std=0.1)
    assert torch.equal(again(idx, epoch_generator(0, 3)), again(idx, epoch_generator(0, 3)))  # seeded


@pytest.mark.parametrize("key, value", [("flip_prob", 1.5), ("flip_prob", -0.1), ("noise_std", -1.0)])
def test_rhythm_task_rejects_bad_augmentation_before_loading(key, value, tmp_path):
    from msresnet1d.training.config import load_config
    from msresnet1d.training.tasks import build_task

    cfg = load_config(None, {"task": "rhythm", "model": "msresnet1d_small", f"data.{key}": value,
                             "data.data_dir": str(tmp_path / "missing")})  # never read: the check comes first
    with pytest.raises(ValueError, match=rf"\[data\] {key} must be a number (in \[0, 1\]|>= 0), got {value}"):
        build_task(cfg)


def _cinc_subset(cinc2017_dir: Path, tmp_path: Path, per_class: int) -> Path:
    """A CinC 2017 folder of the first ``per_class`` records of each class (links to the real ones)."""
    folder = tmp_path / "cinc2017"
    folder.mkdir()
    with open(cinc2017_dir / "REFERENCE.csv", newline="") as f:
        rows = list(csv.reader(f))
    chosen = [row for label in CINC_CLASSES for row in [r for r in rows if r[1] == label][:per_class]]
    (folder / "REFERENCE.csv").write_text("".join(f"{name},{label}\n" for name, label in chosen))
    for name, _ in chosen:
        for ext in (".hea", ".mat"):
            (folder / f"{name}{ext}").symlink_to(cinc2017_dir / f"{name}{ext}")
    return folder


def test_rhythm_task_splits_the_records_into_training_validation_and_test_shares_of_a_fold(cinc2017_dir, tmp_path):
    # 40 records, 4 folds: fold 0 tests 10, trains on the 30 others, of which 25% (8, rounded up) validate
    from msresnet1d.training.config import TrainConfig
    from msresnet1d.training.tasks import build_task

    folder = _cinc_subset(cinc2017_dir, tmp_path, 10)
    data = {"data_dir": str(folder), "fs": 50.0, "crop_seconds": 10.0, "hop_seconds": 10.0, "folds": 4,
            "val_fraction": 0.25, "cache": False}
    task = build_task(TrainConfig(task="rhythm", model="msresnet1d_small", data=data))
    splits = task.splits
    assert (splits["train_records"], splits["val_records"], splits["test_records"]) == (22, 8, 10)
    assert len(task.train_labels) == 22 and len(set(splits["test_names"])) == 10
    assert task.scored == ["N", "A", "O"]  # the CinC 2017 score's classes: noise is classified, not averaged


def test_rhythm_validation_and_test_run_eval_batch_size_windows_a_model_call(cinc2017_dir, tmp_path):
    # they ran predict_records' default 256 windows a call, whatever the config's eval_batch_size
    from msresnet1d.training.config import TrainConfig
    from msresnet1d.training.tasks import build_task

    folder = _cinc_subset(cinc2017_dir, tmp_path, 4)
    data = {"data_dir": str(folder), "fs": 50.0, "crop_seconds": 10.0, "hop_seconds": 5.0, "folds": 2,
            "val_fraction": 0.5, "cache": False}
    task = build_task(TrainConfig(task="rhythm", model="msresnet1d_small", data=data, eval_batch_size=3))
    calls = []

    class Counting(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bias = torch.nn.Parameter(torch.zeros(len(CINC_CLASSES)))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            calls.append(len(x))
            return self.bias.expand(len(x), -1)

    for split in ("val", "test"):
        calls.clear()
        y, probabilities = task.predict(Counting(), split, torch.device("cpu"))
        assert probabilities.shape == (len(y), len(CINC_CLASSES)) and sum(calls) > 3 * len(y)  # several windows each
        assert max(calls) == 3


def test_rhythm_split_seed_defaults_to_the_run_seed_and_can_be_fixed():
    from msresnet1d.training.config import load_config
    from msresnet1d.training.tasks import resolve_data

    rhythm = {"task": "rhythm", "model": "msresnet1d_small", "seed": 3}
    assert resolve_data(load_config(None, rhythm)).data["split_seed"] == 3  # runs made before the key
    assert resolve_data(load_config(None, {**rhythm, "data.split_seed": 0})).data["split_seed"] == 0
    assert "split_seed" not in resolve_data(load_config(None, {"seed": 3})).data  # beats: val_seed instead


def test_rhythm_band_is_a_data_option_recorded_with_the_run():
    from msresnet1d.training.config import load_config
    from msresnet1d.training.tasks import check_data, evaluation_data, resolve_data
    from msresnet1d.training.tasks.options import rhythm_config

    rhythm = {"task": "rhythm", "model": "msresnet1d_small"}
    cfg = load_config(None, rhythm)
    # runs made before the key read records through RhythmConfig's band: the default is that band
    assert resolve_data(cfg).data["band"] == [0.5, 40.0] and rhythm_config(resolve_data(cfg).data) == RhythmConfig(fs=150)
    assert evaluation_data(cfg)["band"] == [0.5, 40.0]  # checkpoints filtered otherwise see other inputs
    chosen = load_config(None, {**rhythm, "data.band": [1, 30]})
    assert rhythm_config(resolve_data(chosen).data).band == (1.0, 30.0)
    assert rhythm_config(resolve_data(load_config(None, {**rhythm, "data.band": False})).data).band is None
    with pytest.raises(ValueError, match=r"\[data\] band must be \[low, high\] in Hz.*got \[30, 1\]"):
        check_data(load_config(None, {**rhythm, "data.band": [30, 1]}))


def test_rhythm_config_canonicalises_band_and_rate():  # equal configurations, one cache key
    config = RhythmConfig(fs=300, band=[0.5, 40])
    assert config == RhythmConfig(fs=300.0, band=(0.5, 40.0)) and type(config.band[1]) is float
    assert dataclasses.asdict(config) == dataclasses.asdict(RhythmConfig())
    assert RhythmConfig(band=(None, 40)).band == (None, 40.0) and RhythmConfig(band=None).band is None


@pytest.mark.parametrize("options, message", [
    (dict(normalization="minmax"), "normalization must be 'zscore', 'robust' or None, got 'minmax'"),
    (dict(band=(40, 0.5)), "band=(40.0, 0.5): bandpass: low=40.0 Hz must be below high=0.5 Hz"),
    (dict(band=(None, None)), "band=(None, None): bandpass: give at least one of low and high (Hz)"),
    (dict(fs=float("inf")), "the rate must be finite and positive, got fs=inf Hz"),
    (dict(band=[0.5]), "band must be (low, high) in Hz (either may be None) or None, got [0.5]"),
])
def test_rhythm_config_refuses_what_would_only_fail_once_a_record_is_read(options, message):
    with pytest.raises(ValueError, match=re.escape(f"RhythmConfig: {message}")):
        RhythmConfig(**options)
