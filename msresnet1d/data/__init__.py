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

from .. import _lazy

# (for type checkers, __init__.pyi imports the same names; the tests hold the two lists together)
_EXPORTS = {
    "errors": ["DataError", "LeadError"],
    "locate": ["data_home", "download_database", "find_database", "list_records"],
    "records": ["Annotations", "Record", "preprocess_record", "read_annotations", "read_header", "read_record",
                "resolve_leads"],
    "preprocess": [
        "bandpass",
        "fill_nan",
        "flat_mask",
        "lead_positions",
        "normalize",
        "preprocess_signal",
        "resample",
        "select_leads",
    ],
    "aami": ["AAMI_CLASSES", "MITBIH_TO_AAMI", "aami_labels"],
    "rr": ["RR_DEFAULT", "RR_FEATURES", "RR_RATIOS", "rr_columns", "rr_features"],
    "beats": [
        "BeatArrays",
        "BeatConfig",
        "BeatDataset",
        "beat_windows",
        "load_beats",
        "load_inter_patient",
        "positions_at",
        "record_beats",
    ],
    "rhythm": [
        "CINC_CLASSES",
        "RhythmArrays",
        "RhythmConfig",
        "RhythmDataset",
        "aggregate_windows",
        "fit_length",
        "load_rhythm",
        "predict_records",
        "read_reference",
        "record_signal",
        "sliding_windows",
        "window_starts",
    ],
    "hrv": ["HRV_FEATURES", "detect_r_peaks", "window_hrv", "windows_hrv"],
    "splits": ["DS1", "DS2", "PACED_RECORDS", "SAME_PATIENT", "balanced_holdout", "holdout_ds1", "record_kfold",
               "patient_index", "shared_patients", "split_by_record", "stratified_kfold"],
    "cache": ["cache_dir"],
    "loader": ["TensorBatchLoader"],
    "fashion_mnist": ["FashionMNIST", "load_fashion_mnist"],
    "spectrogram": ["Spectrogram"],
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
_SUBMODULES = (*_EXPORTS, "augment", "parallel")

__all__ = sorted(_MODULE_OF)


__getattr__, __dir__ = _lazy.lazy_attributes(__name__, globals(), _SUBMODULES, _MODULE_OF)
