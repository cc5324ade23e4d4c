"""Types of the names ``msresnet1d.data`` imports on first use (``_EXPORTS`` in ``__init__.py``, which
the tests hold to this list): type checkers read this stub, not the lazy ``__getattr__``."""

from .errors import DataError as DataError, LeadError as LeadError
from .locate import (
    data_home as data_home, download_database as download_database, find_database as find_database,
    list_records as list_records)
from .records import (
    Annotations as Annotations, Record as Record, preprocess_record as preprocess_record,
    read_annotations as read_annotations, read_header as read_header, read_record as read_record,
    resolve_leads as resolve_leads)
from .preprocess import (
    bandpass as bandpass, fill_nan as fill_nan, flat_mask as flat_mask, lead_positions as lead_positions,
    normalize as normalize, preprocess_signal as preprocess_signal, resample as resample, select_leads as select_leads)
from .aami import AAMI_CLASSES as AAMI_CLASSES, MITBIH_TO_AAMI as MITBIH_TO_AAMI, aami_labels as aami_labels
from .rr import (
    RR_DEFAULT as RR_DEFAULT, RR_FEATURES as RR_FEATURES, RR_RATIOS as RR_RATIOS, rr_columns as rr_columns,
    rr_features as rr_features)
from .beats import (
    BeatArrays as BeatArrays, BeatConfig as BeatConfig, BeatDataset as BeatDataset, beat_windows as beat_windows,
    load_beats as load_beats, load_inter_patient as load_inter_patient, positions_at as positions_at,
    record_beats as record_beats)
from .rhythm import (
    CINC_CLASSES as CINC_CLASSES, RhythmArrays as RhythmArrays, RhythmConfig as RhythmConfig,
    RhythmDataset as RhythmDataset, aggregate_windows as aggregate_windows, fit_length as fit_length,
    load_rhythm as load_rhythm, predict_records as predict_records, read_reference as read_reference,
    record_signal as record_signal, sliding_windows as sliding_windows, window_starts as window_starts)
from .hrv import (
    HRV_FEATURES as HRV_FEATURES, detect_r_peaks as detect_r_peaks, window_hrv as window_hrv, windows_hrv as windows_hrv)
from .splits import (
    DS1 as DS1, DS2 as DS2, PACED_RECORDS as PACED_RECORDS, SAME_PATIENT as SAME_PATIENT,
    balanced_holdout as balanced_holdout, holdout_ds1 as holdout_ds1, record_kfold as record_kfold,
    patient_index as patient_index, shared_patients as shared_patients, split_by_record as split_by_record,
    stratified_kfold as stratified_kfold)
from .cache import cache_dir as cache_dir
from .loader import TensorBatchLoader as TensorBatchLoader
from .fashion_mnist import FashionMNIST as FashionMNIST, load_fashion_mnist as load_fashion_mnist
from .spectrogram import Spectrogram as Spectrogram
