"""Data layer: PhysioNet ECG databases (MIT-BIH beats, CinC 2017 rhythms) and helpers.

Modules:
    locate      where databases live, the embedded sample fallback, PhysioNet downloads
    records     reading WFDB records and annotations, with clear errors (``DataError``;
                ``LeadError`` for a lead a record lacks)
    preprocess  band-pass, resampling, normalisation, NaN and flat-segment handling (numpy)
    aami        MIT-BIH symbols -> AAMI EC57 classes N, S, V, F, Q
    rr          RR-interval features
    hrv         R peaks and the RR statistics of a window (rhythm models' extra inputs)
    beats       beat windows + RR features + labels (arrays and a torch Dataset)
    augment     random amplitude, noise and shift of beat windows in training
    rhythm      variable-length records with one label (CinC 2017), crops, sliding windows
    splits      inter-patient DS1/DS2, by-record splits, stratified k-fold
    cache       on-disk cache of preprocessed arrays
    parallel    worker processes for reading many records
    loader      fast mini-batches from in-memory tensors
    errors      DataError and LeadError
    fashion_mnist  the Fashion-MNIST IDX files, verified, and image batch transforms
    spectrogram time-frequency images of signal batches (the 2D baseline on ECG)

The names below are importable from ``msresnet1d.data`` directly; each module is imported on
first use (``msresnet1d.data.beats`` too), so ``import msresnet1d.data.<module>`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import _lazy

__all__ = [
    "AAMI_CLASSES", "Annotations", "BeatArrays", "BeatConfig", "BeatDataset", "CINC_CLASSES", "DS1", "DS2",
    "DataError", "FashionMNIST", "HRV_FEATURES", "LeadError", "MITBIH_TO_AAMI", "PACED_RECORDS", "RR_DEFAULT",
    "RR_FEATURES", "RR_RATIOS", "Record", "RhythmArrays", "RhythmConfig", "RhythmDataset", "SAME_PATIENT",
    "Spectrogram", "TensorBatchLoader", "aami_labels", "aggregate_windows", "balanced_holdout", "bandpass",
    "beat_windows", "cache_dir", "data_home", "detect_r_peaks", "download_database", "fill_nan", "find_database",
    "fit_length", "flat_mask", "holdout_ds1", "lead_positions", "list_records", "load_beats", "load_fashion_mnist",
    "load_inter_patient", "load_rhythm", "normalize", "patient_index", "positions_at", "predict_records",
    "preprocess_record", "preprocess_signal", "read_annotations", "read_header", "read_record", "read_reference",
    "record_beats", "record_kfold", "record_signal", "resample", "resolve_leads", "rr_columns", "rr_features",
    "select_leads", "shared_patients", "sliding_windows", "split_by_record", "stratified_kfold", "window_hrv",
    "window_starts", "windows_hrv",
]

if TYPE_CHECKING:  # the names of __all__, which the package imports on first use (_lazy.type_checking_exports)
    from .errors import DataError, LeadError
    from .locate import data_home, download_database, find_database, list_records
    from .records import (
        Annotations, Record, preprocess_record, read_annotations, read_header, read_record, resolve_leads)
    from .preprocess import (
        bandpass, fill_nan, flat_mask, lead_positions, normalize, preprocess_signal, resample, select_leads)
    from .aami import AAMI_CLASSES, MITBIH_TO_AAMI, aami_labels
    from .rr import RR_DEFAULT, RR_FEATURES, RR_RATIOS, rr_columns, rr_features
    from .beats import (
        BeatArrays, BeatConfig, BeatDataset, beat_windows, load_beats, load_inter_patient, positions_at, record_beats)
    from .rhythm import (
        CINC_CLASSES, RhythmArrays, RhythmConfig, RhythmDataset, aggregate_windows, fit_length, load_rhythm,
        predict_records, read_reference, record_signal, sliding_windows, window_starts)
    from .hrv import HRV_FEATURES, detect_r_peaks, window_hrv, windows_hrv
    from .splits import (
        DS1, DS2, PACED_RECORDS, SAME_PATIENT, balanced_holdout, holdout_ds1, record_kfold, patient_index,
        shared_patients, split_by_record, stratified_kfold)
    from .cache import cache_dir
    from .loader import TensorBatchLoader
    from .fashion_mnist import FashionMNIST, load_fashion_mnist
    from .spectrogram import Spectrogram

_MODULE_OF = _lazy.type_checking_exports(__file__)
_SUBMODULES = (*sorted(set(_MODULE_OF.values())), "augment", "parallel")

__getattr__, __dir__ = _lazy.lazy_attributes(__name__, globals(), _SUBMODULES, _MODULE_OF)
